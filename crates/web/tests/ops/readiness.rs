//! `/readyz` checks each configured dependency, at once and briefly, names the ones that fail,
//! and recovers with them; `/healthz` touches nothing.

use std::time::{Duration, Instant};

use plinth_testkit::{APP_PASSWORD, PrivateCluster, PrivateRedis, TestDatabase, redis_prefix};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp};

/// `/readyz` as (status, body), timed: it must answer within its checks' timeout.
async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let started = Instant::now();
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "/readyz took {:?}", started.elapsed());
    let status = res.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(res.headers().get("retry-after").is_some());
    }
    (status, res.json().await.unwrap())
}

/// Polls `/readyz` until it answers 200 (within 20 s).
async fn until_ready(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(app).await;
        if status == StatusCode::OK {
            return body;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "/readyz did not recover: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_names_the_database_while_postgres_is_down_and_is_ready_once_it_is_back() {
    let cluster = PrivateCluster::start();
    let admin = plinth_testkit::connect(&cluster.url("postgres", None, "postgres")).await;
    admin.batch_execute("CREATE DATABASE plinth").await.expect("create database");
    let owner_url = cluster.url("postgres", None, "plinth");
    plinth_postgres::migrate::migrate(&owner_url, Some(APP_PASSWORD)).await.expect("migrate");
    let app_url = cluster.url("plinth_app", Some(APP_PASSWORD), "plinth");
    let app = TestApp::start(
        &[
            ("DATABASE_URL", &app_url),
            ("PLINTH_DATABASE_OWNER_URL", &owner_url),
            ("PLINTH_JWT_SECRET", JWT_SECRET),
            ("PLINTH_DB_POOL_TIMEOUT_MS", "500"),
        ],
        None,
    )
    .await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ready", "checks": {"database": "ok"}}));

    cluster.stop();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "service_unavailable");
    assert_eq!(body["status"], 503);
    assert!(body["detail"].as_str().unwrap().contains("database"), "{body}");
    assert!(!body["detail"].as_str().unwrap().contains("redis"), "{body}");
    assert_eq!(body["checks"]["database"], "unavailable", "{body}");
    // Liveness touches no dependency.
    let res = app.request(Method::GET, "localhost", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    cluster.resume();
    let body = until_ready(&app).await;
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn readyz_names_redis_while_it_is_down_and_is_ready_once_it_is_back() {
    let mut redis = PrivateRedis::start();
    let db = TestDatabase::new().await;
    let prefix = redis_prefix();
    let app = TestApp::start(&[("REDIS_URL", &redis.url()), ("PLINTH_REDIS_PREFIX", &prefix)], Some(db)).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ready", "checks": {"database": "ok", "redis": "ok"}}));

    redis.kill();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("redis") && !detail.contains("database"), "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert!(["unavailable", "timeout"].contains(&body["checks"]["redis"].as_str().unwrap()), "{body}");
    // The API itself degrades rather than fails: Redis is a cache and a shared limiter.
    let res = app.request(Method::GET, "localhost", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    redis.restart();
    let body = until_ready(&app).await;
    assert_eq!(body["checks"], json!({"database": "ok", "redis": "ok"}));
}

#[tokio::test]
async fn readyz_in_embedded_mode_has_nothing_to_check() {
    let app = TestApp::start(&[], None).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ready", "checks": {}}));
}
