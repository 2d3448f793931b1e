//! `RateLimiter` conformance: GCRA with the whole quota as the burst, earned back evenly over
//! the minute, counted per policy and subject.

use std::sync::Arc;
use std::time::Duration;

use super::{Time, fixtures};
use crate::ports::{Decision, Policy, Quota, RateLimiter};

/// Every `RateLimiter` behaviour, as named tests; the argument is an `Arc` of the limiter, or
/// `|clock| limiter` for a limiter that keeps time by that injected clock (see the module
/// [`conformance`](crate::conformance)).
#[macro_export]
macro_rules! rate_limiter_suite {
    ($($fixture:tt)+) => {
        mod rate_limiter {
            #[allow(unused_imports)]
            use super::*;
            $crate::__timed_conformance_tests!(
                rate_limit,
                $($fixture)+,
                [
                    a_fresh_subject_may_spend_its_whole_quota_at_once,
                    remaining_decreases_by_one_per_request,
                    the_limit_is_the_quota,
                    subjects_are_counted_independently,
                    policies_are_counted_independently,
                    reset_is_the_time_to_earn_back_what_was_spent,
                    a_refusal_says_when_to_retry,
                ],
                [the_quota_is_earned_back_evenly, a_refused_request_is_not_counted],
            );
        }
    };
}

/// Just over the time one request of a 60-a-minute quota takes to earn back.
const ONE_SECOND_AND_A_BIT: Duration = Duration::from_millis(1100);

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(per_minute).expect("a quota above zero")
}

fn subject() -> String {
    format!("conformance-{}", fixtures::random_hex())
}

async fn check(limiter: &dyn RateLimiter, policy: Policy, subject: &str, quota: Quota) -> Decision {
    limiter.check(policy, subject, quota).await.expect("check succeeds")
}

/// Spends the whole quota of `subject`, asserting that each request is admitted.
async fn spend_all(limiter: &dyn RateLimiter, policy: Policy, subject: &str, quota: Quota) {
    for i in 0..quota.per_minute.get() {
        let d = check(limiter, policy, subject, quota).await;
        assert!(d.allowed, "request {} of a fresh quota of {} refused: {d:?}", i + 1, quota.per_minute);
    }
}

/// A fresh subject gets its whole quota at once; the request after it is refused.
pub async fn a_fresh_subject_may_spend_its_whole_quota_at_once(limiter: Arc<dyn RateLimiter>) {
    let (s, q) = (subject(), quota(5));
    spend_all(&*limiter, Policy::Tenant, &s, q).await;
    let refused = check(&*limiter, Policy::Tenant, &s, q).await;
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.remaining, 0);
    assert!(refused.retry_after_secs >= 1, "{refused:?}");
}

/// Each admitted request leaves one fewer to spend at once.
pub async fn remaining_decreases_by_one_per_request(limiter: Arc<dyn RateLimiter>) {
    let (s, q) = (subject(), quota(5));
    for expected in (0..5).rev() {
        let d = check(&*limiter, Policy::Ip, &s, q).await;
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, expected, "{d:?}");
    }
}

/// Every decision, admitted or refused, reports the quota as its limit.
pub async fn the_limit_is_the_quota(limiter: Arc<dyn RateLimiter>) {
    let (s, q) = (subject(), quota(3));
    for _ in 0..4 {
        assert_eq!(check(&*limiter, Policy::Login, &s, q).await.limit, 3);
    }
    assert_eq!(check(&*limiter, Policy::Tenant, &subject(), quota(300)).await.limit, 300);
}

/// Spending one subject's quota leaves another subject's whole.
pub async fn subjects_are_counted_independently(limiter: Arc<dyn RateLimiter>) {
    let (a, b, q) = (subject(), subject(), quota(3));
    spend_all(&*limiter, Policy::Ip, &a, q).await;
    assert!(!check(&*limiter, Policy::Ip, &a, q).await.allowed);
    let other = check(&*limiter, Policy::Ip, &b, q).await;
    assert!(other.allowed, "{other:?}");
    assert_eq!(other.remaining, 2);
}

