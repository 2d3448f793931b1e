//! The entities: tenants, their users and their projects. Their `Serialize` form is the
//! API's representation.

use serde::Serialize;
use time::OffsetDateTime;

use crate::ids::{ProjectId, SessionId, TenantId, UserId};
use crate::values::{Email, PasswordHash, Plan, ProjectName, Role, Slug, TenantName};

/// A customer organisation, addressed by its slug's host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// Its slug, the first label of its host name.
    pub slug: Slug,
    /// Its display name.
    pub name: TenantName,
    /// Its plan, which sets its rate limit.
    pub plan: Plan,
    /// Whether it is suspended or deleted (shown only when it is).
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

impl Tenant {
    /// A new, active tenant.
    pub fn new(id: TenantId, slug: Slug, name: TenantName, plan: Plan) -> Self {
        Self { id, slug, name, plan, lifecycle: Lifecycle::default() }
    }
}

/// Where a tenant is in its life. Suspension and deletion are independent: a tenant deleted
/// while suspended is still suspended once restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lifecycle {
    /// Since when its hosts answer 403 `tenant_suspended` and its jobs wait.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(example = "2026-12-04T09:30:00Z"))]
    pub suspended_at: Option<OffsetDateTime>,
    /// Since when its hosts answer 404 and its jobs wait, its data kept until `purge_after`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(example = "2026-12-04T09:30:00Z"))]
    pub deleted_at: Option<OffsetDateTime>,
    /// When a deleted tenant's data is erased; until then `restore` undoes the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(example = "2027-01-03T09:30:00Z"))]
    pub purge_after: Option<OffsetDateTime>,
}

impl Lifecycle {
    /// Neither suspended nor deleted.
    pub const fn is_active(&self) -> bool {
        self.suspended_at.is_none() && self.deleted_at.is_none()
    }

    /// What a request to the tenant's hosts meets: `TenantNotFound` once deleted,
    /// `TenantSuspended` while suspended.
    pub const fn admits(&self) -> crate::Result<()> {
        if self.deleted_at.is_some() {
            Err(crate::Error::TenantNotFound)
        } else if self.suspended_at.is_some() {
            Err(crate::Error::TenantSuspended)
        } else {
            Ok(())
        }
    }

    /// The state's name: `active`, `suspended` or `deleted`.
    pub const fn state(&self) -> &'static str {
        if self.deleted_at.is_some() {
            "deleted"
        } else if self.suspended_at.is_some() {
            "suspended"
        } else {
            "active"
        }
    }
}

/// A person who signs in to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The tenant the user belongs to.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// The sign-in email, unique within the tenant.
    pub email: Email,
    /// What the user may do.
    pub role: Role,
    /// The argon2id hash of the password.
    #[serde(skip)]
    pub password_hash: PasswordHash,
    /// When the user was created; orders the users list.
    #[serde(skip)]
    pub created_at: OffsetDateTime,
    /// Raised whenever the user's role changes; their access tokens carry it, and a token of
    /// another version is refused.
    #[serde(skip)]
    pub token_version: u32,
    /// Whether the user has proved they receive mail at `email` (a verification link, an
    /// accepted invitation, or a password reset).
    #[cfg_attr(feature = "openapi", schema(example = true))]
    pub email_verified: bool,
}

/// An invitation to join a tenant, pending until accepted, revoked or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    /// The invitation's id.
    pub id: crate::ids::InvitationId,
    /// The inviting tenant.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Who is invited.
    pub email: Email,
    /// The role they get on accepting.
    pub role: Role,
    /// Who invited them.
    pub invited_by: UserId,
    /// When it was sent (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// When its link stops working (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub expires_at: OffsetDateTime,
}

/// A project: the example resource every tenant owns many of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    /// The project's id.
    pub id: ProjectId,
    /// The owning tenant.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Its name.
    pub name: ProjectName,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// When it was last changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub updated_at: OffsetDateTime,
}

