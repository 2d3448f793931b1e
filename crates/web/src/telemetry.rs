//! Structured logs (JSON lines by default, human-friendly text on request) and, in
//! [`metrics`], the Prometheus metrics.
//!
//! Logs never carry a token, a password, a secret or a request body: spans record ids, slugs
//! and route templates only, and the one access-log line per request is written by
//! [`crate::middleware::request_id`].

pub mod access;
pub mod metrics;

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Lines a burst may queue before request threads wait for the writer (never dropped).
const QUEUED_LINES: usize = 64 * 1024;

/// Keeps the log writer running; dropping it writes out what is queued. Hold it until exit.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the global subscriber. Calling it again (as tests do) keeps the first one.
///
/// Lines are formatted on the thread that logs and written to stdout by one writer thread, in
/// batches (a write per batch, not per line): with a `write` per line, request threads
/// contended for stdout's lock and spent an eighth of the server's CPU in the kernel.
pub fn init(config: &LogConfig) -> LogGuard {
    init_to(config, std::io::stdout())
}

/// As [`init`], writing to standard error: for the commands whose standard output is their
/// answer (`plinth tenant …`, `audit verify`, `migrate`), which a log line must not get into.
pub fn init_for_command(config: &LogConfig) -> LogGuard {
    init_to(config, std::io::stderr())
}

fn init_to(config: &LogConfig, out: impl std::io::Write + Send + 'static) -> LogGuard {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("plinth-log")
        .finish(BufWriter::with_capacity(64 * 1024, out));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer.clone());
    let result = if config.json {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() && config.json {
        access::install(writer);
    }
    // Already installed: keep the first subscriber (and let this writer stop).
    LogGuard(result.is_ok().then_some(guard))
}
