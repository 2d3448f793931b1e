//! Every port conformance suite, run against the memory adapters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use plinth_domain::conformance::Storage;
use plinth_domain::conformance::jobs::{self, Queue};
use plinth_memory::{GovernorLimiter, L1Cache, MemoryGenerations, MemoryStore};

fn storage() -> Storage {
    Storage::shared(Arc::new(MemoryStore::new(Arc::new(plinth_domain::clock::SystemClock::new()))))
}

/// A store of its own for the queue suites, capped, storing the trace context the suite sets.
fn queue() -> Queue {
    let store = MemoryStore::new(Arc::new(plinth_domain::clock::SystemClock::new()))
        .with_max_pending_jobs(jobs::CAP)
        .with_trace_propagation(jobs::propagation());
    let store = Arc::new(store);
    Queue::shared(store.clone(), Storage::shared(store))
}

plinth_domain::tenant_repository_suite!(storage());
plinth_domain::user_repository_suite!(storage());
plinth_domain::project_repository_suite!(storage());
plinth_domain::idempotency_store_suite!(storage());
plinth_domain::cache_store_suite!(|clock| Arc::new(L1Cache::with_capacity_bytes(1 << 20, clock)));
plinth_domain::generation_store_suite!(Arc::new(MemoryGenerations::new()), always_local);
plinth_domain::rate_limiter_suite!(|clock| Arc::new(GovernorLimiter::new(clock)));
plinth_domain::webhook_repository_suite!(storage());
plinth_domain::job_queue_suite!(queue());
plinth_domain::webhook_operations_suite!(queue());
plinth_domain::session_repository_suite!(storage());
plinth_domain::account_emails_suite!(storage());
plinth_domain::audit_suite!(storage());
plinth_domain::tenant_exporter_suite!(storage());
plinth_domain::event_log_suite!(queue());
