//! Timestamps as the domain keeps them: UTC, truncated to whole microseconds; and the clocks
//! that implement the [`Clock`] port.
//!
//! PostgreSQL stores microseconds; truncating here makes every adapter agree on ordering and
//! equality, so keyset cursors behave the same on the memory and the Postgres adapters.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::ports::Clock;

/// The system's current time, truncated to microseconds. Code that has a [`Clock`] asks it
/// instead; this is [`SystemClock`]'s wall-clock reading, for the code not yet given one.
pub fn now() -> OffsetDateTime {
    truncate(OffsetDateTime::now_utc())
}

/// `t` truncated to whole microseconds.
pub fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}

/// Microseconds since the Unix epoch.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The timestamp `micros` microseconds after the Unix epoch, if representable.
pub fn from_micros(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()
}

/// The system's clocks: the wall clock for [`Clock::now`], `Instant` for [`Clock::elapsed`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic readings start now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        now()
    }

    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that stands still until a test moves it: both readings advance together, by
/// exactly what [`ManualClock::advance`] is given.
#[cfg(feature = "testing")]
#[derive(Debug)]
pub struct ManualClock {
    state: std::sync::Mutex<(OffsetDateTime, Duration)>,
}

#[cfg(feature = "testing")]
impl ManualClock {
    /// A clock that reads the system's time now, and stays there.
    pub fn new() -> Self {
        Self::at(now())
    }

    /// A clock that reads `t` (truncated to microseconds), and stays there.
    pub fn at(t: OffsetDateTime) -> Self {
        Self { state: std::sync::Mutex::new((truncate(t), Duration::ZERO)) }
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 = truncate(state.0.saturating_add(time::Duration::try_from(by).unwrap_or(time::Duration::MAX)));
        state.1 = state.1.saturating_add(by);
    }
}

#[cfg(feature = "testing")]
impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "testing")]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0
    }

    fn elapsed(&self) -> Duration {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_no_sub_microsecond_part() {
        assert_eq!(now().nanosecond() % 1_000, 0);
        assert_eq!(SystemClock::new().now().nanosecond() % 1_000, 0);
    }

    #[test]
    fn micros_round_trip() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), Some(t));
    }

    #[cfg(feature = "testing")]
    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_by_exactly_that() {
        let clock = ManualClock::new();
        let (t0, e0) = (clock.now(), clock.elapsed());
        assert_eq!((clock.now(), clock.elapsed()), (t0, e0));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - t0, time::Duration::milliseconds(1500));
        assert_eq!(clock.elapsed() - e0, Duration::from_millis(1500));
    }
}
