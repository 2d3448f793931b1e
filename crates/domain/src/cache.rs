//! `cached(key, ttl, fetch)`: L1, then L2, then `fetch` once per key however many wait.
//!
//! Three pieces: [`TieredStore`], a decorator that puts one [`CacheStore`] in front of another,
//! [`MeteredStore`], which counts one level's reads, and [`Cache`], which names keys (with the
//! tenant's generation in them), coalesces concurrent misses (single flight) and never lets a
//! cache failure fail a request.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng as _;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::metric;
use crate::ports::{CacheStore, GenerationStore};
use crate::timing::{self, Phase};

/// Logs a dependency's failure once when it starts failing and once when it recovers, not on
/// every request; counts every failure (`component_errors_total`) and shows the state
/// (`component_degraded`), labelled with `component`.
#[derive(Debug)]
pub(crate) struct Degraded {
    what: &'static str,
    component: &'static str,
    down: AtomicBool,
}

impl Degraded {
    /// `what` names the dependency in logs; `component` is its metric label (snake case).
    pub(crate) const fn new(what: &'static str, component: &'static str) -> Self {
        Self { what, component, down: AtomicBool::new(false) }
    }

    pub(crate) fn failed(&self, error: &Error) {
        metrics::counter!(metric::COMPONENT_ERRORS, "component" => self.component).increment(1);
        if !self.down.swap(true, Ordering::Relaxed) {
            metrics::gauge!(metric::COMPONENT_DEGRADED, "component" => self.component).set(1.0);
            let cause = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
            tracing::warn!(error = %error, cause = %cause, "{} failing; degrading until it recovers", self.what);
        }
    }

    pub(crate) fn ok(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            metrics::gauge!(metric::COMPONENT_DEGRADED, "component" => self.component).set(0.0);
            tracing::info!("{} recovered", self.what);
        }
    }

    /// Counts one request served by this component's fallback.
    pub(crate) fn fell_back(&self) {
        metrics::counter!(metric::COMPONENT_FALLBACKS, "component" => self.component).increment(1);
    }
}

/// Counts the reads of one cache level in `cache_requests_total{layer, result}`; everything
/// else passes through untouched.
pub struct MeteredStore {
    layer: &'static str,
    inner: Arc<dyn CacheStore>,
    /// Made once: building a labelled series' key on every read cost more than the read.
    hit: metrics::Counter,
    miss: metrics::Counter,
    error: metrics::Counter,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// `inner`, counted as `layer` (`l1`, `l2`).
    pub fn new(layer: &'static str, inner: Arc<dyn CacheStore>) -> Self {
        let counter =
            |result: &'static str| metrics::counter!(metric::CACHE_REQUESTS, "layer" => layer, "result" => result);
        Self { layer, inner, hit: counter("hit"), miss: counter("miss"), error: counter("error") }
    }

    fn count(&self, found: &Result<Option<Bytes>>) {
        match found {
            Ok(Some(_)) => &self.hit,
            Ok(None) => &self.miss,
            Err(_) => &self.error,
        }
        .increment(1);
    }
}

#[async_trait]
impl CacheStore for MeteredStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let _lookup = timing::measure(Phase::Cache);
        let found = self.inner.get(key).await;
        self.count(&found);
        found
    }

    async fn get_briefly(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let _lookup = timing::measure(Phase::Cache);
        let found = self.inner.get_briefly(key, ttl).await;
        self.count(&found);
        found
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        self.inner.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
}

/// L1 in front of L2: reads try L1 first and fill it from L2; writes go to both. A failing
/// L2 reads as a miss and is logged once, so a cache outage is never a request's error.
pub struct TieredStore {
    l1: Arc<dyn CacheStore>,
    l2: Arc<dyn CacheStore>,
    l2_health: Degraded,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore").finish_non_exhaustive()
    }
}

impl TieredStore {
    /// `l1` in front of `l2`.
    pub fn new(l1: Arc<dyn CacheStore>, l2: Arc<dyn CacheStore>) -> Self {
        Self { l1, l2, l2_health: Degraded::new("L2 cache", "l2_cache") }
    }

    fn l2_result<T: Default>(&self, r: Result<T>) -> T {
        match r {
            Ok(v) => {
                self.l2_health.ok();
                v
            }
            Err(e) => {
                self.l2_health.failed(&e);
                self.l2_health.fell_back();
                T::default()
            }
        }
    }

