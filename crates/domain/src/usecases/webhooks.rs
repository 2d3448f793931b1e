//! Webhook subscriptions: registered with a guarded URL and a secret shown once; changed,
//! enabled and disabled, their secrets rotated with an overlap, tested, and their failed
//! deliveries sent again.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use super::Plinth;
use crate::audit::Target;
use crate::entities::{Delivery, Webhook, url_origin};
use crate::error::{Conflict, Error, FieldError, Result};
use crate::events::{DomainEvent, EventKind};
use crate::ids::{DeliveryId, WebhookId};
use crate::page::{Cursor, Page, PageRequest};
use crate::ports::{IdempotentWrite, Recovered, Recovery, WebhookChange};
use crate::usecases::{Answer, Idempotency, Principal};

/// How long the previous secret still signs deliveries after a rotation, unless asked.
pub const DEFAULT_SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap a rotation may ask for.
pub const MAX_SECRET_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// The highest pace an endpoint may be given, in deliveries a second.
pub const MAX_RATE_LIMIT_PER_SECOND: u32 = 1000;
/// How fast `recover` sends an endpoint's failed deliveries again when the endpoint has no
/// pace of its own: one every this long.
pub const RECOVER_SPACING: Duration = Duration::from_millis(100);
/// The most deliveries one `recover` call sends again.
pub const RECOVER_LIMIT: usize = 1000;
/// The reason a webhook disabled by a member's `PATCH` carries.
const DISABLED_BY_MEMBER: &str = "disabled by a member";

/// A rotated webhook and its new secret, which is never shown again.
#[derive(Clone)]
pub struct RotatedSecret {
    /// The webhook, as the rotation left it.
    pub webhook: Webhook,
    /// The new signing secret (`whsec_…`).
    pub secret: String,
}

impl std::fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedSecret").field("webhook", &self.webhook).finish_non_exhaustive()
    }
}

/// A change a member asks for; what is `None` stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    /// A new URL (checked by the guard like a new webhook's).
    pub url: Option<String>,
    /// New event kinds.
    pub events: Option<Vec<String>>,
    /// Enable or disable it.
    pub enabled: Option<bool>,
    /// A new pace (deliveries a second, 1–1000), or `Some(None)` for none.
    pub rate_limit_per_second: Option<Option<u32>>,
}

/// A new signing secret: `whsec_` and 256 random bits.
fn new_secret() -> String {
    format!("whsec_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

/// The time between two deliveries at `per_second`.
fn interval(per_second: u32) -> Duration {
    Duration::from_secs(1) / per_second.max(1)
}

/// A new webhook and its secret, which is never shown again.
#[derive(Clone)]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// The signing secret (`whsec_…`).
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhook").field("webhook", &self.webhook).finish_non_exhaustive()
    }
}

/// How many webhooks a tenant may register.
const MAX_WEBHOOKS: usize = 100;

/// Refuses a webhook past [`MAX_WEBHOOKS`], given how many the tenant has.
fn within_limit(existing: usize) -> Result<()> {
    if existing >= MAX_WEBHOOKS {
        return Err(Error::invalid("url", "a tenant may register at most 100 webhooks"));
    }
    Ok(())
}

