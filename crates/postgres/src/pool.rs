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
use tokio_postgres::NoTls;

use crate::error::{self, DATABASE, OrDb as _, PgError};
use crate::op;

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connections at most.
    pub pool_size: usize,
    /// Longest wait for a pooled connection (and for a new one to connect).
    pub pool_timeout: Duration,
    /// Longest statement, enforced by the server.
    pub statement_timeout: Duration,
    /// Shown in `pg_stat_activity`, so operators (and tests) can tell plinth's connections apart.
    pub application_name: String,
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
    /// For the LISTEN connection the job queue wakes on.
    pub(crate) listen_config: tokio_postgres::Config,
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
}

/// The histograms every database call records into.
#[derive(Debug)]
struct Timings {
    pool_wait: metrics::Histogram,
    calls: ByOp,
}

/// A connection taken for one database call named `op` (a port call): it derefs to the
/// pooled connection and, when dropped (the call is done), records how long the call held it
/// in `db_query_duration_seconds{op}` and in the request's `db` phase, and closes its span.
pub(crate) struct Conn<'a> {
    object: Object,
    op: &'static str,
    taken: Instant,
    timings: &'a Timings,
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
        let statement_ms = settings.statement_timeout.as_millis();
        config
            .application_name(&settings.application_name)
            .options(format!(
                "-c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={}",
                statement_ms * 2
            ))
            .connect_timeout(settings.pool_timeout);
        let listen_config = config.clone();
        let pools = shares(settings.pool_size, affinity::slots())
            .into_iter()
            .map(|max_size| {
                let manager = Manager::from_config(
                    config.clone(),
                    NoTls,
                    ManagerConfig { recycling_method: RecyclingMethod::Fast },
                );
                Pool::builder(manager)
                    .max_size(max_size)
                    .wait_timeout(Some(settings.pool_timeout))
                    .create_timeout(Some(settings.pool_timeout))
                    .recycle_timeout(Some(settings.pool_timeout))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|e| PgError::Pool(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pools,
            listen_config,
            wakeups: Arc::default(),
            call_timeout: settings.pool_timeout + settings.statement_timeout + Duration::from_millis(500),
            max_pending_jobs: i64::try_from(plinth_domain::ports::DEFAULT_MAX_PENDING_JOBS).unwrap_or(i64::MAX),
            clock,
            timings: Arc::new(Timings {
                pool_wait: metrics::histogram!(metric::DB_POOL_WAIT),
                calls: ByOp::new(metric::DB_QUERY_DURATION),
            }),
        })
    }

    /// Caps each tenant's pending jobs at `max` (instead of `DEFAULT_MAX_PENDING_JOBS`).
    #[must_use]
    pub fn with_max_pending_jobs(mut self, max: u64) -> Self {
        self.max_pending_jobs = i64::try_from(max).unwrap_or(i64::MAX);
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
        let span = tracing::debug_span!(
            "db",
            otel.name = op,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = op
        );
        Ok(Conn { object: object?, op, taken, timings: &self.timings, _span: span })
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
    }

    fn close(&self) {
        PgStore::close(self);
    }
}

/// Sets the transaction's tenant: every statement after it sees only that tenant's rows.
const SET_TENANT: &str = "SELECT set_config('app.current_tenant', $1, true)";

/// Begins a transaction whose every statement sees only `tenant`'s rows.
pub(crate) async fn tenant_tx(client: &mut Object, tenant: TenantId) -> Result<Transaction<'_>, Error> {
    let tx = client.transaction().await.or_db()?;
    set_tenant(&tx, tenant).await?;
    Ok(tx)
}

/// Scopes `tx`, from its next statement on, to `tenant`'s rows.
pub(crate) async fn set_tenant(tx: &Transaction<'_>, tenant: TenantId) -> Result<(), Error> {
    let set = tx.prepare_cached(SET_TENANT).await.or_db()?;
    tx.execute(&set, &[&tenant.to_string()]).await.or_db()?;
    Ok(())
}

/// `total` split into at most `parts` shares that differ by one at most, none empty
/// (`shares(16, 3)` is `[6, 5, 5]`, `shares(2, 3)` is `[1, 1]`).
fn shares(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, total.max(1));
    (0..parts).map(|i| total / parts + usize::from(i < total % parts)).collect()
}

/// Runs one read-only statement in a transaction scoped to `tenant`, as [`tenant_tx`] would,
/// but pipelined: `BEGIN READ ONLY`, the tenant, the statement and `COMMIT` go out together,
/// one round trip instead of four. `at_most` is how many rows the statement can return (a
/// page's fetch limit, or 1), to size the vector they are read into.
///
/// A failure anywhere fails the call: a statement after a failed one meets an aborted
/// transaction, and the `COMMIT` of an aborted transaction rolls it back, so the connection
/// goes back to the pool idle whatever happened. (Should `BEGIN` itself fail, the tenant
/// setting is local to a one-statement transaction and the statement runs with no tenant, which
/// the policies answer with no rows.)
pub(crate) async fn tenant_read(
    client: &Object,
    tenant: TenantId,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    at_most: usize,
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let begin = client.prepare_cached("BEGIN READ ONLY").await.or_db()?;
    let set = client.prepare_cached(SET_TENANT).await.or_db()?;
    let statement = client.prepare_cached(sql).await.or_db()?;
    let commit = client.prepare_cached("COMMIT").await.or_db()?;
    let tenant = tenant.to_string();
    let tenant_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant];
    // Futures polled together are sent in the order they are first polled, without waiting.
    // The rows go straight into a vector of the size the caller expects at most (`query` would
    // grow one as they come).
    let query = async {
        let stream = client.query_raw(&statement, params.iter().copied()).await?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::with_capacity(at_most.min(1024));
        while let Some(row) = stream.try_next().await? {
            rows.push(row);
        }
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let (began, set, rows, committed) = tokio::join!(
        client.execute(&begin, &[]),
        client.execute(&set, &tenant_param),
        query,
        client.execute(&commit, &[]),
    );
    began.or_db()?;
    set.or_db()?;
    let rows = rows.or_db()?;
    committed.or_db()?;
    Ok(rows)
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
