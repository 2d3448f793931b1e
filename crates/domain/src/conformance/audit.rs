//! The audit log and API keys: entries appended with the writes that cause them (and only
//! when they happen), chained in order, paged newest first, pruned behind a checkpoint; keys
//! created, found, listed, revoked, touched, and capped by their creator's role.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::Storage;
use super::fixtures;
use crate::audit::{Actor, ActorKind, AuditEntry, AuditKey, AuditTrail, ChainLink, Target, Verifier, to_micros};
use crate::entities::{ApiKey, Tenant, User};
use crate::error::{Conflict, Error};
use crate::ids::{ApiKeyId, ProjectId, SessionId, TenantId, UserId};
use crate::ports::AuditQuery;
use crate::values::{ApiKeyToken, Role, Scope, Scopes, TokenHash};

/// Runs the suite against `Storage`.
#[macro_export]
macro_rules! audit_suite {
    ($fixture:expr $(,)?) => {
        mod audit_log {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                audit,
                $fixture,
                writes_append_their_entries_in_one_chain_that_verifies,
                a_write_that_changes_nothing_appends_nothing,
                pages_are_newest_first_and_filtered,
                pruning_moves_the_checkpoint_and_the_chain_still_verifies,
                tenants_have_chains_of_their_own,
                keys_are_created_found_listed_revoked_and_touched,
                keys_are_capped_per_tenant_and_by_their_creators_role,
                plan_limits_hold_under_concurrent_creations,
                a_tenant_moves_to_another_plan_with_its_entry,
            );
        }
    };
}

fn key() -> Arc<AuditKey> {
    Arc::new(AuditKey::derive(b"conformance"))
}

fn entry(action: &str, at: OffsetDateTime, target: Option<Target>) -> AuditEntry {
    AuditEntry {
        at: to_micros(at),
        actor: Actor {
            kind: ActorKind::User,
            id: Some(uuid::Uuid::now_v7()),
            ip: Some("192.0.2.1".into()),
            user_agent: Some("suite/1.0".into()),
        },
        action: action.into(),
        target,
        request_id: Some(fixtures::random_hex()),
        changes: r#"{"name":"x","n":1}"#.into(),
    }
}

fn trail(action: &str) -> AuditTrail {
    AuditTrail::new(key(), vec![entry(action, crate::clock::now(), None)])
}

async fn tenant_with_owner(s: &Storage) -> (Tenant, User) {
    let tenant = fixtures::tenant();
    let owner = fixtures::user(tenant.id, "owner", Role::Owner);
    s.tenants.create_with_owner(&tenant, &owner, None, &trail("tenant.created")).await.unwrap();
    (tenant, owner)
}

async fn verify(s: &Storage, tenant: TenantId) -> crate::audit::Verification {
    let (checkpoint, head) = s.audit.ends(tenant).await.unwrap();
    let mut v = Verifier::new(key(), tenant, checkpoint);
    for r in s.audit.chain(tenant, checkpoint.seq, head.seq, 1000).await.unwrap() {
        v.push(&r);
    }
    v.finish(head)
}

async fn actions(s: &Storage, tenant: TenantId) -> Vec<String> {
    let page = s.audit.page(tenant, &AuditQuery::default(), None, 100).await.unwrap();
    page.into_iter().map(|r| r.entry.action).collect()
}

pub async fn writes_append_their_entries_in_one_chain_that_verifies(s: Storage) {
    let (tenant, _) = tenant_with_owner(&s).await;
    let user = fixtures::user(tenant.id, "ada", Role::Member);
    s.users.create(&user, None, &trail("user.created"), None).await.unwrap();
    let project = fixtures::project_at(tenant.id, "Audited", fixtures::ago(1));
    s.projects.insert(&project, &[], None, &trail("project.created"), None).await.unwrap();
    let check = |_: &User| Ok(());
    s.users.update_role(tenant.id, user.id, Role::Admin, &check, &trail("user.role_changed")).await.unwrap();
    s.audit.append(tenant.id, &trail("user.sign_in_failed")).await.unwrap();
    s.users.delete(tenant.id, user.id, &check, &trail("user.deleted")).await.unwrap();

    assert_eq!(
        actions(&s, tenant.id).await,
        [
            "user.deleted",
            "user.sign_in_failed",
            "user.role_changed",
            "project.created",
            "user.created",
            "tenant.created"
        ]
    );
    let (checkpoint, head) = s.audit.ends(tenant.id).await.unwrap();
    assert_eq!((checkpoint, head.seq), (ChainLink::default(), 6));
    let records = s.audit.chain(tenant.id, 0, head.seq, 100).await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "each entry links to the one before");
    }
    let stored = &records[1].entry;
    let written = trail("user.created").entries()[0].clone();
    assert_eq!((stored.action.as_str(), stored.changes.as_str()), ("user.created", written.changes.as_str()));
    assert_eq!(stored.actor.ip.as_deref(), Some("192.0.2.1"), "the actor's origin is kept");
    assert!(verify(&s, tenant.id).await.valid);
}

