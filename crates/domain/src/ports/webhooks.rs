//! Outbound webhooks: which targets may be called, and calling them.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::ids::EventId;

/// Decides whether a webhook URL may be registered (and, again, called).
#[async_trait]
pub trait WebhookUrlGuard: Send + Sync {
    /// `Ok` when `url` is http(s), resolves, and every address it resolves to is allowed.
    /// Errors: `Validation` naming the field `url` and why.
    async fn check(&self, url: &str) -> Result<()>;
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
    /// The webhook's signing secret.
    pub secret: Vec<u8>,
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
