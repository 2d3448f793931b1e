//! The job queue in PostgreSQL: one queue per tenant (`job_queues`, kept by triggers on
//! `jobs`), claimed from the queue due first with `FOR UPDATE SKIP LOCKED`, one job per tenant
//! in flight, capped per tenant, woken by `LISTEN`/`NOTIFY`, rescued when a worker dies; and the
//! deliveries the worker reads and records, each record in one transaction with its job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::Transaction;
use futures_util::StreamExt as _;
use plinth_domain::entities::DeliveryState;
use plinth_domain::ids::{DeliveryId, EmailId, TenantId};
use plinth_domain::ports::{
    AttemptOutcome, DeliveryStore, Job, JobQueue, NextStep, OutgoingDelivery, Pruned, QueueStats, Work,
};
use plinth_domain::{Error, Result};
use serde_json::json;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::error::{self, corrupt};
use crate::op;
use crate::pool::{PgStore, tenant_tx};

/// The channel jobs are announced on.
const CHANNEL: &str = "plinth_jobs";
const LISTEN: &str = "LISTEN plinth_jobs";
/// Attempt one webhook delivery.
const DELIVER: &str = "webhook.deliver";
/// Send one message.
const EMAIL: &str = "email.send";
/// Nothing (queue benchmarks).
const NOOP: &str = "noop";

/// Wakes waiting workers when a job is announced; the listener starts on first use.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    notify: Notify,
    started: AtomicBool,
}

/// Enqueues the attempt of `delivery` in the caller's transaction; announced on commit.
pub(crate) async fn enqueue_delivery(tx: &Transaction<'_>, tenant: TenantId, delivery: DeliveryId) -> Result<()> {
    let payload = json!({"tenant_id": tenant.to_string(), "delivery_id": delivery.to_string()});
    enqueue(tx, tenant, DELIVER, &payload).await
}

/// Enqueues the sending of message `email` in the caller's transaction; announced on commit.
pub(crate) async fn enqueue_email(tx: &Transaction<'_>, tenant: TenantId, email: EmailId) -> Result<()> {
    let payload = json!({"tenant_id": tenant.to_string(), "email_id": email.to_string()});
    enqueue(tx, tenant, EMAIL, &payload).await
}

async fn enqueue(tx: &Transaction<'_>, tenant: TenantId, kind: &str, payload: &serde_json::Value) -> Result<()> {
    let insert =
        tx.prepare_cached("INSERT INTO jobs (queue, kind, payload) VALUES ($1, $2, $3)").await.map_err(error::db)?;
    tx.execute(&insert, &[&tenant.to_string(), &kind, payload]).await.map_err(error::db)?;
    let notify = tx.prepare_cached("SELECT pg_notify($1, '')").await.map_err(error::db)?;
    tx.execute(&notify, &[&CHANNEL]).await.map_err(error::db)?;
    Ok(())
}

/// Finishes the claimed `job` in the caller's transaction, or puts it back for a retry.
pub(crate) async fn move_on(tx: &Transaction<'_>, job: &Job, next: NextStep) -> Result<()> {
    match next {
        NextStep::RetryAt(at) => {
            let retry = tx
                .prepare_cached("UPDATE jobs SET locked_by = NULL, locked_at = NULL, run_at = $2 WHERE id = $1")
                .await
                .map_err(error::db)?;
            tx.execute(&retry, &[&job.id, &at]).await.map_err(error::db)?;
        }
        NextStep::Delivered | NextStep::Dead => {
            let done = tx.prepare_cached("DELETE FROM jobs WHERE id = $1").await.map_err(error::db)?;
            tx.execute(&done, &[&job.id]).await.map_err(error::db)?;
        }
    }
    Ok(())
}

/// Fails with `QueueFull` when `tenant` now has more than `max` jobs pending, counting the ones
/// the caller's transaction just enqueued. The insert trigger's update of the tenant's queue row
/// holds that row's lock until the caller commits, so concurrent writers of one tenant take
/// turns here and each sees the others' committed jobs: no count-then-insert race.
pub(crate) async fn check_room(tx: &Transaction<'_>, tenant: TenantId, max: i64) -> Result<()> {
    let q = tx.prepare_cached("SELECT pending FROM job_queues WHERE queue = $1").await.map_err(error::db)?;
    let pending: i32 = match tx.query_opt(&q, &[&tenant.to_string()]).await.map_err(error::db)? {
        Some(row) => row.try_get(0).map_err(error::db)?,
        None => return Err(corrupt("job queue counters")),
    };
    if i64::from(pending) > max { Err(Error::QueueFull) } else { Ok(()) }
}

