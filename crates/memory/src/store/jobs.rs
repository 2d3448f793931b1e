//! The job queue in memory, for the embedded default and unit tests: the same semantics as
//! the PostgreSQL queue (a queue per tenant, claimed from its head, one job per tenant in
//! flight, a cap on each tenant's pending jobs, retries at a time, rescue), in process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::entities::{DeliveryState, WebhookHealth};
use plinth_domain::ids::{DeliveryId, TenantId};
use plinth_domain::ports::{
    AttemptOutcome, DEFAULT_MAX_PENDING_JOBS, DeliveryStore, Job, JobQueue, NextStep, OutgoingDelivery, Pruned,
    QueueStats, Work,
};
use plinth_domain::trace::{Propagation, TraceParent};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;

use super::{Data, MemoryStore};

/// A job's work and the trace context it continues (see `Job::trace`).
#[derive(Debug, Clone)]
struct Queued {
    work: Work,
    trace: Option<TraceParent>,
}

/// A claimed job: what it is, when it was due, and since when it is claimed.
#[derive(Debug, Clone)]
struct Running {
    job: Queued,
    run_at: OffsetDateTime,
    since: Duration,
}

/// One tenant's jobs: the unclaimed ones by (due time, id), the claimed ones, and when it was
/// last served.
#[derive(Debug, Default)]
struct Queue {
    waiting: BTreeMap<(OffsetDateTime, i64), Queued>,
    running: HashMap<i64, Running>,
    turn: Option<OffsetDateTime>,
    /// Its tenant is suspended or deleted: nothing is claimed until it is not.
    paused: bool,
}

impl Queue {
    fn pending(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    /// When its next turn comes, if it has a job waiting and nothing in flight: when its head
    /// is due, but never before it was last served, so a tenant just served goes behind every
    /// tenant already waiting however old its backlog (round robin).
    fn claimable_at(&self) -> Option<OffsetDateTime> {
        if !self.running.is_empty() || self.paused {
            return None;
        }
        let head = self.waiting.keys().next().map(|(at, _)| *at)?;
        Some(self.turn.map_or(head, |turn| turn.max(head)))
    }
}

/// Every job, in one queue per tenant, each tenant's cap, and where a new job's trace context
/// comes from.
#[derive(Debug)]
pub(super) struct Jobs {
    next_id: i64,
    queues: HashMap<TenantId, Queue>,
    max_pending: usize,
    traces: Propagation,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            next_id: 0,
            queues: HashMap::new(),
            max_pending: usize::try_from(DEFAULT_MAX_PENDING_JOBS).unwrap_or(usize::MAX),
            traces: Propagation::OFF,
        }
    }
}

impl Jobs {
    /// Caps each tenant's pending jobs at `max`.
    pub(super) fn set_max_pending(&mut self, max: u64) {
        self.max_pending = usize::try_from(max).unwrap_or(usize::MAX);
    }

    /// Stores with each new job the trace context `traces` gives for it.
    pub(super) fn set_traces(&mut self, traces: Propagation) {
        self.traces = traces;
    }

    /// `QueueFull` unless `tenant` has room for `more` jobs; checked before a write changes
    /// anything, under the store's lock, so the write either fits whole or writes nothing.
    pub(super) fn check_room(&self, tenant: TenantId, more: usize) -> Result<()> {
        if more == 0 {
            return Ok(());
        }
        let pending = self.queues.get(&tenant).map_or(0, Queue::pending);
        if pending + more > self.max_pending { Err(Error::QueueFull) } else { Ok(()) }
    }
}

impl Data {
    /// One job per new delivery of `tenant`, due `now`.
    pub(super) fn enqueue(&mut self, tenant: TenantId, deliveries: Vec<DeliveryId>, now: OffsetDateTime) {
        for delivery in deliveries {
            self.enqueue_work(tenant, Work::Deliver(delivery), now);
        }
    }

    /// Pauses (or lets go on) `tenant`'s jobs.
    pub(super) fn pause(&mut self, tenant: TenantId, paused: bool) {
        self.jobs.queues.entry(tenant).or_default().paused = paused;
    }

    /// Forgets every job of `tenant`; how many there were.
    pub(super) fn drop_queue(&mut self, tenant: TenantId) -> usize {
        self.jobs.queues.remove(&tenant).map_or(0, |q| q.pending())
    }

    /// One job of `tenant` doing `work`, due `now`, continuing the trace current now.
    pub(super) fn enqueue_work(&mut self, tenant: TenantId, work: Work, now: OffsetDateTime) {
        self.jobs.next_id += 1;
        let id = self.jobs.next_id;
        let trace = self.jobs.traces.current();
        self.jobs.queues.entry(tenant).or_default().waiting.insert((now, id), Queued { work, trace });
    }
}

