//! `TenantRepository` conformance: creation with an owner, slugs unique across tenants.

use super::Storage;
use super::fixtures;
use crate::audit::AuditTrail;
use crate::entities::Lifecycle;
use crate::error::{Conflict, Error};
use crate::ports::TenantState;
use crate::values::Role;

/// Every `TenantRepository` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! tenant_repository_suite {
    ($fixture:expr $(,)?) => {
        mod tenant_repository {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                tenants,
                $fixture,
                a_created_tenant_is_found_by_its_slug,
                a_created_tenant_has_its_owner,
                an_unknown_slug_is_not_found,
                a_taken_slug_is_a_conflict,
                a_tenant_refused_for_its_slug_leaves_nothing_behind,
                a_lifecycle_change_is_kept_and_the_operators_list_filters_by_it,
                a_deleted_tenant_is_erased_in_batches_once_its_grace_has_run_out,
            );
        }
    };
}

/// `create_with_owner`, then `find_by_slug` returns the tenant as created.
pub async fn a_created_tenant_is_found_by_its_slug(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let found = storage.tenants.find_by_slug(&tenant.slug).await.expect("find_by_slug succeeds");
    assert_eq!(found, Some(tenant));
}

/// The owner given to `create_with_owner` is a user of the new tenant.
pub async fn a_created_tenant_has_its_owner(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let found = storage.users.get(tenant.id, owner.id).await.expect("get succeeds");
    assert_eq!(found.as_ref(), Some(&owner));
    assert_eq!(found.map(|u| u.role), Some(Role::Owner));
    let by_email = storage.users.find_by_email(tenant.id, &owner.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, Some(owner));
}

/// A slug that no tenant has is `None`, not an error.
pub async fn an_unknown_slug_is_not_found(storage: Storage) {
    let found = storage.tenants.find_by_slug(&fixtures::slug()).await.expect("find_by_slug succeeds");
    assert_eq!(found, None);
}

/// A second tenant with a taken slug is `Conflict(SlugTaken)`; the slug still names the first.
pub async fn a_taken_slug_is_a_conflict(storage: Storage) {
    let (first, _) = fixtures::tenant_with_owner(&storage).await;
    let mut second = fixtures::tenant();
    second.slug = first.slug.clone();
    let owner = fixtures::user(second.id, "second-owner", Role::Owner);
    let result = storage.tenants.create_with_owner(&second, &owner, None, &AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::SlugTaken))), "{result:?}");
    let found = storage.tenants.find_by_slug(&first.slug).await.expect("find_by_slug succeeds");
    assert_eq!(found, Some(first));
}

/// Creation is atomic: when the slug is taken, the owner is not created either.
pub async fn a_tenant_refused_for_its_slug_leaves_nothing_behind(storage: Storage) {
    let (first, _) = fixtures::tenant_with_owner(&storage).await;
    let mut second = fixtures::tenant();
    second.slug = first.slug.clone();
    let owner = fixtures::user(second.id, "second-owner", Role::Owner);
    assert!(storage.tenants.create_with_owner(&second, &owner, None, &AuditTrail::none()).await.is_err());
    let found = storage.users.get(second.id, owner.id).await.expect("get succeeds");
    assert_eq!(found, None);
    let by_email = storage.users.find_by_email(second.id, &owner.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, None);
}

