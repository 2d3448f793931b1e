//! The job queue in PostgreSQL: one queue per tenant (`job_queues`, kept by triggers on
//! `jobs`), claimed from the queue due first with `FOR UPDATE SKIP LOCKED`, one job per tenant
//! in flight, capped per tenant, woken by `LISTEN`/`NOTIFY`, rescued when a worker dies; and the
//! deliveries the worker reads and records, each record in one transaction with its job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use plinth_domain::entities::{DeliveryState, WebhookHealth};
use plinth_domain::ids::{DeliveryId, EmailId, TenantId};
use plinth_domain::ports::{
    AttemptOutcome, DeliveryStore, Job, JobQueue, NextStep, OutgoingDelivery, Pruned, QueueStats, Work,
};
use plinth_domain::trace::TraceParent;
use plinth_domain::{Error, Result};
use serde_json::json;
use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::error::{self, corrupt};
use crate::op;
use crate::pool::{PgStore, Tx, tenant_tx, unscoped};

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
pub(crate) async fn enqueue_delivery(tx: &Tx<'_>, tenant: TenantId, delivery: DeliveryId) -> Result<()> {
    let payload = json!({"tenant_id": tenant.to_string(), "delivery_id": delivery.to_string()});
    enqueue(tx, tenant, DELIVER, &payload).await
}

/// Makes the waiting job of each of `deliveries` of `tenant` due at its time, or gives it a
/// new one; a delivery whose job is claimed right now (its attempt under way) is left alone.
/// A job made due now continues the trace current now (the retry's or the recovery's), if
/// any, else the one it had. In the caller's transaction; announced on commit.
pub(crate) async fn schedule_deliveries(
    tx: &Tx<'_>,
    tenant: TenantId,
    deliveries: &[(Uuid, time::OffsetDateTime)],
) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let (ids, times): (Vec<String>, Vec<time::OffsetDateTime>) =
        deliveries.iter().map(|(id, at)| (id.to_string(), *at)).unzip();
    let q = tx
        .prepare_cached(
            "WITH wanted AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS w (delivery, run_at)), \
             existing AS (SELECT j.id, j.locked_at, w.delivery, w.run_at FROM jobs j \
                          JOIN wanted w ON j.payload ->> 'delivery_id' = w.delivery \
                          WHERE j.queue = $1 AND j.kind = 'webhook.deliver'), \
             moved AS (UPDATE jobs j SET run_at = e.run_at, traceparent = coalesce($4, j.traceparent) \
                       FROM existing e WHERE j.id = e.id AND e.locked_at IS NULL RETURNING j.id) \
             INSERT INTO jobs (queue, kind, payload, run_at, traceparent) \
             SELECT $1, 'webhook.deliver', jsonb_build_object('tenant_id', $1, 'delivery_id', w.delivery), w.run_at, $4 \
             FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.delivery = w.delivery)",
        )
        .await
        .map_err(error::db)?;
    let trace = tx.trace();
    let trace = trace.as_ref().map(TraceParent::as_str);
    tx.execute(&q, &[&tenant.to_string(), &ids, &times, &trace]).await.map_err(error::db)?;
    let notify = tx.prepare_cached("SELECT pg_notify($1, '')").await.map_err(error::db)?;
    tx.execute(&notify, &[&CHANNEL]).await.map_err(error::db)?;
    Ok(())
}

/// Drops the waiting jobs of `tenant`'s deliveries `deliveries`, in the caller's transaction.
pub(crate) async fn drop_delivery_jobs(tx: &Tx<'_>, tenant: TenantId, deliveries: &[Uuid]) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = deliveries.iter().map(Uuid::to_string).collect();
    let q = tx
        .prepare_cached(
            "DELETE FROM jobs WHERE queue = $1 AND kind = 'webhook.deliver' AND locked_at IS NULL \
             AND payload ->> 'delivery_id' = ANY ($2)",
        )
        .await
        .map_err(error::db)?;
    tx.execute(&q, &[&tenant.to_string(), &ids]).await.map_err(error::db)?;
    Ok(())
}

/// Enqueues the sending of message `email` in the caller's transaction; announced on commit.
pub(crate) async fn enqueue_email(tx: &Tx<'_>, tenant: TenantId, email: EmailId) -> Result<()> {
    let payload = json!({"tenant_id": tenant.to_string(), "email_id": email.to_string()});
    enqueue(tx, tenant, EMAIL, &payload).await
}

