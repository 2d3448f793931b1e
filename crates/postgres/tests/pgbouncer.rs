//! Every storage port's conformance suite, run against the PostgreSQL adapters through a
//! PgBouncer in transaction mode (as `plinth_app`, each test on a fresh database of its own),
//! with the statement cache off and the job queue's `LISTEN` on a direct connection; and the
//! queue's polling when it has none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::conformance::Storage;
use plinth_domain::conformance::jobs::{CAP, Queue, propagation};
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::{PgBouncer, TestDatabase};

#[path = "common/suites.rs"]
mod suites;

/// A store on a fresh database through a PgBouncer of its own (returned with both, to keep
/// them alive: the pooler goes first). `direct` gives the store the database's own URL for
/// `LISTEN`.
async fn store(direct: bool) -> (PgStore, (PgBouncer, TestDatabase)) {
    store_bounded(direct, Duration::from_secs(5)).await
}

/// As [`store`], with statements bounded by `statement_timeout`.
async fn store_bounded(direct: bool, statement_timeout: Duration) -> (PgStore, (PgBouncer, TestDatabase)) {
    let db = TestDatabase::new().await;
    let bouncer = PgBouncer::start();
    let settings = PgSettings {
        // Every thread's share holds several connections, so the racing tests race for real.
        pool_size: 4 * plinth_affinity::slots(),
        pool_timeout: Duration::from_secs(5),
        statement_timeout,
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
    let store = Arc::new(store.with_max_pending_jobs(CAP).with_trace_propagation(propagation()));
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

/// The statement timeout holds through the pooler, where it can't be a startup option: for a
/// tenant's read (set with the tenant) and for a statement of no tenant (the worker's claim,
/// in a transaction of its own), each blocked by a lock the owner holds, fails at the timeout
/// instead of waiting for the lock or for the whole call's bound (5 s of pool wait more).
#[tokio::test]
async fn statements_are_bounded_by_the_timeout_through_the_pooler() {
    use plinth_domain::ids::TenantId;
    use plinth_domain::ports::{JobQueue as _, ProjectRepository as _};
    let (store, (bouncer, db)) = store_bounded(true, Duration::from_millis(300)).await;
    let mut owner = db.owner().await;
    let lock = owner.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE projects, job_queues IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let started = Instant::now();
    let listed = store.list(TenantId::new(), None, 10).await;
    assert!(listed.is_err(), "the read waited out the lock: {listed:?}");
    let claimed = store.claim("bounded").await;
    assert!(claimed.is_err(), "the claim waited out the lock: {claimed:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "both ended at the statement timeout (took {took:?})");
    lock.rollback().await.unwrap();
    drop((store, bouncer));
}