impl Data {
    /// Drops the waiting jobs of `deliveries` of `tenant` (claimed ones finish on their own).
    pub(super) fn drop_delivery_jobs(&mut self, tenant: TenantId, deliveries: &HashSet<DeliveryId>) {
        if let Some(q) = self.jobs.queues.get_mut(&tenant) {
            q.waiting.retain(|_, job| !matches!(job.work, Work::Deliver(d) if deliveries.contains(&d)));
        }
    }

    /// Whether `delivery` of `tenant` has a job at all (waiting or claimed).
    pub(super) fn has_job(&self, tenant: TenantId, delivery: DeliveryId) -> bool {
        let is_it = |work: &Work| matches!(work, Work::Deliver(d) if *d == delivery);
        self.jobs.queues.get(&tenant).is_some_and(|q| {
            q.waiting.values().any(|j| is_it(&j.work)) || q.running.values().any(|r| is_it(&r.job.work))
        })
    }

    /// Makes `delivery`'s waiting job due at `at`, or gives it a new one; nothing when its job
    /// is claimed right now (an attempt is under way). A job made due continues the trace
    /// current now (the retry's or the recovery's), if any, else the one it had.
    pub(super) fn schedule_delivery(&mut self, tenant: TenantId, delivery: DeliveryId, at: OffsetDateTime) {
        let is_it = |work: &Work| matches!(work, Work::Deliver(d) if *d == delivery);
        let trace = self.jobs.traces.current();
        let queue = self.jobs.queues.entry(tenant).or_default();
        if queue.running.values().any(|r| is_it(&r.job.work)) {
            return;
        }
        let waiting = queue.waiting.iter().find(|(_, j)| is_it(&j.work)).map(|(k, _)| *k);
        match waiting.and_then(|key| queue.waiting.remove_entry(&key)) {
            Some(((_, id), job)) => {
                queue.waiting.insert((at, id), Queued { work: job.work, trace: trace.or(job.trace) });
            }
            None => self.enqueue_work(tenant, Work::Deliver(delivery), at),
        }
    }

    /// Finishes the claimed `job`, or puts it back for a retry.
    pub(super) fn move_on(&mut self, job: &Job, next: NextStep) {
        if let Some(q) = self.jobs.queues.get_mut(&job.tenant) {
            let claimed = q.running.remove(&job.id);
            if let (NextStep::RetryAt(at), Some(r)) = (next, claimed) {
                q.waiting.insert((at, job.id), r.job);
            }
        }
    }
}

impl MemoryStore {
    /// Wakes workers waiting for work.
    pub(super) fn wake(&self) {
        self.wakeups.notify_waiters();
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    async fn claim(&self, _worker: &str) -> Result<Option<Job>> {
        let mut data = self.write();
        let now = self.clock.now();
        // One look at each tenant's head: the cost grows with tenants, never with a backlog.
        let next = data
            .jobs
            .queues
            .iter()
            .filter_map(|(tenant, q)| q.claimable_at().filter(|at| *at <= now).map(|at| (at, *tenant)))
            .min_by_key(|(at, tenant)| (*at, *tenant.as_uuid()));
        let Some((_, tenant)) = next else { return Ok(None) };
        let Some(queue) = data.jobs.queues.get_mut(&tenant) else { return Ok(None) };
        let Some(((run_at, id), job)) = queue.waiting.pop_first() else { return Ok(None) };
        let claimed = Job { id, tenant, work: job.work, trace: job.trace.clone() };
        queue.running.insert(id, Running { job, run_at, since: self.clock.elapsed() });
        queue.turn = Some(now);
        Ok(Some(claimed))
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wakeups.notified()).await;
    }

    async fn release(&self, job: &Job) -> Result<()> {
        if let Some(q) = self.write().jobs.queues.get_mut(&job.tenant)
            && let Some(r) = q.running.remove(&job.id)
        {
            q.waiting.insert((r.run_at, job.id), r.job);
        }
        Ok(())
    }

