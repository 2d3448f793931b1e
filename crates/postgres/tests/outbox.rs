//! The outbox: a project write, its event, its deliveries and their jobs commit together or
//! not at all; and retention, which the API role may run, deletes nothing younger than the
//! database's floor whatever cutoff it is given.

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
        direct_url: None,
        statement_cache: true,
    };
    let store = PgStore::connect(&db.app_url, &settings, std::sync::Arc::new(plinth_domain::clock::SystemClock::new()))
        .unwrap();
    let tenant = fixtures::tenant();
    let owner = fixtures::user(tenant.id, "owner", Role::Owner);
    TenantRepository::create_with_owner(&store, &tenant, &owner, None, &plinth_domain::audit::AuditTrail::none())
        .await
        .unwrap();
    let hook = Webhook::new(
        WebhookId::new(),
        tenant.id,
        "https://hooks.example.com/x".into(),
        EventKind::ALL.to_vec(),
        plinth_domain::clock::now(),
    );
    WebhookRepository::create(&store, &hook, b"sealed", &|_| Ok(()), None, &plinth_domain::audit::AuditTrail::none())
        .await
        .unwrap();
    (store, tenant)
}

#[tokio::test]
async fn a_write_that_rolls_back_leaves_no_delivery_and_no_job() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_webhook(&db).await;

    let first = fixtures::project_at(tenant.id, "Committed", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &first, plinth_domain::clock::now());
    ProjectRepository::insert(
        &store,
        &first,
        std::slice::from_ref(&event),
        None,
        &plinth_domain::audit::AuditTrail::none(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(counts(&db).await, (1, 1, 1, 1), "project, event, delivery and job together");

    // Reusing the event id makes the event insert fail after the project row was written.
    let second = fixtures::project_at(tenant.id, "Rolled back", fixtures::ago(1));
    let clash = DomainEvent { data: plinth_domain::events::EventData::Project(second.clone()), ..event };
    assert!(
        ProjectRepository::insert(&store, &second, &[clash], None, &plinth_domain::audit::AuditTrail::none(), None)
            .await
            .is_err()
    );
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
    ProjectRepository::insert(
        &store,
        &first,
        std::slice::from_ref(&event),
        None,
        &plinth_domain::audit::AuditTrail::none(),
        None,
    )
    .await
    .unwrap();

    // The key is stored first, then the project; the clashing event fails the transaction after both.
    let second = fixtures::project_at(tenant.id, "Rolled back", fixtures::ago(1));
    let keyed = IdempotentWrite {
        scope: scope.clone(),
        fingerprint: 7,
        expires_at: plinth_domain::clock::now() + Duration::from_secs(3600),
        response: plinth_domain::ports::StoredResponse { status: 201, body: "{}".into(), location: None },
    };
    let clash = DomainEvent { data: plinth_domain::events::EventData::Project(second.clone()), ..event.clone() };
    assert!(
        ProjectRepository::insert(
            &store,
            &second,
            &[clash],
            Some(&keyed),
            &plinth_domain::audit::AuditTrail::none(),
            None
        )
        .await
        .is_err()
    );
    assert_eq!(counts(&db).await, (1, 1, 1, 1), "nothing of the failed write remains");
    assert_eq!(store.lookup(&scope, 7).await.unwrap(), Lookup::New, "nor its key");
    let keys: i64 = owner.query_one("SELECT count(*) FROM idempotency_keys", &[]).await.unwrap().get(0);
    assert_eq!(keys, 0);

    // So the retry runs, and its key is kept.
    let retry = fixtures::project_at(tenant.id, "Retried", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &retry, plinth_domain::clock::now());
    assert_eq!(
        ProjectRepository::insert(
            &store,
            &retry,
            &[event],
            Some(&keyed),
            &plinth_domain::audit::AuditTrail::none(),
            None
        )
        .await
        .unwrap(),
        Keyed::Written
    );
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
            &plinth_domain::audit::AuditTrail::none(),
            None,
        )
        .await
        .unwrap();
    }
    let job = store.claim("test-worker").await.unwrap().expect("a job is due");
    let plinth_domain::ports::Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let ok = AttemptOutcome { delivered: true, status: Some(200), error: None };
    store.record(&job, delivery, &ok, NextStep::Delivered, plinth_domain::clock::now()).await.unwrap();
    assert_eq!(counts(&db).await, (2, 2, 2, 1), "the finished job is gone at once");

    // Retention never deletes what is younger than a day (the database's floor): age it all.
    db.owner()
        .await
        .batch_execute(
            "UPDATE webhook_deliveries SET created_at = created_at - interval '2 days'; \
             UPDATE events SET created_at = created_at - interval '2 days'",
        )
        .await
        .unwrap();
    let pruned = store.prune(plinth_domain::clock::now() - time::Duration::days(1)).await.unwrap();
    assert_eq!((pruned.deliveries, pruned.events), (1, 1), "{pruned:?}");
    assert_eq!(counts(&db).await, (2, 1, 1, 1), "the pending delivery, its event and its job stay");
}

#[tokio::test]
async fn retention_called_by_the_api_role_deletes_nothing_younger_than_a_day() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let app = db.app().await;
    let tenant = plinth_domain::ids::TenantId::new();
    owner
        .batch_execute(&format!(
            "INSERT INTO tenants (id, slug, name, plan) VALUES ('{tenant}', 'prune-{}', 'Prune', 'free'); \
             INSERT INTO webhooks (tenant_id, id, url, events, secret_sealed, created_at) \
             VALUES ('{tenant}', gen_random_uuid(), 'https://hooks.example.com/x', '{{project.created}}', '\\x00', now()); \
             INSERT INTO events (tenant_id, id, kind, payload, created_at) \
             SELECT '{tenant}', gen_random_uuid(), 'project.created', '{{}}', now() - s * interval '1 hour' \
             FROM generate_series(1, 3) s; \
             INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event, state, created_at, updated_at) \
             SELECT e.tenant_id, gen_random_uuid(), w.id, e.id, e.kind, 'delivered', e.created_at, e.created_at \
             FROM events e, webhooks w;",
            &tenant.to_string()[..8],
        ))
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let owner = &owner;
        async move { owner.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        (count("SELECT count(*) FROM webhook_deliveries").await, count("SELECT count(*) FROM events").await),
        (3, 3)
    );

    let row = app.query_one("SELECT * FROM plinth_prune(now() + interval '100 years')", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (0, 0), "an aggressive cutoff deletes nothing young");
    assert_eq!(
        (count("SELECT count(*) FROM webhook_deliveries").await, count("SELECT count(*) FROM events").await),
        (3, 3)
    );

    owner
        .batch_execute(
            "UPDATE webhook_deliveries SET created_at = created_at - interval '1 day' \
             WHERE created_at < now() - interval '150 minutes'; \
             UPDATE events SET created_at = created_at - interval '1 day' WHERE created_at < now() - interval '150 minutes'",
        )
        .await
        .unwrap();
    let row = app.query_one("SELECT * FROM plinth_prune(now() + interval '100 years')", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1), "only what is over a day old goes");
    assert_eq!(
        (count("SELECT count(*) FROM webhook_deliveries").await, count("SELECT count(*) FROM events").await),
        (2, 2)
    );
}
