//! `ProjectRepository` conformance: newest-first keyset lists, tenant isolation, and writes
//! whose events are built from the row as the write left it.

use std::sync::Mutex;

use time::Duration;

use super::Storage;
use super::fixtures::{self, ago};
use crate::clock;
use crate::entities::Project;
use crate::error::Error;
use crate::events::{DomainEvent, EventKind};
use crate::ids::{ProjectId, TenantId};

/// Every `ProjectRepository` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! project_repository_suite {
    ($fixture:expr $(,)?) => {
        mod project_repository {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                projects,
                $fixture,
                an_inserted_project_is_read_back,
                an_unknown_project_is_not_found,
                projects_are_listed_newest_first,
                projects_created_at_the_same_time_are_ordered_by_id_descending,
                a_page_holds_at_most_the_limit,
                pages_walk_every_project_exactly_once,
                the_list_shows_only_the_tenants_projects,
                a_project_of_another_tenant_is_not_found,
                a_project_of_another_tenant_can_not_be_renamed,
                a_project_of_another_tenant_can_not_be_deleted,
                renaming_returns_the_updated_project,
                rename_events_are_built_from_the_updated_project,
                delete_events_are_built_from_the_deleted_project,
                a_deleted_project_is_gone,
                deleting_twice_is_not_found,
                an_unknown_project_can_not_be_renamed_or_deleted,
            );
        }
    };
}

/// Captures the rows an `EventsFor` closure was called with.
#[derive(Debug, Default)]
struct Captured(Mutex<Vec<Project>>);

impl Captured {
    fn events(&self, kind: EventKind) -> impl Fn(&Project) -> Vec<DomainEvent> + Send + Sync + '_ {
        move |p: &Project| {
            self.0.lock().expect("not poisoned").push(p.clone());
            vec![DomainEvent::project(kind, p, clock::now())]
        }
    }

    fn rows(&self) -> Vec<Project> {
        self.0.lock().expect("not poisoned").clone()
    }
}

fn no_events(p: &Project) -> Vec<DomainEvent> {
    panic!("events were built for {p:?}, which the write should not have touched")
}

async fn insert(storage: &Storage, project: &Project) {
    let event = DomainEvent::project(EventKind::ProjectCreated, project, clock::now());
    storage
        .projects
        .insert(project, &[event], None, &crate::audit::AuditTrail::none(), None)
        .await
        .expect("insert succeeds");
}

async fn get(storage: &Storage, tenant: TenantId, id: ProjectId) -> Option<Project> {
    storage.projects.get(tenant, id).await.expect("get succeeds")
}

async fn list_all(storage: &Storage, tenant: TenantId) -> Vec<Project> {
    storage.projects.list(tenant, None, 1000).await.expect("list succeeds")
}

/// A stored tenant with `n` projects created a minute apart, inserted in a shuffled order;
/// returns the projects newest first.
async fn tenant_with_projects(storage: &Storage, n: i64) -> (TenantId, Vec<Project>) {
    let (tenant, _) = fixtures::tenant_with_owner(storage).await;
    let mut projects: Vec<Project> =
        (0..n).map(|i| fixtures::project_at(tenant.id, &format!("project {i}"), ago(60 * (n - i)))).collect();
    // Insert out of order, so the order listed is the repository's, not the insertion's.
    let mut order: Vec<usize> = (0..projects.len()).collect();
    order.sort_by_key(|i| (i % 2 == 0, *i));
    for i in order {
        insert(storage, &projects[i]).await;
    }
    projects.reverse();
    (tenant.id, projects)
}

/// An inserted project reads back equal.
pub async fn an_inserted_project_is_read_back(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let project = fixtures::project_at(tenant.id, "Apollo", ago(0));
    insert(&storage, &project).await;
    assert_eq!(get(&storage, tenant.id, project.id).await, Some(project));
}

/// An id the tenant has no project with is `None`, not an error.
pub async fn an_unknown_project_is_not_found(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    assert_eq!(get(&storage, tenant.id, ProjectId::new()).await, None);
}

/// `list` returns the tenant's projects by `created_at`, newest first.
pub async fn projects_are_listed_newest_first(storage: Storage) {
    let (tenant, expected) = tenant_with_projects(&storage, 5).await;
    assert_eq!(list_all(&storage, tenant).await, expected);
}

