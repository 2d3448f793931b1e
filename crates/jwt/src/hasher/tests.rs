//! `Argon2Hasher`: results, the dummy verification's cost, and the bound on concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::Error;
use plinth_domain::ports::PasswordHasher;
use plinth_domain::values::{Password, PasswordHash};

use super::*;

/// Cheap parameters, for the tests that are not about cost.
fn fast() -> Argon2Hasher {
    fast_with_permits(2)
}

fn fast_with_permits(permits: usize) -> Argon2Hasher {
    Argon2Hasher::with_params(Argon2Params::new(1024, 1, 1, None).unwrap(), permits).unwrap()
}

fn password(s: &str) -> Password {
    Password::parse(s).unwrap()
}

#[tokio::test]
async fn a_password_verifies_against_its_own_hash() {
    let hasher = fast();
    let hash = hasher.hash(&password("correct horse battery")).await.unwrap();
    assert!(hasher.verify(&password("correct horse battery"), Some(&hash)).await.unwrap());
}

#[tokio::test]
async fn a_wrong_password_does_not_verify() {
    let hasher = fast();
    let hash = hasher.hash(&password("correct horse battery")).await.unwrap();
    assert!(!hasher.verify(&password("correct horse battery!"), Some(&hash)).await.unwrap());
}

#[tokio::test]
async fn two_hashes_of_one_password_differ_by_their_salt() {
    let hasher = fast();
    let a = hasher.hash(&password("correct horse battery")).await.unwrap();
    let b = hasher.hash(&password("correct horse battery")).await.unwrap();
    assert_ne!(a, b);
    assert!(hasher.verify(&password("correct horse battery"), Some(&b)).await.unwrap());
}

#[tokio::test]
async fn hashes_are_argon2id_phc_strings_with_the_owasp_parameters() {
    let hasher = Argon2Hasher::new(1).unwrap();
    let hash = hasher.hash(&password("correct horse battery")).await.unwrap();
    assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash.as_str());
}

#[tokio::test]
async fn an_unknown_user_is_refused_even_with_the_dummy_password() {
    let hasher = fast();
    let dummy = password(std::str::from_utf8(DUMMY_PASSWORD).unwrap());
    assert!(!hasher.verify(&dummy, None).await.unwrap());
    assert!(!hasher.verify(&password("correct horse battery"), None).await.unwrap());
}

#[tokio::test]
async fn a_malformed_stored_hash_is_an_internal_error() {
    let hasher = fast();
    let real = hasher.hash(&password("correct horse battery")).await.unwrap();
    let truncated = real.as_str().rsplit_once('$').unwrap().0.to_owned();
    for stored in [
        String::new(),
        "not a hash".to_owned(),
        "$argon2id$v=19$m=19456,t=2,p=1".to_owned(),
        truncated,
        "$md5$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        "$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
    ] {
        let result = hasher.verify(&password("correct horse battery"), Some(&PasswordHash::new(stored.clone()))).await;
        assert!(matches!(result, Err(Error::Internal(_))), "{stored:?}: {result:?}");
    }
}

#[tokio::test]
async fn the_dummy_hash_has_the_parameters_of_a_real_one() {
    // An unknown email is verified against the dummy with the same parameters a real hash
    // has, so it costs what a wrong password costs; `a_caller_that_stops_waiting_for_a_permit_costs_no_hash`
    // shows that every job goes through a hashing permit. (The end-to-end timing is
    // compared in the web crate's auth tests.)
    let params = Argon2Params::new(2048, 3, 1, None).unwrap();
    let hasher = Argon2Hasher::with_params(params, 1).unwrap();
    let real = hasher.hash(&password("correct horse battery")).await.unwrap();
    let params_of = |phc: &str| phc.split('$').nth(3).unwrap().to_owned();
    assert_eq!(params_of(hasher.dummy.as_str()), "m=2048,t=3,p=1");
    assert_eq!(params_of(hasher.dummy.as_str()), params_of(real.as_str()));
    let parsed = password_hash::PasswordHash::new(hasher.dummy.as_str()).unwrap();
    assert!(parsed.salt.is_some() && parsed.hash.is_some(), "a complete PHC string");
}

#[tokio::test]
async fn a_caller_that_stops_waiting_for_a_permit_costs_no_hash() {
    // The permits, not the hashing threads, are what callers queue on: a request that gives up
    // (its client went away) before a permit is free leaves nothing queued for the threads.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hasher = Arc::new(fast_with_permits(1));
    let held = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let waiting = tokio::spawn({
        let (hasher, ran) = (Arc::clone(&hasher), Arc::clone(&ran));
        async move { hasher.run(move |_| ran.fetch_add(1, Ordering::SeqCst)).await }
    });
    // One yield of this single-threaded runtime runs the task up to its wait for a permit.
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "ran without a permit");
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    drop(held);
    // Jobs run in order on the one hashing thread: had the abandoned job been queued, it would
    // have run before this one.
    hasher.run(|_| ()).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the abandoned caller's job ran");
}

/// Runs `n` jobs on `hasher` at once, each holding its hashing thread until `release` is
/// set, and returns the most that ever ran together once `n` have started or `wait` passed.
async fn most_at_once(hasher: &Arc<Argon2Hasher>, n: usize, wait: Duration) -> usize {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (running, most, started) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let release = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let hasher = Arc::clone(hasher);
            let (running, most, started, release) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&started), Arc::clone(&release));
            tokio::spawn(async move {
                hasher
                    .run(move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        started.fetch_add(1, Ordering::SeqCst);
                        while !release.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + wait;
    while started.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = most.load(Ordering::SeqCst);
    release.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permit_runs_hashing_jobs_one_at_a_time() {
    let hasher = Arc::new(fast_with_permits(1));
    // Only one can start while the jobs are held, so this waits out the whole window; any
    // second job to run alongside the first in that time is caught.
    assert_eq!(most_at_once(&hasher, 4, Duration::from_millis(300)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_permits_run_n_hashing_jobs_at_once() {
    let hasher = Arc::new(fast_with_permits(3));
    // All three must be running together before any is released.
    assert_eq!(most_at_once(&hasher, 3, Duration::from_secs(10)).await, 3);
}

#[test]
fn debug_shows_neither_the_dummy_hash_nor_a_salt() {
    let shown = format!("{:?}", fast());
    assert!(shown.contains("Argon2Hasher"), "{shown}");
    assert!(!shown.contains('$'), "{shown}");
}

#[tokio::test]
async fn hashes_made_with_other_parameters_verify_in_more_or_less_memory() {
    // A stored hash is verified with the parameters it names, not the hasher's own.
    let small = fast_with_permits(1);
    let large = Argon2Hasher::with_params(Argon2Params::new(4096, 1, 1, None).unwrap(), 1).unwrap();
    let from_small = small.hash(&password("correct horse battery")).await.unwrap();
    let from_large = large.hash(&password("correct horse battery")).await.unwrap();
    for (hasher, stored) in [(&small, &from_large), (&large, &from_small), (&small, &from_small)] {
        assert!(hasher.verify(&password("correct horse battery"), Some(stored)).await.unwrap(), "{}", stored.as_str());
        assert!(!hasher.verify(&password("correct horse battery!"), Some(stored)).await.unwrap());
    }
}