/// The claim: lock the queue whose turn comes first among those with nothing in flight
/// (skipping queues another worker or an enqueuing write holds), then take that queue's head.
/// Both steps are index descents, whatever the backlog of that queue or any other. (The queue
/// goes in as a scalar subquery: joined, the planner sized it by the largest queue and scanned.)
pub const CLAIM_SQL: &str = "WITH q AS (\
        SELECT queue FROM job_queues WHERE running = 0 AND NOT paused AND next_run_at <= now() \
        ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
    UPDATE jobs SET locked_by = $1, locked_at = now(), attempts = attempts + 1 \
    WHERE id = (SELECT j.id FROM jobs j \
                WHERE j.queue = (SELECT queue FROM q) AND j.locked_at IS NULL AND j.run_at <= now() \
                ORDER BY j.run_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) \
    RETURNING id, kind, payload";

fn job_from(id: i64, kind: &str, payload: &serde_json::Value) -> Result<Job> {
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).and_then(|s| s.parse::<Uuid>().ok());
    let tenant = TenantId::from_uuid(field("tenant_id").ok_or_else(|| corrupt("job payload"))?);
    let work = match kind {
        DELIVER => Work::Deliver(DeliveryId::from_uuid(field("delivery_id").ok_or_else(|| corrupt("job payload"))?)),
        EMAIL => Work::Email(EmailId::from_uuid(field("email_id").ok_or_else(|| corrupt("job payload"))?)),
        NOOP => Work::Noop,
        _ => return Err(corrupt("job kind")),
    };
    Ok(Job { id, tenant, work })
}