    /// L1, else L2; what L2 had is copied into L1 for `fill_ttl`.
    async fn read(&self, key: &str, fill_ttl: Duration) -> Result<Option<Bytes>> {
        if let Some(v) = self.l1.get(key).await? {
            return Ok(Some(v));
        }
        let found = self.l2.get(key).await;
        let found = self.l2_result(found);
        if let Some(v) = &found {
            // L1 keeps it only briefly: L2 holds the authoritative expiry.
            self.l1.set(key, v.clone(), fill_ttl).await?;
        }
        Ok(found)
    }
}

#[async_trait]
impl CacheStore for TieredStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.read(key, L1_FILL_TTL).await
    }

    async fn get_briefly(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        self.read(key, ttl.min(L1_FILL_TTL)).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let stored = self.l2.set(key, value.clone(), ttl).await;
        self.l2_result(stored);
        self.l1.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let deleted = self.l2.delete(key).await;
        self.l2_result(deleted);
        self.l1.delete(key).await
    }
}

/// How long an entry found in L2 stays in L1: short, so that even an entry whose tenant
/// generation changed unheard is not served from L1 for long.
const L1_FILL_TTL: Duration = Duration::from_secs(3);

/// Whose data a cache entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Platform-wide data, such as the tenant a slug names: keyed by the directory's
    /// generation, which [`Cache::invalidate_directory`] moves when a tenant's plan or standing
    /// changes (rare: signups don't). While that generation can't be read, the entries are
    /// served without it (stale at worst for their TTL), never fetched on every request.
    Global,
    /// Platform-wide data that one write anywhere must drop on every instance at once, such as
    /// "no tenant has this slug" (any signup may end it): keyed by the platform's generation,
    /// dropped by [`Cache::invalidate_platform`].
    Platform,
    /// One tenant's data: keyed by the tenant's generation, dropped by [`Cache::invalidate`].
    Tenant(TenantId),
}

/// The id under which the platform's generation is kept and announced, beside the tenants'
/// (tenant ids are UUIDv7, never nil).
const PLATFORM: TenantId = TenantId::from_uuid(uuid::Uuid::nil());

/// The id under which the directory's generation (the tenants found by their slugs) is kept.
const DIRECTORY: TenantId = TenantId::from_uuid(uuid::Uuid::from_u128(1));

type Flight = Arc<OnceCell<Bytes>>;

/// The application's cache: what to read through and when to forget.
pub struct Cache {
    /// Every level in use (`TieredStore` for L1+L2), or `None` with caching off.
    store: Option<Arc<dyn CacheStore>>,
    /// The shared level alone, for tenant data while L1 can't be trusted.
    shared: Option<Arc<dyn CacheStore>>,
    generations: Arc<dyn GenerationStore>,
    flights: Mutex<HashMap<String, Flight>>,
    /// Tenants whose invalidation failed (the generation store was down), to be invalidated
    /// again as soon as it answers: until then other instances may still address their old
    /// entries once they hear the store again.
    pending: Mutex<HashSet<TenantId>>,
    has_pending: AtomicBool,
    health: Degraded,
}

