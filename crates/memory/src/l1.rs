//! `L1Cache`: the in-process cache level, over quick_cache, bounded by bytes.
//!
//! quick_cache has no expiry of its own, so each value carries its deadline; an entry found
//! past it is a miss and is removed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::Result;
use plinth_domain::ports::{CacheStore, Clock};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// What an entry costs beyond its key's and value's bytes: the key's `String` and the entry
/// itself. It also keeps every entry's weight above zero (quick_cache never evicts those).
const ENTRY_OVERHEAD: usize = size_of::<String>() + size_of::<Entry>();

/// Entries expected for the capacity, one per this many bytes: sizes quick_cache's shards.
const BYTES_PER_ENTRY_ESTIMATE: u64 = 2048;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    /// The clock's monotonic reading at which the entry expires.
    expires_at: Duration,
}

/// Weighs an entry by the bytes it holds.
#[derive(Debug, Clone, Copy)]
struct ByteWeighter;

impl Weighter<String, Entry> for ByteWeighter {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        u64::try_from(key.len() + entry.value.len() + ENTRY_OVERHEAD).unwrap_or(u64::MAX)
    }
}

/// The L1 `CacheStore`: bounded by total bytes (keys, values and per-entry overhead), evicting
/// with quick_cache's S3-FIFO policy, each entry kept until its ttl.
pub struct L1Cache {
    entries: Cache<String, Entry, ByteWeighter>,
    clock: Arc<dyn Clock>,
}

impl L1Cache {
    /// A cache of at most about `max_bytes` (e.g. `64 << 20`), whose entries expire by
    /// `clock`'s monotonic readings. A single entry larger than a shard's share of that is not
    /// kept.
    pub fn with_capacity_bytes(max_bytes: u64, clock: Arc<dyn Clock>) -> Self {
        let estimated_items = usize::try_from(max_bytes / BYTES_PER_ENTRY_ESTIMATE).unwrap_or(usize::MAX).max(1);
        Self { entries: Cache::with_weighter(estimated_items, max_bytes, ByteWeighter), clock }
    }

    /// The bytes held now, as weighed against the capacity.
    pub fn weight_bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// The capacity, in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.entries.capacity()
    }

    /// How many entries are held (some may have expired and not been read since).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for L1Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("L1Cache")
            .field("entries", &self.entries.len())
            .field("weight_bytes", &self.entries.weight())
            .field("capacity_bytes", &self.entries.capacity())
            .finish()
    }
}

#[async_trait]
impl CacheStore for L1Cache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(entry) = self.entries.get(key) else { return Ok(None) };
        let now = self.clock.elapsed();
        if entry.expires_at > now {
            return Ok(Some(entry.value));
        }
        // Only if still expired: a fresh value may have been set meanwhile.
        self.entries.remove_if(key, |e| e.expires_at <= now);
        Ok(None)
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            // Expired on arrival: not worth keeping, and the old value must not stay either.
            self.entries.remove(key);
            return Ok(());
        }
        // A ttl further away than a `Duration` reaches is as good as forever.
        let expires_at = self.clock.elapsed().saturating_add(ttl);
        self.entries.insert(key.to_owned(), Entry { value, expires_at });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.entries.remove(key);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use plinth_domain::clock::{ManualClock, SystemClock};

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn cache() -> L1Cache {
        L1Cache::with_capacity_bytes(1 << 20, Arc::new(SystemClock::new()))
    }

    #[tokio::test]
    async fn the_byte_bound_evicts_entries() {
        let cache = L1Cache::with_capacity_bytes(64 << 10, Arc::new(SystemClock::new()));
        let value = Bytes::from(vec![7u8; 1024]);
        for i in 0..1000 {
            cache.set(&format!("key-{i}"), value.clone(), MINUTE).await.unwrap();
        }
        assert!(cache.weight_bytes() <= cache.capacity_bytes(), "{cache:?}");
        assert!(cache.capacity_bytes() < 2 * (64 << 10), "{cache:?}");
        assert!(cache.len() < 64, "{cache:?}");
        assert!(cache.len() > 10, "{cache:?}");
    }

    #[tokio::test]
    async fn an_entry_is_weighed_by_its_bytes() {
        let cache = cache();
        cache.set("k", Bytes::from(vec![0u8; 1000]), MINUTE).await.unwrap();
        assert_eq!(cache.weight_bytes(), u64::try_from(1 + 1000 + ENTRY_OVERHEAD).unwrap());
    }

    #[tokio::test]
    async fn an_expired_entry_is_a_miss_and_is_removed() {
        let clock = Arc::new(ManualClock::new());
        let cache = L1Cache::with_capacity_bytes(1 << 20, clock.clone());
        cache.set("k", Bytes::from_static(b"v"), Duration::from_millis(20)).await.unwrap();
        clock.advance(Duration::from_millis(19));
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v")));
        clock.advance(Duration::from_millis(1));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert!(cache.is_empty(), "{cache:?}");
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing() {
        let cache = cache();
        cache.set("k", Bytes::from_static(b"old"), MINUTE).await.unwrap();
        cache.set("k", Bytes::from_static(b"new"), Duration::ZERO).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_ttl_beyond_what_a_duration_holds_keeps_the_value() {
        let cache = cache();
        cache.set("k", Bytes::from_static(b"v"), Duration::MAX).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), Some(Bytes::from_static(b"v")));
    }
}