impl PgStore {
    /// Keeps a connection LISTENing on the jobs channel, reconnecting when it drops.
    fn start_listener(&self) {
        let wakeups = self.wakeups.clone();
        let config = self.listen_config.clone();
        if self.wakeups.started.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            tokio::spawn(async move {
                loop {
                    if let Ok((client, mut connection)) = config.connect(NoTls).await {
                        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        let listening = {
                            // The connection must be polled for LISTEN to complete.
                            let mut listen = std::pin::pin!(client.batch_execute(LISTEN));
                            loop {
                                tokio::select! {
                                    r = &mut listen => break r.is_ok(),
                                    m = messages.next() => if m.is_none() { break false },
                                }
                            }
                        };
                        if listening {
                            wakeups.notify.notify_waiters();
                            while let Some(message) = messages.next().await {
                                match message {
                                    Ok(AsyncMessage::Notification(_)) => wakeups.notify.notify_waiters(),
                                    Ok(_) => {}
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    }
}

#[async_trait]
impl JobQueue for PgStore {
    async fn claim(&self, worker: &str) -> Result<Option<Job>> {
        self.bounded(async {
            let client = self.conn(op::JOBS_CLAIM).await?;
            let claim = client.prepare_cached(CLAIM_SQL).await.map_err(error::db)?;
            let row = client.query_opt(&claim, &[&worker]).await.map_err(error::db)?;
            row.map(|r| job_from(r.get(0), r.get(1), &r.get(2))).transpose()
        })
        .await
    }

    async fn wait_for_work(&self, max: Duration) {
        self.start_listener();
        let _ = tokio::time::timeout(max, self.wakeups.notify.notified()).await;
    }

    async fn release(&self, job: &Job) -> Result<()> {
        self.bounded(async {
            let client = self.conn(op::JOBS_RELEASE).await?;
            let q = client
                .prepare_cached(
                    "UPDATE jobs SET locked_by = NULL, locked_at = NULL, attempts = greatest(attempts - 1, 0) WHERE id = $1",
                )
                .await
                .map_err(error::db)?;
            client.execute(&q, &[&job.id]).await.map_err(error::db)?;
            Ok(())
        })
        .await
    }

    async fn rescue(&self, after: Duration) -> Result<u64> {
        let seconds = after.as_secs_f64();
        self.bounded(async {
            let client = self.conn(op::JOBS_RESCUE).await?;
            let q = client
                .prepare_cached(
                    "UPDATE jobs SET locked_by = NULL, locked_at = NULL \
                     WHERE locked_at < now() - make_interval(secs => $1)",
                )
                .await
                .map_err(error::db)?;
            client.execute(&q, &[&seconds]).await.map_err(error::db)
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.bounded(async {
            let client = self.conn(op::JOBS_STATS).await?;
            // Sums over one counter row per tenant: the same cost with no jobs or with millions.
            // A paused tenant's jobs (suspended or deleted) wait on purpose: they are not behind.
            let q = client
                .prepare_cached(
                    "SELECT coalesce(sum(pending - running) FILTER (WHERE NOT paused), 0)::int8, \
                            coalesce(sum(running), 0)::int8, \
                            extract(epoch FROM now() - (SELECT min(head_run_at) FROM job_queues \
                                                        WHERE head_run_at <= now() AND NOT paused))::float8 \
                     FROM job_queues",
                )
                .await
                .map_err(error::db)?;
            let row = client.query_one(&q, &[]).await.map_err(error::db)?;
            let (ready, running, oldest): (i64, i64, Option<f64>) = (row.get(0), row.get(1), row.get(2));
            Ok(QueueStats {
                ready: u64::try_from(ready).unwrap_or(0),
                running: u64::try_from(running).unwrap_or(0),
                oldest_ready: oldest.map(|s| Duration::from_secs_f64(s.max(0.0))),
            })
        })
        .await
    }

    async fn prune(&self, before: time::OffsetDateTime) -> Result<Pruned> {
        self.bounded(async {
            let client = self.conn(op::JOBS_PRUNE).await?;
            let q = client.prepare_cached("SELECT * FROM plinth_prune($1)").await.map_err(error::db)?;
            let row = client.query_one(&q, &[&before]).await.map_err(error::db)?;
            let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            Ok(Pruned { deliveries: n(0), events: n(1), idempotency_keys: n(2), ..Pruned::default() })
        })
        .await
    }
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn load(&self, tenant: TenantId, delivery: DeliveryId) -> Result<Option<OutgoingDelivery>> {
        self.bounded(async {
            let mut client = self.conn(op::DELIVERIES_LOAD).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(
                    "SELECT d.tenant_id, d.id, d.webhook_id, d.event_id, d.event, d.state, d.attempts, d.last_error, \
                            d.created_at, w.url, w.secret_sealed, e.payload \
                     FROM webhook_deliveries d \
                     JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id \
                     JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id \
                     WHERE d.tenant_id = $1 AND d.id = $2 AND d.state = 'pending'",
                )
                .await
                .map_err(error::db)?;
            let row = tx.query_opt(&q, &[tenant.as_uuid(), delivery.as_uuid()]).await.map_err(error::db)?;
            let out = match row {
                None => None,
                Some(row) => {
                    let payload: serde_json::Value = row.try_get("payload").map_err(error::db)?;
                    Some(OutgoingDelivery {
                        delivery: crate::webhooks::delivery_from_row(&row)?,
                        url: row.try_get("url").map_err(error::db)?,
                        sealed_secret: row.try_get("secret_sealed").map_err(error::db)?,
                        body: Bytes::from(serde_json::to_vec(&payload).map_err(Error::internal)?),
                    })
                }
            };
            tx.commit().await.map_err(error::db)?;
            Ok(out)
        })
        .await
    }

    async fn record(&self, job: &Job, delivery: DeliveryId, outcome: &AttemptOutcome, next: NextStep) -> Result<()> {
        let state = match next {
            NextStep::Delivered => DeliveryState::Delivered,
            NextStep::RetryAt(_) => DeliveryState::Pending,
            NextStep::Dead => DeliveryState::Dead,
        };
        self.bounded(async {
            let mut client = self.conn(op::DELIVERIES_RECORD).await?;
            let tx = tenant_tx(&mut client, job.tenant).await?;
            let update = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, last_error = $4, updated_at = $5 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .await
                .map_err(error::db)?;
            tx.execute(
                &update,
                &[job.tenant.as_uuid(), delivery.as_uuid(), &state.as_str(), &outcome.error, &self.clock.now()],
            )
            .await
            .map_err(error::db)?;
            move_on(&tx, job, next).await?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }

    async fn discard(&self, job: &Job) -> Result<()> {
        self.bounded(async {
            let client = self.conn(op::JOBS_DISCARD).await?;
            let q = client.prepare_cached("DELETE FROM jobs WHERE id = $1").await.map_err(error::db)?;
            client.execute(&q, &[&job.id]).await.map_err(error::db)?;
            Ok(())
        })
        .await
    }
}
