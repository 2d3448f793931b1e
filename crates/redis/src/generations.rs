//! Per-tenant cache generations, shared through Redis, with writes announced over pub/sub.
//!
//! Each instance keeps the generations it has heard in a local map, so a read costs no round
//! trip. While the instance is not subscribed (Redis down, reconnecting) it may miss a write,
//! so it answers `local_ok: false` (the cache then bypasses L1) and forgets what it knew when
//! it subscribes again. Generations are random, not counters: Redis here keeps nothing across
//! a restart, and a counter that restarted would address old entries again.
//!
//! On a single node a write is announced with `PUBLISH` by the script that makes it. On a
//! cluster, `PUBLISH` is relayed to every node, so instead each write is announced with
//! `SPUBLISH` on one of [`SHARDS`] sharded channels (chosen by the tenant), which only the node
//! that owns the channel's slot (and its replicas) carries; every instance subscribes to all of
//! them with `SSUBSCRIBE`, each on its owner.

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
/// On a cluster ARGV[2] is empty: the caller announces it on a sharded channel.
const BUMP: &str = r"
local seq = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. seq)
if ARGV[2] ~= '' then
    redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. seq)
end
return seq
";

/// How many sharded channels a cluster's announcements are spread over: enough to land on
/// every node of a usual cluster, few enough that each instance holds one subscription each.
pub const SHARDS: usize = 16;

/// The announcement of `tenant`'s generation `value`, sequence `seq`.
fn announcement(tenant: TenantId, value: u64, seq: u64) -> String {
    format!("{tenant} {value} {seq}")
}

/// Learns what an announcement says.
fn hear(known: &Known, payload: &str) {
    let mut parts = payload.split(' ');
    if let (Some(Ok(tenant)), Some(Ok(value)), Some(Ok(seq))) = (
        parts.next().map(str::parse::<TenantId>),
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<u64>),
    ) {
        learn(known, tenant, value, seq);
    }
}

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
    /// The single node's channel, or a cluster's sharded channels.
    channels: Vec<String>,
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
        let known: Known = Arc::default();
        let subscribed = Arc::new(AtomicBool::new(false));
        let (channels, subscriber) = if conn.is_cluster() {
            // `{gN}` is a hash tag: the channels hash to slots spread over the nodes.
            let channels: Vec<String> = (0..SHARDS).map(|n| conn.key(&format!("generations:{{g{n}}}"))).collect();
            let task = subscribe_sharded(conn.clone(), channels.clone(), known.clone(), subscribed.clone());
            (channels, tokio::spawn(task))
        } else {
            let channel = conn.key("generations");
            let task = subscribe(conn.clone(), channel.clone(), known.clone(), subscribed.clone());
            (vec![channel], tokio::spawn(task))
        };
        Self { conn, channels, known, subscribed, subscriber, bump: redis::Script::new(BUMP) }
    }

    /// The sharded channel of `tenant`'s announcements on a cluster.
    fn shard_of(&self, tenant: TenantId) -> &str {
        let n = (tenant.as_uuid().as_u128() % self.channels.len() as u128) as usize;
        &self.channels[n]
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
                if let Ok(payload) = msg.get_payload::<String>() {
                    hear(&known, &payload);
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

/// A cluster's subscriber: `SSUBSCRIBE` to every sharded channel (each on the node that owns
/// it). Subscribed only while every channel's subscription stands: a node's connection that
/// drops unsubscribes the instance until the client has subscribed again to every channel
/// (which it does by itself), and what was heard before is forgotten then.
async fn subscribe_sharded(conn: RedisConn, channels: Vec<String>, known: Known, subscribed: Arc<AtomicBool>) {
    let mut was_down = false;
    loop {
        let (pushes, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let mut subscribing = match conn.sharded_pubsub_client(pushes) {
            Ok(client) => match tokio::time::timeout(Duration::from_secs(2), client.get_async_connection()).await {
                Ok(Ok(connection)) => Some(connection),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "sharded subscriber: no connection");
                    None
                }
                Err(_) => None,
            },
            Err(_) => None,
        };
        let mut ok = subscribing.is_some();
        if let Some(connection) = subscribing.as_mut() {
            // One channel at a time: channels of different slots can't share a command.
            for channel in &channels {
                match tokio::time::timeout(Duration::from_secs(2), connection.ssubscribe(channel)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "sharded subscriber: SSUBSCRIBE failed");
                        ok = false;
                        break;
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if let (true, Some(connection)) = (ok, subscribing) {
            // The subscription stands: what was heard before may be stale.
            write(&known).clear();
            subscribed.store(true, Ordering::Release);
            if was_down {
                tracing::info!("cache invalidation: subscribed again");
            }
            let mut confirmed: std::collections::HashSet<String> = channels.iter().cloned().collect();
            while let Some(push) = heard.recv().await {
                let channel = push.data.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
                match push.kind {
                    // After a node's connection dropped, the client subscribes again by itself.
                    redis::PushKind::SSubscribe => {
                        confirmed.extend(channel);
                        if confirmed.len() == channels.len() && !subscribed.load(Ordering::Acquire) {
                            write(&known).clear();
                            subscribed.store(true, Ordering::Release);
                            tracing::info!("cache invalidation: subscribed again");
                        }
                    }
                    redis::PushKind::SMessage => {
                        if let Some(Ok(payload)) = push.data.get(1).map(redis::from_redis_value_ref::<String>) {
                            hear(&known, &payload);
                        }
                    }
                    redis::PushKind::Disconnection => {
                        confirmed.clear();
                        if subscribed.swap(false, Ordering::AcqRel) {
                            tracing::warn!(
                                "cache invalidation: not subscribed; bypassing the local cache for tenant data"
                            );
                        }
                        was_down = true;
                    }
                    _ => {}
                }
            }
            drop(connection);
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
        let cluster = self.conn.is_cluster();
        let mut invocation = self.bump.prepare_invoke();
        invocation
            .key(self.key(tenant))
            .key(self.seq_key(tenant))
            .arg(value.to_string())
            .arg(if cluster { "" } else { self.channels[0].as_str() })
            .arg(tenant.to_string());
        let announced = match self.conn.script::<u64>(op::GENERATION_BUMP, invocation).await {
            Ok(seq) if cluster => {
                let publish =
                    redis::cmd("SPUBLISH").arg(self.shard_of(tenant)).arg(announcement(tenant, value, seq)).clone();
                self.conn.query::<i64>(op::GENERATION_ANNOUNCE, &publish).await.map(|_| seq)
            }
            done => done,
        };
        match announced {
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
