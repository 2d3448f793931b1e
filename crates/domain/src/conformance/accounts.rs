//! `AccountEmails` conformance: invitations pending until accepted once (racing acceptances
//! included), replaced, revoked or expired; reset and verification tokens issued and spent
//! once, bound to their tenant and purpose; the messages they queue; and pruning.

use time::{Duration, OffsetDateTime};

use super::Storage;
use super::fixtures::{self, ago};
use crate::clock;
use crate::entities::{Invitation, Tenant, User};
use crate::error::{Conflict, Error};
use crate::ids::{EmailId, InvitationId, UserId};
use crate::ports::{Acceptance, NewEmail, NewVerification};
use crate::values::{Email, EmailKey, EmailToken, PasswordHash, Purpose, Role, TokenHash};

/// Every `AccountEmails` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! account_emails_suite {
    ($fixture:expr $(,)?) => {
        mod account_emails {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                accounts,
                $fixture,
                an_invitation_is_pending_until_accepted_once,
                inviting_a_member_is_a_conflict,
                inviting_again_replaces_the_pending_invitation,
                revoked_expired_and_foreign_invitations_are_not_accepted,
                pending_invitations_are_capped,
                racing_acceptances_make_one_member,
                accepting_an_address_that_became_a_member_keeps_the_invitation,
                a_reset_token_is_issued_to_a_member_only_and_spent_once,
                a_password_change_spends_reset_tokens,
                an_invitation_dies_with_its_inviters_right_to_send_it,
                a_verification_token_verifies_once_and_for_its_purpose_only,
                queued_messages_load_with_their_tenant_and_liveness,
                pruning_deletes_what_expired,
            );
        }
    };
}

fn now() -> OffsetDateTime {
    clock::now()
}

fn hash_of(purpose: Purpose, email: EmailId) -> TokenHash {
    EmailToken::derive(&EmailKey::derive(b"conformance"), purpose, email).hash()
}

fn message(tenant: &Tenant, purpose: Purpose, to: &Email, at: OffsetDateTime) -> NewEmail {
    NewEmail { id: EmailId::new(), tenant: tenant.id, purpose, to: to.clone(), created_at: clock::truncate(at) }
}

fn new_hash() -> PasswordHash {
    PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".to_owned())
}

/// Invites `local@example.com` to `tenant` as a member, from `by`, expiring in a day; returns
/// the invitation and its token's hash.
async fn invite(storage: &Storage, tenant: &Tenant, by: &User, local: &str) -> (Invitation, TokenHash) {
    invite_until(storage, tenant, by, local, now() + Duration::days(1)).await.expect("invite succeeds")
}

async fn invite_until(
    storage: &Storage,
    tenant: &Tenant,
    by: &User,
    local: &str,
    expires_at: OffsetDateTime,
) -> crate::Result<(Invitation, TokenHash)> {
    let to = fixtures::email(local);
    let email = message(tenant, Purpose::Invitation, &to, now());
    let invitation = Invitation {
        id: InvitationId::new(),
        tenant_id: tenant.id,
        email: to,
        role: Role::Member,
        invited_by: by.id,
        created_at: email.created_at,
        expires_at: clock::truncate(expires_at),
    };
    let hash = hash_of(Purpose::Invitation, email.id);
    storage.accounts.invite(&invitation, &hash, &email, 100, &crate::audit::AuditTrail::none()).await?;
    Ok((invitation, hash))
}

fn acceptance() -> Acceptance {
    Acceptance { user: UserId::new(), password_hash: new_hash(), now: clock::truncate(now()) }
}

