//! `AccountEmails` in PostgreSQL: invitations, emailed tokens (`user_tokens`) and messages
//! (`outbound_emails`), each flow's change, its message and the message's job in one
//! transaction under the tenant's RLS context. A token is spent by deleting its row, so two
//! concurrent uses of one token can't both succeed.

use async_trait::async_trait;
use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::{Invitation, Tenant, User, url_origin};
use plinth_domain::error::Conflict;
use plinth_domain::events::{AcceptedInvitation, EventData};
use plinth_domain::ids::{EmailId, InvitationId, TenantId, UserId, WebhookId};
use plinth_domain::ports::{
    Acceptance, AccountEmails, EmailOutcome, Job, NOTICE_REASON, NewEmail, NewVerification, NextStep, PendingEmail,
    WebhookNotice,
};
use plinth_domain::values::{Email, PasswordHash, Purpose, Role, Slug, TenantName, TokenHash};
use plinth_domain::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{self, OrDb as _, corrupt};
use crate::op;
use crate::pool::{PgStore, Tx, tenant_tx, unscoped};
use crate::sessions::end_sessions;
use crate::users::insert_user;

/// The longest `last_error` kept (the column's bound).
const MAX_ERROR_CHARS: usize = 512;

/// Stores `email`'s message and enqueues its job in `tx`. Errors: `QueueFull`.
pub(crate) async fn queue_email(tx: &Tx<'_>, email: &NewEmail, max_pending_jobs: i64) -> Result<()> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO outbound_emails (tenant_id, id, purpose, recipient, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .await
        .or_db()?;
    tx.execute(
        &insert,
        &[email.tenant.as_uuid(), email.id.as_uuid(), &email.purpose.as_str(), &email.to.as_str(), &email.created_at],
    )
    .await
    .or_db()?;
    crate::jobs::enqueue_email(tx, email.tenant, email.id).await?;
    crate::jobs::check_room(tx, email.tenant, max_pending_jobs).await
}

/// Stores the verification token and queues its message in `tx`.
pub(crate) async fn queue_verification_in(tx: &Tx<'_>, v: &NewVerification, max_pending_jobs: i64) -> Result<()> {
    queue_email(tx, &v.email, max_pending_jobs).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO user_tokens (tenant_id, token_hash, purpose, user_id, email_id, expires_at) \
             VALUES ($1, $2, 'verify_email', $3, $4, $5)",
        )
        .await
        .or_db()?;
    let inserted = tx
        .execute(
            &insert,
            &[
                v.email.tenant.as_uuid(),
                &v.token.as_bytes().as_slice(),
                v.user.as_uuid(),
                v.email.id.as_uuid(),
                &v.expires_at,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if error::foreign_key_violation(&e) => Err(Error::NotFound),
        Err(e) => Err(error::db(e)),
    }
}

/// Spends the live token of `purpose` with hash `token` in `tx`: its user.
async fn spend_token(
    tx: &Tx<'_>,
    tenant: TenantId,
    purpose: Purpose,
    token: &TokenHash,
    now: OffsetDateTime,
) -> Result<Option<UserId>> {
    let delete = tx
        .prepare_cached(
            "DELETE FROM user_tokens WHERE tenant_id = $1 AND token_hash = $2 AND purpose = $3 AND expires_at > $4 \
             RETURNING user_id",
        )
        .await
        .or_db()?;
    let row = tx
        .query_opt(&delete, &[tenant.as_uuid(), &token.as_bytes().as_slice(), &purpose.as_str(), &now])
        .await
        .or_db()?;
    row.map(|r| r.try_get("user_id").map(UserId::from_uuid).or_db()).transpose()
}

/// Marks `user`'s address verified, in `tx`; the user as they are after it when it was not
/// verified before (what `user.updated` reports), else `None` and nothing changed.
async fn verify_address(tx: &Tx<'_>, tenant: TenantId, user: UserId, now: OffsetDateTime) -> Result<Option<User>> {
    let verify = tx
        .prepare_cached(concat!(
            "UPDATE users SET email_verified = true, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND NOT email_verified RETURNING ",
            crate::users::user_columns!()
        ))
        .await
        .or_db()?;
    let row = tx.query_opt(&verify, &[tenant.as_uuid(), user.as_uuid(), &now]).await.or_db()?;
    row.as_ref().map(crate::users::user_from_row).transpose()
}

