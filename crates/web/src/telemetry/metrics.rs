//! Prometheus metrics: the recorder behind the `metrics` facade, rendered by our own
//! `GET /metrics` route (there is no second listener), and the names of every series.
//!
//! Labels take values from small, fixed sets only: a method, a route *template* (or
//! `unmatched`), a status, a policy, a layer, a component, a job kind. Never a tenant id, a
//! user id or a raw path, so a client can't grow the number of series.
//!
//! The recorder is process-wide (the facade has one global recorder): every `Application` in a
//! process shares it, and [`recorder`] installs it on first use.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use plinth_domain::Error;
use plinth_domain::metric as domain;
use plinth_domain::ports::QueueStats;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::middleware::gate::bearer;
use crate::problem::ApiError;

/// Counter `{method, route, status}`: requests answered.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Histogram `{method, route}`: seconds from the request's arrival to its answer.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
/// Gauge: requests being served now.
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";
/// Counter `{policy}`: requests refused with 429, by the policy that counted them.
pub const RATE_LIMIT_REJECTIONS: &str = plinth_domain::metric::RATE_LIMIT_REJECTIONS;
/// Counter: requests admitted without counting because the limiter failed (fail-open).
pub const RATE_LIMIT_FAIL_OPEN: &str = "rate_limit_fail_open_total";
/// Gauge: jobs due and not claimed.
pub const JOB_QUEUE_READY: &str = "job_queue_ready";
/// Gauge: jobs claimed by a worker.
pub const JOB_QUEUE_RUNNING: &str = "job_queue_running";
/// Gauge: seconds the oldest due job has waited (0 when none waits).
pub const JOB_QUEUE_OLDEST_AGE: &str = "job_queue_oldest_ready_seconds";
/// Gauge `{dependency}`: 1 when the last readiness check of the dependency passed, else 0.
pub const READY_CHECK: &str = "readiness_check_up";
/// Gauge: 1 from the moment shutdown begins (draining), else 0.
pub const SHUTTING_DOWN: &str = "plinth_shutting_down";
/// Gauge `{version}`: always 1; the label says which build runs.
pub const BUILD_INFO: &str = "plinth_build_info";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the job duration buckets, in seconds (a delivery may take its whole timeout).
const JOB_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// How often histograms are drained into their buckets between scrapes.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed as the facade's global recorder on first use.
pub fn recorder() -> PrometheusHandle {
    RECORDER.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(domain::JOB_DURATION.into()), JOB_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(domain::DB_POOL_WAIT.into()), domain::ROUND_TRIP_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(domain::DB_QUERY_DURATION.into()), domain::ROUND_TRIP_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(domain::REDIS_COMMAND_DURATION.into()), domain::ROUND_TRIP_BUCKETS)
        })
        .unwrap_or_else(|_| PrometheusBuilder::new())
        .build_recorder();
    let handle = recorder.handle();
    if let Err(e) = metrics::set_global_recorder(recorder) {
        // Someone installed another recorder first: our series go there, not to `/metrics`.
        tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be incomplete");
    }
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(HTTP_IN_FLIGHT).set(0.0);
    metrics::gauge!(SHUTTING_DOWN).set(0.0);
    // Alerts take `increase()` of these: a series that first appears at 1 shows Prometheus no
    // increase, so the first dead delivery or disabled endpoint of a process would go unseen.
    metrics::counter!(domain::WEBHOOK_ATTEMPTS, "result" => "dead").absolute(0);
    metrics::counter!(domain::WEBHOOKS_DISABLED).absolute(0);
    handle
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency, by method and route template");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served now");
    describe_counter!(RATE_LIMIT_REJECTIONS, "Requests refused with 429, by rate-limit policy");
    describe_counter!(RATE_LIMIT_FAIL_OPEN, "Requests admitted uncounted because the rate limiter failed");
    describe_counter!(domain::CACHE_REQUESTS, "Cache reads, by level (l1, l2) and result (hit, miss, error)");
    describe_counter!(domain::CACHE_FETCHES, "Cache misses that loaded the value from its origin");
    describe_counter!(domain::COMPONENT_ERRORS, "Failed calls of a component that has a fallback, by component");
    describe_counter!(domain::COMPONENT_FALLBACKS, "Requests served by a fallback because a component was unusable");
    describe_gauge!(domain::COMPONENT_DEGRADED, "1 while a component runs on its fallback");
    describe_gauge!(domain::DB_POOL_SIZE, "Connections the database pool holds");
    describe_gauge!(domain::DB_POOL_AVAILABLE, "Idle connections in the database pool");
    describe_gauge!(domain::DB_POOL_WAITING, "Callers waiting for a database connection");
    describe_gauge!(domain::DB_POOL_MAX, "Maximum size of the database pool");
    describe_gauge!(domain::DB_REPLICA_LAG, Unit::Seconds, "A read replica's lag as last measured");
    describe_gauge!(domain::DB_REPLICA_IN_USE, "1 while stale-tolerant reads may go to the read replica");
    describe_histogram!(domain::DB_POOL_WAIT, Unit::Seconds, "Time waited for a database connection from the pool");
    describe_histogram!(
        domain::DB_QUERY_DURATION,
        Unit::Seconds,
        "Time of one database call (a port call's statements), by operation"
    );
    describe_histogram!(
        domain::REDIS_COMMAND_DURATION,
        Unit::Seconds,
        "Time of one Redis command or script call, by operation"
    );
    describe_counter!(domain::JOBS, "Jobs worked, by kind and outcome");
    describe_histogram!(domain::JOB_DURATION, Unit::Seconds, "Time to work one job, by kind");
    describe_counter!(domain::WEBHOOK_ATTEMPTS, "Webhook delivery attempts, by result");
    describe_counter!(domain::WEBHOOK_HELD, "Webhook deliveries claimed but not attempted: paced or skipped");
    describe_counter!(domain::WEBHOOKS_DISABLED, "Webhooks disabled because every attempt failed for too long");
    describe_gauge!(JOB_QUEUE_READY, "Jobs due and not claimed");
    describe_gauge!(JOB_QUEUE_RUNNING, "Jobs claimed by a worker");
    describe_gauge!(JOB_QUEUE_OLDEST_AGE, Unit::Seconds, "How long the oldest due job has waited");
    describe_gauge!(READY_CHECK, "1 when the dependency passed its last readiness check");
    describe_gauge!(SHUTTING_DOWN, "1 once graceful shutdown has begun");
    describe_gauge!(BUILD_INFO, "The running build; always 1");
}

