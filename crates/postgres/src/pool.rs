//! The connection pool and the tenant-scoped transaction every repository call runs in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Transaction};
use futures_util::TryStreamExt as _;
use plinth_affinity as affinity;
use plinth_domain::Error;
use plinth_domain::ids::TenantId;
use plinth_domain::metric::{self, ByOp};
use plinth_domain::ports::Clock;
use plinth_domain::timing::{self, Phase};
use plinth_domain::trace::{Propagation, TraceParent};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Statement};

use crate::error::{self, DATABASE, OrDb as _, PgError};
use crate::op;
use crate::replicas::{self, Replica, ReplicaSettings, Replicas};

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connections at most.
    pub pool_size: usize,
    /// Longest wait for a pooled connection (and for a new one to connect).
    pub pool_timeout: Duration,
    /// Longest statement, enforced by the server: set in every transaction (with twice as
    /// long for idling inside one), never as a startup option, which a pooler such as
    /// PgBouncer refuses.
    pub statement_timeout: Duration,
    /// Shown in `pg_stat_activity`, so operators (and tests) can tell plinth's connections apart.
    pub application_name: String,
    /// A connection straight to PostgreSQL, for what a pooler in transaction mode can't pass
    /// on (the job queue's `LISTEN`); `None` uses the pool's URL.
    pub direct_url: Option<String>,
    /// Whether each connection keeps its prepared statements (named, reused across
    /// transactions). Off, every statement is unnamed or lives only inside its transaction,
    /// as PgBouncer 1.18 in transaction mode requires.
    pub statement_cache: bool,
}

/// What every connection of a store does the same way, copied into each taken connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// See [`PgSettings::statement_cache`].
    cache: bool,
    /// `statement_timeout`, in milliseconds.
    statement_ms: u128,
    /// Where the jobs a transaction enqueues get their trace context (off unless traces are
    /// exported).
    traces: Propagation,
}

impl Session {
    /// `statement_timeout` and `idle_in_transaction_session_timeout` (twice as long), as
    /// `set_config` takes them.
    fn timeouts(self) -> [String; 2] {
        [self.statement_ms.to_string(), (self.statement_ms * 2).to_string()]
    }
}

/// The adapters' shared handle: pools of connections as `plinth_app`.
///
/// One pool per thread that serves requests, and one more: a connection's I/O is driven by a
/// task on the runtime of the thread that opened it, and actix's workers each run their own
/// single-threaded runtime. With one shared pool, half the queries of a two-worker server went
/// through a connection driven by the other worker's thread, and every one of its messages woke
/// that thread: about a tenth of the `db` bench's throughput. Each thread takes connections
/// from its own pool (the pools share `pool_size` between them).
#[derive(Clone)]
pub struct PgStore {
    pools: Arc<[Pool]>,
    /// For the LISTEN connection the job queue wakes on: the direct URL's, else the pool's.
    pub(crate) listen_config: tokio_postgres::Config,
    /// How connections prepare statements and what timeouts each transaction sets.
    session: Session,
    pub(crate) wakeups: Arc<crate::jobs::Wakeups>,
    /// Bounds a whole port call, so a database that stops answering can't hang a request.
    call_timeout: Duration,
    /// How many jobs one tenant may have pending; a write past it is `QueueFull`.
    pub(crate) max_pending_jobs: i64,
    /// The timestamps the adapter writes itself (`updated_at`, a key's `created_at`) and
    /// what idempotency keys expire against.
    pub(crate) clock: Arc<dyn Clock>,
    /// `db_pool_wait_seconds` and `db_query_duration_seconds{op}`.
    timings: Arc<Timings>,
    /// The standbys stale-tolerant reads may go to (none unless configured).
    replicas: Arc<Replicas>,
}

/// The histograms every database call records into.
#[derive(Debug)]
struct Timings {
    pool_wait: metrics::Histogram,
    calls: ByOp,
}

