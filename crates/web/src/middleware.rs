//! Middleware, outermost first: metrics (counts and times every request), request id (and the
//! access log), `Server-Timing` when configured, then the gate (tenant, auth, rate limit) on
//! `/v1`.

pub mod client_ip;
pub mod gate;
pub mod metrics;
pub mod request_id;
pub mod server_timing;
