//! Structured logs (JSON lines by default, human-friendly text on request) and, in
//! [`metrics`], the Prometheus metrics.
//!
//! Logs never carry a token, a password, a secret or a request body: spans record ids, slugs
//! and route templates only, and the one access-log line per request is written by
//! [`crate::middleware::request_id`].

pub mod metrics;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. Calling it again (as tests do) keeps the first one.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let result = if config.json {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    // Already installed: keep the first subscriber.
    drop(result);
}