/// A connection taken for one database call named `op` (a port call): it derefs to the
/// pooled connection and, when dropped (the call is done), records how long the call held it
/// in `db_query_duration_seconds{op}` and in the request's `db` phase, and, when a write
/// transaction for a tenant was begun on it ([`tenant_tx`]), notes the write for
/// read-your-writes; and closes its span.
pub(crate) struct Conn<'a> {
    object: Object,
    op: &'static str,
    taken: Instant,
    timings: &'a Timings,
    replicas: &'a Replicas,
    /// The tenant a write transaction was begun for on this connection.
    wrote: Option<TenantId>,
    session: Session,
    /// The call's `db` span (named by `op`, nothing else recorded), from taking the connection
    /// to giving it back; disabled (and free) unless traces are exported.
    _span: tracing::Span,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.object
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.object
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let took = self.taken.elapsed();
        self.timings.calls.record(self.op, took);
        timing::record(Phase::Db, took);
        if let Some(tenant) = self.wrote {
            self.replicas.wrote(tenant);
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.status();
        f.debug_struct("PgStore").field("size", &s.size).field("available", &s.available).finish()
    }
}

/// The pool's current numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub size: usize,
    /// Connections idle.
    pub available: usize,
    /// Callers waiting for one.
    pub waiting: usize,
    /// Connections at most.
    pub max_size: usize,
}

