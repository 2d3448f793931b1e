//! The account flows that go through someone's mailbox: invitations, password resets and
//! address verification, with the messages they send.
//!
//! Every message is a row written in the same transaction as the change that causes it, with
//! a job that sends it; every emailed token is stored as its SHA-256 only, with its purpose and
//! expiry, and is spent (deleted) by its one use.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditTrail;
use crate::entities::{Invitation, Tenant, User};
use crate::error::Result;
use crate::ids::{EmailId, InvitationId, TenantId, UserId};
use crate::ports::Job;
use crate::values::{Email, PasswordHash, Purpose, Role, TokenHash};

/// A message to queue: which purpose's template, to whom, for which tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    /// Its id (its `Message-ID`, and what its token is derived from).
    pub id: EmailId,
    /// The tenant it is sent for.
    pub tenant: TenantId,
    /// Which template, and which kind of token its link carries.
    pub purpose: Purpose,
    /// The recipient.
    pub to: Email,
    /// When it was queued: its token's lifetime counts from here.
    pub created_at: OffsetDateTime,
}

/// A verification link to send to a user: the message and the token it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVerification {
    /// The message (purpose [`Purpose::VerifyEmail`]).
    pub email: NewEmail,
    /// The user whose address it verifies.
    pub user: UserId,
    /// The stored hash of its token.
    pub token: TokenHash,
    /// When the token stops working.
    pub expires_at: OffsetDateTime,
}

/// A message waiting to be sent, as the worker loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEmail {
    /// The message's id.
    pub id: EmailId,
    /// The tenant it is sent for (its slug makes the link's host, its name the greeting).
    pub tenant: Tenant,
    /// What it is for.
    pub purpose: Purpose,
    /// The recipient.
    pub to: Email,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// Attempts made so far.
    pub attempts: u32,
    /// For an invitation: the role offered and who offers it, while the invitation is pending.
    pub invitation: Option<(Role, Email)>,
    /// For a webhook's notice: which webhook, and why it was disabled.
    pub webhook: Option<WebhookNotice>,
    /// Whether the token it carries can still be used: false once an invitation was revoked or
    /// accepted or its inviter may no longer send it, or a verification token spent; a reset's
    /// token is made when it is first sent (see [`AccountEmails::issue_reset`]), so true.
    pub live: bool,
}

/// What a notice says of why its webhook was disabled when the webhook no longer says (it
/// was enabled again before the notice was sent).
pub const NOTICE_REASON: &str = "every attempt failed for too long";

/// What a notice says of the webhook it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNotice {
    /// The webhook.
    pub id: crate::ids::WebhookId,
    /// Its URL's origin (`scheme://host[:port]`: its path may hold a secret of its own).
    pub origin: String,
    /// Why it was disabled.
    pub reason: String,
}

/// What became of a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// The server accepted it: done.
    Sent,
    /// Try again at this time; the reason is kept.
    RetryAt(OffsetDateTime, String),
    /// Given up (a permanent refusal or the last attempt); the reason is kept.
    Dead(String),
    /// Not sent, and never will be: nobody to send it to, or its token is no longer usable.
    Dropped(&'static str),
}

impl EmailOutcome {
    /// The state stored for it.
    pub const fn state(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::RetryAt(..) => "pending",
            Self::Dead(_) => "dead",
            Self::Dropped(_) => "dropped",
        }
    }
}

/// A new member, made from an invitation when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    /// The new user's id.
    pub user: UserId,
    /// The hash of the password they chose.
    pub password_hash: PasswordHash,
    /// When they accepted.
    pub now: OffsetDateTime,
}

/// Invitations, emailed tokens and the messages that carry them, for one tenant at a time
/// (but for the worker's calls, which name theirs).
#[async_trait]
pub trait AccountEmails: Send + Sync {
    /// Stores a pending invitation with its token's hash and queues its message, replacing a
    /// pending invitation of the same address, atomically. Errors: `Conflict(EmailTaken)` when
    /// a member has the address; `Conflict(TooManyInvitations)` when the tenant would have
    /// more than `max_pending` pending invitations; `QueueFull`.
    async fn invite(
        &self,
        invitation: &Invitation,
        token: &TokenHash,
        email: &NewEmail,
        max_pending: usize,
        trail: &AuditTrail,
    ) -> Result<()>;

    /// The tenant's invitations pending at `now`, newest first.
    async fn invitations(&self, tenant: TenantId, now: OffsetDateTime) -> Result<Vec<Invitation>>;

    /// Revokes a pending invitation (its link stops working); whether there was one.
    async fn revoke_invitation(&self, tenant: TenantId, id: InvitationId, trail: &AuditTrail) -> Result<bool>;

    /// Spends the invitation whose token has hash `token`, if it is pending at `now` and its
    /// inviter may still send it (a manager, and an owner for an owner's invitation), and adds
    /// its address as a member with its role and a verified address, atomically. `None` when
    /// no such invitation is pending. Errors: `Conflict(EmailTaken)` when the address became a
    /// member meanwhile (the invitation is kept); `PlanLimitReached` past `cap` (the tenant's
    /// member limit), the invitation kept too.
    async fn accept_invitation(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        member: &Acceptance,
        trail: &AuditTrail,
        cap: Option<crate::plans::Cap>,
    ) -> Result<Option<User>>;

    /// Queues a password-reset message to whatever member has the address, if any: the same
    /// write whether or not one does (the worker finds out). Errors: `QueueFull`.
    async fn request_reset(&self, email: &NewEmail) -> Result<()>;

    /// Spends the reset token with hash `token` if it is live at `now`, and atomically sets its
    /// user's password, marks their address verified, ends all their sessions, revokes their
    /// access tokens (the token version) and spends their other reset tokens. The user, or
    /// `None` when no such token is live.
    async fn reset_password(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        hash: &PasswordHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>>;

    /// Stores a verification token and queues its message. Errors: `NotFound` (no such user);
    /// `QueueFull`.
    async fn queue_verification(&self, verification: &NewVerification) -> Result<()>;

    /// Spends the verification token with hash `token` if it is live at `now`, marks its
    /// user's address verified and spends their other verification tokens; the user, or `None`.
    async fn verify_email(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>>;

    /// The message `id` of `tenant` if it is still to be sent.
    async fn load_email(&self, tenant: TenantId, id: EmailId) -> Result<Option<PendingEmail>>;

    /// For the reset message `email` to `to`: the first time, stores the token with hash
    /// `token` for the member with that address, if there is one, and says whether there is;
    /// any later time (a retry of the message) stores nothing and says whether that token is
    /// still unspent, so a spent link is never made usable again by a resend.
    async fn issue_reset(
        &self,
        tenant: TenantId,
        email: EmailId,
        to: &Email,
        token: &TokenHash,
        expires_at: OffsetDateTime,
    ) -> Result<bool>;

    /// Records an attempt at (or the dropping of) message `id` and moves `job` on, atomically:
    /// rescheduled for `RetryAt`, finished for anything else.
    async fn record_email(&self, job: &Job, id: EmailId, outcome: &EmailOutcome) -> Result<()>;

    /// Deletes, across every tenant, invitations and emailed tokens expired at `now`, and
    /// messages no longer pending that were queued before `before`; returns how many rows.
    async fn prune(&self, now: OffsetDateTime, before: OffsetDateTime) -> Result<u64>;
}
