//! `SessionRepository` over the store: each tenant's sessions and refresh tokens in its own
//! maps, every spend decided under the store's write lock.

use std::collections::HashMap;

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Session;
use plinth_domain::ids::{SessionId, TenantId, UserId};
use plinth_domain::ports::{SessionRepository, Spend};
use plinth_domain::values::{PasswordHash, Role, TokenHash};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;

use super::{MemoryStore, TenantData};

/// A refresh token, by its hash.
pub(super) struct TokenRow {
    session: SessionId,
    spent: Option<(OffsetDateTime, TokenHash)>,
}

/// One tenant's sessions and their tokens.
#[derive(Default)]
pub(super) struct Sessions {
    sessions: HashMap<SessionId, Session>,
    tokens: HashMap<TokenHash, TokenRow>,
}

impl Sessions {
    /// Ends the sessions `ended` picks, with their tokens; returns how many.
    pub(super) fn end_where(&mut self, ended: impl Fn(&Session) -> bool) -> u64 {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| !ended(s));
        let sessions = &self.sessions;
        self.tokens.retain(|_, t| sessions.contains_key(&t.session));
        (before - self.sessions.len()) as u64
    }
}

impl TenantData {
    fn spend(
        &mut self,
        token: &TokenHash,
        successor: &TokenHash,
        now: OffsetDateTime,
        idle_until: OffsetDateTime,
    ) -> Spend {
        let s = &mut self.sessions;
        let Some(row) = s.tokens.get(token) else { return Spend::Unknown };
        let Some(session) = s.sessions.get(&row.session) else { return Spend::Unknown };
        if let Some((spent_at, next)) = row.spent {
            let successor_live = s.tokens.get(&next).is_some_and(|t| t.spent.is_none());
            return Spend::Spent { session: session.clone(), spent_at, successor: next, successor_live };
        }
        if !session.is_live(now) {
            return Spend::Expired(session.id);
        }
        let id = session.id;
        s.tokens.insert(*token, TokenRow { session: id, spent: Some((now, *successor)) });
        s.tokens.insert(*successor, TokenRow { session: id, spent: None });
        let Some(session) = s.sessions.get_mut(&id) else { return Spend::Unknown };
        session.last_used_at = now;
        session.idle_expires_at = idle_until.min(session.expires_at);
        Spend::Rotated(session.clone())
    }
}

#[async_trait]
impl SessionRepository for MemoryStore {
    async fn create(&self, session: &Session, token: &TokenHash, trail: &AuditTrail) -> Result<()> {
        let mut data = self.write();
        let rows = data.tenant_mut(session.tenant_id).ok_or(Error::NotFound)?;
        if rows.users.get(*session.user_id.as_uuid()).is_none() {
            return Err(Error::NotFound);
        }
        rows.sessions.sessions.insert(session.id, session.clone());
        rows.sessions.tokens.insert(*token, TokenRow { session: session.id, spent: None });
        rows.append(trail);
        Ok(())
    }

    async fn spend(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        successor: &TokenHash,
        now: OffsetDateTime,
        idle_until: OffsetDateTime,
    ) -> Result<Spend> {
        let mut data = self.write();
        Ok(data.tenant_mut(tenant).map_or(Spend::Unknown, |rows| rows.spend(token, successor, now, idle_until)))
    }

    async fn marker(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<(Role, u32, bool)>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        let live = rows.sessions.sessions.get(&session).is_some_and(|s| s.user_id == user && s.is_live(now));
        Ok(live.then(|| rows.users.get(*user.as_uuid()).map(|u| (u.role, u.token_version, u.email_verified))).flatten())
    }

    async fn list(&self, tenant: TenantId, user: UserId, now: OffsetDateTime) -> Result<Vec<Session>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        let mut live: Vec<Session> =
            rows.sessions.sessions.values().filter(|s| s.user_id == user && s.is_live(now)).cloned().collect();
        live.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        Ok(live)
    }

    async fn end(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: Option<UserId>,
        trail: &AuditTrail,
    ) -> Result<bool> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        let ended = rows.sessions.end_where(|s| s.id == session && user.is_none_or(|u| s.user_id == u)) > 0;
        if ended {
            rows.append(trail);
        }
        Ok(ended)
    }

    async fn end_all(
        &self,
        tenant: TenantId,
        user: UserId,
        except: Option<SessionId>,
        trail: &AuditTrail,
    ) -> Result<u64> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(0) };
        let ended = rows.sessions.end_where(|s| s.user_id == user && Some(s.id) != except);
        rows.append(trail);
        Ok(ended)
    }

    async fn change_password(
        &self,
        tenant: TenantId,
        user: UserId,
        hash: &PasswordHash,
        keep: SessionId,
        trail: &AuditTrail,
    ) -> Result<()> {
        let mut data = self.write();
        let rows = data.tenant_mut(tenant).ok_or(Error::NotFound)?;
        let mut updated = rows.users.get(*user.as_uuid()).ok_or(Error::NotFound)?.clone();
        updated.password_hash = hash.clone();
        rows.users.replace(updated);
        rows.sessions.end_where(|s| s.user_id == user && s.id != keep);
        rows.accounts.spend_all(user, plinth_domain::values::Purpose::PasswordReset);
        rows.append(trail);
        Ok(())
    }

    async fn prune(&self, now: OffsetDateTime) -> Result<u64> {
        let mut data = self.write();
        Ok(data.tenants.values_mut().map(|rows| rows.sessions.end_where(|s| !s.is_live(now))).sum())
    }
}
