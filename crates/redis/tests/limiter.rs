//! The Redis limiter under concurrency: checks are batched into one script call, and each is
//! still counted exactly once, in order, against its own subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::ports::{Policy, Quota, RateLimiter};
use plinth_redis::{RedisConn, RedisLimiter, RedisSettings};
use plinth_testkit::{redis_prefix, shared_redis_url};

fn limiter(url: String) -> Arc<RedisLimiter> {
    let mut settings = RedisSettings::new(vec![url]);
    settings.prefix = redis_prefix();
    Arc::new(RedisLimiter::new(RedisConn::new(&settings).unwrap()))
}

fn subject(name: &str) -> String {
    format!("{name}-{:016x}", rand::random::<u64>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_are_each_counted_once_against_their_own_subject() {
    let limiter = limiter(shared_redis_url());
    let quota = Quota::per_minute(50).unwrap();
    let subjects: Vec<String> = (0..4).map(|i| subject(&format!("batch{i}"))).collect();
    // 120 checks on each of four subjects, all at once, so that many share a batch and the
    // same key appears many times in one.
    let tasks: Vec<_> = (0..480)
        .map(|i| {
            let (limiter, subject) = (limiter.clone(), subjects[i % 4].clone());
            tokio::spawn(
                async move { (subject.clone(), limiter.check(Policy::Tenant, &subject, quota).await.unwrap()) },
            )
        })
        .collect();
    let mut admitted: HashMap<String, Vec<u32>> = HashMap::new();
    for task in tasks {
        let (subject, d) = task.await.unwrap();
        assert_eq!(d.limit, 50);
        if d.allowed {
            admitted.entry(subject).or_default().push(d.remaining);
        } else {
            assert_eq!(d.remaining, 0, "{d:?}");
            assert!(d.retry_after_secs >= 1, "{d:?}");
        }
    }
    for subject in &subjects {
        let mut remaining = admitted.remove(subject).unwrap_or_default();
        remaining.sort_unstable();
        // Exactly the quota was admitted, each admission leaving one fewer: nothing counted
        // twice, nothing lost, no subject's checks counted against another's.
        assert_eq!(remaining, (0..50).collect::<Vec<u32>>(), "{subject}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_at_once_not_a_hang() {
    // Nothing listens on port 1 of loopback.
    let limiter = limiter("redis://127.0.0.1:1".into());
    let started = Instant::now();
    let err = limiter.check(Policy::Ip, &subject("down"), Quota::per_minute(5).unwrap()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The batcher survives the failure: the next check is answered (with the same error).
    let again = limiter.check(Policy::Ip, &subject("down"), Quota::per_minute(5).unwrap()).await.unwrap_err();
    assert!(again.is_unavailable(), "{again:?}");
}

fn leasing(percent: u32) -> Arc<RedisLimiter> {
    let mut settings = RedisSettings::new(vec![shared_redis_url()]);
    settings.prefix = redis_prefix();
    Arc::new(RedisLimiter::leasing(RedisConn::new(&settings).unwrap(), percent))
}

#[tokio::test]
async fn one_instance_with_leases_admits_the_quota_exactly_and_counts_down_by_one() {
    let limiter = leasing(5);
    let (s, quota) = (subject("lease"), Quota::per_minute(600).unwrap());
    let started = Instant::now();
    for expected in (0..600).rev() {
        let d = limiter.check(Policy::Tenant, &s, quota).await.unwrap();
        assert!(d.allowed, "refused with {} left: {d:?}", expected + 1);
        // Earned back while the loop runs (one every 100 ms) may add one.
        assert!((expected..=expected + 2).contains(&d.remaining), "expected {expected} left: {d:?}");
    }
    // Past the quota only what was earned back since the first check (one every 100 ms, on
    // Redis' clock) may be admitted: anything more is a lease spent twice.
    let mut over = 0u128;
    for _ in 0..100 {
        over += u128::from(limiter.check(Policy::Tenant, &s, quota).await.unwrap().allowed);
    }
    let earned = started.elapsed().as_millis() / 100 + 1;
    assert!(over <= earned, "{over} admitted past the quota, {earned} earned back in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_leases_share_one_quota_within_a_lease_each() {
    // Two instances of one fleet: the same Redis and prefix, each with its own leases.
    let prefix = redis_prefix();
    let instance = || {
        let mut settings = RedisSettings::new(vec![shared_redis_url()]);
        settings.prefix = prefix.clone();
        Arc::new(RedisLimiter::leasing(RedisConn::new(&settings).unwrap(), 5))
    };
    let (a, b) = (instance(), instance());
    let (s, quota) = (subject("fleet"), Quota::per_minute(600).unwrap());
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (limiter, s) = (if i % 2 == 0 { a.clone() } else { b.clone() }, s.clone());
            tokio::spawn(async move { limiter.check(Policy::Tenant, &s, quota).await.unwrap().allowed })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += u32::from(task.await.unwrap());
    }
    // Never more than the quota (plus what is earned back while this runs, one per 100 ms);
    // at most one unspent lease (5% of 600) per instance refused too early.
    assert!(admitted <= 600 + 5, "{admitted} admitted");
    assert!(admitted >= 600 - 2 * 30, "{admitted} admitted");
}
