//! Read replicas against a real streaming standby (`pg_basebackup -R` of a private primary):
//! the stale-tolerant reads are served by the standby, an instance reads its own writes, a
//! standby lagging past the maximum is skipped, and one stopped under load fails no request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_domain::clock::ManualClock;
use plinth_testkit::{APP_PASSWORD, PgClient, PrivateCluster};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// A private primary with the migrated database `plinth`, and its streaming standby.
struct Replicated {
    primary: PrivateCluster,
    standby: PrivateCluster,
}

impl Replicated {
    async fn start() -> Self {
        let primary = PrivateCluster::start();
        let admin = plinth_testkit::connect(&primary.url("postgres", None, "postgres")).await;
        admin.batch_execute("CREATE DATABASE plinth").await.expect("create database");
        plinth_postgres::migrate::migrate(&primary.url("postgres", None, "plinth"), Some(APP_PASSWORD))
            .await
            .expect("migrate");
        let standby = primary.standby();
        Self { primary, standby }
    }

    /// An instance on the primary reading from the standby, on `clock`, replicas read while
    /// they lag at most `max_lag_ms`.
    async fn instance(&self, clock: &Arc<ManualClock>, max_lag_ms: &str) -> TestApp {
        let app_url = self.primary.url("plinth_app", Some(APP_PASSWORD), "plinth");
        let owner_url = self.primary.url("postgres", None, "plinth");
        let replica_url = self.standby.url("plinth_app", Some(APP_PASSWORD), "plinth");
        TestApp::start_wired(
            &[
                ("DATABASE_URL", &app_url),
                ("PLINTH_DATABASE_OWNER_URL", &owner_url),
                ("PLINTH_DATABASE_REPLICA_URLS", &replica_url),
                ("PLINTH_REPLICA_MAX_LAG_MS", max_lag_ms),
                ("PLINTH_CACHE", "off"),
                ("PLINTH_DB_POOL_TIMEOUT_MS", "1000"),
            ],
            None,
            clock.clone(),
            |_| {},
        )
        .await
    }

    /// The standby, as its superuser.
    async fn standby_admin(&self) -> PgClient {
        plinth_testkit::connect(&self.standby.url("postgres", None, "plinth")).await
    }

    /// The label the metrics give the standby.
    fn label(&self) -> String {
        format!("127.0.0.1:{}", self.standby.port)
    }
}

