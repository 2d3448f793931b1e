//! Faults under load: while clients keep listing and creating, Redis dies and comes back,
//! every database connection is killed, and a held lock exhausts the pool. Clients only ever
//! see success, 429 or 503 (never a 500, never a hang beyond the configured timeouts), and
//! every create that was answered 201 is there afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plinth_testkit::PrivateRedis;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp};

/// What the load saw.
#[derive(Default)]
struct Seen {
    statuses: Vec<u16>,
    slowest: Duration,
    created: Vec<String>,
}

/// Lists and creates on `slug` until `stop` is set.
async fn load(app: Arc<TestApp>, token: String, seen: Arc<Mutex<Seen>>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let res = if n.is_multiple_of(3) {
            app.on(Method::POST, "loaded", "/v1/projects", Some(&token))
                .json(&json!({"name": format!("p{n}")}))
                .send()
                .await
        } else {
            app.on(Method::GET, "loaded", "/v1/projects", Some(&token)).send().await
        };
        let took = started.elapsed();
        let status = match &res {
            Ok(r) => r.status().as_u16(),
            Err(e) => u16::from(e.is_timeout()),
        };
        {
            let mut s = seen.lock().unwrap();
            s.slowest = s.slowest.max(took);
            s.statuses.push(status);
        }
        if let Ok(res) = res
            && status == 201
        {
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            if let Some(id) = body["id"].as_str() {
                seen.lock().unwrap().created.push(id.to_owned());
            }
        }
    }
}

async fn under_load(app: Arc<TestApp>, token: &str, fault: impl AsyncFnOnce()) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> =
        (0..4).map(|_| tokio::spawn(load(app.clone(), token.to_owned(), seen.clone(), stop.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap()
}

async fn assert_sound(app: &TestApp, token: &str, seen: &Seen, bound: Duration) {
    let mut kinds = seen.statuses.clone();
    kinds.sort_unstable();
    kinds.dedup();
    eprintln!("statuses seen: {kinds:?}, {} requests, slowest {:?}", seen.statuses.len(), seen.slowest);
    assert!(kinds.iter().all(|s| [200, 201, 429, 503].contains(s)), "only success, 429 or 503: {kinds:?}");
    assert!(seen.slowest < bound, "no answer took longer than {bound:?}: {:?}", seen.slowest);
    // Nothing committed was lost: every 201 is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while Instant::now() < deadline {
        let res = app.on(Method::GET, "loaded", "/v1/projects?limit=100", Some(token)).send().await.unwrap();
        if res.status() == StatusCode::OK {
            all.clear();
            let mut page: serde_json::Value = res.json().await.unwrap();
            loop {
                all.extend(page["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()));
                let Some(cursor) = page["next_cursor"].as_str().map(str::to_owned) else { break };
                page = app
                    .on(Method::GET, "loaded", &format!("/v1/projects?limit=100&cursor={cursor}"), Some(token))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &seen.created {
        assert!(all.contains(id), "project {id} was answered 201 but is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_and_returning_mid_load_costs_nothing() {
    let redis = Arc::new(Mutex::new(PrivateRedis::start()));
    let url = redis.lock().unwrap().url();
    let app = Arc::new(TestApp::spawn_with(Backend::Postgres, &[("REDIS_URL", &url)]).await);
    let token = app.signup("loaded").await.token;
    let r = redis.clone();
    let seen = under_load(app.clone(), &token, async move || {
        r.lock().unwrap().kill();
        tokio::time::sleep(Duration::from_millis(800)).await;
        r.lock().unwrap().restart();
    })
    .await;
    assert!(!seen.statuses.contains(&503), "Redis is never a reason for a 503");
    assert_sound(&app, &token, &seen, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_connection_killed_mid_load_is_survived() {
    let app = Arc::new(TestApp::spawn_with(Backend::Postgres, &[("PLINTH_DB_POOL_TIMEOUT_MS", "500")]).await);
    let token = app.signup("loaded").await.token;
    let db = app.db.as_ref().unwrap();
    let owner = db.owner().await;
    let name = db.name.clone();
    let seen = under_load(app.clone(), &token, async move || {
        owner
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'plinth-api'",
                &[&name],
            )
            .await
            .unwrap();
    })
    .await;
    assert_sound(&app, &token, &seen, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_that_exhausts_the_pool_answers_503_within_the_timeouts() {
    let app = Arc::new(
        TestApp::spawn_with(
            Backend::Postgres,
            &[
                ("PLINTH_DB_POOL_SIZE", "2"),
                ("PLINTH_DB_POOL_TIMEOUT_MS", "300"),
                ("PLINTH_DB_STATEMENT_TIMEOUT_MS", "700"),
            ],
        )
        .await,
    );
    let token = app.signup("loaded").await.token;
    let owner = app.db.as_ref().unwrap().owner().await;
    let seen = under_load(app.clone(), &token, async move || {
        owner.batch_execute("BEGIN; LOCK TABLE projects IN ACCESS EXCLUSIVE MODE").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        owner.batch_execute("COMMIT").await.unwrap();
    })
    .await;
    assert!(seen.statuses.contains(&503), "the pool ran dry and said so: {:?}", seen.statuses.len());
    // pool wait + statement timeout + margin
    assert_sound(&app, &token, &seen, Duration::from_millis(2500)).await;
}
