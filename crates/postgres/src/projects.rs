//! A tenant's projects; each write stores the events it causes in the same transaction.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use plinth_domain::entities::Project;
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{ProjectId, TenantId};
use plinth_domain::page::Cursor;
use plinth_domain::ports::{EventsFor, ProjectRepository};
use plinth_domain::values::ProjectName;
use plinth_domain::{Error, Result, clock};
use tokio_postgres::Row;

use crate::error::{self, corrupt};
use crate::pool::{PgStore, tenant_read, tenant_tx};

macro_rules! columns {
    () => {
        "tenant_id, id, name, created_at, updated_at"
    };
}

fn project_from_row(row: &Row) -> Result<Project> {
    Ok(Project {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").map_err(error::db)?),
        id: ProjectId::from_uuid(row.try_get("id").map_err(error::db)?),
        name: ProjectName::parse(row.try_get("name").map_err(error::db)?).map_err(|_| corrupt("project name"))?,
        created_at: row.try_get("created_at").map_err(error::db)?,
        updated_at: row.try_get("updated_at").map_err(error::db)?,
    })
}

/// Appends `events` to the outbox, in the caller's transaction, with their deliveries and
/// jobs; `QueueFull` (for the caller to roll back) when those jobs take the tenant past
/// `max_pending_jobs`.
async fn store_events(tx: &Transaction<'_>, events: &[DomainEvent], max_pending_jobs: i64) -> Result<()> {
    let Some(tenant) = events.first().map(|e| e.tenant_id) else {
        return Ok(());
    };
    let insert = tx
        .prepare_cached("INSERT INTO events (tenant_id, id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .await
        .map_err(error::db)?;
    let mut enqueued = 0;
    for event in events {
        let payload = serde_json::to_value(event).map_err(Error::internal)?;
        tx.execute(
            &insert,
            &[event.tenant_id.as_uuid(), event.id.as_uuid(), &event.kind.as_str(), &payload, &event.created_at],
        )
        .await
        .map_err(error::db)?;
        enqueued += crate::webhooks::create_deliveries(tx, event).await?;
    }
    if enqueued == 0 {
        return Ok(());
    }
    crate::jobs::check_room(tx, tenant, max_pending_jobs).await
}

#[async_trait]
impl ProjectRepository for PgStore {
    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Project>> {
        let at_most = limit;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.bounded(async {
            let client = self.conn().await?;
            let rows = match after {
                None => {
                    let sql = concat!(
                        "SELECT ",
                        columns!(),
                        " FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                    );
                    tenant_read(&client, tenant, sql, &[tenant.as_uuid(), &limit], at_most).await?
                }
                Some(c) => {
                    let sql = concat!(
                        "SELECT ",
                        columns!(),
                        " FROM projects WHERE tenant_id = $1 AND (created_at, id) < ($2, $3) \
                         ORDER BY created_at DESC, id DESC LIMIT $4"
                    );
                    tenant_read(&client, tenant, sql, &[tenant.as_uuid(), &c.created_at, &c.id, &limit], at_most)
                        .await?
                }
            };
            // Sized up front: collecting `Result`s can't know the length and would grow it.
            let mut projects = Vec::with_capacity(rows.len());
            for row in &rows {
                projects.push(project_from_row(row)?);
            }
            Ok(projects)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, tenant: TenantId, id: ProjectId) -> Result<Option<Project>> {
        self.bounded(async {
            let client = self.conn().await?;
            let sql = concat!("SELECT ", columns!(), " FROM projects WHERE tenant_id = $1 AND id = $2");
            let rows = tenant_read(&client, tenant, sql, &[tenant.as_uuid(), id.as_uuid()], 1).await?;
            rows.first().map(project_from_row).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %project.tenant_id))]
    async fn insert(&self, project: &Project, events: &[DomainEvent]) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, project.tenant_id).await?;
            let q = tx
                .prepare_cached(
                    "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .map_err(error::db)?;
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
            .map_err(error::db)?;
            store_events(&tx, events, self.max_pending_jobs).await?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events))]
    async fn rename(
        &self,
        tenant: TenantId,
        id: ProjectId,
        name: &ProjectName,
        events: EventsFor<'_>,
    ) -> Result<Project> {
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!(
                    "UPDATE projects SET name = $3, updated_at = GREATEST($4, created_at) \
                     WHERE tenant_id = $1 AND id = $2 RETURNING ",
                    columns!()
                ))
                .await
                .map_err(error::db)?;
            let row = tx
                .query_opt(&q, &[tenant.as_uuid(), id.as_uuid(), &name.as_str(), &clock::now()])
                .await
                .map_err(error::db)?;
            let project = row.as_ref().map(project_from_row).transpose()?.ok_or(Error::NotFound)?;
            store_events(&tx, &events(&project), self.max_pending_jobs).await?;
            tx.commit().await.map_err(error::db)?;
            Ok(project)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, events))]
    async fn delete(&self, tenant: TenantId, id: ProjectId, events: EventsFor<'_>) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn().await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(concat!("DELETE FROM projects WHERE tenant_id = $1 AND id = $2 RETURNING ", columns!()))
                .await
                .map_err(error::db)?;
            let row = tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid()]).await.map_err(error::db)?;
            let project = row.as_ref().map(project_from_row).transpose()?.ok_or(Error::NotFound)?;
            store_events(&tx, &events(&project), self.max_pending_jobs).await?;
            tx.commit().await.map_err(error::db)
        })
        .await
    }
}
