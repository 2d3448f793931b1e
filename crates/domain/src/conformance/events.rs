//! `EventLog` conformance, with the writes that store events: each write of a user, an
//! invitation's acceptance or an API key stores its events with it (only when it changes what
//! they report, never when it fails, never refused for a full queue), made from the rows as the
//! write left them; the log reads them back newest first, filtered, paged, one tenant's only, an
//! event with its deliveries; retention prunes old events no delivery needs.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use super::fixtures::{self, ago};
use super::jobs::{CAP, Queue};
use crate::audit::AuditTrail;
use crate::clock;
use crate::entities::{ApiKey, Invitation, Tenant, User};
use crate::error::{Conflict, Error};
use crate::events::{DomainEvent, EventKind};
use crate::ids::{ApiKeyId, EmailId, EventId, InvitationId, UserId};
use crate::page::Cursor;
use crate::ports::{Acceptance, EventQuery, NewEmail, NewVerification, StoredEvent};
use crate::values::{ApiKeyToken, EmailKey, EmailToken, PasswordHash, Purpose, Role, Scope, Scopes, TokenHash};

/// Every `EventLog` behaviour, as named tests; the argument is a [`Queue`] expression, capped
/// at [`CAP`] pending jobs per tenant.
#[macro_export]
macro_rules! event_log_suite {
    ($fixture:expr $(,)?) => {
        mod event_log {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                events,
                $fixture,
                user_writes_store_their_events_with_the_user_as_they_left_it,
                key_writes_store_their_events_without_the_secret,
                accepting_an_invitation_stores_the_member_and_the_invitation,
                verifying_an_address_stores_an_update_once,
                a_write_that_fails_stores_no_events,
                additions_are_refused_at_the_cap_and_removals_never,
                pages_are_newest_first_after_their_cursor_and_filtered_by_kind_and_time,
                tenants_see_only_their_own_events,
                an_event_of_any_age_is_listed,
                an_event_is_found_with_its_deliveries,
                retention_prunes_old_events_no_delivery_needs,
            );
        }
    };
}

fn now() -> OffsetDateTime {
    clock::now()
}

/// A trail that records no entry and causes `kinds`, happened `at`.
fn causing(kinds: &[EventKind], at: OffsetDateTime) -> AuditTrail {
    AuditTrail::none().with_events(kinds, clock::truncate(at))
}

/// Every event of `tenant`, newest first.
async fn all(queue: &Queue, tenant: &Tenant) -> Vec<StoredEvent> {
    queue.storage.events.page(tenant.id, &EventQuery::default(), None, 1000).await.expect("page succeeds")
}

