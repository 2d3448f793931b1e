//! Where one request's time goes, by [`Phase`]: a per-request accumulator that adapters record
//! into without knowing about the web layer.
//!
//! The web layer runs a request inside [`scope`] (only when it will report the timings, the
//! `Server-Timing` header); everything the request's task awaits can then [`record`] a phase's
//! duration, and [`measure`] one with a guard. Outside a scope both are no-ops that read no
//! clock, so the instrumented code costs a thread-local lookup when nobody asks. The scope is a
//! task-local: it follows the request's future across every `.await`, but not into tasks it
//! spawns or hands work to (a batch sent by another task is timed by whoever waits for it).
//!
//! Phases may overlap: a cache lookup that goes to Redis counts under both `cache` and
//! `redis`, and the gate's lookups under `gate` too.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

/// A part of a request's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The gate: tenant resolution, token check and rate limit.
    Gate,
    /// Cache lookups (each level's read, L1 and L2).
    Cache,
    /// Waiting for a database connection from the pool.
    Pool,
    /// Database calls: the statements of one port call on the connection it took.
    Db,
    /// Redis commands (or waiting for the batch that carries one).
    Redis,
    /// Serializing the answer's body.
    Ser,
}

impl Phase {
    /// Every phase, in the order they are reported.
    pub const ALL: [Phase; 6] = [Phase::Gate, Phase::Cache, Phase::Pool, Phase::Db, Phase::Redis, Phase::Ser];

    /// The phase's name in `Server-Timing`.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Gate => "gate",
            Phase::Cache => "cache",
            Phase::Pool => "pool",
            Phase::Db => "db",
            Phase::Redis => "redis",
            Phase::Ser => "ser",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What one request spent in each phase, and how many times it entered it.
#[derive(Debug, Default)]
pub struct Timings {
    spent: [Cell<Duration>; Phase::ALL.len()],
    counts: [Cell<u32>; Phase::ALL.len()],
}

impl Timings {
    fn add(&self, phase: Phase, took: Duration) {
        let i = phase.index();
        self.spent[i].set(self.spent[i].get().saturating_add(took));
        self.counts[i].set(self.counts[i].get().saturating_add(1));
    }

    /// The time spent in `phase`, summed, and how many times it was recorded.
    pub fn get(&self, phase: Phase) -> (Duration, u32) {
        (self.spent[phase.index()].get(), self.counts[phase.index()].get())
    }
}

tokio::task_local! {
    static CURRENT: Timings;
}

/// Runs `f` with a fresh accumulator; answers its output and what was recorded meanwhile.
pub async fn scope<F: Future>(f: F) -> (F::Output, Timings) {
    let mut scoped = std::pin::pin!(CURRENT.scope(Timings::default(), f));
    let output = scoped.as_mut().await;
    (output, scoped.take_value().unwrap_or_default())
}

/// Whether the caller runs inside a [`scope`].
pub fn enabled() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

/// Adds `took` to `phase` of the current request, if it is being timed.
pub fn record(phase: Phase, took: Duration) {
    let _ = CURRENT.try_with(|t| t.add(phase, took));
}

/// Times `phase` until the guard is dropped; `None` (no clock read) outside a scope.
#[must_use = "the phase is timed until the guard is dropped"]
pub fn measure(phase: Phase) -> Option<Measure> {
    enabled().then(|| Measure { phase, started: Instant::now() })
}

/// Records its phase's time when dropped (see [`measure`]).
#[derive(Debug)]
pub struct Measure {
    phase: Phase,
    started: Instant,
}

impl Drop for Measure {
    fn drop(&mut self) {
        record(self.phase, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_made_across_awaits_in_a_scope_are_summed_and_counted() {
        let ((), t) = scope(async {
            record(Phase::Db, Duration::from_micros(300));
            tokio::task::yield_now().await;
            record(Phase::Db, Duration::from_micros(200));
            let _g = measure(Phase::Ser);
            assert!(enabled());
        })
        .await;
        assert_eq!(t.get(Phase::Db), (Duration::from_micros(500), 2));
        assert_eq!(t.get(Phase::Ser).1, 1);
        assert_eq!(t.get(Phase::Redis), (Duration::ZERO, 0));
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_measured() {
        assert!(!enabled());
        assert!(measure(Phase::Gate).is_none());
        record(Phase::Gate, Duration::from_secs(1));
        let ((), t) = scope(async {}).await;
        assert_eq!(t.get(Phase::Gate), (Duration::ZERO, 0));
    }

    #[tokio::test]
    async fn a_spawned_task_is_outside_its_parents_scope() {
        let ((), t) = scope(async {
            let inner = tokio::spawn(async {
                record(Phase::Redis, Duration::from_millis(1));
                enabled()
            });
            assert_eq!(inner.await.ok(), Some(false));
        })
        .await;
        assert_eq!(t.get(Phase::Redis).1, 0);
    }
}
