//! A tenant's export: every row it holds, read in one `REPEATABLE READ, READ ONLY` transaction
//! (one snapshot: nothing committed after its first read is in it), scoped to the tenant as
//! every transaction is (RLS), a kind at a time through a portal in batches of [`BATCH`] rows,
//! by a task that owns the pooled connection and the transaction and writes into the
//! export's channel. The channel is bounded: when the reader falls behind, the task waits
//! between two batches, and when the reader goes away, the task stops and rolls back.
//!
//! One export per tenant at a time, across instances: the transaction holds a transaction-level
//! advisory lock on the tenant until it ends, taken with `pg_try_advisory_xact_lock`, so a
//! second export is refused at once (`Conflict(ExportRunning)`) rather than queued.
//!
//! The pool's timeouts suit requests, not a reader that may pause: the transaction sets its
//! own. `idle_in_transaction_session_timeout` is 10 minutes: a client may stall that long
//! between two reads (the task waits on it, idle in the transaction) before the server ends the
//! session, and the export with it, rather than the pool's few seconds; bounded, because an
//! open snapshot holds back vacuum across the database. `statement_timeout` is 60 s, for each
//! batch (a thousand rows by an index, normally milliseconds).

use async_trait::async_trait;
use plinth_domain::entities::Tenant;
use plinth_domain::export::{ExportRecord, ExportWriter, Stopped};
use plinth_domain::ids::TenantId;
use plinth_domain::ports::TenantExporter;
use plinth_domain::{Conflict, Error, Result};
use tokio::sync::oneshot;
use tokio_postgres::{IsolationLevel, Row};

use crate::error::OrDb as _;
use crate::op;
use crate::pool::{Conn, PgStore, Tx, set_tenant, wrap};

/// Rows fetched from the portal at a time.
const BATCH: i32 = 1000;

/// The export transaction's own timeouts (see the module's documentation).
const TIMEOUTS: &str = "SET LOCAL statement_timeout = '60s'; SET LOCAL idle_in_transaction_session_timeout = '10min'";

/// Takes the tenant's export lock, if free, until the transaction ends.
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended('plinth.export:' || $1::text, 0))";

/// Begins the export's transaction on `client`: its timeouts, its tenant, its lock, and the
/// tenant's row (its first statement that reads, the lock's, took the snapshot). Errors:
/// `Conflict(ExportRunning)`; `TenantNotFound`.
async fn begin<'c>(client: &'c mut Conn<'_>, tenant: TenantId) -> Result<(Tx<'c>, Tenant)> {
    let session = client.session();
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .or_db()?;
    let tx = wrap(session, tx);
    // The tenant first: it sets the store's timeouts, which the export's own then replace.
    set_tenant(&tx, tenant).await?;
    tx.batch_execute(TIMEOUTS).await.or_db()?;
    let lock = tx.prepare_cached(LOCK).await.or_db()?;
    let taken: bool = tx.query_one(&lock, &[&tenant.to_string()]).await.or_db()?.try_get(0).or_db()?;
    if !taken {
        return Err(Error::Conflict(Conflict::ExportRunning));
    }
    let row = tx.query_opt(crate::tenants::EXPORT, &[tenant.as_uuid()]).await.or_db()?;
    let found = crate::tenants::tenant_from_row(&row.ok_or(Error::TenantNotFound)?)?;
    Ok((tx, found))
}

/// How long a reader may leave the export's channel full before the export gives up on it (as
/// if it had gone): the export holds a pooled connection, which a reader that stopped reading
/// (but kept its TCP connection open) must not keep for longer.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes `record` into `out`, giving up after [`STALL`] of a full channel.
async fn put<R: ExportRecord>(out: &mut ExportWriter, record: R) -> Result<(), Stopped> {
    tokio::time::timeout(STALL, out.write(record)).await.unwrap_or(Err(Stopped::Gone))
}

/// Writes `tenant` and every row of it, kind by kind, into `out`.
async fn write(tx: &Tx<'_>, tenant: Tenant, out: &mut ExportWriter) -> Result<(), Stopped> {
    let id = tenant.id;
    put(out, tenant).await?;
    rows(tx, id, crate::users::EXPORT, crate::users::user_from_row, out).await?;
    rows(tx, id, crate::projects::EXPORT, crate::projects::project_from_row, out).await?;
    rows(tx, id, crate::webhooks::EXPORT, crate::webhooks::webhook_from_row, out).await?;
    rows(tx, id, crate::webhooks::EXPORT_DELIVERIES, crate::webhooks::delivery_from_row, out).await?;
    rows(tx, id, crate::audit::EXPORT, crate::audit::record_from_row, out).await
}

/// Writes the rows `sql` selects for `tenant` (its one parameter), read through a portal
/// [`BATCH`] at a time: a batch is read only once the one before is written.
async fn rows<R: ExportRecord>(
    tx: &Tx<'_>,
    tenant: TenantId,
    sql: &str,
    map: fn(&Row) -> Result<R>,
    out: &mut ExportWriter,
) -> Result<(), Stopped> {
    let statement = tx.prepare_cached(sql).await.or_db()?;
    let portal = tx.bind(&statement, &[tenant.as_uuid()]).await.or_db()?;
    loop {
        if out.is_closed() {
            return Err(Stopped::Gone);
        }
        let batch = tx.query_portal(&portal, BATCH).await.or_db()?;
        for row in &batch {
            put(out, map(row)?).await?;
        }
        if batch.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// The export's task: opens the transaction (reporting that on `began`), writes the rows,
/// finishes `out`, and rolls back.
async fn run(store: PgStore, tenant: TenantId, mut out: ExportWriter, began: oneshot::Sender<Result<()>>) {
    let mut client = match store.bounded(store.conn(op::TENANTS_EXPORT)).await {
        Ok(client) => client,
        Err(e) => {
            let _ = began.send(Err(e));
            return;
        }
    };
    match store.bounded(begin(&mut client, tenant)).await {
        Err(e) => {
            let _ = began.send(Err(e));
        }
        Ok((tx, found)) => {
            if began.send(Ok(())).is_ok() {
                let outcome = write(&tx, found, &mut out).await;
                let _ = tokio::time::timeout(STALL, out.finish(outcome)).await;
            }
            // Read only: ending it frees the snapshot and the lock. Should the rollback fail,
            // the connection is broken and the server ends the transaction anyway.
            let _ = tx.rollback().await;
        }
    }
}

#[async_trait]
impl TenantExporter for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    async fn export(&self, tenant: &Tenant, out: ExportWriter) -> Result<()> {
        let (began, opened) = oneshot::channel();
        // The task holds a connection for as long as the export lasts, from the pool of the
        // thread it runs on (on an actix worker's runtime, this thread).
        tokio::spawn(run(self.clone(), tenant.id, out, began));
        opened.await.unwrap_or_else(|_| Err(Error::internal("the export's task ended before it began")))
    }
}
