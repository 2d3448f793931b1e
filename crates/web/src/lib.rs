//! plinth's web layer: the actix-web API, its middleware, configuration and the composition
//! root that picks one adapter per port.
//!
//! Architecture invariant: this is the only crate that knows every adapter. Handlers are
//! thin: extract, call one use case, map the result; no SQL or Redis here.

pub mod api;
pub mod cli;
pub mod composition;
pub mod config;
pub mod middleware;
pub mod problem;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod worker;

pub use config::Config;
pub use startup::Application;