/// Inserts one job, with the trace context current now (if traces are on).
async fn enqueue(tx: &Tx<'_>, tenant: TenantId, kind: &str, payload: &serde_json::Value) -> Result<()> {
    let insert = tx
        .prepare_cached("INSERT INTO jobs (queue, kind, payload, traceparent) VALUES ($1, $2, $3, $4)")
        .await
        .map_err(error::db)?;
    let trace = tx.trace();
    let trace = trace.as_ref().map(TraceParent::as_str);
    tx.execute(&insert, &[&tenant.to_string(), &kind, payload, &trace]).await.map_err(error::db)?;
    let notify = tx.prepare_cached("SELECT pg_notify($1, '')").await.map_err(error::db)?;
    tx.execute(&notify, &[&CHANNEL]).await.map_err(error::db)?;
    Ok(())
}

/// Finishes the claimed `job` in the caller's transaction, or puts it back for a retry.
pub(crate) async fn move_on(tx: &Tx<'_>, job: &Job, next: NextStep) -> Result<()> {
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
pub(crate) async fn check_room(tx: &Tx<'_>, tenant: TenantId, max: i64) -> Result<()> {
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
/// "Due" is by the later of the database's clock and plinth's (`$2`): retries and paced
/// deliveries are scheduled on plinth's, which tests move forward instead of waiting.
pub const CLAIM_SQL: &str = "WITH q AS (\
        SELECT queue FROM job_queues WHERE running = 0 AND NOT paused AND next_run_at <= greatest(now(), $2) \
        ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
    UPDATE jobs SET locked_by = $1, locked_at = now(), attempts = attempts + 1 \
    WHERE id = (SELECT j.id FROM jobs j \
                WHERE j.queue = (SELECT queue FROM q) AND j.locked_at IS NULL AND j.run_at <= greatest(now(), $2) \
                ORDER BY j.run_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) \
    RETURNING id, kind, payload, traceparent";

/// The job of a claimed row. Its stored trace context is parsed again, and dropped (the job's
/// span then starts a trace of its own) when it is not a well-formed `traceparent`: a stored
/// value is never handed to the tracer unchecked.
fn job_from(id: i64, kind: &str, payload: &serde_json::Value, traceparent: Option<&str>) -> Result<Job> {
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).and_then(|s| s.parse::<Uuid>().ok());
    let tenant = TenantId::from_uuid(field("tenant_id").ok_or_else(|| corrupt("job payload"))?);
    let work = match kind {
        DELIVER => Work::Deliver(DeliveryId::from_uuid(field("delivery_id").ok_or_else(|| corrupt("job payload"))?)),
        EMAIL => Work::Email(EmailId::from_uuid(field("email_id").ok_or_else(|| corrupt("job payload"))?)),
        NOOP => Work::Noop,
        _ => return Err(corrupt("job kind")),
    };
    let trace = traceparent.and_then(|value| {
        let parsed = TraceParent::parse(value);
        if parsed.is_none() {
            tracing::debug!(job = id, "a job's stored trace context is malformed: dropped");
        }
        parsed
    });
    Ok(Job { id, tenant, work, trace })
}

/// How long the listener waits for its own probe notification before it concludes that
/// notifications don't reach it.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// What became of one listening connection.
enum Listened {
    /// It dropped (or never connected): try again.
    Dropped,
    /// The server refused `LISTEN`, or a notification sent through the pool never arrived
    /// (a pooler in transaction mode hands the `LISTEN` to a server connection it then gives to
    /// others): notifications can't be had here.
    Deaf,
}

impl PgStore {
    /// Keeps a connection LISTENing on the jobs channel, reconnecting when it drops. Should the
    /// listener turn out not to hear notifications (see [`Listened::Deaf`]), it logs that once
    /// and stops: idle workers find jobs by polling (`wait_for_work` never waits longer than
    /// it is told).
    fn start_listener(&self) {
        if self.wakeups.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                if let Listened::Deaf = store.listen_once().await {
                    tracing::warn!(
                        "job notifications do not reach this process (is DATABASE_URL a pooler in transaction \
                         mode? set PLINTH_DATABASE_DIRECT_URL): idle workers poll for jobs every second instead"
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Connects, LISTENs, checks with a probe sent through the pool that notifications arrive,
    /// then wakes waiting workers on each until the connection drops.
    async fn listen_once(&self) -> Listened {
        let Ok((client, mut connection)) = self.listen_config.connect(NoTls).await else {
            return Listened::Dropped;
        };
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let probe = Uuid::now_v7().to_string();
        // The connection must be polled for LISTEN to complete, and while the probe goes out.
        {
            let mut listen = std::pin::pin!(client.batch_execute(LISTEN));
            loop {
                tokio::select! {
                    r = &mut listen => match r {
                        Ok(()) => break,
                        Err(e) if e.as_db_error().is_some() => return Listened::Deaf,
                        Err(_) => return Listened::Dropped,
                    },
                    m = messages.next() => if m.is_none() { return Listened::Dropped },
                }
            }
        }
        let heard = async {
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.payload() == probe => return Ok(()),
                    Ok(AsyncMessage::Notification(_)) => self.wakeups.notify.notify_waiters(),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            Err(Listened::Dropped)
        };
        let sent = async {
            let client = self.conn(op::JOBS_PROBE).await?;
            client
                .execute_typed("SELECT pg_notify($1, $2)", &[(&CHANNEL, Type::TEXT), (&probe, Type::TEXT)])
                .await
                .map_err(error::db)
        };
        let (heard, sent) = tokio::join!(tokio::time::timeout(PROBE_WAIT, heard), sent);
        match (heard, sent) {
            (Ok(Ok(())), _) => {}
            (Ok(Err(dropped)), _) => return dropped,
            // The probe never went out (the pool's database is down): try again later.
            (Err(_), Err(_)) => return Listened::Dropped,
            (Err(_), Ok(_)) => return Listened::Deaf,
        }
        self.wakeups.notify.notify_waiters();
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => self.wakeups.notify.notify_waiters(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Listened::Dropped
    }
}

#[async_trait]
impl JobQueue for PgStore {
    async fn claim(&self, worker: &str) -> Result<Option<Job>> {
        self.bounded(async {
            let client = self.conn(op::JOBS_CLAIM).await?;
            let rows = unscoped(&client, CLAIM_SQL, &[&worker, &self.clock.now()], 1).await?;
            rows.first().map(|r| job_from(r.get(0), r.get(1), &r.get(2), r.get(3))).transpose()
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
            let sql =
                "UPDATE jobs SET locked_by = NULL, locked_at = NULL, attempts = greatest(attempts - 1, 0) WHERE id = $1";
            unscoped(&client, sql, &[&job.id], 0).await?;
            Ok(())
        })
        .await
    }

    async fn rescue(&self, after: Duration) -> Result<u64> {
        let seconds = after.as_secs_f64();
        self.bounded(async {
            let client = self.conn(op::JOBS_RESCUE).await?;
            let sql = "WITH freed AS (UPDATE jobs SET locked_by = NULL, locked_at = NULL \
                       WHERE locked_at < now() - make_interval(secs => $1) RETURNING 1) \
                       SELECT count(*) FROM freed";
            let rows = unscoped(&client, sql, &[&seconds], 1).await?;
            let freed: i64 = rows.first().ok_or_else(|| corrupt("rescue"))?.try_get(0).map_err(error::db)?;
            Ok(u64::try_from(freed).unwrap_or(0))
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.bounded(async {
            let client = self.conn(op::JOBS_STATS).await?;
            // Sums over one counter row per tenant: the same cost with no jobs or with millions.
            // A paused tenant's jobs (suspended or deleted) wait on purpose: they are not behind.
            let sql = "SELECT coalesce(sum(pending - running) FILTER (WHERE NOT paused), 0)::int8, \
                              coalesce(sum(running), 0)::int8, \
                              extract(epoch FROM now() - (SELECT min(head_run_at) FROM job_queues \
                                                          WHERE head_run_at <= now() AND NOT paused))::float8 \
                       FROM job_queues";
            let rows = unscoped(&client, sql, &[], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("job queue counters"))?;
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
            let rows = unscoped(&client, "SELECT * FROM plinth_prune($1)", &[&before], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("prune"))?;
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
                            d.created_at, d.slot_at, w.url, w.secret_sealed, w.previous_secret_sealed, \
                            w.previous_secret_expires_at, w.enabled, w.rate_limit_per_second, e.payload \
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
                    let previous: Option<Vec<u8>> = row.try_get("previous_secret_sealed").map_err(error::db)?;
                    let until: Option<time::OffsetDateTime> =
                        row.try_get("previous_secret_expires_at").map_err(error::db)?;
                    let rate: Option<i32> = row.try_get("rate_limit_per_second").map_err(error::db)?;
                    Some(OutgoingDelivery {
                        delivery: crate::webhooks::delivery_from_row(&row)?,
                        url: row.try_get("url").map_err(error::db)?,
                        sealed_secret: row.try_get("secret_sealed").map_err(error::db)?,
                        previous_secret: previous.zip(until),
                        body: Bytes::from(serde_json::to_vec(&payload).map_err(Error::internal)?),
                        enabled: row.try_get("enabled").map_err(error::db)?,
                        rate_limit_per_second: rate.and_then(|r| u32::try_from(r).ok()),
                        slot_at: row.try_get("slot_at").map_err(error::db)?,
                    })
                }
            };
            tx.commit().await.map_err(error::db)?;
            Ok(out)
        })
        .await
    }

    async fn record(
        &self,
        job: &Job,
        delivery: DeliveryId,
        outcome: &AttemptOutcome,
        next: NextStep,
        at: time::OffsetDateTime,
    ) -> Result<WebhookHealth> {
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
                    "WITH d AS (UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, last_error = $4, \
                                updated_at = $5, slot_at = NULL \
                                WHERE tenant_id = $1 AND id = $2 RETURNING tenant_id, webhook_id) \
                     UPDATE webhooks w SET \
                         last_success_at = CASE WHEN $6 THEN $5 ELSE w.last_success_at END, \
                         consecutive_failures = CASE WHEN $6 THEN 0 ELSE w.consecutive_failures + 1 END, \
                         failing_since = CASE WHEN $6 THEN NULL ELSE coalesce(w.failing_since, $5) END \
                     FROM d WHERE w.tenant_id = d.tenant_id AND w.id = d.webhook_id \
                     RETURNING w.enabled, w.disabled_reason, w.disabled_at, w.last_success_at, \
                               w.consecutive_failures, w.failing_since",
                )
                .await
                .map_err(error::db)?;
            let row = tx
                .query_opt(
                    &update,
                    &[
                        job.tenant.as_uuid(),
                        delivery.as_uuid(),
                        &state.as_str(),
                        &outcome.error,
                        &at,
                        &outcome.delivered,
                    ],
                )
                .await
                .map_err(error::db)?;
            move_on(&tx, job, next).await?;
            tx.commit().await.map_err(error::db)?;
            row.as_ref().map_or(Ok(WebhookHealth::default()), crate::webhooks::health_from_row)
        })
        .await
    }

    async fn skip(&self, job: &Job, delivery: DeliveryId) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::DELIVERIES_SKIP).await?;
            let tx = tenant_tx(&mut client, job.tenant).await?;
            let q = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = 'skipped', slot_at = NULL, updated_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 AND state = 'pending'",
                )
                .await
                .map_err(error::db)?;
            tx.execute(&q, &[job.tenant.as_uuid(), delivery.as_uuid(), &self.clock.now()]).await.map_err(error::db)?;
            move_on(&tx, job, NextStep::Dead).await?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }

    async fn pace(
        &self,
        job: &Job,
        delivery: DeliveryId,
        at: time::OffsetDateTime,
        interval: Duration,
    ) -> Result<Option<time::OffsetDateTime>> {
        let micros = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
        self.bounded(async {
            let mut client = self.conn(op::DELIVERIES_PACE).await?;
            let tx = tenant_tx(&mut client, job.tenant).await?;
            // The slot taken is the webhook's next free one, or `at` if that has passed; the
            // next free one moves on by one interval. Concurrent attempts queue on the row lock.
            let take = tx
                .prepare_cached(
                    "UPDATE webhooks w SET next_slot_at = greatest(coalesce(w.next_slot_at, $3), $3) \
                                                          + make_interval(secs => $4::float8 / 1000000) \
                     FROM webhook_deliveries d \
                     WHERE d.tenant_id = $1 AND d.id = $2 AND w.tenant_id = d.tenant_id AND w.id = d.webhook_id \
                     RETURNING w.next_slot_at - make_interval(secs => $4::float8 / 1000000) AS slot, \
                               w.next_slot_at - make_interval(secs => $4::float8 / 1000000) <= $3 AS due",
                )
                .await
                .map_err(error::db)?;
            let row = tx
                .query_opt(&take, &[job.tenant.as_uuid(), delivery.as_uuid(), &at, &(micros as f64)])
                .await
                .map_err(error::db)?;
            let slot = match row {
                Some(row) if !row.try_get::<_, bool>("due").map_err(error::db)? => {
                    row.try_get::<_, time::OffsetDateTime>("slot").map_err(error::db)?
                }
                _ => {
                    tx.commit().await.map_err(error::db)?;
                    return Ok(None);
                }
            };
            let hold = tx
                .prepare_cached("UPDATE webhook_deliveries SET slot_at = $3 WHERE tenant_id = $1 AND id = $2")
                .await
                .map_err(error::db)?;
            tx.execute(&hold, &[job.tenant.as_uuid(), delivery.as_uuid(), &slot]).await.map_err(error::db)?;
            move_on(&tx, job, NextStep::RetryAt(slot)).await?;
            tx.commit().await.map_err(error::db)?;
            Ok(Some(slot))
        })
        .await
    }

    async fn discard(&self, job: &Job) -> Result<()> {
        self.bounded(async {
            let client = self.conn(op::JOBS_DISCARD).await?;
            unscoped(&client, "DELETE FROM jobs WHERE id = $1", &[&job.id], 0).await?;
            Ok(())
        })
        .await
    }
}