/// The kinds of `events`, in their order.
fn kinds(events: &[StoredEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// The fields of `value`, an object.
fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
    value.as_object().expect("an object").keys().map(String::as_str).collect()
}

/// Checks that `event` is the envelope of a `kind` event of `tenant`, whose data is `data`.
fn assert_envelope(event: &StoredEvent, kind: EventKind, tenant: &Tenant, data: &serde_json::Value) {
    let e = &event.envelope;
    assert_eq!(keys(e), BTreeSet::from(["id", "type", "created_at", "tenant_id", "data"]), "{e}");
    assert_eq!((e["id"].as_str(), e["type"].as_str()), (Some(event.id.to_string().as_str()), Some(kind.as_str())));
    assert_eq!(e["tenant_id"], tenant.id.to_string());
    assert_eq!(&e["data"], data, "{}", kind.as_str());
    let at = e["created_at"].as_str().expect("a time");
    let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    assert_eq!(at, event.created_at, "the envelope's time is the one the event sorts by");
}

/// A user as the API shows one.
fn user_view(user: &User) -> serde_json::Value {
    serde_json::to_value(user).expect("a user serialises")
}

/// A tenant with an owner and a member, their events left out (the owner's came with no
/// trail).
async fn tenant_with_member(queue: &Queue) -> (Tenant, User, User) {
    let (tenant, owner) = fixtures::tenant_with_owner(&queue.storage).await;
    let member = fixtures::user_at(tenant.id, "member", Role::Member, ago(60));
    queue.storage.users.create(&member, None, &AuditTrail::none(), None).await.expect("create succeeds");
    (tenant, owner, member)
}

fn key_of(tenant: &Tenant, creator: &User) -> ApiKey {
    let id = ApiKeyId::new();
    ApiKey {
        id,
        tenant_id: tenant.id,
        name: "CI".into(),
        prefix: ApiKeyToken::prefix_of(id),
        scopes: Scopes::of([Scope::ProjectsRead]),
        role: creator.role,
        created_by: Some(creator.id),
        rate_limit_per_minute: Some(60),
        created_at: clock::truncate(ago(5)),
        last_used_at: None,
        expires_at: None,
    }
}

fn hash_of(purpose: Purpose, email: EmailId) -> TokenHash {
    EmailToken::derive(&EmailKey::derive(b"conformance"), purpose, email).hash()
}

fn message(tenant: &Tenant, purpose: Purpose, to: &crate::values::Email) -> NewEmail {
    NewEmail { id: EmailId::new(), tenant: tenant.id, purpose, to: to.clone(), created_at: clock::truncate(now()) }
}

/// Signup's owner, a user added by a manager, a role changed (and set to the one it is), a
/// user removed: each write stores its event, whose data is the user as the write left it
/// (as it was, for a removal), and never a password's hash.
pub async fn user_writes_store_their_events_with_the_user_as_they_left_it(queue: Queue) {
    let s = &queue.storage;
    let tenant = fixtures::tenant();
    let signed_up = ago(30);
    let owner = fixtures::user_at(tenant.id, "owner", Role::Owner, signed_up);
    let trail = causing(&[EventKind::UserCreated], signed_up);
    s.tenants.create_with_owner(&tenant, &owner, None, &trail).await.expect("signup succeeds");
    let ada = fixtures::user_at(tenant.id, "ada", Role::Member, ago(20));
    s.users.create(&ada, None, &causing(&[EventKind::UserCreated], ago(20)), None).await.expect("create succeeds");
    let check = |_: &User| Ok(());
    let unchanged = causing(&[EventKind::UserUpdated], ago(15));
    s.users.update_role(tenant.id, ada.id, Role::Member, &check, &unchanged).await.expect("update succeeds");
    let admin = s
        .users
        .update_role(tenant.id, ada.id, Role::Admin, &check, &causing(&[EventKind::UserUpdated], ago(10)))
        .await
        .expect("update succeeds");
    s.users.delete(tenant.id, ada.id, &check, &causing(&[EventKind::UserDeleted], ago(5))).await.expect("delete");

    let events = all(&queue, &tenant).await;
    assert_eq!(
        kinds(&events),
        [EventKind::UserDeleted, EventKind::UserUpdated, EventKind::UserCreated, EventKind::UserCreated],
        "a role set to the one the user has stores nothing"
    );
    assert_envelope(&events[0], EventKind::UserDeleted, &tenant, &user_view(&admin));
    assert_envelope(&events[1], EventKind::UserUpdated, &tenant, &user_view(&admin));
    assert_eq!(events[1].envelope["data"]["role"], "admin");
    assert_envelope(&events[2], EventKind::UserCreated, &tenant, &user_view(&ada));
    assert_envelope(&events[3], EventKind::UserCreated, &tenant, &user_view(&owner));
    assert_eq!(keys(&events[3].envelope["data"]), BTreeSet::from(["id", "email", "role", "email_verified"]));
    assert_eq!(events[3].created_at, clock::truncate(signed_up), "the time the write gave");
    let text = serde_json::to_string(&events.iter().map(|e| &e.envelope).collect::<Vec<_>>()).expect("JSON");
    assert!(!text.contains("argon2"), "no password hash in any event: {text}");
}

/// A key's creation and its revocation store their events, whose data is the key as the API
/// shows it (revoked: as it was when revoked), never its secret or the secret's hash; revoking
/// a key that is not live stores nothing.
pub async fn key_writes_store_their_events_without_the_secret(queue: Queue) {
    let s = &queue.storage;
    let (tenant, owner) = fixtures::tenant_with_owner(s).await;
    let key = key_of(&tenant, &owner);
    let hash = TokenHash::from_bytes([0xab; 32]);
    let created = causing(&[EventKind::ApiKeyCreated], ago(4));
    s.api_keys.create(&key, &hash, &|_| Ok(()), &created).await.expect("create succeeds");
    let revoked = causing(&[EventKind::ApiKeyRevoked], ago(2));
    assert!(s.api_keys.revoke(tenant.id, key.id, clock::truncate(ago(2)), &revoked).await.expect("revoke"));
    let again = causing(&[EventKind::ApiKeyRevoked], ago(1));
    assert!(!s.api_keys.revoke(tenant.id, key.id, clock::truncate(ago(1)), &again).await.expect("revoke"));
    assert!(!s.api_keys.revoke(tenant.id, ApiKeyId::new(), now(), &again).await.expect("revoke"));

    let events = all(&queue, &tenant).await;
    assert_eq!(kinds(&events), [EventKind::ApiKeyRevoked, EventKind::ApiKeyCreated]);
    let view = serde_json::to_value(&key).expect("a key serialises");
    assert_envelope(&events[1], EventKind::ApiKeyCreated, &tenant, &view);
    assert_envelope(&events[0], EventKind::ApiKeyRevoked, &tenant, &view);
    let text = serde_json::to_string(&events.iter().map(|e| &e.envelope).collect::<Vec<_>>()).expect("JSON");
    assert!(!text.contains(&crate::hex::encode(hash.as_bytes())) && !text.contains("hash"), "{text}");
}

/// Accepting an invitation stores `user.created` (the new member) and `invitation.accepted`
/// (the invitation: who, which role, sent and accepted when, never its token), together.
pub async fn accepting_an_invitation_stores_the_member_and_the_invitation(queue: Queue) {
    let s = &queue.storage;
    let (tenant, owner) = fixtures::tenant_with_owner(s).await;
    let to = fixtures::email("grace");
    let email = message(&tenant, Purpose::Invitation, &to);
    let invitation = Invitation {
        id: InvitationId::new(),
        tenant_id: tenant.id,
        email: to,
        role: Role::Admin,
        invited_by: owner.id,
        created_at: email.created_at,
        expires_at: clock::truncate(now() + Duration::days(1)),
    };
    let token = hash_of(Purpose::Invitation, email.id);
    s.accounts.invite(&invitation, &token, &email, 100, &AuditTrail::none()).await.expect("invite succeeds");
    let member = Acceptance {
        user: UserId::new(),
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        now: clock::truncate(now()),
    };
    let trail = causing(&[EventKind::UserCreated, EventKind::InvitationAccepted], member.now);
    let user = s.accounts.accept_invitation(tenant.id, &token, &member, &trail, None).await.expect("accept");
    let user = user.expect("a pending invitation is accepted");

    let events = all(&queue, &tenant).await;
    let mut found = kinds(&events);
    found.sort_by_key(|k| k.as_str());
    assert_eq!(found, [EventKind::InvitationAccepted, EventKind::UserCreated]);
    let of = |kind: EventKind| events.iter().find(|e| e.kind == kind).expect("stored");
    assert_envelope(of(EventKind::UserCreated), EventKind::UserCreated, &tenant, &user_view(&user));
    assert_eq!(of(EventKind::UserCreated).envelope["data"]["email_verified"], true);
    let accepted = serde_json::json!({
        "id": invitation.id,
        "email": invitation.email,
        "role": "admin",
        "invited_by": owner.id,
        "user_id": user.id,
        "created_at": invitation.created_at.format(&time::format_description::well_known::Rfc3339).expect("a time"),
        "accepted_at": member.now.format(&time::format_description::well_known::Rfc3339).expect("a time"),
    });
    assert_envelope(of(EventKind::InvitationAccepted), EventKind::InvitationAccepted, &tenant, &accepted);
}

/// A verification link, and a password reset, store `user.updated` with the verified user when
/// they verify the address, and nothing when it was verified already.
pub async fn verifying_an_address_stores_an_update_once(queue: Queue) {
    let s = &queue.storage;
    let (tenant, owner) = fixtures::tenant_with_owner(s).await;
    let (other, other_owner) = fixtures::tenant_with_owner(s).await;
    let verification = |tenant: &Tenant, user: &User| {
        let email = message(tenant, Purpose::VerifyEmail, &user.email);
        let token = hash_of(Purpose::VerifyEmail, email.id);
        NewVerification { email, user: user.id, token, expires_at: clock::truncate(now() + Duration::days(1)) }
    };
    let first = verification(&tenant, &owner);
    let second = verification(&tenant, &owner);
    s.accounts.queue_verification(&first).await.expect("queue succeeds");
    s.accounts.queue_verification(&second).await.expect("queue succeeds");
    let trail = causing(&[EventKind::UserUpdated], ago(3));
    let verified = s.accounts.verify_email(tenant.id, &first.token, now(), &trail).await.expect("verify");
    assert_eq!(verified, Some(owner.id));
    assert!(s.accounts.verify_email(tenant.id, &second.token, now(), &trail).await.expect("verify").is_none());
    let events = all(&queue, &tenant).await;
    assert_eq!(kinds(&events), [EventKind::UserUpdated]);
    let now_verified = User { email_verified: true, ..owner.clone() };
    assert_envelope(&events[0], EventKind::UserUpdated, &tenant, &user_view(&now_verified));

    // A reset verifies an address that was not, and then stores the update too; a second
    // reset (the address verified already) stores nothing.
    for round in 0..2 {
        let email = message(&other, Purpose::PasswordReset, &other_owner.email);
        s.accounts.request_reset(&email).await.expect("queue succeeds");
        let token = hash_of(Purpose::PasswordReset, email.id);
        let until = clock::truncate(now() + Duration::minutes(30));
        assert!(s.accounts.issue_reset(other.id, email.id, &other_owner.email, &token, until).await.expect("issue"));
        let hash = PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$cm91bmQ{round}"));
        let reset = s.accounts.reset_password(other.id, &token, &hash, now(), &trail).await.expect("reset");
        assert_eq!(reset, Some(other_owner.id));
    }
    let events = all(&queue, &other).await;
    assert_eq!(kinds(&events), [EventKind::UserUpdated], "one update: the second reset verified nothing");
    let now_verified = User { email_verified: true, ..other_owner.clone() };
    assert_envelope(&events[0], EventKind::UserUpdated, &other, &user_view(&now_verified));
}

/// A write that is refused (a taken address, the last owner, the key cap, an address that
/// became a member) stores none of its events.
pub async fn a_write_that_fails_stores_no_events(queue: Queue) {
    let s = &queue.storage;
    let (tenant, owner, member) = tenant_with_member(&queue).await;
    let twin = fixtures::user_at(tenant.id, "member", Role::Member, ago(1));
    let created = causing(&[EventKind::UserCreated], now());
    let taken = s.users.create(&twin, None, &created, None).await;
    assert!(matches!(taken, Err(Error::Conflict(Conflict::EmailTaken))), "{taken:?}");
    let check = |_: &User| Ok(());
    let updated = causing(&[EventKind::UserUpdated], now());
    let demote = s.users.update_role(tenant.id, owner.id, Role::Admin, &check, &updated).await;
    assert!(matches!(demote, Err(Error::Conflict(Conflict::LastOwner))));
    let removed = s.users.delete(tenant.id, owner.id, &check, &causing(&[EventKind::UserDeleted], now())).await;
    assert!(matches!(removed, Err(Error::Conflict(Conflict::LastOwner))));
    let refused = |_: usize| Err(Error::Conflict(Conflict::TooManyKeys));
    let key = key_of(&tenant, &owner);
    let (hash, made) = (TokenHash::from_bytes([1; 32]), causing(&[EventKind::ApiKeyCreated], now()));
    let over = s.api_keys.create(&key, &hash, &refused, &made).await;
    assert!(matches!(over, Err(Error::Conflict(Conflict::TooManyKeys))));
    let forbidden = |_: &User| Err(Error::Forbidden("no"));
    let denied = s.users.delete(tenant.id, member.id, &forbidden, &causing(&[EventKind::UserDeleted], now())).await;
    assert!(matches!(denied, Err(Error::Forbidden(_))));
    assert!(all(&queue, &tenant).await.is_empty(), "{:?}", kinds(&all(&queue, &tenant).await));
}

/// At the tenant's cap of pending jobs, a write that adds someone (a user, an API key) is
/// refused like a project write, changing nothing (repeated with removals it could fill the
/// queue past the cap), while a removal's events are queued past the cap: removing someone
/// never waits for a backlog.
pub async fn additions_are_refused_at_the_cap_and_removals_never(queue: Queue) {
    let s = &queue.storage;
    let (tenant, owner) = fixtures::tenant_with_owner(s).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Member);
    s.users.create(&ada, None, &AuditTrail::none(), None).await.expect("create ada");
    let hook = fixtures::webhook(tenant.id, &EventKind::ALL);
    s.webhooks.create(&hook, b"sealed", &|_| Ok(()), None, &AuditTrail::none()).await.expect("create webhook");
    for n in 0..CAP {
        let project = fixtures::project_at(tenant.id, &format!("p{n}"), ago(1));
        let event = DomainEvent::project(EventKind::ProjectCreated, &project, now());
        s.projects.insert(&project, &[event], None, &AuditTrail::none(), None).await.expect("room for it");
    }
    let project = fixtures::project_at(tenant.id, "one too many", ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &project, now());
    let full = s.projects.insert(&project, &[event], None, &AuditTrail::none(), None).await;
    assert!(matches!(full, Err(Error::QueueFull)), "{full:?}");

    let grace = fixtures::user(tenant.id, "grace", Role::Member);
    let refused = s.users.create(&grace, None, &causing(&[EventKind::UserCreated], now()), None).await;
    assert!(matches!(refused, Err(Error::QueueFull)), "{refused:?}");
    assert!(s.users.get(tenant.id, grace.id).await.expect("get").is_none(), "no user");
    let key = key_of(&tenant, &owner);
    let created = causing(&[EventKind::ApiKeyCreated], now());
    let refused = s.api_keys.create(&key, &TokenHash::from_bytes([2; 32]), &|_| Ok(()), &created).await;
    assert!(matches!(refused, Err(Error::QueueFull)), "{refused:?}");

    let check = |_: &User| Ok(());
    s.users.delete(tenant.id, ada.id, &check, &causing(&[EventKind::UserDeleted], now())).await.expect("never refused");
    let events = all(&queue, &tenant).await;
    assert_eq!(events.len(), usize::try_from(CAP).expect("small") + 1, "the projects', and the removal's");
    let removal = events.iter().find(|e| e.kind == EventKind::UserDeleted).expect("the removal's event");
    let (_, deliveries) = s.events.get(tenant.id, removal.id).await.expect("get").expect("stored");
    assert_eq!(deliveries.len(), 1, "the removal has its delivery");
}

