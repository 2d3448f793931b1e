//! `AccountEmails` over the store: each tenant's invitations, emailed tokens and messages in
//! its own maps, each flow's change and its message written under one write lock.

use std::collections::HashMap;

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Invitation, User};
use plinth_domain::events::{AcceptedInvitation, EventData};
use plinth_domain::ids::{EmailId, InvitationId, TenantId, UserId, WebhookId};
use plinth_domain::ports::{
    Acceptance, AccountEmails, EmailOutcome, Job, NOTICE_REASON, NewEmail, NewVerification, NextStep, PendingEmail,
    WebhookNotice, Work,
};
use plinth_domain::values::{Email, PasswordHash, Purpose, Role, TokenHash};
use plinth_domain::{Conflict, Error, Result};
use time::OffsetDateTime;

use super::{Data, MemoryStore, TenantData};

/// A pending invitation, its token's hash and its message.
struct InvitationRow {
    invitation: Invitation,
    token: TokenHash,
    email: EmailId,
}

/// A reset or verification token of a user.
struct UserToken {
    purpose: Purpose,
    user: UserId,
    email: EmailId,
    expires_at: OffsetDateTime,
}

/// A queued message.
struct EmailRow {
    purpose: Purpose,
    to: Email,
    created_at: OffsetDateTime,
    attempts: u32,
    state: &'static str,
    /// Whether its reset token was issued (on its first attempt).
    token_issued: bool,
    /// The webhook a notice is about.
    webhook: Option<WebhookId>,
}

/// One tenant's invitations, tokens and messages.
#[derive(Default)]
pub(super) struct Accounts {
    invitations: HashMap<InvitationId, InvitationRow>,
    tokens: HashMap<TokenHash, UserToken>,
    emails: HashMap<EmailId, EmailRow>,
}

impl Accounts {
    /// Forgets what expired at `now`, and messages no longer pending queued before `before`;
    /// returns how many.
    fn prune(&mut self, now: OffsetDateTime, before: OffsetDateTime) -> u64 {
        let count = self.invitations.len() + self.tokens.len() + self.emails.len();
        self.invitations.retain(|_, i| i.invitation.expires_at > now);
        self.tokens.retain(|_, t| t.expires_at > now);
        self.emails.retain(|_, e| e.state == "pending" || e.created_at >= before);
        (count - self.invitations.len() - self.tokens.len() - self.emails.len()) as u64
    }

    fn queue(&mut self, email: &NewEmail) {
        self.queue_about(email, None);
    }

    /// Queues `email`, a notice about `webhook` when given.
    pub(super) fn queue_about(&mut self, email: &NewEmail, webhook: Option<WebhookId>) {
        let row = EmailRow {
            purpose: email.purpose,
            to: email.to.clone(),
            created_at: email.created_at,
            attempts: 0,
            state: "pending",
            token_issued: false,
            webhook,
        };
        self.emails.insert(email.id, row);
    }

    /// Spends every token of `purpose` of `user`.
    pub(super) fn spend_all(&mut self, user: UserId, purpose: Purpose) {
        self.tokens.retain(|_, t| !(t.user == user && t.purpose == purpose));
    }
}

impl Data {
    /// Queues `email`'s message and its job, after `change` (which may refuse) made the change
    /// that causes it: all or nothing, under the caller's write lock.
    fn with_message<T>(&mut self, email: &NewEmail, change: impl FnOnce(&mut TenantData) -> Result<T>) -> Result<T> {
        self.jobs.check_room(email.tenant, 1)?;
        let rows = self.tenant_mut(email.tenant).ok_or(Error::NotFound)?;
        let out = change(rows)?;
        rows.accounts.queue(email);
        self.enqueue_work(email.tenant, Work::Email(email.id), email.created_at);
        Ok(out)
    }
}

impl TenantData {
    /// Stores a verification token (its user must exist).
    pub(super) fn add_verification(&mut self, v: &NewVerification) -> Result<()> {
        if self.users.get(*v.user.as_uuid()).is_none() {
            return Err(Error::NotFound);
        }
        let token =
            UserToken { purpose: Purpose::VerifyEmail, user: v.user, email: v.email.id, expires_at: v.expires_at };
        self.accounts.tokens.insert(v.token, token);
        Ok(())
    }

    /// Spends the live token of `purpose` with hash `token`: its user.
    fn spend_token(&mut self, purpose: Purpose, token: &TokenHash, now: OffsetDateTime) -> Option<UserId> {
        let live = self.accounts.tokens.get(token).is_some_and(|t| t.purpose == purpose && t.expires_at > now);
        if !live {
            return None;
        }
        let user = self.accounts.tokens.remove(token)?.user;
        self.users.get(*user.as_uuid()).is_some().then_some(user)
    }

