//! `TenantRepository` over the store: a tenant and its owner arrive together.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Tenant, User};
use plinth_domain::ports::{NewVerification, TenantRepository};
use plinth_domain::values::Slug;
use plinth_domain::{Conflict, Error, Result};

use super::{MemoryStore, TenantData};

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
        rows.append(trail);
        data.slugs.insert(tenant.slug.clone(), tenant.id);
        data.tenants.insert(tenant.id, rows);
        if let Some(v) = verification {
            Self::queue_verification_locked(&mut data, v)?;
            drop(data);
            self.wake();
        }
        Ok(())
    }

    async fn set_plan(
        &self,
        tenant: plinth_domain::ids::TenantId,
        plan: &plinth_domain::values::Plan,
        trail: &AuditTrail,
    ) -> Result<bool> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        rows.tenant.plan = plan.clone();
        rows.append(trail);
        Ok(true)
    }

    async fn usage(&self, tenant: plinth_domain::ids::TenantId) -> Result<plinth_domain::ports::Usage> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(plinth_domain::ports::Usage::default()) };
        Ok(plinth_domain::ports::Usage {
            members: rows.users.iter().count() as u64,
            projects: rows.projects.iter().count() as u64,
            webhooks: rows.webhooks.iter().count() as u64,
            api_keys: rows.live_keys() as u64,
        })
    }

    async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        let data = self.read();
        Ok(data.slugs.get(slug).and_then(|id| data.tenant(*id)).map(|t| t.tenant.clone()))
    }
}
