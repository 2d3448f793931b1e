//! Per-tenant cache generations, shared through Redis, with writes announced over pub/sub.
//!
//! Each instance keeps the generations it has heard in a local map, so a read costs no round
//! trip. While the instance is not subscribed (Redis down, reconnecting) it may miss a write,
//! so it answers `local_ok: false` (the cache then bypasses L1) and forgets what it knew when
//! it subscribes again. Generations are random, not counters: Redis here keeps nothing across
//! a restart, and a counter that restarted would address old entries again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{Generation, GenerationStore};
use plinth_domain::{Error, Result};
use tokio::task::JoinHandle;

use crate::conn::RedisConn;

type Known = Arc<RwLock<HashMap<TenantId, u64>>>;

/// [`GenerationStore`] over Redis, with a background subscriber.
#[derive(Debug)]
pub struct RedisGenerations {
    conn: RedisConn,
    channel: String,
    known: Known,
    subscribed: Arc<AtomicBool>,
    subscriber: JoinHandle<()>,
}

impl Drop for RedisGenerations {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn read(known: &Known) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, u64>> {
    known.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(known: &Known) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, u64>> {
    known.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisGenerations {
    /// Starts listening for other instances' writes (needs a Tokio runtime).
    pub fn start(conn: RedisConn) -> Self {
        let channel = conn.key("generations");
        let known: Known = Arc::default();
        let subscribed = Arc::new(AtomicBool::new(false));
        let subscriber = tokio::spawn(subscribe(conn.clone(), channel.clone(), known.clone(), subscribed.clone()));
        Self { conn, channel, known, subscribed, subscriber }
    }

    /// Whether this instance currently hears other instances' writes.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn key(&self, tenant: TenantId) -> String {
        self.conn.key(&format!("{{t:{tenant}}}:generation"))
    }
}

async fn subscribe(conn: RedisConn, channel: String, known: Known, subscribed: Arc<AtomicBool>) {
    let mut was_down = false;
    loop {
        let connected = tokio::time::timeout(Duration::from_secs(2), conn.pubsub_client().get_async_pubsub()).await;
        if let Ok(Ok(mut pubsub)) = connected
            && pubsub.subscribe(&channel).await.is_ok()
        {
            // Writes may have been missed while unsubscribed: forget everything heard before.
            write(&known).clear();
            subscribed.store(true, Ordering::Release);
            if was_down {
                tracing::info!("cache invalidation: subscribed again");
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                if let Some((tenant, generation)) = payload.split_once(' ')
                    && let (Ok(tenant), Ok(generation)) = (tenant.parse::<TenantId>(), generation.parse::<u64>())
                {
                    write(&known).insert(tenant, generation);
                }
            }
        }
        if subscribed.swap(false, Ordering::AcqRel) || !was_down {
            tracing::warn!("cache invalidation: not subscribed; bypassing the local cache for tenant data");
        }
        was_down = true;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[async_trait]
impl GenerationStore for RedisGenerations {
    #[tracing::instrument(name = "redis_generation", level = "debug", skip(self))]
    async fn current(&self, tenant: TenantId) -> Result<Generation> {
        let local_ok = self.is_subscribed();
        if local_ok && let Some(value) = read(&self.known).get(&tenant).copied() {
            return Ok(Generation { value, local_ok });
        }
        // First sight of this tenant (or unsubscribed): the shared value, created if missing.
        let candidate: u64 = rand::random();
        let previous: Option<String> = self
            .conn
            .query(redis::cmd("SET").arg(self.key(tenant)).arg(candidate.to_string()).arg("NX").arg("GET"))
            .await?;
        let value = match previous {
            Some(v) => v.parse().map_err(|_| Error::internal("a stored cache generation is not a number"))?,
            None => candidate,
        };
        if local_ok {
            write(&self.known).entry(tenant).or_insert(value);
        }
        Ok(Generation { value, local_ok })
    }

    #[tracing::instrument(name = "redis_generation_bump", skip(self))]
    async fn bump(&self, tenant: TenantId) -> Result<()> {
        let value: u64 = rand::random();
        // This instance sees its own write at once, whatever Redis says.
        write(&self.known).insert(tenant, value);
        // Two commands, not a pipeline: in a cluster the channel and the key live in other slots.
        self.conn.query::<()>(redis::cmd("SET").arg(self.key(tenant)).arg(value.to_string())).await?;
        self.conn.query::<()>(redis::cmd("PUBLISH").arg(&self.channel).arg(format!("{tenant} {value}"))).await
    }
}
