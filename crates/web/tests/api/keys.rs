//! Tenant API keys and the audit log, through the API: a key shown once and usable only on
//! its tenant's host and within its scopes (every route checked), never above its creator's
//! role, expiring, limited on its own; and every change recorded, filtered, paged and verified.

use std::sync::Arc;
use std::time::Duration;

use plinth_domain::clock::ManualClock;
use plinth_domain::ports::Clock as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, header, json_of};
use crate::on_every_backend;

const ALL_SCOPES: [&str; 7] =
    ["projects:read", "projects:write", "users:read", "users:write", "webhooks:read", "webhooks:write", "audit:read"];

/// Creates a key on `slug` as `token`'s user; returns the answer's JSON (with `secret`).
async fn create_key(app: &TestApp, slug: &str, token: &str, body: Value) -> Value {
    let res = app.on(Method::POST, slug, "/v1/api-keys", Some(token)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{body}");
    assert_eq!(header(&res, "cache-control").as_deref(), Some("private, no-store"));
    res.json().await.unwrap()
}

async fn key_with(app: &TestApp, slug: &str, token: &str, scopes: &[&str]) -> String {
    let created = create_key(app, slug, token, json!({"name": "script", "scopes": scopes})).await;
    created["key"].as_str().unwrap().to_owned()
}

async fn status(app: &TestApp, method: Method, slug: &str, path: &str, token: &str) -> StatusCode {
    app.on(method, slug, path, Some(token)).send().await.unwrap().status()
}

async fn audit(app: &TestApp, slug: &str, token: &str, query: &str) -> Value {
    json_of(app.on(Method::GET, slug, &format!("/v1/audit-log{query}"), Some(token)), StatusCode::OK).await
}

fn actions(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

on_every_backend! {
    async fn a_key_is_shown_once_and_works_on_its_own_tenant_within_its_scopes(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("keyed").await.token;
        let other = app.signup("elsewhere").await.token;
        let created = create_key(
            &app,
            "keyed",
            &owner,
            json!({"name": "CI", "scopes": ["projects:read", "projects:write"], "rate_limit_per_minute": 600}),
        )
        .await;
        let secret = created["key"].as_str().unwrap().to_owned();
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with(&format!("plk_{}_", id.replace('-', ""))), "{created}");
        assert_eq!(secret.len(), 4 + 32 + 1 + 54, "a 256-bit secret and its 64-bit check");
        assert_eq!(created["prefix"], format!("plk_{}", id.replace('-', "")));
        assert_eq!(created["scopes"], json!(["projects:read", "projects:write"]));
        assert_eq!((created["role"].as_str(), created["rate_limit_per_minute"].as_u64()), (Some("owner"), Some(600)));

        let list: Value =
            app.on(Method::GET, "keyed", "/v1/api-keys", Some(&owner)).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"][0]["id"], created["id"]);
        assert_eq!(list["items"][0]["name"], "CI");
        assert!(list["items"][0]["created_by"].is_string() && list["items"][0].get("key").is_none());
        assert!(!list.to_string().contains(&secret[37..]), "the list never holds the secret: {list}");

        let project = app.project("keyed", &secret, "Made by a script").await;
        assert_eq!(status(&app, Method::GET, "keyed", "/v1/projects", &secret).await, StatusCode::OK);
        let path = format!("/v1/projects/{}", project["id"].as_str().unwrap());
        assert_eq!(status(&app, Method::DELETE, "keyed", &path, &secret).await, StatusCode::NO_CONTENT);

        let res = app.on(Method::GET, "keyed", "/v1/users", Some(&secret)).send().await.unwrap();
        let problem = assert_problem(res, 403, "insufficient_scope").await;
        assert!(problem["detail"].as_str().unwrap().contains("users:read"), "{problem}");
        for (method, path) in [(Method::POST, "/v1/api-keys"), (Method::GET, "/v1/api-keys"), (Method::GET, "/v1/me")] {
            let res = app.on(method.clone(), "keyed", path, Some(&secret)).json(&json!({})).send().await.unwrap();
            assert_problem(res, 403, "forbidden").await;
        }
        // Another tenant's host knows no such key; nor does a key with the right id and a wrong secret.
        let res = app.on(Method::GET, "elsewhere", "/v1/projects", Some(&secret)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        let mut forged = secret.clone();
        forged.replace_range(40..44, if &secret[40..44] == "AAAA" { "BBBB" } else { "AAAA" });
        let res = app.on(Method::GET, "keyed", "/v1/projects", Some(&forged)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        assert_eq!(status(&app, Method::GET, "elsewhere", "/v1/projects", &other).await, StatusCode::OK);

        let gone = app.on(Method::DELETE, "keyed", &format!("/v1/api-keys/{id}"), Some(&owner)).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::NO_CONTENT);
        let res = app.on(Method::GET, "keyed", "/v1/projects", Some(&secret)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        let again = app.on(Method::DELETE, "keyed", &format!("/v1/api-keys/{id}"), Some(&owner)).send().await.unwrap();
        assert_problem(again, 404, "not_found").await;
        let list: Value =
            app.on(Method::GET, "keyed", "/v1/api-keys", Some(&owner)).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"], json!([]), "a revoked key is not listed");
    }

    async fn a_key_never_does_more_than_its_creator_may(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let signed_up = app.signup("ceiling").await;
        let (owner, owner_id) = (signed_up.token, signed_up.user_id);
        let (admin_id, admin) = app.user("ceiling", &owner, "admin@ceiling.test", "admin").await;
        let (_, member) = app.user("ceiling", &owner, "member@ceiling.test", "member").await;
        let res = app.on(Method::POST, "ceiling", "/v1/api-keys", Some(&member))
            .json(&json!({"name": "mine", "scopes": ["projects:read"]}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;

        let key = key_with(&app, "ceiling", &admin, &ALL_SCOPES).await;
        let res = app.on(Method::DELETE, "ceiling", &format!("/v1/users/{owner_id}"), Some(&key)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(status(&app, Method::GET, "ceiling", "/v1/users", &key).await, StatusCode::OK);
        // Changing roles and adding users stay with people, whatever the scopes.
        let res = app.on(Method::PATCH, "ceiling", &format!("/v1/users/{admin_id}"), Some(&key))
            .json(&json!({"role": "owner"}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;
        let res = app.on(Method::POST, "ceiling", "/v1/invitations", Some(&key))
            .json(&json!({"email": "new@ceiling.test", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "forbidden").await;

        // Demoting the creator lowers the key for good: promoting them back does not raise it.
        let demote = |role: &'static str| {
            app.on(Method::PATCH, "ceiling", &format!("/v1/users/{admin_id}"), Some(&owner)).json(&json!({"role": role})).send()
        };
        assert_eq!(demote("member").await.unwrap().status(), StatusCode::OK);
        let res = app.on(Method::GET, "ceiling", "/v1/users", Some(&key)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(demote("admin").await.unwrap().status(), StatusCode::OK);
        let res = app.on(Method::GET, "ceiling", "/v1/users", Some(&key)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(status(&app, Method::GET, "ceiling", "/v1/projects", &key).await, StatusCode::OK);
        // The key is the tenant's: removing its creator does not end it.
        let res = app.on(Method::DELETE, "ceiling", &format!("/v1/users/{admin_id}"), Some(&owner)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(status(&app, Method::GET, "ceiling", "/v1/projects", &key).await, StatusCode::OK);
        let list: Value =
            app.on(Method::GET, "ceiling", "/v1/api-keys", Some(&owner)).send().await.unwrap().json().await.unwrap();
        assert_eq!((list["items"][0]["created_by"].clone(), list["items"][0]["role"].clone()), (Value::Null, json!("member")));
    }

    async fn a_key_with_its_own_limit_is_refused_past_it_and_its_headers_say_so(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("PLINTH_QUOTA_FREE", "1000")]).await;
        let owner = app.signup("metered").await.token;
        let limited = create_key(
            &app,
            "metered",
            &owner,
            json!({"name": "slow", "scopes": ["projects:read"], "rate_limit_per_minute": 3}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let free = key_with(&app, "metered", &owner, &["projects:read"]).await;
        for remaining in [2, 1, 0] {
            let res = app.on(Method::GET, "metered", "/v1/projects", Some(&limited)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"api_key\";q=3;w=60"));
            let value = header(&res, "ratelimit").unwrap();
            assert!(value.starts_with(&format!("\"api_key\";r={remaining};t=")), "{value}");
        }
        let res = app.on(Method::GET, "metered", "/v1/projects", Some(&limited)).send().await.unwrap();
        assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"api_key\";q=3;w=60"));
        assert!(header(&res, "retry-after").is_some());
        assert_problem(res, 429, "rate_limited").await;
        // Its tenant's quota, and its other keys, are untouched by one key's limit.
        let res = app.on(Method::GET, "metered", "/v1/projects", Some(&free)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"tenant\";q=1000;w=60"));
        assert_eq!(status(&app, Method::GET, "metered", "/v1/projects", &owner).await, StatusCode::OK);
    }

    async fn every_change_is_in_the_audit_log_and_the_chain_verifies(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("audited").await.token;
        let (member_id, member) = app.user("audited", &owner, "member@audited.test", "member").await;
        let project = app.project("audited", &owner, "Ledger");
        let project = project.await;
        let pid = project["id"].as_str().unwrap();
        let rename = app.on(Method::PATCH, "audited", &format!("/v1/projects/{pid}"), Some(&owner));
        assert_eq!(rename.json(&json!({"name": "Ledger 2"})).send().await.unwrap().status(), StatusCode::OK);
        let wrong = app
            .on(Method::POST, "audited", "/v1/auth/login", None)
            .header("user-agent", "curious/1.0")
            .json(&json!({"email": "member@audited.test", "password": "not the password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let key = create_key(&app, "audited", &owner, json!({"name": "auditor", "scopes": ["audit:read"]})).await;
        let secret = key["key"].as_str().unwrap().to_owned();
        let del = app.on(Method::DELETE, "audited", &format!("/v1/projects/{pid}"), Some(&owner)).header("x-request-id", "req-delete-1");
        assert_eq!(del.send().await.unwrap().status(), StatusCode::NO_CONTENT);

        let page = audit(&app, "audited", &owner, "").await;
        assert_eq!(
            actions(&page),
            [
                "project.deleted",
                "api_key.created",
                "user.sign_in_failed",
                "project.updated",
                "project.created",
                "user.signed_in",
                "user.created",
                "user.signed_in",
                "tenant.created",
            ]
        );
        let items = page["items"].as_array().unwrap();
        let deleted = &items[0];
        assert_eq!(deleted["request_id"], "req-delete-1");
        assert_eq!(deleted["target"], json!({"type": "project", "id": pid}));
        assert_eq!(deleted["actor"]["kind"], "user");
        assert_eq!(deleted["actor"]["ip"], "127.0.0.1");
        assert_eq!(items[3]["changes"], json!({"name": "Ledger 2"}));
        let failed = &items[2];
        assert_eq!((failed["actor"]["kind"].as_str(), failed["actor"]["user_agent"].as_str()), (Some("anonymous"), Some("curious/1.0")));
        assert_eq!(failed["target"]["id"], member_id.as_str());
        assert_eq!(items[1]["changes"]["scopes"], json!(["audit:read"]));
        let text = page.to_string();
        for secret_text in [PASSWORD, "not the password", &secret[37..], &owner[..40]] {
            assert!(!text.contains(secret_text), "the log holds no secret: {secret_text}");
        }
        for pair in items.windows(2) {
            assert_eq!(pair[0]["prev_hash"], pair[1]["hash"], "newest first, each linked to the one before");
        }

        // Filters and pages.
        assert_eq!(actions(&audit(&app, "audited", &owner, "?action=project.updated").await), ["project.updated"]);
        assert_eq!(actions(&audit(&app, "audited", &owner, &format!("?target={pid}")).await).len(), 3);
        assert_eq!(actions(&audit(&app, "audited", &owner, &format!("?actor={member_id}")).await), ["user.signed_in"]);
        let first = audit(&app, "audited", &owner, "?limit=4").await;
        assert_eq!(actions(&first).len(), 4);
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = audit(&app, "audited", &owner, &format!("?limit=4&cursor={cursor}")).await;
        assert_eq!(actions(&second), ["project.created", "user.signed_in", "user.created", "user.signed_in"]);
        let future = audit(&app, "audited", &owner, "?since=2999-01-01T00:00:00Z").await;
        assert!(actions(&future).is_empty());
        for bad in [
            "?since=yesterday",
            "?actor=nobody",
            "?until=2020-13-01T00:00:00Z",
            "?action=",
            "?target=%00",
            "?action=a%00b",
            "?until=9999-12-31T23:59:59-01:00",
        ] {
            let res = app.on(Method::GET, "audited", &format!("/v1/audit-log{bad}"), Some(&owner)).send().await.unwrap();
            assert_problem(res, 400, "bad_request").await;
        }

        // Who may read it: owners and admins, and keys with audit:read; never a member.
        let res = app.on(Method::GET, "audited", "/v1/audit-log", Some(&member)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_eq!(status(&app, Method::GET, "audited", "/v1/audit-log", &secret).await, StatusCode::OK);
        let verify = json_of(app.on(Method::GET, "audited", "/v1/audit-log/verify", Some(&secret)), StatusCode::OK).await;
        assert_eq!(verify["valid"], true, "{verify}");
        assert_eq!((verify["entries"].as_u64(), verify["head_seq"].as_u64()), (Some(9), Some(9)), "{verify}");
        assert_eq!(verify["first_problem"], Value::Null);
        let other = app.signup("other-audited").await.token;
        let other_page = audit(&app, "other-audited", &other, "").await;
        assert_eq!(actions(&other_page), ["user.signed_in", "tenant.created"], "no other tenant's entries");
    }

    async fn a_change_refused_by_the_queue_leaves_no_entry(backend: Backend) {
        let app = TestApp::spawn_with(
            backend,
            &[("PLINTH_TENANT_MAX_PENDING_JOBS", "2"), ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")],
        )
        .await;
        // The owner's verification email is the tenant's first pending job; a delivery, its second.
        let owner = app.signup("full").await.token;
        let hook = app
            .on(Method::POST, "full", "/v1/webhooks", Some(&owner))
            .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["project.created"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(hook.status(), StatusCode::CREATED);
        app.project("full", &owner, "Fits").await;
        let res = app.on(Method::POST, "full", "/v1/projects", Some(&owner)).json(&json!({"name": "Overflows"})).send().await.unwrap();
        assert_problem(res, 429, "queue_full").await;
        let created: Vec<String> =
            actions(&audit(&app, "full", &owner, "?action=project.created").await);
        assert_eq!(created.len(), 1, "only the project that was written is recorded");
        let page = audit(&app, "full", &owner, "?action=project.created").await;
        assert_eq!(page["items"][0]["changes"]["name"], "Fits");
    }
}

#[tokio::test]
async fn every_route_names_the_scope_a_key_needs_and_refuses_a_key_without_it() {
    let app = TestApp::spawn(Backend::Memory).await;
    let owner = app.signup("scoped").await.token;
    let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
    let everything = key_with(&app, "scoped", &owner, &ALL_SCOPES).await;
    let mut checked = 0;
    // The tenant routes (the operator's are not a tenant's keys' business).
    for (path, item) in doc["paths"].as_object().unwrap().iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, op) in item.as_object().unwrap() {
            let Some(security) = op["security"].as_array() else { continue };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{id}", "0193a5c8-0000-7000-8000-000000000001");
            let scope = security.iter().find_map(|s| s["apiKey"][0].as_str());
            let description = op["description"].as_str().unwrap_or_default();
            let call = |token: &str| app.on(method.clone(), "scoped", &concrete, Some(token)).json(&json!({})).send();
            match scope {
                Some(scope) => {
                    assert!(description.contains(scope), "{method} {path} says which scope in words");
                    let others: Vec<&str> = ALL_SCOPES.iter().copied().filter(|s| *s != scope).collect();
                    let lacking = key_with(&app, "scoped", &owner, &others).await;
                    let problem = assert_problem(call(&lacking).await.unwrap(), 403, "insufficient_scope").await;
                    assert!(problem["detail"].as_str().unwrap().contains(scope), "{method} {path}: {problem}");
                    let res = call(&everything).await.unwrap();
                    let body: Value = res.json().await.unwrap_or(Value::Null);
                    assert!(
                        !matches!(body["code"].as_str(), Some("insufficient_scope" | "forbidden" | "invalid_token")),
                        "{method} {path} lets a key with {scope} through: {body}"
                    );
                }
                None => {
                    assert!(description.contains("Not for API keys"), "{method} {path} says it is for people");
                    assert_problem(call(&everything).await.unwrap(), 403, "forbidden").await;
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 28, "every authenticated operation was checked: {checked}");
}

async fn last_used(app: &TestApp, owner: &str) -> Value {
    let list: Value =
        app.on(Method::GET, "expiring", "/v1/api-keys", Some(owner)).send().await.unwrap().json().await.unwrap();
    list["items"][0]["last_used_at"].clone()
}

#[tokio::test]
async fn an_expired_key_stops_working_and_the_last_use_is_written_without_a_write_per_request() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_on_clock(Backend::Postgres, &[], clock.clone()).await;
    let owner = app.signup("expiring").await.token;
    let expires = clock.now() + Duration::from_secs(3600);
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    let key = create_key(
        &app,
        "expiring",
        &owner,
        json!({"name": "temp", "scopes": ["projects:read"], "expires_at": expires}),
    )
    .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(status(&app, Method::GET, "expiring", "/v1/projects", &secret).await, StatusCode::OK);
    }
    assert_eq!(last_used(&app, &owner).await, Value::Null, "nothing is written per request");
    app.plinth.flush_key_usage().await;
    assert!(last_used(&app, &owner).await.is_string(), "one flush writes the last use");

    for past in ["2000-01-01T00:00:00Z"] {
        let res = app
            .on(Method::POST, "expiring", "/v1/api-keys", Some(&owner))
            .json(&json!({"name": "late", "scopes": ["projects:read"], "expires_at": past}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 422, "validation_failed").await;
    }
    clock.advance(Duration::from_secs(3601));
    let res = app.on(Method::GET, "expiring", "/v1/projects", Some(&secret)).send().await.unwrap();
    assert_problem(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn bad_key_requests_are_refused_field_by_field_and_change_nothing() {
    let app = TestApp::spawn(Backend::Memory).await;
    let owner = app.signup("picky").await.token;
    for body in [
        json!({"name": "", "scopes": ["projects:read"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["projects:admin"]}),
        json!({"name": "x", "scopes": ["projects:read"], "rate_limit_per_minute": 0}),
        json!({"name": "x", "scopes": ["projects:read"], "rate_limit_per_minute": -1}),
        json!({"name": "x", "scopes": ["projects:read"], "expires_at": "tomorrow"}),
        json!({"name": "x", "scopes": ["projects:read"], "expires_at": "9999-12-31T23:59:59-23:59"}),
        json!({"name": "x", "scopes": ["projects:read"], "expires_at": "2999-01-01T00:00:00Z"}),
        json!({"name": "x", "scopes": "projects:read"}),
        json!({"scopes": ["projects:read"]}),
    ] {
        let res = app.on(Method::POST, "picky", "/v1/api-keys", Some(&owner)).json(&body).send().await.unwrap();
        assert_problem(res, 422, "validation_failed").await;
    }
    let list: Value =
        app.on(Method::GET, "picky", "/v1/api-keys", Some(&owner)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    assert_eq!(actions(&audit(&app, "picky", &owner, "?action=api_key.created").await).len(), 0);
    // Anything spelled like a key but not one is a bad token, never a server error.
    for bad in ["plk_", "plk_zz", "plk_00000000000000000000000000000000_short", &format!("plk_{}", "a".repeat(76))] {
        let res = app.on(Method::GET, "picky", "/v1/projects", Some(bad)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn an_entry_edited_in_the_database_is_reported_by_the_verify_route() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let owner = app.signup("tampered").await.token;
    for name in ["One", "Two", "Three"] {
        app.project("tampered", &owner, name).await;
    }
    let verify = |app: &TestApp| {
        let req = app.on(Method::GET, "tampered", "/v1/audit-log/verify", Some(&owner));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(verify(&app).await["valid"], true);
    let db = app.db.as_ref().unwrap().owner().await;
    db.execute(
        r#"UPDATE audit_log SET changes = '{"name":"Forged"}' WHERE action = 'project.created' AND seq = 4"#,
        &[],
    )
    .await
    .unwrap();
    let report = verify(&app).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_problem"], json!({"seq": 4, "problem": "edited"}), "{report}");
}

#[tokio::test]
async fn what_a_keys_own_limit_refuses_never_spends_its_tenants_quota() {
    let app = TestApp::spawn_with(Backend::Memory, &[("PLINTH_QUOTA_FREE", "12")]).await;
    let owner = app.signup("guarded").await.token;
    let limited = create_key(
        &app,
        "guarded",
        &owner,
        json!({"name": "capped", "scopes": ["projects:read"], "rate_limit_per_minute": 2}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut refused = 0;
    for _ in 0..30 {
        let res = app.on(Method::GET, "guarded", "/v1/projects", Some(&limited)).send().await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(header(&res, "ratelimit-policy").as_deref(), Some("\"api_key\";q=2;w=60"));
            refused += 1;
        }
    }
    assert_eq!(refused, 28);
    assert_eq!(
        status(&app, Method::GET, "guarded", "/v1/projects", &owner).await,
        StatusCode::OK,
        "the tenant still has quota"
    );
}

#[tokio::test]
async fn an_admin_may_not_revoke_an_owners_key_and_a_made_up_key_is_never_looked_up() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use plinth_domain::audit::AuditTrail;
    use plinth_domain::entities::ApiKey;
    use plinth_domain::ids::{ApiKeyId, TenantId};
    use plinth_domain::ports::{ApiKeyRepository, CountCheck, KeyRecord};
    use plinth_domain::values::TokenHash;

    /// Counts lookups, passing everything through.
    struct Counted(Arc<dyn ApiKeyRepository>, Arc<AtomicUsize>);
    #[async_trait::async_trait]
    impl ApiKeyRepository for Counted {
        async fn create(
            &self,
            k: &ApiKey,
            h: &TokenHash,
            c: CountCheck<'_>,
            t: &AuditTrail,
        ) -> plinth_domain::Result<()> {
            self.0.create(k, h, c, t).await
        }
        async fn list(&self, t: TenantId) -> plinth_domain::Result<Vec<ApiKey>> {
            self.0.list(t).await
        }
        async fn lookup(&self, t: TenantId, id: ApiKeyId) -> plinth_domain::Result<Option<KeyRecord>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.lookup(t, id).await
        }
        async fn revoke(
            &self,
            t: TenantId,
            id: ApiKeyId,
            now: time::OffsetDateTime,
            a: &AuditTrail,
        ) -> plinth_domain::Result<bool> {
            self.0.revoke(t, id, now, a).await
        }
        async fn touch(&self, used: &[(TenantId, ApiKeyId, time::OffsetDateTime)]) -> plinth_domain::Result<()> {
            self.0.touch(used).await
        }
    }

    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = lookups.clone();
    let app = TestApp::spawn_adapted(Backend::Memory, &[], move |ports| {
        ports.api_keys = Arc::new(Counted(ports.api_keys.clone(), counter));
    })
    .await;
    let signed_up = app.signup("split").await;
    let owner = signed_up.token;
    let (_, admin) = app.user("split", &owner, "admin@split.test", "admin").await;
    let owners = create_key(&app, "split", &owner, json!({"name": "owner's", "scopes": ["projects:read"]})).await;
    let admins = create_key(&app, "split", &admin, json!({"name": "admin's", "scopes": ["projects:read"]})).await;
    let revoke = |token: &str, key: &Value| {
        app.on(Method::DELETE, "split", &format!("/v1/api-keys/{}", key["id"].as_str().unwrap()), Some(token)).send()
    };
    assert_problem(revoke(&admin, &owners).await.unwrap(), 403, "forbidden").await;
    assert_eq!(revoke(&admin, &admins).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(revoke(&owner, &owners).await.unwrap().status(), StatusCode::NO_CONTENT);

    // A well-formed key this server never issued fails its check before any lookup.
    let real = owners["key"].as_str().unwrap();
    let before = lookups.load(Ordering::SeqCst);
    for n in 0..20 {
        let mut forged = real.to_owned();
        let at = 4 + 32 + 1 + n;
        let swapped = if &forged[at..=at] == "A" { "B" } else { "A" };
        forged.replace_range(at..=at, swapped);
        let res = app.on(Method::GET, "split", "/v1/projects", Some(&forged)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
    }
    assert_eq!(lookups.load(Ordering::SeqCst), before, "no made-up key reached storage");
}
