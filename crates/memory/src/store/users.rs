//! `UserRepository` over the store: emails unique per tenant, and never without an owner.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::User;
use plinth_domain::events::EventData;
use plinth_domain::ids::{TenantId, UserId};
use plinth_domain::page::Cursor;
use plinth_domain::plans::Cap;
use plinth_domain::ports::{IdempotentWrite, Keyed, UserRepository};
use plinth_domain::values::{Email, Role};
use plinth_domain::{Conflict, Error, Result};

use super::{MemoryStore, TenantData};

type Check<'a> = &'a (dyn Fn(&User) -> Result<()> + Send + Sync);

impl TenantData {
    /// The user `id`, after the caller's `check` and the last-owner rule (a user who is an
    /// owner and would stop being one must not be the only owner).
    fn checked_user(&self, id: UserId, still_owner: bool, check: Check<'_>) -> Result<&User> {
        let user = self.users.get(*id.as_uuid()).ok_or(Error::NotFound)?;
        check(user)?;
        if user.role == Role::Owner && !still_owner {
            let owners = self.users.iter().filter(|u| u.role == Role::Owner).count();
            if owners <= 1 {
                return Err(Error::Conflict(Conflict::LastOwner));
            }
        }
        Ok(user)
    }
}

#[async_trait]
impl UserRepository for MemoryStore {
    async fn create(
        &self,
        user: &User,
        key: Option<&IdempotentWrite>,
        trail: &AuditTrail,
        cap: Option<Cap>,
    ) -> Result<Keyed> {
        let now = self.clock.now();
        let written = self.keyed(key, |data| {
            let events = trail.events(user.tenant_id, &[EventData::User(user.clone())])?;
            data.check_room_for(user.tenant_id, &events)?;
            let rows = data.owner_of_new_row(user.tenant_id)?;
            if rows.emails.contains_key(&user.email) {
                return Err(Error::Conflict(Conflict::EmailTaken));
            }
            Cap::check_if(cap, rows.users.len())?;
            if !rows.users.insert(user.clone()) {
                return Err(Error::internal(format!("user {} exists", user.id)));
            }
            rows.emails.insert(user.email.clone(), user.id);
            data.settle(user.tenant_id, &events, trail, now);
            Ok(())
        })?;
        self.wake();
        Ok(written)
    }

    async fn get(&self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        Ok(self.read().tenant(tenant).and_then(|t| t.users.get(*id.as_uuid())).cloned())
    }

    async fn find_by_email(&self, tenant: TenantId, email: &Email) -> Result<Option<User>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        Ok(rows.emails.get(email).and_then(|id| rows.users.get(*id.as_uuid())).cloned())
    }

    async fn list(&self, tenant: TenantId, after: Option<&Cursor>, limit: usize) -> Result<Vec<User>> {
        Ok(self.read().tenant(tenant).map(|t| t.users.page(after, limit)).unwrap_or_default())
    }

    async fn update_role(
        &self,
        tenant: TenantId,
        id: UserId,
        role: Role,
        check: Check<'_>,
        trail: &AuditTrail,
    ) -> Result<User> {
        let now = self.clock.now();
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let user = rows.checked_user(id, role == Role::Owner, check)?;
        let changed = user.role != role;
        let token_version = if changed { user.token_version + 1 } else { user.token_version };
        let updated = User { role, token_version, ..user.clone() };
        // A role set to the one the user has changes nothing a `user.updated` would report.
        let events = if changed { trail.events(tenant, &[EventData::User(updated.clone())])? } else { Vec::new() };
        rows.users.replace(updated.clone());
        if changed {
            rows.sessions.end_where(|s| s.user_id == id);
            rows.lower_keys_of(id, role);
        }
        data.settle(tenant, &events, trail, now);
        drop(data);
        self.wake();
        Ok(updated)
    }

    async fn delete(&self, tenant: TenantId, id: UserId, check: Check<'_>, trail: &AuditTrail) -> Result<()> {
        let now = self.clock.now();
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let user = rows.checked_user(id, false, check)?;
        let events = trail.events(tenant, &[EventData::User(user.clone())])?;
        if let Some(user) = rows.users.remove(*id.as_uuid()) {
            rows.emails.remove(&user.email);
        }
        rows.sessions.end_where(|s| s.user_id == id);
        rows.forget_creator(id);
        data.settle(tenant, &events, trail, now);
        drop(data);
        self.wake();
        Ok(())
    }
}