/// A tenant's subscription: events of these kinds are POSTed to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    /// The webhook's id.
    pub id: crate::ids::WebhookId,
    /// The owning tenant.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Where deliveries are POSTed.
    #[cfg_attr(feature = "openapi", schema(example = "https://hooks.example.com/plinth"))]
    pub url: String,
    /// The event kinds it receives.
    pub events: Vec<crate::events::EventKind>,
    /// When it was registered (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// At most this many deliveries a second are attempted; none when absent.
    #[cfg_attr(feature = "openapi", schema(example = 10))]
    pub rate_limit_per_second: Option<u32>,
    /// Until when deliveries are also signed with the secret it had before its last rotation
    /// (RFC 3339); absent when they aren't.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub rotation_ends_at: Option<OffsetDateTime>,
    /// Whether it receives deliveries, and how its attempts have gone.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub health: WebhookHealth,
}

impl Webhook {
    /// A new, enabled webhook with no history.
    pub fn new(
        id: crate::ids::WebhookId,
        tenant_id: TenantId,
        url: String,
        events: Vec<crate::events::EventKind>,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            tenant_id,
            url,
            events,
            created_at,
            rate_limit_per_second: None,
            rotation_ends_at: None,
            health: WebhookHealth::default(),
        }
    }

    /// Its URL's origin, `scheme://host[:port]`, without credentials, path, query or fragment:
    /// what is recorded or mailed of it (a path or query often carries a secret of its own).
    pub fn origin(&self) -> String {
        url_origin(&self.url)
    }

    /// This webhook as it stands at `now`: a rotation's overlap that has ended is no longer
    /// shown.
    #[must_use]
    pub fn as_of(mut self, now: OffsetDateTime) -> Self {
        self.rotation_ends_at = self.rotation_ends_at.filter(|ends| *ends > now);
        self
    }

    /// Whether new deliveries are made and attempted for it.
    pub const fn is_enabled(&self) -> bool {
        matches!(self.health.state, WebhookState::Enabled)
    }
}

/// `scheme://host[:port]` of `url`, without credentials, path, query or fragment. Stored URLs
/// are normalised by the guard; for any other, a backslash ends the host as a slash does (as
/// URL parsers read it) and no whitespace or control character is kept, so a path can't pass
/// for the origin, nor text be slipped into where the origin is shown.
pub fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let clean = |s: &str| s.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect::<String>();
    format!("{}://{}", clean(scheme), clean(host))
}

/// Whether a webhook receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebhookState {
    /// Its deliveries are made and attempted.
    #[default]
    Enabled,
    /// No delivery is made or attempted: it was disabled by a member or after failing too long.
    Disabled,
}

/// A webhook's state and the record of its attempts, kept by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookHealth {
    /// Whether it receives deliveries.
    pub state: WebhookState,
    /// Why it was disabled, while it is.
    #[cfg_attr(feature = "openapi", schema(example = "failing since 2026-11-29T09:30:00Z, 12 attempts in a row"))]
    pub disabled_reason: Option<String>,
    /// When it was disabled (RFC 3339), while it is.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub disabled_at: Option<OffsetDateTime>,
    /// When an attempt last succeeded (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub last_success_at: Option<OffsetDateTime>,
    /// Attempts that failed since the last success.
    #[cfg_attr(feature = "openapi", schema(example = 0))]
    pub consecutive_failures: u32,
    /// When the first of those failures happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub failing_since: Option<OffsetDateTime>,
}

