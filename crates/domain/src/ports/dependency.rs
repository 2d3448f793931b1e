//! The services plinth depends on (the database, Redis), as readiness, metrics and shutdown see
//! them: the web layer reaches them only through the use cases.

use async_trait::async_trait;

use crate::error::Result;

/// A dependency an adapter connects to.
#[async_trait]
pub trait Dependency: Send + Sync {
    /// Its name in readiness answers and logs (`database`, `redis`).
    fn name(&self) -> &'static str;

    /// Whether it answers a trivial request. Errors: `Unavailable`.
    async fn ping(&self) -> Result<()>;

    /// Records its own gauges (a pool's numbers) through the metrics facade; called at each
    /// scrape. Nothing by default.
    fn record_gauges(&self) {}

    /// Its periodic upkeep, run every second while plinth serves (the database measures its
    /// replicas' lag). Nothing by default.
    async fn tend(&self) {}

    /// Closes it at shutdown: idle connections are dropped and new calls fail. Nothing by
    /// default.
    fn close(&self) {}
}
