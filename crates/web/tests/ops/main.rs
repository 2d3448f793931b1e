//! Operations, black-box: metrics, logs, readiness, graceful shutdown and the OpenAPI
//! document's completeness. Tests that read metrics, logs or exit codes run the real `plinth`
//! binary (the metrics recorder is process-wide); the others run it in this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/harness.rs"]
mod harness;
mod helpers;

mod docs_page;
mod email_log;
mod events;
mod export;
mod logs;
mod migrate;
mod openapi;
mod prometheus;
mod promql;
mod readiness;
mod scrape;
mod shutdown;
mod timing;
mod traces;
