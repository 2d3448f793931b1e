//! Structured logs (JSON lines by default, human-friendly text on request), in [`metrics`],
//! the Prometheus metrics and, in [`traces`], OpenTelemetry spans when an OTLP endpoint is
//! configured.
//!
//! Logs never carry a token, a password, a secret or a request body: spans record ids, slugs
//! and route templates only, and the one access-log line per request is written by
//! [`crate::middleware::request_id`].

pub mod access;
pub mod metrics;
pub mod traces;

use std::io::BufWriter;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogConfig;

/// Lines a burst may queue before request threads wait for the writer (never dropped).
const QUEUED_LINES: usize = 64 * 1024;

/// Keeps the log writer (and the span exporter, when traces are on) running; dropping it writes
/// out what is queued and exports the spans not yet sent. Hold it until exit.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    /// Declared first: dropped (spans flushed) while the log writer still runs.
    traces: Option<SdkTracerProvider>,
    _writer: Option<WorkerGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "the last spans could not be exported");
        }
    }
}

/// Installs the global subscriber. Calling it again (as tests do) keeps the first one.
///
/// Lines are formatted on the thread that logs and written to stdout by one writer thread, in
/// batches (a write per batch, not per line): with a `write` per line, request threads
/// contended for stdout's lock and spent an eighth of the server's CPU in the kernel.
///
/// With [`LogConfig::traces`], a second layer exports spans over OTLP (see [`traces`]): the
/// log lines then keep `PLINTH_LOG`'s filter as a filter of their own, and the span layer takes
/// plinth's spans from debug level up, and warnings and errors as span events.
pub fn init(config: &LogConfig) -> LogGuard {
    match &config.traces {
        None => init_to(config, std::io::stdout()),
        Some(traces) => match traces::provider(traces) {
            Ok(provider) => init_traced(config, provider),
            Err(e) => {
                let guard = init_to(config, std::io::stdout());
                tracing::error!(error = %e, "traces are off");
                guard
            }
        },
    }
}

/// As [`init`], writing to standard error: for the commands whose standard output is their
/// answer (`plinth tenant …`, `audit verify`, `migrate`), which a log line must not get into.
pub fn init_for_command(config: &LogConfig) -> LogGuard {
    init_to(config, std::io::stderr())
}

/// A non-blocking writer to `out` and the guard that keeps its thread running.
fn writer(out: impl std::io::Write + Send + 'static) -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("plinth-log")
        .finish(BufWriter::with_capacity(64 * 1024, out))
}

/// As [`init_to`] on stdout, with the OpenTelemetry layer beside the log lines' (each with its
/// own filter, so the debug spans traced are not logged).
fn init_traced(config: &LogConfig, provider: SdkTracerProvider) -> LogGuard {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = writer(std::io::stdout());
    let lines = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    let lines = if config.json {
        lines.json().flatten_event(true).with_current_span(false).with_span_list(false).with_filter(filter).boxed()
    } else {
        lines.with_filter(filter).boxed()
    };
    let spans = traces::layer(&provider).with_filter(
        tracing_subscriber::filter::dynamic_filter_fn(|meta, cx| {
            // A database call or Redis command outside any span (a worker's idle poll, a
            // periodic task's) would be a trace of one span: not exported.
            !(meta.is_span() && matches!(meta.name(), "db" | "redis")) || cx.lookup_current().is_some()
        })
        .with_callsite_filter(|meta| {
            use tracing::subscriber::Interest;
            if meta.is_span() {
                let ours = meta.target().starts_with("plinth") && *meta.level() <= tracing::Level::DEBUG;
                match (ours, matches!(meta.name(), "db" | "redis")) {
                    (false, _) => Interest::never(),
                    (true, true) => Interest::sometimes(),
                    (true, false) => Interest::always(),
                }
            } else if *meta.level() <= tracing::Level::WARN {
                Interest::always()
            } else {
                Interest::never()
            }
        }),
    );
    let result = tracing_subscriber::registry().with(lines).with(spans).try_init();
    if result.is_ok() && config.json {
        access::install(writer);
    }
    match result {
        Ok(()) => LogGuard { traces: Some(provider), _writer: Some(guard) },
        // Already installed: keep the first subscriber; these spans go nowhere.
        Err(_) => LogGuard { traces: Some(provider), _writer: None },
    }
}

fn init_to(config: &LogConfig, out: impl std::io::Write + Send + 'static) -> LogGuard {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = writer(out);
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
    LogGuard { traces: None, _writer: result.is_ok().then_some(guard) }
}
