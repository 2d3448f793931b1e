//! Rows with random names for the suites (and adapters' own tests), so tests never collide.

use time::{Duration, OffsetDateTime};

use super::Storage;
use crate::clock;
use crate::entities::{Project, Tenant, User};
use crate::ids::{ProjectId, TenantId, UserId};
use crate::page::Cursor;
use crate::values::{Email, PasswordHash, Plan, ProjectName, Role, Slug, TenantName};

/// A random lowercase hex string of 16 characters.
pub fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A slug nobody has taken yet.
pub fn slug() -> Slug {
    Slug::parse(&format!("conf-{}", random_hex())).expect("a valid slug")
}

/// An email from `local`, e.g. `email("ada")`.
pub fn email(local: &str) -> Email {
    Email::parse(&format!("{local}@example.com")).expect("a valid email")
}

/// A project name.
pub fn project_name(name: &str) -> ProjectName {
    ProjectName::parse(name).expect("a valid project name")
}

/// A tenant on the free plan with a fresh slug (not stored).
pub fn tenant() -> Tenant {
    Tenant {
        id: TenantId::new(),
        slug: slug(),
        name: TenantName::parse("Conformance").expect("a valid tenant name"),
        plan: Plan::free(),
        lifecycle: crate::entities::Lifecycle::default(),
    }
}

/// A user of `tenant` (not stored), created at `created_at`.
pub fn user_at(tenant: TenantId, local: &str, role: Role, created_at: OffsetDateTime) -> User {
    User {
        id: UserId::new(),
        tenant_id: tenant,
        email: email(local),
        role,
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned()),
        created_at: clock::truncate(created_at),
        token_version: 0,
        email_verified: false,
    }
}

/// A user of `tenant` (not stored), created now.
pub fn user(tenant: TenantId, local: &str, role: Role) -> User {
    user_at(tenant, local, role, clock::now())
}

/// A project of `tenant` (not stored), created and last updated at `created_at`.
pub fn project_at(tenant: TenantId, name: &str, created_at: OffsetDateTime) -> Project {
    let at = clock::truncate(created_at);
    Project { id: ProjectId::new(), tenant_id: tenant, name: project_name(name), created_at: at, updated_at: at }
}

/// `n` seconds before now.
pub fn ago(seconds: i64) -> OffsetDateTime {
    clock::now() - Duration::seconds(seconds)
}

/// Stores a new tenant with an owner created an hour ago, and returns both.
pub async fn tenant_with_owner(storage: &Storage) -> (Tenant, User) {
    let tenant = tenant();
    let owner = user_at(tenant.id, "owner", Role::Owner, ago(3600));
    storage
        .tenants
        .create_with_owner(&tenant, &owner, None, &crate::audit::AuditTrail::none())
        .await
        .expect("create_with_owner succeeds");
    (tenant, owner)
}

/// A webhook of `tenant` (not stored) at a fresh URL, subscribed to `events`, registered now.
pub fn webhook(tenant: TenantId, events: &[crate::events::EventKind]) -> crate::entities::Webhook {
    crate::entities::Webhook::new(
        crate::ids::WebhookId::new(),
        tenant,
        format!("https://hooks.example.com/{}", random_hex()),
        events.to_vec(),
        clock::now(),
    )
}

/// The keyset cursor after `project`.
pub fn project_cursor(project: &Project) -> Cursor {
    Cursor { created_at: project.created_at, id: *project.id.as_uuid() }
}

/// The keyset cursor after `user`.
pub fn user_cursor(user: &User) -> Cursor {
    Cursor { created_at: user.created_at, id: *user.id.as_uuid() }
}

/// The keyset cursor after a row created at `created_at` with `id`.
pub fn cursor_of(created_at: OffsetDateTime, id: uuid::Uuid) -> Cursor {
    Cursor { created_at, id }
}
