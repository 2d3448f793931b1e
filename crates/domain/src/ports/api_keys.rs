//! Tenant API keys and the audit log.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditRecord, AuditTrail, ChainLink};
use crate::entities::ApiKey;
use crate::error::Result;
use crate::ids::{ApiKeyId, TenantId};
use crate::ports::CountCheck;
use crate::values::{Role, TokenHash};

/// A live key as a request checks it: the key, the stored hash of its secret, and the current
/// role of whoever created it (none once they were removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key.
    pub key: ApiKey,
    /// HMAC of its secret under the server's key.
    pub hash: TokenHash,
    /// Its creator's role now.
    pub creator_role: Option<Role>,
}

/// A tenant's API keys. A revoked key is kept (the audit log names it) but is never listed or
/// found again. A key's `role` is its ceiling: its creator's role when it was made, lowered
/// (by the user repository, in the role change's transaction) whenever its creator's is.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key with the hash of its secret and `trail`, atomically, after `check` has
    /// seen how many live keys the tenant has, under a lock that concurrent creations of the
    /// same tenant wait for. Errors: whatever `check` returns.
    async fn create(&self, key: &ApiKey, hash: &TokenHash, check: CountCheck<'_>, trail: &AuditTrail) -> Result<()>;

    /// The tenant's keys that are not revoked, newest first.
    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>>;

    /// The tenant's key `id` unless it is revoked or unknown.
    async fn lookup(&self, tenant: TenantId, id: ApiKeyId) -> Result<Option<KeyRecord>>;

    /// Revokes key `id` at `now` with `trail`, atomically; whether there was such a live key
    /// (nothing is written when there was not).
    async fn revoke(&self, tenant: TenantId, id: ApiKeyId, now: OffsetDateTime, trail: &AuditTrail) -> Result<bool>;

    /// Records when keys were last used (never moving a time backwards): the coalesced writes
    /// of many requests.
    async fn touch(&self, used: &[(TenantId, ApiKeyId, OffsetDateTime)]) -> Result<()>;
}

/// Which entries a page of the audit log holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this user's or key's.
    pub actor: Option<Uuid>,
    /// Only this action.
    pub action: Option<String>,
    /// Only changes to this id.
    pub target: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries before this time.
    pub until: Option<OffsetDateTime>,
}

/// The audit log: append-only, one hash chain per tenant (see [`crate::audit`]).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `trail` to `tenant`'s chain on its own (a failed sign-in, which changes nothing
    /// else).
    async fn append(&self, tenant: TenantId, trail: &AuditTrail) -> Result<()>;

    /// Up to `limit` of the tenant's entries that `query` selects, newest first, with a seq
    /// below `before` when given.
    async fn page(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>>;

    /// The tenant's checkpoint (where its chain starts) and head (its newest entry).
    async fn ends(&self, tenant: TenantId) -> Result<(ChainLink, ChainLink)>;

    /// Up to `limit` of the tenant's entries with a seq above `after` and at most `upto`,
    /// oldest first, as stored (for verification).
    async fn chain(&self, tenant: TenantId, after: u64, upto: u64, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Deletes, across every tenant, entries from before `before`, moving each tenant's
    /// checkpoint to the last one it deletes; returns how many.
    async fn prune(&self, before: OffsetDateTime) -> Result<u64>;
}
