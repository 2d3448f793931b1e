//! `SessionRepository` conformance: sessions per user and tenant, refresh tokens spent once
//! (racing spends included), the marker every access token is checked against, ending
//! sessions, and pruning the ones no longer live.

use time::{Duration, OffsetDateTime};

use super::Storage;
use super::fixtures::{self, ago};
use crate::clock;
use crate::entities::{Session, User};
use crate::error::{Error, Result};
use crate::ids::{SessionId, TenantId, UserId};
use crate::ports::Spend;
use crate::values::{PasswordHash, RefreshToken, Role, TokenHash};

/// Every `SessionRepository` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! session_repository_suite {
    ($fixture:expr $(,)?) => {
        mod session_repository {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                sessions,
                $fixture,
                a_session_is_listed_for_its_user_only,
                a_live_token_is_spent_once_and_names_its_successor,
                the_successor_continues_the_session,
                an_unknown_token_or_another_tenants_is_unknown,
                a_token_of_an_expired_session_is_not_spent,
                racing_spends_rotate_exactly_once,
                the_marker_is_the_users_role_while_the_session_lives,
                ending_a_session_forgets_its_tokens,
                a_user_ends_only_their_own_sessions,
                ending_all_of_a_users_sessions_keeps_the_exception,
                a_password_change_keeps_one_session,
                a_role_change_or_a_deletion_ends_the_users_sessions,
                pruning_deletes_only_sessions_no_longer_live,
                a_session_for_an_unknown_user_is_not_created,
            );
        }
    };
}

fn allow(_: &User) -> Result<()> {
    Ok(())
}

fn now() -> OffsetDateTime {
    clock::now()
}

/// A session of `user` (not stored) created at `at`, idle until `idle`, ending at `max`.
fn session_at(user: &User, at: OffsetDateTime, idle: OffsetDateTime, max: OffsetDateTime) -> Session {
    Session {
        id: SessionId::new(),
        tenant_id: user.tenant_id,
        user_id: user.id,
        created_at: clock::truncate(at),
        last_used_at: clock::truncate(at),
        idle_expires_at: clock::truncate(idle),
        expires_at: clock::truncate(max),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("conformance/1".into()),
    }
}

/// Stores a live session of `user`; returns it with its refresh token.
async fn live(storage: &Storage, user: &User) -> (Session, RefreshToken) {
    let session = session_at(user, ago(60), now() + Duration::days(1), now() + Duration::days(2));
    let token = RefreshToken::generate().expect("the OS has randomness");
    storage.sessions.create(&session, &token.hash(), &crate::audit::AuditTrail::none()).await.expect("create succeeds");
    (session, token)
}

async fn spend(storage: &Storage, tenant: TenantId, token: &TokenHash, successor: &TokenHash) -> Spend {
    let idle = now() + Duration::days(1);
    storage.sessions.spend(tenant, token, successor, now(), idle).await.expect("spend succeeds")
}

fn fresh() -> TokenHash {
    RefreshToken::generate().expect("the OS has randomness").hash()
}

async fn ids(storage: &Storage, tenant: TenantId, user: UserId) -> Vec<SessionId> {
    storage.sessions.list(tenant, user, now()).await.expect("list succeeds").iter().map(|s| s.id).collect()
}

async fn member(storage: &Storage, tenant: TenantId, local: &str, role: Role) -> User {
    let user = fixtures::user(tenant, local, role);
    storage.users.create(&user, None, &crate::audit::AuditTrail::none(), None).await.expect("create succeeds");
    user
}

/// A user's sessions are listed newest first, with what was stored; nobody else's are.
pub async fn a_session_is_listed_for_its_user_only(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other_tenant, other_owner) = fixtures::tenant_with_owner(&storage).await;
    let ada = member(&storage, tenant.id, "ada", Role::Member).await;
    let (first, _) = live(&storage, &ada).await;
    let second = session_at(&ada, ago(30), now() + Duration::days(1), now() + Duration::days(2));
    storage.sessions.create(&second, &fresh(), &crate::audit::AuditTrail::none()).await.expect("create succeeds");
    live(&storage, &owner).await;
    live(&storage, &other_owner).await;
    let listed = storage.sessions.list(tenant.id, ada.id, now()).await.expect("list succeeds");
    assert_eq!(listed, vec![second, first]);
    assert!(ids(&storage, other_tenant.id, ada.id).await.is_empty());
    assert_eq!(ids(&storage, tenant.id, owner.id).await.len(), 1);
}

