//! The job queue in memory, for the embedded default and unit tests: the same semantics as
//! the PostgreSQL queue (one job per tenant in flight, retries at a time, rescue), in process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::entities::DeliveryState;
use plinth_domain::ids::{DeliveryId, TenantId};
use plinth_domain::ports::{
    AttemptOutcome, DeliveryStore, Job, JobQueue, NextStep, OutgoingDelivery, Pruned, QueueStats, Work,
};
use plinth_domain::{Error, Result, clock};
use time::OffsetDateTime;

use super::{Data, MemoryStore};

#[derive(Debug)]
struct MemJob {
    id: i64,
    tenant: TenantId,
    delivery: DeliveryId,
    run_at: OffsetDateTime,
    locked_at: Option<Instant>,
}

/// Every job, in enqueue order.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    next_id: i64,
    jobs: Vec<MemJob>,
}

impl Data {
    /// One job per new delivery of `tenant`.
    pub(super) fn enqueue(&mut self, tenant: TenantId, deliveries: Vec<DeliveryId>) {
        for delivery in deliveries {
            self.jobs.next_id += 1;
            let id = self.jobs.next_id;
            self.jobs.jobs.push(MemJob { id, tenant, delivery, run_at: clock::now(), locked_at: None });
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
        let now = clock::now();
        let busy: HashSet<TenantId> =
            data.jobs.jobs.iter().filter(|j| j.locked_at.is_some()).map(|j| j.tenant).collect();
        let next = data
            .jobs
            .jobs
            .iter_mut()
            .filter(|j| j.locked_at.is_none() && j.run_at <= now && !busy.contains(&j.tenant))
            .min_by_key(|j| (j.run_at, j.id));
        Ok(next.map(|j| {
            j.locked_at = Some(Instant::now());
            Job { id: j.id, tenant: j.tenant, work: Work::Deliver(j.delivery) }
        }))
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wakeups.notified()).await;
    }

    async fn release(&self, job: &Job) -> Result<()> {
        if let Some(j) = self.write().jobs.jobs.iter_mut().find(|j| j.id == job.id) {
            j.locked_at = None;
        }
        Ok(())
    }

    async fn rescue(&self, after: Duration) -> Result<u64> {
        let mut rescued = 0;
        for j in &mut self.write().jobs.jobs {
            if j.locked_at.is_some_and(|at| at.elapsed() > after) {
                j.locked_at = None;
                rescued += 1;
            }
        }
        Ok(rescued)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let data = self.read();
        let now = clock::now();
        let ready: Vec<&MemJob> = data.jobs.jobs.iter().filter(|j| j.locked_at.is_none() && j.run_at <= now).collect();
        let oldest = ready.iter().map(|j| j.run_at).min().map(|at| (now - at).unsigned_abs());
        Ok(QueueStats {
            ready: ready.len() as u64,
            running: data.jobs.jobs.iter().filter(|j| j.locked_at.is_some()).count() as u64,
            oldest_ready: oldest,
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
            body: Bytes::from(serde_json::to_vec(event).map_err(Error::internal)?),
        }))
    }

    async fn record(&self, job: &Job, delivery: DeliveryId, outcome: &AttemptOutcome, next: NextStep) -> Result<()> {
        let mut data = self.write();
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
            rows.deliveries.replace(updated);
        }
        match next {
            NextStep::RetryAt(at) => {
                if let Some(j) = data.jobs.jobs.iter_mut().find(|j| j.id == job.id) {
                    j.locked_at = None;
                    j.run_at = at;
                }
            }
            NextStep::Delivered | NextStep::Dead => data.jobs.jobs.retain(|j| j.id != job.id),
        }
        Ok(())
    }

    async fn discard(&self, job: &Job) -> Result<()> {
        self.write().jobs.jobs.retain(|j| j.id != job.id);
        Ok(())
    }
}
