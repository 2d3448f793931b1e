//! `GovernorLimiter`: GCRA in this process, over governor's keyed limiters.
//!
//! A governor limiter has one quota, so there is one per (policy, quota) pair in use, made
//! when first needed and keyed by subject. The whole quota is the burst: a subject may spend
//! it at once, then earns one request back every `60 / quota` seconds.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use governor::NotUntil;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DefaultKeyedStateStore;
use plinth_domain::Result;
use plinth_domain::ports::{Clock, Decision, Policy, Quota, RateLimiter};

/// A governor limiter keyed by subject, on the injected clock.
type Keyed = governor::RateLimiter<String, DefaultKeyedStateStore<String>, PortClock, StateInformationMiddleware>;

/// The injected clock as governor reads it: its monotonic reading is governor's instant.
#[derive(Debug, Clone)]
struct PortClock(Arc<dyn Clock>);

impl governor::clock::Clock for PortClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The in-process `RateLimiter`: exact for one instance, and the fallback when the shared
/// limiter is unavailable. Call [`GovernorLimiter::retain_recent`] now and then to forget
/// subjects whose quota is full again.
pub struct GovernorLimiter {
    limiters: RwLock<HashMap<(Policy, Quota), Arc<Keyed>>>,
    clock: PortClock,
}

impl GovernorLimiter {
    /// A limiter that has counted nothing yet, earning requests back as `clock`'s monotonic
    /// readings advance.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { limiters: RwLock::new(HashMap::new()), clock: PortClock(clock) }
    }

    /// Forgets the subjects whose quota is full again (they are indistinguishable from new
    /// ones) and returns their memory; limiting is unaffected. Returns the subjects kept.
    pub fn retain_recent(&self) -> usize {
        let mut kept = 0;
        for limiter in self.all() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            kept += limiter.len();
        }
        tracing::debug!(subjects = kept, "rate limiter state pruned");
        kept
    }

    fn all(&self) -> Vec<Arc<Keyed>> {
        self.limiters.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// The limiter of `policy` with `quota`, made on first use.
    fn limiter(&self, policy: Policy, quota: Quota) -> Arc<Keyed> {
        if let Some(l) = self.limiters.read().unwrap_or_else(PoisonError::into_inner).get(&(policy, quota)) {
            return l.clone();
        }
        let mut limiters = self.limiters.write().unwrap_or_else(PoisonError::into_inner);
        limiters
            .entry((policy, quota))
            .or_insert_with(|| {
                let q = governor::Quota::per_minute(quota.per_minute).allow_burst(quota.per_minute);
                let state = DefaultKeyedStateStore::default();
                Arc::new(
                    governor::RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(q, state, self.clock.clone())
                        .with_middleware::<StateInformationMiddleware>(),
                )
            })
            .clone()
    }
}

impl fmt::Debug for GovernorLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limiters = self.limiters.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("GovernorLimiter").field("quotas", &limiters.keys().collect::<Vec<_>>()).finish()
    }
}

#[async_trait]
impl RateLimiter for GovernorLimiter {
    async fn check(&self, policy: Policy, subject: &str, quota: Quota) -> Result<Decision> {
        let limiter = self.limiter(policy, quota);
        let limit = quota.per_minute.get();
        Ok(match limiter.check_key(&subject.to_owned()) {
            Ok(state) => admitted(limit, state.remaining_burst_capacity()),
            Err(not_until) => refused(limit, &not_until, self.clock.0.elapsed()),
        })
    }
}

/// An admitted request: `reset_secs` is the time to earn back what is spent, one request per
/// `60 / limit` seconds, rounded up.
fn admitted(limit: u32, remaining: u32) -> Decision {
    let spent = u64::from(limit.saturating_sub(remaining));
    Decision {
        allowed: true,
        limit,
        remaining,
        reset_secs: (spent * Quota::WINDOW_SECS).div_ceil(u64::from(limit)),
        retry_after_secs: 0,
    }
}

/// A refused request: nothing remains; one request is earned back after the wait, and the
/// rest of the quota (`limit - 1` more) after that.
fn refused(limit: u32, not_until: &NotUntil<Duration>, now: Duration) -> Decision {
    let wait = not_until.wait_time_from(now);
    let retry_after_secs = whole_secs(wait).max(1);
    let full = wait.saturating_add(not_until.quota().replenish_interval().saturating_mul(limit.saturating_sub(1)));
    Decision {
        allowed: false,
        limit,
        remaining: 0,
        reset_secs: whole_secs(full).max(retry_after_secs),
        retry_after_secs,
    }
}

/// `d` in whole seconds, rounded up.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use plinth_domain::clock::{ManualClock, SystemClock};

    use super::*;

    fn system() -> Arc<dyn Clock> {
        Arc::new(SystemClock::new())
    }

    fn quota(n: u32) -> Quota {
        Quota::per_minute(n).unwrap()
    }

    #[test]
    fn an_admitted_request_resets_when_what_was_spent_is_earned_back() {
        assert_eq!(admitted(5, 4).reset_secs, 12);
        assert_eq!(admitted(5, 0).reset_secs, 60);
        assert_eq!(admitted(60, 57).reset_secs, 3);
        assert_eq!(admitted(7, 6).reset_secs, 9);
        assert_eq!(admitted(300, 299).retry_after_secs, 0);
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_nanos(1)), 1);
        assert_eq!(whole_secs(Duration::from_secs(2)), 2);
        assert_eq!(whole_secs(Duration::from_millis(2001)), 3);
    }

    #[tokio::test]
    async fn retain_recent_keeps_spent_subjects_limited() {
        let limiter = GovernorLimiter::new(system());
        for _ in 0..3 {
            assert!(limiter.check(Policy::Ip, "spent", quota(3)).await.unwrap().allowed);
        }
        assert!(limiter.check(Policy::Ip, "half", quota(3)).await.unwrap().allowed);
        assert_eq!(limiter.retain_recent(), 2);
        assert!(!limiter.check(Policy::Ip, "spent", quota(3)).await.unwrap().allowed);
        assert_eq!(limiter.check(Policy::Ip, "half", quota(3)).await.unwrap().remaining, 1);
    }

    #[tokio::test]
    async fn retain_recent_forgets_subjects_whose_quota_is_full_again() {
        let clock = Arc::new(ManualClock::new());
        let limiter = GovernorLimiter::new(clock.clone());
        // 6,000 a minute: one request is earned back every 10 ms.
        assert!(limiter.check(Policy::Tenant, "brief", quota(6000)).await.unwrap().allowed);
        // governor forgets a subject one emission interval after its quota is whole again.
        clock.advance(Duration::from_millis(19));
        assert_eq!(limiter.retain_recent(), 1, "forgotten too early");
        clock.advance(Duration::from_millis(1));
        assert_eq!(limiter.retain_recent(), 0);
        assert_eq!(limiter.check(Policy::Tenant, "brief", quota(6000)).await.unwrap().remaining, 5999);
    }

    #[tokio::test]
    async fn one_subject_under_two_quotas_is_counted_separately() {
        let limiter = GovernorLimiter::new(system());
        assert_eq!(limiter.check(Policy::Tenant, "t", quota(300)).await.unwrap().remaining, 299);
        assert_eq!(limiter.check(Policy::Tenant, "t", quota(3000)).await.unwrap().remaining, 2999);
    }
}
