//! `IdempotencyStore` conformance, with the keyed writes that store keys: lookup, replay,
//! mismatch, one write per key (also when two race), refusals kept, expiry, and keys scoped to
//! the tenant and the user.

use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use super::Storage;
use super::fixtures;
use crate::clock;
use crate::entities::Project;
use crate::ports::{IdempotencyKey, IdempotencyScope, IdempotentWrite, Keyed, Lookup, StoredResponse};
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
                a_key_never_written_is_new,
                a_keyed_write_is_replayed_and_another_request_is_a_mismatch,
                a_live_key_lets_no_second_write_through,
                of_two_racing_writes_with_one_key_exactly_one_is_written,
                a_refusal_is_kept_but_never_replaces_a_live_answer,
                keys_are_scoped_to_the_tenant,
                keys_are_scoped_to_the_user,
                an_expired_key_is_new_and_can_be_written_again,
            );
        }
    };
}

const DAY: Duration = Duration::from_secs(24 * 3600);

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

fn response(project: &Project) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: Bytes::from(format!(r#"{{"id":"{}"}}"#, project.id)),
        location: Some(format!("/v1/projects/{}", project.id)),
    }
}

fn write(
    scope: &IdempotencyScope,
    fingerprint: u128,
    response: StoredResponse,
    expires_at: OffsetDateTime,
) -> IdempotentWrite {
    IdempotentWrite { scope: scope.clone(), fingerprint, expires_at, response }
}

fn in_a_day() -> OffsetDateTime {
    clock::now() + DAY
}

/// Inserts a new project of `scope`'s tenant guarded by `key`; returns it and the outcome.
async fn insert(
    storage: &Storage,
    scope: &IdempotencyScope,
    fingerprint: u128,
    expires_at: OffsetDateTime,
) -> (Project, Keyed, IdempotentWrite) {
    let project = fixtures::project_at(scope.tenant, "Apollo", clock::now());
    let keyed = write(scope, fingerprint, response(&project), expires_at);
    let outcome = storage
        .projects
        .insert(&project, &[], Some(&keyed), &crate::audit::AuditTrail::none(), None)
        .await
        .expect("insert succeeds");
    (project, outcome, keyed)
}

async fn lookup(storage: &Storage, scope: &IdempotencyScope, fingerprint: u128) -> Lookup {
    storage.idempotency.lookup(scope, fingerprint).await.expect("lookup succeeds")
}

async fn stored(storage: &Storage, project: &Project) -> bool {
    storage.projects.get(project.tenant_id, project.id).await.expect("get succeeds").is_some()
}

/// A key never seen is `New`, for any fingerprint.
pub async fn a_key_never_written_is_new(storage: Storage) {
    let scope = scope(&storage).await;
    assert_eq!(lookup(&storage, &scope, fingerprint()).await, Lookup::New);
}

/// A write stores its key and answer with it: the same request is `Replay` of that answer,
/// each time; another request with the key is `Mismatch`.
pub async fn a_keyed_write_is_replayed_and_another_request_is_a_mismatch(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    let (project, outcome, keyed) = insert(&storage, &scope, fp, in_a_day()).await;
    assert_eq!(outcome, Keyed::Written);
    assert!(stored(&storage, &project).await);
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(keyed.response.clone()));
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(keyed.response));
    assert_eq!(lookup(&storage, &scope, fp ^ 1).await, Lookup::Mismatch);
}

/// While a key is live, every write it guards (a project, a user, a webhook) is `KeyTaken`
/// and writes nothing; the first answer stays.
pub async fn a_live_key_lets_no_second_write_through(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    let (_, first, keyed) = insert(&storage, &scope, fp, in_a_day()).await;
    assert_eq!(first, Keyed::Written);
    let (second, outcome, _) = insert(&storage, &scope, fp, in_a_day()).await;
    assert_eq!(outcome, Keyed::KeyTaken);
    assert!(!stored(&storage, &second).await, "nothing written under a taken key");
    let user = fixtures::user(scope.tenant, "late", Role::Member);
    let again = write(&scope, fp, keyed.response.clone(), in_a_day());
    assert_eq!(
        storage.users.create(&user, Some(&again), &crate::audit::AuditTrail::none(), None).await.expect("create"),
        Keyed::KeyTaken
    );
    assert_eq!(storage.users.get(scope.tenant, user.id).await.expect("get"), None);
    let hook = crate::entities::Webhook::new(
        crate::ids::WebhookId::new(),
        scope.tenant,
        "https://hooks.example.com/late".into(),
        crate::events::EventKind::ALL.to_vec(),
        clock::now(),
    );
    assert_eq!(
        storage
            .webhooks
            .create(&hook, b"sealed", &|_| Ok(()), Some(&again), &crate::audit::AuditTrail::none())
            .await
            .expect("create"),
        Keyed::KeyTaken
    );
    assert!(storage.webhooks.list(scope.tenant, None, 10).await.expect("list").is_empty());
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(keyed.response));
}

