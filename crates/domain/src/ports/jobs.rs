//! The durable job queue and the delivery records the worker reads and writes.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::entities::{Delivery, WebhookHealth};
use crate::error::Result;
use crate::ids::{DeliveryId, TenantId};
use crate::ports::AttemptOutcome;
use crate::trace::TraceParent;

/// One claimed unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id in the queue.
    pub id: i64,
    /// Whose work it is.
    pub tenant: TenantId,
    /// What to do.
    pub work: Work,
    /// The trace context of the span that enqueued it, which its worker's span continues
    /// (`None` when traces are off, or the worker enqueued it).
    pub trace: Option<TraceParent>,
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Attempt this webhook delivery once.
    Deliver(DeliveryId),
    /// Attempt to send this message once.
    Email(crate::ids::EmailId),
    /// Nothing: measures the queue itself (`cargo xtask bench jobs`).
    Noop,
}

/// How many jobs one tenant may have pending (queued, scheduled for a retry, or running)
/// unless configured otherwise (`PLINTH_TENANT_MAX_PENDING_JOBS`).
pub const DEFAULT_MAX_PENDING_JOBS: u64 = 10_000;

/// How deep the queue is, for metrics. Adapters answer from counters they maintain, never by
/// counting every job, so a scrape costs the same whatever the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Jobs not claimed: due, or scheduled for a retry.
    pub ready: u64,
    /// Jobs claimed by a worker.
    pub running: u64,
    /// How long the oldest due job not claimed has waited.
    pub oldest_ready: Option<Duration>,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Finished deliveries.
    pub deliveries: u64,
    /// Events no delivery needs any more.
    pub events: u64,
    /// Expired idempotency keys.
    pub idempotency_keys: u64,
    /// Sessions no longer live.
    pub sessions: u64,
    /// Emailed tokens and invitations past their expiry, and messages no longer pending.
    pub emails: u64,
    /// Audit entries past the audit log's retention (`PLINTH_AUDIT_RETENTION_DAYS`).
    pub audit_entries: u64,
}

/// A durable queue: jobs are enqueued by the writes that cause them (in the same
/// transaction), claimed by one worker at a time, and rescued when their worker died.
///
/// Each tenant's jobs form a queue of their own, capped at a number of pending jobs: a write
/// that would enqueue past the cap fails with `QueueFull` and writes nothing. A claim takes the
/// head of a tenant's queue, so its cost does not grow with any tenant's backlog.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Claims the next due job for `worker`: the head of the tenant queue that is due first
    /// among those with no job in flight (so one tenant's backlog can't hold every worker, nor
    /// slow anyone's claims); `None` when nothing is due.
    async fn claim(&self, worker: &str) -> Result<Option<Job>>;

    /// Returns when new work may have arrived, or after `max`.
    async fn wait_for_work(&self, max: Duration);

    /// Gives a claimed job back untouched (the worker is shutting down).
    async fn release(&self, job: &Job) -> Result<()>;

    /// Frees jobs claimed longer than `after` ago (their worker died); returns how many.
    async fn rescue(&self, after: Duration) -> Result<u64>;

    /// The queue's depth.
    async fn stats(&self) -> Result<QueueStats>;

    /// Deletes finished deliveries and unneeded events older than `before`, and expired
    /// idempotency keys.
    async fn prune(&self, before: OffsetDateTime) -> Result<Pruned>;
}

/// A delivery with everything needed to attempt it.
#[derive(Clone)]
pub struct OutgoingDelivery {
    /// The delivery.
    pub delivery: Delivery,
    /// The webhook's URL.
    pub url: String,
    /// The webhook's sealed secret.
    pub sealed_secret: Vec<u8>,
    /// The secret it had before its last rotation, sealed, while deliveries are still signed
    /// with it, and until when.
    pub previous_secret: Option<(Vec<u8>, OffsetDateTime)>,
    /// The event's JSON body.
    pub body: Bytes,
    /// Whether the webhook is enabled (a disabled one's deliveries are skipped).
    pub enabled: bool,
    /// The webhook's pace, if it has one.
    pub rate_limit_per_second: Option<u32>,
    /// The slot this delivery holds in its webhook's pace, if it was postponed to it.
    pub slot_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for OutgoingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingDelivery").field("delivery", &self.delivery).finish_non_exhaustive()
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// It was delivered: done.
    Delivered,
    /// Try again at this time.
    RetryAt(OffsetDateTime),
    /// That was the last attempt: `dead`.
    Dead,
}

/// The worker's view of deliveries.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// The pending delivery, if it (and its webhook) still exist.
    async fn load(&self, tenant: TenantId, delivery: DeliveryId) -> Result<Option<OutgoingDelivery>>;

    /// Records an attempt on `delivery` made at `at`, moves `job` on (done, retried or dead) and
    /// notes the attempt in its webhook's health, atomically; returns that health.
    async fn record(
        &self,
        job: &Job,
        delivery: DeliveryId,
        outcome: &AttemptOutcome,
        next: NextStep,
        at: OffsetDateTime,
    ) -> Result<WebhookHealth>;

    /// Marks `delivery` `skipped` (its webhook is disabled) and drops `job`, atomically.
    async fn skip(&self, job: &Job, delivery: DeliveryId) -> Result<()>;

    /// Takes the next slot of the pace of `delivery`'s webhook (one every `interval`, none
    /// before `at`): `None` when it is due by `at` (attempt now); else the delivery keeps the
    /// slot and `job` waits for it, atomically, and the slot is returned.
    async fn pace(
        &self,
        job: &Job,
        delivery: DeliveryId,
        at: OffsetDateTime,
        interval: Duration,
    ) -> Result<Option<OffsetDateTime>>;

    /// Drops a job that has nothing (left) to do.
    async fn discard(&self, job: &Job) -> Result<()>;
}
