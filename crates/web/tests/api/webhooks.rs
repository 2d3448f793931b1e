//! The webhook routes: registration behind the SSRF guard, secrets shown once, deliveries
//! created by project writes, and tenant isolation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem};
use crate::on_every_backend;

const LOOPBACK_OK: &[(&str, &str)] = &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")];

async fn register(app: &TestApp, slug: &str, token: &str, url: &str) -> reqwest::Response {
    app.on(Method::POST, slug, "/v1/webhooks", Some(token))
        .json(&json!({"url": url, "events": ["project.created", "project.deleted"]}))
        .send()
        .await
        .expect("register")
}

on_every_backend! {
    pgbouncer too;
    async fn a_webhook_shows_its_secret_once_and_gets_deliveries_of_its_events(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let token = app.signup("hooked").await.token;
        let res = register(&app, "hooked", &token, "http://127.0.0.1:9/hook").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        assert!(created["secret"].as_str().unwrap().starts_with("whsec_"), "{created}");
        assert_eq!(created["events"], json!(["project.created", "project.deleted"]));
        let id = created["id"].as_str().unwrap().to_owned();

        let list: Value = app.on(Method::GET, "hooked", "/v1/webhooks", Some(&token)).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"][0]["id"], created["id"]);
        assert!(!list.to_string().contains("whsec_"), "no secret is ever listed: {list}");

        let project = app.project("hooked", &token, "Watched").await;
        let rename = app.on(Method::PATCH, "hooked", &format!("/v1/projects/{}", project["id"].as_str().unwrap()), Some(&token));
        assert_eq!(rename.json(&json!({"name": "Renamed"})).send().await.unwrap().status(), StatusCode::OK);
        let deliveries: Value = app
            .on(Method::GET, "hooked", &format!("/v1/webhooks/{id}/deliveries"), Some(&token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = deliveries["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "only the subscribed event (project.created): {deliveries}");
        assert_eq!(items[0]["event"], "project.created");
        assert!(items[0]["event_id"].is_string() && items[0]["attempts"].is_number(), "{deliveries}");

        let gone = app.on(Method::DELETE, "hooked", &format!("/v1/webhooks/{id}"), Some(&token)).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::NO_CONTENT);
        let again = app.on(Method::DELETE, "hooked", &format!("/v1/webhooks/{id}"), Some(&token)).send().await.unwrap();
        assert_problem(again, 404, "not_found").await;
    }

    async fn every_private_address_trick_is_refused_at_registration(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.signup("guarded").await.token;
        for url in [
            "http://127.0.0.1/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://10.0.0.1/hook",
            "http://192.168.1.10/hook",
            "http://172.16.0.1/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0/",
            "http://100.64.0.1/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://user:pw@127.0.0.1/",
            "http://does-not-resolve.invalid/",
            "not a url",
            "https://93.184.216.34/outside-the-allowed-networks",
        ] {
            let body = assert_problem(register(&app, "guarded", &token, url).await, 422, "validation_failed").await;
            assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
        }
        let list: Value = app.on(Method::GET, "guarded", "/v1/webhooks", Some(&token)).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"], json!([]), "nothing was registered");
    }

    async fn another_tenant_cannot_see_or_touch_a_webhook(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let a = app.signup("hook-a").await.token;
        let b = app.signup("hook-b").await.token;
        let created: Value = register(&app, "hook-a", &a, "http://127.0.0.1:9/").await.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        let list: Value = app.on(Method::GET, "hook-b", "/v1/webhooks", Some(&b)).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"], json!([]));
        let read = app.on(Method::GET, "hook-b", &format!("/v1/webhooks/{id}/deliveries"), Some(&b)).send().await.unwrap();
        assert_problem(read, 404, "not_found").await;
        let delete = app.on(Method::DELETE, "hook-b", &format!("/v1/webhooks/{id}"), Some(&b)).send().await.unwrap();
        assert_problem(delete, 404, "not_found").await;
        let still: Value = app.on(Method::GET, "hook-a", "/v1/webhooks", Some(&a)).send().await.unwrap().json().await.unwrap();
        assert_eq!(still["items"][0]["id"], created["id"]);
    }
}

#[tokio::test]
async fn a_refused_url_says_what_its_host_resolves_to_without_the_address() {
    // `localhost` resolves (from /etc/hosts, no query leaves the machine) to 127.0.0.1 or ::1.
    for (vars, expected) in [
        (&[][..], "the host resolves to a loopback address"),
        (
            &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"), ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "10.0.0.0/8")][..],
            "the host resolves to an address outside the allowed networks",
        ),
    ] {
        let app = TestApp::spawn_with(Backend::Memory, vars).await;
        let token = app.signup("resolved").await.token;
        let res = register(&app, "resolved", &token, "http://localhost:8080/hook").await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "url", "{body}");
        assert_eq!(body["errors"][0]["message"], expected, "{body}");
        let text = body.to_string();
        assert!(!text.contains("127.0.0.1") && !text.contains("::1"), "the answer names an address: {text}");
    }
}

#[tokio::test]
async fn members_may_not_manage_webhooks_and_bad_events_are_refused() {
    let app = TestApp::spawn_with(Backend::Memory, LOOPBACK_OK).await;
    let owner = app.signup("hook-roles").await.token;
    let (_, member) = app.user("hook-roles", &owner, "m@hook-roles.test", "member").await;
    assert_problem(register(&app, "hook-roles", &member, "http://127.0.0.1:9/").await, 403, "forbidden").await;
    let list = app.on(Method::GET, "hook-roles", "/v1/webhooks", Some(&member)).send().await.unwrap();
    assert_problem(list, 403, "forbidden").await;
    for events in [json!([]), json!(["project.exploded"]), json!("project.created")] {
        let res = app
            .on(Method::POST, "hook-roles", "/v1/webhooks", Some(&owner))
            .json(&json!({"url": "http://127.0.0.1:9/", "events": events}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn a_replayed_registration_leaves_the_secret_out() {
    let app = TestApp::spawn_with(Backend::Memory, LOOPBACK_OK).await;
    let token = app.signup("hook-replay").await.token;
    let send = || {
        app.on(Method::POST, "hook-replay", "/v1/webhooks", Some(&token))
            .header("Idempotency-Key", "register-once")
            .json(&json!({"url": "http://127.0.0.1:9/", "events": ["project.created"]}))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    let replay: Value = replay.json().await.unwrap();
    assert!(first["secret"].is_string());
    assert!(replay.get("secret").is_none(), "{replay}");
    assert_eq!(replay["id"], first["id"]);
    let list: Value =
        app.on(Method::GET, "hook-replay", "/v1/webhooks", Some(&token)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "registered once");
}