impl WebhookHealth {
    /// This record after an attempt at `at` that succeeded or not.
    #[must_use]
    pub fn after_attempt(&self, delivered: bool, at: OffsetDateTime) -> Self {
        let mut next = self.clone();
        if delivered {
            next.last_success_at = Some(at);
            next.consecutive_failures = 0;
            next.failing_since = None;
        } else {
            next.consecutive_failures = next.consecutive_failures.saturating_add(1);
            next.failing_since = Some(next.failing_since.unwrap_or(at));
        }
        next
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Every attempt failed.
    Dead,
    /// Its webhook was disabled before it was delivered: no attempt will be made unless it is
    /// retried or recovered.
    Skipped,
}

impl DeliveryState {
    /// The state's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead, Self::Skipped].into_iter().find(|k| k.as_str() == s)
    }
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// The delivery's id.
    pub id: crate::ids::DeliveryId,
    /// The owning tenant.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// The webhook it goes to.
    #[serde(skip)]
    pub webhook_id: crate::ids::WebhookId,
    /// The event's id (`Plinth-Event-Id`).
    pub event_id: crate::ids::EventId,
    /// The event's kind.
    pub event: crate::events::EventKind,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    #[cfg_attr(feature = "openapi", schema(example = 1))]
    pub attempts: u32,
    /// Why the last attempt failed, if it did.
    #[cfg_attr(feature = "openapi", schema(example = "HTTP 503 from the receiver"))]
    pub last_error: Option<String>,
    /// When the event happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
}

/// A signed-in device: created by a login (or signup), continued by refresh tokens, ended by
/// logout, by reuse of a spent refresh token, by its user's password or role change, or by
/// expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// The session's id (the `sid` of its access tokens).
    pub id: SessionId,
    /// The tenant.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// The signed-in user.
    #[serde(skip)]
    pub user_id: UserId,
    /// When the session began (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// When a refresh token last continued it (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub last_used_at: OffsetDateTime,
    /// It ends unless refreshed before this.
    #[serde(skip)]
    pub idle_expires_at: OffsetDateTime,
    /// It ends at this time whatever happens.
    #[serde(skip)]
    pub expires_at: OffsetDateTime,
    /// The client's address at login, as the rate limits see it.
    #[cfg_attr(feature = "openapi", schema(example = "203.0.113.7"))]
    pub ip: Option<String>,
    /// The client's `User-Agent` at login, cut to 256 characters.
    #[cfg_attr(feature = "openapi", schema(example = "Mozilla/5.0 (X11; Linux x86_64)"))]
    pub user_agent: Option<String>,
}

impl Session {
    /// The most characters of a `User-Agent` kept.
    pub const USER_AGENT_MAX_CHARS: usize = 256;

    /// Whether the session is still live at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }
}

/// A tenant API key, as its owners see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    /// The key's id: the public part of the key.
    pub id: crate::ids::ApiKeyId,
    /// The tenant the key belongs to.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// What its owners call it.
    #[cfg_attr(feature = "openapi", schema(example = "CI deploys"))]
    pub name: String,
    /// `plk_<id>`: the start of the key, to tell keys apart.
    #[cfg_attr(feature = "openapi", schema(example = "plk_0193a7c45e2f7b1d8c3a6f4e2d1b9a07"))]
    pub prefix: String,
    /// The routes it may call.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::values::Scope>))]
    #[serde(serialize_with = "serialize_scopes")]
    pub scopes: crate::values::Scopes,
    /// The role of whoever created it: the most it may ever do (less if their role is lowered).
    pub role: Role,
    /// Who created it (none once they were removed: the key is the tenant's, not theirs).
    pub created_by: Option<UserId>,
    /// Its own quota, requests per minute, on top of its tenant's; none for the tenant's alone.
    #[cfg_attr(feature = "openapi", schema(example = 600))]
    pub rate_limit_per_minute: Option<u32>,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub created_at: OffsetDateTime,
    /// When it was last used, to within a few seconds (RFC 3339); none if never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub last_used_at: Option<OffsetDateTime>,
    /// When it stops working (RFC 3339); none if never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, example = "2026-12-04T09:30:00Z"))]
    pub expires_at: Option<OffsetDateTime>,
}

fn serialize_scopes<S: serde::Serializer>(scopes: &crate::values::Scopes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.iter())
}
