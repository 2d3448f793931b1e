//! Webhooks and their deliveries; deliveries are written by `store_events`, in the same
//! transaction as the project change that caused them.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Delivery, DeliveryState, Webhook};
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::{DeliveryId, EventId, TenantId, WebhookId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{CountCheck, IdempotentWrite, Keyed, WebhookRepository};
use plinth_domain::{Error, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{OrDb as _, corrupt};
use crate::idempotency::take_key;
use crate::keyset::{Keyset, keyset};
use crate::op;
use crate::pool::{PgStore, tenant_read, tenant_tx};

macro_rules! columns {
    () => {
        "tenant_id, id, url, events, created_at"
    };
}

macro_rules! delivery_columns {
    () => {
        "tenant_id, id, webhook_id, event_id, event, state, attempts, last_error, created_at"
    };
}

/// The tenant's webhooks, newest first.
pub const LIST: Keyset = keyset!(columns!(), from "webhooks" where "tenant_id = $1",
    first limit "$2", after ("$2", "$3") limit "$4");

/// One webhook's deliveries, newest first.
pub const DELIVERIES: Keyset = keyset!(
    delivery_columns!(),
    from "webhook_deliveries" where "tenant_id = $1 AND webhook_id = $2",
    first limit "$3", after ("$3", "$4") limit "$5");

/// The tenant's webhooks, for its export (by id): never the sealed secret.
pub(crate) const EXPORT: &str = concat!("SELECT ", columns!(), " FROM webhooks WHERE tenant_id = $1 ORDER BY id");

/// The tenant's deliveries, for its export (by id).
pub(crate) const EXPORT_DELIVERIES: &str =
    concat!("SELECT ", delivery_columns!(), " FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY id");

pub(crate) fn webhook_from_row(row: &Row) -> Result<Webhook> {
    let events: Vec<String> = row.try_get("events").or_db()?;
    Ok(Webhook {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: WebhookId::from_uuid(row.try_get("id").or_db()?),
        url: row.try_get("url").or_db()?,
        events: events
            .iter()
            .map(|e| EventKind::parse(e).ok_or_else(|| corrupt("event kind")))
            .collect::<Result<_>>()?,
        created_at: row.try_get("created_at").or_db()?,
    })
}

pub(crate) fn delivery_from_row(row: &Row) -> Result<Delivery> {
    let attempts: i32 = row.try_get("attempts").or_db()?;
    Ok(Delivery {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: DeliveryId::from_uuid(row.try_get("id").or_db()?),
        webhook_id: WebhookId::from_uuid(row.try_get("webhook_id").or_db()?),
        event_id: EventId::from_uuid(row.try_get("event_id").or_db()?),
        event: EventKind::parse(row.try_get("event").or_db()?).ok_or_else(|| corrupt("event kind"))?,
        state: DeliveryState::parse(row.try_get("state").or_db()?).ok_or_else(|| corrupt("state"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        last_error: row.try_get("last_error").or_db()?,
        created_at: row.try_get("created_at").or_db()?,
    })
}

/// One pending delivery per webhook of the event's tenant subscribed to its kind, each with its
/// job; returns how many.
pub(crate) async fn create_deliveries(tx: &Transaction<'_>, event: &DomainEvent) -> Result<usize> {
    let subscribed =
        tx.prepare_cached("SELECT id FROM webhooks WHERE tenant_id = $1 AND $2 = ANY(events)").await.or_db()?;
    let hooks = tx.query(&subscribed, &[event.tenant_id.as_uuid(), &event.kind.as_str()]).await.or_db()?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .await
        .or_db()?;
    for hook in &hooks {
        let webhook: Uuid = hook.try_get(0).or_db()?;
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
        .or_db()?;
        crate::jobs::enqueue_delivery(tx, event.tenant_id, delivery).await?;
    }
    Ok(hooks.len())
}

#[async_trait]
impl WebhookRepository for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %webhook.tenant_id))]
    async fn create(
        &self,
        webhook: &Webhook,
        sealed_secret: &[u8],
        check: CountCheck<'_>,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
    ) -> Result<Keyed> {
        let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_CREATE).await?;
            let tx = tenant_tx(&mut client, webhook.tenant_id).await?;
            if !take_key(&tx, key, self.clock.now()).await? {
                return Ok(Keyed::KeyTaken);
            }
            // Creations of one tenant take turns from here to their commit, so the count they
            // check can't be overtaken by another's insert.
            let lock = tx
                .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('plinth.webhooks:' || $1::text, 0))")
                .await
                .or_db()?;
            tx.execute(&lock, &[&webhook.tenant_id.to_string()]).await.or_db()?;
            let count = tx.prepare_cached("SELECT count(*) FROM webhooks WHERE tenant_id = $1").await.or_db()?;
            let existing: i64 =
                tx.query_one(&count, &[webhook.tenant_id.as_uuid()]).await.or_db()?.try_get(0).or_db()?;
            check(usize::try_from(existing).unwrap_or(usize::MAX))?;
            let q = tx
                .prepare_cached(
                    "INSERT INTO webhooks (tenant_id, id, url, events, secret_sealed, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await
                .or_db()?;
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
            .or_db()?;
            crate::audit::append(&tx, webhook.tenant_id, trail).await?;
            tx.commit().await.or_db()?;
            Ok(Keyed::Written)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Webhook>> {
        self.bounded(async {
            let client = self.conn(op::WEBHOOKS_LIST).await?;
            let rows = LIST.page(&client, tenant, &[tenant.as_uuid()], after, limit).await?;
            rows.iter().map(webhook_from_row).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn delete(&self, tenant: TenantId, id: WebhookId, trail: &AuditTrail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_DELETE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx.prepare_cached("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2").await.or_db()?;
            let deleted = tx.execute(&q, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
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
        self.bounded(async {
            let client = self.conn(op::WEBHOOKS_DELIVERIES).await?;
            let rows = DELIVERIES.page(&client, tenant, &[tenant.as_uuid(), webhook.as_uuid()], after, limit).await?;
            // An empty page is also what a webhook that isn't the tenant's has: tell them apart.
            if rows.is_empty() {
                let sql = "SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2";
                if tenant_read(&client, tenant, sql, &[tenant.as_uuid(), webhook.as_uuid()], 1).await?.is_empty() {
                    return Err(Error::NotFound);
                }
            }
            rows.iter().map(delivery_from_row).collect()
        })
        .await
    }
}
