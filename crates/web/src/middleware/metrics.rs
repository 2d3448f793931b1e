//! Request metrics, outermost of all middleware: `http_requests_total{method,route,status}`,
//! `http_request_duration_seconds{method,route}` and the requests in flight.
//!
//! `route` is the template the request matched (`/v1/projects/{id}`), and `unmatched` for any
//! path that is not a documented route, so a client sending random paths creates no series.

use foldhash::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpRequest, web};
use metrics::{Counter, Gauge, Histogram};

use crate::state::AppState;
use crate::telemetry::metrics::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS, method_label};

/// The label of requests that matched no documented route.
pub const UNMATCHED: &str = "unmatched";

/// The route label of a request, found once by [`track`] and left in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The route template `req` matches, or [`UNMATCHED`]: never the raw path. Found once per
/// request (by [`track`], which leaves it in the extensions), from the documented templates'
/// segments; a path that only matches once actix has decoded it is asked of actix's router.
pub fn route_label(req: &HttpRequest) -> &'static str {
    if let Some(RouteLabel(label)) = req.extensions().get::<RouteLabel>() {
        return label;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else { return UNMATCHED };
    if let Some(label) = state.routes.label_of_path(req.path()) {
        return label;
    }
    // actix answers the pattern of the deepest node that matched, which for a path under a
    // scope but no resource of it is the scope's prefix: only documented templates count.
    req.match_pattern().and_then(|pattern| state.routes.label(&pattern)).unwrap_or(UNMATCHED)
}

/// The metric handles of every `(method, route, status)` seen so far, so that recording a
/// request costs a map lookup, not building a labelled key and finding it in the registry.
#[derive(Default)]
struct Handles {
    durations: RwLock<HashMap<(&'static str, &'static str), Histogram>>,
    requests: RwLock<HashMap<(&'static str, &'static str, u16), Counter>>,
}

fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(Handles::default)
}

fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(HTTP_IN_FLIGHT))
}

/// The handle under `key`, made by `make` on first use. Labels come from small fixed sets
/// (methods, documented routes, statuses), so the maps stay small.
fn handle<K: std::hash::Hash + Eq + Copy, H: Clone>(
    map: &RwLock<HashMap<K, H>>,
    key: K,
    make: impl FnOnce() -> H,
) -> H {
    if let Some(h) = map.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return h.clone();
    }
    map.write().unwrap_or_else(PoisonError::into_inner).entry(key).or_insert_with(make).clone()
}

/// Counts one request in `http_requests_in_flight` while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        in_flight().increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
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
    req.extensions_mut().insert(RouteLabel(route));
    let _in_flight = InFlight::enter();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    record(method, route, status, started.elapsed());
    res
}

fn record(method: &'static str, route: &'static str, status: StatusCode, took: Duration) {
    let h = handles();
    handle(&h.durations, (method, route), || metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route))
        .record(took.as_secs_f64());
    handle(&h.requests, (method, route, status.as_u16()), || {
        metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status.as_str().to_owned())
    })
    .increment(1);
}