/// At most this many failed invalidations are remembered for a retry; past it, entries age out
/// by their TTL alone (and a warning says so).
const MAX_PENDING: usize = 100_000;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("enabled", &self.store.is_some()).finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over `store` (all levels in use); `shared` is the level that stays trustworthy
    /// when this instance stops hearing other instances' writes (L2), if there is one.
    pub fn new(
        store: Option<Arc<dyn CacheStore>>,
        shared: Option<Arc<dyn CacheStore>>,
        generations: Arc<dyn GenerationStore>,
    ) -> Self {
        Self {
            store,
            shared,
            generations,
            flights: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            has_pending: AtomicBool::new(false),
            health: Degraded::new("cache", "cache"),
        }
    }

    /// Whether this instance hears the invalidations other instances announce (it is
    /// subscribed); while it does not, its own level is bypassed for tenant data.
    pub async fn hears_other_instances(&self) -> bool {
        self.generations.current(PLATFORM).await.is_ok_and(|g| g.local_ok)
    }

    /// The value of `key` in `scope`: from the cache if present, else from `fetch`, which runs
    /// once per key in this process however many requests wait for it, and whose answer is
    /// kept for about `ttl` (±10%, so entries made together don't expire together). A zero
    /// `ttl` caches nothing: `fetch` answers every call.
    pub async fn cached<F, Fut>(&self, scope: Scope, key: &str, ttl: Duration, fetch: F) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        if ttl.is_zero() {
            return fetch().await;
        }
        let Some((store, full_key)) = self.resolve(scope, key).await else {
            return fetch().await;
        };
        match store.get(&full_key).await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => self.health.failed(&e),
        }
        self.single_flight(&full_key, || async {
            metrics::counter!(metric::CACHE_FETCHES).increment(1);
            let value = fetch().await?;
            if let Err(e) = store.set(&full_key, value.clone(), jitter(ttl)).await {
                self.health.failed(&e);
            }
            Ok(value)
        })
        .await
    }

    /// A platform-wide lookup that may find nothing. What `fetch` finds is kept under `key` for
    /// about `ttl`, and read first, with no generation, so the common case costs one read.
    /// "Nothing" is kept for exactly `missing_ttl` (zero: not at all), in every level, in the
    /// [`Scope::Platform`], so that [`Cache::invalidate_platform`] drops it on every instance
    /// at once. A found value must not be empty (empty stands for "nothing" in flight).
    pub async fn lookup<F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        missing_ttl: Duration,
        fetch: F,
    ) -> Result<Option<Bytes>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Bytes>>>,
    {
        let Some((store, found_key)) = self.resolve(Scope::Global, key).await else {
            return fetch().await;
        };
        match store.get(&found_key).await {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => {}
            Err(e) => self.health.failed(&e),
        }
        let missing =
            if missing_ttl.is_zero() { None } else { self.resolve(Scope::Platform, &["missing:", key].concat()).await };
        if let Some((missing_store, missing_key)) = &missing {
            match missing_store.get_briefly(missing_key, missing_ttl).await {
                Ok(Some(_)) => return Ok(None),
                Ok(None) => {}
                Err(e) => self.health.failed(&e),
            }
        }
        let value = self
            .single_flight(&found_key, || async {
                metrics::counter!(metric::CACHE_FETCHES).increment(1);
                let found = fetch().await?;
                let stored = match (&found, &missing) {
                    (Some(v), _) => store.set(&found_key, v.clone(), jitter(ttl)).await,
                    (None, Some((missing_store, missing_key))) => {
                        missing_store.set(missing_key, Bytes::new(), missing_ttl).await
                    }
                    (None, None) => Ok(()),
                };
                if let Err(e) = stored {
                    self.health.failed(&e);
                }
                Ok(found.unwrap_or_default())
            })
            .await?;
        Ok((!value.is_empty()).then_some(value))
    }

    /// Runs `init` once for `key` in this process however many callers wait for it; they all
    /// get its answer.
    async fn single_flight<Fut>(&self, key: &str, init: impl FnOnce() -> Fut) -> Result<Bytes>
    where
        Fut: Future<Output = Result<Bytes>>,
    {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            flights.entry(key.to_owned()).or_default().clone()
        };
        let result = flight.get_or_try_init(init).await.cloned();
        let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(key);
        }
        result
    }

    /// Drops every entry of `tenant` (by moving it to a new generation). A failure is logged,
    /// not returned: the write that called this has already committed.
    pub async fn invalidate(&self, tenant: TenantId) {
        if self.store.is_none() {
            return;
        }
        match self.generations.bump(tenant).await {
            Ok(()) => {
                self.health.ok();
                self.retry_pending().await;
            }
            Err(e) => {
                self.health.failed(&e);
                self.remember_failed(tenant);
            }
        }
    }

    /// Drops every [`Scope::Platform`] entry on every instance (by moving the platform to a new
    /// generation, which every instance hears). A failure is logged and retried, as for a
    /// tenant; meanwhile those entries still expire by their (short) TTL.
    pub async fn invalidate_platform(&self) {
        self.invalidate(PLATFORM).await;
    }

    /// Drops every tenant found by its slug, on every instance (by moving the directory's
    /// generation): after a tenant's plan or standing changed.
    pub async fn invalidate_directory(&self) {
        self.invalidate(DIRECTORY).await;
    }

    fn remember_failed(&self, tenant: TenantId) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.len() < MAX_PENDING {
            pending.insert(tenant);
            self.has_pending.store(true, Ordering::Release);
        } else if !pending.contains(&tenant) {
            tracing::warn!("too many failed cache invalidations to retry; a tenant's entries will age out by TTL");
        }
    }

    /// Invalidates again the tenants whose invalidation failed, if the generation store answers
    /// now. Cheap when there are none (one atomic load); called on the next invalidation, on
    /// the next cache read that trusts L1 again, and periodically.
    pub async fn retry_pending(&self) {
        if !self.has_pending.load(Ordering::Acquire) {
            return;
        }
        let tenants: Vec<TenantId> = {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.has_pending.store(false, Ordering::Release);
            pending.drain().collect()
        };
        for (i, tenant) in tenants.iter().enumerate() {
            if let Err(e) = self.generations.bump(*tenant).await {
                self.health.failed(&e);
                for t in &tenants[i..] {
                    self.remember_failed(*t);
                }
                return;
            }
        }
        if !tenants.is_empty() {
            tracing::info!(
                tenants = tenants.len(),
                "cache invalidations that failed while the store was down are done"
            );
        }
    }

    /// Forgets one global entry.
    pub async fn forget(&self, key: &str) {
        if let Some(store) = &self.store
            && let Err(e) = store.delete(&format!("g:{key}")).await
        {
            self.health.failed(&e);
        }
    }

    /// Which store to use for `scope` and the full key there; `None` to bypass caching.
    async fn resolve(&self, scope: Scope, key: &str) -> Option<(&Arc<dyn CacheStore>, String)> {
        let store = self.store.as_ref()?;
        match scope {
            Scope::Global => match self.generations.current(DIRECTORY).await {
                // Whether this instance hears the others or not: a tenant's record changes
                // rarely, and serving it from here while Redis is away beats the database.
                Ok(generation) => {
                    self.health.ok();
                    Some((store, tenant_key(DIRECTORY, generation.value, key)))
                }
                Err(e) => {
                    self.health.failed(&e);
                    Some((store, ["g:", key].concat()))
                }
            },
            Scope::Tenant(_) | Scope::Platform => {
                let tenant = match scope {
                    Scope::Tenant(tenant) => tenant,
                    _ => PLATFORM,
                };
                let generation = match self.generations.current(tenant).await {
                    Ok(g) => g,
                    Err(e) => {
                        self.health.failed(&e);
                        self.health.fell_back();
                        return None;
                    }
                };
                let full_key = tenant_key(tenant, generation.value, key);
                if generation.local_ok {
                    self.health.ok();
                    self.retry_pending().await;
                    Some((store, full_key))
                } else {
                    self.health.fell_back();
                    self.shared.as_ref().map(|shared| (shared, full_key))
                }
            }
        }
    }
}

