//! What operating plinth needs of its adapters: the queue's upkeep (waiting for work, rescuing
//! jobs of dead workers, pruning by retention), its numbers, and the dependencies' readiness.

use std::time::Duration;

use super::Plinth;
use crate::error::{Error, Result};
use crate::ports::{Pruned, QueueStats};

impl Plinth {
    /// Returns when new work may be due, or after `max` at the latest.
    pub async fn wait_for_work(&self, max: Duration) {
        self.ports.jobs.wait_for_work(max).await;
    }

    /// Frees jobs claimed longer than `after` ago (their worker is taken to be dead); returns
    /// how many. Errors: `Unavailable`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn rescue_jobs(&self, after: Duration) -> Result<u64> {
        self.ports.jobs.rescue(after).await
    }

    /// Deletes what is older than `retention`: finished deliveries, their events, expired
    /// idempotency keys; and sessions that are no longer live; and audit entries past the
    /// audit log's own retention (each tenant's chain checkpointed). Errors: `Unavailable`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn prune(&self, retention: Duration) -> Result<Pruned> {
        let now = self.ports.clock.now();
        let mut pruned = self.ports.jobs.prune(now - retention).await?;
        pruned.sessions = self.ports.sessions.prune(now).await?;
        pruned.emails = self.ports.accounts.prune(now, now - retention).await?;
        pruned.audit_entries = self.prune_audit().await?;
        Ok(pruned)
    }

    /// The queue's numbers, for metrics. Errors: `Unavailable`.
    pub async fn queue_stats(&self) -> Result<QueueStats> {
        self.ports.jobs.stats().await
    }

    /// Whether this instance hears the cache invalidations other instances announce (always, on
    /// one instance without Redis); while it does not, it serves tenant data from the shared
    /// level only. A fleet's instances are in step once each hears the others.
    pub async fn hears_other_instances(&self) -> bool {
        self.cache.hears_other_instances().await
    }

    /// The names of the configured dependencies (none on the memory adapters).
    pub fn dependencies(&self) -> Vec<&'static str> {
        self.ports.dependencies.iter().map(|d| d.name()).collect()
    }

    /// Pings the dependency `name`. Errors: `Unavailable`; `NotFound` for a name that is not
    /// configured.
    pub async fn ping(&self, name: &str) -> Result<()> {
        match self.ports.dependencies.iter().find(|d| d.name() == name) {
            Some(d) => d.ping().await,
            None => Err(Error::NotFound),
        }
    }

    /// Has every dependency record its own gauges (called at each metrics scrape).
    pub fn record_dependency_gauges(&self) {
        self.ports.dependencies.iter().for_each(|d| d.record_gauges());
    }

    /// Runs every dependency's periodic upkeep once (`startup` does it every second).
    pub async fn tend_dependencies(&self) {
        for d in &self.ports.dependencies {
            d.tend().await;
        }
    }

    /// Closes every dependency (at shutdown, once nothing uses them any more).
    pub fn close_dependencies(&self) {
        self.ports.dependencies.iter().for_each(|d| d.close());
    }
}