pub async fn a_write_that_changes_nothing_appends_nothing(s: Storage) {
    let (tenant, owner) = tenant_with_owner(&s).await;
    let head = s.audit.ends(tenant.id).await.unwrap().1;
    let twin = User { id: UserId::new(), ..owner.clone() };
    assert!(matches!(
        s.users.create(&twin, None, &trail("user.created"), None).await,
        Err(Error::Conflict(Conflict::EmailTaken))
    ));
    let events = |_: &crate::entities::Project| Vec::new();
    let name = fixtures::project_name("Nothing");
    assert!(matches!(
        s.projects.rename(tenant.id, ProjectId::new(), &name, &events, &trail("project.updated")).await,
        Err(Error::NotFound)
    ));
    assert!(!s.sessions.end(tenant.id, SessionId::new(), None, &trail("session.ended")).await.unwrap());
    let refuse = |_: &User| Err(Error::Forbidden("no"));
    assert!(s.users.delete(tenant.id, owner.id, &refuse, &trail("user.deleted")).await.is_err());
    assert!(
        !s.api_keys.revoke(tenant.id, ApiKeyId::new(), crate::clock::now(), &trail("api_key.revoked")).await.unwrap()
    );
    assert_eq!(s.audit.ends(tenant.id).await.unwrap().1, head, "no refused or empty write left an entry");
    assert_eq!(actions(&s, tenant.id).await, ["tenant.created"]);
}

pub async fn pages_are_newest_first_and_filtered(s: Storage) {
    let (tenant, _) = tenant_with_owner(&s).await;
    let base = crate::clock::now() - Duration::hours(10);
    let target = Target::new("project", ProjectId::new());
    let mut actor = None;
    for i in 0..5 {
        let mut e = entry(if i % 2 == 0 { "project.updated" } else { "user.created" }, base + Duration::hours(i), None);
        if i == 2 {
            e.target = Some(target.clone());
            actor = e.actor.id;
        }
        s.audit.append(tenant.id, &AuditTrail::new(key(), vec![e])).await.unwrap();
    }
    let all = s.audit.page(tenant.id, &AuditQuery::default(), None, 100).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 5, 4, 3, 2, 1]);
    let two = s.audit.page(tenant.id, &AuditQuery::default(), Some(5), 2).await.unwrap();
    assert_eq!(two.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3], "a page after a seq starts below it");

    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let updated = s.audit.page(tenant.id, &q(|q| q.action = Some("project.updated".into())), None, 100).await.unwrap();
    assert_eq!(updated.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 4, 2]);
    let by_target = AuditQuery { target: Some(target.id.clone()), ..AuditQuery::default() };
    let hit = s.audit.page(tenant.id, &by_target, None, 100).await.unwrap();
    assert_eq!(hit.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
    let by_actor = AuditQuery { actor, ..AuditQuery::default() };
    assert_eq!(s.audit.page(tenant.id, &by_actor, None, 100).await.unwrap().len(), 1);
    let window = AuditQuery {
        since: Some(base + Duration::hours(1)),
        until: Some(base + Duration::hours(3)),
        ..AuditQuery::default()
    };
    let within = s.audit.page(tenant.id, &window, None, 100).await.unwrap();
    assert_eq!(within.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3], "since is inclusive, until exclusive");
}

