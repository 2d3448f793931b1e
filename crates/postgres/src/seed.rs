//! Bulk loads for benchmarks: COPY as the owner (PostgreSQL refuses COPY into a table under
//! RLS unless the role bypasses it, and `plinth_app` never does).

use std::pin::pin;
use std::time::Duration;

use plinth_domain::clock;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::error::PgError;

/// What to load.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    /// How many tenants.
    pub tenants: u32,
    /// Users per tenant; the first is the owner, the rest members.
    pub users_per_tenant: u32,
    /// Projects per tenant.
    pub projects_per_tenant: u32,
    /// One PHC hash shared by every seeded user (hashing 100,000 passwords would take hours).
    pub password_hash: String,
    /// Slugs are this prefix and a zero-padded number.
    pub slug_prefix: String,
}

/// One seeded tenant and its owner, for issuing load-test tokens.
#[derive(Debug, Clone)]
pub struct SeededTenant {
    /// The tenant's id.
    pub id: Uuid,
    /// Its slug.
    pub slug: String,
    /// Its owner's id.
    pub owner: Uuid,
    /// A session of the owner (with no refresh token), live for 90 days: load-test access
    /// tokens belong to it.
    pub session: Uuid,
}

/// Rows are written in chunks of this many tenants, reporting progress after each.
const CHUNK: u32 = 500;

/// Loads `plan`, calling `progress(done, total)` in tenants.
pub async fn seed(owner_url: &str, plan: &SeedPlan, progress: impl Fn(u64, u64)) -> Result<Vec<SeededTenant>, PgError> {
    let config: tokio_postgres::Config = owner_url.parse().map_err(|_| PgError::Url)?;
    let (mut client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "seed connection closed");
        }
    });
    let mut seeded = Vec::with_capacity(usize::try_from(plan.tenants).unwrap_or(0));
    let now = clock::now();
    let mut start = 0;
    while start < plan.tenants {
        let end = (start + CHUNK).min(plan.tenants);
        let tx = client.transaction().await?;
        let chunk: Vec<SeededTenant> = (start..end)
            .map(|i| SeededTenant {
                id: Uuid::now_v7(),
                slug: format!("{}{i:06}", plan.slug_prefix),
                owner: Uuid::now_v7(),
                session: Uuid::now_v7(),
            })
            .collect();
        copy_tenants(&tx, &chunk).await?;
        copy_users(&tx, &chunk, plan, now).await?;
        copy_projects(&tx, &chunk, plan, now).await?;
        copy_sessions(&tx, &chunk, now).await?;
        tx.commit().await?;
        seeded.extend(chunk);
        start = end;
        progress(u64::from(start), u64::from(plan.tenants));
    }
    analyze(&mut client).await?;
    Ok(seeded)
}

async fn analyze(client: &mut Client) -> Result<(), PgError> {
    client.batch_execute("ANALYZE tenants; ANALYZE users; ANALYZE projects; ANALYZE sessions;").await?;
    Ok(())
}

async fn copy_tenants(tx: &tokio_postgres::Transaction<'_>, chunk: &[SeededTenant]) -> Result<(), PgError> {
    let sink = tx.copy_in("COPY tenants (id, slug, name, plan) FROM STDIN BINARY").await?;
    let mut w = pin!(BinaryCopyInWriter::new(sink, &[Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT]));
    for t in chunk {
        let name = format!("Tenant {}", t.slug);
        w.as_mut().write(&[&t.id, &t.slug, &name, &"free"]).await?;
    }
    w.finish().await?;
    // Each tenant's audit chain starts at its head, as signup makes it.
    let sink = tx.copy_in("COPY audit_heads (tenant_id) FROM STDIN BINARY").await?;
    let mut w = pin!(BinaryCopyInWriter::new(sink, &[Type::UUID]));
    for t in chunk {
        w.as_mut().write(&[&t.id]).await?;
    }
    w.finish().await?;
    Ok(())
}

async fn copy_users(
    tx: &tokio_postgres::Transaction<'_>,
    chunk: &[SeededTenant],
    plan: &SeedPlan,
    now: time::OffsetDateTime,
) -> Result<(), PgError> {
    let sink = tx
        .copy_in("COPY users (tenant_id, id, email, role, password_hash, created_at, updated_at) FROM STDIN BINARY")
        .await?;
    let types = [Type::UUID, Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ];
    let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
    for t in chunk {
        for j in 0..plan.users_per_tenant {
            let (id, role) = if j == 0 { (t.owner, "owner") } else { (Uuid::now_v7(), "member") };
            let email = format!("user{j}@{}.test", t.slug);
            let at = now - Duration::from_secs(u64::from(plan.users_per_tenant - j));
            w.as_mut().write(&[&t.id, &id, &email, &role, &plan.password_hash, &at, &at]).await?;
        }
    }
    w.finish().await?;
    Ok(())
}

async fn copy_sessions(
    tx: &tokio_postgres::Transaction<'_>,
    chunk: &[SeededTenant],
    now: time::OffsetDateTime,
) -> Result<(), PgError> {
    let sink = tx
        .copy_in(
            "COPY sessions (tenant_id, id, user_id, created_at, last_used_at, idle_expires_at, expires_at) \
             FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::UUID,
        Type::UUID,
        Type::UUID,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
    ];
    let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
    let until = now + Duration::from_secs(90 * 86_400);
    for t in chunk {
        w.as_mut().write(&[&t.id, &t.session, &t.owner, &now, &now, &until, &until]).await?;
    }
    w.finish().await?;
    Ok(())
}

async fn copy_projects(
    tx: &tokio_postgres::Transaction<'_>,
    chunk: &[SeededTenant],
    plan: &SeedPlan,
    now: time::OffsetDateTime,
) -> Result<(), PgError> {
    let sink = tx.copy_in("COPY projects (tenant_id, id, name, created_at, updated_at) FROM STDIN BINARY").await?;
    let types = [Type::UUID, Type::UUID, Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ];
    let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
    for t in chunk {
        for k in 0..plan.projects_per_tenant {
            let name = format!("Project {k}");
            let at = now - Duration::from_millis(u64::from(plan.projects_per_tenant - k));
            w.as_mut().write(&[&t.id, &Uuid::now_v7(), &name, &at, &at]).await?;
        }
    }
    w.finish().await?;
    Ok(())
}
