//! Invitations, password resets and address verification: the flows that go through someone's
//! mailbox.
//!
//! Each sends one message, queued with the change that causes it and sent by the worker (see
//! [`Plinth::send_email`]). The message's token is derived from its id (see
//! [`EmailToken`]): only its hash is stored, and a retry renders the same link. Every way a
//! token can be wrong (malformed, unknown, spent, expired, revoked, of another tenant or
//! purpose) is the one error `InvalidEmailToken`.

use std::time::Duration;

use super::audit::by_user;
use super::sessions::after;
use super::{ClientInfo, Plinth, Principal, SignedIn};
use crate::audit::Target;
use crate::entities::{Invitation, Tenant};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids::{EmailId, InvitationId, UserId};
use crate::mail::MailSettings;
use crate::metric;
use crate::ports::{Acceptance, EmailOutcome, Job, NewEmail, NewVerification, Policy};
use crate::values::{Email, EmailKey, EmailToken, Password, Purpose, Role};

/// How long a notice (that carries no token) may wait to be sent before it is dropped.
const NOTICE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How the account flows behave.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Derives each message's token from its id.
    pub key: EmailKey,
    /// How long an invitation's link works.
    pub invitation_ttl: Duration,
    /// How long a password reset's link works.
    pub reset_ttl: Duration,
    /// How long a verification link works.
    pub verify_ttl: Duration,
    /// Pending invitations a tenant may have at once.
    pub max_pending_invitations: usize,
    /// Whether a user must have verified their address before any write.
    pub require_verified: bool,
    /// Where links point, and how messages are named.
    pub mail: MailSettings,
}

impl EmailSettings {
    /// The defaults (7-day invitations, 30-minute resets, 2-day verification links, 1,000
    /// pending invitations, verification not required) with `key` and `mail`.
    pub fn new(key: EmailKey, mail: MailSettings) -> Self {
        Self {
            key,
            invitation_ttl: Duration::from_secs(7 * 86_400),
            reset_ttl: Duration::from_secs(1800),
            verify_ttl: Duration::from_secs(2 * 86_400),
            max_pending_invitations: 1000,
            require_verified: false,
            mail,
        }
    }

    fn ttl(&self, purpose: Purpose) -> Duration {
        match purpose {
            Purpose::Invitation => self.invitation_ttl,
            Purpose::PasswordReset => self.reset_ttl,
            Purpose::VerifyEmail => self.verify_ttl,
            Purpose::WebhookDisabled => NOTICE_TTL,
        }
    }
}

/// The token of `purpose` in `text`, or the one error every bad token gets.
fn token(purpose: Purpose, text: &str) -> Result<EmailToken> {
    EmailToken::parse(purpose, text).map_err(|_| Error::InvalidEmailToken)
}

impl Plinth {
    /// Counts one message to `to` against the mailbox quota: one quota per address, whatever
    /// the tenant or the flow, so neither more tenants nor another flow make room for more
    /// mail to one person. Errors: `RateLimited`.
    pub(super) async fn admit_message(&self, to: &Email) -> Result<()> {
        let decision = self.ports.limiter.check(Policy::Mailbox, to.as_str(), self.settings.quotas.mailbox).await?;
        if decision.allowed {
            Ok(())
        } else {
            metrics::counter!(metric::RATE_LIMIT_REJECTIONS, "policy" => Policy::Mailbox.as_str()).increment(1);
            Err(Error::RateLimited { retry_after_secs: decision.retry_after_secs })
        }
    }

    /// A new message of `purpose` to `to`, and the token its link will carry.
    fn new_email(&self, tenant: crate::ids::TenantId, purpose: Purpose, to: &Email) -> (NewEmail, EmailToken) {
        let email =
            NewEmail { id: EmailId::new(), tenant, purpose, to: to.clone(), created_at: self.ports.clock.now() };
        let token = EmailToken::derive(&self.settings.email.key, purpose, email.id);
        (email, token)
    }

