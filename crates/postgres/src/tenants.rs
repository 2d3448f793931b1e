//! Tenants: created by signup with their first owner; resolved by slug without a tenant context.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Lifecycle, Tenant, User};
use plinth_domain::error::Conflict;
use plinth_domain::events::{DomainEvent, EventData};
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{NewVerification, TenantRepository, TenantState, Usage};
use plinth_domain::values::{Slug, TenantName};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{self, OrDb as _, corrupt};
use crate::op;
use crate::pool::{PgStore, tenant_read, tenant_tx, unscoped};
use crate::users::insert_user;

/// The tenant, for its export: every column, so that the row reads as `tenant_from_row` reads
/// it whatever columns it comes to read.
pub(crate) const EXPORT: &str = "SELECT * FROM tenants WHERE id = $1";

pub(crate) fn tenant_from_row(row: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_uuid(row.try_get("id").or_db()?),
        slug: Slug::parse(row.try_get("slug").or_db()?).map_err(|_| corrupt("slug"))?,
        name: TenantName::parse(row.try_get("name").or_db()?).map_err(|_| corrupt("tenant name"))?,
        plan: row.try_get::<_, &str>("plan").or_db()?.parse().map_err(|_| corrupt("plan"))?,
        lifecycle: Lifecycle {
            suspended_at: row.try_get("suspended_at").or_db()?,
            deleted_at: row.try_get("deleted_at").or_db()?,
            purge_after: row.try_get("purge_after").or_db()?,
        },
    })
}

impl PgStore {
    /// Runs `sql` (`$1` the tenant, then `params`) on the tenant's row, stores `events` and
    /// appends `trail` in one transaction; whether the row was there.
    async fn update_tenant(
        &self,
        op: &'static str,
        tenant: TenantId,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx.prepare_cached(sql).await.or_db()?;
            let all: Vec<&(dyn ToSql + Sync)> =
                std::iter::once(tenant.as_uuid() as &(dyn ToSql + Sync)).chain(params.iter().copied()).collect();
            if tx.execute(&q, &all).await.or_db()? == 0 {
                return Ok(false);
            }
            crate::projects::store_events(&tx, events, i64::MAX).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl TenantRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    async fn create_with_owner(
        &self,
        tenant: &Tenant,
        owner: &User,
        verification: Option<&NewVerification>,
        trail: &AuditTrail,
    ) -> Result<()> {
        let events = trail.events(tenant.id, &[EventData::User(owner.clone())])?;
        self.bounded(async {
            let mut client = self.conn(op::TENANTS_CREATE).await?;
            let tx = tenant_tx(&mut client, tenant.id).await?;
            let insert = tx
                .prepare_cached("INSERT INTO tenants (id, slug, name, plan) VALUES ($1, $2, $3, $4)")
                .await
                .or_db()?;
            let inserted = tx
                .execute(
                    &insert,
                    &[tenant.id.as_uuid(), &tenant.slug.as_str(), &tenant.name.as_str(), &tenant.plan.as_str()],
                )
                .await;
            if let Err(e) = inserted {
                return Err(match error::unique_violation(&e) {
                    Some(_) => Error::Conflict(Conflict::SlugTaken),
                    None => error::db(e),
                });
            }
            insert_user(&tx, owner).await?;
            crate::audit::create_head(&tx, tenant.id).await?;
            if let Some(v) = verification {
                crate::accounts::queue_verification_in(&tx, v, self.max_pending_jobs).await?;
            }
            crate::events::settle(&tx, tenant.id, &events, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slug = %slug))]
    async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_FIND).await?;
            let rows = unscoped(&client, "SELECT * FROM tenant_by_slug($1)", &[&slug.as_str()], 1).await?;
            rows.first().map(tenant_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events, trail))]
    async fn set_plan(
        &self,
        tenant: TenantId,
        plan: &plinth_domain::values::Plan,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool> {
        let sql = "UPDATE tenants SET plan = $2 WHERE id = $1";
        self.update_tenant(op::TENANTS_SET_PLAN, tenant, sql, &[&plan.as_str()], events, trail).await
    }

    #[tracing::instrument(level = "debug", skip(self, events, trail))]
    async fn set_lifecycle(
        &self,
        tenant: TenantId,
        from: &Lifecycle,
        to: &Lifecycle,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool> {
        // Compare and set: of two changes racing, the second finds the row changed (READ
        // COMMITTED re-checks the condition on the version the first left) and writes nothing.
        let sql = "UPDATE tenants SET suspended_at = $2, deleted_at = $3, purge_after = $4 WHERE id = $1 \
                   AND suspended_at IS NOT DISTINCT FROM $5 AND deleted_at IS NOT DISTINCT FROM $6 \
                   AND purge_after IS NOT DISTINCT FROM $7";
        let params: [&(dyn ToSql + Sync); 6] = [
            &to.suspended_at,
            &to.deleted_at,
            &to.purge_after,
            &from.suspended_at,
            &from.deleted_at,
            &from.purge_after,
        ];
        self.update_tenant(op::TENANTS_SET_LIFECYCLE, tenant, sql, &params, events, trail).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, after: Option<&Slug>, limit: usize, state: Option<TenantState>) -> Result<Vec<Tenant>> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_LIST).await?;
            let limit = i32::try_from(limit.min(1000)).unwrap_or(1000);
            let params: [&(dyn ToSql + Sync); 3] = [&after.map(Slug::as_str), &limit, &state.map(TenantState::as_str)];
            let rows = unscoped(&client, "SELECT * FROM plinth_list_tenants($1, $2, $3)", &params, 1000).await?;
            rows.iter().map(tenant_from_row).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(TenantId, Slug)>> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_PURGE).await?;
            let limit = i32::try_from(limit.min(1000)).unwrap_or(1000);
            let rows =
                unscoped(&client, "SELECT * FROM plinth_tenants_due_for_purge($1, $2)", &[&now, &limit], 1000).await?;
            rows.iter()
                .map(|r| {
                    let slug = Slug::parse(r.try_get("slug").or_db()?).map_err(|_| corrupt("slug"))?;
                    Ok((TenantId::from_uuid(r.try_get("id").or_db()?), slug))
                })
                .collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge_batch(&self, tenant: TenantId, now: OffsetDateTime, batch: usize) -> Result<u64> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_PURGE).await?;
            let batch = i32::try_from(batch.clamp(1, 100_000)).unwrap_or(1000);
            let sql = "SELECT plinth_purge_tenant($1, $2, $3)";
            let rows = unscoped(&client, sql, &[tenant.as_uuid(), &now, &batch], 1).await?;
            let n: i64 = rows.first().ok_or_else(|| corrupt("purge"))?.try_get(0).or_db()?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn usage(&self, tenant: TenantId) -> Result<Usage> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_USAGE).await?;
            let sql = "SELECT (SELECT count(*) FROM users WHERE tenant_id = $1), \
                       (SELECT count(*) FROM projects WHERE tenant_id = $1), \
                       (SELECT count(*) FROM webhooks WHERE tenant_id = $1), \
                       (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL)";
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid()], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("usage"))?;
            let n = |i: usize| -> Result<u64> { Ok(u64::try_from(row.try_get::<_, i64>(i).or_db()?).unwrap_or(0)) };
            Ok(Usage { members: n(0)?, projects: n(1)?, webhooks: n(2)?, api_keys: n(3)? })
        })
        .await
    }
}
