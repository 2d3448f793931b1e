//! Per-tenant cache generations, shared through Redis, with writes announced over pub/sub.
//!
//! Each instance keeps the generations it has heard in a local map, so a read costs no round
//! trip. While the instance is not subscribed (Redis down, reconnecting) it may miss a write,
//! so it answers `local_ok: false` (the cache then bypasses L1) and forgets what it knew when
//! it subscribes again. Generations are random, not counters: Redis here keeps nothing across
//! a restart, and a counter that restarted would address old entries again.

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{Generation, GenerationStore};
use plinth_domain::{Error, Result};
use tokio::task::JoinHandle;

use crate::conn::{RedisConn, op};

/// A generation and its sequence number: messages can arrive late, so a lower sequence never
/// replaces a higher one.
type Known = Arc<RwLock<HashMap<TenantId, (u64, u64)>>>;

/// Sets a new generation with the next sequence number and announces it, atomically, so the
/// order of announcements is the order of writes. KEYS: the generation, the sequence.
/// ARGV: the new value, the channel, the tenant.
const BUMP: &str = r"
local seq = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. seq)
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. seq)
return seq
";

/// Keeps `(value, seq)` for `tenant` unless what is known is newer.
fn learn(known: &Known, tenant: TenantId, value: u64, seq: u64) {
    let mut map = write(known);
    let entry = map.entry(tenant).or_insert((value, seq));
    if seq >= entry.1 {
        *entry = (value, seq);
    }
}

/// `value:seq` as stored.
fn parse_stored(s: &str) -> Option<(u64, u64)> {
    let (v, seq) = s.split_once(':')?;
    Some((v.parse().ok()?, seq.parse().ok()?))
}

/// [`GenerationStore`] over Redis, with a background subscriber.
#[derive(Debug)]
pub struct RedisGenerations {
    conn: RedisConn,
    channel: String,
    known: Known,
    subscribed: Arc<AtomicBool>,
    subscriber: JoinHandle<()>,
    bump: redis::Script,
}

impl Drop for RedisGenerations {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn read(known: &Known) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, (u64, u64)>> {
    known.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(known: &Known) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, (u64, u64)>> {
    known.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisGenerations {
    /// Starts listening for other instances' writes (needs a Tokio runtime).
    pub fn start(conn: RedisConn) -> Self {
        let channel = conn.key("generations");
        let known: Known = Arc::default();
        let subscribed = Arc::new(AtomicBool::new(false));
        let subscriber = tokio::spawn(subscribe(conn.clone(), channel.clone(), known.clone(), subscribed.clone()));
        Self { conn, channel, known, subscribed, subscriber, bump: redis::Script::new(BUMP) }
    }

    /// Whether this instance currently hears other instances' writes.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn key(&self, tenant: TenantId) -> String {
        self.conn.key(&format!("{{t:{tenant}}}:generation"))
    }

    fn seq_key(&self, tenant: TenantId) -> String {
        self.conn.key(&format!("{{t:{tenant}}}:generation-seq"))
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
                let mut parts = payload.split(' ');
                if let (Some(Ok(tenant)), Some(Ok(value)), Some(Ok(seq))) = (
                    parts.next().map(str::parse::<TenantId>),
                    parts.next().map(str::parse::<u64>),
                    parts.next().map(str::parse::<u64>),
                ) {
                    learn(&known, tenant, value, seq);
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
        if local_ok && let Some((value, _)) = read(&self.known).get(&tenant).copied() {
            return Ok(Generation { value, local_ok });
        }
        // First sight of this tenant (or unsubscribed): the shared value, created if missing.
        let candidate: u64 = rand::random();
        let previous: Option<String> = self
            .conn
            .query(
                op::GENERATION_GET,
                redis::cmd("SET").arg(self.key(tenant)).arg(format!("{candidate}:0")).arg("NX").arg("GET"),
            )
            .await?;
        let (value, seq) = match previous {
            Some(v) => parse_stored(&v).ok_or_else(|| Error::internal("a stored cache generation is malformed"))?,
            None => (candidate, 0),
        };
        if local_ok {
            learn(&self.known, tenant, value, seq);
        }
        // A newer generation may have been heard meanwhile: answer the newest known.
        let value = if local_ok { read(&self.known).get(&tenant).map_or(value, |(v, _)| *v) } else { value };
        Ok(Generation { value, local_ok })
    }

    #[tracing::instrument(level = "debug", name = "redis_generation_bump", skip(self))]
    async fn bump(&self, tenant: TenantId) -> Result<()> {
        let value: u64 = rand::random();
        let mut invocation = self.bump.prepare_invoke();
        invocation
            .key(self.key(tenant))
            .key(self.seq_key(tenant))
            .arg(value.to_string())
            .arg(&self.channel)
            .arg(tenant.to_string());
        match self.conn.script::<u64>(op::GENERATION_BUMP, invocation).await {
            // This instance sees its own write at once, in order with everyone else's.
            Ok(seq) => {
                learn(&self.known, tenant, value, seq);
                Ok(())
            }
            Err(e) => {
                // Unheard by others; at least stop serving this instance's own stale entries.
                let mut map = write(&self.known);
                let seq = map.get(&tenant).map_or(0, |(_, seq)| *seq);
                map.insert(tenant, (value, seq));
                Err(e)
            }
        }
    }
}
