//! Traces: the real `plinth` binary on PostgreSQL and Redis, exporting over OTLP/HTTP to a
//! receiver of this test's on loopback. A request with a caller's `traceparent` becomes a span
//! of the caller's trace, with the use case, database and Redis spans under it; the job that
//! delivers the webhook it caused continues that trace under a span of the request, and the
//! webhook carries the job's context, while a job the worker enqueues itself starts a trace of
//! its own; the access log names the trace; and no exported attribute is outside the allowed
//! few.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use plinth_testkit::TestDatabase;
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Process, slug};

/// The caller's trace and span.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Starts an HTTP server on loopback answering every request with 200 after `keep` has seen it;
/// answers its base URL.
fn serve(keep: impl Fn(&HttpRequest, &[u8]) + Clone + Send + 'static) -> String {
    serve_answering(move |req, body| {
        keep(req, body);
        200
    })
}

/// As [`serve`], answering each request with the status `answer` gives it.
fn serve_answering(answer: impl Fn(&HttpRequest, &[u8]) -> u16 + Clone + Send + 'static) -> String {
    let server = HttpServer::new(move || {
        let answer = answer.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let status = actix_web::http::StatusCode::from_u16(answer(&req, &body[..])).unwrap();
            async move { HttpResponse::new(status) }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attributes, as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The binary on `db`, with its worker, delivering to loopback, exporting spans to `collector`,
/// with the `extra` settings.
async fn start_traced(db: &TestDatabase, collector: &str, extra: &[(&str, &str)]) -> Process {
    let mut vars = vec![
        ("DATABASE_URL", db.app_url.as_str()),
        ("PLINTH_JWT_SECRET", crate::helpers::JWT_SECRET),
        ("PLINTH_ENCRYPTION_KEY", crate::helpers::ENCRYPTION_KEY),
        ("PLINTH_WORKER", "true"),
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
    ];
    vars.extend_from_slice(extra);
    Process::start(&vars).await
}

/// A new tenant (its slug from `name`) signed up on `app`: its owner, and its host.
async fn signed_up(app: &Process, name: &str) -> (crate::harness::Signup, String) {
    let tenant = slug(name);
    let owner = crate::helpers::signup(&app.client, &app.address, &tenant).await;
    (owner, format!("{tenant}.localhost"))
}

/// Registers a webhook at `url` for `events` on `host`, as `token`.
async fn add_webhook(app: &Process, host: &str, token: &str, url: &str, events: Value) {
    let res = app
        .request(Method::POST, host, "/v1/webhooks")
        .bearer_auth(token)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
}

/// Creates a project on `host`, as `token`, in the caller's trace ([`TRACE_ID`]), with the
/// `extra` headers.
async fn create_traced_project(app: &Process, host: &str, token: &str, extra: &[(&str, &str)]) {
    let mut req = app
        .request(Method::POST, host, "/v1/projects")
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"));
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let res = req.json(&json!({"name": "Traced"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
}

/// Waits up to 30 s for `done`.
async fn wait_until(app: &Process, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "no {what}:\n{}", app.stdout());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_down_to_the_database_redis_and_the_webhook_job_it_enqueued() {
    // The OTLP receiver: every span posted to /v1/traces, and the services named.
    let spans = Arc::new(Mutex::new(Vec::<Span>::new()));
    let services = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let (s, n) = (spans.clone(), services.clone());
    let collector = serve(move |req, body| {
        assert_eq!(req.path(), "/v1/traces");
        assert_eq!(req.headers().get("content-type").unwrap(), "application/x-protobuf");
        let export = ExportTraceServiceRequest::decode(body).unwrap();
        for resource in export.resource_spans {
            for kv in resource.resource.iter().flat_map(|r| &r.attributes) {
                if kv.key == "service.name"
                    && let Some(Any::StringValue(name)) = kv.value.as_ref().and_then(|v| v.value.clone())
                {
                    n.lock().unwrap().insert(name);
                }
            }
            for scope in resource.scope_spans {
                s.lock().unwrap().extend(scope.spans);
            }
        }
    });
    // The webhook receiver: each delivery's traceparent.
    let traceparents = Arc::new(Mutex::new(Vec::<String>::new()));
    let t = traceparents.clone();
    let receiver = serve(move |req, _| {
        let header = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("none");
        t.lock().unwrap().push(header.to_owned());
    });

    let db = TestDatabase::new().await;
    let redis = plinth_testkit::shared_redis_url();
    let prefix = format!("{}:", slug("traces"));
    let mut app = start_traced(&db, &collector, &[("REDIS_URL", &redis), ("PLINTH_REDIS_PREFIX", &prefix)]).await;
    let (owner, host) = signed_up(&app, "traced").await;
    add_webhook(&app, &host, &owner.token, &format!("{receiver}/hook"), json!(["project.created"])).await;
    let extra = [("tracestate", "vendor=opaque"), ("x-request-id", "traced-request-1")];
    create_traced_project(&app, &host, &owner.token, &extra).await;

    // The worker delivers the project.created event.
    wait_until(&app, "a webhook delivery", || !traceparents.lock().unwrap().is_empty()).await;
    // A graceful stop exports the spans still queued.
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(40)).await.expect("exits").code(), Some(0));

    let spans = spans.lock().unwrap().clone();
    assert_eq!(*services.lock().unwrap(), BTreeSet::from(["plinth".to_owned()]));
    // Only the allowed attributes left the process.
    let allowed = [
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "request_id",
        "tenant",
        "db.system.name",
        "db.operation.name",
        "job.kind",
        "worker",
        "level",
        "target",
    ];
    for span in &spans {
        for key in attributes(span).keys() {
            assert!(allowed.contains(&key.as_str()), "span {} exports {key}", span.name);
        }
    }

    // The request's span continues the caller's trace.
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let request = spans
        .iter()
        .find(|s| s.name == "POST /v1/projects")
        .unwrap_or_else(|| panic!("no request span among {names:?}\n{}", app.stderr()));
    assert_eq!(hex(&request.trace_id), TRACE_ID);
    assert_eq!(hex(&request.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(request.trace_state, "vendor=opaque", "the caller's tracestate goes on");
    let attrs = attributes(request);
    assert_eq!(attrs["http.route"], "/v1/projects");
    assert_eq!(attrs["http.request.method"], "POST");
    assert_eq!(attrs["http.response.status_code"], "201");
    assert_eq!(attrs["tenant"], owner.tenant_id);
    assert_eq!(attrs["request_id"], "traced-request-1");

    // Under it: the use case, the database round trips and the Redis commands.
    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE_ID).collect();
    let descends = |span: &Span| {
        let mut parent = span.parent_span_id.clone();
        while let Some(p) = in_trace.iter().find(|s| s.span_id == parent) {
            if p.span_id == request.span_id {
                return true;
            }
            parent = p.parent_span_id.clone();
        }
        false
    };
    let names: BTreeSet<&str> = in_trace.iter().filter(|s| descends(s)).map(|s| s.name.as_str()).collect();
    assert!(names.contains("create_project"), "no use case span among {names:?}");
    assert!(names.contains("projects.create"), "no database span among {names:?}");
    let systems: BTreeSet<String> =
        in_trace.iter().filter(|s| descends(s)).filter_map(|s| attributes(s).get("db.system.name").cloned()).collect();
    assert_eq!(systems, BTreeSet::from(["postgresql".to_owned(), "redis".to_owned()]), "{names:?}");

    // The job continues the request's trace, under the span that enqueued it (the request's
    // or one under it), and the webhook carries the job's context.
    let job = spans
        .iter()
        .find(|s| s.name == "work_one" && attributes(s).get("job.kind").is_some_and(|k| k == "deliver"))
        .expect("the delivering job's span");
    assert_eq!(attributes(job)["tenant"], owner.tenant_id);
    assert_eq!(hex(&job.trace_id), TRACE_ID, "the job continues the trace of the request that enqueued it");
    let enqueuer = in_trace
        .iter()
        .find(|s| s.span_id == job.parent_span_id)
        .unwrap_or_else(|| panic!("the job's parent {} is no span of the trace", hex(&job.parent_span_id)));
    assert!(
        enqueuer.span_id == request.span_id || descends(enqueuer),
        "the job's parent ({}) is the request's span or one under it",
        enqueuer.name
    );
    let traceparent = traceparents.lock().unwrap()[0].clone();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE_ID, "the webhook carries the request's trace");
    assert_eq!(parts[1], hex(&job.trace_id), "the webhook carries the job's trace");
    assert!(spans.iter().any(|s| hex(&s.span_id) == parts[2] && s.trace_id == job.trace_id));
    assert!(
        spans.iter().any(|s| s.trace_id == job.trace_id && attributes(s).contains_key("db.system.name")),
        "the job's database calls are in its trace"
    );

    // The access log line carries the trace id.
    let line = app
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["request_id"] == "traced-request-1")
        .expect("the access log line");
    assert_eq!(line["trace_id"], TRACE_ID);
}

#[tokio::test]
async fn a_job_the_worker_enqueues_starts_a_trace_of_its_own() {
    let collector = serve(|_, _| {});
    // Each webhook request's path and traceparent; `/failing` always answers 500.
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let s = seen.clone();
    let receiver = serve_answering(move |req, _| {
        let header = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("none");
        s.lock().unwrap().push((req.path().to_owned(), header.to_owned()));
        if req.path() == "/failing" { 500 } else { 200 }
    });
    let db = TestDatabase::new().await;
    // Retried at once, and disabled once it has failed twice over a second.
    let quick = [
        ("PLINTH_WEBHOOK_BACKOFF_MS", "1"),
        ("PLINTH_WEBHOOK_MAX_ATTEMPTS", "100"),
        ("PLINTH_WEBHOOK_DISABLE_AFTER_S", "1"),
        ("PLINTH_WEBHOOK_DISABLE_MIN_FAILURES", "2"),
    ];
    let app = start_traced(&db, &collector, &quick).await;
    let (owner, host) = signed_up(&app, "chained").await;
    add_webhook(&app, &host, &owner.token, &format!("{receiver}/failing"), json!(["project.created"])).await;
    add_webhook(&app, &host, &owner.token, &format!("{receiver}/notices"), json!(["webhook.disabled"])).await;
    create_traced_project(&app, &host, &owner.token, &[]).await;

    // The worker retries the failing endpoint until it disables it, then delivers the
    // `webhook.disabled` event it enqueued to the other endpoint.
    let notified = || seen.lock().unwrap().iter().any(|(path, _)| path == "/notices");
    wait_until(&app, "a webhook.disabled delivery", notified).await;
    let seen = seen.lock().unwrap().clone();
    let trace_of = |tp: &str| tp.split('-').nth(1).unwrap_or_default().to_owned();
    let attempts: Vec<String> = seen.iter().filter(|(p, _)| p == "/failing").map(|(_, tp)| trace_of(tp)).collect();
    assert!(attempts.len() >= 2, "{seen:?}");
    assert!(attempts.iter().all(|t| t == TRACE_ID), "every attempt continues the request's trace: {seen:?}");
    let (_, notice) = seen.iter().find(|(p, _)| p == "/notices").unwrap();
    let notice_trace = trace_of(notice);
    assert_eq!(notice_trace.len(), 32, "the worker's delivery is traced: {notice}");
    assert_ne!(notice_trace, TRACE_ID, "a job the worker enqueued starts a trace of its own: {notice}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced_but_the_callers_trace_id_is_logged() {
    let app = Process::start(&[]).await;
    for (id, traceparent) in [
        ("untraced-1", Some(format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))),
        ("untraced-2", Some("00-zz-not-a-trace".to_owned())),
        ("untraced-3", None),
    ] {
        let mut req = app.request(Method::GET, "localhost", "/healthz").header("x-request-id", id);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::OK);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<Value> = app.stdout().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.iter().any(|l| l["request_id"] == "untraced-3") || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let of = |id: &str| lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("no line for {id}"));
    assert_eq!(of("untraced-1")["trace_id"], TRACE_ID);
    assert!(of("untraced-2").get("trace_id").is_none());
    assert!(of("untraced-3").get("trace_id").is_none());
}
