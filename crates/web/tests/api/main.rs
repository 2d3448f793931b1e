//! Black-box API tests: a real plinth on port 0, on the memory adapters and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/harness.rs"]
mod harness;
mod helpers;

mod attacks;
mod auth;
mod deliveries;
mod emails;
mod errors;
mod events;
mod export;
mod fault_load;
mod faults;
mod gate;
mod headers;
mod hosts;
mod idempotency;
mod keys;
mod lifecycle;
mod plans;
mod platform;
mod projects;
mod rate_limit;
mod replicas;
mod server_limits;
mod sessions;
mod shared;
mod signup;
mod smoke;
mod users;
mod webhook_ops;
mod webhooks;
