//! Outbound webhooks: which targets may be called, and calling them.

use std::fmt;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::Result;
use crate::events::EventKind;
use crate::ids::EventId;

/// Decides whether a webhook URL may be registered (and, again, called).
#[async_trait]
pub trait WebhookUrlGuard: Send + Sync {
    /// The URL as it will be stored and called (parsed and written again: backslashes become
    /// slashes, tabs and line breaks go, the host is lower-cased) when `url` is http(s),
    /// resolves, and every address it resolves to is allowed. Errors: `Validation` naming the
    /// field `url` and why.
    async fn check(&self, url: &str) -> Result<String>;
}

/// One signed POST of an event to a webhook's URL.
#[derive(Clone)]
pub struct OutboundWebhook {
    /// The target.
    pub url: String,
    /// The event's JSON, exactly as signed and sent.
    pub body: Bytes,
    /// The event's id (`Plinth-Event-Id`), stable across attempts.
    pub event_id: EventId,
    /// The webhook's signing secrets: the current one first, then, during a rotation's
    /// overlap, the previous one. Each signs the body (`v1=` once per secret).
    pub secrets: Vec<Vec<u8>>,
}

impl fmt::Debug for OutboundWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundWebhook").field("event_id", &self.event_id).finish_non_exhaustive()
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// Why it failed, for the delivery's record (never a secret).
    pub error: Option<String>,
}

/// Sends webhook requests: signed, with a timeout, following no redirects, connecting only
/// to addresses the guard allows.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Makes one attempt. Failures are outcomes, not errors.
    async fn send(&self, request: &OutboundWebhook) -> AttemptOutcome;
}

/// Seals webhook secrets for storage and opens them for signing.
pub trait SecretCipher: Send + Sync {
    /// `secret` sealed and bound to `context` (the webhook's id). Errors: `Internal` when it
    /// can't be sealed (then nothing must be stored).
    fn seal(&self, secret: &[u8], context: &[u8]) -> Result<Vec<u8>>;

    /// The secret sealed with `context`. Errors: `Internal` when it can't be opened.
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>>;
}

/// A change to a webhook's settings; what is `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChange {
    /// A new URL (checked by the guard before it gets here).
    pub url: Option<String>,
    /// New event kinds.
    pub events: Option<Vec<EventKind>>,
    /// Enable (its failure record starts again) or disable (its pending deliveries are skipped)
    /// it; no change when it is in that state already.
    pub enabled: Option<bool>,
    /// Why it is disabled, when `enabled` is `Some(false)`: at most 200 characters (the
    /// database refuses more; the use cases write their own, shorter ones).
    pub disabled_reason: Option<String>,
    /// A new pace, 1–1000 a second (validated by the use case; the database refuses others):
    /// `Some(None)` removes it.
    pub rate_limit_per_second: Option<Option<u32>>,
}

/// When a failing webhook is disabled: every attempt since `failing_before` or earlier has
/// failed, and at least `min_failures` of them; and when it is, `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailingLongEnough {
    /// Now: when it is disabled.
    pub at: OffsetDateTime,
    /// The fewest failed attempts in a row.
    pub min_failures: u32,
    /// Its first failure in a row is at or before this.
    pub failing_before: OffsetDateTime,
}

/// Which deliveries `recover` sends again, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Deliveries made at or after this time.
    pub since: OffsetDateTime,
    /// Now: the first re-sent delivery is due then.
    pub now: OffsetDateTime,
    /// Each next one is due this much later.
    pub spacing: Duration,
    /// The most re-sent in one call.
    pub limit: usize,
}

/// What `recover` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// How many deliveries will be attempted again.
    pub deliveries: u64,
    /// When the limit stopped it: the time of the first delivery left, to call again with.
    pub next_since: Option<OffsetDateTime>,
}