/// `{t:<tenant>}:<generation, hex>:<key>`. The braces are a Redis Cluster hash tag: a
/// tenant's keys share one node. Built by hand: `format!` here was most of a cache read's cost.
fn tenant_key(tenant: TenantId, generation: u64, key: &str) -> String {
    let mut full = String::with_capacity(3 + 36 + 2 + 16 + 1 + key.len());
    full.push_str("{t:");
    tenant.push_to(&mut full);
    full.push_str("}:");
    crate::hex::push_u64(&mut full, generation);
    full.push(':');
    full.push_str(key);
    full
}

/// `ttl` ±10%.
fn jitter(ttl: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    ttl.mul_f64(factor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ports::Generation;

    /// Generations in a map, and a switch that makes the store fail like Redis does when it is
    /// unreachable: the fault this module must survive. (The adapters' own behaviour is tested
    /// against real Redis in their crates.)
    #[derive(Default)]
    struct SwitchableGenerations {
        down: AtomicBool,
        values: Mutex<HashMap<TenantId, u64>>,
        bumps: std::sync::atomic::AtomicUsize,
    }

    impl SwitchableGenerations {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::SeqCst) { Err(Error::unavailable("redis", "switched off")) } else { Ok(()) }
        }
    }

    #[async_trait]
    impl GenerationStore for SwitchableGenerations {
        async fn current(&self, tenant: TenantId) -> Result<Generation> {
            self.check()?;
            let value = *self.values.lock().unwrap().entry(tenant).or_insert(1);
            Ok(Generation { value, local_ok: true })
        }

        async fn bump(&self, tenant: TenantId) -> Result<()> {
            self.check()?;
            self.bumps.fetch_add(1, Ordering::SeqCst);
            *self.values.lock().unwrap().entry(tenant).or_insert(1) += 1;
            Ok(())
        }
    }

    #[test]
    fn tenant_keys_are_spelled_as_format_would() {
        let tenant = TenantId::new();
        for generation in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            assert_eq!(tenant_key(tenant, generation, "k:1"), format!("{{t:{tenant}}}:{generation:016x}:k:1"));
        }
    }

    /// A plain map: the cache level under test.
    #[derive(Default)]
    struct MapStore(Mutex<HashMap<String, Bytes>>);

    #[async_trait]
    impl CacheStore for MapStore {
        async fn get(&self, key: &str) -> Result<Option<Bytes>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn set(&self, key: &str, value: Bytes, _ttl: Duration) -> Result<()> {
            self.0.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let store = Arc::new(MapStore::default());
        let cache = Cache::new(Some(store.clone()), None, Arc::new(SwitchableGenerations::default()));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..3 {
            let value = cache
                .cached(Scope::Tenant(TenantId::new()), "k", Duration::ZERO, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(Bytes::from_static(b"v"))
                })
                .await
                .unwrap();
            assert_eq!(value, "v");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(store.0.lock().unwrap().is_empty(), "nothing was stored");
    }

    #[tokio::test]
    async fn an_invalidation_that_failed_is_redone_once_the_store_answers() {
        let generations = Arc::new(SwitchableGenerations::default());
        let cache = Cache::new(Some(Arc::new(MapStore::default())), None, generations.clone());
        let tenant = TenantId::new();
        let read = |value: &'static str| {
            cache.cached(Scope::Tenant(tenant), "role", Duration::from_secs(60), move || async move {
                Ok(Bytes::from_static(value.as_bytes()))
            })
        };
        assert_eq!(read("admin").await.unwrap(), "admin");

        // The role changes while the generation store is down: the invalidation fails.
        generations.down.store(true, Ordering::SeqCst);
        cache.invalidate(tenant).await;
        assert_eq!(generations.bumps.load(Ordering::SeqCst), 0);

        // Back up: the periodic retry redoes it, so the stale entry is no longer addressed.
        generations.down.store(false, Ordering::SeqCst);
        cache.retry_pending().await;
        assert_eq!(generations.bumps.load(Ordering::SeqCst), 1);
        assert_eq!(read("member").await.unwrap(), "member");

        // Done once: nothing is retried again.
        cache.retry_pending().await;
        assert_eq!(generations.bumps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_is_degraded_while_its_generation_store_fails_and_recovers_when_it_answers() {
        let generations = Arc::new(SwitchableGenerations::default());
        let cache = Cache::new(Some(Arc::new(MapStore::default())), None, generations.clone());
        let tenant = TenantId::new();
        let read = || cache.cached(Scope::Tenant(tenant), "k", Duration::from_secs(60), || async { Ok(Bytes::new()) });
        let degraded = || cache.health.down.load(Ordering::SeqCst);
        read().await.unwrap();
        assert!(!degraded());
        generations.down.store(true, Ordering::SeqCst);
        read().await.unwrap();
        assert!(degraded(), "a failed generation read degrades the cache");
        generations.down.store(false, Ordering::SeqCst);
        read().await.unwrap();
        assert!(!degraded(), "the next read that reaches the store ends it");
        for recover in [true, false] {
            generations.down.store(true, Ordering::SeqCst);
            cache.invalidate(tenant).await;
            assert!(degraded(), "a failed invalidation degrades the cache");
            generations.down.store(false, Ordering::SeqCst);
            if recover {
                cache.invalidate(tenant).await;
            } else {
                cache.lookup("missing", Duration::from_secs(1), Duration::ZERO, || async { Ok(None) }).await.unwrap();
            }
            assert!(!degraded(), "an invalidation or a global lookup that reaches the store ends it");
        }
    }

    #[tokio::test]
    async fn a_read_that_trusts_the_store_again_redoes_failed_invalidations_first() {
        let generations = Arc::new(SwitchableGenerations::default());
        let cache = Cache::new(Some(Arc::new(MapStore::default())), None, generations.clone());
        let (a, b) = (TenantId::new(), TenantId::new());
        generations.down.store(true, Ordering::SeqCst);
        cache.invalidate(a).await;
        cache.invalidate(b).await;
        // Still down: the retry fails and keeps both.
        cache.retry_pending().await;
        generations.down.store(false, Ordering::SeqCst);
        let fetched = cache
            .cached(Scope::Tenant(a), "k", Duration::from_secs(60), || async { Ok(Bytes::from_static(b"v")) })
            .await
            .unwrap();
        assert_eq!(fetched, "v");
        assert_eq!(generations.bumps.load(Ordering::SeqCst), 2, "both tenants are invalidated again");
    }

    /// A map that remembers each entry's TTL (and never expires anything itself).
    #[derive(Default)]
    struct TtlStore(Mutex<HashMap<String, (Bytes, Duration)>>);

    impl TtlStore {
        fn ttl_of(&self, key_part: &str) -> Vec<Duration> {
            self.0.lock().unwrap().iter().filter(|(k, _)| k.contains(key_part)).map(|(_, (_, t))| *t).collect()
        }
    }

    #[async_trait]
    impl CacheStore for TtlStore {
        async fn get(&self, key: &str) -> Result<Option<Bytes>> {
            Ok(self.0.lock().unwrap().get(key).map(|(v, _)| v.clone()))
        }
        async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
            self.0.lock().unwrap().insert(key.to_owned(), (value, ttl));
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    const FOUND_TTL: Duration = Duration::from_secs(60);
    const MISSING_TTL: Duration = Duration::from_secs(1);

    /// `lookup("tenant:acme")`, answering `found` and counting fetches.
    async fn lookup(
        cache: &Cache,
        fetches: &std::sync::atomic::AtomicUsize,
        found: Option<&'static str>,
    ) -> Option<Bytes> {
        cache
            .lookup("tenant:acme", FOUND_TTL, MISSING_TTL, || async {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok(found.map(|s| Bytes::from_static(s.as_bytes())))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn nothing_found_is_remembered_for_the_missing_ttl_exactly_and_something_found_for_about_the_ttl() {
        let store = Arc::new(TtlStore::default());
        let cache = Cache::new(Some(store.clone()), None, Arc::new(SwitchableGenerations::default()));
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        assert_eq!(lookup(&cache, &fetches, None).await, None);
        assert_eq!(lookup(&cache, &fetches, Some("late")).await, None, "the absence is remembered");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(store.ttl_of("missing:tenant:acme"), [MISSING_TTL]);
        assert!(store.ttl_of("00000000-0000-0000-0000-000000000000").len() == 1, "kept in the platform scope");

        let found = Arc::new(TtlStore::default());
        let cache = Cache::new(Some(found.clone()), None, Arc::new(SwitchableGenerations::default()));
        assert_eq!(lookup(&cache, &fetches, Some("acme")).await.as_deref(), Some(&b"acme"[..]));
        assert_eq!(lookup(&cache, &fetches, None).await.as_deref(), Some(&b"acme"[..]));
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let ttls = found.ttl_of(":tenant:acme");
        assert!(ttls.len() == 1 && ttls[0] >= FOUND_TTL.mul_f64(0.9) && ttls[0] <= FOUND_TTL.mul_f64(1.1), "{ttls:?}");
    }

    #[tokio::test]
    async fn invalidating_the_platform_forgets_every_remembered_absence() {
        let generations = Arc::new(SwitchableGenerations::default());
        let cache = Cache::new(Some(Arc::new(MapStore::default())), None, generations.clone());
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        assert_eq!(lookup(&cache, &fetches, None).await, None);
        cache.invalidate_platform().await;
        assert_eq!(lookup(&cache, &fetches, Some("acme")).await.as_deref(), Some(&b"acme"[..]));
        assert_eq!(lookup(&cache, &fetches, Some("other")).await.as_deref(), Some(&b"acme"[..]));
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        // With the generation store down the invalidation is redone once it answers.
        assert_eq!(cache.lookup("tenant:bravo", FOUND_TTL, MISSING_TTL, || async { Ok(None) }).await.unwrap(), None);
        generations.down.store(true, Ordering::SeqCst);
        cache.invalidate_platform().await;
        generations.down.store(false, Ordering::SeqCst);
        cache.retry_pending().await;
        let found =
            cache.lookup("tenant:bravo", FOUND_TTL, MISSING_TTL, || async { Ok(Some(Bytes::from_static(b"b"))) }).await;
        assert_eq!(found.unwrap().as_deref(), Some(&b"b"[..]));
    }

    #[tokio::test]
    async fn a_short_lived_entry_is_copied_from_l2_into_l1_for_no_longer_than_its_ttl() {
        let (l1, l2) = (Arc::new(TtlStore::default()), Arc::new(TtlStore::default()));
        let tiered = TieredStore::new(l1.clone(), l2.clone());
        l2.set("brief", Bytes::from_static(b"x"), MISSING_TTL).await.unwrap();
        l2.set("usual", Bytes::from_static(b"y"), FOUND_TTL).await.unwrap();
        assert!(tiered.get_briefly("brief", MISSING_TTL).await.unwrap().is_some());
        assert!(tiered.get("usual").await.unwrap().is_some());
        assert_eq!(l1.ttl_of("brief"), [MISSING_TTL]);
        assert_eq!(l1.ttl_of("usual"), [L1_FILL_TTL]);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(100));
            assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110), "{j:?}");
        }
    }
}
