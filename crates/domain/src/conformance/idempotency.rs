//! `IdempotencyStore` conformance: claim, replay, mismatch, release and expiry, scoped to the
//! tenant and the user.

use std::time::Duration;

use bytes::Bytes;

use super::Storage;
use super::fixtures;
use crate::ports::{Claim, IdempotencyKey, IdempotencyScope, StoredResponse};
use crate::values::Role;

/// Every `IdempotencyStore` behaviour, as named tests; the argument is a [`Storage`] expression
/// (keys belong to a tenant's user, so the suite creates those first).
#[macro_export]
macro_rules! idempotency_store_suite {
    ($fixture:expr $(,)?) => {
        mod idempotency_store {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                idempotency,
                $fixture,
                a_new_key_is_acquired,
                the_same_request_in_progress_is_reported_in_progress,
                a_completed_request_is_replayed,
                another_request_with_the_same_key_is_a_mismatch,
                a_released_key_can_be_acquired_again,
                keys_are_scoped_to_the_tenant,
                keys_are_scoped_to_the_user,
                a_claimed_key_expires_after_its_ttl,
                a_completed_key_expires_after_its_ttl,
            );
        }
    };
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const SHORT: Duration = Duration::from_secs(1);
const PAST_SHORT: Duration = Duration::from_millis(1300);

/// A fresh key of a new user of a new tenant (both stored).
async fn scope(storage: &Storage) -> IdempotencyScope {
    let (tenant, owner) = fixtures::tenant_with_owner(storage).await;
    IdempotencyScope { tenant: tenant.id, user: owner.id, key: key() }
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse(&format!("key-{}", fixtures::random_hex())).expect("a valid key")
}

fn fingerprint() -> u128 {
    u128::from(rand::random::<u64>()) << 64 | u128::from(rand::random::<u64>())
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        body: Bytes::from_static(br#"{"id":"0190a6f2-0000-7000-8000-000000000000","name":"Apollo"}"#),
        location: Some("/v1/projects/0190a6f2-0000-7000-8000-000000000000".to_owned()),
    }
}

async fn claim(storage: &Storage, scope: &IdempotencyScope, fingerprint: u128, ttl: Duration) -> Claim {
    storage.idempotency.claim(scope, fingerprint, ttl).await.expect("claim succeeds")
}

/// A key never seen is `Acquired`.
pub async fn a_new_key_is_acquired(storage: Storage) {
    let scope = scope(&storage).await;
    assert_eq!(claim(&storage, &scope, fingerprint(), DAY).await, Claim::Acquired);
}

/// The same key and fingerprint while the first request runs is `InProgress`.
pub async fn the_same_request_in_progress_is_reported_in_progress(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::InProgress);
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::InProgress);
}

/// After `complete`, the same key and fingerprint is `Replay` of the stored response, each time.
pub async fn a_completed_request_is_replayed(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
    storage.idempotency.complete(&scope, &response()).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Replay(response()));
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Replay(response()));
    let no_location = StoredResponse { location: None, ..response() };
    let other = IdempotencyScope { key: key(), ..scope };
    assert_eq!(claim(&storage, &other, fp, DAY).await, Claim::Acquired);
    storage.idempotency.complete(&other, &no_location).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &other, fp, DAY).await, Claim::Replay(no_location));
}

/// The same key with another fingerprint is `Mismatch`, in progress or completed.
pub async fn another_request_with_the_same_key_is_a_mismatch(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
    assert_eq!(claim(&storage, &scope, fp ^ 1, DAY).await, Claim::Mismatch);
    storage.idempotency.complete(&scope, &response()).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &scope, fp ^ 1, DAY).await, Claim::Mismatch);
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Replay(response()));
}

/// After `release`, the key is new again, for any fingerprint.
pub async fn a_released_key_can_be_acquired_again(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
    storage.idempotency.release(&scope).await.expect("release succeeds");
    assert_eq!(claim(&storage, &scope, fp ^ 1, DAY).await, Claim::Acquired);
    storage.idempotency.release(&scope).await.expect("release succeeds");
    storage.idempotency.release(&scope).await.expect("releasing a missing key succeeds");
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
}

/// The same key of another tenant is another key.
pub async fn keys_are_scoped_to_the_tenant(storage: Storage) {
    let first = scope(&storage).await;
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let second = IdempotencyScope { tenant: tenant.id, user: owner.id, key: first.key.clone() };
    let fp = fingerprint();
    assert_eq!(claim(&storage, &first, fp, DAY).await, Claim::Acquired);
    storage.idempotency.complete(&first, &response()).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &second, fp, DAY).await, Claim::Acquired);
    assert_eq!(claim(&storage, &second, fp ^ 1, DAY).await, Claim::Mismatch);
    assert_eq!(claim(&storage, &first, fp, DAY).await, Claim::Replay(response()));
}

/// The same key of another user of the same tenant is another key.
pub async fn keys_are_scoped_to_the_user(storage: Storage) {
    let first = scope(&storage).await;
    let other_user = fixtures::user(first.tenant, "other", Role::Member);
    storage.users.create(&other_user).await.expect("create succeeds");
    let second = IdempotencyScope { user: other_user.id, ..first.clone() };
    assert_ne!(second.user, first.user);
    let fp = fingerprint();
    assert_eq!(claim(&storage, &first, fp, DAY).await, Claim::Acquired);
    assert_eq!(claim(&storage, &second, fp, DAY).await, Claim::Acquired);
    storage.idempotency.complete(&second, &response()).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &first, fp, DAY).await, Claim::InProgress);
    assert_eq!(claim(&storage, &second, fp, DAY).await, Claim::Replay(response()));
}

/// A claim is forgotten once its ttl has passed: the key is new again, for any fingerprint.
pub async fn a_claimed_key_expires_after_its_ttl(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, SHORT).await, Claim::Acquired);
    assert_eq!(claim(&storage, &scope, fp, SHORT).await, Claim::InProgress);
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(claim(&storage, &scope, fp ^ 1, DAY).await, Claim::Acquired);
}

/// A completed key is forgotten once the ttl of its claim has passed.
pub async fn a_completed_key_expires_after_its_ttl(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    assert_eq!(claim(&storage, &scope, fp, SHORT).await, Claim::Acquired);
    storage.idempotency.complete(&scope, &response()).await.expect("complete succeeds");
    assert_eq!(claim(&storage, &scope, fp, SHORT).await, Claim::Replay(response()));
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(claim(&storage, &scope, fp, DAY).await, Claim::Acquired);
}