impl PgStore {
    /// A pool for `url`. Connects lazily: a database that is down now is not an error yet.
    pub fn connect(url: &str, settings: &PgSettings, clock: Arc<dyn Clock>) -> Result<Self, PgError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| PgError::Url)?;
        config.application_name(&settings.application_name).connect_timeout(settings.pool_timeout);
        let listen_config = match &settings.direct_url {
            Some(direct) => {
                let mut direct: tokio_postgres::Config = direct.parse().map_err(|_| PgError::Url)?;
                direct.application_name(&settings.application_name).connect_timeout(settings.pool_timeout);
                direct
            }
            None => config.clone(),
        };
        let pools = pools(&config, settings.pool_size, settings.pool_timeout)?;
        Ok(Self {
            pools,
            listen_config,
            session: Session {
                cache: settings.statement_cache,
                statement_ms: settings.statement_timeout.as_millis(),
                traces: Propagation::OFF,
            },
            wakeups: Arc::default(),
            call_timeout: settings.pool_timeout + settings.statement_timeout + Duration::from_millis(500),
            max_pending_jobs: i64::try_from(plinth_domain::ports::DEFAULT_MAX_PENDING_JOBS).unwrap_or(i64::MAX),
            clock: clock.clone(),
            timings: Arc::new(Timings {
                pool_wait: metrics::histogram!(metric::DB_POOL_WAIT),
                calls: ByOp::new(metric::DB_QUERY_DURATION),
            }),
            replicas: Arc::new(Replicas::none(clock)),
        })
    }

    /// Sends the stale-tolerant reads to the standbys at `urls` (each with pools as the
    /// primary's, and a connection wait of at most a second: a replica that keeps a read
    /// waiting is passed over for the primary) while they lag at most `replica.max_lag`. Each
    /// is unused until its first check ([`PgStore::check_replicas`]) passes.
    pub fn with_replicas(
        mut self,
        urls: &[String],
        settings: &PgSettings,
        replica: &ReplicaSettings,
    ) -> Result<Self, PgError> {
        let members = urls
            .iter()
            .map(|url| {
                let mut config: tokio_postgres::Config = url.parse().map_err(|_| PgError::Url)?;
                let wait = settings.pool_timeout.min(replicas::CHECK_TIMEOUT);
                config.application_name(&settings.application_name).connect_timeout(wait);
                Ok(Replica::new(replicas::label(&config), pools(&config, settings.pool_size, wait)?))
            })
            .collect::<Result<Vec<_>, PgError>>()?;
        self.replicas = Arc::new(Replicas::new(members, replica, self.clock.clone()));
        Ok(self)
    }

    /// How long after this instance writes for a tenant that tenant's reads stay on the
    /// primary (zero without replicas).
    pub fn read_your_writes_window(&self) -> Duration {
        if self.replicas.any() { self.replicas.window } else { Duration::ZERO }
    }

    /// Measures each replica's lag once (every instance runs this every
    /// [`replicas::CHECK_EVERY`]): a replica is read only while its last check, at most two
    /// seconds old, measured a lag within the maximum.
    pub async fn check_replicas(&self) {
        if !self.replicas.any() {
            return;
        }
        let pool = &self.pools[affinity::slot(self.pools.len())];
        let primary = tokio::time::timeout(replicas::CHECK_TIMEOUT, pool.get()).await.ok().and_then(Result::ok);
        self.replicas.check(primary.as_ref()).await;
    }

    /// Caps each tenant's pending jobs at `max` (instead of `DEFAULT_MAX_PENDING_JOBS`).
    #[must_use]
    pub fn with_max_pending_jobs(mut self, max: u64) -> Self {
        self.max_pending_jobs = i64::try_from(max).unwrap_or(i64::MAX);
        self
    }

    /// Stores with each job the trace context `traces` gives for it (the span current when the
    /// write enqueues it), so that the job's span continues that trace.
    #[must_use]
    pub fn with_trace_propagation(mut self, traces: Propagation) -> Self {
        self.session.traces = traces;
        self
    }

    /// The pools' numbers, summed, for metrics.
    pub fn status(&self) -> PoolStatus {
        self.pools.iter().map(Pool::status).fold(
            PoolStatus { size: 0, available: 0, waiting: 0, max_size: 0 },
            |sum, s| PoolStatus {
                size: sum.size + s.size,
                available: sum.available + s.available,
                waiting: sum.waiting + s.waiting,
                max_size: sum.max_size + s.max_size,
            },
        )
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), Error> {
        self.bounded(async {
            let client = self.conn(op::PING).await?;
            client.simple_query("SELECT 1").await.or_db()?;
            Ok(())
        })
        .await
    }

    /// Closes the pools: idle connections are dropped, new calls fail.
    pub fn close(&self) {
        self.pools.iter().for_each(Pool::close);
    }

    /// A connection from this thread's pool, for the database call `op`. The wait for it is
    /// recorded in `db_pool_wait_seconds` and the request's `pool` phase, failed waits too.
    pub(crate) async fn conn(&self, op: &'static str) -> Result<Conn<'_>, Error> {
        let pool = &self.pools[affinity::slot(self.pools.len())];
        let asked = Instant::now();
        let object = pool.get().await.map_err(error::pool);
        let taken = Instant::now();
        let waited = taken.saturating_duration_since(asked);
        self.timings.pool_wait.record(waited.as_secs_f64());
        timing::record(Phase::Pool, waited);
        Ok(self.wrap(object?, op, taken))
    }

    /// `object` as the connection of the database call `op`, held since `taken`, in its span.
    fn wrap(&self, object: Object, op: &'static str, taken: Instant) -> Conn<'_> {
        let span = tracing::debug_span!(
            "db",
            otel.name = op,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = op
        );
        Conn {
            object,
            op,
            taken,
            timings: &self.timings,
            replicas: &self.replicas,
            wrote: None,
            session: self.session,
            _span: span,
        }
    }

    /// The replica `tenant`'s next stale-tolerant read goes to, if any: see [`stale_read!`].
    pub(crate) fn replica_for(&self, tenant: TenantId) -> Option<&Replica> {
        self.replicas.pick(tenant)
    }

    /// A connection to `replica`, for the stale-tolerant read `op`.
    pub(crate) async fn replica_conn(&self, replica: &Replica, op: &'static str) -> Result<Conn<'_>, Error> {
        let pool = &replica.pools[affinity::slot(replica.pools.len())];
        let object = pool.get().await.map_err(error::pool)?;
        Ok(self.wrap(object, op, Instant::now()))
    }

    /// Runs `attempt`, the read `op` on `replica`, within [`REPLICA_READ_TIMEOUT`]: its value,
    /// or `None` (the caller asks the primary) when it failed or timed out, in which case the
    /// replica is set aside until its next passing check.
    pub(crate) async fn on_replica<T>(
        &self,
        replica: &Replica,
        op: &'static str,
        attempt: impl Future<Output = Result<T, Error>>,
    ) -> Option<T> {
        match tokio::time::timeout(REPLICA_READ_TIMEOUT, attempt).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => tracing::debug!(replica = %replica.label, error = %e, op, "replica read failed"),
            Err(_) => tracing::debug!(replica = %replica.label, op, "replica read timed out"),
        }
        replica.set_aside();
        None
    }

    /// Runs `call` with the whole-call time bound; running out is `Unavailable`.
    pub(crate) async fn bounded<T>(&self, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(r) => r,
            Err(elapsed) => Err(Error::unavailable(DATABASE, elapsed)),
        }
    }
}