/// For each of `times`, adds a member of `tenant` at that time, and removes them at the same
/// time when `kind` is `user.deleted`; returns the ids of the events of `kind` about them, in
/// the order of `times`.
async fn events_at(queue: &Queue, tenant: &Tenant, times: &[OffsetDateTime], kind: EventKind) -> Vec<EventId> {
    let mut made = Vec::new();
    for at in times {
        let user = fixtures::user_at(tenant.id, &fixtures::random_hex(), Role::Member, *at);
        let (created, deleted) = (causing(&[EventKind::UserCreated], *at), causing(&[EventKind::UserDeleted], *at));
        queue.storage.users.create(&user, None, &created, None).await.expect("create succeeds");
        if kind == EventKind::UserDeleted {
            queue.storage.users.delete(tenant.id, user.id, &|_| Ok(()), &deleted).await.expect("delete succeeds");
        }
        let about = |e: &StoredEvent| e.kind == kind && e.envelope["data"]["id"] == user.id.to_string();
        made.push(all(queue, tenant).await.into_iter().find(about).expect("stored").id);
    }
    made
}

/// Pages hold the newest events first, strictly after their cursor (ties in time by id), of
/// one kind when asked, and none older than `since`.
pub async fn pages_are_newest_first_after_their_cursor_and_filtered_by_kind_and_time(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let tie = ago(30);
    let created = events_at(&queue, &tenant, &[ago(50), ago(40), tie, tie, ago(20)], EventKind::UserCreated).await;
    let deleted = events_at(&queue, &tenant, &[ago(35), ago(10)], EventKind::UserDeleted).await;
    let every = all(&queue, &tenant).await;
    assert_eq!(every.len(), 9, "five creations, and two more with their deletions");
    for pair in every.windows(2) {
        assert!((pair[0].created_at, pair[0].id) > (pair[1].created_at, pair[1].id), "newest first, ties by id");
    }

    let log = &queue.storage.events;
    let query = EventQuery::default();
    let first = log.page(tenant.id, &query, None, 4).await.expect("page succeeds");
    assert_eq!(first, every[..4]);
    let cursor = first[3].cursor();
    let second = log.page(tenant.id, &query, Some(&cursor), 4).await.expect("page succeeds");
    assert_eq!(second, every[4..8]);
    let last = log.page(tenant.id, &query, Some(&second[3].cursor()), 4).await.expect("page succeeds");
    assert_eq!(last, every[8..]);

    let only = EventQuery { kind: Some(EventKind::UserDeleted), since: None };
    let ids: Vec<EventId> = log.page(tenant.id, &only, None, 10).await.expect("page").iter().map(|e| e.id).collect();
    assert_eq!(ids, [deleted[1], deleted[0]]);
    let after = log.page(tenant.id, &only, Some(&every[0].cursor()), 10).await.expect("page");
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [deleted[0]], "a kind's page after a cursor");

    let since = EventQuery { kind: None, since: Some(clock::truncate(tie)) };
    let recent = log.page(tenant.id, &since, None, 100).await.expect("page");
    assert!(recent.iter().all(|e| e.created_at >= clock::truncate(tie)));
    assert!(recent.iter().any(|e| e.id == created[2]) && recent.iter().any(|e| e.id == created[3]), "at `since` is in");
    assert!(!recent.iter().any(|e| e.id == created[1]), "before `since` is out");
    let both = EventQuery { kind: Some(EventKind::UserCreated), since: Some(clock::truncate(tie)) };
    let ids: BTreeSet<EventId> =
        log.page(tenant.id, &both, None, 100).await.expect("page").iter().map(|e| e.id).collect();
    let recent_creations = every
        .iter()
        .filter(|e| e.kind == EventKind::UserCreated && e.created_at >= clock::truncate(tie))
        .map(|e| e.id)
        .collect::<BTreeSet<_>>();
    assert_eq!(ids, recent_creations);
    assert_eq!(ids.len(), 4, "three of the first five, and the creation of the user deleted last");
    let none = EventQuery { kind: Some(EventKind::ApiKeyRevoked), since: None };
    assert!(log.page(tenant.id, &none, None, 10).await.expect("page").is_empty());
}