/// Projects with equal `created_at` are ordered by id, descending, in lists and across pages.
pub async fn projects_created_at_the_same_time_are_ordered_by_id_descending(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let at = ago(10);
    let mut tied: Vec<Project> = (0..4).map(|i| fixtures::project_at(tenant.id, &format!("tied {i}"), at)).collect();
    let newer = fixtures::project_at(tenant.id, "newer", at + Duration::milliseconds(1));
    let older = fixtures::project_at(tenant.id, "older", at - Duration::milliseconds(1));
    for p in tied.iter().chain([&newer, &older]) {
        insert(&storage, p).await;
    }
    tied.sort_by_key(|p| std::cmp::Reverse(p.id));
    let mut expected = vec![newer];
    expected.extend(tied);
    expected.push(older);
    assert_eq!(list_all(&storage, tenant.id).await, expected);

    let after_second = fixtures::project_cursor(&expected[1]);
    let page = storage.projects.list(tenant.id, Some(&after_second), 2).await.expect("list succeeds");
    assert_eq!(page, expected[2..4]);
}

/// A page holds at most `limit` projects: the newest ones.
pub async fn a_page_holds_at_most_the_limit(storage: Storage) {
    let (tenant, expected) = tenant_with_projects(&storage, 5).await;
    for limit in [1, 2, 5] {
        let page = storage.projects.list(tenant, None, limit).await.expect("list succeeds");
        assert_eq!(page, expected[..limit]);
    }
    let page = storage.projects.list(tenant, None, 50).await.expect("list succeeds");
    assert_eq!(page, expected);
}

/// Following the cursor of each page's last project visits every project exactly once, in
/// order, and the page after the last project is empty.
pub async fn pages_walk_every_project_exactly_once(storage: Storage) {
    let (tenant, expected) = tenant_with_projects(&storage, 7).await;
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = storage.projects.list(tenant, after.as_ref(), 3).await.expect("list succeeds");
        assert!(page.len() <= 3, "a page of {} projects for a limit of 3", page.len());
        let Some(last) = page.last() else { break };
        after = Some(fixtures::project_cursor(last));
        seen.extend(page);
    }
    assert_eq!(seen, expected);
    let after_last = expected.last().map(fixtures::project_cursor);
    let rest = storage.projects.list(tenant, after_last.as_ref(), 3).await.expect("list succeeds");
    assert_eq!(rest, Vec::new());
}

/// `list` never shows another tenant's projects, even right after they were written.
pub async fn the_list_shows_only_the_tenants_projects(storage: Storage) {
    let (a, a_projects) = tenant_with_projects(&storage, 3).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    assert_eq!(list_all(&storage, b.id).await, Vec::new());
    let b_project = fixtures::project_at(b.id, "mine", ago(0));
    insert(&storage, &b_project).await;
    assert_eq!(list_all(&storage, b.id).await, vec![b_project]);
    assert_eq!(list_all(&storage, a).await, a_projects);
}

/// Asked with another tenant's id, a project is not found.
pub async fn a_project_of_another_tenant_is_not_found(storage: Storage) {
    let (a, a_projects) = tenant_with_projects(&storage, 1).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    assert_eq!(get(&storage, b.id, a_projects[0].id).await, None);
    assert_eq!(get(&storage, a, a_projects[0].id).await.as_ref(), Some(&a_projects[0]));
}

