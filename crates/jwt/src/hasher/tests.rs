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
    let params = Argon2Params::new(1024, 1, 1, None).unwrap();
    Argon2Hasher::with_params(params, 2).unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_costs_about_as_much_as_a_wrong_password() {
    let hasher = Argon2Hasher::new(1).unwrap();
    let hash = hasher.hash(&password("correct horse battery")).await.unwrap();
    let guess = password("wrong horse battery");
    let (mut known, mut unknown) = (Duration::ZERO, Duration::ZERO);
    // Interleaved, so that a burst of load elsewhere falls on both about equally.
    for _ in 0..3 {
        let start = Instant::now();
        assert!(!hasher.verify(&guess, Some(&hash)).await.unwrap());
        known += start.elapsed();
        let start = Instant::now();
        assert!(!hasher.verify(&guess, None).await.unwrap());
        unknown += start.elapsed();
    }
    assert!(unknown * 3 >= known, "unknown email {unknown:?}, wrong password {known:?}");
    assert!(unknown <= known * 3, "unknown email {unknown:?}, wrong password {known:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_waits_for_a_free_permit() {
    let hasher = Arc::new(Argon2Hasher::with_params(Argon2Params::new(1024, 1, 1, None).unwrap(), 1).unwrap());
    let held = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
    let task = tokio::spawn({
        let hasher = Arc::clone(&hasher);
        async move { hasher.verify(&password("correct horse battery"), None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished(), "ran without a permit");
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(!answer.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permit_runs_verifications_one_at_a_time() {
    const N: u32 = 4;
    let hasher = Arc::new(Argon2Hasher::new(1).unwrap());
    let guess = password("correct horse battery");
    let mut single = Duration::MAX;
    for _ in 0..2 {
        let start = Instant::now();
        hasher.verify(&guess, None).await.unwrap();
        single = single.min(start.elapsed());
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (hasher, guess) = (Arc::clone(&hasher), guess.clone());
            tokio::spawn(async move { hasher.verify(&guess, None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let together = start.elapsed();
    // Serialised, N verifications take N times one; in parallel on two or more cores they
    // would take at most about half that. The margin absorbs a machine busy with other work.
    assert!(together >= single * (N - 1), "{N} at once took {together:?}, one took {single:?}");
}

#[test]
fn debug_shows_neither_the_dummy_hash_nor_a_salt() {
    let shown = format!("{:?}", fast());
    assert!(shown.contains("Argon2Hasher"), "{shown}");
    assert!(!shown.contains('$'), "{shown}");
}