/// Spending a subject's quota under one policy leaves its quota under the others whole.
pub async fn policies_are_counted_independently(limiter: Arc<dyn RateLimiter>) {
    let (s, q) = (subject(), quota(3));
    spend_all(&*limiter, Policy::Ip, &s, q).await;
    assert!(!check(&*limiter, Policy::Ip, &s, q).await.allowed);
    for policy in [Policy::Login, Policy::Tenant] {
        let d = check(&*limiter, policy, &s, q).await;
        assert!(d.allowed, "{policy}: {d:?}");
        assert_eq!(d.remaining, 2, "{policy}: {d:?}");
    }
}

/// `reset_secs` is the time to earn back what was spent: a request is earned back every
/// `60 / quota` seconds, rounded up to whole seconds (allowing one second for time passing).
pub async fn reset_is_the_time_to_earn_back_what_was_spent(limiter: Arc<dyn RateLimiter>) {
    for per_minute in [5, 60, 7] {
        let (s, q) = (subject(), quota(per_minute));
        for spent in 1..=u64::from(per_minute).min(5) {
            let d = check(&*limiter, Policy::Tenant, &s, q).await;
            let expected = (spent * 60).div_ceil(u64::from(per_minute));
            assert!(
                d.reset_secs >= 1 && (expected.saturating_sub(1)..=expected).contains(&d.reset_secs),
                "{spent} of {per_minute}/min spent: expected reset about {expected}s, got {d:?}"
            );
        }
    }
}

/// A refusal reports nothing remaining, when one request will be admitted again (the time to
/// earn one back, in whole seconds) and that the quota is full again at most a minute later.
pub async fn a_refusal_says_when_to_retry(limiter: Arc<dyn RateLimiter>) {
    let (s, q) = (subject(), quota(5));
    spend_all(&*limiter, Policy::Login, &s, q).await;
    let d = check(&*limiter, Policy::Login, &s, q).await;
    assert!(!d.allowed, "{d:?}");
    assert_eq!((d.limit, d.remaining), (5, 0), "{d:?}");
    assert!((11..=12).contains(&d.retry_after_secs), "one of 5/min is earned back in 12s: {d:?}");
    assert!(d.reset_secs >= d.retry_after_secs && d.reset_secs <= 60, "{d:?}");
}

/// Once spent, the quota comes back evenly: at 60 a minute, one more request a second later,
/// and only one.
pub async fn the_quota_is_earned_back_evenly(limiter: Arc<dyn RateLimiter>, time: Time) {
    let (s, q) = (subject(), quota(60));
    spend_all(&*limiter, Policy::Tenant, &s, q).await;
    let refused = check(&*limiter, Policy::Tenant, &s, q).await;
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.retry_after_secs, 1, "{refused:?}");
    time.pass(ONE_SECOND_AND_A_BIT).await;
    let earned = check(&*limiter, Policy::Tenant, &s, q).await;
    assert!(earned.allowed, "nothing earned back after a second: {earned:?}");
    assert_eq!(earned.remaining, 0, "{earned:?}");
    let next = check(&*limiter, Policy::Tenant, &s, q).await;
    assert!(!next.allowed, "more than one request earned back in a second: {next:?}");
}

/// Refused requests cost nothing: after a burst of refusals, the next request is admitted as
/// soon as one is earned back.
pub async fn a_refused_request_is_not_counted(limiter: Arc<dyn RateLimiter>, time: Time) {
    let (s, q) = (subject(), quota(60));
    spend_all(&*limiter, Policy::Ip, &s, q).await;
    for _ in 0..10 {
        assert!(!check(&*limiter, Policy::Ip, &s, q).await.allowed);
    }
    time.pass(ONE_SECOND_AND_A_BIT).await;
    let d = check(&*limiter, Policy::Ip, &s, q).await;
    assert!(d.allowed, "refusals were counted: {d:?}");
}
