//! A tenant's users. Role changes and deletions lock the tenant's owners first, so two
//! concurrent demotions can't leave a tenant without an owner.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::User;
use plinth_domain::error::Conflict;
use plinth_domain::events::EventData;
use plinth_domain::ids::{TenantId, UserId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{IdempotentWrite, Keyed, UserCheck, UserRepository};
use plinth_domain::values::{Email, PasswordHash, Role};
use plinth_domain::{Error, Result};
use tokio_postgres::Row;

use crate::error::{self, OrDb as _, corrupt};
use crate::idempotency::take_key;
use crate::keyset::{Keyset, keyset};
use crate::op;
use crate::pool::{PgStore, Tx, stale_read, tenant_read, tenant_tx};

macro_rules! columns {
    () => {
        "tenant_id, id, email, role, password_hash, created_at, token_version, email_verified"
    };
}

pub(crate) use columns as user_columns;

/// The tenant's users, newest first.
pub const LIST: Keyset = keyset!(columns!(), from "users" where "tenant_id = $1",
    first limit "$2", after ("$2", "$3") limit "$4");

/// The tenant's users, for its export (by id).
pub(crate) const EXPORT: &str = concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 ORDER BY id");

pub(crate) fn user_from_row(row: &Row) -> Result<User> {
    Ok(User {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: UserId::from_uuid(row.try_get("id").or_db()?),
        email: Email::parse(row.try_get("email").or_db()?).map_err(|_| corrupt("email"))?,
        role: row.try_get::<_, &str>("role").or_db()?.parse().map_err(|_| corrupt("role"))?,
        password_hash: PasswordHash::new(row.try_get("password_hash").or_db()?),
        created_at: row.try_get("created_at").or_db()?,
        token_version: u32::try_from(row.try_get::<_, i32>("token_version").or_db()?)
            .map_err(|_| corrupt("token_version"))?,
        email_verified: row.try_get("email_verified").or_db()?,
    })
}

/// Inserts `user` in a transaction already scoped to its tenant.
pub(crate) async fn insert_user(tx: &Tx<'_>, user: &User) -> Result<()> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO users (tenant_id, id, email, role, password_hash, created_at, updated_at, token_version, \
             email_verified) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
        )
        .await
        .or_db()?;
    let result = tx
        .execute(
            &insert,
            &[
                user.tenant_id.as_uuid(),
                user.id.as_uuid(),
                &user.email.as_str(),
                &user.role.as_str(),
                &user.password_hash.as_str(),
                &user.created_at,
                &i32::try_from(user.token_version).map_err(Error::internal)?,
                &user.email_verified,
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if error::unique_violation(&e) == Some("users_email_key") => Err(Error::Conflict(Conflict::EmailTaken)),
        Err(e) => Err(error::db(e)),
    }
}

/// Locks the tenant's owners, then the target user; refuses to take away the last owner.
async fn lock_target(
    tx: &Tx<'_>,
    tenant: TenantId,
    id: UserId,
    keeps_owner: bool,
    check: UserCheck<'_>,
) -> Result<User> {
    let owners = tx
        .prepare_cached("SELECT id FROM users WHERE tenant_id = $1 AND role = 'owner' ORDER BY id FOR UPDATE")
        .await
        .or_db()?;
    let owner_count = tx.query(&owners, &[tenant.as_uuid()]).await.or_db()?.len();
    let target = tx
        .prepare_cached(concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE"))
        .await
        .or_db()?;
    let row = tx.query_opt(&target, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
    let user = row.as_ref().map(user_from_row).transpose()?.ok_or(Error::NotFound)?;
    check(&user)?;
    if user.role == Role::Owner && !keeps_owner && owner_count <= 1 {
        return Err(Error::Conflict(Conflict::LastOwner));
    }
    Ok(user)
}

#[async_trait]
impl UserRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %user.tenant_id))]
    async fn create(
        &self,
        user: &User,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<plinth_domain::plans::Cap>,
    ) -> Result<Keyed> {
        let events = trail.events(user.tenant_id, &[EventData::User(user.clone())])?;
        self.bounded(async {
            let mut client = self.conn(op::USERS_CREATE).await?;
            let tx = tenant_tx(&mut client, user.tenant_id).await?;
            if !take_key(&tx, key, self.clock.now()).await? {
                return Ok(Keyed::KeyTaken);
            }
            crate::caps::check(&tx, user.tenant_id, cap).await?;
            insert_user(&tx, user).await?;
            crate::events::settle_within(&tx, user.tenant_id, &events, trail, self.max_pending_jobs).await?;
            tx.commit().await.or_db()?;
            Ok(Keyed::Written)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        self.bounded(async {
            let client = self.conn(op::USERS_GET).await?;
            let sql = concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 AND id = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            rows.first().map(user_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn find_by_email(&self, tenant: TenantId, email: &Email) -> Result<Option<User>> {
        self.bounded(async {
            let client = self.conn(op::USERS_FIND_BY_EMAIL).await?;
            let sql = concat!("SELECT ", columns!(), " FROM users WHERE tenant_id = $1 AND email = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), &email.as_str()], 1).await?;
            rows.first().map(user_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<User>> {
        self.bounded(stale_read!(self, op::USERS_LIST, tenant, |client| {
            let rows = LIST.page(&client, tenant, &[tenant.as_uuid()], after, limit).await?;
            rows.iter().map(user_from_row).collect()
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, check, trail))]
    async fn update_role(
        &self,
        tenant: TenantId,
        id: UserId,
        role: Role,
        check: UserCheck<'_>,
        trail: &AuditTrail,
    ) -> Result<User> {
        self.bounded(async {
            let mut client = self.conn(op::USERS_UPDATE_ROLE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let before = lock_target(&tx, tenant, id, role == Role::Owner, check).await?;
            let update = tx
                .prepare_cached(concat!(
                    "UPDATE users SET role = $3, updated_at = $4, \
                     token_version = token_version + CASE WHEN role = $3 THEN 0 ELSE 1 END \
                     WHERE tenant_id = $1 AND id = $2 RETURNING ",
                    columns!()
                ))
                .await
                .or_db()?;
            let row = tx
                .query_one(&update, &[tenant.as_uuid(), id.as_uuid(), &role.as_str(), &self.clock.now()])
                .await
                .or_db()?;
            if before.role != role {
                // A role change ends the user's sessions too, and lowers the ceiling of the
                // keys they created to their new role (never raising one).
                crate::sessions::end_sessions(&tx, tenant, id, None).await?;
                let lower = tx
                    .prepare_cached(
                        "UPDATE api_keys SET role = $3 WHERE tenant_id = $1 AND created_by = $2 \
                         AND (role = 'owner' OR $3 = 'member') AND role <> $3",
                    )
                    .await
                    .or_db()?;
                tx.execute(&lower, &[tenant.as_uuid(), id.as_uuid(), &role.as_str()]).await.or_db()?;
            }
            let user = user_from_row(&row)?;
            // A role set to the one the user has changes nothing a `user.updated` would report.
            let events = if before.role == role {
                Vec::new()
            } else {
                trail.events(tenant, &[EventData::User(user.clone())])?
            };
            crate::events::settle(&tx, tenant, &events, trail).await?;
            tx.commit().await.or_db()?;
            Ok(user)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, check, trail))]
    async fn delete(&self, tenant: TenantId, id: UserId, check: UserCheck<'_>, trail: &AuditTrail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::USERS_DELETE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let user = lock_target(&tx, tenant, id, false, check).await?;
            let events = trail.events(tenant, &[EventData::User(user)])?;
            let delete = tx.prepare_cached("DELETE FROM users WHERE tenant_id = $1 AND id = $2").await.or_db()?;
            tx.execute(&delete, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
            crate::events::settle(&tx, tenant, &events, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }
}
