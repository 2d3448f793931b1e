//! Webhook deliveries end to end: a receiver on 127.0.0.1 gets signed events, failures are
//! retried with the same event id, the last failure leaves the delivery dead, a killed worker's
//! job is rescued, and one tenant's backlog doesn't hold up another's delivery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Backend, TestApp};
use crate::on_every_backend;

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) event_id: String,
    pub(crate) signature: String,
    pub(crate) body: Vec<u8>,
}

/// A webhook receiver on 127.0.0.1 answering statuses from a script (then 200).
pub(crate) struct Receiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<u16>, delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let (s, sc) = (seen.clone(), script.clone());
        let server = HttpServer::new(move || {
            let (seen, script) = (s.clone(), sc.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (seen, script) = (seen.clone(), script.clone());
                async move {
                    let header =
                        |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(Received {
                        event_id: header("plinth-event-id"),
                        signature: header("plinth-signature"),
                        body: body.to_vec(),
                    });
                    tokio::time::sleep(delay).await;
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
                }
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self { url: format!("http://127.0.0.1:{port}/hook"), seen }
    }

    pub(crate) fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

fn verify(secret: &str, r: &Received) -> bool {
    let Some((t, v1)) = r.signature.split_once(",v1=") else { return false };
    let t = t.trim_start_matches("t=");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}

const FAST_RETRIES: &[(&str, &str)] = &[
    ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("PLINTH_WORKER", "true"),
    ("PLINTH_WEBHOOK_BACKOFF_MS", "50"),
    ("PLINTH_WEBHOOK_MAX_ATTEMPTS", "3"),
];

/// No worker of the app's own: the test takes the worker's steps (`Plinth::work_one`) itself.
/// Retries are due 1–2 ms after a failure.
const STEPPED: &[(&str, &str)] = &[
    ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("PLINTH_WORKER", "false"),
    ("PLINTH_WEBHOOK_BACKOFF_MS", "1"),
    ("PLINTH_WEBHOOK_MAX_ATTEMPTS", "3"),
];

/// Longer than any retry delay under [`STEPPED`] (after three failures: 4 ms at most).
/// The queue schedules retries on the system's clock, not the injected one, so this much real
/// time must pass before a step can tell "nothing due" from "nothing due yet".
const LONGEST_STEPPED_RETRY: Duration = Duration::from_millis(5);

/// Takes one step of the worker that works a job: waits (briefly: see [`STEPPED`]) until one
/// is due.
async fn step(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.plinth.work_one("stepping-test").await.unwrap() {
        assert!(Instant::now() < deadline, "no job came due");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A project created on a tenant whose webhook's receiver answers `script`, and three steps
/// of the worker, each making one attempt; returns the app, the receiver and the deliveries.
async fn three_stepped_attempts(backend: Backend, script: Vec<u16>) -> (TestApp, Receiver, Vec<Value>) {
    let receiver = Receiver::start(script, Duration::ZERO).await;
    let app = TestApp::spawn_with(backend, STEPPED).await;
    let token = app.signup("stepped").await.token;
    step(&app).await; // the owner's verification message (to the log)
    let (hook, _) = subscribe(&app, "stepped", &token, &receiver.url).await;
    app.project("stepped", &token, "Stepped").await;
    for attempt in 1..=3 {
        step(&app).await;
        assert_eq!(receiver.seen().len(), attempt, "one attempt per step");
    }
    let items = deliveries(&app, "stepped", &token, &hook).await;
    assert_eq!(items.len(), 1, "{items:?}");
    (app, receiver, items)
}

pub(crate) async fn subscribe(app: &TestApp, slug: &str, token: &str, url: &str) -> (String, String) {
    let res = app
        .on(Method::POST, slug, "/v1/webhooks", Some(token))
        .json(&json!({"url": url, "events": ["project.created", "project.updated", "project.deleted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

pub(crate) async fn deliveries(app: &TestApp, slug: &str, token: &str, webhook: &str) -> Vec<Value> {
    let res =
        app.on(Method::GET, slug, &format!("/v1/webhooks/{webhook}/deliveries"), Some(token)).send().await.unwrap();
    res.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

/// Polls until `done` holds for the webhook's deliveries, or fails after `within`.
async fn until(
    app: &TestApp,
    slug: &str,
    token: &str,
    webhook: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let items = deliveries(app, slug, token, webhook).await;
        if done(&items) {
            return items;
        }
        assert!(Instant::now() < deadline, "deliveries never settled: {items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_every_backend! {
    pgbouncer too;
    async fn each_event_arrives_signed_with_its_event_id(backend: Backend) {
        let receiver = Receiver::start(vec![], Duration::ZERO).await;
        let app = TestApp::spawn_with(backend, FAST_RETRIES).await;
        let token = app.signup("deliver").await.token;
        let (hook, secret) = subscribe(&app, "deliver", &token, &receiver.url).await;
        let project = app.project("deliver", &token, "Signed").await;
        let id = project["id"].as_str().unwrap();
        let patch = app.on(Method::PATCH, "deliver", &format!("/v1/projects/{id}"), Some(&token)).json(&json!({"name": "Resigned"}));
        assert_eq!(patch.send().await.unwrap().status(), StatusCode::OK);
        let delete = app.on(Method::DELETE, "deliver", &format!("/v1/projects/{id}"), Some(&token));
        assert_eq!(delete.send().await.unwrap().status(), StatusCode::NO_CONTENT);

        let items = until(&app, "deliver", &token, &hook, Duration::from_secs(10), |d| {
            d.len() == 3 && d.iter().all(|x| x["state"] == "delivered")
        })
        .await;
        let seen = receiver.seen();
        assert_eq!(seen.len(), 3, "{seen:?}");
        let mut types = Vec::new();
        for r in &seen {
            assert!(verify(&secret, r), "a valid signature: {r:?}");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["id"], r.event_id.as_str(), "Plinth-Event-Id is the body's id");
            assert_eq!(body["data"]["id"], id);
            assert!(body["tenant_id"].is_string() && body["created_at"].is_string());
            assert!(items.iter().any(|d| d["event_id"] == r.event_id.as_str()));
            types.push(body["type"].as_str().unwrap().to_owned());
        }
        types.sort();
        assert_eq!(types, ["project.created", "project.deleted", "project.updated"]);
    }

    async fn a_failing_receiver_gets_the_same_event_again_until_it_answers(backend: Backend) {
        let (_app, receiver, items) = three_stepped_attempts(backend, vec![500, 500]).await;
        assert_eq!(items[0]["state"], "delivered");
        assert_eq!(items[0]["attempts"], 3);
        let seen = receiver.seen();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|r| r.event_id == seen[0].event_id), "one event id across retries");
    }

    async fn a_receiver_that_always_fails_leaves_the_delivery_dead(backend: Backend) {
        let (app, receiver, items) = three_stepped_attempts(backend, vec![500; 10]).await;
        assert_eq!(items[0]["state"], "dead");
        assert_eq!(items[0]["attempts"], 3, "every attempt counted");
        assert_eq!(items[0]["last_error"], "the receiver answered 500");
        tokio::time::sleep(LONGEST_STEPPED_RETRY).await;
        assert!(!app.plinth.work_one("stepping-test").await.unwrap(), "a job is still due after the last attempt");
        assert_eq!(receiver.seen().len(), 3, "no attempt after the last");
    }

    async fn a_write_past_the_tenants_cap_of_pending_jobs_answers_429_queue_full_and_writes_nothing(backend: Backend) {
        // No worker: every delivery stays pending.
        let app = TestApp::spawn_with(backend, &[
            ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("PLINTH_TENANT_MAX_PENDING_JOBS", "2"),
        ]).await;
        let token = app.signup("capped").await.token;
        // The owner's verification message is a job too: sent (to the log) before counting.
        assert!(app.plinth.work_one("test").await.unwrap());
        let (hook, _) = subscribe(&app, "capped", &token, "http://127.0.0.1:9/hook").await;
        let kept = app.project("capped", &token, "One").await;
        app.project("capped", &token, "Two").await;

        let res = app.on(Method::POST, "capped", "/v1/projects", Some(&token)).json(&json!({"name": "Three"})).send().await.unwrap();
        assert_eq!(crate::helpers::header(&res, "retry-after").as_deref(), Some("30"));
        crate::helpers::assert_problem(res, 429, "queue_full").await;
        let id = kept["id"].as_str().unwrap();
        let rename = app.on(Method::PATCH, "capped", &format!("/v1/projects/{id}"), Some(&token)).json(&json!({"name": "Renamed"}));
        crate::helpers::assert_problem(rename.send().await.unwrap(), 429, "queue_full").await;

        let listed = app.on(Method::GET, "capped", "/v1/projects", Some(&token)).send().await.unwrap();
        let names: Vec<String> = listed.json::<Value>().await.unwrap()["items"].as_array().unwrap().iter()
            .map(|p| p["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["Two", "One"], "neither the refused create nor the refused rename wrote anything");
        assert_eq!(deliveries(&app, "capped", &token, &hook).await.len(), 2, "no delivery for a refused write");

        // The cap is the tenant's own.
        let other = app.signup("uncapped").await.token;
        subscribe(&app, "uncapped", &other, "http://127.0.0.1:9/hook").await;
        app.project("uncapped", &other, "Room").await;
    }

    async fn one_tenants_backlog_does_not_hold_up_anothers_delivery(backend: Backend) {
        let slow = Receiver::start(vec![], Duration::from_millis(100)).await;
        let fast = Receiver::start(vec![], Duration::ZERO).await;
        let app = TestApp::spawn_with(backend, FAST_RETRIES).await;
        let busy = app.signup("backlog").await.token;
        let calm = app.signup("calm").await.token;
        subscribe(&app, "backlog", &busy, &slow.url).await;
        let (hook, _) = subscribe(&app, "calm", &calm, &fast.url).await;
        for n in 0..200 {
            app.project("backlog", &busy, &format!("p{n}")).await;
        }
        let started = Instant::now();
        app.project("calm", &calm, "Next in line").await;
        until(&app, "calm", &calm, &hook, Duration::from_secs(3), |d| d.len() == 1 && d[0]["state"] == "delivered").await;
        let waited = started.elapsed();
        assert!(slow.seen().len() < 150, "the backlog was still being worked: {}", slow.seen().len());
        eprintln!("fairness: the calm tenant's delivery took {waited:?} behind a 200-delivery backlog");
    }
}

#[tokio::test]
async fn a_killed_workers_job_is_rescued_and_delivered_by_another() {
    // The receiver holds the first request until the worker holding it is killed.
    let receiver = Receiver::start(vec![], Duration::from_secs(4)).await;
    let app =
        TestApp::spawn_with(Backend::Postgres, &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"), ("PLINTH_WORKER", "false")])
            .await;
    let db = app.db.as_ref().unwrap();
    let token = app.signup("rescue").await.token;
    let (hook, _) = subscribe(&app, "rescue", &token, &receiver.url).await;
    app.project("rescue", &token, "Orphaned").await;

    let env = [
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_DATABASE_OWNER_URL", db.owner_url.as_str()),
        ("PLINTH_JWT_SECRET", "a-test-secret-of-at-least-32-bytes!"),
        ("PLINTH_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8"),
        ("PLINTH_JOB_RESCUE_AFTER_S", "2"),
        ("PLINTH_LOG", "warn"),
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_plinth"))
        .arg("worker")
        .envs(env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.seen().is_empty() {
        assert!(Instant::now() < deadline, "the first worker never called the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL, with the job in hand
    first.wait().unwrap();
    assert_eq!(deliveries(&app, "rescue", &token, &hook).await[0]["state"], "pending");

    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_plinth"))
        .arg("worker")
        .envs(env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let items =
        until(&app, "rescue", &token, &hook, Duration::from_secs(20), |d| d.len() == 1 && d[0]["state"] == "delivered")
            .await;
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(items[0]["attempts"], 1, "the killed attempt was never recorded");
    assert!(receiver.seen().len() >= 2, "delivered again after the rescue");
}

#[tokio::test]
async fn the_worker_completes_queued_no_op_jobs() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("PLINTH_WORKER", "true")]).await;
    let owner = app.db.as_ref().unwrap().owner().await;
    owner
        .execute(
            "INSERT INTO jobs (queue, kind, payload) \
             SELECT t::text, 'noop', json_build_object('tenant_id', t::text) FROM (SELECT gen_random_uuid() t FROM generate_series(1, 50)) s",
            &[],
        )
        .await
        .unwrap();
    owner.execute("SELECT pg_notify('plinth_jobs', '')", &[]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = owner.query_one("SELECT count(*) FROM jobs", &[]).await.unwrap().get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} no-op jobs were never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Through PgBouncer in transaction mode with no direct URL, the worker's `LISTEN` reaches no
/// one: the listener finds that out and the worker polls, so a project's event still reaches
/// its webhook.
#[tokio::test]
async fn through_pgbouncer_without_a_direct_url_the_worker_polls_and_delivers() {
    let receiver = Receiver::start(vec![], Duration::ZERO).await;
    let db = plinth_testkit::TestDatabase::new().await;
    let clock = Arc::new(plinth_domain::clock::SystemClock::new());
    let app = TestApp::start_pooled(FAST_RETRIES, db, false, clock, |_| {}).await;
    let token = app.signup("polled").await.token;
    let (hook, _) = subscribe(&app, "polled", &token, &receiver.url).await;
    app.project("polled", &token, "Polled").await;
    let items =
        until(&app, "polled", &token, &hook, Duration::from_secs(15), |d| d.len() == 1 && d[0]["state"] == "delivered")
            .await;
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(receiver.seen().len(), 1, "delivered once");
}
