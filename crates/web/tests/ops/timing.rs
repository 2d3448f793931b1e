//! Where a request's time goes: the opt-in `Server-Timing` header (`PLINTH_SERVER_TIMING`) on
//! every answer, errors included, and the pool-wait, database-call and Redis-command
//! histograms of `/metrics`, labelled only by operation names written in code.

use plinth_testkit::{TestDatabase, redis_prefix, shared_redis_url};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Process, TestApp, slug};

/// A plinth on a database of its own and the shared Redis (under a prefix of its own).
async fn on_services(timing: bool) -> TestApp {
    let redis = shared_redis_url();
    let prefix = redis_prefix();
    let mut vars = vec![("REDIS_URL", redis.as_str()), ("PLINTH_REDIS_PREFIX", prefix.as_str())];
    if timing {
        vars.push(("PLINTH_SERVER_TIMING", "true"));
    }
    TestApp::start(&vars, Some(TestDatabase::new().await)).await
}

/// The `Server-Timing` entries of `res`, by name: `(name, whole entry)`.
fn entries(res: &reqwest::Response) -> Vec<(String, String)> {
    let value = res.headers().get("server-timing").map(|v| v.to_str().unwrap().to_owned());
    let value = value.unwrap_or_else(|| panic!("no Server-Timing on a {} answer", res.status()));
    value.split(", ").map(|e| (e.split(';').next().unwrap().to_owned(), e.to_owned())).collect()
}

fn entry<'a>(entries: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entries.iter().find(|(n, _)| n == name).map(|(_, e)| e.as_str())
}

/// The milliseconds of an entry (`…;dur=1.234`).
fn dur(entry: &str) -> f64 {
    entry.rsplit_once(";dur=").and_then(|(_, d)| d.parse().ok()).unwrap_or_else(|| panic!("no dur in {entry}"))
}