/// Spends every token of `purpose` of `user`, in `tx`.
pub(crate) async fn spend_all(tx: &Tx<'_>, tenant: TenantId, user: UserId, purpose: Purpose) -> Result<()> {
    let delete = tx
        .prepare_cached("DELETE FROM user_tokens WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3")
        .await
        .or_db()?;
    tx.execute(&delete, &[tenant.as_uuid(), user.as_uuid(), &purpose.as_str()]).await.or_db()?;
    Ok(())
}

fn invitation_from_row(row: &Row) -> Result<Invitation> {
    Ok(Invitation {
        id: InvitationId::from_uuid(row.try_get("id").or_db()?),
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id").or_db()?),
        email: Email::parse(row.try_get("email").or_db()?).map_err(|_| corrupt("email"))?,
        role: row.try_get::<_, &str>("role").or_db()?.parse().map_err(|_| corrupt("role"))?,
        invited_by: UserId::from_uuid(row.try_get("invited_by").or_db()?),
        created_at: row.try_get("created_at").or_db()?,
        expires_at: row.try_get("expires_at").or_db()?,
    })
}

/// `reason` cut to the column's bound, on a character boundary.
fn bounded_reason(reason: &str) -> String {
    reason.chars().take(MAX_ERROR_CHARS).collect()
}

