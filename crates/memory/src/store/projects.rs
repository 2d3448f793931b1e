//! `ProjectRepository` over the store: each write and its events land together in the
//! tenant's rows and outbox.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Project;
use plinth_domain::events::DomainEvent;
use plinth_domain::ids::{ProjectId, TenantId};
use plinth_domain::page::Cursor;
use plinth_domain::plans::Cap;
use plinth_domain::ports::{EventsFor, IdempotentWrite, Keyed, ProjectRepository};
use plinth_domain::values::ProjectName;
use plinth_domain::{Error, Result};

use super::MemoryStore;

#[async_trait]
impl ProjectRepository for MemoryStore {
    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<Project>> {
        Ok(self.read().tenant(tenant).map(|t| t.projects.page(after, limit)).unwrap_or_default())
    }

    async fn get(&self, tenant: TenantId, id: ProjectId) -> Result<Option<Project>> {
        Ok(self.read().tenant(tenant).and_then(|t| t.projects.get(*id.as_uuid())).cloned())
    }

    async fn insert(
        &self,
        project: &Project,
        events: &[DomainEvent],
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<Cap>,
    ) -> Result<Keyed> {
        let now = self.clock.now();
        let written = self.keyed(key, |data| {
            let rows = data.owner_of_new_row(project.tenant_id)?;
            Cap::check_if(cap, rows.projects.len())?;
            let needed = rows.deliveries_for(events);
            data.jobs.check_room(project.tenant_id, needed)?;
            let rows = data.owner_of_new_row(project.tenant_id)?;
            if !rows.projects.insert(project.clone()) {
                return Err(Error::internal(format!("project {} exists", project.id)));
            }
            let deliveries = rows.record(events);
            rows.append(trail);
            data.enqueue(project.tenant_id, deliveries, now);
            Ok(())
        })?;
        self.wake();
        Ok(written)
    }

    async fn rename(
        &self,
        tenant: TenantId,
        id: ProjectId,
        name: &ProjectName,
        events: EventsFor<'_>,
        trail: &AuditTrail,
    ) -> Result<Project> {
        let now = self.clock.now();
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let current = rows.projects.get(*id.as_uuid()).ok_or(Error::NotFound)?;
        // Never earlier than before, even if the wall clock stepped back.
        let updated_at = now.max(current.updated_at);
        let updated = Project { name: name.clone(), updated_at, ..current.clone() };
        // Built before anything changes: if building panics, nothing is half-written.
        let caused = events(&updated);
        let needed = rows.deliveries_for(&caused);
        data.jobs.check_room(tenant, needed)?;
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        rows.projects.replace(updated.clone());
        let deliveries = rows.record(&caused);
        rows.append(trail);
        data.enqueue(tenant, deliveries, now);
        self.wake();
        Ok(updated)
    }

    async fn delete(&self, tenant: TenantId, id: ProjectId, events: EventsFor<'_>, trail: &AuditTrail) -> Result<()> {
        let now = self.clock.now();
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let current = rows.projects.get(*id.as_uuid()).ok_or(Error::NotFound)?;
        let caused = events(current);
        let needed = rows.deliveries_for(&caused);
        data.jobs.check_room(tenant, needed)?;
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        rows.projects.remove(*id.as_uuid());
        let deliveries = rows.record(&caused);
        rows.append(trail);
        data.enqueue(tenant, deliveries, now);
        self.wake();
        Ok(())
    }
}
