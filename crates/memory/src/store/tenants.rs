//! `TenantRepository` over the store: a tenant and its owner arrive together.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Lifecycle, Tenant, User};
use plinth_domain::events::{DomainEvent, EventData};
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{NewVerification, TenantRepository, TenantState};
use plinth_domain::values::{Plan, Slug};
use plinth_domain::{Conflict, Error, Result};
use time::OffsetDateTime;

use super::{MemoryStore, TenantData};

impl MemoryStore {
    /// Changes the tenant's row by `change`, and if it did (it answers whether), stores `events`
    /// and appends `trail`, at once; whether there is such a tenant and it changed. Its jobs
    /// wait while it is suspended or deleted.
    fn update_tenant(
        &self,
        tenant: TenantId,
        events: &[DomainEvent],
        trail: &AuditTrail,
        change: impl FnOnce(&mut Tenant) -> bool,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        if !change(&mut rows.tenant) {
            return Ok(false);
        }
        let paused = !rows.tenant.lifecycle.is_active();
        let deliveries = rows.record(events);
        rows.append(trail);
        data.enqueue(tenant, deliveries, now);
        data.pause(tenant, paused);
        drop(data);
        self.wake();
        Ok(true)
    }
}

#[async_trait]
impl TenantRepository for MemoryStore {
    async fn create_with_owner(
        &self,
        tenant: &Tenant,
        owner: &User,
        verification: Option<&NewVerification>,
        trail: &AuditTrail,
    ) -> Result<()> {
        if owner.tenant_id != tenant.id {
            return Err(Error::internal("the owner belongs to another tenant"));
        }
        let events = trail.events(tenant.id, &[EventData::User(owner.clone())])?;
        let now = self.clock.now();
        let mut data = self.write();
        if data.slugs.contains_key(&tenant.slug) {
            return Err(Error::Conflict(Conflict::SlugTaken));
        }
        if data.tenants.contains_key(&tenant.id) {
            return Err(Error::internal(format!("tenant {} exists", tenant.id)));
        }
        let mut rows = TenantData::new(tenant.clone());
        rows.emails.insert(owner.email.clone(), owner.id);
        rows.users.insert(owner.clone());
        data.slugs.insert(tenant.slug.clone(), tenant.id);
        data.tenants.insert(tenant.id, rows);
        data.settle(tenant.id, &events, trail, now);
        if let Some(v) = verification {
            Self::queue_verification_locked(&mut data, v)?;
            drop(data);
            self.wake();
        }
        Ok(())
    }

    async fn set_plan(
        &self,
        tenant: TenantId,
        plan: &Plan,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool> {
        self.update_tenant(tenant, events, trail, |t| {
            t.plan = plan.clone();
            true
        })
    }

    async fn set_lifecycle(
        &self,
        tenant: TenantId,
        from: &Lifecycle,
        to: &Lifecycle,
        events: &[DomainEvent],
        trail: &AuditTrail,
    ) -> Result<bool> {
        self.update_tenant(tenant, events, trail, |t| {
            let unchanged = t.lifecycle == *from;
            if unchanged {
                t.lifecycle = *to;
            }
            unchanged
        })
    }

    async fn list(&self, after: Option<&Slug>, limit: usize, state: Option<TenantState>) -> Result<Vec<Tenant>> {
        let data = self.read();
        let mut slugs: Vec<&Slug> =
            data.slugs.keys().filter(|s| after.is_none_or(|a| s.as_str() > a.as_str())).collect();
        slugs.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(slugs
            .into_iter()
            .filter_map(|s| data.slugs.get(s).and_then(|id| data.tenant(*id)))
            .map(|rows| &rows.tenant)
            .filter(|t| state.is_none_or(|s| s.holds(&t.lifecycle)))
            .take(limit.min(1000))
            .cloned()
            .collect())
    }

    async fn due_for_purge(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(TenantId, Slug)>> {
        let data = self.read();
        let mut due: Vec<(OffsetDateTime, &Tenant)> = data
            .tenants
            .values()
            .filter_map(|rows| rows.tenant.lifecycle.purge_after.filter(|at| *at <= now).map(|at| (at, &rows.tenant)))
            .collect();
        due.sort_unstable_by_key(|(at, t)| (*at, t.id));
        Ok(due.into_iter().take(limit.min(1000)).map(|(_, t)| (t.id, t.slug.clone())).collect())
    }

    async fn purge_batch(&self, tenant: TenantId, now: OffsetDateTime, _batch: usize) -> Result<u64> {
        // In memory nothing is locked for long: the tenant goes whole, in one call.
        let mut data = self.write();
        let due = data.tenant(tenant).and_then(|rows| rows.tenant.lifecycle.purge_after).is_some_and(|at| at <= now);
        if !due {
            return Ok(0);
        }
        let jobs = data.drop_queue(tenant);
        let Some(rows) = data.tenants.remove(&tenant) else { return Ok(0) };
        data.slugs.remove(&rows.tenant.slug);
        Ok(rows.row_count() + jobs as u64)
    }

    async fn usage(&self, tenant: TenantId) -> Result<plinth_domain::ports::Usage> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(plinth_domain::ports::Usage::default()) };
        Ok(plinth_domain::ports::Usage {
            members: rows.users.len() as u64,
            projects: rows.projects.len() as u64,
            webhooks: rows.webhooks.len() as u64,
            api_keys: rows.live_keys() as u64,
        })
    }

    async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        let data = self.read();
        Ok(data.slugs.get(slug).and_then(|id| data.tenant(*id)).map(|t| t.tenant.clone()))
    }
}