    /// Invites `email` to the caller's tenant as `role`, sending them a link (replacing a
    /// pending invitation of the address). Nobody invites to a role above their own, nor
    /// replaces an invitation to one. Errors: `Forbidden`; `Validation`; `Conflict(EmailTaken)`
    /// (a member has the address); `Conflict(TooManyInvitations)`; `RateLimited` (too many
    /// messages to this address); `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self, email))]
    pub async fn invite(&self, who: &Principal, email: &str, role: Role) -> Result<Invitation> {
        let (inviter, _) = who.person()?;
        who.require_manager()?;
        if who.role == Role::Admin && role == Role::Owner {
            return Err(Error::Forbidden("an admin can't invite an owner"));
        }
        let email = Email::parse(email).map_err(|e| Error::invalid("email", e.to_string()))?;
        // An admin can't replace an owner's invitation (with one of a lesser role) either.
        if who.role == Role::Admin {
            let pending = self.ports.accounts.invitations(who.tenant, self.ports.clock.now()).await?;
            if pending.iter().any(|i| i.email == email && i.role == Role::Owner) {
                return Err(Error::Forbidden("an admin can't replace an invitation to be an owner"));
            }
        }
        self.admit_message(&email).await?;
        let (message, token) = self.new_email(who.tenant, Purpose::Invitation, &email);
        let invitation = Invitation {
            id: InvitationId::new(),
            tenant_id: who.tenant,
            email,
            role,
            invited_by: inviter,
            created_at: message.created_at,
            expires_at: after(message.created_at, self.settings.email.invitation_ttl),
        };
        let max = self.settings.email.max_pending_invitations;
        let trail = self.audit(
            who.actor(),
            "invitation.created",
            Some(Target::new("invitation", invitation.id)),
            serde_json::json!({ "email": invitation.email, "role": invitation.role }),
        );
        self.ports.accounts.invite(&invitation, &token.hash(), &message, max, &trail).await?;
        Ok(invitation)
    }