pub async fn pruning_moves_the_checkpoint_and_the_chain_still_verifies(s: Storage) {
    let (tenant, _) = tenant_with_owner(&s).await;
    let now = crate::clock::now();
    // The signup's entry is recent; these three are old, then two more recent ones.
    for days in [400, 399, 398] {
        let e = entry("project.created", now - Duration::days(days), None);
        s.audit.append(tenant.id, &AuditTrail::new(key(), vec![e])).await.unwrap();
    }
    for _ in 0..2 {
        s.audit.append(tenant.id, &trail("project.updated")).await.unwrap();
    }
    let before = s.audit.chain(tenant.id, 0, 100, 100).await.unwrap();
    let pruned = s.audit.prune(now - Duration::days(365)).await.unwrap();
    assert!(pruned >= 4, "the old entries and what precedes them in the chain go: {pruned}");
    let (checkpoint, head) = s.audit.ends(tenant.id).await.unwrap();
    assert_eq!(checkpoint.seq, 4, "the checkpoint is the last entry pruned");
    assert_eq!(checkpoint.hash, before[3].hash);
    assert_eq!(head.seq, 6);
    let left = s.audit.chain(tenant.id, checkpoint.seq, head.seq, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    let v = verify(&s, tenant.id).await;
    assert!(v.valid && v.checkpoint_seq == 4 && v.entries == 2, "{v:?}");
    s.audit.append(tenant.id, &trail("project.deleted")).await.unwrap();
    assert!(verify(&s, tenant.id).await.valid, "appends go on after a checkpoint");
}

pub async fn tenants_have_chains_of_their_own(s: Storage) {
    let (a, _) = tenant_with_owner(&s).await;
    let (b, _) = tenant_with_owner(&s).await;
    s.audit.append(a.id, &trail("project.created")).await.unwrap();
    assert_eq!(s.audit.ends(a.id).await.unwrap().1.seq, 2);
    assert_eq!(s.audit.ends(b.id).await.unwrap().1.seq, 1);
    assert_eq!(actions(&s, b.id).await, ["tenant.created"], "no entry of another tenant is seen");
    assert!(s.audit.chain(b.id, 1, 2, 10).await.unwrap().is_empty());
    assert!(verify(&s, a.id).await.valid && verify(&s, b.id).await.valid);
}

fn api_key(tenant: TenantId, creator: Option<UserId>, role: Role, created_at: OffsetDateTime) -> ApiKey {
    let id = ApiKeyId::new();
    ApiKey {
        id,
        tenant_id: tenant,
        name: "ci".into(),
        prefix: ApiKeyToken::prefix_of(id),
        scopes: Scopes::of([Scope::ProjectsRead, Scope::AuditRead]),
        role,
        created_by: creator,
        rate_limit_per_minute: Some(60),
        created_at: crate::clock::truncate(created_at),
        last_used_at: None,
        expires_at: Some(crate::clock::truncate(created_at + Duration::days(30))),
    }
}

pub async fn keys_are_created_found_listed_revoked_and_touched(s: Storage) {
    let (tenant, owner) = tenant_with_owner(&s).await;
    let (other, _) = tenant_with_owner(&s).await;
    let hash = TokenHash::from_bytes([9; 32]);
    let older = api_key(tenant.id, Some(owner.id), Role::Owner, fixtures::ago(60));
    let newer = api_key(tenant.id, Some(owner.id), Role::Owner, fixtures::ago(1));
    for k in [&older, &newer] {
        s.api_keys.create(k, &hash, &|_| Ok(()), &trail("api_key.created")).await.unwrap();
    }
    let listed = s.api_keys.list(tenant.id).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), [newer.id, older.id], "newest first");
    assert_eq!(listed[0], newer);
    let found = s.api_keys.lookup(tenant.id, newer.id).await.unwrap().expect("found");
    assert_eq!(found.key, newer);
    assert!(found.hash.constant_time_eq(&hash));
    assert_eq!(found.creator_role, Some(Role::Owner));
    assert!(s.api_keys.lookup(other.id, newer.id).await.unwrap().is_none(), "never on another tenant");
    assert!(s.api_keys.list(other.id).await.unwrap().is_empty());
    assert!(!s.api_keys.revoke(other.id, newer.id, crate::clock::now(), &trail("api_key.revoked")).await.unwrap());

    let used = crate::clock::now();
    s.api_keys.touch(&[(tenant.id, older.id, used), (tenant.id, older.id, used - Duration::hours(1))]).await.unwrap();
    s.api_keys.touch(&[(tenant.id, older.id, used - Duration::hours(2))]).await.unwrap();
    let touched = s.api_keys.lookup(tenant.id, older.id).await.unwrap().expect("found").key;
    assert_eq!(touched.last_used_at, Some(crate::clock::truncate(used)), "never moved backwards");

    assert!(s.api_keys.revoke(tenant.id, newer.id, crate::clock::now(), &trail("api_key.revoked")).await.unwrap());
    assert!(!s.api_keys.revoke(tenant.id, newer.id, crate::clock::now(), &trail("api_key.revoked")).await.unwrap());
    assert!(s.api_keys.lookup(tenant.id, newer.id).await.unwrap().is_none(), "a revoked key is never found");
    assert_eq!(s.api_keys.list(tenant.id).await.unwrap().iter().map(|k| k.id).collect::<Vec<_>>(), [older.id]);
    assert_eq!(
        actions(&s, tenant.id).await,
        ["api_key.revoked", "api_key.created", "api_key.created", "tenant.created"],
        "only the revocation that happened left an entry"
    );
}

