//! Port conformance suites: one per port, written once here, run against every adapter.
//!
//! Each port has a module of `pub async fn`s, one behaviour each, named as a sentence, and an
//! exported macro that expands to one `#[test]` per behaviour (each on its own current-thread
//! tokio runtime, like `#[tokio::test]`), inside a module named after the port, so that a
//! failure names the adapter's broken behaviour:
//!
//! ```ignore
//! use std::sync::Arc;
//! use plinth_domain::conformance::Storage;
//!
//! plinth_domain::tenant_repository_suite!(Storage::shared(Arc::new(MemoryStore::new(Arc::new(SystemClock::new())))));
//! plinth_domain::cache_store_suite!(Arc::new(L1Cache::with_capacity_bytes(1 << 20)));
//! ```
//!
//! The macro's argument is an expression evaluated afresh inside every test, in async context
//! (it may `.await`), so each test gets its own fixture. It is pasted into a module that
//! glob-imports the invoking module, so names imported there can be used in it.
//!
//! The suites assume nothing about a fresh backend: every test makes its own tenants, keys and
//! subjects with random names, so a suite may also run against one shared database or Redis.
//!
//! | macro | fixture expression |
//! | --- | --- |
//! | `tenant_repository_suite!` | [`Storage`] |
//! | `user_repository_suite!` | [`Storage`] |
//! | `project_repository_suite!` | [`Storage`] |
//! | `idempotency_store_suite!` | [`Storage`] |
//! | `webhook_repository_suite!` | [`Storage`] |
//! | `session_repository_suite!` | [`Storage`] |
//! | `account_emails_suite!` | [`Storage`] |
//! | `audit_suite!` | [`Storage`] (the audit log and API keys) |
//! | `event_log_suite!` | [`jobs::Queue`] over a store of its own, capped at [`jobs::CAP`] (the events writes store, read back, and pruned with the queue) |
//! | `tenant_exporter_suite!` | [`Storage`] |
//! | `cache_store_suite!` | `Arc<dyn CacheStore>` (or an `Arc` of an adapter) |
//! | `generation_store_suite!` | `Arc<dyn GenerationStore>`; add `, always_local` for a store whose `local_ok` is always true |
//! | `rate_limiter_suite!` | `Arc<dyn RateLimiter>` |
//! | `job_queue_suite!` | [`jobs::Queue`] over a store of its own, capped at [`jobs::CAP`] and given [`jobs::propagation`] (the trace context a job stores) |
//! | `webhook_operations_suite!` | [`jobs::Queue`], as for `job_queue_suite!` |
//!
//! The cache-store and rate-limiter suites test expiry and earning back, so time must pass.
//! An adapter that keeps time by an injected [`Clock`](crate::ports::Clock) is given as a
//! closure from that clock to the fixture, and the suite advances a [`ManualClock`]:
//! `cache_store_suite!(|clock| Arc::new(L1Cache::with_capacity_bytes(1 << 20, clock)))`. An
//! adapter whose engine keeps time (Redis' key TTLs, its `TIME`) is given as a plain fixture,
//! and the suite waits for real.

// Test support: a failed expectation here is a failed test, which is what panicking reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
pub mod audit;
pub mod cache;
pub mod events;
pub mod export;
pub mod fixtures;
pub mod generations;
pub mod idempotency;
pub mod jobs;
pub mod projects;
pub mod rate_limit;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod webhook_ops;
pub mod webhooks;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;

use crate::ports::{
    AccountEmails, ApiKeyRepository, AuditLog, EventLog, IdempotencyStore, ProjectRepository, SessionRepository,
    TenantExporter, TenantRepository, UserRepository, WebhookRepository,
};

