//! Idempotency keys: a retried POST gets the first answer again and does nothing twice.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::Result;
use crate::ids::{TenantId, UserId};
use crate::values::InvalidValue;

/// 1–255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// What arrives of a key [`IdempotencyKey::parse`] accepts, as a regular expression: 1–255
    /// printable ASCII characters that neither start nor end with a space (HTTP strips those
    /// from a header's value, so no such key reaches the server).
    pub const PATTERN: &'static str = "^[!-~](?:[ -~]{0,253}[!-~])?$";
    /// The most characters a key has.
    pub const MAX_LEN: usize = 255;

    /// Validates a header value.
    pub fn parse(s: &str) -> std::result::Result<Self, InvalidValue> {
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(InvalidValue("Idempotency-Key must be 1 to 255 printable ASCII characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// Whose key it is: keys are scoped to the tenant and the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    /// The tenant.
    pub tenant: TenantId,
    /// The user who sent the request.
    pub user: UserId,
    /// The key the client chose.
    pub key: IdempotencyKey,
}

/// The first answer to a request, kept for its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body, as sent.
    pub body: Bytes,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

/// A key with the answer to keep under it, written by the repository in the same transaction
/// as the change it answers: both commit or neither does, so there is never a key "in
/// progress" that a dead request could leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentWrite {
    /// Whose key.
    pub scope: IdempotencyScope,
    /// The request's content hash.
    pub fingerprint: u128,
    /// When the key and its answer are forgotten.
    pub expires_at: OffsetDateTime,
    /// The answer retries get.
    pub response: StoredResponse,
}

/// What a key holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing live: run the request.
    New,
    /// The same request was answered before: send this again.
    Replay(StoredResponse),
    /// The key was used with another request.
    Mismatch,
}

/// How a write guarded by an idempotency key went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// The change and the key (if any) were stored.
    Written,
    /// Another request stored this key first (it committed while this one ran): nothing was
    /// written; look the key up again for its answer.
    KeyTaken,
}

/// Remembers keys and their first answers for a while. Keys are stored by the writes they guard
/// (`ProjectRepository::insert`, `UserRepository::create`, `WebhookRepository::create`); this
/// port reads them, and keeps the answers of requests that were refused without a change.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// What `scope` holds for a request whose content hashes to `fingerprint`. An expired key
    /// is `New`. Claims nothing. Errors: `Unavailable`.
    async fn lookup(&self, scope: &IdempotencyScope, fingerprint: u128) -> Result<Lookup>;

    /// Keeps the answer of a request that changed nothing (a refusal), unless the key already
    /// holds a live answer, which is kept instead. Errors: `Unavailable`.
    async fn record(&self, write: &IdempotentWrite) -> Result<()>;
}
