//! Exporting everything a tenant holds, as one consistent snapshot.

use async_trait::async_trait;

use crate::entities::Tenant;
use crate::error::Result;
use crate::export::ExportWriter;

/// Reads a tenant's rows for its export (see [`crate::export`]).
///
/// The shape: the caller makes the channel ([`crate::export::TenantExport::channel`]) and
/// hands the writer's end here. `export` opens the snapshot and takes the tenant's export
/// lock, then returns, leaving a task of the adapter's own to read the rows in bounded batches
/// and write them, in [`crate::export::RecordKind`]'s order, into `out`, and to call
/// [`ExportWriter::finish`]. The caller reads the other end at its own pace: the writer waits
/// while the channel is full, so the task's reads follow the reader, and it stops (its
/// snapshot and lock released) when the reader goes away. So the port hands back no stream
/// type, and the domain needs neither I/O nor `futures`.
#[async_trait]
pub trait TenantExporter: Send + Sync {
    /// Opens one consistent snapshot of `tenant`'s rows (nothing written after this returns is
    /// in it) and holds the tenant's export lock until the export ends (the rows written, a
    /// failure, or `out`'s reader gone), with the task that writes them to `out` under way.
    /// Errors: `Conflict(ExportRunning)` while another export of the tenant runs (on any
    /// instance the adapter serves); `TenantNotFound` when it has no such tenant.
    async fn export(&self, tenant: &Tenant, out: ExportWriter) -> Result<()>;
}
