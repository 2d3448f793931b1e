//! The shared L2 cache store: plain GET / SET PX / DEL under the prefix.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plinth_domain::Result;
use plinth_domain::ports::CacheStore;

use crate::conn::{RedisConn, op};

/// [`CacheStore`] over Redis.
#[derive(Debug, Clone)]
pub struct RedisCache {
    conn: RedisConn,
}

impl RedisCache {
    /// A store over `conn`.
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl CacheStore for RedisCache {
    #[tracing::instrument(name = "redis_cache_get", level = "debug", skip_all)]
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let value: Option<Vec<u8>> = self.conn.query(op::CACHE_GET, redis::cmd("GET").arg(self.conn.key(key))).await?;
        Ok(value.map(Bytes::from))
    }

    #[tracing::instrument(name = "redis_cache_set", level = "debug", skip_all)]
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.conn
            .query::<()>(op::CACHE_SET, redis::cmd("SET").arg(self.conn.key(key)).arg(value.as_ref()).arg("PX").arg(ms))
            .await
    }

    #[tracing::instrument(name = "redis_cache_delete", level = "debug", skip_all)]
    async fn delete(&self, key: &str) -> Result<()> {
        self.conn.query::<()>(op::CACHE_DELETE, redis::cmd("DEL").arg(self.conn.key(key))).await
    }
}
