//! `TenantRepository` conformance: creation with an owner, slugs unique across tenants.

use super::Storage;
use super::fixtures;
use crate::error::{Conflict, Error};
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
    let result = storage.tenants.create_with_owner(&second, &owner, None, &crate::audit::AuditTrail::none()).await;
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
    assert!(storage.tenants.create_with_owner(&second, &owner, None, &crate::audit::AuditTrail::none()).await.is_err());
    let found = storage.users.get(second.id, owner.id).await.expect("get succeeds");
    assert_eq!(found, None);
    let by_email = storage.users.find_by_email(second.id, &owner.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, None);
}