fn parse_events(events: &[String]) -> Result<Vec<EventKind>> {
    if events.is_empty() {
        return Err(Error::invalid("events", "must name at least one event"));
    }
    let mut kinds = Vec::new();
    for e in events {
        let kind = EventKind::parse(e).filter(|k| k.is_subscribable()).ok_or_else(|| {
            let kinds: Vec<&str> = EventKind::subscribable().map(EventKind::as_str).collect();
            Error::invalid("events", format!("must be among {}", kinds.join(", ")))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn webhook_cursor(w: &Webhook) -> Cursor {
    Cursor { created_at: w.created_at, id: *w.id.as_uuid() }
}

fn delivery_cursor(d: &Delivery) -> Cursor {
    Cursor { created_at: d.created_at, id: *d.id.as_uuid() }
}

impl Plinth {
    /// Registers a webhook, once per idempotency key. Errors: `Forbidden`; `Validation` (a URL
    /// the guard refuses, unknown events, past the per-tenant limit, which holds however many
    /// registrations run at once); `IdempotencyKeyReused`.
    #[tracing::instrument(level = "debug", skip(self, url, events, idempotency))]
    pub async fn create_webhook(
        &self,
        who: &Principal,
        url: &str,
        events: &[String],
        idempotency: Option<Idempotency<'_, CreatedWebhook>>,
    ) -> Result<Answer<CreatedWebhook>> {
        let prepare = async || {
            who.require_manager()?;
            let kinds = parse_events(events)?;
            let url = self.ports.url_guard.check(url).await?;
            let webhook = Webhook::new(WebhookId::new(), who.tenant, url, kinds, self.ports.clock.now());
            Ok(CreatedWebhook { webhook, secret: new_secret() })
        };
        let write = async |created: &CreatedWebhook, key: Option<&IdempotentWrite>| {
            let webhook = &created.webhook;
            let sealed = self.ports.secrets.seal(created.secret.as_bytes(), webhook.id.as_uuid().as_bytes())?;
            // Only the URL's origin: its path and query often carry a secret of their own, and
            // the log outlives the webhook (and is read by keys without `webhooks:read`).
            let changes = serde_json::json!({ "url": url_origin(&webhook.url), "events": webhook.events });
            let trail = self.audit(who.actor(), "webhook.created", Some(Target::new("webhook", webhook.id)), changes);
            let cap = who.limits.cap(crate::plans::Resource::Webhooks);
            let check = |n: usize| {
                within_limit(n)?;
                crate::plans::Cap::check_if(cap, n)
            };
            self.ports.webhooks.create(webhook, &sealed, &check, key, &trail).await
        };
        self.once(who, idempotency, prepare, write).await
    }

    /// A page of the tenant's webhooks (no secrets). Errors: `Forbidden`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_webhooks(&self, who: &Principal, page: &PageRequest) -> Result<Page<Webhook>> {
        who.require_manager()?;
        let rows = self.ports.webhooks.list(who.tenant, page.after.as_ref(), page.fetch_limit()).await?;
        let now = self.ports.clock.now();
        let rows = rows.into_iter().map(|w| w.as_of(now)).collect();
        Ok(Page::from_rows(rows, page, webhook_cursor, &self.settings.cursor_key))
    }

    /// Deletes a webhook. Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_webhook(&self, who: &Principal, id: WebhookId) -> Result<()> {
        who.require_manager()?;
        let trail = self.audit(who.actor(), "webhook.deleted", Some(Target::new("webhook", id)), serde_json::json!({}));
        self.ports.webhooks.delete(who.tenant, id, &trail).await
    }

    /// A page of a webhook's deliveries. Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_deliveries(&self, who: &Principal, id: WebhookId, page: &PageRequest) -> Result<Page<Delivery>> {
        who.require_manager()?;
        let rows = self.ports.webhooks.deliveries(who.tenant, id, page.after.as_ref(), page.fetch_limit()).await?;
        Ok(Page::from_rows(rows, page, delivery_cursor, &self.settings.cursor_key))
    }
}

impl Plinth {
    /// One of the tenant's webhooks, with its state and health. Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_webhook(&self, who: &Principal, id: WebhookId) -> Result<Webhook> {
        who.require_manager()?;
        let webhook = self.ports.webhooks.get(who.tenant, id).await?.ok_or(Error::NotFound)?;
        Ok(webhook.as_of(self.ports.clock.now()))
    }

    /// Changes a webhook's URL, events, state or pace. Enabling a disabled webhook starts its
    /// failure record again (its skipped deliveries stay skipped: `recover` sends them);
    /// disabling one skips its pending deliveries. Errors: `Forbidden`; `Validation` (a URL
    /// the guard refuses, unknown events, a pace out of 1–1000); `NotFound`.
    #[tracing::instrument(level = "debug", skip(self, patch))]
    pub async fn update_webhook(&self, who: &Principal, id: WebhookId, patch: &WebhookPatch) -> Result<Webhook> {
        who.require_manager()?;
        let mut errors = Vec::new();
        let events = match patch.events.as_deref().map(parse_events) {
            Some(Ok(kinds)) => Some(kinds),
            Some(Err(Error::Validation(fields))) => {
                errors.extend(fields);
                None
            }
            Some(Err(e)) => return Err(e),
            None => None,
        };
        if let Some(Some(rate)) = patch.rate_limit_per_second
            && !(1..=MAX_RATE_LIMIT_PER_SECOND).contains(&rate)
        {
            errors.push(FieldError::new("rate_limit_per_second", "must be between 1 and 1000, or null for no limit"));
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let url = match &patch.url {
            Some(url) => Some(self.ports.url_guard.check(url).await?),
            None => None,
        };
        let change = WebhookChange {
            url,
            events,
            enabled: patch.enabled,
            disabled_reason: (patch.enabled == Some(false)).then(|| DISABLED_BY_MEMBER.to_owned()),
            rate_limit_per_second: patch.rate_limit_per_second,
        };
        let mut changes = serde_json::Map::new();
        if let Some(url) = &change.url {
            changes.insert("url".into(), url_origin(url).into());
        }
        if let Some(events) = &change.events {
            changes.insert("events".into(), serde_json::json!(events));
        }
        if let Some(enabled) = change.enabled {
            changes.insert("enabled".into(), enabled.into());
        }
        if let Some(rate) = change.rate_limit_per_second {
            changes.insert("rate_limit_per_second".into(), serde_json::json!(rate));
        }
        let trail = self.audit(who.actor(), "webhook.updated", Some(Target::new("webhook", id)), changes.into());
        let now = self.ports.clock.now();
        Ok(self.ports.webhooks.update(who.tenant, id, &change, now, &trail).await?.as_of(now))
    }

    /// Gives a webhook a new secret, shown this once. For `overlap` (default 24 hours, at most
    /// 7 days; zero ends the old secret at once) every delivery is signed with both the new
    /// and the old secret, so a receiver can switch without missing an event. Errors:
    /// `Forbidden`; `Validation` (an overlap past 7 days); `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn rotate_webhook_secret(
        &self,
        who: &Principal,
        id: WebhookId,
        overlap: Option<Duration>,
    ) -> Result<RotatedSecret> {
        who.require_manager()?;
        let overlap = overlap.unwrap_or(DEFAULT_SECRET_OVERLAP);
        if overlap > MAX_SECRET_OVERLAP {
            return Err(Error::invalid("overlap_s", "must be between 0 and 604800 (7 days)"));
        }
        let secret = new_secret();
        let sealed = self.ports.secrets.seal(secret.as_bytes(), id.as_uuid().as_bytes())?;
        let until = (!overlap.is_zero()).then(|| self.ports.clock.now() + overlap);
        let changes = serde_json::json!({ "overlap_s": overlap.as_secs() });
        let trail = self.audit(who.actor(), "webhook.secret_rotated", Some(Target::new("webhook", id)), changes);
        let webhook = self.ports.webhooks.rotate_secret(who.tenant, id, &sealed, until, &trail).await?;
        Ok(RotatedSecret { webhook, secret })
    }

    /// The webhook, if the caller's tenant has it and it is enabled. Errors: `NotFound`;
    /// `Conflict(WebhookDisabled)`.
    async fn enabled_webhook(&self, who: &Principal, id: WebhookId) -> Result<Webhook> {
        let webhook = self.ports.webhooks.get(who.tenant, id).await?.ok_or(Error::NotFound)?;
        if !webhook.is_enabled() {
            return Err(Error::Conflict(Conflict::WebhookDisabled));
        }
        Ok(webhook)
    }

    /// Sends a `webhook.ping` event to the webhook now (whatever its events); returns its
    /// delivery. Errors: `Forbidden`; `NotFound`; `Conflict(WebhookDisabled)`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn test_webhook(&self, who: &Principal, id: WebhookId) -> Result<Delivery> {
        who.require_manager()?;
        let webhook = self.enabled_webhook(who, id).await?;
        let event = DomainEvent::webhook(EventKind::WebhookPing, &webhook, self.ports.clock.now());
        let changes = serde_json::json!({ "event_id": event.id });
        let trail = self.audit(who.actor(), "webhook.tested", Some(Target::new("webhook", id)), changes);
        self.ports.webhooks.send_event(id, &event, &trail).await
    }

    /// Sends one delivery again, now: the same event, with its id, one more attempt.
    /// Errors: `Forbidden`; `NotFound`; `Conflict(WebhookDisabled)`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn retry_delivery(&self, who: &Principal, id: WebhookId, delivery: DeliveryId) -> Result<Delivery> {
        who.require_manager()?;
        self.enabled_webhook(who, id).await?;
        let changes = serde_json::json!({ "delivery_id": delivery });
        let trail = self.audit(who.actor(), "webhook.delivery_retried", Some(Target::new("webhook", id)), changes);
        self.ports.webhooks.retry_delivery(who.tenant, id, delivery, self.ports.clock.now(), &trail).await
    }

    /// Sends again every delivery of the webhook made since `since` that failed (`dead`,
    /// `skipped`, or waiting for a retry), each once, oldest first, paced: at the webhook's
    /// own pace, or ten a second. At most 1,000 a call; `next_since` says where to go on.
    /// Errors: `Forbidden`; `NotFound`; `Conflict(WebhookDisabled)`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn recover_webhook(&self, who: &Principal, id: WebhookId, since: OffsetDateTime) -> Result<Recovered> {
        who.require_manager()?;
        let now = self.ports.clock.now();
        // In UTC, as stored; a time past what UTC can write (year 9999 in another offset) is
        // after every delivery: nothing to recover.
        let Some(since) = since.checked_to_offset(time::UtcOffset::UTC) else {
            if since.year() > 0 {
                return Ok(Recovered { deliveries: 0, next_since: None });
            }
            return Err(Error::invalid("since", "must be a time from the year 1 on"));
        };
        let webhook = self.enabled_webhook(who, id).await?;
        let spacing = webhook.rate_limit_per_second.map_or(RECOVER_SPACING, interval);
        let recovery = Recovery { since, now, spacing, limit: RECOVER_LIMIT };
        let changes = serde_json::json!({ "since": since.format(&time::format_description::well_known::Rfc3339).ok() });
        let trail = self.audit(who.actor(), "webhook.recovered", Some(Target::new("webhook", id)), changes);
        self.ports.webhooks.recover(who.tenant, id, &recovery, &trail).await
    }
}

