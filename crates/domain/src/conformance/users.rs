//! `UserRepository` conformance: emails unique per tenant, keyset lists, roles changed and users
//! deleted atomically with the caller's check, and never without an owner.

use std::sync::Mutex;

use super::Storage;
use super::fixtures::{self, ago};
use crate::entities::User;
use crate::error::{Conflict, Error, Result};
use crate::ids::{TenantId, UserId};
use crate::values::Role;

/// Every `UserRepository` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! user_repository_suite {
    ($fixture:expr $(,)?) => {
        mod user_repository {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                users,
                $fixture,
                a_created_user_is_found_by_id_and_by_email,
                the_same_email_may_belong_to_two_tenants,
                an_email_is_unique_within_a_tenant,
                a_user_of_another_tenant_is_not_found,
                users_are_listed_newest_first,
                the_users_list_pages_with_a_cursor_and_a_limit,
                the_users_list_shows_only_the_tenants_users,
                changing_a_role_returns_the_updated_user,
                the_check_sees_the_user_before_the_change,
                a_refusing_check_changes_nothing,
                the_last_owner_can_not_be_demoted,
                the_last_owner_can_not_be_deleted,
                the_last_owner_may_be_made_owner_again,
                one_of_two_owners_can_be_demoted,
                one_of_two_owners_can_be_deleted,
                a_deleted_user_is_gone,
                an_unknown_user_is_not_found_for_updates_and_deletes,
                a_user_of_another_tenant_can_not_be_changed_or_deleted,
            );
        }
    };
}

fn allow(_: &User) -> Result<()> {
    Ok(())
}

async fn create(storage: &Storage, user: &User) {
    storage.users.create(user, None, &crate::audit::AuditTrail::none(), None).await.expect("create succeeds");
}

async fn get(storage: &Storage, tenant: TenantId, id: UserId) -> Option<User> {
    storage.users.get(tenant, id).await.expect("get succeeds")
}

/// A created user reads back equal by id and by email.
pub async fn a_created_user_is_found_by_id_and_by_email(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &ada).await;
    assert_eq!(get(&storage, tenant.id, ada.id).await.as_ref(), Some(&ada));
    let by_email = storage.users.find_by_email(tenant.id, &ada.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, Some(ada));
    let nobody = storage.users.find_by_email(tenant.id, &fixtures::email("nobody")).await;
    assert_eq!(nobody.expect("find_by_email succeeds"), None);
}

/// Emails are unique within a tenant only: another tenant may have a user with the same one.
pub async fn the_same_email_may_belong_to_two_tenants(storage: Storage) {
    let (a, _) = fixtures::tenant_with_owner(&storage).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let in_a = fixtures::user(a.id, "ada", Role::Member);
    let in_b = fixtures::user(b.id, "ada", Role::Admin);
    create(&storage, &in_a).await;
    create(&storage, &in_b).await;
    let found_a = storage.users.find_by_email(a.id, &in_a.email).await.expect("find_by_email succeeds");
    let found_b = storage.users.find_by_email(b.id, &in_b.email).await.expect("find_by_email succeeds");
    assert_eq!(found_a, Some(in_a));
    assert_eq!(found_b, Some(in_b));
}

/// A second user with a tenant's existing email is `Conflict(EmailTaken)`; the first is kept.
pub async fn an_email_is_unique_within_a_tenant(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let first = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &first).await;
    let second = fixtures::user(tenant.id, "ada", Role::Admin);
    let result = storage.users.create(&second, None, &crate::audit::AuditTrail::none(), None).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::EmailTaken))), "{result:?}");
    assert_eq!(get(&storage, tenant.id, second.id).await, None);
    let by_email = storage.users.find_by_email(tenant.id, &first.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, Some(first));
}

/// Asked with another tenant's id, a user is not found, by id or by email.
pub async fn a_user_of_another_tenant_is_not_found(storage: Storage) {
    let (a, a_owner) = fixtures::tenant_with_owner(&storage).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(a.id, "ada", Role::Member);
    create(&storage, &ada).await;
    assert_eq!(get(&storage, b.id, ada.id).await, None);
    assert_eq!(get(&storage, b.id, a_owner.id).await, None);
    let by_email = storage.users.find_by_email(b.id, &ada.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, None);
}

/// A tenant with its owner (created an hour ago) and `n` members created a minute apart, newest
/// last; returns every user newest first.
async fn tenant_with_members(storage: &Storage, n: i64) -> (TenantId, Vec<User>) {
    let (tenant, owner) = fixtures::tenant_with_owner(storage).await;
    let mut users = vec![owner];
    for i in 0..n {
        let member = fixtures::user_at(tenant.id, &format!("member{i}"), Role::Member, ago(60 * (n - i)));
        create(storage, &member).await;
        users.push(member);
    }
    users.reverse();
    (tenant.id, users)
}

