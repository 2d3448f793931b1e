//! The request id, the request's span, and one access-log line per request: request id,
//! method, route template, tenant slug, status, latency and trace id. Never a header value
//! (but the trace id of a `traceparent`), a query string or a body.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _};
use tracing::Instrument as _;

use super::gate::RequestCtx;
use super::metrics::route_label;
use crate::telemetry::access::{self, AccessLine};
use crate::telemetry::traces;

/// The header that carries the request id both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// This request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// A client's id is kept when it is 1–128 characters of `A-Za-z0-9._-`.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A new id: 32 hex digits, a random per-process prefix and a counter. Unique within the
/// process, and across processes but for a 2^-64 chance; costs no system call (a UUID v7 here
/// asked the kernel for randomness on every request).
fn new_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = (u128::from(prefix) << 64) | u128::from(n);
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = (id >> (124 - 4 * i)) & 0xf;
        *b = b"0123456789abcdef"[usize::try_from(nibble).unwrap_or(0)];
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Gives every request an id, answers with it, and logs the request once it is answered.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = req.headers().get(&X_REQUEST_ID).filter(|v| acceptable(v)).cloned().unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    // Debug level, like the use cases' spans: the JSON lines don't print spans, and at info a
    // span per request only cost time. When traces are exported, it continues the caller's
    // trace and is exported under its method and route template (`traces::Allowlist`).
    let span = tracing::debug_span!(
        traces::REQUEST,
        request_id = id.to_str().unwrap_or_default(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = req.method().as_str(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    let traced = traces::enabled();
    if traced {
        traces::continue_trace(&span, req.headers());
    }
    // Inner services answer their errors themselves (handlers and extractors turn them into
    // responses); an `Err` here would come from a middleware and carries its own response.
    let mut res = next.call(req).instrument(span.clone()).await?;
    res.headers_mut().insert(X_REQUEST_ID, id.clone());
    let trace_id = if traced { record(&span, &res) } else { None };
    log_request(&res, &id, started, trace_id.as_deref());
    Ok(res)
}

/// Records the route template, the status and the tenant in `span`; answers its trace id.
fn record<B>(span: &tracing::Span, res: &ServiceResponse<B>) -> Option<String> {
    let req = res.request();
    span.record("http.route", route_label(req));
    span.record("http.response.status_code", res.status().as_u16());
    if res.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(tenant) = req.extensions().get::<RequestCtx>().and_then(|c| c.tenant.as_ref()) {
        span.record("tenant", tracing::field::display(tenant.id));
    }
    traces::trace_id(span)
}

/// Logs the request; `trace_id` is its span's when traces are exported, else the incoming
/// `traceparent`'s, if any.
fn log_request<B>(res: &ServiceResponse<B>, id: &HeaderValue, started: Instant, trace_id: Option<&str>) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let req = res.request();
    let ext = req.extensions();
    let header =
        || req.headers().get(traces::TRACEPARENT).and_then(|v| plinth_domain::trace::trace_id_of(v.as_bytes()));
    let line = AccessLine {
        request_id: id.to_str().unwrap_or_default(),
        method: req.method().as_str(),
        route: route_label(req),
        tenant: ext.get::<RequestCtx>().and_then(|c| c.tenant.as_ref()).map_or("-", |t| t.slug.as_str()),
        status: res.status().as_u16(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        trace_id: trace_id.or_else(header),
    };
    if !access::write(&line) {
        tracing::info!(
            request_id = line.request_id,
            method = line.method,
            route = line.route,
            tenant = line.tenant,
            status = line.status,
            latency_us = line.latency_us,
            trace_id = line.trace_id,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_of_up_to_128_characters_are_kept() {
        assert!(acceptable(&HeaderValue::from_static("abc-123_X.y")));
        assert!(acceptable(&HeaderValue::from_str(&"a".repeat(128)).unwrap_or_else(|_| new_id())));
        assert!(!acceptable(&HeaderValue::from_str(&"a".repeat(129)).unwrap_or_else(|_| new_id())));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("a b")));
        assert!(!acceptable(&HeaderValue::from_static("a/b")));
    }

    #[test]
    fn new_ids_are_acceptable_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(acceptable(&a) && a != b);
    }
}
