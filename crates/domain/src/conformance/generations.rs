//! `GenerationStore` conformance: a tenant's generation holds until bumped, per tenant.

use std::sync::Arc;

use crate::ids::TenantId;
use crate::ports::{Generation, GenerationStore};

/// Every `GenerationStore` behaviour, as named tests; the argument is an `Arc` of the store.
/// With `, always_local` the store must also always allow the local cache (an in-process store
/// hears every write of its process).
#[macro_export]
macro_rules! generation_store_suite {
    ($fixture:expr, always_local $(,)?) => {
        mod generation_store {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                generations,
                $fixture,
                a_generation_holds_until_bumped,
                bumping_changes_the_generation,
                tenants_have_independent_generations,
                the_local_cache_is_always_trusted,
            );
        }
    };
    ($fixture:expr $(,)?) => {
        mod generation_store {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                generations,
                $fixture,
                a_generation_holds_until_bumped,
                bumping_changes_the_generation,
                tenants_have_independent_generations,
            );
        }
    };
}

async fn current(store: &dyn GenerationStore, tenant: TenantId) -> Generation {
    store.current(tenant).await.expect("current succeeds")
}

/// Reading a tenant's generation again, without a bump, gives the same value.
pub async fn a_generation_holds_until_bumped(store: Arc<dyn GenerationStore>) {
    let tenant = TenantId::new();
    let first = current(&*store, tenant).await;
    for _ in 0..3 {
        assert_eq!(current(&*store, tenant).await.value, first.value);
    }
}

/// After `bump`, the tenant's generation is a new one, every time.
pub async fn bumping_changes_the_generation(store: Arc<dyn GenerationStore>) {
    let tenant = TenantId::new();
    let mut seen = vec![current(&*store, tenant).await.value];
    for _ in 0..3 {
        store.bump(tenant).await.expect("bump succeeds");
        let now = current(&*store, tenant).await.value;
        assert!(!seen.contains(&now), "generation {now:x} came back after a bump");
        assert_eq!(current(&*store, tenant).await.value, now);
        seen.push(now);
    }
}

/// Bumping one tenant leaves the others' generations alone.
pub async fn tenants_have_independent_generations(store: Arc<dyn GenerationStore>) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let a_before = current(&*store, a).await.value;
    let b_before = current(&*store, b).await.value;
    store.bump(a).await.expect("bump succeeds");
    assert_ne!(current(&*store, a).await.value, a_before);
    assert_eq!(current(&*store, b).await.value, b_before);
}

/// `local_ok` is true for every tenant, before and after a bump.
pub async fn the_local_cache_is_always_trusted(store: Arc<dyn GenerationStore>) {
    let tenant = TenantId::new();
    assert!(current(&*store, tenant).await.local_ok);
    store.bump(tenant).await.expect("bump succeeds");
    assert!(current(&*store, tenant).await.local_ok);
}