    /// Whether `invitation`'s inviter may still send it: a manager, and an owner for an
    /// invitation to be an owner.
    fn inviter_may_send(&self, invitation: &Invitation) -> bool {
        self.users.get(*invitation.invited_by.as_uuid()).is_some_and(|inviter| {
            inviter.role.manages_users() && (invitation.role != Role::Owner || inviter.role == Role::Owner)
        })
    }

    /// Changes user `id` by `change`; the user as they are after it when it verified their
    /// address (not verified before): what `user.updated` reports.
    fn update_user(&mut self, id: UserId, change: impl FnOnce(&mut User)) -> Option<User> {
        let mut user = self.users.get(*id.as_uuid())?.clone();
        let was_verified = user.email_verified;
        change(&mut user);
        (self.users.replace(user.clone()) && !was_verified && user.email_verified).then_some(user)
    }
}

impl MemoryStore {
    /// Queues the verification message `v` with the store already locked (signup's tenant).
    pub(super) fn queue_verification_locked(data: &mut Data, v: &NewVerification) -> Result<()> {
        data.with_message(&v.email, |rows| rows.add_verification(v))
    }
}

#[async_trait]
impl AccountEmails for MemoryStore {
    async fn invite(
        &self,
        invitation: &Invitation,
        token: &TokenHash,
        email: &NewEmail,
        max_pending: usize,
        trail: &AuditTrail,
    ) -> Result<()> {
        let now = self.clock.now();
        {
            let mut data = self.write();
            data.with_message(email, |rows| {
                if rows.emails.contains_key(&invitation.email) {
                    return Err(Error::Conflict(Conflict::EmailTaken));
                }
                let a = &mut rows.accounts;
                a.invitations.retain(|_, i| i.invitation.email != invitation.email);
                if a.invitations.values().filter(|i| i.invitation.expires_at > now).count() >= max_pending {
                    return Err(Error::Conflict(Conflict::TooManyInvitations));
                }
                let row = InvitationRow { invitation: invitation.clone(), token: *token, email: email.id };
                a.invitations.insert(invitation.id, row);
                rows.append(trail);
                Ok(())
            })?;
        }
        self.wake();
        Ok(())
    }

