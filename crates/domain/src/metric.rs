//! The names of the metrics the domain records through the `metrics` facade. The facade does
//! no I/O: whoever installs a recorder (the web layer, for `GET /metrics`) exports them, and
//! without one they cost next to nothing.
//!
//! Labels take only values from small fixed sets (a cache layer, a component, a job kind):
//! never a tenant id, a user id, a key or a path.

/// Counter `{layer, result}`: cache reads by level (`l1`, `l2`) and result (`hit`, `miss`, `error`).
pub const CACHE_REQUESTS: &str = "cache_requests_total";
/// Counter: misses that ran the origin fetch (once per key however many requests waited).
pub const CACHE_FETCHES: &str = "cache_fetches_total";
/// Counter `{component}`: failed calls of a component that has a fallback (`l2_cache`, `cache`
/// (the generation store), `rate_limiter`), named by the role that failed, whatever adapter
/// fills it; each one degraded to the fallback rather than failing a request.
pub const COMPONENT_ERRORS: &str = "component_errors_total";
/// Counter `{component}`: requests served by a fallback because the component could not be
/// used: the local limiter (`rate_limiter`), the cache bypassed or narrowed to L2 (`cache`), or L2 skipped
/// (`l2_cache`).
pub const COMPONENT_FALLBACKS: &str = "component_fallbacks_total";
/// Gauge `{component}`: 1 while the component is degraded, 0 once it has recovered.
pub const COMPONENT_DEGRADED: &str = "component_degraded";
/// Counter `{kind, outcome}`: jobs worked, by kind (`deliver`, `email`, `noop`) and outcome (`ok`, `error`).
pub const JOBS: &str = "jobs_total";
/// Histogram `{kind}`: how long working one job took, in seconds.
pub const JOB_DURATION: &str = "job_duration_seconds";
/// Counter `{purpose, result}`: emails by purpose (`invitation`, `password_reset`,
/// `verify_email`) and result (`sent`, `pending` for a retry, `dead`, `dropped`).
pub const EMAILS: &str = "emails_total";
/// Counter `{policy}`: requests refused by a rate limit.
pub const RATE_LIMIT_REJECTIONS: &str = "rate_limit_rejections_total";
/// Counter `{result}`: webhook delivery attempts by result (`delivered`, `retry`, `dead`).
pub const WEBHOOK_ATTEMPTS: &str = "webhook_attempts_total";
/// Counter `{reason}`: deliveries claimed but not attempted: `paced` (postponed to their
/// webhook's next slot) or `skipped` (their webhook is disabled).
pub const WEBHOOK_HELD: &str = "webhook_deliveries_held_total";
/// Counter: webhooks disabled because every attempt failed for too long.
pub const WEBHOOKS_DISABLED: &str = "webhooks_disabled_total";
/// Gauge: connections the database pool holds (recorded by the database adapter at each scrape).
pub const DB_POOL_SIZE: &str = "db_pool_size";
/// Gauge: idle connections in the database pool.
pub const DB_POOL_AVAILABLE: &str = "db_pool_available";
/// Gauge: callers waiting for a database connection.
pub const DB_POOL_WAITING: &str = "db_pool_waiting";
/// Gauge: the database pool's maximum size.
pub const DB_POOL_MAX: &str = "db_pool_max_size";
/// Gauge `{replica}`: a read replica's lag as last measured, in seconds (by `host:port`, never
/// its URL; recorded by the database adapter at each scrape).
pub const DB_REPLICA_LAG: &str = "db_replica_lag_seconds";
/// Gauge `{replica}`: 1 while stale-tolerant reads may go to the replica, 0 while it lags too
/// far, is unreachable or a read failed on it since its last check.
pub const DB_REPLICA_IN_USE: &str = "db_replica_in_use";
/// Histogram: seconds a caller waited for a database connection from the pool.
pub const DB_POOL_WAIT: &str = "db_pool_wait_seconds";
/// Histogram `{op}`: seconds one database call took on the connection it took (every
/// statement of one port call, after the pool wait), by operation (see the database adapter's
/// `op` names: `projects.list`, `jobs.claim`…).
pub const DB_QUERY_DURATION: &str = "db_query_duration_seconds";
/// Histogram `{op}`: seconds one Redis command (or script call) took, by operation
/// (`cache.get`, `limiter.check`, `generation.bump`…).
pub const REDIS_COMMAND_DURATION: &str = "redis_command_duration_seconds";
/// Upper bounds of the round-trip histograms' buckets, in seconds: 100 µs to 5 s, so that a
/// sub-millisecond round trip is resolved.
pub const ROUND_TRIP_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// One histogram labelled `op`, whose handles are made on first use of each op and kept (a
/// labelled lookup in the recorder costs more than recording). `op` is `&'static str`: only
/// names written in code, never a tenant, a key or a statement.
#[derive(Debug)]
pub struct ByOp {
    name: &'static str,
    handles: std::sync::RwLock<std::collections::HashMap<&'static str, metrics::Histogram>>,
}

impl ByOp {
    /// The histogram `name`, labelled by `op`.
    pub fn new(name: &'static str) -> Self {
        Self { name, handles: std::sync::RwLock::default() }
    }

    /// Records `took` under `op`.
    pub fn record(&self, op: &'static str, took: std::time::Duration) {
        use std::sync::PoisonError;
        let seconds = took.as_secs_f64();
        if let Some(h) = self.handles.read().unwrap_or_else(PoisonError::into_inner).get(op) {
            return h.record(seconds);
        }
        let name = self.name;
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(op)
            .or_insert_with(|| metrics::histogram!(name, "op" => op))
            .record(seconds);
    }
}