/// The storage ports of one backend, sharing one store: the repository suites create tenants
/// (and users) first, as a database with foreign keys requires.
#[derive(Clone)]
pub struct Storage {
    /// Tenants.
    pub tenants: Arc<dyn TenantRepository>,
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Projects.
    pub projects: Arc<dyn ProjectRepository>,
    /// Idempotency keys (which belong to a tenant's user).
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Webhooks and the deliveries project writes create.
    pub webhooks: Arc<dyn WebhookRepository>,
    /// Sessions and their refresh tokens (which belong to a tenant's user).
    pub sessions: Arc<dyn SessionRepository>,
    /// Invitations, emailed tokens and their messages.
    pub accounts: Arc<dyn AccountEmails>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyRepository>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The events writes store.
    pub events: Arc<dyn EventLog>,
    /// Tenants' exports.
    pub exporter: Arc<dyn TenantExporter>,
    /// Whatever must live as long as the test (a test database), dropped with the fixture.
    pub guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Storage {
    /// Every storage port from one adapter that implements them all.
    pub fn shared<S>(store: Arc<S>) -> Self
    where
        S: TenantRepository
            + UserRepository
            + ProjectRepository
            + IdempotencyStore
            + WebhookRepository
            + SessionRepository
            + AccountEmails
            + ApiKeyRepository
            + AuditLog
            + EventLog
            + TenantExporter
            + 'static,
    {
        Self {
            tenants: store.clone(),
            users: store.clone(),
            projects: store.clone(),
            idempotency: store.clone(),
            webhooks: store.clone(),
            sessions: store.clone(),
            accounts: store.clone(),
            api_keys: store.clone(),
            audit: store.clone(),
            events: store.clone(),
            exporter: store,
            guard: None,
        }
    }

    /// Keeps `guard` alive until the test that uses this fixture ends.
    pub fn keep_alive(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Some(Arc::new(guard));
        self
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

/// How a suite makes time pass for the adapter under test.
#[derive(Debug, Clone)]
pub enum Time {
    /// The adapter keeps time by this clock: the suite advances it.
    Manual(Arc<ManualClock>),
    /// The adapter's engine keeps time (Redis' key TTLs, its `TIME`), which no injected clock
    /// moves: the suite waits.
    Engine,
}

impl Time {
    /// Lets `d` pass, as the adapter sees it.
    pub async fn pass(&self, d: Duration) {
        match self {
            Self::Manual(clock) => clock.advance(d),
            Self::Engine => tokio::time::sleep(d).await,
        }
    }
}

/// Runs one test on a fresh current-thread runtime with every driver enabled, as
/// `#[tokio::test]` does; the suites' macros call it so adapters need no tokio macros.
#[doc(hidden)]
pub fn run<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the test runtime starts").block_on(test)
}

/// One `#[test]` per named behaviour of `$suite`, each with a fresh `$fixture`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:ident, $fixture:expr, $($test:ident),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::conformance::run(async {
                    $crate::conformance::$suite::$test($fixture).await;
                });
            }
        )+
    };
}

/// As `__conformance_tests!`, for a suite whose `$timed` behaviours also take a [`Time`]: the
/// fixture is either `|clock| expr` (an adapter on the injected clock, given a `ManualClock`
/// that the suite advances) or a plain expression (the engine keeps time; the suite waits).
#[doc(hidden)]
#[macro_export]
macro_rules! __timed_conformance_tests {
    ($suite:ident, |$clock:ident| $fixture:expr, [$($test:ident),* $(,)?], [$($timed:ident),* $(,)?] $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::conformance::run(async {
                    let $clock: ::std::sync::Arc<dyn $crate::ports::Clock> =
                        ::std::sync::Arc::new($crate::clock::ManualClock::new());
                    $crate::conformance::$suite::$test($fixture).await;
                });
            }
        )*
        $(
            #[test]
            fn $timed() {
                $crate::conformance::run(async {
                    let manual = ::std::sync::Arc::new($crate::clock::ManualClock::new());
                    let $clock: ::std::sync::Arc<dyn $crate::ports::Clock> = manual.clone();
                    let time = $crate::conformance::Time::Manual(manual);
                    $crate::conformance::$suite::$timed($fixture, time).await;
                });
            }
        )*
    };
    ($suite:ident, $fixture:expr, [$($test:ident),* $(,)?], [$($timed:ident),* $(,)?] $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::conformance::run(async {
                    $crate::conformance::$suite::$test($fixture).await;
                });
            }
        )*
        $(
            #[test]
            fn $timed() {
                $crate::conformance::run(async {
                    $crate::conformance::$suite::$timed($fixture, $crate::conformance::Time::Engine).await;
                });
            }
        )*
    };
}
