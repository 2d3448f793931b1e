//! `TenantExporter` over the store: a copy of the tenant's rows, taken under the read lock (so
//! one consistent snapshot: no write is half in it), written by a task of its own. Memory mode
//! holds little by nature, so the copy is the whole snapshot; the writer still sends it at the
//! reader's pace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use plinth_domain::audit::AuditRecord;
use plinth_domain::entities::{Delivery, Project, Tenant, User, Webhook};
use plinth_domain::export::{ExportRecord, ExportWriter, Stopped};
use plinth_domain::ids::TenantId;
use plinth_domain::ports::TenantExporter;
use plinth_domain::{Conflict, Error, Result};
use uuid::Uuid;

use super::rows::Row;
use super::{MemoryStore, TenantData};

/// The tenants whose export is running (in this process: memory mode serves one instance).
#[derive(Debug, Default, Clone)]
pub(super) struct Running(Arc<Mutex<HashSet<TenantId>>>);

/// A tenant's place in [`Running`], given up when dropped (the export ended, however).
struct Turn {
    running: Running,
    tenant: TenantId,
}

impl Running {
    /// `tenant`'s turn; `Conflict(ExportRunning)` while another export of it holds one.
    fn take(&self, tenant: TenantId) -> Result<Turn> {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(tenant) {
            return Err(Error::Conflict(Conflict::ExportRunning));
        }
        Ok(Turn { running: self.clone(), tenant })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.running.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.tenant);
    }
}

/// A tenant's rows at one moment, each kind ordered by id (as the PostgreSQL adapter reads
/// them).
struct Snapshot {
    tenant: Tenant,
    users: Vec<User>,
    projects: Vec<Project>,
    webhooks: Vec<Webhook>,
    deliveries: Vec<Delivery>,
    audit: Vec<AuditRecord>,
}

/// `rows`, ordered by id.
fn by_id<'a, T: Row + 'a>(rows: impl Iterator<Item = &'a T>) -> Vec<T> {
    let mut rows: Vec<T> = rows.cloned().collect();
    rows.sort_by_key(|r| -> Uuid { r.id() });
    rows
}

impl Snapshot {
    fn of(rows: &TenantData) -> Self {
        Self {
            tenant: rows.tenant.clone(),
            users: by_id(rows.users.iter()),
            projects: by_id(rows.projects.iter()),
            webhooks: by_id(rows.webhooks.iter()),
            deliveries: by_id(rows.deliveries.iter()),
            audit: rows.audit.records().to_vec(),
        }
    }

    /// Writes every row, in the export's order.
    async fn write(self, out: &mut ExportWriter) -> Result<(), Stopped> {
        out.write(self.tenant).await?;
        write_all(out, self.users).await?;
        write_all(out, self.projects).await?;
        write_all(out, self.webhooks).await?;
        write_all(out, self.deliveries).await?;
        write_all(out, self.audit).await
    }
}

async fn write_all<R: ExportRecord>(out: &mut ExportWriter, rows: Vec<R>) -> Result<(), Stopped> {
    for row in rows {
        out.write(row).await?;
    }
    Ok(())
}

#[async_trait]
impl TenantExporter for MemoryStore {
    async fn export(&self, tenant: &Tenant, mut out: ExportWriter) -> Result<()> {
        let turn = self.exports.take(tenant.id)?;
        let snapshot = {
            let data = self.read();
            Snapshot::of(data.tenant(tenant.id).ok_or(Error::TenantNotFound)?)
        };
        tokio::spawn(async move {
            let outcome = snapshot.write(&mut out).await;
            out.finish(outcome).await;
            drop(turn);
        });
        Ok(())
    }
}
