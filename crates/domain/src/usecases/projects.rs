//! Projects: reads served as cached JSON bytes, writes that carry their events.

use bytes::Bytes;

use super::Plinth;
use crate::audit::Target;
use crate::cache::Scope;
use crate::entities::Project;
use crate::error::{Error, Result};
use crate::events::{DomainEvent, EventKind};
use crate::ids::{ProjectId, TenantId};
use crate::page::{Cursor, Page, PageRequest};
use crate::plans::Resource;
use crate::ports::IdempotentWrite;
use crate::tagged::TaggedJson;
use crate::usecases::{Answer, Idempotency, Principal};
use crate::values::ProjectName;

fn project_cursor(p: &Project) -> Cursor {
    Cursor { created_at: p.created_at, id: *p.id.as_uuid() }
}

/// A project's JSON is about this long; a page's is this per item.
const PROJECT_JSON_BYTES: usize = 192;

fn to_tagged_json<T: serde::Serialize>(value: &T, items: usize) -> Result<Bytes> {
    let capacity = PROJECT_JSON_BYTES * items.max(1);
    Ok(TaggedJson::to_json(value, capacity).map_err(Error::internal)?.into_stored())
}

fn tagged(stored: Bytes) -> Result<TaggedJson> {
    TaggedJson::from_stored(stored).ok_or_else(|| Error::internal("a cached body has no entity tag"))
}

fn parse_name(name: &str) -> Result<ProjectName> {
    ProjectName::parse(name).map_err(|e| Error::invalid("name", e.to_string()))
}

impl Plinth {
    /// A page of the tenant's projects, as the API's JSON (`{items, next_cursor}`) with its
    /// entity tag.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_projects(&self, tenant: TenantId, page: &PageRequest) -> Result<TaggedJson> {
        // Cached values are tagged bodies (the key's `tagged` says so to older instances).
        let mut key = String::with_capacity(64);
        key.push_str("tagged:projects:");
        page.push_cache_key(&mut key);
        let stored = self
            .cache
            .cached(Scope::Tenant(tenant), &key, self.settings.ttls.projects, || async {
                let rows = self.ports.projects.list(tenant, page.after.as_ref(), page.fetch_limit()).await?;
                let items = rows.len();
                to_tagged_json(&Page::from_rows(rows, page, project_cursor, &self.settings.cursor_key), items)
            })
            .await?;
        tagged(stored)
    }

    /// One project, as the API's JSON with its entity tag. Errors: `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_project(&self, tenant: TenantId, id: ProjectId) -> Result<TaggedJson> {
        let stored = self
            .cache
            .cached(Scope::Tenant(tenant), &format!("tagged:project:{id}"), self.settings.ttls.projects, || async {
                match self.ports.projects.get(tenant, id).await? {
                    Some(p) => to_tagged_json(&p, 1),
                    None => Ok(Bytes::new()),
                }
            })
            .await?;
        if stored.is_empty() { Err(Error::NotFound) } else { tagged(stored) }
    }

    /// Creates a project, once per idempotency key. Errors: `Validation`;
    /// `IdempotencyKeyReused`; `QueueFull` (its deliveries would take the tenant past its cap of
    /// pending jobs); `PlanLimitReached`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn create_project(
        &self,
        who: &Principal,
        name: &str,
        idempotency: Option<Idempotency<'_, Project>>,
    ) -> Result<Answer<Project>> {
        let prepare = async || {
            let name = parse_name(name)?;
            let now = self.ports.clock.now();
            Ok(Project { id: ProjectId::new(), tenant_id: who.tenant, name, created_at: now, updated_at: now })
        };
        let write = async |project: &Project, key: Option<&IdempotentWrite>| {
            let event = DomainEvent::project(EventKind::ProjectCreated, project, self.ports.clock.now());
            let changes = serde_json::json!({ "name": project.name });
            let trail = self.audit(who.actor(), "project.created", Some(Target::new("project", project.id)), changes);
            let cap = who.limits.cap(Resource::Projects);
            self.ports.projects.insert(project, &[event], key, &trail, cap).await
        };
        let answer = self.once(who, idempotency, prepare, write).await?;
        if let Answer::Done(_) = answer {
            self.cache.invalidate(who.tenant).await;
        }
        Ok(answer)
    }

    /// Renames a project. Errors: `Validation`; `NotFound`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn rename_project(&self, who: &Principal, id: ProjectId, name: &str) -> Result<Project> {
        let name = parse_name(name)?;
        let events = |p: &Project| vec![DomainEvent::project(EventKind::ProjectUpdated, p, self.ports.clock.now())];
        let changes = serde_json::json!({ "name": name });
        let trail = self.audit(who.actor(), "project.updated", Some(Target::new("project", id)), changes);
        let project = self.ports.projects.rename(who.tenant, id, &name, &events, &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(project)
    }

    /// Deletes a project. Errors: `Forbidden` (a member); `NotFound`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_project(&self, who: &Principal, id: ProjectId) -> Result<()> {
        if !who.role.manages_users() {
            return Err(Error::Forbidden("only an owner or an admin may delete a project"));
        }
        let events = |p: &Project| vec![DomainEvent::project(EventKind::ProjectDeleted, p, self.ports.clock.now())];
        let trail = self.audit(who.actor(), "project.deleted", Some(Target::new("project", id)), serde_json::json!({}));
        self.ports.projects.delete(who.tenant, id, &events, &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }
}
