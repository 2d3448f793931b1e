//! `WebhookRepository` conformance: webhooks are the tenant's own, and project writes create
//! one pending delivery per subscribed webhook, in the same write.

use super::Storage;
use super::fixtures;
use crate::clock;
use crate::entities::{DeliveryState, Webhook};
use crate::error::Error;
use crate::events::{DomainEvent, EventKind};
use crate::ids::{TenantId, WebhookId};

/// Every `WebhookRepository` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! webhook_repository_suite {
    ($fixture:expr $(,)?) => {
        mod webhook_repository {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                webhooks,
                $fixture,
                a_created_webhook_is_listed_newest_first,
                another_tenants_webhooks_are_not_listed_nor_deletable,
                a_deleted_webhook_is_gone,
                project_writes_create_a_pending_delivery_per_subscribed_webhook,
                another_tenants_deliveries_are_not_found,
                a_count_limit_holds_under_concurrent_creates,
            );
        }
    };
}

fn webhook(tenant: TenantId, events: &[EventKind], seconds_ago: i64) -> Webhook {
    Webhook::new(
        WebhookId::new(),
        tenant,
        format!("https://hooks.example.com/{}", fixtures::random_hex()),
        events.to_vec(),
        clock::truncate(fixtures::ago(seconds_ago)),
    )
}

async fn create(storage: &Storage, w: &Webhook) {
    storage
        .webhooks
        .create(w, b"sealed", &|_| Ok(()), None, &crate::audit::AuditTrail::none())
        .await
        .expect("create succeeds");
}

pub async fn a_created_webhook_is_listed_newest_first(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let old = webhook(tenant.id, &[EventKind::ProjectCreated], 60);
    let new = webhook(tenant.id, &EventKind::ALL, 10);
    create(&storage, &old).await;
    create(&storage, &new).await;
    let listed = storage.webhooks.list(tenant.id, None, 10).await.expect("list");
    assert_eq!(listed, vec![new.clone(), old.clone()]);
    let after_first = fixtures::cursor_of(new.created_at, *new.id.as_uuid());
    assert_eq!(storage.webhooks.list(tenant.id, Some(&after_first), 10).await.expect("list"), vec![old]);
}

pub async fn another_tenants_webhooks_are_not_listed_nor_deletable(storage: Storage) {
    let (a, _) = fixtures::tenant_with_owner(&storage).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let hook = webhook(a.id, &EventKind::ALL, 5);
    create(&storage, &hook).await;
    assert!(storage.webhooks.list(b.id, None, 10).await.expect("list").is_empty());
    assert!(matches!(
        storage.webhooks.delete(b.id, hook.id, &crate::audit::AuditTrail::none()).await,
        Err(Error::NotFound)
    ));
    assert_eq!(storage.webhooks.list(a.id, None, 10).await.expect("list"), vec![hook]);
}

pub async fn a_deleted_webhook_is_gone(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let hook = webhook(tenant.id, &EventKind::ALL, 5);
    create(&storage, &hook).await;
    storage.webhooks.delete(tenant.id, hook.id, &crate::audit::AuditTrail::none()).await.expect("delete");
    assert!(storage.webhooks.list(tenant.id, None, 10).await.expect("list").is_empty());
    assert!(matches!(
        storage.webhooks.delete(tenant.id, hook.id, &crate::audit::AuditTrail::none()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(storage.webhooks.deliveries(tenant.id, hook.id, None, 10).await, Err(Error::NotFound)));
}

pub async fn project_writes_create_a_pending_delivery_per_subscribed_webhook(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let all = webhook(tenant.id, &EventKind::ALL, 20);
    let deletes_only = webhook(tenant.id, &[EventKind::ProjectDeleted], 10);
    create(&storage, &all).await;
    create(&storage, &deletes_only).await;
    let project = fixtures::project_at(tenant.id, "Hooked", fixtures::ago(1));
    let created = DomainEvent::project(EventKind::ProjectCreated, &project, clock::now());
    storage
        .projects
        .insert(&project, std::slice::from_ref(&created), None, &crate::audit::AuditTrail::none(), None)
        .await
        .expect("insert");

    let to_all = storage.webhooks.deliveries(tenant.id, all.id, None, 10).await.expect("deliveries");
    assert_eq!(to_all.len(), 1);
    let d = &to_all[0];
    assert_eq!(
        (d.event_id, d.event, d.state, d.attempts),
        (created.id, EventKind::ProjectCreated, DeliveryState::Pending, 0)
    );
    assert_eq!(d.last_error, None);
    assert!(storage.webhooks.deliveries(tenant.id, deletes_only.id, None, 10).await.expect("deliveries").is_empty());

    let deleted = |p: &crate::entities::Project| vec![DomainEvent::project(EventKind::ProjectDeleted, p, clock::now())];
    storage.projects.delete(tenant.id, project.id, &deleted, &crate::audit::AuditTrail::none()).await.expect("delete");
    assert_eq!(storage.webhooks.deliveries(tenant.id, all.id, None, 10).await.expect("deliveries").len(), 2);
    let to_deletes = storage.webhooks.deliveries(tenant.id, deletes_only.id, None, 10).await.expect("deliveries");
    assert_eq!(to_deletes.len(), 1);
    assert_eq!(to_deletes[0].event, EventKind::ProjectDeleted);
}

pub async fn another_tenants_deliveries_are_not_found(storage: Storage) {
    let (a, _) = fixtures::tenant_with_owner(&storage).await;
    let (b, _) = fixtures::tenant_with_owner(&storage).await;
    let hook = webhook(a.id, &EventKind::ALL, 5);
    create(&storage, &hook).await;
    let project = fixtures::project_at(b.id, "Other", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &project, clock::now());
    storage.projects.insert(&project, &[event], None, &crate::audit::AuditTrail::none(), None).await.expect("insert");
    assert!(matches!(storage.webhooks.deliveries(b.id, hook.id, None, 10).await, Err(Error::NotFound)));
    assert!(storage.webhooks.deliveries(a.id, hook.id, None, 10).await.expect("deliveries").is_empty());
}

/// The count `create`'s check sees can't be overtaken: 20 creations racing at a limit of 5
/// (counted under the creation's lock) store exactly 5 webhooks.
pub async fn a_count_limit_holds_under_concurrent_creates(storage: Storage) {
    const LIMIT: usize = 5;
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let storage = storage.clone();
        let hook = webhook(tenant.id, &EventKind::ALL, 0);
        racing.spawn(async move {
            let limit = |existing: usize| {
                if existing >= LIMIT { Err(Error::invalid("url", "over the limit")) } else { Ok(()) }
            };
            storage.webhooks.create(&hook, b"sealed", &limit, None, &crate::audit::AuditTrail::none()).await
        });
    }
    let mut created = 0;
    while let Some(outcome) = racing.join_next().await {
        match outcome.expect("the task runs") {
            Ok(_) => created += 1,
            Err(Error::Validation(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(created, LIMIT);
    assert_eq!(storage.webhooks.list(tenant.id, None, 100).await.expect("list").len(), LIMIT);
}
