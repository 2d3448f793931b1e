//! plinth's domain: validated values, entities, the ports adapters implement, and the use cases.
//!
//! Architecture invariant: this crate performs no I/O and depends on no I/O crate (no actix,
//! tokio-postgres, redis, quick_cache, governor or jsonwebtoken; the `metrics` facade is not one: it
//! only hands numbers to whatever recorder the binary installs). Adapters depend on it, never
//! the other way round. What combines two adapters of one port (the tiered cache, the fallback
//! limiter) is a decorator written here, over the port.

pub mod audit;
pub mod cache;
pub mod clock;
pub mod entities;
pub mod error;
pub mod events;
pub mod export;
pub mod hex;
pub mod host;
pub mod ids;
pub mod mail;
pub mod metric;
pub mod page;
pub mod plans;
pub mod ports;
pub mod rate_limit;
pub mod tagged;
pub mod timing;
pub mod trace;
pub mod usecases;
pub mod values;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::{Conflict, Error, FieldError, Result};
