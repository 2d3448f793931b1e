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
/// Counter `{kind, outcome}`: jobs worked, by kind (`deliver`, `noop`) and outcome (`ok`, `error`).
pub const JOBS: &str = "jobs_total";
/// Histogram `{kind}`: how long working one job took, in seconds.
pub const JOB_DURATION: &str = "job_duration_seconds";
/// Counter `{result}`: webhook delivery attempts by result (`delivered`, `retry`, `dead`).
pub const WEBHOOK_ATTEMPTS: &str = "webhook_attempts_total";
/// Gauge: connections the database pool holds (recorded by the database adapter at each scrape).
pub const DB_POOL_SIZE: &str = "db_pool_size";
/// Gauge: idle connections in the database pool.
pub const DB_POOL_AVAILABLE: &str = "db_pool_available";
/// Gauge: callers waiting for a database connection.
pub const DB_POOL_WAITING: &str = "db_pool_waiting";
/// Gauge: the database pool's maximum size.
pub const DB_POOL_MAX: &str = "db_pool_max_size";
