//! Tenants: created by signup with their first owner; resolved by slug without a tenant context.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Tenant, User};
use plinth_domain::error::Conflict;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{NewVerification, TenantRepository, Usage};
use plinth_domain::values::{Slug, TenantName};
use plinth_domain::{Error, Result};
use tokio_postgres::Row;

use crate::error::{self, OrDb as _, corrupt};
use crate::op;
use crate::pool::{PgStore, tenant_read, tenant_tx};
use crate::users::insert_user;

fn tenant_from_row(row: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_uuid(row.try_get("id").or_db()?),
        slug: Slug::parse(row.try_get("slug").or_db()?).map_err(|_| corrupt("slug"))?,
        name: TenantName::parse(row.try_get("name").or_db()?).map_err(|_| corrupt("tenant name"))?,
        plan: row.try_get::<_, &str>("plan").or_db()?.parse().map_err(|_| corrupt("plan"))?,
    })
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
            crate::audit::append(&tx, tenant.id, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slug = %slug))]
    async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        self.bounded(async {
            let client = self.conn(op::TENANTS_FIND).await?;
            let find = client.prepare_cached("SELECT id, slug, name, plan FROM tenant_by_slug($1)").await.or_db()?;
            let row = client.query_opt(&find, &[&slug.as_str()]).await.or_db()?;
            row.as_ref().map(tenant_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn set_plan(&self, tenant: TenantId, plan: &plinth_domain::values::Plan, trail: &AuditTrail) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op::TENANTS_SET_PLAN).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx.prepare_cached("UPDATE tenants SET plan = $2 WHERE id = $1").await.or_db()?;
            if tx.execute(&q, &[tenant.as_uuid(), &plan.as_str()]).await.or_db()? == 0 {
                return Ok(false);
            }
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(true)
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
