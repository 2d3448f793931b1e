//! Plan limits, checked in the write's transaction under a lock that the tenant's concurrent
//! writes of the same resource wait for: two creations at the limit can't both see room.

use crate::pool::Tx;
use plinth_domain::ids::TenantId;
use plinth_domain::plans::{Cap, Resource};
use plinth_domain::{Error, Result};

use crate::error::OrDb as _;

/// Checks `cap` for `tenant` in `tx`: takes the tenant's lock for the resource (held to the
/// commit), then counts its rows up to the limit (never the whole table of a big tenant).
pub(crate) async fn check(tx: &Tx<'_>, tenant: TenantId, cap: Option<Cap>) -> Result<()> {
    let Some(cap) = cap else { return Ok(()) };
    let (lock, count) = match cap.resource {
        Resource::Members => (
            "SELECT pg_advisory_xact_lock(hashtextextended('plinth.members:' || $1::text, 0))",
            "SELECT count(*) FROM (SELECT 1 FROM users WHERE tenant_id = $1 LIMIT $2) AS s",
        ),
        Resource::Projects => (
            "SELECT pg_advisory_xact_lock(hashtextextended('plinth.projects:' || $1::text, 0))",
            "SELECT count(*) FROM (SELECT 1 FROM projects WHERE tenant_id = $1 LIMIT $2) AS s",
        ),
        // Webhooks and keys are counted by their own repositories, under their own locks.
        Resource::Webhooks | Resource::ApiKeys => {
            return Err(Error::internal("webhook and key limits are checked by their repositories"));
        }
    };
    let lock = tx.prepare_cached(lock).await.or_db()?;
    tx.execute(&lock, &[&tenant.to_string()]).await.or_db()?;
    let count = tx.prepare_cached(count).await.or_db()?;
    let n: i64 = tx.query_one(&count, &[tenant.as_uuid(), &i64::from(cap.limit)]).await.or_db()?.try_get(0).or_db()?;
    cap.check(u64::try_from(n).unwrap_or(0))
}
