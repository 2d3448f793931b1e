//! The connection pool and the tenant-scoped transaction every repository call runs in.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Transaction};
use futures_util::TryStreamExt as _;
use plinth_domain::Error;
use plinth_domain::ids::TenantId;
use tokio_postgres::NoTls;

use crate::error::{self, DATABASE, PgError};

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

/// The adapters' shared handle: a pool of connections as `plinth_app`.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// For the LISTEN connection the job queue wakes on.
    pub(crate) listen_config: tokio_postgres::Config,
    pub(crate) wakeups: std::sync::Arc<crate::jobs::Wakeups>,
    /// Bounds a whole port call, so a database that stops answering can't hang a request.
    call_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.pool.status();
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
    pub fn connect(url: &str, settings: &PgSettings) -> Result<Self, PgError> {
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
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.pool_timeout))
            .create_timeout(Some(settings.pool_timeout))
            .recycle_timeout(Some(settings.pool_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            listen_config,
            wakeups: std::sync::Arc::default(),
            call_timeout: settings.pool_timeout + settings.statement_timeout + Duration::from_millis(500),
        })
    }

    /// The pool's numbers, for metrics.
    pub fn status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus { size: s.size, available: s.available, waiting: s.waiting, max_size: s.max_size }
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), Error> {
        self.bounded(async {
            let client = self.conn().await?;
            client.simple_query("SELECT 1").await.map_err(error::db)?;
            Ok(())
        })
        .await
    }

    /// Closes the pool: idle connections are dropped, new calls fail.
    pub fn close(&self) {
        self.pool.close();
    }

    pub(crate) async fn conn(&self) -> Result<Object, Error> {
        self.pool.get().await.map_err(error::pool)
    }

    /// Runs `call` with the whole-call time bound; running out is `Unavailable`.
    pub(crate) async fn bounded<T>(&self, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(r) => r,
            Err(elapsed) => Err(Error::unavailable(DATABASE, elapsed)),
        }
    }
}

/// Sets the transaction's tenant: every statement after it sees only that tenant's rows.
const SET_TENANT: &str = "SELECT set_config('app.current_tenant', $1, true)";

/// Begins a transaction whose every statement sees only `tenant`'s rows.
pub(crate) async fn tenant_tx(client: &mut Object, tenant: TenantId) -> Result<Transaction<'_>, Error> {
    let tx = client.transaction().await.map_err(error::db)?;
    let set = tx.prepare_cached(SET_TENANT).await.map_err(error::db)?;
    tx.execute(&set, &[&tenant.to_string()]).await.map_err(error::db)?;
    Ok(tx)
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
    let begin = client.prepare_cached("BEGIN READ ONLY").await.map_err(error::db)?;
    let set = client.prepare_cached(SET_TENANT).await.map_err(error::db)?;
    let statement = client.prepare_cached(sql).await.map_err(error::db)?;
    let commit = client.prepare_cached("COMMIT").await.map_err(error::db)?;
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
    began.map_err(error::db)?;
    set.map_err(error::db)?;
    let rows = rows.map_err(error::db)?;
    committed.map_err(error::db)?;
    Ok(rows)
}
