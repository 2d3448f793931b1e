//! What a tenant leaves outside the database.

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::TenantId;
use crate::values::Slug;

/// A shared store holding state keyed by tenant (cache entries, generations, rate limiter
/// state), erased when a deleted tenant is purged.
#[async_trait]
pub trait TenantResidue: Send + Sync {
    /// Erases every entry whose key names `tenant` (by its id, or by its `slug`: the directory's
    /// record of it); how many went. Errors: `Unavailable` (the purge tries again on its next
    /// run).
    async fn erase(&self, tenant: TenantId, slug: &Slug) -> Result<u64>;
}
