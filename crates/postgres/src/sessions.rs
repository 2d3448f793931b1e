//! Sessions and their refresh tokens under RLS. A spend locks the token's row first, so of two
//! refreshes racing with one token exactly one rotates it and the other sees it spent.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Session;
use plinth_domain::ids::{SessionId, TenantId, UserId};
use plinth_domain::ports::{SessionRepository, Spend};
use plinth_domain::values::{PasswordHash, Role, TokenHash};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::error::{OrDb as _, corrupt};
use crate::op;
use crate::pool::{PgStore, Tx, tenant_read, tenant_tx, unscoped};

macro_rules! columns {
    () => {
        "s.tenant_id, s.id, s.user_id, s.created_at, s.last_used_at, s.idle_expires_at, s.expires_at, \
         s.ip, s.user_agent"
    };
}

fn session_from_row(row: &Row) -> Result<Session> {
    Ok(Session {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: SessionId::from_uuid(row.try_get("id").or_db()?),
        user_id: UserId::from_uuid(row.try_get("user_id").or_db()?),
        created_at: row.try_get("created_at").or_db()?,
        last_used_at: row.try_get("last_used_at").or_db()?,
        idle_expires_at: row.try_get("idle_expires_at").or_db()?,
        expires_at: row.try_get("expires_at").or_db()?,
        ip: row.try_get("ip").or_db()?,
        user_agent: row.try_get("user_agent").or_db()?,
    })
}

fn hash_from(bytes: &[u8]) -> Result<TokenHash> {
    Ok(TokenHash::from_bytes(bytes.try_into().map_err(|_| corrupt("refresh token hash"))?))
}

/// Deletes the sessions of `user` but `except` in `tx`; returns how many.
pub(crate) async fn end_sessions(
    tx: &Tx<'_>,
    tenant: TenantId,
    user: UserId,
    except: Option<SessionId>,
) -> Result<u64> {
    let delete = tx
        .prepare_cached("DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND id IS DISTINCT FROM $3")
        .await
        .or_db()?;
    tx.execute(&delete, &[tenant.as_uuid(), user.as_uuid(), &except.map(|s| *s.as_uuid())]).await.or_db()
}