/// Two writes racing with one key: one is written, the other finds the key taken and writes
/// nothing (on PostgreSQL the second waits for the first's transaction).
pub async fn of_two_racing_writes_with_one_key_exactly_one_is_written(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    let ((a, a_outcome, a_keyed), (b, b_outcome, b_keyed)) =
        tokio::join!(insert(&storage, &scope, fp, in_a_day()), insert(&storage, &scope, fp, in_a_day()));
    let mut outcomes = [a_outcome, b_outcome];
    outcomes.sort_by_key(|o| *o == Keyed::KeyTaken);
    assert_eq!(outcomes, [Keyed::Written, Keyed::KeyTaken]);
    let (winner, loser, kept) = if a_outcome == Keyed::Written { (a, b, a_keyed) } else { (b, a, b_keyed) };
    assert!(stored(&storage, &winner).await);
    assert!(!stored(&storage, &loser).await);
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(kept.response));
}

/// `record` keeps a refusal's answer for the key; it never replaces a live answer.
pub async fn a_refusal_is_kept_but_never_replaces_a_live_answer(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    let refusal =
        StoredResponse { status: 422, body: Bytes::from_static(br#"{"code":"validation_failed"}"#), location: None };
    storage.idempotency.record(&write(&scope, fp, refusal.clone(), in_a_day())).await.expect("record");
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(refusal.clone()));
    let (project, outcome, _) = insert(&storage, &scope, fp, in_a_day()).await;
    assert_eq!(outcome, Keyed::KeyTaken, "a kept refusal is the key's answer");
    assert!(!stored(&storage, &project).await);
    let other = StoredResponse { status: 403, ..refusal.clone() };
    storage.idempotency.record(&write(&scope, fp, other, in_a_day())).await.expect("record");
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::Replay(refusal));
}

/// The same key of another tenant is another key.
pub async fn keys_are_scoped_to_the_tenant(storage: Storage) {
    let first = scope(&storage).await;
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let second = IdempotencyScope { tenant: tenant.id, user: owner.id, key: first.key.clone() };
    let fp = fingerprint();
    let (_, outcome, kept) = insert(&storage, &first, fp, in_a_day()).await;
    assert_eq!(outcome, Keyed::Written);
    assert_eq!(lookup(&storage, &second, fp).await, Lookup::New);
    assert_eq!(insert(&storage, &second, fp ^ 1, in_a_day()).await.1, Keyed::Written);
    assert_eq!(lookup(&storage, &first, fp).await, Lookup::Replay(kept.response));
}

/// The same key of another user of the same tenant is another key.
pub async fn keys_are_scoped_to_the_user(storage: Storage) {
    let first = scope(&storage).await;
    let other_user = fixtures::user(first.tenant, "other", Role::Member);
    storage.users.create(&other_user, None, &crate::audit::AuditTrail::none(), None).await.expect("create succeeds");
    let second = IdempotencyScope { user: other_user.id, ..first.clone() };
    let fp = fingerprint();
    assert_eq!(insert(&storage, &first, fp, in_a_day()).await.1, Keyed::Written);
    assert_eq!(lookup(&storage, &second, fp).await, Lookup::New);
    assert_eq!(insert(&storage, &second, fp, in_a_day()).await.1, Keyed::Written);
}

/// A key past its expiry is `New` again, for any fingerprint, and a write takes it over.
pub async fn an_expired_key_is_new_and_can_be_written_again(storage: Storage) {
    let scope = scope(&storage).await;
    let fp = fingerprint();
    let expired = clock::now() - Duration::from_secs(1);
    assert_eq!(insert(&storage, &scope, fp, expired).await.1, Keyed::Written);
    assert_eq!(lookup(&storage, &scope, fp).await, Lookup::New);
    assert_eq!(lookup(&storage, &scope, fp ^ 1).await, Lookup::New);
    let (project, outcome, kept) = insert(&storage, &scope, fp ^ 1, in_a_day()).await;
    assert_eq!(outcome, Keyed::Written);
    assert!(stored(&storage, &project).await);
    assert_eq!(lookup(&storage, &scope, fp ^ 1).await, Lookup::Replay(kept.response));
}
