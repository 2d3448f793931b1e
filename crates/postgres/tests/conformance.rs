//! Every storage port's conformance suite, run against the PostgreSQL adapters, each test on
//! a fresh database of its own, connected as `plinth_app` (so RLS applies throughout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::conformance::Storage;
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::TestDatabase;

/// A store on a fresh database of its own (returned with it, to keep it alive).
async fn store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::new().await;
    let settings = PgSettings {
        // Every thread's share holds several connections, so the racing tests race for real.
        pool_size: 4 * plinth_affinity::slots(),
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "plinth-conformance".into(),
    };
    (PgStore::connect(&db.app_url, &settings, Arc::new(plinth_domain::clock::SystemClock::new())).unwrap(), db)
}

async fn storage() -> Storage {
    let (store, db) = store().await;
    Storage::shared(Arc::new(store)).keep_alive(db)
}

plinth_domain::tenant_repository_suite!(storage().await);
plinth_domain::user_repository_suite!(storage().await);
plinth_domain::project_repository_suite!(storage().await);
plinth_domain::idempotency_store_suite!(storage().await);
plinth_domain::webhook_repository_suite!(storage().await);
plinth_domain::session_repository_suite!(storage().await);
plinth_domain::job_queue_suite!({
    let (store, db) = store().await;
    let store = Arc::new(store.with_max_pending_jobs(plinth_domain::conformance::jobs::CAP));
    plinth_domain::conformance::jobs::Queue::shared(store.clone(), Storage::shared(store).keep_alive(db))
});
plinth_domain::webhook_operations_suite!({
    let (store, db) = store().await;
    let store = Arc::new(store.with_max_pending_jobs(plinth_domain::conformance::jobs::CAP));
    plinth_domain::conformance::jobs::Queue::shared(store.clone(), Storage::shared(store).keep_alive(db))
});
plinth_domain::account_emails_suite!(storage().await);
plinth_domain::audit_suite!(storage().await);
plinth_domain::tenant_exporter_suite!(storage().await);
plinth_domain::event_log_suite!({
    let (store, db) = store().await;
    let store = Arc::new(store.with_max_pending_jobs(plinth_domain::conformance::jobs::CAP));
    plinth_domain::conformance::jobs::Queue::shared(store.clone(), Storage::shared(store).keep_alive(db))
});
