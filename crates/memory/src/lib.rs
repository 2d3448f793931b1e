//! In-process adapters: repositories in memory, the quick_cache L1, per-process cache
//! generations and the governor rate limiter.
//!
//! Architecture invariant: this crate depends on `plinth-domain` and on no other workspace
//! crate. Its adapters serve a single instance: `cargo run` on a bare machine, the tests, and
//! the local half of the tiered cache and the fallback limiter.

mod generations;
mod l1;
mod limiter;
mod store;

pub use generations::MemoryGenerations;
pub use l1::L1Cache;
pub use limiter::GovernorLimiter;
pub use store::MemoryStore;
