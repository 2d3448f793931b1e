//! `cached()` over the Redis store: single flight, and invalidation through generations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use plinth_domain::cache::{Cache, Scope};
use plinth_domain::ids::TenantId;
use plinth_domain::ports::CacheStore;
use plinth_redis::{RedisCache, RedisConn, RedisGenerations, RedisSettings};
use plinth_testkit::{redis_prefix, shared_redis_url};

fn cache() -> Arc<Cache> {
    let mut settings = RedisSettings::new(vec![shared_redis_url()]);
    settings.prefix = redis_prefix();
    let conn = RedisConn::new(&settings).unwrap();
    let l2: Arc<dyn CacheStore> = Arc::new(RedisCache::new(conn.clone()));
    Arc::new(Cache::new(Some(l2.clone()), Some(l2), Arc::new(RedisGenerations::start(conn))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_cold_requests_cause_one_fetch() {
    let cache = cache();
    let tenant = TenantId::new();
    let fetches = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tokio::spawn(async move {
                cache
                    .cached(Scope::Tenant(tenant), "hot", Duration::from_secs(30), || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Bytes::from_static(b"value"))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "value");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalidating_a_tenant_makes_its_next_read_fetch_again() {
    let cache = cache();
    let tenant = TenantId::new();
    let read = |v: &'static str| {
        let cache = cache.clone();
        async move {
            cache
                .cached(Scope::Tenant(tenant), "k", Duration::from_secs(30), || async move {
                    Ok(Bytes::from_static(v.as_bytes()))
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(read("first").await, "first");
    assert_eq!(read("second").await, "first", "served from the cache");
    cache.invalidate(tenant).await;
    assert_eq!(read("third").await, "third", "a new generation misses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_the_first_command_of_an_idle_connection_succeeds() {
    let mut redis = plinth_testkit::PrivateRedis::start();
    let mut settings = RedisSettings::new(vec![redis.url()]);
    settings.prefix = redis_prefix();
    let store = RedisCache::new(RedisConn::new(&settings).unwrap());
    store.set("k", Bytes::from_static(b"before"), Duration::from_secs(30)).await.unwrap();
    // The connection sits idle while the server dies and comes back empty.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.set("k", Bytes::from_static(b"after"), Duration::from_secs(30)).await.expect("the first command after");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"after"[..]));
}
