//! Working the queue: one job at a time, one attempt per job, retries scheduled here with
//! exponential backoff and jitter.

use std::time::{Duration, Instant};

use rand::Rng as _;
use tracing::Instrument as _;

use time::OffsetDateTime;

use super::Plinth;
use super::webhooks::pace_interval;
use crate::audit::Target;
use crate::entities::{Webhook, WebhookHealth};
use crate::error::Result;
use crate::events::{DomainEvent, EventKind};
use crate::ids::{DeliveryId, TenantId, WebhookId};
use crate::metric;
use crate::ports::{AttemptOutcome, FailingLongEnough, Job, NextStep, OutboundWebhook, Work};
use crate::trace;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The delay before attempt `attempt + 1`, after `attempt` failed ones: `base · 2^(attempt-1)`,
/// of which a random half is jitter (so retries of many deliveries don't arrive together).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

impl Plinth {
    /// Claims and works one job as `worker`; `false` when nothing was due.
    ///
    /// A claimed job is worked in a `work_one` span that records its kind and tenant: it
    /// continues the trace of the span that enqueued the job, if the job carries one, else it
    /// starts a trace of its own. A poll that finds nothing opens no span, so an idle worker
    /// traces nothing.
    pub async fn work_one(&self, worker: &str) -> Result<bool> {
        let Some(job) = self.ports.jobs.claim(worker).await? else {
            return Ok(false);
        };
        let span = tracing::debug_span!("work_one", worker, job.kind = tracing::field::Empty, tenant = %job.tenant);
        self.ports.traces.resume(&span, job.trace.as_ref());
        trace::working(self.work(job).instrument(span)).await.map(|()| true)
    }

    /// Makes the one attempt `job` asks for, in the job's span.
    async fn work(&self, job: Job) -> Result<()> {
        let started = Instant::now();
        let (kind, done) = match job.work {
            Work::Deliver(delivery) => ("deliver", self.deliver(&job, delivery).await),
            Work::Email(email) => ("email", self.send_email(&job, email).await),
            Work::Noop => ("noop", self.ports.deliveries.discard(&job).await),
        };
        tracing::Span::current().record("job.kind", kind);
        let outcome = if done.is_ok() { "ok" } else { "error" };
        metrics::counter!(metric::JOBS, "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!(metric::JOB_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
        if let Err(e) = done {
            // Leave the job claimed: rescue frees it after the delay; meanwhile log why.
            tracing::warn!(job = job.id, error = %e, "job failed; it will be rescued");
            return Err(e);
        }
        Ok(())
    }

    /// Makes one attempt of the delivery `job` names, and records it: unless its webhook is
    /// disabled (the delivery is skipped) or its pace puts the attempt later (the job waits).
    async fn deliver(&self, job: &Job, delivery: DeliveryId) -> Result<()> {
        let store = &self.ports.deliveries;
        let Some(out) = store.load(job.tenant, delivery).await? else {
            return store.discard(job).await;
        };
        if !out.enabled {
            metrics::counter!(metric::WEBHOOK_HELD, "reason" => "skipped").increment(1);
            return store.skip(job, delivery).await;
        }
        let now = self.ports.clock.now();
        // A delivery that holds a slot was postponed to it: its turn has come.
        if let (Some(rate), None) = (out.rate_limit_per_second, out.slot_at)
            && let Some(slot) = store.pace(job, delivery, now, pace_interval(rate)).await?
        {
            tracing::debug!(job = job.id, %slot, "webhook paced");
            metrics::counter!(metric::WEBHOOK_HELD, "reason" => "paced").increment(1);
            return Ok(());
        }
        let webhook = out.delivery.webhook_id;
        let context = webhook.as_uuid().as_bytes();
        let mut secrets = vec![self.ports.secrets.open(&out.sealed_secret, context)?];
        if let Some((sealed, until)) = &out.previous_secret
            && now < *until
        {
            secrets.push(self.ports.secrets.open(sealed, context)?);
        }
        let request = OutboundWebhook { url: out.url, body: out.body, event_id: out.delivery.event_id, secrets };
        let outcome: AttemptOutcome = self.ports.sender.send(&request).await;
        let attempts = out.delivery.attempts + 1;
        let settings = self.settings.delivery;
        let next = if outcome.delivered {
            NextStep::Delivered
        } else if attempts >= settings.max_attempts {
            NextStep::Dead
        } else {
            NextStep::RetryAt(now + backoff(settings.backoff, attempts))
        };
        tracing::info!(job = job.id, attempts, delivered = outcome.delivered, status = ?outcome.status, "webhook attempt");
        let result = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "retry",
            NextStep::Dead => "dead",
        };
        metrics::counter!(metric::WEBHOOK_ATTEMPTS, "result" => result).increment(1);
        let health = store.record(job, delivery, &outcome, next, now).await?;
        self.disable_if_failing(job.tenant, webhook, &health, now).await
    }

    /// Disables the webhook when every attempt has failed for `disable_after` and at least
    /// `disable_min_failures` of them: its pending deliveries are skipped, its tenant's owners
    /// and admins are mailed, and its other webhooks get a `webhook.disabled` event.
    async fn disable_if_failing(
        &self,
        tenant: TenantId,
        id: WebhookId,
        health: &WebhookHealth,
        now: OffsetDateTime,
    ) -> Result<()> {
        let settings = self.settings.delivery;
        let Some(since) = health.failing_since else { return Ok(()) };
        if health.consecutive_failures < settings.disable_min_failures || now - since < settings.disable_after {
            return Ok(());
        }
        let failing = FailingLongEnough {
            at: now,
            min_failures: settings.disable_min_failures,
            failing_before: now - settings.disable_after,
        };
        let reason = format!(
            "every attempt failed for {} ({} attempts in a row)",
            crate::mail::human_duration(settings.disable_after),
            health.consecutive_failures
        );
        let changes = serde_json::json!({ "reason": reason });
        let mut trail = self.audit(None, "webhook.disabled", Some(Target::new("webhook", id)), changes);
        trail.by_system();
        let events = |w: &Webhook| vec![DomainEvent::webhook(EventKind::WebhookDisabled, w, now)];
        if self.ports.webhooks.disable_failing(tenant, id, failing, &reason, &events, &trail).await?.is_some() {
            tracing::warn!(%tenant, webhook = %id, failures = health.consecutive_failures, "webhook disabled: it kept failing");
            metrics::counter!(metric::WEBHOOKS_DISABLED).increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(1000);
        for attempt in 1..=5u32 {
            let full = base * (1 << (attempt - 1));
            for _ in 0..100 {
                let d = backoff(base, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
    }
}