/// A live token is spent once: presented again it is `Spent`, naming its successor, which is
/// live until it is spent in turn.
pub async fn a_live_token_is_spent_once_and_names_its_successor(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (session, token) = live(&storage, &owner).await;
    let next = fresh();
    let Spend::Rotated(rotated) = spend(&storage, tenant.id, &token.hash(), &next).await else {
        panic!("a live token rotates");
    };
    assert_eq!(rotated.id, session.id);
    assert!(rotated.last_used_at > session.last_used_at);
    match spend(&storage, tenant.id, &token.hash(), &fresh()).await {
        Spend::Spent { session: s, successor, successor_live, .. } => {
            assert_eq!(s.id, session.id);
            assert!(successor.constant_time_eq(&next));
            assert!(successor_live);
        }
        other => panic!("a spent token is Spent, not {other:?}"),
    }
    assert!(matches!(spend(&storage, tenant.id, &next, &fresh()).await, Spend::Rotated(_)));
    match spend(&storage, tenant.id, &token.hash(), &fresh()).await {
        Spend::Spent { successor_live, .. } => assert!(!successor_live, "its successor was spent"),
        other => panic!("a spent token is Spent, not {other:?}"),
    }
}

/// A session's idle expiry moves with each spend, never past its absolute expiry.
pub async fn the_successor_continues_the_session(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let session = session_at(&owner, ago(60), now() + Duration::minutes(5), now() + Duration::hours(1));
    let token = fresh();
    storage.sessions.create(&session, &token, &crate::audit::AuditTrail::none()).await.expect("create succeeds");
    let far = now() + Duration::days(3);
    let next = fresh();
    let spent = storage.sessions.spend(tenant.id, &token, &next, now(), far).await.expect("spend succeeds");
    let Spend::Rotated(rotated) = spent else { panic!("a live token rotates") };
    assert_eq!(rotated.idle_expires_at, session.expires_at, "capped by the absolute expiry");
    assert!(matches!(spend(&storage, tenant.id, &next, &fresh()).await, Spend::Rotated(_)));
}

/// A token nobody has, or another tenant's, is `Unknown`, and spends nothing.
pub async fn an_unknown_token_or_another_tenants_is_unknown(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let (_, token) = live(&storage, &owner).await;
    assert_eq!(spend(&storage, tenant.id, &fresh(), &fresh()).await, Spend::Unknown);
    assert_eq!(spend(&storage, other.id, &token.hash(), &fresh()).await, Spend::Unknown);
    assert!(matches!(spend(&storage, tenant.id, &token.hash(), &fresh()).await, Spend::Rotated(_)));
}

/// A live token of a session past its idle or absolute expiry is `Expired`, and stays unspent.
pub async fn a_token_of_an_expired_session_is_not_spent(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let idle = session_at(&owner, ago(600), ago(1), now() + Duration::days(1));
    let over = session_at(&owner, ago(600), now() + Duration::days(1), ago(1));
    for session in [idle, over] {
        let token = fresh();
        storage.sessions.create(&session, &token, &crate::audit::AuditTrail::none()).await.expect("create succeeds");
        assert_eq!(spend(&storage, tenant.id, &token, &fresh()).await, Spend::Expired(session.id));
        assert_eq!(spend(&storage, tenant.id, &token, &fresh()).await, Spend::Expired(session.id));
    }
    assert!(ids(&storage, tenant.id, owner.id).await.is_empty(), "expired sessions are not listed");
}