/// What `GET /metrics` needs: the recorder, and the token it requires when one is configured.
#[derive(Clone)]
pub struct MetricsEndpoint {
    handle: PrometheusHandle,
    /// SHA-256 of `PLINTH_METRICS_TOKEN`: comparing digests takes the same time whatever the
    /// lengths, and the token itself is not kept.
    token: Option<[u8; 32]>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint").field("token_required", &self.token.is_some()).finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// The endpoint over the process's recorder; `token` is `PLINTH_METRICS_TOKEN`.
    pub fn new(token: Option<&Secret<String>>) -> Self {
        Self { handle: recorder(), token: token.map(|t| Sha256::digest(t.expose().as_bytes()).into()) }
    }

    /// Whether a request from `peer` with `headers` may read the metrics: with a configured
    /// token, only with `Authorization: Bearer <token>` (compared in constant time); without
    /// one, only from this machine (a loopback peer, not relaying anyone: no forwarding
    /// header). The metrics tell an operator how requests fared, which an outsider must not
    /// read (how many password-reset messages found a member, for one).
    pub fn authorize(&self, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            let relayed = ["x-forwarded-for", "forwarded", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
            return if peer.is_some_and(|ip| ip.is_loopback()) && !relayed {
                Ok(())
            } else {
                Err(ApiError::Domain(Error::Forbidden(
                    "metrics are served to this machine only; set PLINTH_METRICS_TOKEN to scrape from elsewhere",
                )))
            };
        };
        let given = bearer(headers).ok_or(ApiError::Domain(Error::Unauthorized))?;
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(given.ct_eq(expected)) { Ok(()) } else { Err(ApiError::Domain(Error::InvalidToken)) }
    }