/// A pending invitation is listed; accepting it makes a verified member with its role, once.
pub async fn an_invitation_is_pending_until_accepted_once(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (invitation, hash) = invite(&storage, &tenant, &owner, "grace").await;
    let pending = storage.accounts.invitations(tenant.id, now()).await.expect("list succeeds");
    assert_eq!(pending, vec![invitation.clone()]);
    let member = acceptance();
    let user = storage
        .accounts
        .accept_invitation(tenant.id, &hash, &member, &crate::audit::AuditTrail::none(), None)
        .await
        .expect("accept succeeds");
    let user = user.expect("a pending invitation is accepted");
    assert_eq!(
        (user.id, &user.email, user.role, user.email_verified),
        (member.user, &invitation.email, Role::Member, true)
    );
    assert_eq!(storage.users.find_by_email(tenant.id, &invitation.email).await.expect("find succeeds"), Some(user));
    let again = storage
        .accounts
        .accept_invitation(tenant.id, &hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
        .await
        .expect("accept succeeds");
    assert_eq!(again, None, "an invitation works once");
    assert!(storage.accounts.invitations(tenant.id, now()).await.expect("list succeeds").is_empty());
}

/// Inviting an address that is a member's is `Conflict(EmailTaken)`, and stores nothing.
pub async fn inviting_a_member_is_a_conflict(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let result = invite_until(&storage, &tenant, &owner, "owner", now() + Duration::days(1)).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::EmailTaken))), "{result:?}");
    assert!(storage.accounts.invitations(tenant.id, now()).await.expect("list succeeds").is_empty());
}