/// Of several spends of one token at once, exactly one rotates it; the others see it spent.
pub async fn racing_spends_rotate_exactly_once(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (_, token) = live(&storage, &owner).await;
    let hash = token.hash();
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let storage = storage.clone();
        racers.spawn(async move { spend(&storage, tenant.id, &hash, &fresh()).await });
    }
    let results = racers.join_all().await;
    let rotated = results.iter().filter(|r| matches!(r, Spend::Rotated(_))).count();
    let spent = results.iter().filter(|r| matches!(r, Spend::Spent { .. })).count();
    assert_eq!((rotated, spent), (1, 7), "{results:?}");
}

/// The marker is the user's role and token version while the session is theirs and live.
pub async fn the_marker_is_the_users_role_while_the_session_lives(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let ada = member(&storage, tenant.id, "ada", Role::Admin).await;
    let (session, _) = live(&storage, &ada).await;
    let marker = |s: SessionId, u: UserId, at: OffsetDateTime| {
        let storage = storage.clone();
        async move { storage.sessions.marker(tenant.id, s, u, at).await.expect("marker succeeds") }
    };
    assert_eq!(marker(session.id, ada.id, now()).await, Some((Role::Admin, 0, false)));
    assert_eq!(marker(session.id, owner.id, now()).await, None, "not the owner's session");
    assert_eq!(marker(SessionId::new(), ada.id, now()).await, None);
    assert_eq!(marker(session.id, ada.id, now() + Duration::days(3)).await, None, "expired by then");
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let elsewhere = storage.sessions.marker(other.id, session.id, ada.id, now()).await.expect("marker succeeds");
    assert_eq!(elsewhere, None);
}

