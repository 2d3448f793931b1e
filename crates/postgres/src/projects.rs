//! A tenant's projects; each write stores the events it causes in the same transaction.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Project;
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{ProjectId, TenantId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{EventsFor, IdempotentWrite, Keyed, ProjectRepository};
use plinth_domain::values::ProjectName;
use plinth_domain::{Error, Result};
use tokio_postgres::Row;

use crate::error::{OrDb as _, corrupt};
use crate::idempotency::take_key;
use crate::keyset::{Keyset, keyset};
use crate::op;
use crate::pool::{PgStore, Tx, stale_read, tenant_read, tenant_tx};

macro_rules! columns {
    () => {
        "tenant_id, id, name, created_at, updated_at"
    };
}

/// The tenant's projects, newest first.
pub const LIST: Keyset = keyset!(columns!(), from "projects" where "tenant_id = $1",
    first limit "$2", after ("$2", "$3") limit "$4");

/// The tenant's projects, for its export (by id).
pub(crate) const EXPORT: &str = concat!("SELECT ", columns!(), " FROM projects WHERE tenant_id = $1 ORDER BY id");

pub(crate) fn project_from_row(row: &Row) -> Result<Project> {
    Ok(Project {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        id: ProjectId::from_uuid(row.try_get("id").or_db()?),
        name: ProjectName::parse(row.try_get("name").or_db()?).map_err(|_| corrupt("project name"))?,
        created_at: row.try_get("created_at").or_db()?,
        updated_at: row.try_get("updated_at").or_db()?,
    })
}

/// Appends `events` to the outbox, in the caller's transaction, with their deliveries and
/// jobs; `QueueFull` (for the caller to roll back) when those jobs take the tenant past
/// `max_pending_jobs`.
pub(crate) async fn store_events(tx: &Tx<'_>, events: &[DomainEvent], max_pending_jobs: i64) -> Result<()> {
    let Some(tenant) = events.first().map(|e| e.tenant_id) else {
        return Ok(());
    };
    let mut enqueued = 0;
    for event in events {
        insert_event(tx, event).await?;
        enqueued += crate::webhooks::create_deliveries(tx, event).await?;
    }
    if enqueued == 0 {
        return Ok(());
    }
    crate::jobs::check_room(tx, tenant, max_pending_jobs).await
}

/// Appends `event` to the outbox, in the caller's transaction.
pub(crate) async fn insert_event(tx: &Tx<'_>, event: &DomainEvent) -> Result<()> {
    let insert = tx
        .prepare_cached("INSERT INTO events (tenant_id, id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .await
        .or_db()?;
    let payload = serde_json::to_value(event).map_err(Error::internal)?;
    tx.execute(
        &insert,
        &[event.tenant_id.as_uuid(), event.id.as_uuid(), &event.kind.as_str(), &payload, &event.created_at],
    )
    .await
    .or_db()?;
    Ok(())
}

#[async_trait]
impl ProjectRepository for PgStore {
    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Project>> {
        self.bounded(stale_read!(self, op::PROJECTS_LIST, tenant, |client| {
            let rows = LIST.page(&client, tenant, &[tenant.as_uuid()], after, limit).await?;
            // Sized up front: collecting `Result`s can't know the length and would grow it.
            let mut projects = Vec::with_capacity(rows.len());
            for row in &rows {
                projects.push(project_from_row(row)?);
            }
            Ok(projects)
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, tenant: TenantId, id: ProjectId) -> Result<Option<Project>> {
        self.bounded(stale_read!(self, op::PROJECTS_GET, tenant, |client| {
            let sql = concat!("SELECT ", columns!(), " FROM projects WHERE tenant_id = $1 AND id = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            rows.first().map(project_from_row).transpose()
        }))
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %project.tenant_id))]
    async fn insert(
        &self,
        project: &Project,
        events: &[DomainEvent],
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<plinth_domain::plans::Cap>,
    ) -> Result<Keyed> {
        self.bounded(async {
            let mut client = self.conn(op::PROJECTS_CREATE).await?;
            let tx = tenant_tx(&mut client, project.tenant_id).await?;
            if !take_key(&tx, key, self.clock.now()).await? {
                return Ok(Keyed::KeyTaken);
            }
            crate::caps::check(&tx, project.tenant_id, cap).await?;
            let q = tx
                .prepare_cached(
                    "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .or_db()?;
            tx.execute(
                &q,
                &[
                    project.tenant_id.as_uuid(),
                    project.id.as_uuid(),
                    &project.name.as_str(),
                    &project.created_at,
                    &project.updated_at,
                ],
            )
            .await
            .or_db()?;
            store_events(&tx, events, self.max_pending_jobs).await?;
            crate::audit::append(&tx, project.tenant_id, trail).await?;
            tx.commit().await.or_db()?;
            Ok(Keyed::Written)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events, trail))]
    async fn rename(
        &self,
        tenant: TenantId,
        id: ProjectId,
        name: &ProjectName,
        events: EventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Project> {
        self.bounded(async {
            let mut client = self.conn(op::PROJECTS_RENAME).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!(
                    "UPDATE projects SET name = $3, updated_at = GREATEST($4, created_at) \
                     WHERE tenant_id = $1 AND id = $2 RETURNING ",
                    columns!()
                ))
                .await
                .or_db()?;
            let row =
                tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid(), &name.as_str(), &self.clock.now()]).await.or_db()?;
            let project = row.as_ref().map(project_from_row).transpose()?.ok_or(Error::NotFound)?;
            store_events(&tx, &events(&project), self.max_pending_jobs).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()?;
            Ok(project)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events, trail))]
    async fn delete(&self, tenant: TenantId, id: ProjectId, events: EventsFor<'_>, trail: &AuditTrail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::PROJECTS_DELETE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!("DELETE FROM projects WHERE tenant_id = $1 AND id = $2 RETURNING ", columns!()))
                .await
                .or_db()?;
            let row = tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
            let project = row.as_ref().map(project_from_row).transpose()?.ok_or(Error::NotFound)?;
            store_events(&tx, &events(&project), self.max_pending_jobs).await?;
            crate::audit::append(&tx, tenant, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }
}