/// `db_replica_in_use` for `label`, as `app` reports it.
async fn in_use(app: &TestApp, label: &str) -> Option<bool> {
    let text = app.request(Method::GET, "localhost", "/metrics").send().await.ok()?.text().await.ok()?;
    let series = format!("db_replica_in_use{{replica=\"{label}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(|v| v.trim() == "1")
}

/// Waits (up to 20 s) until `app` reports the standby in use (`true`) or not.
async fn until_in_use(app: &TestApp, label: &str, wanted: bool) -> Duration {
    let started = Instant::now();
    loop {
        if in_use(app, label).await == Some(wanted) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the replica's use never became {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names of `slug`'s projects as `app` lists them.
async fn names(app: &TestApp, slug: &str, token: &str) -> Vec<String> {
    let res = app.on(Method::GET, slug, "/v1/projects?limit=100", Some(token)).send().await.expect("list");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("a page");
    body["items"].as_array().expect("items").iter().map(|p| p["name"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Waits (up to 20 s) until `app` lists `name` among `slug`'s projects.
async fn until_listed(app: &TestApp, slug: &str, token: &str, name: &str) -> Duration {
    let started = Instant::now();
    loop {
        if names(app, slug, token).await.iter().any(|n| n == name) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{name} was never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reads_come_from_the_standby_and_an_instance_reads_its_own_writes() {
    let pg = Replicated::start().await;
    let writer_clock = Arc::new(ManualClock::new());
    let writer = pg.instance(&writer_clock, "60000").await;
    let reader = pg.instance(&Arc::new(ManualClock::new()), "60000").await;
    until_in_use(&writer, &pg.label(), true).await;
    until_in_use(&reader, &pg.label(), true).await;
    let token = writer.signup("acme").await.token;
    writer.project("acme", &token, "first").await;
    until_listed(&reader, "acme", &token, "first").await;

    // Replay paused: the standby holds what it had, the primary moves on.
    pg.standby_admin().await.batch_execute("SELECT pg_wal_replay_pause()").await.expect("pause replay");
    writer.project("acme", &token, "second").await;
    // The writer reads its write at once (its reads of acme stay on the primary)...
    assert!(names(&writer, "acme", &token).await.contains(&"second".to_owned()), "read-your-writes");
    // ...while the other instance, which did not write, is served by the paused standby.
    for _ in 0..5 {
        assert_eq!(names(&reader, "acme", &token).await, ["first"], "the reader's lists come from the standby");
    }
    // The window is over (by the injected clock): the writer's reads go back to the standby.
    writer_clock.advance(Duration::from_secs(63));
    assert_eq!(names(&writer, "acme", &token).await, ["first"], "after the window, reads go to the standby");

    pg.standby_admin().await.batch_execute("SELECT pg_wal_replay_resume()").await.expect("resume replay");
    let caught_up = until_listed(&reader, "acme", &token, "second").await;
    eprintln!("replica: the standby served the write {caught_up:?} after replay resumed");
}

#[tokio::test]
async fn a_standby_lagging_past_the_maximum_is_skipped_until_it_catches_up() {
    let pg = Replicated::start().await;
    let writer = pg.instance(&Arc::new(ManualClock::new()), "500").await;
    let reader = pg.instance(&Arc::new(ManualClock::new()), "500").await;
    until_in_use(&reader, &pg.label(), true).await;
    let token = writer.signup("acme").await.token;
    writer.project("acme", &token, "first").await;
    pg.standby_admin().await.batch_execute("SELECT pg_wal_replay_pause()").await.expect("pause replay");
    let paused = Instant::now();
    writer.project("acme", &token, "second").await;
    // Within the next checks the standby's lag passes 500 ms: the reader skips it and reads
    // the primary, which has the write.
    until_listed(&reader, "acme", &token, "second").await;
    until_in_use(&reader, &pg.label(), false).await;
    eprintln!("replica: skipped within {:?} of replay paused", paused.elapsed());
    for _ in 0..5 {
        assert!(names(&reader, "acme", &token).await.contains(&"second".to_owned()), "fresh reads while skipped");
    }
    pg.standby_admin().await.batch_execute("SELECT pg_wal_replay_resume()").await.expect("resume replay");
    let back = until_in_use(&reader, &pg.label(), true).await;
    eprintln!("replica: back in use {back:?} after replay resumed");
    assert!(names(&reader, "acme", &token).await.contains(&"second".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_stopped_under_load_fails_no_request_and_comes_back() {
    let pg = Replicated::start().await;
    let writer = Arc::new(pg.instance(&Arc::new(ManualClock::new()), "1000").await);
    let reader = Arc::new(pg.instance(&Arc::new(ManualClock::new()), "1000").await);
    until_in_use(&reader, &pg.label(), true).await;
    let token = writer.signup("acme").await.token;
    let first = writer.project("acme", &token, "first").await;
    let id = first["id"].as_str().expect("an id").to_owned();
    until_listed(&reader, "acme", &token, "first").await;

    // Eight clients, 40 requests each: the reader's lists and gets, the writer's creates.
    let mut clients = Vec::new();
    for c in 0..8 {
        let (writer, reader, token, id) = (writer.clone(), reader.clone(), token.clone(), id.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..40 {
                let res = match (c + i) % 4 {
                    0 => {
                        writer
                            .on(Method::POST, "acme", "/v1/projects", Some(&token))
                            .json(&serde_json::json!({"name": format!("load {c}-{i}")}))
                            .send()
                            .await
                    }
                    1 => reader.on(Method::GET, "acme", &format!("/v1/projects/{id}"), Some(&token)).send().await,
                    2 => reader.on(Method::GET, "acme", "/v1/users", Some(&token)).send().await,
                    _ => reader.on(Method::GET, "acme", "/v1/projects", Some(&token)).send().await,
                };
                statuses.push(res.map_or(0, |r| r.status().as_u16()));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let standby = &pg.standby;
    let stopped_at = Instant::now();
    tokio::task::block_in_place(|| standby.stop_fast());
    eprintln!("replica: standby stopped in {:?}", stopped_at.elapsed());
    let mut statuses = Vec::new();
    for c in clients {
        statuses.extend(c.await.expect("a client"));
    }
    let failed: Vec<_> = statuses.iter().filter(|s| !matches!(s, 200 | 201)).collect();
    eprintln!("replica: {} requests under load, {} failed", statuses.len(), failed.len());
    assert!(failed.is_empty(), "no request fails because of the standby: {failed:?}");

    // Down: out of use, and reads come from the primary (they see a write made since).
    until_in_use(&reader, &pg.label(), false).await;
    writer.project("acme", &token, "after the stop").await;
    assert!(names(&reader, "acme", &token).await.contains(&"after the stop".to_owned()));

    tokio::task::block_in_place(|| standby.resume());
    let back = until_in_use(&reader, &pg.label(), true).await;
    eprintln!("replica: back in use {back:?} after the standby started again");
    let admin = pg.standby_admin().await;
    let commits = async || -> i64 {
        admin
            .query_one("SELECT xact_commit FROM pg_stat_database WHERE datname = 'plinth'", &[])
            .await
            .expect("the standby's statistics")
            .get(0)
    };
    // Reads the standby serves commit a read-only transaction there each: 200 lists raise
    // its count by 200 at least (the checks add about two a second; a busy server publishes
    // its statistics within seconds, not at once).
    let before = commits().await;
    for _ in 0..200 {
        assert!(names(&reader, "acme", &token).await.contains(&"after the stop".to_owned()));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = commits().await;
        if now >= before + 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the standby serves reads again: {} commits there", now - before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
