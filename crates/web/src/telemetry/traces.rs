//! Traces: OpenTelemetry spans exported over OTLP (HTTP, protobuf), installed only when an OTLP
//! endpoint is configured ([`crate::config::TraceConfig`]); otherwise no layer is installed at
//! all, and the spans below are `tracing` spans no subscriber wants (a cached level check each).
//!
//! What becomes a span: each request (`request`, continuing the caller's W3C `traceparent`), the
//! use cases and adapter calls already `#[tracing::instrument]`ed at debug level, each database
//! round trip (`db`), each Redis command (`redis`) and each job (`work_one`, continuing the trace
//! of the span that enqueued the job: see [`propagation`]). Whatever fields
//! those spans carry, only the attributes [`KEPT`] names are exported (see [`Allowlist`]): no
//! token, email address, SQL parameter or other tenant data leaves the process, whatever a span
//! records for the debug logs.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use plinth_domain::trace::{Propagation, TraceParent};

use crate::config::TraceConfig;

/// The W3C header that carries a caller's trace context.
pub const TRACEPARENT: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("traceparent");

/// Whether the OpenTelemetry layer is installed (set once, by [`provider`]'s caller).
static ON: OnceLock<()> = OnceLock::new();

/// Whether spans are exported: `false` unless an OTLP endpoint was configured.
pub fn enabled() -> bool {
    ON.get().is_some()
}

/// The name of a request's span until it is exported (`crate::middleware::request_id`).
pub const REQUEST: &str = "request";

/// The attributes a span may carry out of the process: the request's method, route template
/// and status, the tenant's id, the request id, the database or Redis operation's name (a fixed
/// set, never a statement or a key), the job's kind and the worker's name, and the ones the
/// `tracing` bridge sets for the span's kind and status.
const KEPT: &[&str] = &[
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

/// A span processor that strips every attribute but [`KEPT`] (and every event's attributes but
/// its level and target) before handing the span to the batch exporter.
#[derive(Debug)]
pub struct Allowlist<P>(pub P);

impl<P: SpanProcessor> SpanProcessor for Allowlist<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        span.attributes.retain(|kv| KEPT.contains(&kv.key.as_str()));
        // A request's span is named once it has started (its children need its context before
        // the router has matched a route): its name is made here, from what it recorded.
        if span.name == REQUEST {
            let value =
                |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str());
            if let (Some(method), Some(route)) = (value("http.request.method"), value("http.route")) {
                span.name = format!("{method} {route}").into();
            }
        }
        for event in &mut span.events.events {
            event.attributes.retain(|kv| matches!(kv.key.as_str(), "level" | "target"));
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// The tracer provider for `config`: a batch processor (its own thread, the SDK's `OTEL_BSP_*`
/// settings) exporting to `config.endpoint`; the sampler is the SDK's, from
/// `OTEL_TRACES_SAMPLER`/`_ARG` (parent-based, always on, by default). Marks traces as on.
pub fn provider(config: &TraceConfig) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Allowlist(BatchSpanProcessor::builder(exporter).build()))
        .with_resource(resource)
        .build();
    let _ = ON.set(());
    Ok(provider)
}

/// The `tracing` layer that turns spans into OpenTelemetry spans through `provider`, without the
/// bridge's extra attributes (source location, thread, busy and idle times).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("plinth"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// Reads W3C trace context from an actix request's headers.
struct Headers<'a>(&'a HeaderMap);

/// The longest caller's `tracestate` plinth continues: the 512 characters the W3C
/// recommendation asks every platform to pass on, of at most 32 list members (more, and it says
/// to drop the whole value). A longer one is dropped whole, its `traceparent` still continued:
/// kept, it would ride on every span of the request into memory and the exporter's batches.
const TRACESTATE_MAX_LEN: usize = 512;
/// See [`TRACESTATE_MAX_LEN`].
const TRACESTATE_MAX_MEMBERS: usize = 32;

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key).and_then(|v| v.to_str().ok())?;
        let oversized = key == "tracestate"
            && (value.len() > TRACESTATE_MAX_LEN || value.split(',').count() > TRACESTATE_MAX_MEMBERS);
        (!oversized).then_some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(actix_web::http::header::HeaderName::as_str).collect()
    }
}

/// Makes `span` continue the trace of the request's `traceparent` (and `tracestate`), if it
/// carries a valid one; else `span` starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    continue_from(span, &Headers(headers));
}

/// Makes `span` continue the trace context `carrier` holds, if it is valid.
fn continue_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The propagator's name for the `traceparent` field.
const TRACEPARENT_KEY: &str = "traceparent";

/// A job's stored `traceparent`, as the propagator reads it.
struct Stored<'a>(&'a TraceParent);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT_KEY).then(|| self.0.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT_KEY]
    }
}

/// How jobs carry trace context when spans are exported (else off, and the adapters store
/// nothing): a job stores the `traceparent` of the span current when it is enqueued, and its
/// `work_one` span continues it. Only the `traceparent` travels: a caller's `tracestate` stays
/// with the request's span, not in the queue.
pub fn propagation() -> Propagation {
    if !enabled() {
        return Propagation::OFF;
    }
    Propagation::new(
        || {
            let headers = current_headers();
            let value = headers.iter().find(|(key, _)| key == TRACEPARENT_KEY).map(|(_, v)| v.as_str())?;
            TraceParent::parse(value)
        },
        |span, parent| continue_from(span, &Stored(parent)),
    )
}

/// `span`'s trace id, 32 hex digits; `None` for a span that is not traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Collects what the propagator injects.
#[derive(Default)]
struct Collected(Vec<(String, String)>);

impl Injector for Collected {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The W3C trace context headers (`traceparent`, and `tracestate` when there is one) of the
/// current span, for an outgoing request: the webhook sender calls it for each delivery.
pub fn current_headers() -> Vec<(String, String)> {
    let mut out = Collected::default();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut out);
    out.0
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(tracestate: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        map.insert(HeaderName::from_static("traceparent"), HeaderValue::from_static(traceparent));
        map.insert(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_str(tracestate).unwrap_or_else(|_| unreachable!()),
        );
        map
    }

    #[test]
    fn a_callers_tracestate_is_kept_only_within_the_w3c_limits() {
        let fits = format!("k=v,{}", "x".repeat(TRACESTATE_MAX_LEN - 4));
        assert_eq!(Headers(&headers(&fits)).get("tracestate"), Some(fits.as_str()));
        let long = format!("k={}", "v".repeat(TRACESTATE_MAX_LEN));
        assert_eq!(Headers(&headers(&long)).get("tracestate"), None, "over 512 characters");
        let many = (0..=TRACESTATE_MAX_MEMBERS).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        assert!(many.len() < TRACESTATE_MAX_LEN);
        assert_eq!(Headers(&headers(&many)).get("tracestate"), None, "33 members");
        // The trace itself is still continued.
        assert!(Headers(&headers(&long)).get("traceparent").is_some());
    }
}