/// Renaming another tenant's project is `NotFound`, builds no events and changes nothing.
pub async fn a_project_of_another_tenant_can_not_be_renamed(storage: Storage) {
    let (a, a_projects) = tenant_with_projects(&storage, 1).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let name = fixtures::project_name("stolen");
    let result =
        storage.projects.rename(b.id, a_projects[0].id, &name, &no_events, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
    assert_eq!(list_all(&storage, a).await, a_projects);
}

/// Deleting another tenant's project is `NotFound`, builds no events and deletes nothing.
pub async fn a_project_of_another_tenant_can_not_be_deleted(storage: Storage) {
    let (a, a_projects) = tenant_with_projects(&storage, 1).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let result = storage.projects.delete(b.id, a_projects[0].id, &no_events, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
    assert_eq!(list_all(&storage, a).await, a_projects);
}

/// `rename` returns the row as renamed: new name, same id and creation time, `updated_at` no
/// earlier than before; reads agree.
pub async fn renaming_returns_the_updated_project(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    // Made a minute ago, so that a database clock slightly behind ours can't fail the test.
    let before = fixtures::project_at(tenant.id, "Apollo", ago(60));
    insert(&storage, &before).await;
    let name = fixtures::project_name("Artemis");
    let events = |p: &Project| vec![DomainEvent::project(EventKind::ProjectUpdated, p, clock::now())];
    let after = storage
        .projects
        .rename(tenant.id, before.id, &name, &events, &crate::audit::AuditTrail::none())
        .await
        .expect("rename succeeds");
    assert_eq!(after.id, before.id);
    assert_eq!(after.tenant_id, before.tenant_id);
    assert_eq!(after.name, name);
    assert_eq!(after.created_at, before.created_at);
    assert!(after.updated_at >= before.updated_at, "{after:?} was updated before {before:?}");
    assert_eq!(get(&storage, tenant.id, before.id).await.as_ref(), Some(&after));
    assert_eq!(list_all(&storage, tenant.id).await, vec![after]);
}

/// `rename` builds its events exactly once, from the row it returns.
pub async fn rename_events_are_built_from_the_updated_project(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let project = fixtures::project_at(tenant.id, "Apollo", ago(60));
    insert(&storage, &project).await;
    let captured = Captured::default();
    let events = captured.events(EventKind::ProjectUpdated);
    let name = fixtures::project_name("Artemis");
    let renamed = storage
        .projects
        .rename(tenant.id, project.id, &name, &events, &crate::audit::AuditTrail::none())
        .await
        .expect("rename succeeds");
    assert_eq!(captured.rows(), vec![renamed]);
}

/// `delete` builds its events exactly once, from the row as it was.
pub async fn delete_events_are_built_from_the_deleted_project(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let project = fixtures::project_at(tenant.id, "Apollo", ago(60));
    insert(&storage, &project).await;
    let captured = Captured::default();
    let events = captured.events(EventKind::ProjectDeleted);
    storage
        .projects
        .delete(tenant.id, project.id, &events, &crate::audit::AuditTrail::none())
        .await
        .expect("delete succeeds");
    assert_eq!(captured.rows(), vec![project]);
}

/// A deleted project is neither read nor listed; the tenant's others are kept.
pub async fn a_deleted_project_is_gone(storage: Storage) {
    let (tenant, mut projects) = tenant_with_projects(&storage, 3).await;
    let gone = projects.remove(1);
    let events = |p: &Project| vec![DomainEvent::project(EventKind::ProjectDeleted, p, clock::now())];
    storage
        .projects
        .delete(tenant, gone.id, &events, &crate::audit::AuditTrail::none())
        .await
        .expect("delete succeeds");
    assert_eq!(get(&storage, tenant, gone.id).await, None);
    assert_eq!(list_all(&storage, tenant).await, projects);
}

/// Deleting a project a second time is `NotFound`, and builds no events.
pub async fn deleting_twice_is_not_found(storage: Storage) {
    let (tenant, projects) = tenant_with_projects(&storage, 1).await;
    let events = |p: &Project| vec![DomainEvent::project(EventKind::ProjectDeleted, p, clock::now())];
    storage
        .projects
        .delete(tenant, projects[0].id, &events, &crate::audit::AuditTrail::none())
        .await
        .expect("the first delete succeeds");
    let again = storage.projects.delete(tenant, projects[0].id, &no_events, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(again, Err(Error::NotFound)), "{again:?}");
}

/// Renaming or deleting an id the tenant has no project with is `NotFound`, without events.
pub async fn an_unknown_project_can_not_be_renamed_or_deleted(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let name = fixtures::project_name("nothing");
    let renamed = storage
        .projects
        .rename(tenant.id, ProjectId::new(), &name, &no_events, &crate::audit::AuditTrail::none())
        .await;
    assert!(matches!(renamed, Err(Error::NotFound)), "{renamed:?}");
    let deleted =
        storage.projects.delete(tenant.id, ProjectId::new(), &no_events, &crate::audit::AuditTrail::none()).await;
    assert!(matches!(deleted, Err(Error::NotFound)), "{deleted:?}");
}