#[async_trait::async_trait]
impl plinth_domain::ports::Dependency for PgStore {
    fn name(&self) -> &'static str {
        DATABASE
    }

    async fn ping(&self) -> Result<(), Error> {
        PgStore::ping(self).await
    }

    fn record_gauges(&self) {
        let n = |v: usize| u32::try_from(v).map_or(f64::from(u32::MAX), f64::from);
        let s = self.status();
        metrics::gauge!(metric::DB_POOL_SIZE).set(n(s.size));
        metrics::gauge!(metric::DB_POOL_AVAILABLE).set(n(s.available));
        metrics::gauge!(metric::DB_POOL_WAITING).set(n(s.waiting));
        metrics::gauge!(metric::DB_POOL_MAX).set(n(s.max_size));
        self.replicas.record_gauges();
    }

    async fn tend(&self) {
        self.check_replicas().await;
    }

    fn close(&self) {
        PgStore::close(self);
    }
}

/// Sets the transaction's tenant (every statement after it sees only that tenant's rows) and
/// its timeouts, in one statement: the timeouts cost no round trip of their own.
const SET_TENANT: &str = "SELECT set_config('app.current_tenant', $1, true), \
     set_config('statement_timeout', $2, true), set_config('idle_in_transaction_session_timeout', $3, true)";

/// Sets the transaction's timeouts, for a transaction of no tenant.
const SET_TIMEOUTS: &str =
    "SELECT set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $2, true)";

/// A transaction on a taken connection: it derefs to deadpool's, and prepares statements as
/// the store's settings say ([`Tx::prepare_cached`]).
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    session: Session,
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl Tx<'_> {
    /// Prepares `sql`: with the statement cache on, once per connection (deadpool's cache);
    /// off, a fresh statement that is closed when dropped and, like everything prepared inside
    /// a transaction, never used after it (so a pooler may hand the next transaction another
    /// server connection).
    pub(crate) async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if self.session.cache { self.tx.prepare_cached(sql).await } else { self.tx.prepare(sql).await }
    }

    /// The trace context a job this transaction enqueues now should carry, if any.
    pub(crate) fn trace(&self) -> Option<TraceParent> {
        self.session.traces.current()
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.tx.commit().await
    }

    /// Rolls back.
    pub(crate) async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.tx.rollback().await
    }
}

/// Runs `$body`, a stale-tolerant read of `$tenant`'s data named `$op`, with `$client` bound
/// to a [`Conn`]: on a replica in use, else on the primary. The primary serves it when no
/// replica is in use, when this instance wrote for the tenant within the read-your-writes
/// window, or when it failed on the replica (which is then set aside until its next passing
/// check), so a replica never fails a read. Only reads of tenant data that may lag by up to
/// the configured maximum are written with this; everything else, and every write, takes
/// [`PgStore::conn`]. (A macro rather than a function taking an async closure: such a
/// closure's future is not `Send` for every lifetime, as `async_trait` needs.)
macro_rules! stale_read {
    ($store:expr, $op:expr, $tenant:expr, |$client:ident| $body:block) => {{
        let store: &$crate::pool::PgStore = $store;
        async {
            if let Some(replica) = store.replica_for($tenant) {
                // Boxed: the body is written twice, and each copy's state would add to the size of
                // the call's future.
                let attempt = Box::pin(async {
                    let $client = store.replica_conn(replica, $op).await?;
                    $body
                });
                if let Some(value) = store.on_replica(replica, $op, attempt).await {
                    return Ok(value);
                }
            }
            let $client = store.conn($op).await?;
            $body
        }
    }};
}
pub(crate) use stale_read;