/// Another tenant's events are neither listed (from the start or from a cursor taken from
/// them) nor found by id.
pub async fn tenants_see_only_their_own_events(queue: Queue) {
    let (a, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let (b, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let a_events = events_at(&queue, &a, &[ago(30), ago(20), ago(10)], EventKind::UserCreated).await;
    let b_events = events_at(&queue, &b, &[ago(25)], EventKind::UserCreated).await;
    let log = &queue.storage.events;
    let b_page = log.page(b.id, &EventQuery::default(), None, 100).await.expect("page");
    assert_eq!(b_page.iter().map(|e| e.id).collect::<Vec<_>>(), b_events);
    let a_page = log.page(a.id, &EventQuery::default(), None, 100).await.expect("page");
    let cursor = Cursor { created_at: a_page[0].created_at, id: *a_page[0].id.as_uuid() };
    let from_a = log.page(b.id, &EventQuery::default(), Some(&cursor), 100).await.expect("page");
    assert_eq!(from_a.iter().map(|e| e.id).collect::<Vec<_>>(), b_events, "a cursor is a position, not a tenant");
    for id in &a_events {
        assert!(log.get(b.id, *id).await.expect("get").is_none());
        assert!(log.get(a.id, *id).await.expect("get").is_some());
    }
    assert!(log.get(a.id, EventId::new()).await.expect("get").is_none());
}

/// However old an event is (a clock may be set anywhere), a list without `since` has it, and
/// one with a `since` before it too.
pub async fn an_event_of_any_age_is_listed(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let long_ago = OffsetDateTime::UNIX_EPOCH - Duration::days(366 * 100);
    let [old] = events_at(&queue, &tenant, &[long_ago], EventKind::UserCreated).await[..] else { panic!("one") };
    let log = &queue.storage.events;
    let listed = log.page(tenant.id, &EventQuery::default(), None, 10).await.expect("page");
    assert_eq!(listed.last().map(|e| e.id), Some(old));
    let since = OffsetDateTime::parse("0000-01-01T00:00:00+01:00", &time::format_description::well_known::Rfc3339);
    let query = EventQuery { kind: None, since: since.ok() };
    assert_eq!(log.page(tenant.id, &query, None, 10).await.expect("page").last().map(|e| e.id), Some(old));
}

/// An event is found with one delivery per webhook subscribed to its kind when it happened,
/// each naming its webhook; an event no webhook took has none.
pub async fn an_event_is_found_with_its_deliveries(queue: Queue) {
    let s = &queue.storage;
    let (tenant, _) = fixtures::tenant_with_owner(s).await;
    let users = fixtures::webhook(tenant.id, &[EventKind::UserCreated]);
    let keys = fixtures::webhook(tenant.id, &[EventKind::ApiKeyCreated, EventKind::UserCreated]);
    let projects = fixtures::webhook(tenant.id, &[EventKind::ProjectCreated]);
    for hook in [&users, &keys, &projects] {
        s.webhooks.create(hook, b"sealed", &|_| Ok(()), None, &AuditTrail::none()).await.expect("create webhook");
    }
    let [created] = events_at(&queue, &tenant, &[ago(2)], EventKind::UserCreated).await[..] else { panic!("one") };
    let (event, deliveries) = s.events.get(tenant.id, created).await.expect("get").expect("found");
    assert_eq!((event.id, event.kind), (created, EventKind::UserCreated));
    assert_eq!(event, all(&queue, &tenant).await.into_iter().find(|e| e.id == created).expect("listed"));
    let hooks: BTreeSet<_> = deliveries.iter().map(|d| d.webhook_id).collect();
    assert_eq!(hooks, BTreeSet::from([users.id, keys.id]));
    for d in &deliveries {
        assert_eq!((d.event_id, d.event, d.tenant_id), (created, EventKind::UserCreated, tenant.id));
        assert_eq!(d.state, crate::entities::DeliveryState::Pending);
    }
    let [deleted] = events_at(&queue, &tenant, &[ago(1)], EventKind::UserDeleted).await[..] else { panic!("one") };
    let (_, none) = s.events.get(tenant.id, deleted).await.expect("get").expect("found");
    assert!(none.is_empty(), "no webhook took user.deleted");
}

/// Retention deletes the events older than its cutoff that no delivery needs (those that never
/// had one too), and keeps younger ones and those with a delivery still pending.
pub async fn retention_prunes_old_events_no_delivery_needs(queue: Queue) {
    let s = &queue.storage;
    let (tenant, _) = fixtures::tenant_with_owner(s).await;
    // The database deletes nothing younger than a day, whatever the cutoff: these are older.
    let old = events_at(&queue, &tenant, &[ago(3 * 86_400)], EventKind::UserCreated).await;
    let young = events_at(&queue, &tenant, &[ago(60)], EventKind::UserCreated).await;
    let hook = fixtures::webhook(tenant.id, &[EventKind::UserDeleted]);
    s.webhooks.create(&hook, b"sealed", &|_| Ok(()), None, &AuditTrail::none()).await.expect("create webhook");
    let pending = events_at(&queue, &tenant, &[ago(3 * 86_400 - 60)], EventKind::UserDeleted).await;
    queue.jobs.prune(now() - Duration::days(2)).await.expect("prune succeeds");
    let left: BTreeSet<EventId> = all(&queue, &tenant).await.iter().map(|e| e.id).collect();
    assert!(!left.contains(&old[0]), "an old event that never had a delivery is pruned");
    assert!(left.contains(&young[0]), "a young one is kept");
    assert!(left.contains(&pending[0]), "an old one whose delivery is pending is kept");
    assert!(s.events.get(tenant.id, old[0]).await.expect("get").is_none());
}