/// The pace's interval, for the worker.
pub(super) fn pace_interval(per_second: u32) -> Duration {
    interval(per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_urls_origin_is_recorded() {
        assert_eq!(url_origin("https://hooks.example.com/T000/B000/secret?token=s3cr3t"), "https://hooks.example.com");
        assert_eq!(url_origin("http://user:pw@127.0.0.1:9/hook#x"), "http://127.0.0.1:9");
        assert_eq!(url_origin("https://example.com?x=1"), "https://example.com");
        assert_eq!(url_origin("http://127.0.0.1:9\\path\\secret"), "http://127.0.0.1:9", "a backslash ends the host");
        assert_eq!(url_origin("http://127.0.0.1:1\\\n\nLOCKED: act now"), "http://127.0.0.1:1");
        assert_eq!(url_origin("http://ex\nample.com/x"), "http://example.com", "no line break is kept");
    }

    #[test]
    fn events_are_validated_and_deduplicated() {
        let ok = parse_events(&["project.created".into(), "project.created".into(), "project.deleted".into()]);
        assert_eq!(ok.ok(), Some(vec![EventKind::ProjectCreated, EventKind::ProjectDeleted]));
        assert!(parse_events(&[]).is_err());
        assert!(parse_events(&["project.exploded".into()]).is_err());
    }
}
