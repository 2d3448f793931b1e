//! Idempotency keys: claimed with one upsert, so two concurrent requests can't both run.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::ports::{Claim, IdempotencyScope, IdempotencyStore, StoredResponse};
use plinth_domain::{Error, Result, clock};
use uuid::Uuid;

use crate::error;
use crate::pool::{PgStore, tenant_tx};

#[async_trait]
impl IdempotencyStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %scope.tenant))]
    async fn claim(&self, scope: &IdempotencyScope, fingerprint: u128, ttl: Duration) -> Result<Claim> {
        let now = clock::now();
        let expires_at = now + ttl;
        let fingerprint = Uuid::from_u128(fingerprint);
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, scope.tenant).await?;
            // A new key, or an expired one, is (re)claimed; a live one is left as it is.
            let claim = tx
                .prepare_cached(
                    "INSERT INTO idempotency_keys (tenant_id, user_id, key, fingerprint, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (tenant_id, user_id, key) DO UPDATE \
                       SET fingerprint = EXCLUDED.fingerprint, status = NULL, body = NULL, location = NULL, \
                           created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
                       WHERE idempotency_keys.expires_at <= EXCLUDED.created_at \
                     RETURNING 1",
                )
                .await
                .map_err(error::db)?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [scope.tenant.as_uuid(), scope.user.as_uuid(), &scope.key.as_str(), &fingerprint, &now, &expires_at];
            let claimed = tx.query_opt(&claim, &params).await.map_err(error::db)?.is_some();
            let outcome = if claimed {
                Claim::Acquired
            } else {
                let existing = tx
                    .prepare_cached(
                        "SELECT fingerprint, status, body, location FROM idempotency_keys \
                         WHERE tenant_id = $1 AND user_id = $2 AND key = $3",
                    )
                    .await
                    .map_err(error::db)?;
                let row = tx
                    .query_one(&existing, &[scope.tenant.as_uuid(), scope.user.as_uuid(), &scope.key.as_str()])
                    .await
                    .map_err(error::db)?;
                let stored: Uuid = row.try_get(0).map_err(error::db)?;
                let status: Option<i16> = row.try_get(1).map_err(error::db)?;
                if stored != fingerprint {
                    Claim::Mismatch
                } else if let Some(status) = status {
                    Claim::Replay(StoredResponse {
                        status: u16::try_from(status).map_err(Error::internal)?,
                        body: Bytes::from(row.try_get::<_, Option<Vec<u8>>>(2).map_err(error::db)?.unwrap_or_default()),
                        location: row.try_get(3).map_err(error::db)?,
                    })
                } else {
                    Claim::InProgress
                }
            };
            tx.commit().await.map_err(error::db)?;
            Ok(outcome)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %scope.tenant))]
    async fn complete(&self, scope: &IdempotencyScope, response: &StoredResponse) -> Result<()> {
        let status = i16::try_from(response.status).map_err(Error::internal)?;
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, scope.tenant).await?;
            let q = tx
                .prepare_cached(
                    "UPDATE idempotency_keys SET status = $4, body = $5, location = $6 \
                     WHERE tenant_id = $1 AND user_id = $2 AND key = $3",
                )
                .await
                .map_err(error::db)?;
            let body: &[u8] = &response.body;
            tx.execute(
                &q,
                &[
                    scope.tenant.as_uuid(),
                    scope.user.as_uuid(),
                    &scope.key.as_str(),
                    &status,
                    &body,
                    &response.location,
                ],
            )
            .await
            .map_err(error::db)?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %scope.tenant))]
    async fn release(&self, scope: &IdempotencyScope) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, scope.tenant).await?;
            let q = tx
                .prepare_cached("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND user_id = $2 AND key = $3")
                .await
                .map_err(error::db)?;
            tx.execute(&q, &[scope.tenant.as_uuid(), scope.user.as_uuid(), &scope.key.as_str()])
                .await
                .map_err(error::db)?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }
}
