//! A tenant's users: who may manage whom, and never without an owner.

use super::Plinth;
use crate::audit::Target;
use crate::entities::User;
use crate::error::{Error, Result, Validator};
use crate::events::EventKind;
use crate::ids::UserId;
use crate::page::{Cursor, Page, PageRequest};
use crate::ports::IdempotentWrite;
use crate::usecases::{Answer, Idempotency, Principal};
use crate::values::{Email, Password, Role};

/// A user to add, unvalidated.
#[derive(Clone)]
pub struct NewUserInput {
    /// Their sign-in email.
    pub email: String,
    /// Their password.
    pub password: String,
    /// Their role.
    pub role: Role,
}

impl std::fmt::Debug for NewUserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserInput").field("email", &self.email).field("role", &self.role).finish_non_exhaustive()
    }
}

fn user_cursor(u: &User) -> Cursor {
    Cursor { created_at: u.created_at, id: *u.id.as_uuid() }
}

/// An admin may not touch owners.
pub(super) fn guard_owner(actor: &Principal, target: &User) -> Result<()> {
    if actor.role == Role::Admin && target.role == Role::Owner {
        return Err(Error::Forbidden("an admin can't change or delete an owner"));
    }
    Ok(())
}

impl Plinth {
    /// The caller and its tenant. Errors: `InvalidToken` when the user is gone.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn me(&self, who: &Principal) -> Result<User> {
        let (user, _) = who.person()?;
        self.ports.users.get(who.tenant, user).await?.ok_or(Error::InvalidToken)
    }

    /// A page of the tenant's users. Errors: `Forbidden`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_users(&self, who: &Principal, page: &PageRequest) -> Result<Page<User>> {
        who.require_manager()?;
        let rows = self.ports.users.list(who.tenant, page.after.as_ref(), page.fetch_limit()).await?;
        Ok(Page::from_rows(rows, page, user_cursor, &self.settings.cursor_key))
    }

    /// Adds a user, once per idempotency key. Errors: `Forbidden` (an admin creating an
    /// owner, or a member); `Validation`; `Conflict(EmailTaken)`; `IdempotencyKeyReused`.
    #[tracing::instrument(level = "debug", skip(self, idempotency))]
    pub async fn create_user(
        &self,
        who: &Principal,
        input: NewUserInput,
        idempotency: Option<Idempotency<'_, User>>,
    ) -> Result<Answer<User>> {
        let prepare = async || {
            who.person()?;
            who.require_manager()?;
            if who.role == Role::Admin && input.role == Role::Owner {
                return Err(Error::Forbidden("an admin can't make anyone an owner"));
            }
            let mut v = Validator::new();
            let email = v.check("email", Email::parse(&input.email));
            let password = v.check("password", Password::parse(&input.password));
            let (Some(email), Some(password)) = (email, password) else {
                return Err(v.into_error());
            };
            Ok(User {
                id: UserId::new(),
                tenant_id: who.tenant,
                email,
                role: input.role,
                password_hash: self.ports.passwords.hash(&password).await?,
                created_at: self.ports.clock.now(),
                token_version: 0,
                email_verified: false,
            })
        };
        let write = async |user: &User, key: Option<&IdempotentWrite>| {
            let changes = serde_json::json!({ "email": user.email, "role": user.role });
            let trail = self
                .audit(who.actor(), "user.created", Some(Target::new("user", user.id)), changes)
                .with_events(&[EventKind::UserCreated], user.created_at);
            self.ports.users.create(user, key, &trail, who.limits.cap(crate::plans::Resource::Members)).await
        };
        self.once(who, idempotency, prepare, write).await
    }

    /// Changes a user's role (`user.updated` when it is another). Errors: `Forbidden`; `NotFound`; `Conflict(LastOwner)`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn change_role(&self, who: &Principal, id: UserId, role: Role) -> Result<User> {
        who.person()?;
        who.require_manager()?;
        if who.role == Role::Admin && role == Role::Owner {
            return Err(Error::Forbidden("an admin can't make anyone an owner"));
        }
        let trail = self
            .audit(who.actor(), "user.role_changed", Some(Target::new("user", id)), serde_json::json!({ "role": role }))
            .with_events(&[EventKind::UserUpdated], self.ports.clock.now());
        let user =
            self.ports.users.update_role(who.tenant, id, role, &|target| guard_owner(who, target), &trail).await?;
        // The user's tokens carry the old role, and their sessions ended with the change (in
        // its transaction): drop the cached markers everywhere.
        self.cache.invalidate(who.tenant).await;
        Ok(user)
    }

    /// Deletes a user. Errors: `Forbidden`; `NotFound`; `Conflict(LastOwner)`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_user(&self, who: &Principal, id: UserId) -> Result<()> {
        who.require_manager()?;
        let trail = self
            .audit(who.actor(), "user.deleted", Some(Target::new("user", id)), serde_json::json!({}))
            .with_events(&[EventKind::UserDeleted], self.ports.clock.now());
        self.ports.users.delete(who.tenant, id, &|target| guard_owner(who, target), &trail).await?;
        self.cache.invalidate(who.tenant).await;
        Ok(())
    }
}