/// How long a read may take on a replica before it is asked of the primary instead.
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `total` connections to `config`, as one pool per worker thread (and one for the rest), each
/// waiting at most `timeout` for a connection.
fn pools(config: &tokio_postgres::Config, total: usize, timeout: Duration) -> Result<Arc<[Pool]>, PgError> {
    shares(total, affinity::slots())
        .into_iter()
        .map(|max_size| {
            let manager =
                Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            Pool::builder(manager)
                .max_size(max_size)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| PgError::Pool(e.to_string()))
        })
        .collect()
}

/// Begins a transaction whose every statement sees only `tenant`'s rows, on the primary: a
/// write (or a read that must not lag), so the tenant's stale-tolerant reads on this instance
/// stay on the primary for the read-your-writes window once the call is over.
pub(crate) async fn tenant_tx<'c>(client: &'c mut Conn<'_>, tenant: TenantId) -> Result<Tx<'c>, Error> {
    client.wrote = Some(tenant);
    let session = client.session;
    let tx = Tx { tx: client.object.transaction().await.or_db()?, session };
    set_tenant(&tx, tenant).await?;
    Ok(tx)
}

/// Wraps `tx`, begun on `client` in a way of its own (an isolation level, read only), as a
/// [`Tx`] of the store's settings.
pub(crate) fn wrap<'c>(client_session: Session, tx: Transaction<'c>) -> Tx<'c> {
    Tx { tx, session: client_session }
}

impl Conn<'_> {
    /// The store's settings this connection follows.
    pub(crate) fn session(&self) -> Session {
        self.session
    }
}

/// Scopes `tx`, from its next statement on, to `tenant`'s rows, and bounds its statements and
/// its idling by the store's timeouts.
pub(crate) async fn set_tenant(tx: &Tx<'_>, tenant: TenantId) -> Result<(), Error> {
    let tenant = tenant.to_string();
    let [statement, idle] = tx.session.timeouts();
    if tx.session.cache {
        let set = tx.tx.prepare_cached(SET_TENANT).await.or_db()?;
        tx.execute(&set, &[&tenant, &statement, &idle]).await.or_db()?;
    } else {
        tx.execute_typed(SET_TENANT, &[(&tenant, Type::TEXT), (&statement, Type::TEXT), (&idle, Type::TEXT)])
            .await
            .or_db()?;
    }
    Ok(())
}

/// `total` split into at most `parts` shares that differ by one at most, none empty
/// (`shares(16, 3)` is `[6, 5, 5]`, `shares(2, 3)` is `[1, 1]`).
fn shares(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, total.max(1));
    (0..parts).map(|i| total / parts + usize::from(i < total % parts)).collect()
}

/// Runs one read-only statement in a transaction scoped to `tenant`, as [`tenant_tx`] would,
/// but pipelined: `BEGIN READ ONLY`, the tenant (and the timeouts), the statement and `COMMIT`
/// go out together, one round trip instead of four (two with the statement cache off: the
/// statement is prepared in the first, inside the transaction). `at_most` is how many rows the
/// statement can return (a page's fetch limit, or 1), to size the vector they are read into.
///
/// A failure anywhere fails the call: a statement after a failed one meets an aborted
/// transaction, and the `COMMIT` of an aborted transaction rolls it back, so the connection
/// goes back to the pool idle whatever happened. (Should `BEGIN` itself fail, the tenant
/// setting is local to a one-statement transaction and the statement runs with no tenant, which
/// the policies answer with no rows.)
pub(crate) async fn tenant_read(
    client: &Conn<'_>,
    tenant: TenantId,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    at_most: usize,
) -> Result<Vec<tokio_postgres::Row>, Error> {
    pipelined(client, "BEGIN READ ONLY", Some(tenant), sql, params, at_most).await
}

