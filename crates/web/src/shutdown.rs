//! Graceful shutdown as one signal that everything winding down observes.
//!
//! Phases, in order: [`Phase::Running`]; [`Phase::Draining`] (`/readyz` answers 503 so load
//! balancers move traffic away, while the API still serves everything it is sent); then
//! [`Phase::Stopping`] (the listener is closed, in-flight requests and the worker's jobs in hand
//! get the grace period to finish). A phase never goes back.
//!
//! SIGTERM or SIGINT starts draining; a second one cuts the drain short. Tests (and anything
//! embedding the server) trigger the same path through a [`ShutdownHandle`]. Background work
//! (the job worker, periodic tasks) takes a [`ShutdownSignal`] and stops at the phase it cares
//! about: [`ShutdownSignal::stopping`] for "stop claiming new work".

use std::sync::Arc;

use tokio::sync::watch;

/// Where the process is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving; ready.
    Running,
    /// Still serving, but not ready: load balancers should stop sending new traffic.
    Draining,
    /// The listener is closed; in-flight work is finishing.
    Stopping,
}

/// Moves the shutdown forward. Cloneable; every clone drives the same shutdown.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<Phase>>,
}

/// Observes the shutdown. Cloneable and cheap.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Phase>,
}

/// A new shutdown, in [`Phase::Running`].
pub fn channel() -> (ShutdownHandle, ShutdownSignal) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownHandle { tx: Arc::new(tx) }, ShutdownSignal { rx })
}

impl ShutdownHandle {
    /// Asks for a graceful shutdown: starts draining, or (when already draining) ends the drain
    /// now. Returns the phase it moved to.
    pub fn trigger(&self) -> Phase {
        let mut now = Phase::Running;
        self.tx.send_if_modified(|phase| {
            let next = match *phase {
                Phase::Running => Phase::Draining,
                Phase::Draining | Phase::Stopping => Phase::Stopping,
            };
            now = next;
            std::mem::replace(phase, next) != next
        });
        now
    }

    /// Moves to `phase` unless the shutdown is already past it.
    pub fn advance(&self, phase: Phase) {
        self.tx.send_if_modified(|current| {
            let moved = phase > *current;
            if moved {
                *current = phase;
            }
            moved
        });
    }

    /// An observer of this shutdown.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal { rx: self.tx.subscribe() }
    }
}

impl ShutdownSignal {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Whether shutdown has begun (draining or stopping).
    pub fn is_shutting_down(&self) -> bool {
        self.phase() > Phase::Running
    }

    /// Returns once the shutdown has reached `phase` (at once if it already has). If every
    /// handle is gone, nothing can move the shutdown any more, and this returns too.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Returns once draining has begun: `/readyz` fails from then on.
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Returns once the listener is closing: the moment to stop claiming new work.
    pub async fn stopping(&self) {
        self.reached(Phase::Stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_trigger_drains_and_a_second_one_stops() {
        let (handle, signal) = channel();
        assert_eq!(signal.phase(), Phase::Running);
        assert!(!signal.is_shutting_down());
        assert_eq!(handle.trigger(), Phase::Draining);
        assert!(signal.is_shutting_down());
        assert_eq!(handle.trigger(), Phase::Stopping);
        assert_eq!(handle.trigger(), Phase::Stopping);
        assert_eq!(signal.phase(), Phase::Stopping);
    }

    #[test]
    fn a_phase_never_goes_back() {
        let (handle, signal) = channel();
        handle.advance(Phase::Stopping);
        handle.advance(Phase::Draining);
        assert_eq!(signal.phase(), Phase::Stopping);
    }

    #[tokio::test]
    async fn observers_wake_when_the_phase_is_reached() {
        use std::future::Future as _;
        use std::task::{Context, Poll, Waker};
        let (handle, signal) = channel();
        let mut cx = Context::from_waker(Waker::noop());
        let mut stopping = std::pin::pin!(signal.stopping());
        assert_eq!(stopping.as_mut().poll(&mut cx), Poll::Pending, "running is not stopping");
        handle.trigger();
        assert_eq!(stopping.as_mut().poll(&mut cx), Poll::Pending, "draining is not stopping");
        handle.trigger();
        assert_eq!(stopping.as_mut().poll(&mut cx), Poll::Ready(()), "stopping is reached");
        // Already reached: returns at once.
        assert_eq!(std::pin::pin!(signal.draining()).poll(&mut cx), Poll::Ready(()));
    }

    #[tokio::test]
    async fn observers_return_when_every_handle_is_gone() {
        let (handle, signal) = channel();
        drop(handle);
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), signal.stopping()).await;
        assert!(done.is_ok());
    }
}
