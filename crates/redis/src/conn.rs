//! One handle over a single node or a cluster, with timeouts and a circuit breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plinth_affinity as affinity;
use plinth_domain::Error;
use plinth_domain::metric::{self, ByOp};
use plinth_domain::timing::{self, Phase};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError};

/// The dependency's name in errors and readiness answers.
pub(crate) const REDIS: &str = "redis";

/// The names of the Redis operations, the `op` label of `redis_command_duration_seconds`: a
/// small fixed set written here (never a tenant or a key).
pub(crate) mod op {
    pub(crate) const CACHE_GET: &str = "cache.get";
    pub(crate) const CACHE_SET: &str = "cache.set";
    pub(crate) const CACHE_DELETE: &str = "cache.delete";
    pub(crate) const GENERATION_GET: &str = "generation.get";
    pub(crate) const GENERATION_BUMP: &str = "generation.bump";
    /// A cluster's `SPUBLISH` of a bump.
    pub(crate) const GENERATION_ANNOUNCE: &str = "generation.announce";
    pub(crate) const LIMITER_CHECK: &str = "limiter.check";
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL for a single node; several for a cluster.
    pub urls: Vec<String>,
    /// Every key starts with this (tests use their own).
    pub prefix: String,
    /// Longest wait for one command.
    pub command_timeout: Duration,
    /// How long to stop trying after a failure.
    pub breaker: Duration,
}

impl RedisSettings {
    /// Settings for `urls` with production defaults: 250 ms per command, 1 s breaker.
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            prefix: "plinth:".into(),
            command_timeout: Duration::from_millis(250),
            breaker: Duration::from_secs(1),
        }
    }
}

#[derive(Clone)]
enum Inner {
    /// One connection per thread slot (see `plinth_affinity`): each is opened, lazily,
    /// by the thread that uses it, so its I/O runs on that thread's runtime.
    Single(Arc<[ConnectionManager]>),
    Cluster(ClusterConnection),
}

