//! The outbox: a project write, its event, its deliveries and their jobs commit together or
//! not at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plinth_domain::conformance::fixtures;
use plinth_domain::entities::Webhook;
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ids::WebhookId;
use plinth_domain::ports::{ProjectRepository, TenantRepository, WebhookRepository};
use plinth_domain::values::Role;
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::TestDatabase;

async fn counts(db: &TestDatabase) -> (i64, i64, i64, i64) {
    let owner = db.owner().await;
    let n = |sql: &'static str| {
        let owner = &owner;
        async move { owner.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    (
        n("SELECT count(*) FROM projects").await,
        n("SELECT count(*) FROM events").await,
        n("SELECT count(*) FROM webhook_deliveries").await,
        n("SELECT count(*) FROM jobs").await,
    )
}

/// A store on `db` with one tenant whose webhook subscribes to every event.
async fn tenant_with_webhook(db: &TestDatabase) -> (PgStore, plinth_domain::entities::Tenant) {
    let settings = PgSettings {
        pool_size: 2,
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "plinth-outbox-test".into(),
    };
    let store = PgStore::connect(&db.app_url, &settings, std::sync::Arc::new(plinth_domain::clock::SystemClock::new()))
        .unwrap();
    let tenant = fixtures::tenant();
    let owner = fixtures::user(tenant.id, "owner", Role::Owner);
    TenantRepository::create_with_owner(&store, &tenant, &owner).await.unwrap();
    let hook = Webhook {
        id: WebhookId::new(),
        tenant_id: tenant.id,
        url: "https://hooks.example.com/x".into(),
        events: EventKind::ALL.to_vec(),
        created_at: plinth_domain::clock::now(),
    };
    WebhookRepository::create(&store, &hook, b"sealed", &|_| Ok(()), None).await.unwrap();
    (store, tenant)
}

#[tokio::test]
async fn a_write_that_rolls_back_leaves_no_delivery_and_no_job() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_webhook(&db).await;

    let first = fixtures::project_at(tenant.id, "Committed", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &first, plinth_domain::clock::now());
    ProjectRepository::insert(&store, &first, std::slice::from_ref(&event), None).await.unwrap();
    assert_eq!(counts(&db).await, (1, 1, 1, 1), "project, event, delivery and job together");

    // Reusing the event id makes the event insert fail after the project row was written.
    let second = fixtures::project_at(tenant.id, "Rolled back", fixtures::ago(1));
    let clash = DomainEvent { data: second.clone(), ..event };
    assert!(ProjectRepository::insert(&store, &second, &[clash], None).await.is_err());
    assert_eq!(counts(&db).await, (1, 1, 1, 1), "nothing of the failed write remains");
    assert!(ProjectRepository::get(&store, tenant.id, second.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_keyed_write_that_fails_after_its_change_leaves_neither_the_change_nor_the_key() {
    use plinth_domain::ports::{IdempotencyKey, IdempotencyScope, IdempotencyStore, IdempotentWrite, Keyed, Lookup};
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_webhook(&db).await;
    let owner = db.owner().await;
    let user: uuid::Uuid = owner.query_one("SELECT id FROM users", &[]).await.unwrap().get(0);
    let scope = IdempotencyScope {
        tenant: tenant.id,
        user: plinth_domain::ids::UserId::from_uuid(user),
        key: IdempotencyKey::parse("retry-me").unwrap(),
    };
    let first = fixtures::project_at(tenant.id, "Committed", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &first, plinth_domain::clock::now());
    ProjectRepository::insert(&store, &first, std::slice::from_ref(&event), None).await.unwrap();

    // The key is stored first, then the project; the clashing event fails the transaction after both.
    let second = fixtures::project_at(tenant.id, "Rolled back", fixtures::ago(1));
    let keyed = IdempotentWrite {
        scope: scope.clone(),
        fingerprint: 7,
        expires_at: plinth_domain::clock::now() + Duration::from_secs(3600),
        response: plinth_domain::ports::StoredResponse { status: 201, body: "{}".into(), location: None },
    };
    let clash = DomainEvent { data: second.clone(), ..event.clone() };
    assert!(ProjectRepository::insert(&store, &second, &[clash], Some(&keyed)).await.is_err());
    assert_eq!(counts(&db).await, (1, 1, 1, 1), "nothing of the failed write remains");
    assert_eq!(store.lookup(&scope, 7).await.unwrap(), Lookup::New, "nor its key");
    let keys: i64 = owner.query_one("SELECT count(*) FROM idempotency_keys", &[]).await.unwrap().get(0);
    assert_eq!(keys, 0);

    // So the retry runs, and its key is kept.
    let retry = fixtures::project_at(tenant.id, "Retried", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &retry, plinth_domain::clock::now());
    assert_eq!(ProjectRepository::insert(&store, &retry, &[event], Some(&keyed)).await.unwrap(), Keyed::Written);
    assert_eq!(store.lookup(&scope, 7).await.unwrap(), Lookup::Replay(keyed.response));
}

#[tokio::test]
async fn retention_prunes_finished_deliveries_their_events_and_expired_keys_but_not_pending_work() {
    use plinth_domain::ports::{AttemptOutcome, DeliveryStore, JobQueue, NextStep};
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_webhook(&db).await;
    for name in ["done", "waiting"] {
        let p = fixtures::project_at(tenant.id, name, fixtures::ago(1));
        ProjectRepository::insert(
            &store,
            &p,
            &[DomainEvent::project(EventKind::ProjectCreated, &p, plinth_domain::clock::now())],
            None,
        )
        .await
        .unwrap();
    }
    let job = store.claim("test-worker").await.unwrap().expect("a job is due");
    let plinth_domain::ports::Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let ok = AttemptOutcome { delivered: true, status: Some(200), error: None };
    store.record(&job, delivery, &ok, NextStep::Delivered).await.unwrap();
    assert_eq!(counts(&db).await, (2, 2, 2, 1), "the finished job is gone at once");

    let pruned = store.prune(plinth_domain::clock::now() + time::Duration::days(1)).await.unwrap();
    assert_eq!((pruned.deliveries, pruned.events), (1, 1), "{pruned:?}");
    assert_eq!(counts(&db).await, (2, 1, 1, 1), "the pending delivery, its event and its job stay");
}
