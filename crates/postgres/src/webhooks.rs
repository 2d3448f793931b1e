//! Webhooks and their deliveries; deliveries are written by `store_events`, in the same
//! transaction as the project change that caused them.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use plinth_domain::entities::{Delivery, DeliveryState, Webhook};
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::{DeliveryId, EventId, TenantId, WebhookId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::WebhookRepository;
use plinth_domain::{Error, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{self, corrupt};
use crate::pool::{PgStore, tenant_tx};

fn webhook_from_row(row: &Row) -> Result<Webhook> {
    let events: Vec<String> = row.try_get("events").map_err(error::db)?;
    Ok(Webhook {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").map_err(error::db)?),
        id: WebhookId::from_uuid(row.try_get("id").map_err(error::db)?),
        url: row.try_get("url").map_err(error::db)?,
        events: events
            .iter()
            .map(|e| EventKind::parse(e).ok_or_else(|| corrupt("event kind")))
            .collect::<Result<_>>()?,
        created_at: row.try_get("created_at").map_err(error::db)?,
    })
}

pub(crate) fn delivery_from_row(row: &Row) -> Result<Delivery> {
    let attempts: i32 = row.try_get("attempts").map_err(error::db)?;
    Ok(Delivery {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").map_err(error::db)?),
        id: DeliveryId::from_uuid(row.try_get("id").map_err(error::db)?),
        webhook_id: WebhookId::from_uuid(row.try_get("webhook_id").map_err(error::db)?),
        event_id: EventId::from_uuid(row.try_get("event_id").map_err(error::db)?),
        event: EventKind::parse(row.try_get("event").map_err(error::db)?).ok_or_else(|| corrupt("event kind"))?,
        state: DeliveryState::parse(row.try_get("state").map_err(error::db)?).ok_or_else(|| corrupt("state"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        last_error: row.try_get("last_error").map_err(error::db)?,
        created_at: row.try_get("created_at").map_err(error::db)?,
    })
}

/// One pending delivery per webhook of the event's tenant subscribed to its kind, each with its
/// job; returns how many.
pub(crate) async fn create_deliveries(tx: &Transaction<'_>, event: &DomainEvent) -> Result<usize> {
    let subscribed = tx
        .prepare_cached("SELECT id FROM webhooks WHERE tenant_id = $1 AND $2 = ANY(events)")
        .await
        .map_err(error::db)?;
    let hooks = tx.query(&subscribed, &[event.tenant_id.as_uuid(), &event.kind.as_str()]).await.map_err(error::db)?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .await
        .map_err(error::db)?;
    for hook in &hooks {
        let webhook: Uuid = hook.try_get(0).map_err(error::db)?;
        let delivery = DeliveryId::new();
        tx.execute(
            &insert,
            &[
                event.tenant_id.as_uuid(),
                delivery.as_uuid(),
                &webhook,
                event.id.as_uuid(),
                &event.kind.as_str(),
                &event.created_at,
            ],
        )
        .await
        .map_err(error::db)?;
        crate::jobs::enqueue_delivery(tx, event.tenant_id, delivery).await?;
    }
    Ok(hooks.len())
}

#[async_trait]
impl WebhookRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %webhook.tenant_id))]
    async fn create(&self, webhook: &Webhook, sealed_secret: &[u8]) -> Result<()> {
        let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, webhook.tenant_id).await?;
            let q = tx
                .prepare_cached(
                    "INSERT INTO webhooks (tenant_id, id, url, events, secret_sealed, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await
                .map_err(error::db)?;
            tx.execute(
                &q,
                &[
                    webhook.tenant_id.as_uuid(),
                    webhook.id.as_uuid(),
                    &webhook.url,
                    &events,
                    &sealed_secret,
                    &webhook.created_at,
                ],
            )
            .await
            .map_err(error::db)?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Webhook>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (at, id) = after.map_or((None, None), |c| (Some(c.created_at), Some(c.id)));
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(
                    "SELECT tenant_id, id, url, events, created_at FROM webhooks WHERE tenant_id = $1 \
                     AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
                     ORDER BY created_at DESC, id DESC LIMIT $4",
                )
                .await
                .map_err(error::db)?;
            let rows = tx.query(&q, &[tenant.as_uuid(), &at, &id, &limit]).await.map_err(error::db)?;
            let hooks = rows.iter().map(webhook_from_row).collect::<Result<Vec<_>>>()?;
            tx.commit().await.map_err(error::db)?;
            Ok(hooks)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn delete(&self, tenant: TenantId, id: WebhookId) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q =
                tx.prepare_cached("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2").await.map_err(error::db)?;
            let deleted = tx.execute(&q, &[tenant.as_uuid(), id.as_uuid()]).await.map_err(error::db)?;
            tx.commit().await.map_err(error::db)?;
            if deleted == 0 { Err(Error::NotFound) } else { Ok(()) }
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn deliveries(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (at, id) = after.map_or((None, None), |c| (Some(c.created_at), Some(c.id)));
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2")
                .await
                .map_err(error::db)?;
            if tx.query_opt(&exists, &[tenant.as_uuid(), webhook.as_uuid()]).await.map_err(error::db)?.is_none() {
                return Err(Error::NotFound);
            }
            let q = tx
                .prepare_cached(
                    "SELECT tenant_id, id, webhook_id, event_id, event, state, attempts, last_error, created_at \
                     FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2 \
                     AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
                     ORDER BY created_at DESC, id DESC LIMIT $5",
                )
                .await
                .map_err(error::db)?;
            let rows =
                tx.query(&q, &[tenant.as_uuid(), webhook.as_uuid(), &at, &id, &limit]).await.map_err(error::db)?;
            let deliveries = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>>>()?;
            tx.commit().await.map_err(error::db)?;
            Ok(deliveries)
        })
        .await
    }
}
