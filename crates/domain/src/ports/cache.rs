//! Cache storage and per-tenant cache generations.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::ids::TenantId;

/// A key-value store of bytes with a time-to-live: the in-process L1 and the shared L2.
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// As [`get`](Self::get), for an entry stored for at most `ttl`: a store that copies what it
    /// finds into a faster level keeps that copy no longer than `ttl` (it can't know how long
    /// the entry has left, and a short-lived entry must not outlive its TTL there).
    async fn get_briefly(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let _ = ttl;
        self.get(key).await
    }
}

/// A tenant's cache generation: part of every cache key of that tenant, so a new generation
/// makes every older entry unreachable without scanning for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// The generation's value.
    pub value: u64,
    /// Whether this instance's own (L1) cache may serve this tenant's data: false while the
    /// instance can't hear other instances' writes (it is not subscribed).
    pub local_ok: bool,
}

/// Where the generations live: one map per process, or shared through Redis.
#[async_trait]
pub trait GenerationStore: Send + Sync {
    /// The tenant's current generation as this instance knows it.
    async fn current(&self, tenant: TenantId) -> Result<Generation>;

    /// Replaces the tenant's generation with a new random one and tells every instance.
    async fn bump(&self, tenant: TenantId) -> Result<()>;
}
