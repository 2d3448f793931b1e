//! PostgreSQL blinks: connections killed, the server stopped and started. Clients get 503
//! with `Retry-After` meanwhile (never a 500, never a hang), and plinth recovers by itself.

use std::time::{Duration, Instant};

use plinth_testkit::{APP_PASSWORD, PrivateCluster};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestApp};

async fn list_status(app: &TestApp, token: &str) -> (StatusCode, Duration, bool) {
    let started = Instant::now();
    let res = app.on(Method::GET, "faulty", "/v1/projects", Some(token)).send().await.expect("a response");
    let retry_after = res.headers().contains_key("retry-after");
    (res.status(), started.elapsed(), retry_after)
}

#[tokio::test]
async fn terminated_connections_are_replaced_without_a_500() {
    let app =
        TestApp::spawn_with(Backend::Postgres, &[("PLINTH_CACHE", "off"), ("PLINTH_DB_POOL_TIMEOUT_MS", "500")]).await;
    let token = app.signup("faulty").await.token;
    for _ in 0..4 {
        assert_eq!(list_status(&app, &token).await.0, StatusCode::OK);
    }
    let db = app.db.as_ref().expect("a database");
    let owner = db.owner().await;
    let killed: i64 = owner
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'plinth-api'",
            &[&db.name],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(killed >= 1, "the app's connections were found by application_name");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, _, retry_after) = list_status(&app, &token).await;
        statuses.push(status.as_u16());
        assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE, "{statuses:?}");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry_after, "a 503 carries Retry-After");
        }
        if status == StatusCode::OK && statuses.len() >= 3 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&200), "plinth recovers by itself: {statuses:?}");
}

#[tokio::test]
async fn a_restarted_database_answers_503_meanwhile_and_then_recovers() {
    let cluster = PrivateCluster::start();
    let admin = plinth_testkit::connect(&cluster.url("postgres", None, "postgres")).await;
    admin.batch_execute("CREATE DATABASE plinth").await.expect("create database");
    plinth_postgres::migrate::migrate(&cluster.url("postgres", None, "plinth"), Some(APP_PASSWORD))
        .await
        .expect("migrate");
    let app_url = cluster.url("plinth_app", Some(APP_PASSWORD), "plinth");
    let owner_url = cluster.url("postgres", None, "plinth");
    let app = TestApp::start(
        &[
            ("DATABASE_URL", &app_url),
            ("PLINTH_DATABASE_OWNER_URL", &owner_url),
            ("PLINTH_JWT_SECRET", "a-test-secret-of-at-least-32-bytes!"),
            ("PLINTH_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("PLINTH_CACHE", "off"),
            ("PLINTH_DB_POOL_TIMEOUT_MS", "500"),
            ("PLINTH_DB_STATEMENT_TIMEOUT_MS", "1000"),
        ],
        None,
    )
    .await;
    let token = app.signup("faulty").await.token;
    assert_eq!(list_status(&app, &token).await.0, StatusCode::OK);

    cluster.stop();
    for _ in 0..5 {
        let (status, took, retry_after) = list_status(&app, &token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after, "a 503 carries Retry-After");
        assert!(took < Duration::from_secs(3), "answered within the configured timeouts, took {took:?}");
    }

    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = list_status(&app, &token).await;
        assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "plinth did not recover after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