    async fn invitations(&self, tenant: TenantId, now: OffsetDateTime) -> Result<Vec<Invitation>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(Vec::new()) };
        let mut pending: Vec<Invitation> = rows
            .accounts
            .invitations
            .values()
            .filter(|i| i.invitation.expires_at > now)
            .map(|i| i.invitation.clone())
            .collect();
        pending.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
        Ok(pending)
    }

    async fn revoke_invitation(&self, tenant: TenantId, id: InvitationId, trail: &AuditTrail) -> Result<bool> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        let revoked = rows.accounts.invitations.remove(&id).is_some();
        if revoked {
            rows.append(trail);
        }
        Ok(revoked)
    }

    async fn accept_invitation(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        member: &Acceptance,
        trail: &AuditTrail,
        cap: Option<plinth_domain::plans::Cap>,
    ) -> Result<Option<User>> {
        let now = self.clock.now();
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(None) };
        let found = rows
            .accounts
            .invitations
            .iter()
            .find(|(_, i)| i.token.constant_time_eq(token) && i.invitation.expires_at > member.now)
            .map(|(id, i)| (*id, i.invitation.clone()));
        let Some((id, invitation)) = found else { return Ok(None) };
        if !rows.inviter_may_send(&invitation) {
            return Ok(None);
        }
        if rows.emails.contains_key(&invitation.email) {
            return Err(Error::Conflict(Conflict::EmailTaken));
        }
        plinth_domain::plans::Cap::check_if(cap, rows.users.len())?;
        let accepted = AcceptedInvitation {
            id,
            email: invitation.email.clone(),
            role: invitation.role,
            invited_by: invitation.invited_by,
            user_id: member.user,
            created_at: invitation.created_at,
            accepted_at: member.now,
        };
        let user = User {
            id: member.user,
            tenant_id: tenant,
            email: invitation.email,
            role: invitation.role,
            password_hash: member.password_hash.clone(),
            created_at: member.now,
            token_version: 0,
            email_verified: true,
        };
        let events = trail.events(tenant, &[EventData::User(user.clone()), EventData::Invitation(accepted)])?;
        rows.accounts.invitations.remove(&id);
        rows.emails.insert(user.email.clone(), user.id);
        rows.users.insert(user.clone());
        data.settle(tenant, &events, trail, now);
        drop(data);
        self.wake();
        Ok(Some(user))
    }

    async fn request_reset(&self, email: &NewEmail) -> Result<()> {
        self.write().with_message(email, |_| Ok(()))?;
        self.wake();
        Ok(())
    }

    async fn reset_password(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        hash: &PasswordHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(None) };
        let Some(user) = rows.spend_token(Purpose::PasswordReset, token, now) else { return Ok(None) };
        let trail = trail.by_user(user);
        let verified = rows.update_user(user, |u| {
            u.password_hash = hash.clone();
            u.email_verified = true;
            u.token_version += 1;
        });
        rows.accounts.spend_all(user, Purpose::PasswordReset);
        rows.sessions.end_where(|s| s.user_id == user);
        let events = verified.map_or(Ok(Vec::new()), |after| trail.events(tenant, &[EventData::User(after)]))?;
        data.settle(tenant, &events, &trail, self.clock.now());
        drop(data);
        self.wake();
        Ok(Some(user))
    }

    async fn queue_verification(&self, verification: &NewVerification) -> Result<()> {
        Self::queue_verification_locked(&mut self.write(), verification)?;
        self.wake();
        Ok(())
    }

    async fn verify_email(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(None) };
        let Some(user) = rows.spend_token(Purpose::VerifyEmail, token, now) else { return Ok(None) };
        let trail = trail.by_user(user);
        let verified = rows.update_user(user, |u| u.email_verified = true);
        rows.accounts.spend_all(user, Purpose::VerifyEmail);
        let events = verified.map_or(Ok(Vec::new()), |after| trail.events(tenant, &[EventData::User(after)]))?;
        data.settle(tenant, &events, &trail, self.clock.now());
        drop(data);
        self.wake();
        Ok(Some(user))
    }

    async fn load_email(&self, tenant: TenantId, id: EmailId) -> Result<Option<PendingEmail>> {
        let data = self.read();
        let Some(rows) = data.tenant(tenant) else { return Ok(None) };
        let Some(email) = rows.accounts.emails.get(&id).filter(|e| e.state == "pending") else { return Ok(None) };
        let invitation = rows.accounts.invitations.values().find(|i| i.email == id);
        let webhook = email.webhook.and_then(|w| rows.webhooks.get(*w.as_uuid()));
        let live = match email.purpose {
            Purpose::Invitation => invitation.is_some_and(|i| rows.inviter_may_send(&i.invitation)),
            Purpose::VerifyEmail => rows.accounts.tokens.values().any(|t| t.email == id),
            Purpose::PasswordReset => true,
            // A notice about a webhook deleted meanwhile has nothing left to say.
            Purpose::WebhookDisabled => webhook.is_some(),
        };
        let webhook = webhook.map(|w| WebhookNotice {
            id: w.id,
            origin: w.origin(),
            reason: w.health.disabled_reason.clone().unwrap_or_else(|| NOTICE_REASON.to_owned()),
        });
        let invitation = invitation.and_then(|i| {
            let inviter = rows.users.get(*i.invitation.invited_by.as_uuid())?;
            Some((i.invitation.role, inviter.email.clone()))
        });
        Ok(Some(PendingEmail {
            id,
            tenant: rows.tenant.clone(),
            purpose: email.purpose,
            to: email.to.clone(),
            created_at: email.created_at,
            attempts: email.attempts,
            invitation,
            webhook,
            live,
        }))
    }

    async fn issue_reset(
        &self,
        tenant: TenantId,
        email: EmailId,
        to: &Email,
        token: &TokenHash,
        expires_at: OffsetDateTime,
    ) -> Result<bool> {
        let mut data = self.write();
        let Some(rows) = data.tenant_mut(tenant) else { return Ok(false) };
        let member = rows.emails.get(to).copied();
        let a = &mut rows.accounts;
        let Some(message) = a.emails.get_mut(&email) else { return Ok(false) };
        if std::mem::replace(&mut message.token_issued, true) {
            // A retry: the link works only while the token issued the first time is unspent.
            return Ok(a.tokens.contains_key(token));
        }
        let Some(user) = member else { return Ok(false) };
        a.tokens.insert(*token, UserToken { purpose: Purpose::PasswordReset, user, email, expires_at });
        Ok(true)
    }

    async fn record_email(&self, job: &Job, id: EmailId, outcome: &EmailOutcome) -> Result<()> {
        let mut data = self.write();
        if let Some(rows) = data.tenant_mut(job.tenant)
            && let Some(email) = rows.accounts.emails.get_mut(&id)
        {
            if !matches!(outcome, EmailOutcome::Dropped(_)) {
                email.attempts += 1;
            }
            email.state = outcome.state();
        }
        let next = match outcome {
            EmailOutcome::RetryAt(at, _) => NextStep::RetryAt(*at),
            EmailOutcome::Dead(_) => NextStep::Dead,
            EmailOutcome::Sent | EmailOutcome::Dropped(_) => NextStep::Delivered,
        };
        data.move_on(job, next);
        Ok(())
    }

    async fn prune(&self, now: OffsetDateTime, before: OffsetDateTime) -> Result<u64> {
        Ok(self.write().tenants.values_mut().map(|rows| rows.accounts.prune(now, before)).sum())
    }
}
