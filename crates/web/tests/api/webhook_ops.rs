//! Webhook operations end to end: an endpoint shown and changed (its URL guarded again), its
//! secret rotated with an overlap, a ping, a retried and recovered delivery, an endpoint
//! disabled after failing too long (with its owners mailed and its tenant's other endpoints
//! told), and pacing. The worker is driven one job at a time, on a clock the test moves: it
//! starts a day ahead of the system's, so PostgreSQL's queue (which counts a job due by the
//! later of its clock and plinth's) follows the test's clock alone.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use plinth_domain::clock::ManualClock;
use plinth_domain::ports::Clock;
use plinth_testkit::Mailbox;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::deliveries::{Received, Receiver, deliveries, subscribe};
use crate::helpers::{Backend, TestApp, assert_problem, json_of};
use crate::on_every_backend;

const STEPPED: &[(&str, &str)] = &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"), ("PLINTH_WEBHOOK_BACKOFF_MS", "1")];

/// An app whose clock starts a day ahead and stays until moved.
async fn app_on_clock(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(plinth_domain::clock::now() + time::Duration::days(1)));
    let mut all = STEPPED.to_vec();
    all.extend_from_slice(vars);
    let app = TestApp::spawn_on_clock(backend, &all, clock.clone() as Arc<dyn Clock>).await;
    (app, clock)
}

/// Works every job due now; returns how many.
async fn drain(app: &TestApp) -> usize {
    let mut n = 0;
    while app.plinth.work_one("webhook-ops-test").await.expect("a job works") {
        n += 1;
    }
    n
}

/// Works one job, which must be due.
async fn step(app: &TestApp) {
    assert!(app.plinth.work_one("webhook-ops-test").await.expect("a job works"), "a job is due");
}

/// The `v1=` signatures of a request.
fn signatures(r: &Received) -> (String, Vec<String>) {
    let mut parts = r.signature.split(',');
    let t = parts.next().unwrap_or_default().trim_start_matches("t=").to_owned();
    (t, parts.filter_map(|p| p.strip_prefix("v1=")).map(str::to_owned).collect())
}

