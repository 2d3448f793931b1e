//! Idempotency keys: a retried POST gets the first answer again and does nothing twice.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::ids::{TenantId, UserId};
use crate::values::InvalidValue;

/// 1–255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a header value.
    pub fn parse(s: &str) -> std::result::Result<Self, InvalidValue> {
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
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

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: process the request, then `complete` or `release` it.
    Acquired,
    /// The same request was answered before: send this again.
    Replay(StoredResponse),
    /// The key was used with another request.
    Mismatch,
    /// The same request is being processed right now.
    InProgress,
}

/// Remembers keys and their first answers for a while.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `scope` for a request whose content hashes to `fingerprint`, for `ttl`.
    async fn claim(&self, scope: &IdempotencyScope, fingerprint: u128, ttl: Duration) -> Result<Claim>;

    /// Records the answer to a claimed key.
    async fn complete(&self, scope: &IdempotencyScope, response: &StoredResponse) -> Result<()>;

    /// Forgets a claimed key whose request failed in a way a retry may fix.
    async fn release(&self, scope: &IdempotencyScope) -> Result<()>;
}