/// A cloneable connection to Redis. Connects lazily and reconnects by itself.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    /// A plain client of the first node, for pub/sub on a single node.
    pubsub_client: redis::Client,
    /// Every node's URL (one for a single node): a cluster's sharded subscriber starts from them.
    urls: Arc<[String]>,
    prefix: Arc<str>,
    timeout: Duration,
    breaker: Duration,
    /// Milliseconds since `epoch` before which no command is tried; 0 when closed.
    open_until: Arc<AtomicU64>,
    epoch: Instant,
    /// `redis_command_duration_seconds{op}`.
    durations: Arc<ByOp>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Single(_) => "single",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisConn").field("kind", &kind).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisConn {
    /// A connection per `settings`; nothing is contacted yet, so Redis being down at start-up
    /// is not an error.
    pub fn new(settings: &RedisSettings) -> Result<Self, Error> {
        let first = settings.urls.first().ok_or_else(|| Error::internal("no Redis URL"))?;
        let pubsub_client = redis::Client::open(first.as_str()).map_err(|e| Error::internal(without_url(e)))?;
        let inner = if settings.urls.len() == 1 {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.command_timeout))
                .set_response_timeout(Some(settings.command_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Inner::Single(
                (0..affinity::slots())
                    .map(|_| {
                        ConnectionManager::new_lazy_with_config(pubsub_client.clone(), config.clone())
                            .map_err(|e| Error::internal(without_url(e)))
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            let client = redis::cluster::ClusterClientBuilder::new(settings.urls.iter().map(String::as_str))
                .connection_timeout(settings.command_timeout)
                .response_timeout(settings.command_timeout)
                .retries(1)
                .build()
                .map_err(|e| Error::internal(without_url(e)))?;
            Inner::Cluster(client.get_pending_async_connection_with_config(redis::cluster::ClusterConfig::default()))
        };
        Ok(Self {
            inner,
            pubsub_client,
            urls: settings.urls.clone().into(),
            prefix: settings.prefix.as_str().into(),
            timeout: settings.command_timeout,
            breaker: settings.breaker,
            open_until: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
            durations: Arc::new(ByOp::new(metric::REDIS_COMMAND_DURATION)),
        })
    }

    /// `key` with this connection's prefix.
    pub(crate) fn key(&self, key: &str) -> String {
        [&*self.prefix, key].concat()
    }

    /// Whether this is a cluster (where one script cannot span keys in different slots).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// A client for a cluster's sharded pub/sub (RESP3, which carries the pushes), sending what it
    /// hears to `pushes`; it resubscribes by itself after a node comes back.
    pub(crate) fn sharded_pubsub_client(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<redis::cluster::ClusterClient, Error> {
        redis::cluster::ClusterClientBuilder::new(self.urls.iter().map(String::as_str))
            .connection_timeout(self.timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(|e| Error::internal(without_url(e)))
    }

    pub(crate) fn pubsub_client(&self) -> &redis::Client {
        &self.pubsub_client
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker_open(&self) -> bool {
        self.now_ms() < self.open_until.load(Ordering::Relaxed)
    }

    fn trip(&self) {
        let until = self.now_ms() + u64::try_from(self.breaker.as_millis()).unwrap_or(1000);
        self.open_until.store(until, Ordering::Relaxed);
    }

    /// Runs one command of operation `op`; any failure is `Unavailable` and opens the breaker.
    pub(crate) async fn query<T: FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T, Error> {
        self.guarded(op, || async {
            match &self.inner {
                Inner::Single(c) => cmd.query_async(&mut mine(c)).await,
                Inner::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            }
        })
        .await
    }

    /// Runs a Lua script, of operation `op`.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        self.guarded(op, || async {
            match &self.inner {
                Inner::Single(c) => invocation.invoke_async(&mut mine(c)).await,
                Inner::Cluster(c) => invocation.invoke_async(&mut c.clone()).await,
            }
        })
        .await
    }

    /// Runs `call` unless the breaker is open, within the command timeout (a second attempt
    /// included, see [`once_more_if_unsent`]); a failure opens it. Its time, answered or not, is
    /// recorded under `op` and in the request's `redis` phase, and it is a `redis` span.
    async fn guarded<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if self.breaker_open() {
            return Err(Error::Unavailable { dependency: REDIS, source: None });
        }
        // The command's span, named by `op` only (never a key); free unless traces are exported.
        let _span = tracing::debug_span!(
            "redis",
            otel.name = op,
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = op
        );
        let started = Instant::now();
        let answered = tokio::time::timeout(self.timeout, once_more_if_unsent(call)).await;
        let took = started.elapsed();
        self.durations.record(op, took);
        timing::record(Phase::Redis, took);
        let result = match answered {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::unavailable(REDIS, without_url(e))),
            Err(elapsed) => Err(Error::unavailable(REDIS, elapsed)),
        };
        if result.is_err() {
            self.trip();
        }
        result
    }

    /// Connects the calling thread's connection now rather than on its first command, waiting
    /// up to `within` (each worker's connects on the worker's first command, so that it runs on
    /// the worker's runtime); a failure is only logged (Redis being down at start-up is not
    /// fatal: the adapters degrade).
    pub async fn warm_up(&self, within: Duration) {
        if let Err(e) = self.ping_within(within).await {
            tracing::warn!(error = %e, "Redis is not answering at start-up; continuing without it");
        }
    }

    /// Whether Redis answers PING now (bypassing the breaker).
    pub async fn ping(&self) -> Result<(), Error> {
        self.ping_within(self.timeout).await
    }

    async fn ping_within(&self, within: Duration) -> Result<(), Error> {
        let cmd = redis::cmd("PING");
        let call = || async {
            match &self.inner {
                Inner::Single(c) => cmd.query_async::<String>(&mut mine(c)).await,
                Inner::Cluster(c) => cmd.query_async::<String>(&mut c.clone()).await,
            }
        };
        match tokio::time::timeout(within, once_more_if_unsent(call)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::unavailable(REDIS, without_url(e))),
            Err(elapsed) => Err(Error::unavailable(REDIS, elapsed)),
        }
    }
}

/// Runs `call`, and once more if it failed unsent.
///
/// A connection that died while idle (Redis restarted) or whose last attempt to connect was
/// refused answers its next command with that error, unsent, and starts connecting again: the
/// command goes once more, on the new connection. Without that, after Redis comes back each
/// thread's connection would fail one command (opening the breaker for everyone, or failing a
/// readiness check). A command lost in flight when the connection died may be applied twice:
/// the cache's commands are idempotent; the limiter's script would count one check twice, and a
/// generation bump would bump twice, which only invalidates again.
async fn once_more_if_unsent<T, F, Fut>(call: F) -> Result<T, RedisError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RedisError>>,
{
    match call().await {
        Err(e) if e.is_connection_dropped() || e.is_connection_refusal() => call().await,
        other => other,
    }
}

/// The calling thread's connection.
fn mine(connections: &[ConnectionManager]) -> ConnectionManager {
    connections[affinity::slot(connections.len())].clone()
}

/// Redis errors can quote the URL they failed on, password included: keep only the kind.
fn without_url(e: RedisError) -> String {
    format!("{:?}: {}", e.kind(), e.detail().unwrap_or("no detail"))
}

#[async_trait::async_trait]
impl plinth_domain::ports::Dependency for RedisConn {
    fn name(&self) -> &'static str {
        REDIS
    }

    async fn ping(&self) -> Result<(), Error> {
        RedisConn::ping(self).await
    }
}