/// An ended session is gone: its tokens are unknown, its marker none.
pub async fn ending_a_session_forgets_its_tokens(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (session, token) = live(&storage, &owner).await;
    let next = fresh();
    assert!(matches!(spend(&storage, tenant.id, &token.hash(), &next).await, Spend::Rotated(_)));
    assert!(
        storage
            .sessions
            .end(tenant.id, session.id, None, &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
    assert!(
        !storage
            .sessions
            .end(tenant.id, session.id, None, &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
    assert_eq!(spend(&storage, tenant.id, &token.hash(), &fresh()).await, Spend::Unknown);
    assert_eq!(spend(&storage, tenant.id, &next, &fresh()).await, Spend::Unknown);
    assert_eq!(storage.sessions.marker(tenant.id, session.id, owner.id, now()).await.expect("marker succeeds"), None);
}

/// Ending a session in a user's name ends only that user's; another tenant can't end it.
pub async fn a_user_ends_only_their_own_sessions(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = member(&storage, tenant.id, "ada", Role::Member).await;
    let (session, _) = live(&storage, &owner).await;
    assert!(
        !storage
            .sessions
            .end(tenant.id, session.id, Some(ada.id), &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
    assert!(
        !storage
            .sessions
            .end(other.id, session.id, None, &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
    assert_eq!(ids(&storage, tenant.id, owner.id).await, vec![session.id]);
    assert!(
        storage
            .sessions
            .end(tenant.id, session.id, Some(owner.id), &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
    assert!(ids(&storage, tenant.id, owner.id).await.is_empty());
}

/// `end_all` ends every session of the user but the exception, and nobody else's.
pub async fn ending_all_of_a_users_sessions_keeps_the_exception(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let ada = member(&storage, tenant.id, "ada", Role::Member).await;
    let (a, _) = live(&storage, &ada).await;
    live(&storage, &ada).await;
    live(&storage, &ada).await;
    let (theirs, _) = live(&storage, &owner).await;
    assert_eq!(
        storage
            .sessions
            .end_all(tenant.id, ada.id, Some(a.id), &crate::audit::AuditTrail::none())
            .await
            .expect("end_all succeeds"),
        2
    );
    assert_eq!(ids(&storage, tenant.id, ada.id).await, vec![a.id]);
    assert_eq!(
        storage
            .sessions
            .end_all(tenant.id, ada.id, None, &crate::audit::AuditTrail::none())
            .await
            .expect("end_all succeeds"),
        1
    );
    assert_eq!(ids(&storage, tenant.id, owner.id).await, vec![theirs.id]);
}

/// A password change stores the new hash and ends every other session of the user.
pub async fn a_password_change_keeps_one_session(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (keep, _) = live(&storage, &owner).await;
    live(&storage, &owner).await;
    let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".to_owned());
    storage
        .sessions
        .change_password(tenant.id, owner.id, &hash, keep.id, &crate::audit::AuditTrail::none())
        .await
        .expect("change succeeds");
    assert_eq!(ids(&storage, tenant.id, owner.id).await, vec![keep.id]);
    let stored = storage.users.get(tenant.id, owner.id).await.expect("get succeeds").expect("the user exists");
    assert_eq!(stored.password_hash, hash);
    let unknown = storage
        .sessions
        .change_password(tenant.id, UserId::new(), &hash, keep.id, &crate::audit::AuditTrail::none())
        .await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
}

/// Changing a user's role, or deleting them, ends their sessions; keeping the role does not.
pub async fn a_role_change_or_a_deletion_ends_the_users_sessions(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = member(&storage, tenant.id, "ada", Role::Member).await;
    let (session, _) = live(&storage, &ada).await;
    storage
        .users
        .update_role(tenant.id, ada.id, Role::Member, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("update succeeds");
    assert_eq!(ids(&storage, tenant.id, ada.id).await, vec![session.id], "the same role ends nothing");
    storage
        .users
        .update_role(tenant.id, ada.id, Role::Admin, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("update succeeds");
    assert!(ids(&storage, tenant.id, ada.id).await.is_empty());
    let (session, token) = live(&storage, &ada).await;
    storage.users.delete(tenant.id, ada.id, &allow, &crate::audit::AuditTrail::none()).await.expect("delete succeeds");
    assert!(ids(&storage, tenant.id, ada.id).await.is_empty());
    assert_eq!(spend(&storage, tenant.id, &token.hash(), &fresh()).await, Spend::Unknown);
    assert!(
        !storage
            .sessions
            .end(tenant.id, session.id, None, &crate::audit::AuditTrail::none())
            .await
            .expect("end succeeds")
    );
}

/// Pruning deletes sessions past either expiry, in every tenant, and keeps live ones.
pub async fn pruning_deletes_only_sessions_no_longer_live(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, other_owner) = fixtures::tenant_with_owner(&storage).await;
    let (keep, _) = live(&storage, &owner).await;
    let idle = session_at(&owner, ago(600), ago(5), now() + Duration::days(1));
    let over = session_at(&other_owner, ago(600), now() + Duration::days(1), ago(5));
    let idle_token = fresh();
    storage.sessions.create(&idle, &idle_token, &crate::audit::AuditTrail::none()).await.expect("create succeeds");
    storage.sessions.create(&over, &fresh(), &crate::audit::AuditTrail::none()).await.expect("create succeeds");
    let pruned = storage.sessions.prune(now()).await.expect("prune succeeds");
    assert!(pruned >= 2, "{pruned}");
    assert!(
        !storage.sessions.end(tenant.id, idle.id, None, &crate::audit::AuditTrail::none()).await.expect("end succeeds"),
        "pruned"
    );
    assert!(
        !storage.sessions.end(other.id, over.id, None, &crate::audit::AuditTrail::none()).await.expect("end succeeds"),
        "pruned"
    );
    assert_eq!(spend(&storage, tenant.id, &idle_token, &fresh()).await, Spend::Unknown);
    assert_eq!(ids(&storage, tenant.id, owner.id).await, vec![keep.id]);
}

/// A session names a user of its tenant: another's, or nobody's, is `NotFound`.
pub async fn a_session_for_an_unknown_user_is_not_created(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let (_, stranger) = fixtures::tenant_with_owner(&storage).await;
    let ghost = fixtures::user(tenant.id, "ghost", Role::Member);
    for user in [ghost, User { tenant_id: tenant.id, ..stranger }] {
        let session = session_at(&user, ago(1), now() + Duration::days(1), now() + Duration::days(2));
        let created = storage.sessions.create(&session, &fresh(), &crate::audit::AuditTrail::none()).await;
        assert!(matches!(created, Err(Error::NotFound)), "{created:?}");
    }
}
