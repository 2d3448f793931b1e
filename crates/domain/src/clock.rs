//! Timestamps as the domain keeps them: UTC, truncated to whole microseconds.
//!
//! PostgreSQL stores microseconds; truncating here makes every adapter agree on ordering and
//! equality, so keyset cursors behave the same on the memory and the Postgres adapters.

use time::OffsetDateTime;

/// The current time, truncated to microseconds.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_no_sub_microsecond_part() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }

    #[test]
    fn micros_round_trip() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), Some(t));
    }
}
