//! PostgreSQL adapters: tenants, users, projects, idempotency keys, webhooks, deliveries, the
//! event log and the job queue in one shared database, isolated by Row-Level Security; and the migrations that set
//! that up.
//!
//! Architecture invariants: every tenant-scoped statement runs in a transaction that first
//! sets `app.current_tenant` (a bound parameter, transaction-local); no SQL is built by string
//! formatting; driver errors become domain errors here and never cross a port.

mod accounts;
mod audit;
mod caps;
mod error;
mod events;
mod export;
mod idempotency;
mod jobs;
pub mod keyset;
pub mod migrate;
mod op;
mod pool;
mod projects;
mod replicas;
pub mod seed;
mod sessions;
mod tenants;
mod users;
mod webhooks;

pub use error::PgError;
/// The statement a claim runs, for tests that look at its plan.
pub use jobs::CLAIM_SQL;
pub use pool::{PgSettings, PgStore, PoolStatus};
pub use replicas::{CHECK_EVERY as REPLICA_CHECK_EVERY, ReplicaSettings};

/// Every list's statements, as the adapters prepare them (for plan tests).
pub mod lists {
    pub use crate::events::{LIST as EVENTS, LIST_OF_KIND as EVENTS_OF_KIND};
    pub use crate::projects::LIST as PROJECTS;
    pub use crate::users::LIST as USERS;
    pub use crate::webhooks::{DELIVERIES, LIST as WEBHOOKS};
}
