//! Redis adapters: the shared L2 cache store, the GCRA rate limiter every instance shares,
//! and the per-tenant cache generations with their invalidation bus.
//!
//! Architecture invariants: no Redis error crosses a port (each becomes `Unavailable`); every
//! command has a short timeout, and after a failure the adapter stops trying for a moment
//! (a circuit breaker) so that a Redis outage costs requests nothing but a flag check; every
//! key carries the configured prefix, and tenant keys carry `{t:<tenant>}` so a tenant's keys
//! share one cluster slot.

mod cache;
mod conn;
mod generations;
mod limiter;
mod residue;

pub use cache::RedisCache;
pub use conn::{RedisConn, RedisSettings};
pub use generations::{RedisGenerations, SHARDS};
pub use limiter::RedisLimiter;
pub use residue::RedisResidue;
