//! Time: what the use cases and the adapters that keep time ask for "now".

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

/// The time, injected so that tests can move it instead of waiting for it. Every reading is
/// infallible: a clock talks to no dependency.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time in UTC, truncated to whole microseconds (as the domain keeps
    /// timestamps: see [`crate::clock::truncate`]).
    fn now(&self) -> OffsetDateTime;

    /// A monotonic reading: the time since this clock's own origin. It never goes backwards
    /// (the wall clock may, when it is set), so it is what expiry deadlines in memory use;
    /// readings of different clocks can't be compared.
    fn elapsed(&self) -> Duration;
}