    /// The caller's tenant's pending invitations, newest first. Errors: `Forbidden`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn invitations(&self, who: &Principal) -> Result<Vec<Invitation>> {
        who.require_manager()?;
        self.ports.accounts.invitations(who.tenant, self.ports.clock.now()).await
    }

    /// Revokes a pending invitation: its link stops working. An admin can't revoke an
    /// invitation to be an owner. Errors: `Forbidden`; `NotFound`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn revoke_invitation(&self, who: &Principal, id: InvitationId) -> Result<()> {
        who.require_manager()?;
        if who.role == Role::Admin {
            let pending = self.ports.accounts.invitations(who.tenant, self.ports.clock.now()).await?;
            if pending.iter().any(|i| i.id == id && i.role == Role::Owner) {
                return Err(Error::Forbidden("an admin can't revoke an invitation to be an owner"));
            }
        }
        let trail =
            self.audit(who.actor(), "invitation.revoked", Some(Target::new("invitation", id)), serde_json::json!({}));
        if self.ports.accounts.revoke_invitation(who.tenant, id, &trail).await? { Ok(()) } else { Err(Error::NotFound) }
    }

    /// Accepts an invitation with its emailed token: the invited address becomes a member
    /// with the password chosen here and a verified address, and is signed in. Errors:
    /// `InvalidEmailToken`; `Validation` (the password); `Conflict(EmailTaken)`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn accept_invitation(
        &self,
        tenant: &Tenant,
        token_text: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignedIn> {
        let password = Password::parse(password).map_err(|e| Error::invalid("password", e.to_string()));
        let token = token(Purpose::Invitation, token_text)?;
        let password = password?;
        let member = Acceptance {
            user: UserId::new(),
            password_hash: self.ports.passwords.hash(&password).await?,
            now: self.ports.clock.now(),
        };
        let trail = self
            .audit(
                by_user(member.user),
                "invitation.accepted",
                Some(Target::new("user", member.user)),
                serde_json::json!({}),
            )
            .with_events(&[EventKind::UserCreated, EventKind::InvitationAccepted], member.now);
        let user = self
            .ports
            .accounts
            .accept_invitation(
                tenant.id,
                &token.hash(),
                &member,
                &trail,
                self.settings.plans.get(&tenant.plan).limits.cap(crate::plans::Resource::Members),
            )
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        self.start_session(&user, client).await
    }

    /// Asks for a password-reset link for `email` on `tenant`. The answer, and the work done
    /// before it, are the same whether or not a member has the address: the message is
    /// queued either way, and the worker looks the member up. Errors: `Validation` (not an
    /// address at all); `RateLimited` (too many messages to this address); `QueueFull`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn request_password_reset(&self, tenant: &Tenant, email: &str) -> Result<()> {
        let email = Email::parse(email).map_err(|e| Error::invalid("email", e.to_string()))?;
        self.admit_message(&email).await?;
        let (message, _) = self.new_email(tenant.id, Purpose::PasswordReset, &email);
        self.ports.accounts.request_reset(&message).await
    }

    /// Sets a new password with a reset link's token, and ends every session of that user (and
    /// their access tokens). Errors: `InvalidEmailToken`; `Validation` (the password).
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn confirm_password_reset(&self, tenant: &Tenant, token_text: &str, new_password: &str) -> Result<()> {
        let password = Password::parse(new_password).map_err(|e| Error::invalid("new_password", e.to_string()));
        let token = token(Purpose::PasswordReset, token_text)?;
        let hash = self.ports.passwords.hash(&password?).await?;
        let now = self.ports.clock.now();
        // A reset also verifies the address: `user.updated` when it was not verified yet.
        let trail = self
            .audit(None, "user.password_reset", None, serde_json::json!({}))
            .with_events(&[EventKind::UserUpdated], now);
        self.ports
            .accounts
            .reset_password(tenant.id, &token.hash(), &hash, now, &trail)
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        // Every session of the user ended in that transaction: drop their markers everywhere.
        self.cache.invalidate(tenant.id).await;
        Ok(())
    }

    /// Verifies a user's address with a verification link's token. Errors: `InvalidEmailToken`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant.slug))]
    pub async fn verify_email(&self, tenant: &Tenant, token_text: &str) -> Result<()> {
        let token = token(Purpose::VerifyEmail, token_text)?;
        let now = self.ports.clock.now();
        let trail = self
            .audit(None, "user.email_verified", None, serde_json::json!({ "email_verified": true }))
            .with_events(&[EventKind::UserUpdated], now);
        self.ports
            .accounts
            .verify_email(tenant.id, &token.hash(), now, &trail)
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        // Sessions' markers carry whether the address is verified.
        self.cache.invalidate(tenant.id).await;
        Ok(())
    }

    /// A verification message for `user`, to queue with whatever creates them.
    pub(super) fn verification(&self, user: &crate::entities::User) -> NewVerification {
        let (email, token) = self.new_email(user.tenant_id, Purpose::VerifyEmail, &user.email);
        let expires_at = after(email.created_at, self.settings.email.verify_ttl);
        NewVerification { user: user.id, token: token.hash(), expires_at, email }
    }

    /// Sends the caller a new verification link (a no-op when their address is verified).
    /// Errors: `RateLimited`; `QueueFull`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn resend_verification(&self, who: &Principal) -> Result<()> {
        let (user, _) = who.person()?;
        let user = self.ports.users.get(who.tenant, user).await?.ok_or(Error::InvalidToken)?;
        if user.email_verified {
            return Ok(());
        }
        self.admit_message(&user.email).await?;
        self.ports.accounts.queue_verification(&self.verification(&user)).await
    }

    /// Makes one attempt at sending message `id` (the job `job`), and records it.
    pub(super) async fn send_email(&self, job: &Job, id: EmailId) -> Result<()> {
        let accounts = &self.ports.accounts;
        let Some(email) = accounts.load_email(job.tenant, id).await? else {
            return self.ports.deliveries.discard(job).await;
        };
        let settings = &self.settings.email;
        let ttl = settings.ttl(email.purpose);
        let expires_at = after(email.created_at, ttl);
        let token = email.purpose.carries_token().then(|| EmailToken::derive(&settings.key, email.purpose, email.id));
        let usable = match (email.purpose, &token) {
            (Purpose::PasswordReset, Some(token)) => {
                accounts.issue_reset(job.tenant, email.id, &email.to, &token.hash(), expires_at).await?
            }
            _ => email.live,
        };
        let outcome = if !usable {
            // A reset for an address nobody has, or a link revoked or used before it was sent.
            EmailOutcome::Dropped("no usable recipient or token")
        } else if self.ports.clock.now() >= expires_at {
            EmailOutcome::Dropped("its link expired before it could be sent")
        } else {
            let message = settings.mail.render(&email, token.as_ref(), ttl);
            let attempts = email.attempts + 1;
            match self.ports.mailer.send(&message).await {
                Ok(()) => EmailOutcome::Sent,
                Err(e) if e.permanent || attempts >= self.settings.delivery.max_attempts => {
                    EmailOutcome::Dead(e.reason)
                }
                Err(e) => EmailOutcome::RetryAt(
                    self.ports.clock.now() + super::worker::backoff(self.settings.delivery.backoff, attempts),
                    e.reason,
                ),
            }
        };
        let result = outcome.state();
        tracing::info!(job = job.id, email = %email.id, purpose = email.purpose.as_str(), result, "email attempt");
        metrics::counter!(metric::EMAILS, "purpose" => email.purpose.as_str(), "result" => result).increment(1);
        accounts.record_email(job, id, &outcome).await
    }
}