/// Every tenant in `state`, walking the operator's list a page at a time.
async fn listed(storage: &Storage, state: Option<TenantState>) -> Vec<crate::entities::Tenant> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = storage.tenants.list(after.as_ref(), 100, state).await.expect("list succeeds");
        let done = page.len() < 100;
        after = page.last().map(|t| t.slug.clone());
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// `set_lifecycle` is what `find_by_slug` then returns; the list shows each tenant under its
/// state only, in slug order.
pub async fn a_lifecycle_change_is_kept_and_the_operators_list_filters_by_it(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let at = crate::clock::now().replace_nanosecond(0).expect("a time");
    let suspended = Lifecycle { suspended_at: Some(at), ..Lifecycle::default() };
    let none = AuditTrail::none();
    let set =
        async |from: &Lifecycle, to: &Lifecycle| storage.tenants.set_lifecycle(tenant.id, from, to, &[], &none).await;
    assert!(set(&Lifecycle::default(), &suspended).await.expect("set"));
    let found = storage.tenants.find_by_slug(&tenant.slug).await.expect("find").expect("the tenant");
    assert_eq!(found.lifecycle, suspended);
    let has = |list: &[crate::entities::Tenant]| list.iter().any(|t| t.id == tenant.id);
    assert!(has(&listed(&storage, Some(TenantState::Suspended)).await));
    assert!(!has(&listed(&storage, Some(TenantState::Active)).await));
    assert!(!has(&listed(&storage, Some(TenantState::Deleted)).await));
    let all = listed(&storage, None).await;
    assert!(has(&all));
    assert!(all.windows(2).all(|w| w[0].slug.as_str() < w[1].slug.as_str()), "by slug");

    let deleted = Lifecycle { deleted_at: Some(at), purge_after: Some(at + time::Duration::days(30)), ..suspended };
    // A change from a state the tenant is no longer in (a concurrent change won) writes nothing.
    assert!(!set(&Lifecycle::default(), &deleted).await.expect("set"), "the tenant is suspended, not active");
    assert_eq!(storage.tenants.find_by_slug(&tenant.slug).await.expect("find").map(|t| t.lifecycle), Some(suspended));
    assert!(set(&suspended, &deleted).await.expect("set"));
    assert!(has(&listed(&storage, Some(TenantState::Deleted)).await));
    assert!(!has(&listed(&storage, Some(TenantState::Suspended)).await), "deleted comes first");
    assert!(set(&deleted, &Lifecycle::default()).await.expect("set"));
    assert!(has(&listed(&storage, Some(TenantState::Active)).await));
    let unknown = crate::ids::TenantId::new();
    let active = Lifecycle::default();
    let set_unknown = storage.tenants.set_lifecycle(unknown, &active, &suspended, &[], &none);
    assert!(!set_unknown.await.expect("set"));
}

/// Nothing is erased before `purge_after`; after it, calls erase a batch each until nothing
/// is left, the tenant last, and another tenant keeps everything.
pub async fn a_deleted_tenant_is_erased_in_batches_once_its_grace_has_run_out(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let (other, other_owner) = fixtures::tenant_with_owner(&storage).await;
    for n in 0..3 {
        let project = fixtures::project_at(tenant.id, &format!("p{n}"), fixtures::ago(1));
        storage.projects.insert(&project, &[], None, &AuditTrail::none(), None).await.expect("insert");
    }
    let now = crate::clock::now();
    let grace_ends = now + time::Duration::hours(1);
    let deleted = Lifecycle { deleted_at: Some(now), purge_after: Some(grace_ends), ..Lifecycle::default() };
    let (active, none) = (Lifecycle::default(), AuditTrail::none());
    assert!(storage.tenants.set_lifecycle(tenant.id, &active, &deleted, &[], &none).await.expect("set"));

    assert!(!storage.tenants.due_for_purge(now, 1000).await.expect("due").iter().any(|(id, _)| *id == tenant.id));
    assert_eq!(storage.tenants.purge_batch(tenant.id, now, 1).await.expect("purge"), 0, "not due yet");
    assert!(storage.tenants.purge_batch(other.id, grace_ends, 1).await.expect("purge") == 0, "not deleted");

    let later = grace_ends + time::Duration::seconds(1);
    assert!(storage.tenants.due_for_purge(later, 1000).await.expect("due").iter().any(|(id, _)| *id == tenant.id));
    let mut erased = 0;
    loop {
        let n = storage.tenants.purge_batch(tenant.id, later, 1).await.expect("purge");
        if n == 0 {
            break;
        }
        erased += n;
    }
    assert!(erased >= 5, "the tenant, its owner and 3 projects at least: {erased}");
    assert_eq!(storage.tenants.find_by_slug(&tenant.slug).await.expect("find"), None);
    assert_eq!(storage.users.get(tenant.id, owner.id).await.expect("get"), None);
    assert!(!storage.tenants.due_for_purge(later, 1000).await.expect("due").iter().any(|(id, _)| *id == tenant.id));
    assert_eq!(storage.tenants.find_by_slug(&other.slug).await.expect("find").map(|t| t.id), Some(other.id));
    assert_eq!(storage.users.get(other.id, other_owner.id).await.expect("get"), Some(other_owner));
}
