//! Idempotency keys: stored by the write they guard, in its transaction ([`store_key`]), and
//! looked up here.

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::ports::{IdempotencyScope, IdempotencyStore, IdempotentWrite, Lookup, StoredResponse};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::OrDb as _;
use crate::op;
use crate::pool::{PgStore, Tx, tenant_read, tenant_tx};

/// Stores `write`'s key and answer in the caller's transaction unless the key is live; returns
/// whether it did. A live key stored by a transaction still open makes this wait for it: if
/// that one commits, this finds the key taken; if it rolls back, this takes the key.
///
/// A row without an answer was left "in progress" by an earlier version of plinth, which
/// claimed keys in a transaction of their own; such a claim is taken over at once.
pub(crate) async fn store_key(tx: &Tx<'_>, write: &IdempotentWrite, now: OffsetDateTime) -> Result<bool> {
    let q = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys \
               (tenant_id, user_id, key, fingerprint, status, body, location, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, user_id, key) DO UPDATE \
               SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, body = EXCLUDED.body, \
                   location = EXCLUDED.location, created_at = EXCLUDED.created_at, \
                   expires_at = EXCLUDED.expires_at \
               WHERE idempotency_keys.expires_at <= EXCLUDED.created_at OR idempotency_keys.status IS NULL \
             RETURNING 1",
        )
        .await
        .or_db()?;
    let scope = &write.scope;
    let status = i16::try_from(write.response.status).map_err(Error::internal)?;
    let body: &[u8] = &write.response.body;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        scope.tenant.as_uuid(),
        scope.user.as_uuid(),
        &scope.key.as_str(),
        &Uuid::from_u128(write.fingerprint),
        &status,
        &body,
        &write.response.location,
        &now,
        &write.expires_at,
    ];
    Ok(tx.query_opt(&q, &params).await.or_db()?.is_some())
}

/// Stores `key` in the caller's transaction when there is one; `false` when it is live already
/// (the caller then writes nothing and lets the transaction roll back).
pub(crate) async fn take_key(tx: &Tx<'_>, key: Option<&IdempotentWrite>, now: OffsetDateTime) -> Result<bool> {
    match key {
        Some(key) => store_key(tx, key, now).await,
        None => Ok(true),
    }
}

#[async_trait]
impl IdempotencyStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %scope.tenant))]
    async fn lookup(&self, scope: &IdempotencyScope, fingerprint: u128) -> Result<Lookup> {
        self.bounded(async {
            let client = self.conn(op::IDEMPOTENCY_LOOKUP).await?;
            let sql = "SELECT fingerprint, status, body, location FROM idempotency_keys \
                       WHERE tenant_id = $1 AND user_id = $2 AND key = $3 AND expires_at > $4 \
                         AND status IS NOT NULL";
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [scope.tenant.as_uuid(), scope.user.as_uuid(), &scope.key.as_str(), &self.clock.now()];
            let rows = tenant_read(&client, scope.tenant, sql, &params, 1).await?;
            let Some(row) = rows.first() else { return Ok(Lookup::New) };
            let stored: Uuid = row.try_get(0).or_db()?;
            if stored != Uuid::from_u128(fingerprint) {
                return Ok(Lookup::Mismatch);
            }
            let status: i16 = row.try_get(1).or_db()?;
            Ok(Lookup::Replay(StoredResponse {
                status: u16::try_from(status).map_err(Error::internal)?,
                body: Bytes::from(row.try_get::<_, Option<Vec<u8>>>(2).or_db()?.unwrap_or_default()),
                location: row.try_get(3).or_db()?,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %write.scope.tenant))]
    async fn record(&self, write: &IdempotentWrite) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::IDEMPOTENCY_RECORD).await?;
            let tx = tenant_tx(&mut client, write.scope.tenant).await?;
            store_key(&tx, write, self.clock.now()).await?;
            tx.commit().await.or_db()
        })
        .await
    }
}
