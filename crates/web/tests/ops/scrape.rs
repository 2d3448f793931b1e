//! `GET /metrics`: the series a known sequence of requests leaves, labels that are route
//! templates and never raw paths, and the token that guards it.

use plinth_web::composition::DEMO;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Metrics, Process, TestApp};

const DEMO_HOST: &str = "demo.localhost";
const BUCKETS: &[&str] = &["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

fn requests(m: &Metrics, method: &str, route: &str, status: &str) -> f64 {
    m.value("http_requests_total", &[("method", method), ("route", route), ("status", status)])
}

/// The histogram of `route`: every bucket is there, cumulative, and `+Inf` equals `_count`.
fn assert_histogram(m: &Metrics, method: &str, route: &str, count: f64) {
    let mut previous = 0.0;
    for le in BUCKETS {
        let n = m.value("http_request_duration_seconds_bucket", &[("method", method), ("route", route), ("le", le)]);
        assert!(n >= previous, "buckets of {route} are cumulative");
        previous = n;
    }
    assert_eq!(previous, count, "{method} {route}: +Inf bucket");
    let labels = [("method", method), ("route", route)];
    assert_eq!(m.value("http_request_duration_seconds_count", &labels), count);
    assert!(m.value("http_request_duration_seconds_sum", &labels) > 0.0);
}

/// Logs the demo owner in; returns the token.
async fn demo_token(app: &Process) -> String {
    let res = app
        .request(Method::POST, DEMO_HOST, "/v1/auth/login")
        .json(&json!({"email": DEMO.email, "password": DEMO.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_known_sequence_of_requests_shows_in_counters_and_histograms_by_route_template() {
    let app = Process::start(&[("PLINTH_IP_QUOTA", "5")]).await;
    for host in ["localhost", "example.com", DEMO_HOST] {
        let res = app.request(Method::GET, host, "/healthz").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The IP quota is 5: the sixth public read is refused.
    for n in 1..=6 {
        let res = app.request(Method::GET, DEMO_HOST, "/v1/tenant").send().await.unwrap();
        let expected = if n <= 5 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(res.status(), expected, "read {n}");
    }
    let token = demo_token(&app).await;
    let id = uuid::Uuid::now_v7();
    let res = app.request(Method::GET, DEMO_HOST, &format!("/v1/projects/{id}")).bearer_auth(&token).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);
    let res = app.request(Method::GET, DEMO_HOST, "/v1/projects").bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = app.request(Method::GET, "localhost", "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let m = Metrics::parse(&res.text().await.unwrap());

    assert_eq!(requests(&m, "GET", "/healthz", "200"), 3.0);
    assert_eq!(requests(&m, "GET", "/v1/tenant", "200"), 5.0);
    assert_eq!(requests(&m, "GET", "/v1/tenant", "429"), 1.0);
    assert_eq!(requests(&m, "POST", "/v1/auth/login", "200"), 1.0);
    assert_eq!(requests(&m, "GET", "/v1/projects/{id}", "404"), 1.0);
    assert_eq!(requests(&m, "GET", "/v1/projects", "200"), 1.0);
    assert_histogram(&m, "GET", "/healthz", 3.0);
    assert_histogram(&m, "GET", "/v1/tenant", 6.0);
    assert_histogram(&m, "POST", "/v1/auth/login", 1.0);
    assert_histogram(&m, "GET", "/v1/projects/{id}", 1.0);
    assert!(!m.text.contains(&id.to_string()), "a raw path became a label:\n{}", m.text);
    assert!(!m.text.contains("demo"), "a tenant became a label:\n{}", m.text);

    assert_eq!(m.value("rate_limit_rejections_total", &[("policy", "ip")]), 1.0);
    assert_eq!(m.get("rate_limit_rejections_total", &[("policy", "tenant")]), None);
    // The tenant is read through L1: one miss, then hits.
    assert!(m.value("cache_requests_total", &[("layer", "l1"), ("result", "miss")]) >= 1.0);
    assert!(m.value("cache_requests_total", &[("layer", "l1"), ("result", "hit")]) >= 5.0);
    assert!(m.value("cache_fetches_total", &[]) >= 1.0);
    assert_eq!(m.value("plinth_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(m.value("plinth_shutting_down", &[]), 0.0);
    // This scrape is in flight while it renders.
    assert_eq!(m.value("http_requests_in_flight", &[]), 1.0);
    assert_eq!(m.value("job_queue_ready", &[]), 0.0);
    // Embedded mode: no pool, no Redis.
    assert_eq!(m.get("db_pool_size", &[]), None);
    assert!(m.text.contains("# TYPE http_request_duration_seconds histogram"), "{}", m.text);
    assert!(m.text.contains("# HELP http_requests_total "), "{}", m.text);
}

#[tokio::test]
async fn requests_to_random_paths_and_methods_create_no_new_series() {
    let app = Process::start(&[]).await;
    let strays = |n: u8| {
        let id = uuid::Uuid::now_v7();
        [
            (Method::GET, "localhost", format!("/{id}")),
            (Method::GET, DEMO_HOST, format!("/v1/{id}")),
            (Method::POST, DEMO_HOST, format!("/v1/projects/{id}/{n}")),
            (Method::from_bytes(format!("BREW{n}").as_bytes()).unwrap(), "localhost", format!("/{id}/pot")),
            (Method::PUT, DEMO_HOST, "/v1/tenant".to_owned()),
        ]
    };
    let send_all = async |n: u8| {
        for (method, host, path) in strays(n) {
            let res = app.request(method.clone(), host, &path).send().await.unwrap();
            assert!([404, 405].contains(&res.status().as_u16()), "{method} {path}: {}", res.status());
        }
    };
    send_all(1).await;
    // The first scrape's own request shows from the second one on.
    app.scrape().await;
    let before = app.scrape().await;
    assert!(
        before.value("http_requests_total", &[("method", "GET"), ("route", "unmatched"), ("status", "404")]) >= 1.0
    );
    assert!(
        before.value("http_requests_total", &[("method", "other"), ("route", "unmatched"), ("status", "404")]) >= 1.0
    );
    assert_eq!(
        before.value("http_requests_total", &[("method", "PUT"), ("route", "/v1/tenant"), ("status", "405")]),
        1.0
    );
    send_all(2).await;
    send_all(3).await;
    let after = app.scrape().await;
    let names = |m: &Metrics| m.series.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&before), names(&after), "new series appeared:\n{}", after.text);
    assert_eq!(
        after.value("http_requests_total", &[("method", "GET"), ("route", "unmatched"), ("status", "404")]),
        before.value("http_requests_total", &[("method", "GET"), ("route", "unmatched"), ("status", "404")]) + 4.0
    );
    // Every route label is a documented template, or `unmatched`.
    let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
    let templates = doc["paths"].as_object().unwrap();
    for line in after.text.lines().filter(|l| l.contains("route=\"")) {
        let route = line.split("route=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        assert!(route == "unmatched" || templates.contains_key(route), "{line}");
    }
}

#[tokio::test]
async fn metrics_requires_the_configured_token_and_is_never_rate_limited() {
    let token = "a-metrics-token-for-this-test";
    let app = TestApp::start(&[("PLINTH_METRICS_TOKEN", token), ("PLINTH_IP_QUOTA", "1")], None).await;

    let res = app.request(Method::GET, "example.com", "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");

    for wrong in ["a-metrics-token-for-this-tes", "a-metrics-token-for-this-test2", "nope"] {
        let res = app.request(Method::GET, "localhost", "/metrics").bearer_auth(wrong).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{wrong}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid_token");
    }
    let res = app.request(Method::GET, "localhost", "/metrics").basic_auth(token, None::<&str>).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Any host; never counted by a rate limit (the IP quota here is 1).
    for host in ["localhost", "acme.localhost", "127.0.0.1", "example.com"] {
        for _ in 0..3 {
            let res = app.request(Method::GET, host, "/metrics").bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{host}");
            assert!(res.headers().get("ratelimit").is_none() && res.headers().get("ratelimit-policy").is_none());
            let text = res.text().await.unwrap();
            assert!(text.contains("http_requests_total{"), "{text}");
        }
    }
}

/// A webhook receiver on 127.0.0.1 that answers 500 to the first request and 200 after.
async fn flaky_receiver() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as much body as it announces.
                loop {
                    let Ok(n) = conn.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let first = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                let status = if first { "500 Internal Server Error" } else { "200 OK" };
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

#[tokio::test]
async fn jobs_and_webhook_attempts_are_counted_by_kind_and_result() {
    let app = Process::start(&[
        ("PLINTH_WORKER", "true"),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("PLINTH_WEBHOOK_BACKOFF_MS", "50"),
    ])
    .await;
    let url = flaky_receiver().await;
    let token = demo_token(&app).await;
    let res = app
        .request(Method::POST, DEMO_HOST, "/v1/webhooks")
        .bearer_auth(&token)
        .json(&json!({"url": url, "events": ["project.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    let res = app
        .request(Method::POST, DEMO_HOST, "/v1/projects")
        .bearer_auth(&token)
        .json(&json!({"name": "Counted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let m = loop {
        let m = app.scrape().await;
        if m.get("webhook_attempts_total", &[("result", "delivered")]) == Some(1.0) {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "the delivery did not succeed:\n{}", m.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(m.value("webhook_attempts_total", &[("result", "retry")]), 1.0);
    // Counted from the start, so that Prometheus sees the first one as an increase.
    assert_eq!(m.get("webhook_attempts_total", &[("result", "dead")]), Some(0.0));
    assert_eq!(m.get("webhooks_disabled_total", &[]), Some(0.0));
    assert_eq!(m.value("jobs_total", &[("kind", "deliver"), ("outcome", "ok")]), 2.0);
    assert_eq!(m.value("job_duration_seconds_count", &[("kind", "deliver")]), 2.0);
    assert_eq!(m.value("job_duration_seconds_bucket", &[("kind", "deliver"), ("le", "+Inf")]), 2.0);
    assert_eq!(m.value("job_queue_ready", &[]), 0.0);
    assert_eq!(m.value("job_queue_running", &[]), 0.0);
    assert_eq!(m.value("job_queue_oldest_ready_seconds", &[]), 0.0);
}

#[tokio::test]
async fn a_redis_outage_shows_in_errors_fallbacks_and_the_degraded_gauge_and_the_pool_is_measured() {
    let mut redis = plinth_testkit::PrivateRedis::start();
    let db = plinth_testkit::TestDatabase::new().await;
    let url = redis.url();
    let app = Process::start(&[
        ("DATABASE_URL", &db.app_url),
        ("PLINTH_JWT_SECRET", crate::helpers::JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", crate::helpers::ENCRYPTION_KEY),
        ("REDIS_URL", &url),
        ("PLINTH_DB_POOL_SIZE", "4"),
        // Every request asks Redis, so each one after the outage counts as a fallback (a lease
        // would serve a few without asking).
        ("PLINTH_LIMIT_LEASE_PERCENT", "0"),
    ])
    .await;
    let tenant = crate::helpers::slug("redis-metrics");
    crate::helpers::signup(&app.client, &app.address, &tenant).await;
    let host = format!("{tenant}.localhost");
    let read = async || {
        let res = app.request(Method::GET, &host, "/v1/tenant").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "the API serves whether Redis does or not");
    };
    read().await;
    read().await;
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let m = app.scrape().await;
    assert_eq!(m.value("db_pool_max_size", &[]), 4.0);
    assert!(m.value("db_pool_size", &[]) >= 1.0);
    assert!(m.value("db_pool_available", &[]) <= m.value("db_pool_size", &[]));
    assert_eq!(m.value("db_pool_waiting", &[]), 0.0);
    assert_eq!(m.value("readiness_check_up", &[("dependency", "database")]), 1.0);
    assert_eq!(m.value("readiness_check_up", &[("dependency", "redis")]), 1.0);
    assert!(m.value("cache_requests_total", &[("layer", "l2"), ("result", "miss")]) >= 1.0, "{}", m.text);
    assert_eq!(m.get("component_errors_total", &[("component", "rate_limiter")]), None);

    redis.kill();
    for _ in 0..3 {
        read().await;
    }
    let res = app.request(Method::GET, "localhost", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let m = app.scrape().await;
    assert!(m.value("component_errors_total", &[("component", "rate_limiter")]) >= 1.0, "{}", m.text);
    assert!(m.value("component_fallbacks_total", &[("component", "rate_limiter")]) >= 3.0, "{}", m.text);
    assert_eq!(m.value("component_degraded", &[("component", "rate_limiter")]), 1.0);
    assert_eq!(m.value("readiness_check_up", &[("dependency", "redis")]), 0.0);
    assert_eq!(m.value("readiness_check_up", &[("dependency", "database")]), 1.0);

    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        read().await;
        let m = app.scrape().await;
        if m.value("component_degraded", &[("component", "rate_limiter")]) == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the limiter did not recover:\n{}", m.text);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_queue_gauges_count_the_deliveries_waiting_and_a_full_queue_refuses_more() {
    // No worker: the deliveries stay queued.
    let app = Process::start(&[
        ("PLINTH_WORKER", "false"),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("PLINTH_TENANT_MAX_PENDING_JOBS", "3"),
    ])
    .await;
    let token = demo_token(&app).await;
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["project.created"]});
    let res = app.request(Method::POST, DEMO_HOST, "/v1/webhooks").bearer_auth(&token).json(&hook).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::CREATED);
    for n in 1..=4 {
        let res = app
            .request(Method::POST, DEMO_HOST, "/v1/projects")
            .bearer_auth(&token)
            .json(&json!({"name": format!("Queued {n}")}))
            .send()
            .await
            .unwrap();
        let expected = if n <= 3 { StatusCode::CREATED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(res.status(), expected, "project {n}");
    }

    let res = app.request(Method::GET, "localhost", "/metrics").send().await.unwrap();
    let m = Metrics::parse(&res.text().await.unwrap());
    assert_eq!(m.value("job_queue_ready", &[]), 3.0, "the three deliveries of the accepted writes");
    assert_eq!(m.value("job_queue_running", &[]), 0.0);
    assert!(m.value("job_queue_oldest_ready_seconds", &[]) >= 0.0);
    assert_eq!(requests(&m, "POST", "/v1/projects", "429"), 1.0);
}