/// A second invitation of an address replaces the first, whose token stops working.
pub async fn inviting_again_replaces_the_pending_invitation(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (_, first) = invite(&storage, &tenant, &owner, "grace").await;
    let (second, latest) = invite(&storage, &tenant, &owner, "grace").await;
    assert_eq!(storage.accounts.invitations(tenant.id, now()).await.expect("list succeeds"), vec![second]);
    assert_eq!(
        storage
            .accounts
            .accept_invitation(tenant.id, &first, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept"),
        None
    );
    assert!(
        storage
            .accounts
            .accept_invitation(tenant.id, &latest, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept")
            .is_some()
    );
}

/// A revoked invitation, an expired one and one presented to another tenant are not accepted.
pub async fn revoked_expired_and_foreign_invitations_are_not_accepted(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let (revoked, revoked_hash) = invite(&storage, &tenant, &owner, "revoked").await;
    assert!(
        storage
            .accounts
            .revoke_invitation(tenant.id, revoked.id, &crate::audit::AuditTrail::none())
            .await
            .expect("revoke succeeds")
    );
    assert!(
        !storage
            .accounts
            .revoke_invitation(tenant.id, revoked.id, &crate::audit::AuditTrail::none())
            .await
            .expect("revoke succeeds")
    );
    assert_eq!(
        storage
            .accounts
            .accept_invitation(tenant.id, &revoked_hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept"),
        None
    );
    let (expiring, expiring_hash) =
        invite_until(&storage, &tenant, &owner, "expiring", now() + Duration::minutes(1)).await.expect("invite");
    let later = Acceptance { now: clock::truncate(now() + Duration::minutes(2)), ..acceptance() };
    assert_eq!(
        storage
            .accounts
            .accept_invitation(tenant.id, &expiring_hash, &later, &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept"),
        None
    );
    assert!(!storage.accounts.invitations(tenant.id, later.now).await.expect("list").contains(&expiring));
    let (_, foreign_hash) = invite(&storage, &tenant, &owner, "foreign").await;
    assert_eq!(
        storage
            .accounts
            .accept_invitation(other.id, &foreign_hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept"),
        None
    );
    assert!(
        !storage
            .accounts
            .revoke_invitation(other.id, revoked.id, &crate::audit::AuditTrail::none())
            .await
            .expect("revoke succeeds")
    );
    assert!(
        storage
            .accounts
            .accept_invitation(tenant.id, &foreign_hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept")
            .is_some()
    );
}

/// A tenant can't hold more pending invitations than the cap it is given.
pub async fn pending_invitations_are_capped(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    for local in ["a", "b"] {
        let to = fixtures::email(local);
        let email = message(&tenant, Purpose::Invitation, &to, now());
        let invitation = Invitation {
            id: InvitationId::new(),
            tenant_id: tenant.id,
            email: to,
            role: Role::Member,
            invited_by: owner.id,
            created_at: email.created_at,
            expires_at: clock::truncate(now() + Duration::days(1)),
        };
        let result = storage
            .accounts
            .invite(&invitation, &hash_of(Purpose::Invitation, email.id), &email, 1, &crate::audit::AuditTrail::none())
            .await;
        match local {
            "a" => result.expect("the first fits"),
            _ => assert!(matches!(result, Err(Error::Conflict(Conflict::TooManyInvitations))), "{result:?}"),
        }
    }
    assert_eq!(storage.accounts.invitations(tenant.id, now()).await.expect("list").len(), 1);
}

/// Of acceptances racing with one token, exactly one makes a member.
pub async fn racing_acceptances_make_one_member(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (_, hash) = invite(&storage, &tenant, &owner, "racer").await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let storage = storage.clone();
        racers.spawn(async move {
            storage
                .accounts
                .accept_invitation(tenant.id, &hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
                .await
        });
    }
    let results = racers.join_all().await;
    let members = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert_eq!(members, 1, "{results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Accepting for an address that became a member meanwhile is `Conflict(EmailTaken)`, and the
/// invitation stays pending.
pub async fn accepting_an_address_that_became_a_member_keeps_the_invitation(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (invitation, hash) = invite(&storage, &tenant, &owner, "late").await;
    storage
        .users
        .create(&fixtures::user(tenant.id, "late", Role::Member), None, &crate::audit::AuditTrail::none(), None)
        .await
        .expect("create succeeds");
    let result = storage
        .accounts
        .accept_invitation(tenant.id, &hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
        .await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::EmailTaken))), "{result:?}");
    assert_eq!(storage.accounts.invitations(tenant.id, now()).await.expect("list"), vec![invitation]);
}

/// A reset message's token is stored only when a member has the address (once, however often
/// it is issued); spending it sets the password, verifies the address, raises the token
/// version and ends the user's sessions, once.
pub async fn a_reset_token_is_issued_to_a_member_only_and_spent_once(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let nobody = fixtures::email("nobody");
    let ghost = message(&tenant, Purpose::PasswordReset, &nobody, now());
    storage.accounts.request_reset(&ghost).await.expect("queue succeeds");
    let ghost_hash = hash_of(Purpose::PasswordReset, ghost.id);
    let until = now() + Duration::minutes(30);
    assert!(!storage.accounts.issue_reset(tenant.id, ghost.id, &nobody, &ghost_hash, until).await.expect("issue"));

    let email = message(&tenant, Purpose::PasswordReset, &owner.email, now());
    storage.accounts.request_reset(&email).await.expect("queue succeeds");
    let hash = hash_of(Purpose::PasswordReset, email.id);
    for _ in 0..2 {
        assert!(storage.accounts.issue_reset(tenant.id, email.id, &owner.email, &hash, until).await.expect("issue"));
    }
    let session = crate::entities::Session {
        id: crate::ids::SessionId::new(),
        tenant_id: tenant.id,
        user_id: owner.id,
        created_at: clock::truncate(ago(60)),
        last_used_at: clock::truncate(ago(60)),
        idle_expires_at: clock::truncate(now() + Duration::days(1)),
        expires_at: clock::truncate(now() + Duration::days(2)),
        ip: None,
        user_agent: None,
    };
    let refresh = crate::values::RefreshToken::generate().expect("a token").hash();
    storage.sessions.create(&session, &refresh, &crate::audit::AuditTrail::none()).await.expect("create succeeds");

    let wrong_tenant = storage
        .accounts
        .reset_password(other.id, &hash, &new_hash(), now(), &crate::audit::AuditTrail::none())
        .await
        .expect("reset");
    assert_eq!(wrong_tenant, None);
    let spent = storage
        .accounts
        .reset_password(tenant.id, &hash, &new_hash(), now(), &crate::audit::AuditTrail::none())
        .await
        .expect("reset");
    assert_eq!(spent, Some(owner.id));
    let user = storage.users.get(tenant.id, owner.id).await.expect("get").expect("the owner");
    assert_eq!(
        (user.password_hash, user.email_verified, user.token_version),
        (new_hash(), true, owner.token_version + 1)
    );
    assert!(storage.sessions.list(tenant.id, owner.id, now()).await.expect("list").is_empty(), "every session ended");
    assert_eq!(
        storage
            .accounts
            .reset_password(tenant.id, &hash, &new_hash(), now(), &crate::audit::AuditTrail::none())
            .await
            .expect("reset"),
        None
    );
    // A retry of the message (its first attempt's answer was lost) does not make the spent
    // link work again.
    assert!(!storage.accounts.issue_reset(tenant.id, email.id, &owner.email, &hash, until).await.expect("issue"));
    assert_eq!(
        storage
            .accounts
            .reset_password(tenant.id, &hash, &new_hash(), now(), &crate::audit::AuditTrail::none())
            .await
            .expect("reset"),
        None
    );
}

/// A password change spends the user's reset tokens; a retry of an unspent one's message
/// says it is still usable.
pub async fn a_password_change_spends_reset_tokens(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let email = message(&tenant, Purpose::PasswordReset, &owner.email, now());
    storage.accounts.request_reset(&email).await.expect("queue succeeds");
    let hash = hash_of(Purpose::PasswordReset, email.id);
    let until = now() + Duration::minutes(30);
    assert!(storage.accounts.issue_reset(tenant.id, email.id, &owner.email, &hash, until).await.expect("issue"));
    assert!(storage.accounts.issue_reset(tenant.id, email.id, &owner.email, &hash, until).await.expect("issue"));
    let session = crate::ids::SessionId::new();
    storage
        .sessions
        .change_password(tenant.id, owner.id, &new_hash(), session, &crate::audit::AuditTrail::none())
        .await
        .expect("change succeeds");
    assert!(!storage.accounts.issue_reset(tenant.id, email.id, &owner.email, &hash, until).await.expect("issue"));
    assert_eq!(
        storage
            .accounts
            .reset_password(tenant.id, &hash, &new_hash(), now(), &crate::audit::AuditTrail::none())
            .await
            .expect("reset"),
        None
    );
}

/// An invitation works only while its inviter may send it: not once they are deleted or
/// demoted below it.
pub async fn an_invitation_dies_with_its_inviters_right_to_send_it(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let admin = fixtures::user(tenant.id, "admin", Role::Admin);
    storage.users.create(&admin, None, &crate::audit::AuditTrail::none(), None).await.expect("create succeeds");
    let co_owner = fixtures::user(tenant.id, "co", Role::Owner);
    storage.users.create(&co_owner, None, &crate::audit::AuditTrail::none(), None).await.expect("create succeeds");
    let (_, by_admin) = invite(&storage, &tenant, &admin, "a").await;
    let (_, by_co_owner) = invite(&storage, &tenant, &co_owner, "b").await;
    let allow = |_: &User| Ok(());
    storage
        .users
        .update_role(tenant.id, admin.id, Role::Member, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("demote succeeds");
    storage
        .users
        .delete(tenant.id, co_owner.id, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("delete succeeds");
    for hash in [by_admin, by_co_owner] {
        assert_eq!(
            storage
                .accounts
                .accept_invitation(tenant.id, &hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
                .await
                .expect("accept"),
            None
        );
    }
    let (_, by_owner) = invite(&storage, &tenant, &owner, "c").await;
    assert!(
        storage
            .accounts
            .accept_invitation(tenant.id, &by_owner, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept")
            .is_some()
    );
}

/// A verification token verifies its user's address once, and only as a verification token,
/// only before it expires.
pub async fn a_verification_token_verifies_once_and_for_its_purpose_only(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let verification = |at: OffsetDateTime| {
        let email = message(&tenant, Purpose::VerifyEmail, &owner.email, now());
        let token = hash_of(Purpose::VerifyEmail, email.id);
        NewVerification { email, user: owner.id, token, expires_at: clock::truncate(at) }
    };
    let short = verification(now() + Duration::minutes(1));
    storage.accounts.queue_verification(&short).await.expect("queue succeeds");
    let late = now() + Duration::minutes(2);
    assert_eq!(
        storage
            .accounts
            .verify_email(tenant.id, &short.token, late, &crate::audit::AuditTrail::none())
            .await
            .expect("verify"),
        None
    );

    let v = verification(now() + Duration::days(1));
    storage.accounts.queue_verification(&v).await.expect("queue succeeds");
    assert_eq!(
        storage
            .accounts
            .reset_password(tenant.id, &v.token, &new_hash(), now(), &crate::audit::AuditTrail::none())
            .await
            .expect("reset"),
        None
    );
    assert!(!storage.users.get(tenant.id, owner.id).await.expect("get").expect("owner").email_verified);
    let sibling = verification(now() + Duration::days(1));
    storage.accounts.queue_verification(&sibling).await.expect("queue succeeds");
    assert_eq!(
        storage
            .accounts
            .verify_email(tenant.id, &v.token, now(), &crate::audit::AuditTrail::none())
            .await
            .expect("verify"),
        Some(owner.id)
    );
    assert_eq!(
        storage
            .accounts
            .verify_email(tenant.id, &sibling.token, now(), &crate::audit::AuditTrail::none())
            .await
            .expect("verify"),
        None
    );
    assert!(storage.users.get(tenant.id, owner.id).await.expect("get").expect("owner").email_verified);
    assert_eq!(
        storage
            .accounts
            .verify_email(tenant.id, &v.token, now(), &crate::audit::AuditTrail::none())
            .await
            .expect("verify"),
        None
    );

    let ghost = NewVerification { user: UserId::new(), ..verification(now() + Duration::days(1)) };
    let result = storage.accounts.queue_verification(&ghost).await;
    assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
}

/// A queued message loads with its tenant, purpose and recipient while pending; an invitation's
/// message is live while the invitation is pending, a verification's while its token is unspent.
pub async fn queued_messages_load_with_their_tenant_and_liveness(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let to = fixtures::email("grace");
    let email = message(&tenant, Purpose::Invitation, &to, now());
    let invitation = Invitation {
        id: InvitationId::new(),
        tenant_id: tenant.id,
        email: to.clone(),
        role: Role::Admin,
        invited_by: owner.id,
        created_at: email.created_at,
        expires_at: clock::truncate(now() + Duration::days(1)),
    };
    let hash = hash_of(Purpose::Invitation, email.id);
    storage
        .accounts
        .invite(&invitation, &hash, &email, 10, &crate::audit::AuditTrail::none())
        .await
        .expect("invite succeeds");
    let loaded = storage.accounts.load_email(tenant.id, email.id).await.expect("load").expect("pending");
    assert_eq!((loaded.id, &loaded.tenant, loaded.purpose, &loaded.to), (email.id, &tenant, Purpose::Invitation, &to));
    assert_eq!((loaded.created_at, loaded.attempts, loaded.live), (email.created_at, 0, true));
    assert_eq!(loaded.invitation, Some((Role::Admin, owner.email.clone())));
    assert_eq!(storage.accounts.load_email(other.id, email.id).await.expect("load"), None, "another tenant's");
    storage
        .accounts
        .revoke_invitation(tenant.id, invitation.id, &crate::audit::AuditTrail::none())
        .await
        .expect("revoke succeeds");
    let revoked = storage.accounts.load_email(tenant.id, email.id).await.expect("load").expect("still pending");
    assert!(!revoked.live, "a revoked invitation's link is not sent");
}

/// Pruning deletes expired invitations and tokens, and nothing live.
pub async fn pruning_deletes_what_expired(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (_, expired) = invite_until(&storage, &tenant, &owner, "expired", ago(60)).await.expect("invite");
    let (live, live_hash) = invite(&storage, &tenant, &owner, "live").await;
    let pruned = storage.accounts.prune(now(), ago(86_400)).await.expect("prune succeeds");
    assert!(pruned >= 1, "{pruned}");
    // Gone even for a caller whose clock is behind.
    let earlier = Acceptance { now: clock::truncate(ago(3600)), ..acceptance() };
    assert_eq!(
        storage
            .accounts
            .accept_invitation(tenant.id, &expired, &earlier, &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept"),
        None
    );
    assert_eq!(storage.accounts.invitations(tenant.id, now()).await.expect("list"), vec![live]);
    assert!(
        storage
            .accounts
            .accept_invitation(tenant.id, &live_hash, &acceptance(), &crate::audit::AuditTrail::none(), None)
            .await
            .expect("accept")
            .is_some()
    );
}
