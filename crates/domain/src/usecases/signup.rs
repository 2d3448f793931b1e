//! Signup: a new tenant and its first owner, on the platform host.

use super::Plinth;
use crate::entities::{Tenant, User};
use crate::error::{Result, Validator};
use crate::ids::{TenantId, UserId};
use crate::usecases::{ClientInfo, SignedIn};
use crate::values::{Email, Password, Plan, Role, Slug, TenantName};

/// The signup form, unvalidated.
#[derive(Clone)]
pub struct SignupInput {
    /// The slug the tenant wants.
    pub tenant_slug: String,
    /// The tenant's display name.
    pub tenant_name: String,
    /// The owner's email.
    pub email: String,
    /// The owner's password.
    pub password: String,
    /// Whether the owner's address is known to be theirs already (the embedded mode's demo
    /// tenant): then it is verified at once and no verification link is sent.
    pub email_verified: bool,
}

impl std::fmt::Debug for SignupInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupInput")
            .field("tenant_slug", &self.tenant_slug)
            .field("tenant_name", &self.tenant_name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// What signup created.
#[derive(Debug, Clone)]
pub struct SignupOutput {
    /// The new tenant.
    pub tenant: Tenant,
    /// Its owner.
    pub user: User,
    /// The owner's session: its access and refresh tokens.
    pub token: SignedIn,
}

impl Plinth {
    /// Creates a tenant on the free plan with `email` as its owner, sends the owner a
    /// verification link, and signs the owner in (a session for `client`). Errors: `Validation`;
    /// `Conflict(SlugTaken)`; `RateLimited` (too many messages to the address).
    #[tracing::instrument(level = "debug", skip_all, fields(slug = %input.tenant_slug))]
    pub async fn signup(&self, input: SignupInput, client: ClientInfo) -> Result<SignupOutput> {
        let mut v = Validator::new();
        let slug = v.check("tenant_slug", Slug::parse(&input.tenant_slug));
        let name = v.check("tenant_name", TenantName::parse(&input.tenant_name));
        let email = v.check("email", Email::parse(&input.email));
        let password = v.check("password", Password::parse(&input.password));
        let (Some(slug), Some(name), Some(email), Some(password)) = (slug, name, email, password) else {
            return Err(v.into_error());
        };
        if !input.email_verified {
            // The owner's verification link is a message to an address anyone may type.
            self.admit_message(&email).await?;
        }
        let tenant = Tenant::new(TenantId::new(), slug, name, Plan::free());
        let user = User {
            id: UserId::new(),
            tenant_id: tenant.id,
            email,
            role: Role::Owner,
            password_hash: self.ports.passwords.hash(&password).await?,
            created_at: self.ports.clock.now(),
            token_version: 0,
            email_verified: input.email_verified,
        };
        // The owner's verification link is queued in the signup's transaction.
        let verification = (!user.email_verified).then(|| self.verification(&user));
        let changes = serde_json::json!({ "slug": tenant.slug, "name": tenant.name, "owner": user.email });
        let trail = self
            .audit(
                super::audit::by_user(user.id),
                "tenant.created",
                Some(crate::audit::Target::new("tenant", tenant.id)),
                changes,
            )
            .with_events(&[crate::events::EventKind::UserCreated], user.created_at);
        self.ports.tenants.create_with_owner(&tenant, &user, verification.as_ref(), &trail).await?;
        // Any instance may remember the slug as naming no tenant: drop those answers everywhere.
        self.cache.invalidate_platform().await;
        let token = self.start_session(&user, client).await?;
        Ok(SignupOutput { tenant, user, token })
    }
}
