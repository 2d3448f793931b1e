//! `plinth_domain::cache::Cache` over the memory adapters: one fetch per key however many
//! wait, and invalidation by generation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use plinth_domain::cache::{Cache, Scope};
use plinth_domain::ids::TenantId;
use plinth_memory::{L1Cache, MemoryGenerations};

fn cache() -> Arc<Cache> {
    let l1 = Arc::new(L1Cache::with_capacity_bytes(1 << 20, Arc::new(plinth_domain::clock::SystemClock::new())));
    Arc::new(Cache::new(Some(l1), None, Arc::new(MemoryGenerations::new())))
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_cold_requests_for_one_key_fetch_it_once() {
    let cache = cache();
    let fetches = Arc::new(AtomicUsize::new(0));
    let tenant = TenantId::new();
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tokio::spawn(async move {
                cache
                    .cached(Scope::Tenant(tenant), "projects:l50", TTL, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Bytes::from_static(b"[]"))
                    })
                    .await
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), Bytes::from_static(b"[]"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalidating_a_tenant_makes_its_next_read_miss() {
    let cache = cache();
    let (tenant, other) = (TenantId::new(), TenantId::new());
    let fetches = AtomicUsize::new(0);
    let read = |tenant| {
        let fetches = &fetches;
        let cache = &cache;
        async move {
            cache
                .cached(Scope::Tenant(tenant), "project:1", TTL, || async {
                    let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(Bytes::from(format!("fetch {n}")))
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(read(tenant).await, "fetch 1");
    assert_eq!(read(tenant).await, "fetch 1");
    assert_eq!(read(other).await, "fetch 2");
    cache.invalidate(tenant).await;
    assert_eq!(read(tenant).await, "fetch 3");
    assert_eq!(read(tenant).await, "fetch 3");
    assert_eq!(read(other).await, "fetch 2");
}
