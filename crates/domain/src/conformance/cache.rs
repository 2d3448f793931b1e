//! `CacheStore` conformance: set, get, delete, overwrite and expiry of byte values.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Time, fixtures};
use crate::ports::CacheStore;

/// Every `CacheStore` behaviour, as named tests; the argument is an `Arc` of the store, or
/// `|clock| store` for a store that keeps time by that injected clock (see the module
/// [`conformance`](crate::conformance)).
#[macro_export]
macro_rules! cache_store_suite {
    ($($fixture:tt)+) => {
        mod cache_store {
            #[allow(unused_imports)]
            use super::*;
            $crate::__timed_conformance_tests!(
                cache,
                $($fixture)+,
                [
                    a_stored_value_is_read_back,
                    a_missing_key_is_a_miss,
                    an_empty_value_is_not_a_miss,
                    a_deleted_key_is_a_miss,
                    deleting_a_missing_key_is_not_an_error,
                    setting_a_key_again_replaces_its_value,
                    keys_are_independent,
                ],
                [a_value_expires_after_its_ttl],
            );
        }
    };
}

const MINUTE: Duration = Duration::from_secs(60);

fn key(name: &str) -> String {
    format!("conformance:{}:{name}", fixtures::random_hex())
}

async fn get(store: &dyn CacheStore, key: &str) -> Option<Bytes> {
    store.get(key).await.expect("get succeeds")
}

async fn set(store: &dyn CacheStore, key: &str, value: &'static [u8], ttl: Duration) {
    store.set(key, Bytes::from_static(value), ttl).await.expect("set succeeds");
}

/// A value set is read back as it was.
pub async fn a_stored_value_is_read_back(store: Arc<dyn CacheStore>) {
    let k = key("a");
    set(&*store, &k, b"{\"hello\":\"world\"}", MINUTE).await;
    assert_eq!(get(&*store, &k).await, Some(Bytes::from_static(b"{\"hello\":\"world\"}")));
}

/// A key never set is `None`, not an error.
pub async fn a_missing_key_is_a_miss(store: Arc<dyn CacheStore>) {
    assert_eq!(get(&*store, &key("missing")).await, None);
}

/// An empty value is a value: callers cache "nothing there" as empty bytes.
pub async fn an_empty_value_is_not_a_miss(store: Arc<dyn CacheStore>) {
    let k = key("empty");
    set(&*store, &k, b"", MINUTE).await;
    assert_eq!(get(&*store, &k).await, Some(Bytes::new()));
}

/// A deleted key is `None`.
pub async fn a_deleted_key_is_a_miss(store: Arc<dyn CacheStore>) {
    let k = key("deleted");
    set(&*store, &k, b"value", MINUTE).await;
    store.delete(&k).await.expect("delete succeeds");
    assert_eq!(get(&*store, &k).await, None);
}

/// Deleting a key that isn't there succeeds.
pub async fn deleting_a_missing_key_is_not_an_error(store: Arc<dyn CacheStore>) {
    store.delete(&key("never-set")).await.expect("delete succeeds");
}

/// Setting a key again replaces its value.
pub async fn setting_a_key_again_replaces_its_value(store: Arc<dyn CacheStore>) {
    let k = key("overwritten");
    set(&*store, &k, b"first", MINUTE).await;
    set(&*store, &k, b"second", MINUTE).await;
    assert_eq!(get(&*store, &k).await, Some(Bytes::from_static(b"second")));
}

/// Writing or deleting one key leaves the others alone.
pub async fn keys_are_independent(store: Arc<dyn CacheStore>) {
    let (a, b, c) = (key("a"), key("b"), key("c"));
    set(&*store, &a, b"a", MINUTE).await;
    set(&*store, &b, b"b", MINUTE).await;
    set(&*store, &c, b"c", MINUTE).await;
    store.delete(&b).await.expect("delete succeeds");
    set(&*store, &c, b"c2", MINUTE).await;
    assert_eq!(get(&*store, &a).await, Some(Bytes::from_static(b"a")));
    assert_eq!(get(&*store, &b).await, None);
    assert_eq!(get(&*store, &c).await, Some(Bytes::from_static(b"c2")));
}

/// A value is there until its ttl has passed, and a miss after.
pub async fn a_value_expires_after_its_ttl(store: Arc<dyn CacheStore>, time: Time) {
    let (short, long) = (key("short"), key("long"));
    set(&*store, &short, b"short-lived", Duration::from_secs(1)).await;
    set(&*store, &long, b"long-lived", MINUTE).await;
    if let Time::Manual(_) = time {
        // Only a clock that stands still can show the value is there until its very end.
        time.pass(Duration::from_millis(999)).await;
    }
    assert_eq!(get(&*store, &short).await, Some(Bytes::from_static(b"short-lived")));
    time.pass(Duration::from_millis(1300)).await;
    assert_eq!(get(&*store, &short).await, None);
    assert_eq!(get(&*store, &long).await, Some(Bytes::from_static(b"long-lived")));
}