#[tokio::test]
async fn server_timing_is_absent_unless_configured() {
    let app = on_services(false).await;
    let tenant = slug("untimed");
    let s = app.signup(&tenant).await;
    let res = app.on(Method::GET, &tenant, "/v1/projects", Some(&s.token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("server-timing").is_none());
    let res = app.request(Method::GET, "localhost", "/nowhere").send().await.unwrap();
    assert!(res.headers().get("server-timing").is_none());
}

#[tokio::test]
async fn a_list_read_from_the_database_names_its_calls_and_an_l1_hit_names_none() {
    let app = on_services(true).await;
    let tenant = slug("timed");
    let s = app.signup(&tenant).await;
    // The first read fills the caches from PostgreSQL.
    let res = app.on(Method::GET, &tenant, "/v1/projects", Some(&s.token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let first = entries(&res);
    let db = entry(&first, "db").unwrap_or_else(|| panic!("no db entry: {first:?}"));
    assert!(db.starts_with("db;desc=\"") && db.contains(" call"), "{db}");
    assert!(entry(&first, "pool").is_some(), "{first:?}");
    assert!(entry(&first, "gate").is_some(), "{first:?}");
    assert!(entry(&first, "redis").is_some(), "an L2 miss asks Redis: {first:?}");
    assert!(entry(&first, "ser").is_some(), "the page was serialized: {first:?}");
    let total = dur(entry(&first, "total").unwrap());
    assert!(dur(db) > 0.0 && dur(db) <= total, "{first:?}");
    assert_eq!(first.last().map(|(n, _)| n.as_str()), Some("total"));

    // The second is an L1 hit: no database, no pool, no serialization.
    let res = app.on(Method::GET, &tenant, "/v1/projects", Some(&s.token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let second = entries(&res);
    for absent in ["db", "pool", "ser"] {
        assert!(entry(&second, absent).is_none(), "{absent} on an L1 hit: {second:?}");
    }
    let cache = entry(&second, "cache").unwrap_or_else(|| panic!("no cache entry: {second:?}"));
    assert!(cache.contains(" lookup"), "{cache}");
    assert!(entry(&second, "gate").is_some() && entry(&second, "total").is_some(), "{second:?}");
}

#[tokio::test]
async fn error_answers_carry_server_timing_too() {
    let app = on_services(true).await;
    let tenant = slug("timed-errors");
    let s = app.signup(&tenant).await;
    let missing = format!("/v1/projects/{}", uuid::Uuid::now_v7());
    let cases = [
        (app.on(Method::GET, &tenant, "/v1/projects", None), StatusCode::UNAUTHORIZED),
        (app.on(Method::GET, &tenant, &missing, Some(&s.token)), StatusCode::NOT_FOUND),
        (
            app.on(Method::POST, &tenant, "/v1/projects", Some(&s.token)).json(&json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (app.on(Method::GET, "no-such-tenant", "/v1/tenant", None), StatusCode::NOT_FOUND),
        (app.request(Method::GET, "localhost", "/nowhere"), StatusCode::NOT_FOUND),
        (app.request(Method::PUT, "localhost", "/healthz"), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (req, status) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status);
        let e = entries(&res);
        assert!(entry(&e, "total").is_some(), "{status}: {e:?}");
        assert!(
            res.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"),
            "{status} is a problem"
        );
    }
    // Refused by the gate itself (the IP quota): the gate's time is there.
    let app = TestApp::start(&[("PLINTH_SERVER_TIMING", "true"), ("PLINTH_IP_QUOTA", "1")], None).await;
    let _ = app.request(Method::GET, "demo.localhost", "/v1/tenant").send().await.unwrap();
    let res = app.request(Method::GET, "demo.localhost", "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let e = entries(&res);
    assert!(entry(&e, "gate").is_some() && entry(&e, "total").is_some(), "{e:?}");
}

/// Every `op` label value of `name` in the scrape.
fn ops(text: &str, name: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}_count{{")))
        .filter_map(|l| l.split("op=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn metrics_time_pool_waits_database_calls_and_redis_commands_by_operation() {
    let db = TestDatabase::new().await;
    let redis = shared_redis_url();
    let prefix = redis_prefix();
    let app = Process::start(&[
        ("DATABASE_URL", &db.app_url),
        ("PLINTH_JWT_SECRET", crate::helpers::JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", crate::helpers::ENCRYPTION_KEY),
        ("REDIS_URL", &redis),
        ("PLINTH_REDIS_PREFIX", &prefix),
        // Every request asks the shared limiter.
        ("PLINTH_LIMIT_LEASE_PERCENT", "0"),
    ])
    .await;
    let tenant = slug("timed-metrics");
    let s = crate::helpers::signup(&app.client, &app.address, &tenant).await;
    let host = format!("{tenant}.localhost");
    for _ in 0..2 {
        let res = app.request(Method::GET, &host, "/v1/projects").bearer_auth(&s.token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .request(Method::POST, &host, "/v1/projects")
        .bearer_auth(&s.token)
        .json(&json!({"name": "Timed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let m = app.scrape().await;
    assert!(m.value("db_pool_wait_seconds_count", &[]) >= 3.0, "{}", m.text);
    assert!(m.get("db_pool_wait_seconds_bucket", &[("le", "0.0001")]).is_some(), "sub-millisecond buckets");
    let db_ops = ops(&m.text, "db_query_duration_seconds");
    for op in ["tenants.create", "projects.list", "projects.create"] {
        assert!(db_ops.contains(op), "no db op {op}: {db_ops:?}");
    }
    assert_eq!(
        m.value("db_query_duration_seconds_count", &[("op", "projects.list")]),
        1.0,
        "the second list was cached"
    );
    assert_eq!(m.value("db_query_duration_seconds_count", &[("op", "projects.create")]), 1.0);
    let create = [("op", "projects.create"), ("le", "+Inf")];
    assert_eq!(m.value("db_query_duration_seconds_bucket", &create), 1.0);
    assert!(m.value("db_query_duration_seconds_sum", &[("op", "projects.create")]) > 0.0);
    let redis_ops = ops(&m.text, "redis_command_duration_seconds");
    for op in ["cache.get", "cache.set", "limiter.check", "generation.get", "generation.bump"] {
        assert!(redis_ops.contains(op), "no redis op {op}: {redis_ops:?}");
    }
    assert!(m.value("redis_command_duration_seconds_count", &[("op", "limiter.check")]) >= 3.0);
    assert!(m.get("redis_command_duration_seconds_bucket", &[("op", "cache.get"), ("le", "0.0001")]).is_some());

    // Labels are names from code: never the tenant, its id, a key or a statement.
    const KNOWN: &[&str] = &[
        "ping",
        "idempotency.lookup",
        "idempotency.record",
        "jobs.claim",
        "jobs.release",
        "jobs.rescue",
        "jobs.stats",
        "jobs.prune",
        "jobs.discard",
        "deliveries.load",
        "deliveries.record",
        "tenants.create",
        "tenants.find",
        "users.create",
        "users.get",
        "users.find_by_email",
        "users.list",
        "users.update_role",
        "users.delete",
        "webhooks.create",
        "webhooks.list",
        "webhooks.delete",
        "webhooks.deliveries",
        "projects.list",
        "projects.get",
        "projects.create",
        "projects.rename",
        "projects.delete",
        "sessions.create",
        "sessions.spend",
        "sessions.marker",
        "sessions.list",
        "sessions.end",
        "sessions.end_all",
        "sessions.change_password",
        "sessions.prune",
        "cache.get",
        "cache.set",
        "cache.delete",
        "generation.get",
        "generation.bump",
        "limiter.check",
    ];
    for op in db_ops.iter().chain(&redis_ops) {
        assert!(KNOWN.contains(&op.as_str()), "an unknown op label {op}");
    }
    for secret in [tenant.as_str(), s.tenant_id.as_str(), prefix.as_str(), "SELECT", "INSERT"] {
        assert!(!m.text.contains(secret), "{secret} shows in the metrics:\n{}", m.text);
    }
}