/// `list` returns the tenant's users newest first.
pub async fn users_are_listed_newest_first(storage: Storage) {
    let (tenant, expected) = tenant_with_members(&storage, 4).await;
    let listed = storage.users.list(tenant, None, 100).await.expect("list succeeds");
    assert_eq!(listed, expected);
}

/// `limit` caps a page and `after` starts strictly after the cursor: walking the pages visits
/// every user exactly once, in order.
pub async fn the_users_list_pages_with_a_cursor_and_a_limit(storage: Storage) {
    let (tenant, expected) = tenant_with_members(&storage, 4).await;
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = storage.users.list(tenant, after.as_ref(), 2).await.expect("list succeeds");
        assert!(page.len() <= 2, "a page of {} users for a limit of 2", page.len());
        let Some(last) = page.last() else { break };
        after = Some(fixtures::user_cursor(last));
        seen.extend(page);
    }
    assert_eq!(seen, expected);
    let after_last = expected.last().map(fixtures::user_cursor);
    let rest = storage.users.list(tenant, after_last.as_ref(), 2).await.expect("list succeeds");
    assert_eq!(rest, Vec::new());
}

/// `list` never shows another tenant's users.
pub async fn the_users_list_shows_only_the_tenants_users(storage: Storage) {
    let (a, a_users) = tenant_with_members(&storage, 2).await;
    let (b, b_users) = tenant_with_members(&storage, 1).await;
    assert_eq!(storage.users.list(a, None, 100).await.expect("list succeeds"), a_users);
    assert_eq!(storage.users.list(b, None, 100).await.expect("list succeeds"), b_users);
}

/// `update_role` returns the user as changed, and reads agree.
pub async fn changing_a_role_returns_the_updated_user(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &ada).await;
    let updated = storage
        .users
        .update_role(tenant.id, ada.id, Role::Admin, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("update_role succeeds");
    assert_eq!(updated, User { role: Role::Admin, token_version: 1, ..ada.clone() });
    assert_eq!(get(&storage, tenant.id, ada.id).await, Some(updated));
    // Back to the first role: a new version again, never an old one.
    let back = storage
        .users
        .update_role(tenant.id, ada.id, Role::Member, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("update_role succeeds");
    assert_eq!(back, User { role: Role::Member, token_version: 2, ..ada.clone() });
    // The same role again is no change: the version stays.
    let same = storage
        .users
        .update_role(tenant.id, ada.id, Role::Member, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("update_role succeeds");
    assert_eq!(same.token_version, 2);
    assert_eq!(get(&storage, tenant.id, ada.id).await, Some(same));
}

/// The check of `update_role` and `delete` sees the user as it is before the change.
pub async fn the_check_sees_the_user_before_the_change(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &ada).await;
    let seen = Mutex::new(Vec::new());
    let record = |u: &User| -> Result<()> {
        seen.lock().expect("not poisoned").push(u.clone());
        Ok(())
    };
    storage
        .users
        .update_role(tenant.id, ada.id, Role::Admin, &record, &crate::audit::AuditTrail::none())
        .await
        .expect("update_role succeeds");
    storage.users.delete(tenant.id, ada.id, &record, &crate::audit::AuditTrail::none()).await.expect("delete succeeds");
    let seen = seen.into_inner().expect("not poisoned");
    assert_eq!(seen, vec![ada.clone(), User { role: Role::Admin, token_version: 1, ..ada }]);
}

/// A check that refuses makes `update_role` and `delete` return its error and change nothing.
pub async fn a_refusing_check_changes_nothing(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Admin);
    create(&storage, &ada).await;
    let refuse = |_: &User| -> Result<()> { Err(Error::Forbidden("refused by the check")) };
    let updated =
        storage.users.update_role(tenant.id, ada.id, Role::Member, &refuse, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(updated, Err(Error::Forbidden("refused by the check"))), "{updated:?}");
    let deleted = storage.users.delete(tenant.id, ada.id, &refuse, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(deleted, Err(Error::Forbidden("refused by the check"))), "{deleted:?}");
    assert_eq!(get(&storage, tenant.id, ada.id).await, Some(ada));
}

/// Demoting a tenant's only owner is `Conflict(LastOwner)`, and the owner stays an owner.
pub async fn the_last_owner_can_not_be_demoted(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let admin = fixtures::user(tenant.id, "admin", Role::Admin);
    create(&storage, &admin).await;
    for role in [Role::Admin, Role::Member] {
        let result =
            storage.users.update_role(tenant.id, owner.id, role, &allow, &crate::audit::AuditTrail::none()).await;
        assert!(matches!(result, Err(Error::Conflict(Conflict::LastOwner))), "{result:?}");
    }
    assert_eq!(get(&storage, tenant.id, owner.id).await, Some(owner));
}

