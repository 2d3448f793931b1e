//! Working the queue: one job at a time, one attempt per job, retries scheduled here with
//! exponential backoff and jitter.

use std::time::{Duration, Instant};

use rand::Rng as _;

use super::Plinth;
use crate::error::Result;
use crate::ids::DeliveryId;
use crate::metric;
use crate::ports::{AttemptOutcome, Job, NextStep, OutboundWebhook, Work};

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
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn work_one(&self, worker: &str) -> Result<bool> {
        let Some(job) = self.ports.jobs.claim(worker).await? else {
            return Ok(false);
        };
        let started = Instant::now();
        let (kind, done) = match job.work {
            Work::Deliver(delivery) => ("deliver", self.deliver(&job, delivery).await),
            Work::Email(email) => ("email", self.send_email(&job, email).await),
            Work::Noop => ("noop", self.ports.deliveries.discard(&job).await),
        };
        let outcome = if done.is_ok() { "ok" } else { "error" };
        metrics::counter!(metric::JOBS, "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!(metric::JOB_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
        if let Err(e) = done {
            // Leave the job claimed: rescue frees it after the delay; meanwhile log why.
            tracing::warn!(job = job.id, error = %e, "job failed; it will be rescued");
            return Err(e);
        }
        Ok(true)
    }

    /// Makes one attempt of the delivery `job` names, and records it.
    async fn deliver(&self, job: &Job, delivery: DeliveryId) -> Result<()> {
        let Some(out) = self.ports.deliveries.load(job.tenant, delivery).await? else {
            return self.ports.deliveries.discard(job).await;
        };
        let secret = self.ports.secrets.open(&out.sealed_secret, out.delivery.webhook_id.as_uuid().as_bytes())?;
        let request = OutboundWebhook { url: out.url, body: out.body, event_id: out.delivery.event_id, secret };
        let outcome: AttemptOutcome = self.ports.sender.send(&request).await;
        let attempts = out.delivery.attempts + 1;
        let settings = self.settings.delivery;
        let next = if outcome.delivered {
            NextStep::Delivered
        } else if attempts >= settings.max_attempts {
            NextStep::Dead
        } else {
            NextStep::RetryAt(self.ports.clock.now() + backoff(settings.backoff, attempts))
        };
        tracing::info!(job = job.id, attempts, delivered = outcome.delivered, status = ?outcome.status, "webhook attempt");
        let result = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "retry",
            NextStep::Dead => "dead",
        };
        metrics::counter!(metric::WEBHOOK_ATTEMPTS, "result" => result).increment(1);
        self.ports.deliveries.record(job, delivery, &outcome, next).await
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
