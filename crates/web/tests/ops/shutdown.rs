//! Graceful shutdown: on SIGTERM `/readyz` fails at once while the API still serves for the
//! drain; then the listener closes, requests in flight finish, and the process exits 0.

use std::time::{Duration, Instant};

use plinth_web::composition::DEMO;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Process, TestApp};

const DEMO_HOST: &str = "demo.localhost";

/// Asserts `/readyz` answers 503 with `checks.shutdown` = `draining`.
async fn assert_draining(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "service_unavailable", "{body}");
    assert_eq!(body["checks"]["shutdown"], "draining", "{body}");
}

/// Whether a new connection to `port` is refused (the listener is closed).
async fn refused(port: u16) -> bool {
    tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(("127.0.0.1", port)))
        .await
        .is_ok_and(|connected| connected.is_err())
}

#[tokio::test]
async fn sigterm_drains_then_lets_the_request_in_flight_finish_and_exits_zero() {
    let (drain, grace) = (3, 10);
    let mut app = Process::start(&[
        ("PLINTH_SHUTDOWN_DRAIN_S", &drain.to_string()),
        ("PLINTH_SHUTDOWN_GRACE_S", &grace.to_string()),
        // The worker runs too, and must stop with the rest.
        ("PLINTH_WORKER", "true"),
    ])
    .await;

    // A login whose body arrives slowly: in flight from now until its last byte is sent.
    let body = json!({"email": DEMO.email, "password": DEMO.password}).to_string();
    let mut slow = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: {DEMO_HOST}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.signal("TERM");
    let signalled = Instant::now();

    // Not ready at once...
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_draining(res).await;
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still answers {} after SIGTERM", res.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while everything else is still served, on new connections too.
    let res = app.request(Method::GET, "localhost", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.request(Method::GET, DEMO_HOST, "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(signalled.elapsed() < Duration::from_secs(drain), "the checks above ran within the drain");

    // After the drain the listener closes.
    let deadline = signalled + Duration::from_secs(drain) + Duration::from_secs(3);
    while !refused(app.port).await {
        assert!(Instant::now() < deadline, "the listener still accepts {:?} after SIGTERM", signalled.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(signalled.elapsed() >= Duration::from_secs(drain), "the listener closed before the drain ended");
    assert!(app.wait_exit(Duration::from_millis(300)).await.is_none(), "exited with a request in flight");

    // The request started before the listener closed is answered in full.
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"access_token\""), "{answer}");

    let status = app.wait_exit(Duration::from_secs(drain + grace)).await;
    let status = status.unwrap_or_else(|| panic!("still running {:?} after SIGTERM", signalled.elapsed()));
    assert_eq!(status.code(), Some(0), "{}", app.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(drain + grace), "{:?}", signalled.elapsed());
    let logs = app.stdout();
    assert!(logs.contains("shutting down: draining"), "{logs}");
    assert!(logs.contains("\"shut down\""), "{logs}");
}

#[tokio::test]
async fn a_second_signal_cuts_the_drain_short() {
    let mut app = Process::start(&[("PLINTH_SHUTDOWN_DRAIN_S", "60"), ("PLINTH_SHUTDOWN_GRACE_S", "5")]).await;
    app.signal("INT");
    let signalled = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still ready after SIGINT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app.request(Method::GET, "localhost", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.signal("TERM");
    let status = app.wait_exit(Duration::from_secs(10)).await.expect("exits without waiting out the drain");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_shutdown_handle_drains_and_stops_like_sigterm() {
    let app = TestApp::start(&[("PLINTH_SHUTDOWN_DRAIN_S", "1"), ("PLINTH_SHUTDOWN_GRACE_S", "5")], None).await;
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    app.shutdown.trigger();
    let triggered = Instant::now();
    assert_draining(app.request(Method::GET, "localhost", "/readyz").send().await.unwrap()).await;
    let res = app.request(Method::GET, "demo.localhost", "/v1/tenant").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.request(Method::GET, "localhost", "/metrics").send().await.unwrap();
    assert!(res.text().await.unwrap().contains("plinth_shutting_down 1"));

    let stopped = tokio::time::timeout(Duration::from_secs(1 + 5), app.stopped).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "run_until_stopped ends with Ok within drain + grace");
    assert!(triggered.elapsed() >= Duration::from_secs(1), "the drain was served in full");
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    assert!(refused(port).await, "the listener is closed");
}
