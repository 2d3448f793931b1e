//! Every storage port's conformance suite, run against the PostgreSQL adapters, each test on
//! a fresh database of its own, connected as `plinth_app` (so RLS applies throughout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::conformance::Storage;
use plinth_domain::conformance::jobs::{CAP, Queue, propagation};
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::TestDatabase;

#[path = "common/suites.rs"]
mod suites;

/// A store on a fresh database of its own (returned with it, to keep it alive).
async fn store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::new().await;
    let settings = PgSettings {
        // Every thread's share holds several connections, so the racing tests race for real.
        pool_size: 4 * plinth_affinity::slots(),
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "plinth-conformance".into(),
        direct_url: None,
        statement_cache: true,
    };
    (PgStore::connect(&db.app_url, &settings, Arc::new(plinth_domain::clock::SystemClock::new())).unwrap(), db)
}

async fn storage() -> Storage {
    let (store, db) = store().await;
    Storage::shared(Arc::new(store)).keep_alive(db)
}

async fn queue() -> Queue {
    let (store, db) = store().await;
    let store = Arc::new(store.with_max_pending_jobs(CAP).with_trace_propagation(propagation()));
    Queue::shared(store.clone(), Storage::shared(store).keep_alive(db))
}
