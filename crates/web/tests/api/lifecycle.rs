//! A tenant's lifecycle: the operator's API (absent when unset, refusing without its token),
//! suspension (every route refused, jobs waiting, nothing failed), deletion (by the owner with
//! the slug, or the operator), restoration within the grace, and the purge after it, which
//! leaves nothing of the tenant behind and touches no other tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use plinth_domain::clock::ManualClock;
use plinth_domain::values::OperatorTokens;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, json_of};
use crate::on_every_backend;

/// An operator token and the setting that admits it.
fn operator() -> (String, String) {
    OperatorTokens::issue().expect("the OS generator")
}

/// A request to the operator API on the platform host.
fn admin(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
    let r = app.request(method, "localhost", &format!("/admin/v1{path}"));
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// A webhook receiver on 127.0.0.1 answering 200, counting what it gets.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let s = s.clone();
        App::new().default_service(web::to(move || {
            s.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().finish() }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

/// Works every due job; how many there were.
async fn work_all(app: &TestApp) -> usize {
    let mut n = 0;
    while app.plinth.work_one("test").await.expect("a job works") {
        n += 1;
    }
    n
}

on_every_backend! {
    async fn the_operator_api_is_absent_when_no_token_is_configured(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.signup("acme").await;
        let (token, _) = operator();
        for t in [None, Some(token.as_str())] {
            assert_problem(admin(&app, Method::GET, "/tenants", t).send().await.unwrap(), 404, "not_found").await;
            assert_problem(admin(&app, Method::POST, "/tenants/acme/suspend", t).json(&json!({})).send().await.unwrap(), 404, "not_found").await;
        }
        // Still listed in the document, under its own tag.
        let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["paths"]["/admin/v1/tenants/{slug}/suspend"]["post"]["tags"][0], "operator");
    }

    async fn the_operator_api_refuses_without_its_token_and_only_answers_on_the_platform_host(backend: Backend) {
        let (token, hash) = operator();
        let (other, other_hash) = operator();
        let hashes = format!("{hash},{other_hash}");
        let app = TestApp::spawn_with(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hashes), ("PLINTH_IP_QUOTA", "3")]).await;
        let owner = app.signup("acme").await.token;
        assert_problem(admin(&app, Method::GET, "/tenants", None).send().await.unwrap(), 401, "unauthorized").await;
        assert_problem(admin(&app, Method::GET, "/tenants", Some(&owner)).send().await.unwrap(), 401, "invalid_token").await;
        assert_problem(admin(&app, Method::GET, "/tenants", Some(&hash)).send().await.unwrap(), 401, "invalid_token").await;
        // On a tenant's host the operator API is not there, token or not.
        let res = app.on(Method::GET, "acme", "/admin/v1/tenants", Some(&token)).send().await.unwrap();
        assert_problem(res, 404, "not_found").await;
        // Both configured tokens work; operators are not counted by the IP quota.
        for t in [&token, &other, &token, &other, &token] {
            let list = json_of(admin(&app, Method::GET, "/tenants", Some(t)), StatusCode::OK).await;
            assert_eq!(list["items"][0]["slug"], "acme");
            assert_eq!(list["items"][0]["state"], "active");
        }
        // Guesses are: past three failures this minute, refused before they are checked.
        assert_problem(admin(&app, Method::GET, "/tenants", Some("plop_guess")).send().await.unwrap(), 429, "rate_limited").await;
        // A malformed filter is a 400 that changes nothing.
        let res = admin(&app, Method::GET, "/tenants?state=gone", Some(&token)).send().await.unwrap();
        assert_problem(res, 400, "bad_request").await;
    }

    async fn the_operator_lists_shows_and_changes_plans(backend: Backend) {
        let (token, hash) = operator();
        let app = TestApp::spawn_with(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hash), ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
        for slug in ["bravo", "alpha", "charlie"] {
            app.signup(slug).await;
        }
        let owner = app.signup("delta").await.token;
        let (url, _) = receiver().await;
        let res = app.on(Method::POST, "delta", "/v1/webhooks", Some(&owner))
            .json(&json!({"url": url, "events": ["tenant.plan_changed"]})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let hook: Value = res.json().await.unwrap();

        let page = json_of(admin(&app, Method::GET, "/tenants?limit=2", Some(&token)), StatusCode::OK).await;
        let slugs: Vec<&str> = page["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["alpha", "bravo"]);
        assert_eq!(page["next_cursor"], "bravo");
        let rest = json_of(admin(&app, Method::GET, "/tenants?limit=2&after=bravo", Some(&token)), StatusCode::OK).await;
        let slugs: Vec<&str> = rest["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["charlie", "delta"]);

        let shown = json_of(admin(&app, Method::GET, "/tenants/delta", Some(&token)), StatusCode::OK).await;
        assert_eq!((shown["plan"].as_str(), shown["usage"]["members"].as_u64(), shown["usage"]["webhooks"].as_u64()), (Some("free"), Some(1), Some(1)));
        let res = admin(&app, Method::GET, "/tenants/nobody", Some(&token)).send().await.unwrap();
        assert_problem(res, 404, "tenant_not_found").await;

        let res = admin(&app, Method::PUT, "/tenants/delta/plan", Some(&token)).json(&json!({"plan": "platinum"})).send().await.unwrap();
        assert_problem(res, 422, "validation_failed").await;
        let moved = json_of(admin(&app, Method::PUT, "/tenants/delta/plan", Some(&token)).json(&json!({"plan": "pro"})), StatusCode::OK).await;
        assert_eq!(moved["plan"], "pro");
        let tenant = json_of(app.on(Method::GET, "delta", "/v1/tenant", None), StatusCode::OK).await;
        assert_eq!(tenant["plan"], "pro");
        // The change went to the tenant's webhook as an event, and into its audit log as the operator's.
        let path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
        let deliveries = json_of(app.on(Method::GET, "delta", &path, Some(&owner)), StatusCode::OK).await;
        assert_eq!(deliveries["items"][0]["event"], "tenant.plan_changed");
        let log = json_of(app.on(Method::GET, "delta", "/v1/audit-log?action=tenant.plan_changed", Some(&owner)), StatusCode::OK).await;
        assert_eq!(log["items"][0]["actor"]["kind"], "operator", "{log}");
    }

    async fn a_suspended_tenant_is_refused_everywhere_and_its_jobs_wait_until_it_resumes(backend: Backend) {
        let (token, hash) = operator();
        let app = TestApp::spawn_with(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hash), ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
        let owner = app.signup("acme").await.token;
        let other = app.signup("other").await.token;
        let (url, received) = receiver().await;
        let res = app.on(Method::POST, "acme", "/v1/webhooks", Some(&owner))
            .json(&json!({"url": url, "events": ["project.created", "tenant.suspended", "tenant.resumed"]})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let key: Value = app.on(Method::POST, "acme", "/v1/api-keys", Some(&owner))
            .json(&json!({"name": "script", "scopes": ["projects:read"]})).send().await.unwrap().json().await.unwrap();
        let key = key["key"].as_str().unwrap().to_owned();
        app.project("acme", &owner, "before").await;
        app.project("other", &other, "theirs").await;

        let suspended = json_of(admin(&app, Method::POST, "/tenants/acme/suspend", Some(&token)).json(&json!({"reason": "payment overdue"})), StatusCode::OK).await;
        assert_eq!(suspended["state"], "suspended");
        assert!(suspended["suspended_at"].is_string());
        // Every route of its host, whoever asks.
        for (method, path, credential) in [
            (Method::GET, "/v1/projects", Some(owner.as_str())),
            (Method::GET, "/v1/projects", Some(key.as_str())),
            (Method::GET, "/v1/tenant", None),
            (Method::GET, "/v1/me", Some(owner.as_str())),
            (Method::POST, "/v1/projects", Some(owner.as_str())),
        ] {
            let res = app.on(method.clone(), "acme", path, credential).json(&json!({"name": "x"})).send().await.unwrap();
            assert_problem(res, 403, "tenant_suspended").await;
        }
        let res = app.on(Method::POST, "acme", "/v1/auth/login", None)
            .json(&json!({"email": "owner@acme.test", "password": PASSWORD})).send().await.unwrap();
        assert_problem(res, 403, "tenant_suspended").await;
        // Its deliveries wait (the other tenant's jobs, if any, go).
        work_all(&app).await;
        assert_eq!(received.load(Ordering::SeqCst), 0, "nothing of the suspended tenant went out");
        // Suspending again changes nothing.
        let again = json_of(admin(&app, Method::POST, "/tenants/acme/suspend", Some(&token)).json(&json!({})), StatusCode::OK).await;
        assert_eq!(again["suspended_at"], suspended["suspended_at"]);

        let resumed = json_of(admin(&app, Method::POST, "/tenants/acme/resume", Some(&token)), StatusCode::OK).await;
        assert_eq!(resumed["state"], "active");
        assert!(resumed.get("suspended_at").is_none());
        // Everything works again, and the waiting deliveries go: the project, the suspension, the resumption.
        assert_eq!(json_of(app.on(Method::GET, "acme", "/v1/projects", Some(&key)), StatusCode::OK).await["items"].as_array().unwrap().len(), 1);
        work_all(&app).await;
        assert_eq!(received.load(Ordering::SeqCst), 3);
        let log = json_of(app.on(Method::GET, "acme", "/v1/audit-log", Some(&owner)), StatusCode::OK).await;
        let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(&actions[..2], ["tenant.resumed", "tenant.suspended"]);
        assert_eq!(log["items"][1]["changes"]["reason"], "payment overdue");
        // The operator's own address and tools are not the tenant's business.
        assert_eq!(log["items"][1]["actor"], json!({"kind": "operator", "id": null, "ip": null, "user_agent": null}), "{log}");
        // A reason that could disguise itself in the log is refused, changing nothing.
        for reason in ["x\u{202e}y", "a\nb", "   ", &"r".repeat(501)] {
            let res = admin(&app, Method::POST, "/tenants/acme/suspend", Some(&token)).json(&json!({"reason": reason})).send().await.unwrap();
            assert_problem(res, 422, "validation_failed").await;
        }
        assert_eq!(json_of(admin(&app, Method::GET, "/tenants/acme", Some(&token)), StatusCode::OK).await["state"], "active");
    }

    async fn the_operator_exports_a_suspended_or_deleted_tenant(backend: Backend) {
        let (token, hash) = operator();
        let app = TestApp::spawn_with(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hash)]).await;
        let owner = app.signup("exported").await.token;
        app.project("exported", &owner, "kept").await;
        let slug = plinth_domain::values::Slug::parse("exported").unwrap();
        app.plinth.suspend(&slug, None).await.unwrap();
        for _ in 0..2 {
            let res = admin(&app, Method::GET, "/tenants/exported/export", Some(&token)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(crate::helpers::header(&res, "content-type").as_deref(), Some("application/x-ndjson"));
            let body = res.text().await.unwrap();
            let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines[0]["type"], "tenant");
            assert!(lines.iter().any(|l| l["type"] == "project" && l["data"]["name"] == "kept"), "{body}");
            assert_eq!(lines.last().unwrap()["type"], "end");
            app.plinth.delete_tenant(&slug).await.unwrap();
        }
        assert_problem(admin(&app, Method::GET, "/tenants/exported/export", None).send().await.unwrap(), 401, "unauthorized").await;
        assert_problem(admin(&app, Method::GET, "/tenants/nobody/export", Some(&token)).send().await.unwrap(), 404, "tenant_not_found").await;
        // Recorded in the tenant's log, by the operator.
        app.plinth.restore(&slug).await.unwrap();
        app.plinth.resume(&slug).await.unwrap();
        let log = json_of(app.on(Method::GET, "exported", "/v1/audit-log?action=tenant.exported", Some(&owner)), StatusCode::OK).await;
        let kinds: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["actor"]["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["operator", "operator"]);
    }

    async fn a_deletion_and_a_suspension_racing_are_each_kept_when_acknowledged(backend: Backend) {
        let (token, hash) = operator();
        let app = TestApp::spawn_with(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hash)]).await;
        let owner = app.signup("racy").await.token;
        let slug = plinth_domain::values::Slug::parse("racy").unwrap();
        for round in 0..10 {
            let delete = app.on(Method::DELETE, "racy", "/v1/tenant", Some(&owner)).json(&json!({"confirm": "racy"})).send();
            let suspend = admin(&app, Method::POST, "/tenants/racy/suspend", Some(&token)).json(&json!({})).send();
            let (deleted, suspended) = tokio::join!(delete, suspend);
            assert_eq!(suspended.unwrap().status(), StatusCode::OK);
            // The deletion is refused if the suspension came first; if it was acknowledged, both hold.
            let deleted = deleted.unwrap().status();
            assert!([StatusCode::ACCEPTED, StatusCode::FORBIDDEN].contains(&deleted), "round {round}: {deleted}");
            let shown = json_of(admin(&app, Method::GET, "/tenants/racy", Some(&token)), StatusCode::OK).await;
            assert!(shown["suspended_at"].is_string(), "round {round}: the suspension was lost: {shown}");
            assert_eq!(shown["deleted_at"].is_string(), deleted == StatusCode::ACCEPTED, "round {round}: {shown}");
            app.plinth.restore(&slug).await.unwrap();
            app.plinth.resume(&slug).await.unwrap();
        }
    }

    async fn the_owner_deletes_the_tenant_with_its_slug_and_the_operator_can_restore_it_within_the_grace(backend: Backend) {
        let (token, hash) = operator();
        let clock = Arc::new(ManualClock::new());
        let app = TestApp::spawn_on_clock(backend, &[("PLINTH_OPERATOR_TOKEN_HASHES", &hash), ("PLINTH_TENANT_DELETE_GRACE_DAYS", "7")], clock.clone()).await;
        let owner = app.signup("acme").await.token;
        let (_, admin_token) = app.user("acme", &owner, "admin@acme.test", "admin").await;
        app.project("acme", &owner, "keep me").await;
        let key: Value = app.on(Method::POST, "acme", "/v1/api-keys", Some(&owner))
            .json(&json!({"name": "script", "scopes": ["projects:read", "projects:write", "users:write"]})).send().await.unwrap().json().await.unwrap();
        let key = key["key"].as_str().unwrap().to_owned();

        let delete = |token: &str, confirm: &str| app.on(Method::DELETE, "acme", "/v1/tenant", Some(token)).json(&json!({"confirm": confirm}));
        assert_problem(delete(&owner, "ACME").send().await.unwrap(), 422, "validation_failed").await;
        assert_problem(delete(&admin_token, "acme").send().await.unwrap(), 403, "forbidden").await;
        assert_problem(delete(&key, "acme").send().await.unwrap(), 403, "forbidden").await;
        let res = app.on(Method::DELETE, "acme", "/v1/tenant", Some(&owner)).json(&json!({"confirm": "acme", "extra": 1})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
        assert_eq!(json_of(app.on(Method::GET, "acme", "/v1/tenant", None), StatusCode::OK).await["slug"], "acme", "nothing changed");

        let deleted = json_of(delete(&owner, "acme"), StatusCode::ACCEPTED).await;
        assert_eq!(deleted["state"], "deleted");
        let (at, purge) = (deleted["deleted_at"].as_str().unwrap(), deleted["purge_after"].as_str().unwrap());
        let parse = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(parse(purge) - parse(at), time::Duration::days(7));
        for (method, path, credential) in [
            (Method::GET, "/v1/tenant", None),
            (Method::GET, "/v1/projects", Some(owner.as_str())),
            (Method::GET, "/v1/projects", Some(key.as_str())),
        ] {
            assert_problem(app.on(method, "acme", path, credential).send().await.unwrap(), 404, "tenant_not_found").await;
        }
        // The slug stays taken through the grace.
        let res = app.request(Method::POST, "localhost", "/v1/signup")
            .json(&json!({"tenant_slug": "acme", "tenant_name": "Acme again", "email": "x@acme.test", "password": PASSWORD}))
            .send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        // Not due yet: the purge leaves it.
        clock.advance(Duration::from_secs(6 * 86_400));
        assert_eq!(app.plinth.purge_deleted_tenants().await.unwrap().tenants, 0);
        let restored = json_of(admin(&app, Method::POST, "/tenants/acme/restore", Some(&token)), StatusCode::OK).await;
        assert_eq!(restored["state"], "active");
        // Its keys and its people work again, its data intact (the owner's access token has
        // expired meanwhile on this clock: they sign in again).
        let projects = json_of(app.on(Method::GET, "acme", "/v1/projects", Some(&key)), StatusCode::OK).await;
        assert_eq!(projects["items"][0]["name"], "keep me");
        let owner = app.login("acme", "owner@acme.test").await;
        let log = json_of(app.on(Method::GET, "acme", "/v1/audit-log", Some(&owner)), StatusCode::OK).await;
        let lifecycle: Vec<&Value> =
            log["items"].as_array().unwrap().iter().filter(|e| e["action"].as_str().unwrap().starts_with("tenant.")).collect();
        let actions: Vec<&str> = lifecycle.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(&actions[..2], ["tenant.restored", "tenant.deleted"]);
        assert_eq!((lifecycle[0]["actor"]["kind"].as_str(), lifecycle[1]["actor"]["kind"].as_str()), (Some("operator"), Some("user")));
        assert_eq!(lifecycle[1]["changes"]["by"], "owner");

        // Deleted again by the operator and left past its grace: no longer restorable, erased,
        // then gone for good.
        json_of(admin(&app, Method::DELETE, "/tenants/acme", Some(&token)), StatusCode::OK).await;
        clock.advance(Duration::from_secs(7 * 86_400 + 1));
        let res = admin(&app, Method::POST, "/tenants/acme/restore", Some(&token)).send().await.unwrap();
        assert_problem(res, 409, "conflict").await;
        let purged = app.plinth.purge_deleted_tenants().await.unwrap();
        assert_eq!(purged.tenants, 1);
        assert!(purged.rows > 3, "{purged:?}");
        assert_eq!(app.plinth.purge_deleted_tenants().await.unwrap().tenants, 0, "nothing left to purge");
        assert_problem(admin(&app, Method::POST, "/tenants/acme/restore", Some(&token)).send().await.unwrap(), 404, "tenant_not_found").await;
        assert_problem(app.on(Method::GET, "acme", "/v1/tenant", None).send().await.unwrap(), 404, "tenant_not_found").await;
        // The slug is free again; the new tenant starts empty.
        let fresh = app.signup("acme").await.token;
        let projects = json_of(app.on(Method::GET, "acme", "/v1/projects", Some(&fresh)), StatusCode::OK).await;
        assert_eq!(projects["items"], json!([]));
        assert_problem(app.on(Method::GET, "acme", "/v1/projects", Some(&owner)).send().await.unwrap(), 401, "invalid_token").await;
    }
}

/// Gives tenant `slug` a row in every table that holds tenant data, and state in Redis: users,
/// sessions, a project written with an idempotency key, a webhook with a delivery, an
/// invitation (an email and its job), an API key with its own quota, audit entries, cached
/// pages and rate limiter state.
async fn populate(app: &TestApp, slug: &str, hook: &str) -> String {
    let owner = app.signup(slug).await.token;
    app.user(slug, &owner, &format!("admin@{slug}.test"), "admin").await;
    let res = app
        .on(Method::POST, slug, "/v1/webhooks", Some(&owner))
        .json(&json!({"url": hook, "events": ["project.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .on(Method::POST, slug, "/v1/projects", Some(&owner))
        .header("idempotency-key", "k1")
        .json(&json!({"name": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .on(Method::POST, slug, "/v1/invitations", Some(&owner))
        .json(&json!({"email": format!("new@{slug}.test"), "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let key: Value = app
        .on(Method::POST, slug, "/v1/api-keys", Some(&owner))
        .json(&json!({"name": "k", "scopes": ["projects:read"], "rate_limit_per_minute": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap();
    for credential in [owner.as_str(), key] {
        assert_eq!(
            app.on(Method::GET, slug, "/v1/projects", Some(credential)).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    owner
}

/// Rows of `tenant` in every table: those with a `tenant_id`, the job queue's (by queue), the
/// tenant's own.
async fn rows_of(db: &plinth_testkit::PgClient, tenant: &str) -> Vec<(String, i64)> {
    let tables = db
        .query("SELECT table_name::text FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1", &[])
        .await
        .unwrap();
    let mut counts = Vec::new();
    for t in tables {
        let table: String = t.get(0);
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table} WHERE tenant_id::text = $1"), &[&tenant])
            .await
            .unwrap()
            .get(0);
        counts.push((table, n));
    }
    for (table, column) in [("jobs", "queue"), ("job_queues", "queue"), ("tenants", "id::text")] {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"), &[&tenant])
            .await
            .unwrap()
            .get(0);
        counts.push((table.to_owned(), n));
    }
    counts
}

#[tokio::test]
async fn the_purge_leaves_nothing_of_the_tenant_in_postgres_or_redis_and_touches_no_other_tenant() {
    let redis = plinth_testkit::shared_redis_url();
    let prefix = plinth_testkit::redis_prefix();
    let clock = Arc::new(ManualClock::new());
    let db = plinth_testkit::TestDatabase::new().await;
    let vars = [
        ("REDIS_URL", redis.as_str()),
        ("PLINTH_REDIS_PREFIX", prefix.as_str()),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
    ];
    let app = TestApp::start_wired(&vars, Some(db), clock.clone(), |_| {}).await;
    let (hook, _) = receiver().await;
    populate(&app, "gone", &hook).await;
    populate(&app, "stays", &hook).await;
    let id = |slug: &'static str| {
        let app = &app;
        async move {
            json_of(app.on(Method::GET, slug, "/v1/tenant", None), StatusCode::OK).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (gone, stays) = (id("gone").await, id("stays").await);
    let owner = app.db.as_ref().unwrap().owner().await;

    // The purge's list of tables is every table with a tenant column.
    let listed: Vec<String> = owner
        .query("SELECT table_name FROM plinth_tenant_tables() WHERE tenant_column = 'tenant_id' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let with_column: Vec<String> = rows_of(&owner, &gone)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !["jobs", "job_queues", "tenants"].contains(&t.as_str()))
        .collect();
    assert_eq!(listed, with_column, "plinth_tenant_tables() must name every table with a tenant_id");
    let before = rows_of(&owner, &gone).await;
    let empty: Vec<&str> = before.iter().filter(|(_, n)| *n == 0).map(|(t, _)| t.as_str()).collect();
    assert!(empty.is_empty(), "the test gives the tenant a row in every table; none in {empty:?}");
    let theirs = rows_of(&owner, &stays).await;

    let mut conn = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let pattern = format!("{prefix}*");
        async move { redis::cmd("KEYS").arg(pattern).query_async::<Vec<String>>(&mut conn).await.unwrap() }
    };
    assert!(keys(&mut conn).await.iter().any(|k| k.contains(&gone)), "the tenant has keys in Redis");

    app.plinth.delete_tenant(&plinth_domain::values::Slug::parse("gone").unwrap()).await.unwrap();
    let at_deletion: u64 = rows_of(&owner, &gone).await.iter().map(|(_, n)| *n as u64).sum();
    clock.advance(Duration::from_secs(30 * 86_400 + 1));
    let purged = app.plinth.purge_deleted_tenants().await.unwrap();
    assert_eq!(purged.tenants, 1);

    let left: Vec<(String, i64)> = rows_of(&owner, &gone).await.into_iter().filter(|(_, n)| *n > 0).collect();
    assert!(left.is_empty(), "rows of the purged tenant remain: {left:?}");
    assert_eq!(rows_of(&owner, &stays).await, theirs, "the other tenant's rows are untouched");
    let keys = keys(&mut conn).await;
    assert!(
        !keys.iter().any(|k| k.contains(&gone) || k.ends_with(":tenant:gone")),
        "Redis keys of the purged tenant remain: {keys:?}"
    );
    assert!(keys.iter().any(|k| k.contains(&stays)), "the other tenant's keys are untouched");
    assert_eq!(purged.rows, at_deletion, "every row counted once");
}
