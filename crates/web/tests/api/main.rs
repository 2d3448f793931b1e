//! Black-box API tests: a real plinth on port 0, on the memory adapters and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod faults;
mod smoke;