#[async_trait]
impl SessionRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %session.tenant_id))]
    async fn create(&self, session: &Session, token: &TokenHash, trail: &AuditTrail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::SESSIONS_CREATE).await?;
            let tx = tenant_tx(&mut client, session.tenant_id).await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO sessions (tenant_id, id, user_id, created_at, last_used_at, idle_expires_at, \
                     expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await
                .or_db()?;
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        session.tenant_id.as_uuid(),
                        session.id.as_uuid(),
                        session.user_id.as_uuid(),
                        &session.created_at,
                        &session.last_used_at,
                        &session.idle_expires_at,
                        &session.expires_at,
                        &session.ip,
                        &session.user_agent,
                    ],
                )
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                    return Err(Error::NotFound);
                }
                Err(e) => return Err(crate::error::db(e)),
            }
            let token_row = tx
                .prepare_cached("INSERT INTO refresh_tokens (tenant_id, hash, session_id) VALUES ($1, $2, $3)")
                .await
                .or_db()?;
            tx.execute(&token_row, &[session.tenant_id.as_uuid(), &token.as_bytes().as_slice(), session.id.as_uuid()])
                .await
                .or_db()?;
            crate::audit::append(&tx, session.tenant_id, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn spend(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        successor: &TokenHash,
        now: OffsetDateTime,
        idle_until: OffsetDateTime,
    ) -> Result<Spend> {
        self.bounded(async {
            let mut client = self.conn(op::SESSIONS_SPEND).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let find = tx
                .prepare_cached(concat!(
                    "SELECT r.spent_at, r.successor, ",
                    columns!(),
                    " FROM refresh_tokens r JOIN sessions s ON s.tenant_id = r.tenant_id AND s.id = r.session_id \
                     WHERE r.tenant_id = $1 AND r.hash = $2 FOR UPDATE OF r"
                ))
                .await
                .or_db()?;
            let Some(row) = tx.query_opt(&find, &[tenant.as_uuid(), &token.as_bytes().as_slice()]).await.or_db()?
            else {
                return Ok(Spend::Unknown);
            };
            let session = session_from_row(&row)?;
            let spent_at: Option<OffsetDateTime> = row.try_get("spent_at").or_db()?;
            if let Some(spent_at) = spent_at {
                let next = hash_from(row.try_get::<_, &[u8]>("successor").or_db()?)?;
                let live = tx
                    .prepare_cached(
                        "SELECT 1 FROM refresh_tokens WHERE tenant_id = $1 AND hash = $2 AND spent_at IS NULL",
                    )
                    .await
                    .or_db()?;
                let successor_live =
                    tx.query_opt(&live, &[tenant.as_uuid(), &next.as_bytes().as_slice()]).await.or_db()?.is_some();
                return Ok(Spend::Spent { session, spent_at, successor: next, successor_live });
            }
            if !session.is_live(now) {
                return Ok(Spend::Expired(session.id));
            }
            let mark = tx
                .prepare_cached(
                    "UPDATE refresh_tokens SET spent_at = $3, successor = $4 WHERE tenant_id = $1 AND hash = $2",
                )
                .await
                .or_db()?;
            tx.execute(
                &mark,
                &[tenant.as_uuid(), &token.as_bytes().as_slice(), &now, &successor.as_bytes().as_slice()],
            )
            .await
            .or_db()?;
            let insert = tx
                .prepare_cached("INSERT INTO refresh_tokens (tenant_id, hash, session_id) VALUES ($1, $2, $3)")
                .await
                .or_db()?;
            tx.execute(&insert, &[tenant.as_uuid(), &successor.as_bytes().as_slice(), session.id.as_uuid()])
                .await
                .or_db()?;
            let touch = tx
                .prepare_cached(concat!(
                    "UPDATE sessions s SET last_used_at = $3, idle_expires_at = least($4, s.expires_at) \
                     WHERE s.tenant_id = $1 AND s.id = $2 RETURNING ",
                    columns!()
                ))
                .await
                .or_db()?;
            let row =
                tx.query_one(&touch, &[tenant.as_uuid(), session.id.as_uuid(), &now, &idle_until]).await.or_db()?;
            let session = session_from_row(&row)?;
            tx.commit().await.or_db()?;
            Ok(Spend::Rotated(session))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn marker(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<(Role, u32, bool)>> {
        self.bounded(async {
            let client = self.conn(op::SESSIONS_MARKER).await?;
            let sql = "SELECT u.role, u.token_version, u.email_verified FROM sessions s \
                       JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id \
                       WHERE s.tenant_id = $1 AND s.id = $2 AND s.user_id = $3 \
                       AND s.idle_expires_at > $4 AND s.expires_at > $4";
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [tenant.as_uuid(), session.as_uuid(), user.as_uuid(), &now];
            let rows = tenant_read(&client, tenant, sql, &params, 1).await?;
            let Some(row) = rows.first() else { return Ok(None) };
            let role: Role = row.try_get::<_, &str>("role").or_db()?.parse().map_err(|_| corrupt("role"))?;
            let version =
                u32::try_from(row.try_get::<_, i32>("token_version").or_db()?).map_err(|_| corrupt("token_version"))?;
            Ok(Some((role, version, row.try_get("email_verified").or_db()?)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, user: UserId, now: OffsetDateTime) -> Result<Vec<Session>> {
        self.bounded(async {
            let client = self.conn(op::SESSIONS_LIST).await?;
            let sql = concat!(
                "SELECT ",
                columns!(),
                " FROM sessions s WHERE s.tenant_id = $1 AND s.user_id = $2 \
                 AND s.idle_expires_at > $3 AND s.expires_at > $3 ORDER BY s.created_at DESC, s.id DESC LIMIT 1000"
            );
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [tenant.as_uuid(), user.as_uuid(), &now];
            let rows = tenant_read(&client, tenant, sql, &params, 16).await?;
            rows.iter().map(session_from_row).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn end(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: Option<UserId>,
        trail: &AuditTrail,
    ) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op::SESSIONS_END).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let delete = tx
                .prepare_cached(
                    "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2 AND ($3::uuid IS NULL OR user_id = $3)",
                )
                .await
                .or_db()?;
            let n = tx
                .execute(&delete, &[tenant.as_uuid(), session.as_uuid(), &user.map(|u| *u.as_uuid())])
                .await
                .or_db()?;
            if n > 0 {
                crate::audit::append(&tx, tenant, trail).await?;
            }
            tx.commit().await.or_db()?;
            Ok(n > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn end_all(
        &self,
        tenant: TenantId,
        user: UserId,
        except: Option<SessionId>,
        trail: &AuditTrail,
    ) -> Result<u64> {
        self.bounded(async {
            let mut client = self.conn(op::SESSIONS_END_ALL).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let n = end_sessions(&tx, tenant, user, except).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(n)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, hash, trail))]
    async fn change_password(
        &self,
        tenant: TenantId,
        user: UserId,
        hash: &PasswordHash,
        keep: SessionId,
        trail: &AuditTrail,
    ) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::SESSIONS_CHANGE_PASSWORD).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let update = tx
                .prepare_cached("UPDATE users SET password_hash = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2")
                .await
                .or_db()?;
            let n = tx
                .execute(&update, &[tenant.as_uuid(), user.as_uuid(), &hash.as_str(), &self.clock.now()])
                .await
                .or_db()?;
            if n == 0 {
                return Err(Error::NotFound);
            }
            end_sessions(&tx, tenant, user, Some(keep)).await?;
            crate::accounts::spend_all(&tx, tenant, user, plinth_domain::values::Purpose::PasswordReset).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn prune(&self, now: OffsetDateTime) -> Result<u64> {
        self.bounded(async {
            let client = self.conn(op::SESSIONS_PRUNE).await?;
            let rows = unscoped(&client, "SELECT plinth_prune_sessions($1)", &[&now], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("prune"))?;
            Ok(u64::try_from(row.try_get::<_, i64>(0).or_db()?).unwrap_or(0))
        })
        .await
    }
}