    /// The current metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histograms into their buckets; run every [`UPKEEP_EVERY`].
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Records the job queue's depth (refreshed at every scrape; a worker may call it too).
pub fn record_queue(stats: QueueStats) {
    metrics::gauge!(JOB_QUEUE_READY).set(stats.ready as f64);
    metrics::gauge!(JOB_QUEUE_RUNNING).set(stats.running as f64);
    metrics::gauge!(JOB_QUEUE_OLDEST_AGE).set(stats.oldest_ready.map_or(0.0, |d| d.as_secs_f64()));
}

/// Records the outcome of one readiness check.
pub fn record_check(dependency: &'static str, up: bool) {
    metrics::gauge!(READY_CHECK, "dependency" => dependency).set(if up { 1.0 } else { 0.0 });
}

/// Records that shutdown has begun.
pub fn record_shutting_down() {
    metrics::gauge!(SHUTTING_DOWN).set(1.0);
}

/// The HTTP method as a label: the standard ones by name, anything else as `other` (a client
/// may send any token as a method).
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let custom = actix_web::http::Method::from_bytes(b"BREW").unwrap_or(actix_web::http::Method::TRACE);
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&actix_web::http::Method::PATCH), "PATCH");
    }

    #[test]
    fn without_a_token_only_this_machine_reads_the_metrics() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let open = MetricsEndpoint::new(None);
        let loopback =
            [Some(std::net::IpAddr::from([127, 0, 0, 1])), Some(std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))];
        for peer in loopback {
            assert!(open.authorize(peer, &HeaderMap::new()).is_ok());
        }
        for peer in [Some(std::net::IpAddr::from([10, 0, 0, 2])), Some(std::net::IpAddr::from([203, 0, 113, 7])), None]
        {
            assert!(matches!(open.authorize(peer, &HeaderMap::new()), Err(ApiError::Domain(Error::Forbidden(_)))));
        }
        // A proxy on this machine relaying someone else.
        for relayed in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(relayed), HeaderValue::from_static("203.0.113.7"));
            assert!(open.authorize(loopback[0], &h).is_err(), "{relayed}");
        }
    }

    #[test]
    fn a_configured_token_is_required_and_compared_exactly() {
        use actix_web::http::header::{AUTHORIZATION, HeaderValue};
        let outside = Some(std::net::IpAddr::from([203, 0, 113, 7]));
        let token = Secret::new("s3cret-metrics-token".to_owned());
        let guarded = MetricsEndpoint::new(Some(&token));
        let with = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static(value));
            guarded.authorize(outside, &h)
        };
        assert!(matches!(guarded.authorize(outside, &HeaderMap::new()), Err(ApiError::Domain(Error::Unauthorized))));
        assert!(matches!(with("Bearer s3cret-metrics-toke"), Err(ApiError::Domain(Error::InvalidToken))));
        assert!(matches!(with("Bearer s3cret-metrics-token2"), Err(ApiError::Domain(Error::InvalidToken))));
        assert!(matches!(with("Basic s3cret-metrics-token"), Err(ApiError::Domain(Error::Unauthorized))));
        assert!(with("Bearer s3cret-metrics-token").is_ok());
        assert!(!format!("{guarded:?}").contains("s3cret"));
    }

    #[test]
    fn the_recorder_renders_the_build_info() {
        let text = recorder().render();
        assert!(text.contains(&format!("{BUILD_INFO}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    }
}
