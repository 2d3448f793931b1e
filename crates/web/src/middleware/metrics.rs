//! Request metrics, outermost of all middleware: `http_requests_total{method,route,status}`,
//! `http_request_duration_seconds{method,route}` and the requests in flight.
//!
//! `route` is the template the request matched (`/v1/projects/{id}`), and `unmatched` for any
//! path that is not a documented route, so a client sending random paths creates no series.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, web};

use crate::state::AppState;
use crate::telemetry::metrics::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS, method_label};

/// The label of requests that matched no documented route.
pub const UNMATCHED: &str = "unmatched";

/// The route template `req` matches, or [`UNMATCHED`]: never the raw path.
pub fn route_label(req: &HttpRequest) -> String {
    let known = |pattern: &str| req.app_data::<web::Data<AppState>>().is_some_and(|state| state.routes.knows(pattern));
    // actix answers the pattern of the deepest node that matched, which for a path under a
    // scope but no resource of it is the scope's prefix: only documented templates count.
    match req.match_pattern() {
        Some(pattern) if known(&pattern) => pattern,
        _ => UNMATCHED.to_owned(),
    }
}

/// Counts one request in `http_requests_in_flight` while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(HTTP_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

/// Times and counts every request.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = route_label(req.request());
    let _in_flight = InFlight::enter();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    record(method, route, status, started.elapsed());
    res
}

fn record(method: &'static str, route: String, status: StatusCode, took: Duration) {
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.clone()).record(took.as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
}