#[async_trait]
impl AccountEmails for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %invitation.tenant_id))]
    async fn invite(
        &self,
        invitation: &Invitation,
        token: &TokenHash,
        email: &NewEmail,
        max_pending: usize,
        trail: &AuditTrail,
    ) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_INVITE).await?;
            let tenant = invitation.tenant_id;
            let tx = tenant_tx(&mut client, tenant).await?;
            // Invitations of one tenant take turns (the cap is counted under this lock, which
            // the transaction's end releases). The first key names this lock's kind.
            let lock = tx
                .prepare_cached("SELECT pg_advisory_xact_lock(1886152040, hashtext($1::uuid::text))")
                .await
                .or_db()?;
            tx.execute(&lock, &[tenant.as_uuid()]).await.or_db()?;
            let member = tx.prepare_cached("SELECT 1 FROM users WHERE tenant_id = $1 AND email = $2").await.or_db()?;
            if tx.query_opt(&member, &[tenant.as_uuid(), &invitation.email.as_str()]).await.or_db()?.is_some() {
                return Err(Error::Conflict(Conflict::EmailTaken));
            }
            let replace =
                tx.prepare_cached("DELETE FROM invitations WHERE tenant_id = $1 AND email = $2").await.or_db()?;
            tx.execute(&replace, &[tenant.as_uuid(), &invitation.email.as_str()]).await.or_db()?;
            let count = tx
                .prepare_cached("SELECT count(*) FROM invitations WHERE tenant_id = $1 AND expires_at > $2")
                .await
                .or_db()?;
            let pending: i64 = tx.query_one(&count, &[tenant.as_uuid(), &invitation.created_at]).await.or_db()?.get(0);
            if usize::try_from(pending).unwrap_or(usize::MAX) >= max_pending {
                return Err(Error::Conflict(Conflict::TooManyInvitations));
            }
            queue_email(&tx, email, self.max_pending_jobs).await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO invitations (tenant_id, id, email, role, invited_by, token_hash, email_id, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await
                .or_db()?;
            tx.execute(
                &insert,
                &[
                    tenant.as_uuid(),
                    invitation.id.as_uuid(),
                    &invitation.email.as_str(),
                    &invitation.role.as_str(),
                    invitation.invited_by.as_uuid(),
                    &token.as_bytes().as_slice(),
                    email.id.as_uuid(),
                    &invitation.created_at,
                    &invitation.expires_at,
                ],
            )
            .await
            .or_db()?;
            crate::audit::append(&tx, invitation.tenant_id, trail).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn invitations(&self, tenant: TenantId, now: OffsetDateTime) -> Result<Vec<Invitation>> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_INVITATIONS).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(
                    "SELECT tenant_id, id, email, role, invited_by, created_at, expires_at FROM invitations \
                     WHERE tenant_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id DESC",
                )
                .await
                .or_db()?;
            let rows = tx.query(&q, &[tenant.as_uuid(), &now]).await.or_db()?;
            tx.commit().await.or_db()?;
            rows.iter().map(invitation_from_row).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, trail))]
    async fn revoke_invitation(&self, tenant: TenantId, id: InvitationId, trail: &AuditTrail) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_REVOKE).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx.prepare_cached("DELETE FROM invitations WHERE tenant_id = $1 AND id = $2").await.or_db()?;
            let n = tx.execute(&q, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
            if n > 0 {
                crate::audit::append(&tx, tenant, trail).await?;
            }
            tx.commit().await.or_db()?;
            Ok(n > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn accept_invitation(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        member: &Acceptance,
        trail: &AuditTrail,
        cap: Option<plinth_domain::plans::Cap>,
    ) -> Result<Option<User>> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_ACCEPT).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            // Only while its inviter may still send it: a manager, an owner for an owner's.
            let spend = tx
                .prepare_cached(
                    "DELETE FROM invitations i USING users inviter \
                     WHERE i.tenant_id = $1 AND i.token_hash = $2 AND i.expires_at > $3 \
                       AND inviter.tenant_id = i.tenant_id AND inviter.id = i.invited_by \
                       AND inviter.role IN ('owner', 'admin') AND (i.role <> 'owner' OR inviter.role = 'owner') \
                     RETURNING i.id, i.email, i.role, i.invited_by, i.created_at",
                )
                .await
                .or_db()?;
            let row =
                tx.query_opt(&spend, &[tenant.as_uuid(), &token.as_bytes().as_slice(), &member.now]).await.or_db()?;
            let Some(row) = row else { return Ok(None) };
            let user = User {
                id: member.user,
                tenant_id: tenant,
                email: Email::parse(row.try_get("email").or_db()?).map_err(|_| corrupt("email"))?,
                role: row.try_get::<_, &str>("role").or_db()?.parse::<Role>().map_err(|_| corrupt("role"))?,
                password_hash: member.password_hash.clone(),
                created_at: member.now,
                token_version: 0,
                email_verified: true,
            };
            let accepted = AcceptedInvitation {
                id: InvitationId::from_uuid(row.try_get("id").or_db()?),
                email: user.email.clone(),
                role: user.role,
                invited_by: UserId::from_uuid(row.try_get("invited_by").or_db()?),
                user_id: user.id,
                created_at: row.try_get("created_at").or_db()?,
                accepted_at: member.now,
            };
            let events = trail.events(tenant, &[EventData::User(user.clone()), EventData::Invitation(accepted)])?;
            // `EmailTaken` and `PlanLimitReached` roll the spending back: the invitation stays
            // pending.
            crate::caps::check(&tx, tenant, cap).await?;
            insert_user(&tx, &user).await?;
            crate::events::settle(&tx, tenant, &events, trail).await?;
            tx.commit().await.or_db()?;
            Ok(Some(user))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %email.tenant))]
    async fn request_reset(&self, email: &NewEmail) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_REQUEST_RESET).await?;
            let tx = tenant_tx(&mut client, email.tenant).await?;
            queue_email(&tx, email, self.max_pending_jobs).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn reset_password(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        hash: &PasswordHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_RESET).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let Some(user) = spend_token(&tx, tenant, Purpose::PasswordReset, token, now).await? else {
                return Ok(None);
            };
            let trail = trail.by_user(user);
            let events = match verify_address(&tx, tenant, user, now).await? {
                Some(verified) => trail.events(tenant, &[EventData::User(verified)])?,
                None => Vec::new(),
            };
            let update = tx
                .prepare_cached(
                    "UPDATE users SET password_hash = $3, email_verified = true, token_version = token_version + 1, \
                     updated_at = $4 WHERE tenant_id = $1 AND id = $2",
                )
                .await
                .or_db()?;
            tx.execute(&update, &[tenant.as_uuid(), user.as_uuid(), &hash.as_str(), &now]).await.or_db()?;
            spend_all(&tx, tenant, user, Purpose::PasswordReset).await?;
            end_sessions(&tx, tenant, user, None).await?;
            crate::events::settle(&tx, tenant, &events, &trail).await?;
            tx.commit().await.or_db()?;
            Ok(Some(user))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %verification.email.tenant))]
    async fn queue_verification(&self, verification: &NewVerification) -> Result<()> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_QUEUE_VERIFICATION).await?;
            let tx = tenant_tx(&mut client, verification.email.tenant).await?;
            queue_verification_in(&tx, verification, self.max_pending_jobs).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn verify_email(
        &self,
        tenant: TenantId,
        token: &TokenHash,
        now: OffsetDateTime,
        trail: &AuditTrail,
    ) -> Result<Option<UserId>> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_VERIFY).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let Some(user) = spend_token(&tx, tenant, Purpose::VerifyEmail, token, now).await? else {
                return Ok(None);
            };
            let trail = trail.by_user(user);
            let events = match verify_address(&tx, tenant, user, now).await? {
                Some(verified) => trail.events(tenant, &[EventData::User(verified)])?,
                None => Vec::new(),
            };
            spend_all(&tx, tenant, user, Purpose::VerifyEmail).await?;
            crate::events::settle(&tx, tenant, &events, &trail).await?;
            tx.commit().await.or_db()?;
            Ok(Some(user))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_email(&self, tenant: TenantId, id: EmailId) -> Result<Option<PendingEmail>> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_LOAD_EMAIL).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(
                    "SELECT e.purpose, e.recipient, e.created_at, e.attempts, t.slug, t.name, t.plan, \
                            i.role AS invited_role, inviter.email AS inviter, \
                            w.id AS webhook_id, w.url AS webhook_url, w.disabled_reason, \
                            CASE WHEN e.purpose = 'invitation' \
                                 THEN coalesce(inviter.role IN ('owner', 'admin') \
                                               AND (i.role <> 'owner' OR inviter.role = 'owner'), false) \
                                 WHEN e.purpose = 'webhook_disabled' THEN w.id IS NOT NULL \
                                 ELSE EXISTS (SELECT 1 FROM user_tokens ut \
                                              WHERE ut.tenant_id = e.tenant_id AND ut.email_id = e.id) END AS live \
                     FROM outbound_emails e \
                     JOIN tenants t ON t.id = e.tenant_id \
                     LEFT JOIN invitations i ON i.tenant_id = e.tenant_id AND i.email_id = e.id \
                     LEFT JOIN users inviter ON inviter.tenant_id = i.tenant_id AND inviter.id = i.invited_by \
                     LEFT JOIN webhooks w ON w.tenant_id = e.tenant_id AND w.id = e.webhook_id \
                     WHERE e.tenant_id = $1 AND e.id = $2 AND e.state = 'pending'",
                )
                .await
                .or_db()?;
            let row = tx.query_opt(&q, &[tenant.as_uuid(), id.as_uuid()]).await.or_db()?;
            tx.commit().await.or_db()?;
            let Some(row) = row else { return Ok(None) };
            let purpose = Purpose::parse(row.try_get("purpose").or_db()?).ok_or_else(|| corrupt("email purpose"))?;
            let role: Option<&str> = row.try_get("invited_role").or_db()?;
            let inviter: Option<&str> = row.try_get("inviter").or_db()?;
            let invitation = match (role, inviter) {
                (Some(role), Some(inviter)) => Some((
                    role.parse::<Role>().map_err(|_| corrupt("role"))?,
                    Email::parse(inviter).map_err(|_| corrupt("email"))?,
                )),
                _ => None,
            };
            let webhook = match row.try_get::<_, Option<Uuid>>("webhook_id").or_db()? {
                Some(id) => Some(WebhookNotice {
                    id: WebhookId::from_uuid(id),
                    origin: url_origin(row.try_get("webhook_url").or_db()?),
                    reason: row
                        .try_get::<_, Option<String>>("disabled_reason")
                        .or_db()?
                        .unwrap_or_else(|| NOTICE_REASON.to_owned()),
                }),
                None => None,
            };
            Ok(Some(PendingEmail {
                id,
                tenant: Tenant {
                    id: tenant,
                    slug: Slug::parse(row.try_get("slug").or_db()?).map_err(|_| corrupt("slug"))?,
                    name: TenantName::parse(row.try_get("name").or_db()?).map_err(|_| corrupt("tenant name"))?,
                    plan: row.try_get::<_, &str>("plan").or_db()?.parse().map_err(|_| corrupt("plan"))?,
                    lifecycle: plinth_domain::entities::Lifecycle::default(),
                },
                purpose,
                to: Email::parse(row.try_get("recipient").or_db()?).map_err(|_| corrupt("email"))?,
                created_at: row.try_get("created_at").or_db()?,
                attempts: u32::try_from(row.try_get::<_, i32>("attempts").or_db()?).unwrap_or(0),
                invitation,
                webhook,
                live: purpose == Purpose::PasswordReset || row.try_get::<_, bool>("live").or_db()?,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, email = %email))]
    async fn issue_reset(
        &self,
        tenant: TenantId,
        email: EmailId,
        to: &Email,
        token: &TokenHash,
        expires_at: OffsetDateTime,
    ) -> Result<bool> {
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_ISSUE_RESET).await?;
            let tx = tenant_tx(&mut client, tenant).await?;
            let q = tx
                .prepare_cached(
                    "WITH first AS (UPDATE outbound_emails SET token_issued = true \
                                     WHERE tenant_id = $1 AND id = $4 AND NOT token_issued RETURNING id), \
                     member AS (SELECT id FROM users WHERE tenant_id = $1 AND email = $2), \
                     issued AS (INSERT INTO user_tokens (tenant_id, token_hash, purpose, user_id, email_id, expires_at) \
                                SELECT $1, $3, 'password_reset', member.id, $4, $5 FROM member, first \
                                ON CONFLICT (tenant_id, token_hash) DO NOTHING RETURNING 1) \
                     SELECT EXISTS (SELECT 1 FROM issued) \
                         OR EXISTS (SELECT 1 FROM user_tokens WHERE tenant_id = $1 AND token_hash = $3)",
                )
                .await
                .or_db()?;
            let row = tx
                .query_one(
                    &q,
                    &[tenant.as_uuid(), &to.as_str(), &token.as_bytes().as_slice(), email.as_uuid(), &expires_at],
                )
                .await
                .or_db()?;
            tx.commit().await.or_db()?;
            row.try_get(0).or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, outcome))]
    async fn record_email(&self, job: &Job, id: EmailId, outcome: &EmailOutcome) -> Result<()> {
        let (next, reason, attempted) = match outcome {
            EmailOutcome::Sent => (NextStep::Delivered, None, true),
            EmailOutcome::RetryAt(at, reason) => (NextStep::RetryAt(*at), Some(bounded_reason(reason)), true),
            EmailOutcome::Dead(reason) => (NextStep::Dead, Some(bounded_reason(reason)), true),
            EmailOutcome::Dropped(reason) => (NextStep::Delivered, Some((*reason).to_owned()), false),
        };
        self.bounded(async {
            let mut client = self.conn(op::ACCOUNTS_RECORD_EMAIL).await?;
            let tx = tenant_tx(&mut client, job.tenant).await?;
            let update = tx
                .prepare_cached(
                    "UPDATE outbound_emails SET attempts = attempts + $3, state = $4, last_error = $5, updated_at = $6 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .await
                .or_db()?;
            tx.execute(
                &update,
                &[
                    job.tenant.as_uuid(),
                    id.as_uuid(),
                    &i32::from(attempted),
                    &outcome.state(),
                    &reason,
                    &self.clock.now(),
                ],
            )
            .await
            .or_db()?;
            crate::jobs::move_on(&tx, job, next).await?;
            tx.commit().await.or_db()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn prune(&self, now: OffsetDateTime, before: OffsetDateTime) -> Result<u64> {
        self.bounded(async {
            let client = self.conn(op::ACCOUNTS_PRUNE).await?;
            let rows = unscoped(&client, "SELECT plinth_prune_account_emails($1, $2)", &[&now, &before], 1).await?;
            let row = rows.first().ok_or_else(|| corrupt("prune"))?;
            Ok(u64::try_from(row.try_get::<_, i64>(0).or_db()?).unwrap_or(0))
        })
        .await
    }
}
