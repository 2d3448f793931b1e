//! Webhook subscriptions: registered with a guarded URL and a secret shown once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Plinth;
use crate::audit::Target;
use crate::entities::{Delivery, Webhook};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::WebhookId;
use crate::page::{Cursor, Page, PageRequest};
use crate::ports::IdempotentWrite;
use crate::usecases::{Answer, Idempotency, Principal};

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

/// `scheme://host[:port]` of `url`, without credentials, path, query or fragment.
fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
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
            self.ports.url_guard.check(url).await?;
            let webhook = Webhook {
                id: WebhookId::new(),
                tenant_id: who.tenant,
                url: url.to_owned(),
                events: kinds,
                created_at: self.ports.clock.now(),
            };
            let secret = format!("whsec_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
            Ok(CreatedWebhook { webhook, secret })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_urls_origin_is_recorded() {
        assert_eq!(url_origin("https://hooks.example.com/T000/B000/secret?token=s3cr3t"), "https://hooks.example.com");
        assert_eq!(url_origin("http://user:pw@127.0.0.1:9/hook#x"), "http://127.0.0.1:9");
        assert_eq!(url_origin("https://example.com?x=1"), "https://example.com");
    }

    #[test]
    fn events_are_validated_and_deduplicated() {
        let ok = parse_events(&["project.created".into(), "project.created".into(), "project.deleted".into()]);
        assert_eq!(ok.ok(), Some(vec![EventKind::ProjectCreated, EventKind::ProjectDeleted]));
        assert!(parse_events(&[]).is_err());
        assert!(parse_events(&["project.exploded".into()]).is_err());
    }
}
