//! Which of an adapter's per-thread resources the calling thread uses.
//!
//! Architecture invariant: no dependencies; only adapters that keep per-thread connections use
//! it (the PostgreSQL pools, the Redis connections). It is runtime mechanics, not domain.
//!
//! A tokio-postgres or Redis connection runs its I/O as a task on the runtime of the thread that
//! opened it, and each actix worker runs its own single-threaded runtime. A connection shared by
//! every worker therefore wakes another thread for each message when the wrong worker uses it.
//! Adapters keep one pool or connection per slot and use `slot(n)`'s.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many slots adapters keep: one per CPU the process may use (actix's default number of
/// workers), and one for every other thread (start-up, the job worker).
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) + 1
}

/// The calling thread's slot among `n` (0 when `n` is 0): threads are numbered in the order
/// they first ask, so the first `n` to ask get a slot each.
pub fn slot(n: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| number.checked_rem(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_slot_and_threads_take_turns() {
        let n = 1_000_000;
        let here = slot(n);
        assert_eq!(slot(n), here);
        let there = std::thread::spawn(move || slot(n)).join().unwrap_or(here);
        assert_ne!(there, here);
        assert_eq!(slot(0), 0);
        assert_eq!(slot(1), 0);
        assert!(slots() >= 2);
    }
}