/// Runs one statement of no tenant (the worker's claims, maintenance, lookups across tenants)
/// in a transaction of its own, pipelined as [`tenant_read`] is, so that it too is bounded by
/// the store's timeouts: the statement may write, and its rows are returned.
pub(crate) async fn unscoped(
    client: &Conn<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    at_most: usize,
) -> Result<Vec<tokio_postgres::Row>, Error> {
    pipelined(client, "BEGIN", None, sql, params, at_most).await
}

/// `begin`, the tenant and timeouts (or the timeouts alone), the statement and `COMMIT`,
/// pipelined (see [`tenant_read`]).
async fn pipelined(
    client: &Conn<'_>,
    begin: &str,
    tenant: Option<TenantId>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    at_most: usize,
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let tenant = tenant.map(|t| t.to_string());
    let [statement_ms, idle_ms] = client.session.timeouts();
    let (set_sql, set_params): (&str, Vec<&(dyn ToSql + Sync)>) = match &tenant {
        Some(t) => (SET_TENANT, vec![t, &statement_ms, &idle_ms]),
        None => (SET_TIMEOUTS, vec![&statement_ms, &idle_ms]),
    };
    // Futures polled together are sent in the order they are first polled, without waiting.
    // The rows go straight into a vector of the size the caller expects at most (`query` would
    // grow one as they come).
    let query = |statement: Statement| async move {
        let stream = client.query_raw(&statement, params.iter().copied()).await?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::with_capacity(at_most.min(1024));
        while let Some(row) = stream.try_next().await? {
            rows.push(row);
        }
        Ok::<_, tokio_postgres::Error>(rows)
    };
    if client.session.cache {
        let begin = client.prepare_cached(begin).await.or_db()?;
        let set = client.prepare_cached(set_sql).await.or_db()?;
        let statement = client.prepare_cached(sql).await.or_db()?;
        let commit = client.prepare_cached("COMMIT").await.or_db()?;
        let (began, set, rows, committed) = tokio::join!(
            client.execute(&begin, &[]),
            client.execute(&set, &set_params),
            query(statement),
            client.execute(&commit, &[]),
        );
        began.or_db()?;
        set.or_db()?;
        let rows = rows.or_db()?;
        committed.or_db()?;
        Ok(rows)
    } else {
        // Unnamed statements (`*_typed`) for what has known types; the caller's statement is
        // prepared after `BEGIN`, so it lives on the transaction's server connection.
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = set_params.iter().map(|p| (*p, Type::TEXT)).collect();
        let (began, set, statement) =
            tokio::join!(client.execute_typed(begin, &[]), client.execute_typed(set_sql, &typed), client.prepare(sql));
        let (rows, committed) = match statement {
            Ok(statement) => tokio::join!(query(statement), client.execute_typed("COMMIT", &[])),
            Err(e) => (Err(e), client.execute_typed("COMMIT", &[]).await),
        };
        began.or_db()?;
        set.or_db()?;
        let rows = rows.or_db()?;
        committed.or_db()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_is_shared_out_whole() {
        assert_eq!(shares(16, 3), [6, 5, 5]);
        assert_eq!(shares(3, 3), [1, 1, 1]);
        assert_eq!(shares(2, 3), [1, 1]);
        assert_eq!(shares(1, 5), [1]);
        assert_eq!(shares(7, 1), [7]);
        for total in 1..40 {
            for parts in 1..6 {
                let s = shares(total, parts);
                assert_eq!(s.iter().sum::<usize>(), total);
                assert!(s.iter().all(|&n| n >= 1));
            }
        }
    }
}