    async fn rescue(&self, after: Duration) -> Result<u64> {
        let now = self.clock.elapsed();
        let mut rescued = 0;
        for q in self.write().jobs.queues.values_mut() {
            let dead: Vec<i64> =
                q.running.iter().filter(|(_, r)| now.saturating_sub(r.since) > after).map(|(id, _)| *id).collect();
            for id in dead {
                if let Some(r) = q.running.remove(&id) {
                    q.waiting.insert((r.run_at, id), r.job);
                    rescued += 1;
                }
            }
        }
        Ok(rescued)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let data = self.read();
        let now = self.clock.now();
        let queues = data.jobs.queues.values();
        // A paused tenant's jobs wait on purpose: they are not behind.
        let unpaused = queues.clone().filter(|q| !q.paused);
        let oldest =
            unpaused.clone().filter_map(|q| q.waiting.keys().next().map(|(at, _)| *at)).filter(|at| *at <= now).min();
        Ok(QueueStats {
            ready: unpaused.map(|q| q.waiting.len() as u64).sum(),
            running: queues.map(|q| q.running.len() as u64).sum(),
            oldest_ready: oldest.map(|at| (now - at).unsigned_abs()),
        })
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        {
            let mut data = self.write();
            for rows in data.tenants.values_mut() {
                let old: Vec<_> = rows
                    .deliveries
                    .iter()
                    .filter(|d| d.created_at < before && d.state != DeliveryState::Pending)
                    .map(|d| *d.id.as_uuid())
                    .collect();
                for id in old {
                    rows.deliveries.remove(id);
                    pruned.deliveries += 1;
                }
                let needed: HashSet<_> = rows.deliveries.iter().map(|d| d.event_id).collect();
                let before_len = rows.outbox.len();
                rows.outbox.retain(|e| e.created_at >= before || needed.contains(&e.id));
                pruned.events += (before_len - rows.outbox.len()) as u64;
            }
        }
        pruned.idempotency_keys = self.prune_expired() as u64;
        Ok(pruned)
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn load(&self, tenant: TenantId, delivery: DeliveryId) -> Result<Option<OutgoingDelivery>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        let Some(delivery) = rows.deliveries.get(*delivery.as_uuid()).filter(|d| d.state == DeliveryState::Pending)
        else {
            return Ok(None);
        };
        let (Some(webhook), Some(secret), Some(event)) = (
            rows.webhooks.get(*delivery.webhook_id.as_uuid()),
            rows.secrets.get(&delivery.webhook_id),
            rows.outbox.iter().find(|e| e.id == delivery.event_id),
        ) else {
            return Ok(None);
        };
        Ok(Some(OutgoingDelivery {
            delivery: delivery.clone(),
            url: webhook.url.clone(),
            sealed_secret: secret.clone(),
            previous_secret: rows.previous_secrets.get(&webhook.id).cloned(),
            body: Bytes::from(serde_json::to_vec(event).map_err(Error::internal)?),
            enabled: webhook.is_enabled(),
            rate_limit_per_second: webhook.rate_limit_per_second,
            slot_at: rows.slots.get(&delivery.id).copied(),
        }))
    }

    async fn record(
        &self,
        job: &Job,
        delivery: DeliveryId,
        outcome: &AttemptOutcome,
        next: NextStep,
        at: OffsetDateTime,
    ) -> Result<WebhookHealth> {
        let mut data = self.write();
        let mut health = WebhookHealth::default();
        if let Some(rows) = data.tenant_mut(job.tenant)
            && let Some(current) = rows.deliveries.get(*delivery.as_uuid())
        {
            let mut updated = current.clone();
            updated.attempts += 1;
            updated.last_error.clone_from(&outcome.error);
            updated.state = match next {
                NextStep::Delivered => DeliveryState::Delivered,
                NextStep::RetryAt(_) => DeliveryState::Pending,
                NextStep::Dead => DeliveryState::Dead,
            };
            rows.slots.remove(&delivery);
            if let Some(webhook) = rows.webhooks.get(*updated.webhook_id.as_uuid()) {
                let mut webhook = webhook.clone();
                webhook.health = webhook.health.after_attempt(outcome.delivered, at);
                health = webhook.health.clone();
                rows.webhooks.replace(webhook);
            }
            rows.deliveries.replace(updated);
        }
        data.move_on(job, next);
        Ok(health)
    }

    async fn skip(&self, job: &Job, delivery: DeliveryId) -> Result<()> {
        let mut data = self.write();
        if let Some(rows) = data.tenant_mut(job.tenant) {
            rows.skip_pending(&[delivery]);
        }
        data.move_on(job, NextStep::Dead);
        Ok(())
    }

    async fn pace(
        &self,
        job: &Job,
        delivery: DeliveryId,
        at: OffsetDateTime,
        interval: Duration,
    ) -> Result<Option<OffsetDateTime>> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(job.tenant) else { return Ok(None) };
        let Some(webhook) = rows.deliveries.get(*delivery.as_uuid()).map(|d| d.webhook_id) else { return Ok(None) };
        let slot = rows.next_slots.get(&webhook).map_or(at, |next| (*next).max(at));
        rows.next_slots.insert(webhook, slot + interval);
        if slot <= at {
            return Ok(None);
        }
        rows.slots.insert(delivery, slot);
        data.move_on(job, NextStep::RetryAt(slot));
        Ok(Some(slot))
    }

    async fn discard(&self, job: &Job) -> Result<()> {
        if let Some(q) = self.write().jobs.queues.get_mut(&job.tenant) {
            q.running.remove(&job.id);
            q.waiting.retain(|(_, id), _| *id != job.id);
        }
        Ok(())
    }
}