pub async fn keys_are_capped_per_tenant_and_by_their_creators_role(s: Storage) {
    let (tenant, _) = tenant_with_owner(&s).await;
    let admin = fixtures::user(tenant.id, "admin", Role::Admin);
    s.users.create(&admin, None, &AuditTrail::none(), None).await.unwrap();
    let hash = TokenHash::from_bytes([3; 32]);
    let one_key = |n: usize| if n >= 1 { Err(Error::Conflict(Conflict::TooManyKeys)) } else { Ok(()) };
    let none = AuditTrail::none();
    let first = api_key(tenant.id, Some(admin.id), Role::Admin, fixtures::ago(2));
    s.api_keys.create(&first, &hash, &one_key, &none).await.unwrap();
    let second = api_key(tenant.id, Some(admin.id), Role::Admin, fixtures::ago(1));
    let capped = s.api_keys.create(&second, &hash, &one_key, &none).await;
    assert!(matches!(capped, Err(Error::Conflict(Conflict::TooManyKeys))), "the check sees the live keys");
    assert!(s.api_keys.lookup(tenant.id, second.id).await.unwrap().is_none(), "a refused key is not stored");

    let ok = |_: &User| Ok(());
    s.users.update_role(tenant.id, admin.id, Role::Member, &ok, &AuditTrail::none()).await.unwrap();
    let lowered = s.api_keys.lookup(tenant.id, first.id).await.unwrap().expect("found");
    assert_eq!((lowered.key.role, lowered.creator_role), (Role::Member, Some(Role::Member)));
    s.users.update_role(tenant.id, admin.id, Role::Admin, &ok, &AuditTrail::none()).await.unwrap();
    let kept = s.api_keys.lookup(tenant.id, first.id).await.unwrap().expect("found");
    assert_eq!(kept.key.role, Role::Member, "promoting the creator never raises a key");

    s.users.delete(tenant.id, admin.id, &ok, &AuditTrail::none()).await.unwrap();
    let orphan = s.api_keys.lookup(tenant.id, first.id).await.unwrap().expect("the key is the tenant's");
    assert_eq!((orphan.key.created_by, orphan.creator_role), (None, None));
}

pub async fn plan_limits_hold_under_concurrent_creations(s: Storage) {
    use crate::plans::{Cap, Resource};
    let (tenant, _) = tenant_with_owner(&s).await;
    let cap = Some(Cap { resource: Resource::Projects, limit: 5 });
    let none = AuditTrail::none();
    let projects: Vec<_> =
        (0..20).map(|i| fixtures::project_at(tenant.id, &format!("p{i}"), fixtures::ago(20 - i))).collect();
    let results = futures_join_all(projects.iter().map(|p| s.projects.insert(p, &[], None, &none, cap))).await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 5, "exactly the limit is created: {results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(Error::PlanLimitReached { resource: "projects", limit: 5, usage: 5 })),
            "every other one is refused with the limit and the usage: {r:?}"
        );
    }
    assert_eq!(s.tenants.usage(tenant.id).await.unwrap().projects, 5);

    // Members: the owner is one; a limit of 3 admits two more, however many try at once.
    let members = Some(Cap { resource: Resource::Members, limit: 3 });
    let users: Vec<_> = (0..10).map(|i| fixtures::user(tenant.id, &format!("m{i}"), Role::Member)).collect();
    let results = futures_join_all(users.iter().map(|u| s.users.create(u, None, &none, members))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2, "{results:?}");
    let usage = s.tenants.usage(tenant.id).await.unwrap();
    assert_eq!((usage.members, usage.projects, usage.webhooks, usage.api_keys), (3, 5, 0, 0));
}

/// Polls every future together on this task (the suites' runtime runs one thread): concurrent
/// calls, each on a connection of its own where the adapter pools them.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.into_iter().flatten().collect()
}

pub async fn a_tenant_moves_to_another_plan_with_its_entry(s: Storage) {
    let (tenant, _) = tenant_with_owner(&s).await;
    let pro: crate::values::Plan = "pro".parse().unwrap();
    assert!(s.tenants.set_plan(tenant.id, &pro, &[], &trail("tenant.plan_changed")).await.unwrap());
    assert_eq!(s.tenants.find_by_slug(&tenant.slug).await.unwrap().unwrap().plan, pro);
    assert_eq!(actions(&s, tenant.id).await, ["tenant.plan_changed", "tenant.created"]);
    assert!(
        !s.tenants.set_plan(TenantId::new(), &pro, &[], &trail("tenant.plan_changed")).await.unwrap(),
        "no such tenant"
    );
}
