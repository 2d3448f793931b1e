//! Webhooks and their deliveries; deliveries are written by `store_events`, in the same
//! transaction as the project change that caused them.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Delivery, DeliveryState, Webhook, WebhookHealth, WebhookState};
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::{DeliveryId, EmailId, EventId, TenantId, WebhookId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{
    CountCheck, FailingLongEnough, IdempotentWrite, Keyed, Recovered, Recovery, WebhookChange, WebhookEventsFor,
    WebhookRepository,
};
use plinth_domain::values::Purpose;
use plinth_domain::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{OrDb as _, corrupt};
use crate::idempotency::take_key;
use crate::keyset::{Keyset, keyset};
use crate::op;
use crate::pool::{PgStore, Tx, stale_read, tenant_read, tenant_tx};

macro_rules! columns {
    () => {
        "tenant_id, id, url, events, created_at, rate_limit_per_second, previous_secret_expires_at, enabled, \
         disabled_reason, disabled_at, last_success_at, consecutive_failures, failing_since"
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
    let rate: Option<i32> = row.try_get("rate_limit_per_second").or_db()?;
    Ok(Webhook {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: WebhookId::from_uuid(row.try_get("id").or_db()?),
        url: row.try_get("url").or_db()?,
        events: events
            .iter()
            .map(|e| EventKind::parse(e).ok_or_else(|| corrupt("event kind")))
            .collect::<Result<_>>()?,
        created_at: row.try_get("created_at").or_db()?,
        rate_limit_per_second: rate.map(|r| u32::try_from(r).map_err(|_| corrupt("rate limit"))).transpose()?,
        rotation_ends_at: row.try_get("previous_secret_expires_at").or_db()?,
        health: health_from_row(row)?,
    })
}

/// A webhook's state and health, from a row with its columns.
pub(crate) fn health_from_row(row: &Row) -> Result<WebhookHealth> {
    let enabled: bool = row.try_get("enabled").or_db()?;
    let failures: i32 = row.try_get("consecutive_failures").or_db()?;
    Ok(WebhookHealth {
        state: if enabled { WebhookState::Enabled } else { WebhookState::Disabled },
        disabled_reason: row.try_get("disabled_reason").or_db()?,
        disabled_at: row.try_get("disabled_at").or_db()?,
        last_success_at: row.try_get("last_success_at").or_db()?,
        consecutive_failures: u32::try_from(failures).map_err(|_| corrupt("failures"))?,
        failing_since: row.try_get("failing_since").or_db()?,
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

/// One pending delivery per enabled webhook of the event's tenant subscribed to its kind, each
/// with its job; returns how many.
pub(crate) async fn create_deliveries(tx: &Tx<'_>, event: &DomainEvent) -> Result<usize> {
    let subscribed = tx
        .prepare_cached("SELECT id FROM webhooks WHERE tenant_id = $1 AND enabled AND $2 = ANY(events)")
        .await
        .or_db()?;
    let hooks = tx.query(&subscribed, &[event.tenant_id.as_uuid(), &event.kind.as_str()]).await.or_db()?;
    for hook in &hooks {
        let webhook: Uuid = hook.try_get(0).or_db()?;
        let delivery = insert_delivery(tx, WebhookId::from_uuid(webhook), event).await?;
        crate::jobs::enqueue_delivery(tx, event.tenant_id, delivery.id).await?;
    }
    Ok(hooks.len())
}

/// A new pending delivery of `event` to `webhook`, in the caller's transaction (without its job).
async fn insert_delivery(tx: &Tx<'_>, webhook: WebhookId, event: &DomainEvent) -> Result<Delivery> {
    let insert = tx
        .prepare_cached(concat!(
            "INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
            delivery_columns!()
        ))
        .await
        .or_db()?;
    let row = tx
        .query_one(
            &insert,
            &[
                event.tenant_id.as_uuid(),
                DeliveryId::new().as_uuid(),
                webhook.as_uuid(),
                event.id.as_uuid(),
                &event.kind.as_str(),
                &event.created_at,
            ],
        )
        .await
        .or_db()?;
    delivery_from_row(&row)
}

/// Applies `change` at `at` to the webhook in the caller's transaction; returns it as it left
/// it. Disabling skips its pending deliveries and drops their jobs. Errors: `NotFound`.
async fn apply_change(
    tx: &Tx<'_>,
    tenant: TenantId,
    id: WebhookId,
    change: &WebhookChange,
    at: OffsetDateTime,
) -> Result<Webhook> {
    let lock =
        tx.prepare_cached("SELECT enabled FROM webhooks WHERE tenant_id = $1 AND id = $2 FOR UPDATE").await.or_db()?;
    let was_enabled: bool = tx
        .query_opt(&lock, &[tenant.as_uuid(), id.as_uuid()])
        .await
        .or_db()?
        .ok_or(Error::NotFound)?
        .try_get(0)
        .or_db()?;
    let events: Option<Vec<&str>> = change.events.as_ref().map(|e| e.iter().map(|k| k.as_str()).collect());
    let rate: Option<i32> = change.rate_limit_per_second.flatten().map(|r| i32::try_from(r).unwrap_or(i32::MAX));
    let q = tx
        .prepare_cached(concat!(
            "UPDATE webhooks SET \
                 url = coalesce($3, url), \
                 events = coalesce($4, events), \
                 rate_limit_per_second = CASE WHEN $5 THEN $6 ELSE rate_limit_per_second END, \
                 next_slot_at = CASE WHEN $5 THEN NULL ELSE next_slot_at END, \
                 enabled = coalesce($7, enabled), \
                 disabled_reason = CASE WHEN $7 IS NULL OR $7 = enabled THEN disabled_reason \
                                        WHEN $7 THEN NULL ELSE $8 END, \
                 disabled_at = CASE WHEN $7 IS NULL OR $7 = enabled THEN disabled_at WHEN $7 THEN NULL ELSE $9 END, \
                 consecutive_failures = CASE WHEN $7 AND NOT enabled THEN 0 ELSE consecutive_failures END, \
                 failing_since = CASE WHEN $7 AND NOT enabled THEN NULL ELSE failing_since END \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            columns!()
        ))
        .await
        .or_db()?;
    let row = tx
        .query_one(
            &q,
            &[
                tenant.as_uuid(),
                id.as_uuid(),
                &change.url,
                &events,
                &change.rate_limit_per_second.is_some(),
                &rate,
                &change.enabled,
                &change.disabled_reason,
                &at,
            ],
        )
        .await
        .or_db()?;
    if was_enabled && change.enabled == Some(false) {
        let skip = tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET state = 'skipped', slot_at = NULL, updated_at = $3 \
                 WHERE tenant_id = $1 AND webhook_id = $2 AND state = 'pending' RETURNING id",
            )
            .await
            .or_db()?;
        let skipped: Vec<Uuid> = tx
            .query(&skip, &[tenant.as_uuid(), id.as_uuid(), &at])
            .await
            .or_db()?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .or_db()?;
        crate::jobs::drop_delivery_jobs(tx, tenant, &skipped).await?;
    }
    webhook_from_row(&row)
}

/// Fails with `NotFound` unless the tenant has webhook `id` (locked until the caller's commit,
/// so it can't be deleted meanwhile).
async fn lock_webhook(tx: &Tx<'_>, tenant: TenantId, id: WebhookId) -> Result<()> {
    let q = tx.prepare_cached("SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2 FOR SHARE").await.or_db()?;
    tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?.ok_or(Error::NotFound)?;
    Ok(())
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
        self.bounded(stale_read!(self, op::WEBHOOKS_LIST, tenant, |client| {
            let rows = LIST.page(&client, tenant, &[tenant.as_uuid()], after, limit).await?;
            rows.iter().map(webhook_from_row).collect()
        }))
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
        self.bounded(stale_read!(self, op::WEBHOOKS_DELIVERIES, tenant, |client| {
            let rows = DELIVERIES.page(&client, tenant, &[tenant.as_uuid(), webhook.as_uuid()], after, limit).await?;
            // An empty page is also what a webhook that isn't the tenant's has: tell them apart.
            if rows.is_empty() {
                let sql = "SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2";
                if tenant_read(&client, tenant, sql, &[tenant.as_uuid(), webhook.as_uuid()], 1).await?.is_empty() {
                    return Err(Error::NotFound);
                }
            }
            rows.iter().map(delivery_from_row).collect()
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, tenant: TenantId, id: WebhookId) -> Result<Option<Webhook>> {
        self.bounded(async {
            let client = self.conn(op::WEBHOOKS_GET).await?;
            let sql = concat!("SELECT ", columns!(), " FROM webhooks WHERE tenant_id = $1 AND id = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            rows.first().map(webhook_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, change, trail))]
    async fn update(
        &self,
        tenant: TenantId,
        id: WebhookId,
        change: &WebhookChange,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Webhook> {
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_UPDATE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let webhook = apply_change(&tx, tenant, id, change, at).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(webhook)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events, trail))]
    async fn disable_failing(
        &self,
        tenant: TenantId,
        id: WebhookId,
        failing: FailingLongEnough,
        reason: &str,
        events: WebhookEventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Option<Webhook>> {
        let at = failing.at;
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_DISABLE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let due = tx
                .prepare_cached(
                    "SELECT 1 FROM webhooks WHERE tenant_id = $1 AND id = $2 AND enabled \
                     AND consecutive_failures >= $3 AND failing_since <= $4 FOR UPDATE",
                )
                .await
                .or_db()?;
            let min = i32::try_from(failing.min_failures).unwrap_or(i32::MAX);
            if tx.query_opt(&due, &[tenant.as_uuid(), id.as_uuid(), &min, &failing.failing_before]).await.or_db()?.is_none()
            {
                return Ok(None);
            }
            let change = WebhookChange {
                enabled: Some(false),
                disabled_reason: Some(reason.to_owned()),
                ..WebhookChange::default()
            };
            let webhook = apply_change(&tx, tenant, id, &change, at).await?;
            crate::projects::store_events(&tx, &events(&webhook), i64::MAX).await?;
            let managers = tx
                .prepare_cached("SELECT email FROM users WHERE tenant_id = $1 AND role IN ('owner', 'admin')")
                .await
                .or_db()?;
            let notice = tx
                .prepare_cached(
                    "INSERT INTO outbound_emails (tenant_id, id, purpose, recipient, webhook_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .await
                .or_db()?;
            for row in tx.query(&managers, &[tenant.as_uuid()]).await.or_db()? {
                let to: String = row.try_get(0).or_db()?;
                let email = EmailId::new();
                let purpose = Purpose::WebhookDisabled.as_str();
                tx.execute(&notice, &[tenant.as_uuid(), email.as_uuid(), &purpose, &to, id.as_uuid(), &at])
                    .await
                    .or_db()?;
                crate::jobs::enqueue_email(&tx, tenant, email).await?;
            }
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(Some(webhook))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, sealed, trail))]
    async fn rotate_secret(
        &self,
        tenant: TenantId,
        id: WebhookId,
        sealed: &[u8],
        keep_previous_until: Option<OffsetDateTime>,
        trail: &AuditTrail,
    ) -> Result<Webhook> {
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_ROTATE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!(
                    "UPDATE webhooks SET \
                         previous_secret_sealed = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret_sealed END, \
                         previous_secret_expires_at = $4, secret_sealed = $3 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING ",
                    columns!()
                ))
                .await
                .or_db()?;
            let row = tx
                .query_opt(&q, &[tenant.as_uuid(), id.as_uuid(), &sealed, &keep_previous_until])
                .await
                .or_db()?
                .ok_or(Error::NotFound)?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            webhook_from_row(&row)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, event, trail))]
    async fn send_event(&self, id: WebhookId, event: &DomainEvent, trail: &AuditTrail) -> Result<Delivery> {
        let tenant = event.tenant_id;
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_SEND).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            lock_webhook(&tx, tenant, id).await?;
            crate::projects::insert_event(&tx, event).await?;
            let delivery = insert_delivery(&tx, id, event).await?;
            crate::jobs::enqueue_delivery(&tx, tenant, delivery.id).await?;
            crate::jobs::check_room(&tx, tenant, self.max_pending_jobs).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(delivery)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn retry_delivery(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        delivery: DeliveryId,
        at: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Delivery> {
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_RETRY).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!(
                    "UPDATE webhook_deliveries SET state = 'pending', slot_at = NULL, updated_at = $4 \
                     WHERE tenant_id = $1 AND webhook_id = $2 AND id = $3 RETURNING ",
                    delivery_columns!()
                ))
                .await
                .or_db()?;
            let row = tx
                .query_opt(&q, &[tenant.as_uuid(), webhook.as_uuid(), delivery.as_uuid(), &at])
                .await
                .or_db()?
                .ok_or(Error::NotFound)?;
            crate::jobs::schedule_deliveries(&tx, tenant, &[(*delivery.as_uuid(), at)]).await?;
            crate::jobs::check_room(&tx, tenant, self.max_pending_jobs).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            delivery_from_row(&row)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn recover(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        recovery: &Recovery,
        trail: &AuditTrail,
    ) -> Result<Recovered> {
        // One more than the limit: whether any is left over.
        let limit = i64::try_from(recovery.limit).unwrap_or(i64::MAX - 1) + 1;
        self.bounded(async {
            let mut client = self.conn(op::WEBHOOKS_RECOVER).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            lock_webhook(&tx, tenant, webhook).await?;
            let failed = tx
                .prepare_cached(
                    "SELECT id, created_at FROM webhook_deliveries \
                     WHERE tenant_id = $1 AND webhook_id = $2 AND created_at >= $3 \
                       AND (state IN ('dead', 'skipped') OR (state = 'pending' AND attempts > 0)) \
                     ORDER BY created_at, id LIMIT $4 FOR UPDATE",
                )
                .await
                .or_db()?;
            let rows =
                tx.query(&failed, &[tenant.as_uuid(), webhook.as_uuid(), &recovery.since, &limit]).await.or_db()?;
            let next_since = match rows.get(recovery.limit) {
                Some(row) => Some(row.try_get::<_, OffsetDateTime>("created_at").or_db()?),
                None => None,
            };
            let mut due = recovery.now;
            let mut chosen = Vec::with_capacity(rows.len().min(recovery.limit));
            for row in rows.iter().take(recovery.limit) {
                chosen.push((row.try_get::<_, Uuid>("id").or_db()?, due));
                due += recovery.spacing;
            }
            let ids: Vec<Uuid> = chosen.iter().map(|(id, _)| *id).collect();
            let resend = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = 'pending', slot_at = NULL, updated_at = $3 \
                     WHERE tenant_id = $1 AND id = ANY ($2)",
                )
                .await
                .or_db()?;
            tx.execute(&resend, &[tenant.as_uuid(), &ids, &recovery.now]).await.or_db()?;
            crate::jobs::schedule_deliveries(&tx, tenant, &chosen).await?;
            if !chosen.is_empty() {
                crate::jobs::check_room(&tx, tenant, self.max_pending_jobs).await?;
            }
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(Recovered { deliveries: chosen.len() as u64, next_since })
        })
        .await
    }
}