/// Whether any of the request's signatures is `secret`'s.
fn signed_by(secret: &str, r: &Received) -> bool {
    let (t, v1s) = signatures(r);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    v1s.contains(&expected)
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

async fn get_webhook(app: &TestApp, slug: &str, token: &str, id: &str) -> Value {
    let res = app.on(Method::GET, slug, &format!("/v1/webhooks/{id}"), Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn patch(app: &TestApp, slug: &str, token: &str, id: &str, change: Value) -> reqwest::Response {
    app.on(Method::PATCH, slug, &format!("/v1/webhooks/{id}"), Some(token)).json(&change).send().await.unwrap()
}

async fn post(app: &TestApp, slug: &str, token: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let req = app.on(Method::POST, slug, path, Some(token));
    let req = match body {
        Some(body) => req.json(&body),
        None => req,
    };
    req.send().await.unwrap()
}

on_every_backend! {
    async fn a_webhook_shows_its_state_and_a_patch_changes_it_through_the_guard(backend: Backend) {
        let app = TestApp::spawn_with(backend, STEPPED).await;
        let owner = app.signup("patched").await.token;
        let other = app.signup("stranger").await.token;
        let (id, _) = subscribe(&app, "patched", &owner, "http://127.0.0.1:9/hook").await;

        let shown = get_webhook(&app, "patched", &owner, &id).await;
        assert_eq!(shown["state"], "enabled");
        assert_eq!(shown["consecutive_failures"], 0);
        assert_eq!(shown["last_success_at"], Value::Null);
        assert_eq!(shown["disabled_reason"], Value::Null);
        assert!(shown.get("secret").is_none() && !shown.to_string().contains("whsec_"), "{shown}");

        // The SSRF guard again: outside the allowed networks, or not http(s).
        for url in ["http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "ftp://127.0.0.1/x"] {
            let res = patch(&app, "patched", &owner, &id, json!({"url": url})).await;
            assert_problem(res, 422, "validation_failed").await;
        }
        let res = patch(&app, "patched", &owner, &id, json!({"events": ["project.exploded"]})).await;
        assert_problem(res, 422, "validation_failed").await;
        let res = patch(&app, "patched", &owner, &id, json!({"events": ["webhook.ping"]})).await;
        assert_problem(res, 422, "validation_failed").await;
        let res = patch(&app, "patched", &owner, &id, json!({"rate_limit_per_second": 0})).await;
        assert_problem(res, 422, "validation_failed").await;
        assert_eq!(get_webhook(&app, "patched", &owner, &id).await, shown, "a refused change changes nothing");

        let change = json!({"url": "http://127.0.0.1:10/new", "events": ["project.deleted", "webhook.disabled"], "rate_limit_per_second": 5});
        let res = patch(&app, "patched", &owner, &id, change).await;
        assert_eq!(res.status(), StatusCode::OK);
        let changed: Value = res.json().await.unwrap();
        assert_eq!(changed["url"], "http://127.0.0.1:10/new");
        assert_eq!(changed["events"], json!(["project.deleted", "webhook.disabled"]));
        assert_eq!(changed["rate_limit_per_second"], 5);
        assert_eq!(get_webhook(&app, "patched", &owner, &id).await, changed);
        // A whole number may be written as JSON Schema's `integer` admits it; a fraction may not.
        let res = patch(&app, "patched", &owner, &id, json!({"rate_limit_per_second": 2.0})).await;
        assert_eq!(res.json::<Value>().await.unwrap()["rate_limit_per_second"], 2);
        let res = patch(&app, "patched", &owner, &id, json!({"rate_limit_per_second": 1.5})).await;
        assert_problem(res, 422, "validation_failed").await;
        let res = patch(&app, "patched", &owner, &id, json!({"rate_limit_per_second": null})).await;
        assert_eq!(res.json::<Value>().await.unwrap()["rate_limit_per_second"], Value::Null);

        // A URL is stored as it will be called: a backslash is a slash, a line break goes; the
        // audit log keeps the real origin, with nothing slipped into it.
        let tricky = "http://127.0.0.1:11\\path\\S3CRET\n\nNOTICE: your account is locked";
        let res = patch(&app, "patched", &owner, &id, json!({"url": tricky})).await;
        assert_eq!(res.status(), StatusCode::OK);
        let stored: Value = res.json().await.unwrap();
        assert_eq!(stored["url"], "http://127.0.0.1:11/path/S3CRETNOTICE:%20your%20account%20is%20locked");
        let audit =
            json_of(app.on(Method::GET, "patched", "/v1/audit-log?action=webhook.updated", Some(&owner)), StatusCode::OK)
                .await;
        let logged = audit["items"][0]["changes"]["url"].as_str().unwrap();
        assert_eq!(logged, "http://127.0.0.1:11", "{audit}");

        // Another tenant's webhook is not found, by any route.
        let res = app.on(Method::GET, "stranger", &format!("/v1/webhooks/{id}"), Some(&other)).send().await.unwrap();
        assert_problem(res, 404, "not_found").await;
        assert_problem(patch(&app, "stranger", &other, &id, json!({"enabled": false})).await, 404, "not_found").await;
        for path in ["test", "rotate-secret"] {
            let res = post(&app, "stranger", &other, &format!("/v1/webhooks/{id}/{path}"), Some(json!({}))).await;
            assert_problem(res, 404, "not_found").await;
        }
        assert_eq!(get_webhook(&app, "patched", &owner, &id).await["state"], "enabled");
    }

    async fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one(backend: Backend) {
        let (app, clock) = app_on_clock(backend, &[]).await;
        let receiver = Receiver::start(vec![], Duration::ZERO).await;
        let owner = app.signup("rotated").await.token;
        drain(&app).await;
        let (id, old) = subscribe(&app, "rotated", &owner, &receiver.url).await;

        let path = format!("/v1/webhooks/{id}/rotate-secret");
        let res = post(&app, "rotated", &owner, &path, Some(json!({"overlap_s": 604_801}))).await;
        assert_problem(res, 422, "validation_failed").await;
        let res = post(&app, "rotated", &owner, &path, Some(json!({"overlap_s": 3600.0}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let rotated: Value = res.json().await.unwrap();
        let new = rotated["secret"].as_str().unwrap().to_owned();
        assert!(new.starts_with("whsec_") && new.len() >= 6 + 43 && new != old, "a new 256-bit secret");
        assert!(rotated["rotation_ends_at"].is_string());
        let shown = get_webhook(&app, "rotated", &owner, &id).await;
        assert!(!shown.to_string().contains(&new), "shown once");
        assert_eq!(shown["rotation_ends_at"], rotated["rotation_ends_at"], "during the overlap");

        app.project("rotated", &owner, "During").await;
        drain(&app).await;
        let during = receiver.seen();
        assert_eq!(signatures(&during[0]).1.len(), 2, "{}", during[0].signature);
        assert!(signed_by(&new, &during[0]) && signed_by(&old, &during[0]), "both verify during the overlap");

        clock.advance(Duration::from_secs(3601));
        let owner = app.login("rotated", "owner@rotated.test").await;
        app.project("rotated", &owner, "After").await;
        drain(&app).await;
        let after = receiver.seen();
        assert_eq!(after.len(), 2);
        assert_eq!(signatures(&after[1]).1.len(), 1, "{}", after[1].signature);
        assert!(signed_by(&new, &after[1]), "the new secret signs");
        assert!(!signed_by(&old, &after[1]), "the old one no longer does");
        assert_eq!(get_webhook(&app, "rotated", &owner, &id).await["rotation_ends_at"], Value::Null, "the overlap is over");

        // A rotation without overlap ends the old secret at once.
        let res = post(&app, "rotated", &owner, &path, Some(json!({"overlap_s": 0}))).await;
        let newest = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
        app.project("rotated", &owner, "Newest").await;
        drain(&app).await;
        let last = receiver.seen().pop().unwrap();
        assert!(signed_by(&newest, &last) && !signed_by(&new, &last));
    }

    async fn a_ping_reaches_the_endpoint_and_a_retry_resends_the_same_event(backend: Backend) {
        let (app, _clock) = app_on_clock(backend, &[("PLINTH_WEBHOOK_MAX_ATTEMPTS", "1")]).await;
        let receiver = Receiver::start(vec![500], Duration::ZERO).await;
        let owner = app.signup("replayed").await.token;
        let other = app.signup("elsewhere").await.token;
        drain(&app).await;
        let (id, secret) = subscribe(&app, "replayed", &owner, &receiver.url).await;

        app.project("replayed", &owner, "Dies").await;
        drain(&app).await;
        let dead = deliveries(&app, "replayed", &owner, &id).await;
        assert_eq!(dead[0]["state"], "dead");
        let delivery = dead[0]["id"].as_str().unwrap();

        let retry = format!("/v1/webhooks/{id}/deliveries/{delivery}/retry");
        let res = post(&app, "elsewhere", &other, &retry, None).await;
        assert_problem(res, 404, "not_found").await;
        let res = post(&app, "replayed", &owner, &retry, None).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let pending: Value = res.json().await.unwrap();
        assert_eq!(pending["state"], "pending");
        assert_eq!(pending["event_id"], dead[0]["event_id"]);
        assert_eq!(drain(&app).await, 1, "one new attempt");
        let seen = receiver.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].event_id, seen[1].event_id, "the same event id");
        assert_eq!(seen[0].body, seen[1].body, "the same event");
        let now = deliveries(&app, "replayed", &owner, &id).await;
        assert_eq!((now.len(), &now[0]["state"], &now[0]["attempts"]), (1, &json!("delivered"), &json!(2)));

        let res = post(&app, "replayed", &owner, &format!("/v1/webhooks/{id}/test"), None).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let ping: Value = res.json().await.unwrap();
        assert_eq!(ping["event"], "webhook.ping");
        drain(&app).await;
        let got = receiver.seen().pop().unwrap();
        let event = body(&got);
        assert_eq!(event["type"], "webhook.ping");
        assert_eq!(event["data"]["id"], id.as_str());
        assert_eq!(got.event_id, ping["event_id"].as_str().unwrap());
        assert!(signed_by(&secret, &got));
    }

    async fn recover_resends_only_failed_deliveries_each_once(backend: Backend) {
        let (app, clock) = app_on_clock(backend, &[("PLINTH_WEBHOOK_MAX_ATTEMPTS", "1")]).await;
        // The first event is delivered; the next two fail (and die: one attempt each).
        let receiver = Receiver::start(vec![200, 500, 500], Duration::ZERO).await;
        let owner = app.signup("recovered").await.token;
        drain(&app).await;
        let since = clock.now();
        let (id, _) = subscribe(&app, "recovered", &owner, &receiver.url).await;
        for name in ["One", "Two", "Three"] {
            app.project("recovered", &owner, name).await;
            drain(&app).await;
        }
        let before = deliveries(&app, "recovered", &owner, &id).await;
        let dead: Vec<&str> = before.iter().filter(|d| d["state"] == "dead").map(|d| d["event_id"].as_str().unwrap()).collect();
        assert_eq!(dead.len(), 2, "{before:?}");

        let path = format!("/v1/webhooks/{id}/recover");
        let future = (clock.now() + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
        let none: Value = post(&app, "recovered", &owner, &path, Some(json!({"since": future}))).await.json().await.unwrap();
        assert_eq!(none["recovered"], 0, "nothing failed after a time to come");
        assert_problem(post(&app, "recovered", &owner, &path, Some(json!({"since": "yesterday"}))).await, 422, "validation_failed").await;
        let since = since.format(&time::format_description::well_known::Rfc3339).unwrap();
        let res = post(&app, "recovered", &owner, &path, Some(json!({"since": since}))).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer, json!({"recovered": 2, "next_since": null}));

        // Paced: ten a second, so the second is due 100 ms after the first.
        assert_eq!(drain(&app).await, 1, "one due now");
        clock.advance(Duration::from_millis(100));
        assert_eq!(drain(&app).await, 1, "the next one a pace later");
        clock.advance(Duration::from_secs(10));
        assert_eq!(drain(&app).await, 0, "each once");
        let seen = receiver.seen();
        assert_eq!(seen.len(), 5);
        let mut resent: Vec<&str> = seen[3..].iter().map(|r| r.event_id.as_str()).collect();
        resent.sort_unstable();
        let mut expected = dead.clone();
        expected.sort_unstable();
        assert_eq!(resent, expected, "only the dead ones, with their event ids");

        let again: Value = post(&app, "recovered", &owner, &path, Some(json!({"since": since}))).await.json().await.unwrap();
        assert_eq!(again["recovered"], 0, "nothing failed is left");
        // A time past what UTC can write (the year 10000 there) is after every delivery.
        for late in ["9999-12-31T23:59:59-23:59", "9999-12-31T23:00:00-01:00"] {
            let res = post(&app, "recovered", &owner, &path, Some(json!({"since": late}))).await;
            assert_eq!(res.status(), StatusCode::ACCEPTED, "{late}");
            assert_eq!(res.json::<Value>().await.unwrap()["recovered"], 0);
        }
    }

    async fn an_endpoint_failing_past_the_threshold_is_disabled_with_a_notice_and_an_event(backend: Backend) {
        let mailbox = Mailbox::start().unwrap_or_else(|e| panic!("{e}"));
        let smtp = mailbox.url();
        let vars = [
            ("PLINTH_SMTP_URL", smtp.as_str()),
            ("PLINTH_EMAIL_FROM", "plinth <no-reply@plinth.test>"),
            ("PLINTH_PUBLIC_URL_TEMPLATE", "http://{slug}.example.test"),
            ("PLINTH_WEBHOOK_MAX_ATTEMPTS", "50"),
            ("PLINTH_WEBHOOK_DISABLE_AFTER_S", "3600"),
            ("PLINTH_WEBHOOK_DISABLE_MIN_FAILURES", "3"),
        ];
        let (app, clock) = app_on_clock(backend, &vars).await;
        let failing = Receiver::start(vec![500; 100], Duration::ZERO).await;
        let watcher = Receiver::start(vec![], Duration::ZERO).await;
        let owner = app.signup("failing").await.token;
        drain(&app).await; // the owner's verification message
        let sent_before = mailbox.messages().unwrap().len();
        let (id, _) = subscribe(&app, "failing", &owner, &failing.url).await;
        let res = app
            .on(Method::POST, "failing", "/v1/webhooks", Some(&owner))
            .json(&json!({"url": watcher.url, "events": ["webhook.disabled"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        for name in ["One", "Two", "Three"] {
            app.project("failing", &owner, name).await;
        }
        step(&app).await;
        step(&app).await;
        assert_eq!(failing.seen().len(), 2);
        let shown = get_webhook(&app, "failing", &owner, &id).await;
        assert_eq!((shown["state"].as_str(), shown["consecutive_failures"].as_u64()), (Some("enabled"), Some(2)));
        assert!(shown["failing_since"].is_string());

        // A third failure, past the hour: the endpoint is disabled.
        clock.advance(Duration::from_secs(3601));
        let owner = app.login("failing", "owner@failing.test").await;
        step(&app).await;
        assert_eq!(failing.seen().len(), 3);
        let shown = get_webhook(&app, "failing", &owner, &id).await;
        assert_eq!(shown["state"], "disabled", "{shown}");
        assert!(shown["disabled_reason"].as_str().unwrap().contains("3 attempts in a row"), "{shown}");
        assert!(shown["disabled_at"].is_string());
        clock.advance(Duration::from_secs(3600));
        drain(&app).await;
        assert_eq!(failing.seen().len(), 3, "no more attempts");
        let owner = app.login("failing", "owner@failing.test").await;
        let states: Vec<Value> = deliveries(&app, "failing", &owner, &id).await.iter().map(|d| d["state"].clone()).collect();
        assert!(states.iter().all(|s| s == "skipped"), "its pending deliveries were skipped: {states:?}");

        // The tenant's other endpoint is told, and so is the owner.
        let told = watcher.seen();
        assert_eq!(told.len(), 1);
        let event = body(&told[0]);
        assert_eq!((event["type"].as_str(), event["data"]["id"].as_str()), (Some("webhook.disabled"), Some(id.as_str())));
        assert_eq!(event["data"]["state"], "disabled");
        assert_eq!(event["data"]["url"], failing.url.trim_end_matches("/hook"), "only the origin goes to other receivers");
        let mails = mailbox.messages().unwrap();
        let notices: Vec<_> = mails[sent_before..].iter().filter(|m| m.to.contains("owner@failing.test")).collect();
        assert_eq!(notices.len(), 1, "{mails:?}");
        assert!(notices[0].subject.contains("was disabled"), "{}", notices[0].subject);
        let origin = failing.url.trim_end_matches("/hook");
        assert!(notices[0].text.contains(origin) && !notices[0].text.contains(&failing.url), "only the origin");
        let audit =
            json_of(app.on(Method::GET, "failing", "/v1/audit-log?action=webhook.disabled", Some(&owner)), StatusCode::OK)
                .await;
        assert_eq!(audit["items"][0]["actor"]["kind"], "system", "{audit}");

        // Disabled: no test, retry or recovery until it is enabled again.
        let res = post(&app, "failing", &owner, &format!("/v1/webhooks/{id}/test"), None).await;
        assert_problem(res, 409, "conflict").await;
        let res = patch(&app, "failing", &owner, &id, json!({"enabled": true})).await;
        let enabled: Value = res.json().await.unwrap();
        assert_eq!((enabled["state"].as_str(), enabled["consecutive_failures"].as_u64()), (Some("enabled"), Some(0)));
        assert_eq!(enabled["disabled_reason"], Value::Null);
        app.project("failing", &owner, "Four").await;
        drain(&app).await;
        assert_eq!(failing.seen().len(), 4, "new deliveries go out again");
    }

    async fn pacing_holds_an_endpoint_to_its_rate_without_delaying_another(backend: Backend) {
        let (app, clock) = app_on_clock(backend, &[]).await;
        let paced = Receiver::start(vec![], Duration::ZERO).await;
        let free = Receiver::start(vec![], Duration::ZERO).await;
        let owner = app.signup("paced").await.token;
        drain(&app).await;
        let (slow, _) = subscribe(&app, "paced", &owner, &paced.url).await;
        subscribe(&app, "paced", &owner, &free.url).await;
        let res = patch(&app, "paced", &owner, &slow, json!({"rate_limit_per_second": 1})).await;
        assert_eq!(res.status(), StatusCode::OK);
        for n in 0..3 {
            app.project("paced", &owner, &format!("P{n}")).await;
        }
        drain(&app).await;
        assert_eq!(free.seen().len(), 3, "the other endpoint is not held");
        assert_eq!(paced.seen().len(), 1, "one a second");
        clock.advance(Duration::from_millis(999));
        drain(&app).await;
        assert_eq!(paced.seen().len(), 1, "not before its slot");
        clock.advance(Duration::from_millis(1));
        drain(&app).await;
        assert_eq!(paced.seen().len(), 2);
        clock.advance(Duration::from_secs(1));
        drain(&app).await;
        assert_eq!(paced.seen().len(), 3);
        let states = deliveries(&app, "paced", &owner, &slow).await;
        assert!(states.iter().all(|d| d["state"] == "delivered" && d["attempts"] == 1), "{states:?}");
    }
}