/// Deleting a tenant's only owner is `Conflict(LastOwner)`, and the owner is kept.
pub async fn the_last_owner_can_not_be_deleted(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let result = storage.users.delete(tenant.id, owner.id, &allow, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::LastOwner))), "{result:?}");
    assert_eq!(get(&storage, tenant.id, owner.id).await, Some(owner));
}

/// Setting the only owner's role to owner again demotes nobody, so it is not a conflict.
pub async fn the_last_owner_may_be_made_owner_again(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let updated =
        storage.users.update_role(tenant.id, owner.id, Role::Owner, &allow, &crate::audit::AuditTrail::none()).await;
    assert_eq!(updated.expect("update_role succeeds"), owner);
}

/// With two owners one may be demoted; the other is then the last one.
pub async fn one_of_two_owners_can_be_demoted(storage: Storage) {
    let (tenant, first) = fixtures::tenant_with_owner(&storage).await;
    let second = fixtures::user(tenant.id, "second", Role::Owner);
    create(&storage, &second).await;
    let demoted =
        storage.users.update_role(tenant.id, first.id, Role::Member, &allow, &crate::audit::AuditTrail::none()).await;
    assert_eq!(demoted.expect("update_role succeeds").role, Role::Member);
    let result =
        storage.users.update_role(tenant.id, second.id, Role::Admin, &allow, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::LastOwner))), "{result:?}");
    assert_eq!(get(&storage, tenant.id, second.id).await, Some(second));
}

/// With two owners one may be deleted; the other is then the last one.
pub async fn one_of_two_owners_can_be_deleted(storage: Storage) {
    let (tenant, first) = fixtures::tenant_with_owner(&storage).await;
    let second = fixtures::user(tenant.id, "second", Role::Owner);
    create(&storage, &second).await;
    storage
        .users
        .delete(tenant.id, first.id, &allow, &crate::audit::AuditTrail::none())
        .await
        .expect("delete succeeds");
    let result = storage.users.delete(tenant.id, second.id, &allow, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::Conflict(Conflict::LastOwner))), "{result:?}");
    assert_eq!(get(&storage, tenant.id, second.id).await, Some(second));
}

/// A deleted user is found by no read, and their email is free again.
pub async fn a_deleted_user_is_gone(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &ada).await;
    storage.users.delete(tenant.id, ada.id, &allow, &crate::audit::AuditTrail::none()).await.expect("delete succeeds");
    assert_eq!(get(&storage, tenant.id, ada.id).await, None);
    let by_email = storage.users.find_by_email(tenant.id, &ada.email).await.expect("find_by_email succeeds");
    assert_eq!(by_email, None);
    assert_eq!(storage.users.list(tenant.id, None, 100).await.expect("list succeeds"), vec![owner]);
    let again = fixtures::user(tenant.id, "ada", Role::Member);
    create(&storage, &again).await;
    assert_eq!(get(&storage, tenant.id, again.id).await, Some(again));
}

/// `update_role` and `delete` of an id the tenant doesn't have are `NotFound`, without a check.
pub async fn an_unknown_user_is_not_found_for_updates_and_deletes(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let unexpected = |u: &User| -> Result<()> { panic!("the check ran for {u:?}, which does not exist") };
    let updated = storage
        .users
        .update_role(tenant.id, UserId::new(), Role::Admin, &unexpected, &crate::audit::AuditTrail::none())
        .await;
    assert!(matches!(updated, Err(Error::NotFound)), "{updated:?}");
    let deleted = storage.users.delete(tenant.id, UserId::new(), &unexpected, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(deleted, Err(Error::NotFound)), "{deleted:?}");
}

/// Another tenant's user can't be changed or deleted (`NotFound`), and stays as it was.
pub async fn a_user_of_another_tenant_can_not_be_changed_or_deleted(storage: Storage) {
    let (a, a_owner) = fixtures::tenant_with_owner(&storage).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let ada = fixtures::user(a.id, "ada", Role::Member);
    create(&storage, &ada).await;
    for target in [&ada, &a_owner] {
        let updated =
            storage.users.update_role(b.id, target.id, Role::Admin, &allow, &crate::audit::AuditTrail::none()).await;
        assert!(matches!(updated, Err(Error::NotFound)), "{updated:?}");
        let deleted = storage.users.delete(b.id, target.id, &allow, &crate::audit::AuditTrail::none()).await;
        assert!(matches!(deleted, Err(Error::NotFound)), "{deleted:?}");
        assert_eq!(get(&storage, a.id, target.id).await.as_ref(), Some(target));
    }
}
