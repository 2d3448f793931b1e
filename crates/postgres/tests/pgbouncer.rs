//! Every storage port's conformance suite, run against the PostgreSQL adapters through a
//! PgBouncer in transaction mode (as `plinth_app`, each test on a fresh database of its own),
//! with the statement cache off and the job queue's `LISTEN` on a direct connection; and the
//! queue's polling when it has none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::conformance::Storage;
use plinth_domain::conformance::jobs::{CAP, Queue};
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::{PgBouncer, TestDatabase};

#[path = "common/suites.rs"]
mod suites;

/// A store on a fresh database through a PgBouncer of its own (returned with both, to keep
/// them alive: the pooler goes first). `direct` gives the store the database's own URL for
/// `LISTEN`.
async fn store(direct: bool) -> (PgStore, (PgBouncer, TestDatabase)) {
    let db = TestDatabase::new().await;
    let bouncer = PgBouncer::start();
    let settings = PgSettings {
        // Every thread's share holds several connections, so the racing tests race for real.
        pool_size: 4 * plinth_affinity::slots(),
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "plinth-conformance-pgbouncer".into(),
        direct_url: direct.then(|| db.app_url.clone()),
        statement_cache: false,
    };
    let url = bouncer.url(&db.app_url);
    let store = PgStore::connect(&url, &settings, Arc::new(plinth_domain::clock::SystemClock::new())).unwrap();
    (store, (bouncer, db))
}

async fn storage() -> Storage {
    let (store, guard) = store(true).await;
    Storage::shared(Arc::new(store)).keep_alive(guard)
}

async fn queue() -> Queue {
    let (store, guard) = store(true).await;
    let store = Arc::new(store.with_max_pending_jobs(CAP));
    Queue::shared(store.clone(), Storage::shared(store).keep_alive(guard))
}

/// Through the pooler alone, `LISTEN` reaches a server connection that PgBouncer hands to
/// others: the listener finds its probe never arrives, and a waiting worker is not kept
/// waiting on notifications that never come (each wait ends at its bound).
#[tokio::test]
async fn without_a_direct_url_a_waiting_worker_polls() {
    use plinth_domain::ports::JobQueue as _;
    let (store, _guard) = store(false).await;
    let started = Instant::now();
    for _ in 0..5 {
        store.wait_for_work(Duration::from_millis(500)).await;
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "each wait ends at its bound (5 waits took {waited:?})");
    // Claiming works through the pooler: nothing is queued.
    assert!(store.claim("pgbouncer-test").await.unwrap().is_none());
}
