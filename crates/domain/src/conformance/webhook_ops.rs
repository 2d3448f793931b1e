//! Webhook operations conformance, over the job queue's [`Queue`] fixture: webhooks disabled
//! (by a member, or for failing too long) and enabled again, changed, their secrets rotated
//! with an overlap, pinged, their deliveries retried and recovered, their attempts paced; and
//! the health the worker's records keep on them.

use std::time::Duration;

use time::OffsetDateTime;

use super::fixtures;
use super::jobs::Queue;
use crate::audit::AuditTrail;
use crate::clock;
use crate::entities::{Delivery, DeliveryState, Project, Tenant, Webhook, WebhookHealth, WebhookState};
use crate::error::Error;
use crate::events::{DomainEvent, EventKind};
use crate::ids::{DeliveryId, EventId, WebhookId};
use crate::ports::{
    AttemptOutcome, FailingLongEnough, Job, NextStep, Recovered, Recovery, WebhookChange, WebhookNotice, Work,
};
use crate::values::{Purpose, Role};

/// Every webhook-operations behaviour, as named tests; the argument is a
/// [`Queue`] expression, as for `job_queue_suite!`.
#[macro_export]
macro_rules! webhook_operations_suite {
    ($fixture:expr $(,)?) => {
        mod webhook_operations {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                webhook_ops,
                $fixture,
                a_disabled_webhook_skips_its_pending_deliveries_and_gets_none_until_enabled_again,
                an_update_changes_url_events_and_pace_of_the_tenants_own_webhook_only,
                recorded_attempts_keep_the_webhooks_health,
                a_webhook_failing_long_enough_is_disabled_once_with_an_event_and_notices,
                a_rotated_secret_keeps_the_previous_one_until_asked_not_to,
                an_event_sent_to_one_webhook_makes_one_delivery_to_it_only,
                a_retried_delivery_is_pending_again_with_one_job,
                recovery_sends_again_each_failed_delivery_since_a_time_once,
                recovery_goes_oldest_first_spaced_and_stops_at_its_limit,
                pace_gives_each_attempt_the_webhooks_next_slot,
            );
        }
    };
}

/// The URL of every webhook here: its origin is `https://hooks.example.com`.
fn url() -> String {
    format!("https://hooks.example.com/{}/in?token=s3cr3t", fixtures::random_hex())
}

const ORIGIN: &str = "https://hooks.example.com";

fn trail() -> AuditTrail {
    AuditTrail::none()
}

/// An hour from now: a retry scheduled then is not due during a test.
fn in_an_hour() -> OffsetDateTime {
    clock::now() + Duration::from_secs(3600)
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A stored webhook of `tenant`, subscribed to `events`, with the sealed secret `sealed`.
async fn hook_sealed(queue: &Queue, tenant: &Tenant, events: &[EventKind], sealed: &[u8]) -> Webhook {
    let hook = Webhook::new(WebhookId::new(), tenant.id, url(), events.to_vec(), clock::now());
    queue.storage.webhooks.create(&hook, sealed, &|_| Ok(()), None, &trail()).await.expect("create webhook");
    hook
}

async fn hook(queue: &Queue, tenant: &Tenant, events: &[EventKind]) -> Webhook {
    hook_sealed(queue, tenant, events, b"sealed").await
}

/// Creates a project of `tenant` whose `project.created` event happened `at` (so its deliveries
/// are made `at`); returns the project and the event's id.
async fn write_at(queue: &Queue, tenant: &Tenant, at: OffsetDateTime) -> (Project, EventId) {
    let project = fixtures::project_at(tenant.id, &format!("Project {}", fixtures::random_hex()), fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &project, at);
    let id = event.id;
    queue.storage.projects.insert(&project, &[event], None, &trail(), None).await.expect("insert project");
    (project, id)
}

async fn write(queue: &Queue, tenant: &Tenant) -> (Project, EventId) {
    write_at(queue, tenant, clock::now()).await
}

async fn claim(queue: &Queue) -> Option<Job> {
    queue.jobs.claim("conformance").await.expect("claim")
}

/// Claims the next job, which must be a delivery's.
async fn claim_delivery(queue: &Queue) -> (Job, DeliveryId) {
    let job = claim(queue).await.expect("a job is due");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job: {job:?}") };
    (job, delivery)
}

/// Claims every due job (dropping each once claimed, so the tenant's next can be claimed)
/// and returns what they were to do, in the order claimed.
async fn claim_all(queue: &Queue) -> Vec<Work> {
    let mut claimed = Vec::new();
    while let Some(job) = claim(queue).await {
        claimed.push(job.work);
        queue.deliveries.discard(&job).await.expect("discard");
        assert!(claimed.len() <= 50, "claims never end: {claimed:?}");
    }
    claimed
}

/// The deliveries among `works`, sorted.
fn delivered_to(works: &[Work]) -> Vec<DeliveryId> {
    let mut ids: Vec<DeliveryId> =
        works.iter().filter_map(|w| if let Work::Deliver(d) = w { Some(*d) } else { None }).collect();
    ids.sort_by_key(|d| *d.as_uuid());
    ids
}

fn sorted(mut ids: Vec<DeliveryId>) -> Vec<DeliveryId> {
    ids.sort_by_key(|d| *d.as_uuid());
    ids
}

/// Records an attempt of the claimed `job` made `at`: delivered if `next` says so, else
/// failed with an HTTP 500.
async fn attempt(queue: &Queue, job: &Job, next: NextStep, at: OffsetDateTime) -> WebhookHealth {
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let outcome = if next == NextStep::Delivered {
        AttemptOutcome { delivered: true, status: Some(200), error: None }
    } else {
        AttemptOutcome { delivered: false, status: Some(500), error: Some("HTTP 500".into()) }
    };
    queue.deliveries.record(job, delivery, &outcome, next, at).await.expect("record")
}

async fn finish(queue: &Queue, job: &Job) {
    attempt(queue, job, NextStep::Delivered, clock::now()).await;
}

async fn deliveries(queue: &Queue, tenant: &Tenant, hook: &Webhook) -> Vec<Delivery> {
    queue.storage.webhooks.deliveries(tenant.id, hook.id, None, 100).await.expect("list deliveries")
}

async fn delivery(queue: &Queue, tenant: &Tenant, hook: &Webhook, id: DeliveryId) -> Delivery {
    deliveries(queue, tenant, hook).await.into_iter().find(|d| d.id == id).expect("the delivery is listed")
}

/// The webhook's delivery of the event `event`.
async fn delivery_of(queue: &Queue, tenant: &Tenant, hook: &Webhook, event: EventId) -> Delivery {
    let all = deliveries(queue, tenant, hook).await;
    let mut of = all.into_iter().filter(|d| d.event_id == event);
    let found = of.next().expect("a delivery of the event");
    assert!(of.next().is_none(), "one delivery of an event per webhook");
    found
}

async fn get(queue: &Queue, tenant: &Tenant, hook: &Webhook) -> Webhook {
    queue.storage.webhooks.get(tenant.id, hook.id).await.expect("get").expect("the webhook")
}

async fn update(queue: &Queue, tenant: &Tenant, hook: &Webhook, change: WebhookChange, at: OffsetDateTime) -> Webhook {
    queue.storage.webhooks.update(tenant.id, hook.id, &change, at, &trail()).await.expect("update")
}

async fn ready(queue: &Queue) -> u64 {
    queue.jobs.stats().await.expect("stats").ready
}

fn disabling(reason: &str) -> WebhookChange {
    WebhookChange { enabled: Some(false), disabled_reason: Some(reason.to_owned()), ..WebhookChange::default() }
}

pub async fn a_disabled_webhook_skips_its_pending_deliveries_and_gets_none_until_enabled_again(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook(&queue, &tenant, &EventKind::ALL).await;
    let base = clock::now();
    // A success, a failure whose retry waits, and a delivery not attempted yet.
    write(&queue, &tenant).await;
    let (job, delivered) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::Delivered, base).await;
    write(&queue, &tenant).await;
    let (job, retried) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::RetryAt(in_an_hour()), base + seconds(1)).await;
    let (_, event) = write(&queue, &tenant).await;
    let waiting = delivery_of(&queue, &tenant, &hook, event).await.id;
    assert_eq!(ready(&queue).await, 2, "the retry's job and the new delivery's");

    let at = base + seconds(2);
    let disabled = update(&queue, &tenant, &hook, disabling("paused for maintenance"), at).await;
    let expected = WebhookHealth {
        state: WebhookState::Disabled,
        disabled_reason: Some("paused for maintenance".into()),
        disabled_at: Some(at),
        last_success_at: Some(base),
        consecutive_failures: 1,
        failing_since: Some(base + seconds(1)),
    };
    assert_eq!(disabled.health, expected);
    assert!(!disabled.is_enabled());
    assert_eq!((&disabled.url, &disabled.events), (&hook.url, &hook.events), "nothing else changed");
    assert_eq!(get(&queue, &tenant, &hook).await, disabled);
    assert_eq!(delivery(&queue, &tenant, &hook, delivered).await.state, DeliveryState::Delivered);
    assert_eq!(delivery(&queue, &tenant, &hook, retried).await.state, DeliveryState::Skipped);
    assert_eq!(delivery(&queue, &tenant, &hook, waiting).await.state, DeliveryState::Skipped);
    assert!(claim(&queue).await.is_none(), "the skipped deliveries' jobs are dropped");
    assert_eq!(ready(&queue).await, 0, "the waiting retry's job too");
    assert!(queue.deliveries.load(tenant.id, waiting).await.expect("load").is_none(), "skipped: nothing to send");

    let again = update(&queue, &tenant, &hook, disabling("another reason"), at + seconds(1)).await;
    assert_eq!(again, disabled, "disabling a disabled webhook changes nothing");

    let (_, unheard) = write(&queue, &tenant).await;
    let all = deliveries(&queue, &tenant, &hook).await;
    assert_eq!(all.len(), 3, "no delivery to a disabled webhook: {all:?}");
    assert!(all.iter().all(|d| d.event_id != unheard));
    assert!(claim(&queue).await.is_none());
    assert_eq!(ready(&queue).await, 0);

    let on = WebhookChange { enabled: Some(true), ..WebhookChange::default() };
    let enabled = update(&queue, &tenant, &hook, on, at + seconds(3)).await;
    assert_eq!(
        enabled.health,
        WebhookHealth { last_success_at: Some(base), ..WebhookHealth::default() },
        "its failure record starts again; its last success stays"
    );
    assert!(enabled.is_enabled());
    assert_eq!(get(&queue, &tenant, &hook).await, enabled);
    assert_eq!(delivery(&queue, &tenant, &hook, waiting).await.state, DeliveryState::Skipped, "skipped stays skipped");
    assert!(claim(&queue).await.is_none(), "enabling queues nothing by itself");

    let (_, heard) = write(&queue, &tenant).await;
    let fresh = delivery_of(&queue, &tenant, &hook, heard).await;
    assert_eq!((fresh.state, fresh.attempts), (DeliveryState::Pending, 0));
    let (_, claimed) = claim_delivery(&queue).await;
    assert_eq!(claimed, fresh.id);
}

pub async fn an_update_changes_url_events_and_pace_of_the_tenants_own_webhook_only(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook(&queue, &tenant, &[EventKind::ProjectCreated]).await;
    let url = format!("https://elsewhere.example.com/{}", fixtures::random_hex());
    let events = vec![EventKind::ProjectDeleted, EventKind::TenantSuspended];
    let change = WebhookChange {
        url: Some(url.clone()),
        events: Some(events.clone()),
        rate_limit_per_second: Some(Some(10)),
        ..WebhookChange::default()
    };
    let changed = update(&queue, &tenant, &hook, change, clock::now()).await;
    let expected =
        Webhook { url: url.clone(), events: events.clone(), rate_limit_per_second: Some(10), ..hook.clone() };
    assert_eq!(changed, expected);
    assert_eq!(get(&queue, &tenant, &hook).await, expected);

    let (_, event) = write(&queue, &tenant).await;
    assert!(deliveries(&queue, &tenant, &hook).await.is_empty(), "no longer subscribed to {event}");

    let unchanged = update(&queue, &tenant, &hook, WebhookChange::default(), clock::now()).await;
    assert_eq!(unchanged, expected, "an empty change changes nothing");
    let no_pace = WebhookChange { rate_limit_per_second: Some(None), ..WebhookChange::default() };
    let unpaced = update(&queue, &tenant, &hook, no_pace, clock::now()).await;
    let expected = Webhook { rate_limit_per_second: None, ..expected };
    assert_eq!(unpaced, expected, "`Some(None)` removes the pace, and only that");
    assert_eq!(get(&queue, &tenant, &hook).await, expected);

    assert_eq!(queue.storage.webhooks.get(other.id, hook.id).await.expect("get"), None, "another tenant's");
    let theirs = WebhookChange { url: Some("https://evil.example.com/".into()), ..WebhookChange::default() };
    let refused = queue.storage.webhooks.update(other.id, hook.id, &theirs, clock::now(), &trail()).await;
    assert!(matches!(refused, Err(Error::NotFound)), "{refused:?}");
    let unknown = queue.storage.webhooks.update(tenant.id, WebhookId::new(), &theirs, clock::now(), &trail()).await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
    assert_eq!(get(&queue, &tenant, &hook).await, expected, "untouched");
}

pub async fn recorded_attempts_keep_the_webhooks_health(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook(&queue, &tenant, &EventKind::ALL).await;
    let base = clock::now();

    write(&queue, &tenant).await;
    let (job, _) = claim_delivery(&queue).await;
    let health = attempt(&queue, &job, NextStep::RetryAt(in_an_hour()), base).await;
    let failing = WebhookHealth { consecutive_failures: 1, failing_since: Some(base), ..WebhookHealth::default() };
    assert_eq!(health, failing);
    assert_eq!(get(&queue, &tenant, &hook).await.health, failing);

    write(&queue, &tenant).await;
    let (job, _) = claim_delivery(&queue).await;
    let health = attempt(&queue, &job, NextStep::Dead, base + seconds(1)).await;
    let failing = WebhookHealth { consecutive_failures: 2, ..failing };
    assert_eq!(health, failing, "failing since the first failure in a row");
    assert_eq!(get(&queue, &tenant, &hook).await.health, failing);

    write(&queue, &tenant).await;
    let (job, _) = claim_delivery(&queue).await;
    let health = attempt(&queue, &job, NextStep::Delivered, base + seconds(2)).await;
    let healthy = WebhookHealth { last_success_at: Some(base + seconds(2)), ..WebhookHealth::default() };
    assert_eq!(health, healthy, "a success resets the failures");
    assert_eq!(get(&queue, &tenant, &hook).await.health, healthy);

    write(&queue, &tenant).await;
    let (job, _) = claim_delivery(&queue).await;
    let health = attempt(&queue, &job, NextStep::RetryAt(in_an_hour()), base + seconds(3)).await;
    let failing_again =
        WebhookHealth { consecutive_failures: 1, failing_since: Some(base + seconds(3)), ..healthy.clone() };
    assert_eq!(health, failing_again, "a new run of failures; the last success stays");
    let stored = get(&queue, &tenant, &hook).await;
    assert_eq!(stored.health, failing_again);
    assert!(stored.is_enabled(), "recording never disables");
}

async fn disable_failing(
    queue: &Queue,
    tenant: &Tenant,
    hook: &Webhook,
    failing: FailingLongEnough,
    reason: &str,
) -> Option<Webhook> {
    let at = failing.at;
    let events = move |w: &Webhook| vec![DomainEvent::webhook(EventKind::WebhookDisabled, w, at)];
    queue
        .storage
        .webhooks
        .disable_failing(tenant.id, hook.id, failing, reason, &events, &trail())
        .await
        .expect("disable_failing")
}

pub async fn a_webhook_failing_long_enough_is_disabled_once_with_an_event_and_notices(queue: Queue) {
    let (tenant, owner) = fixtures::tenant_with_owner(&queue.storage).await;
    let admin = fixtures::user(tenant.id, "admin", Role::Admin);
    let member = fixtures::user(tenant.id, "member", Role::Member);
    for user in [&admin, &member] {
        queue.storage.users.create(user, None, &trail(), None).await.expect("create user");
    }
    let failing = hook(&queue, &tenant, &EventKind::ALL).await;
    let watcher = hook(&queue, &tenant, &[EventKind::WebhookDisabled]).await;
    let base = clock::now();
    let first_failure = base - Duration::from_secs(7200);
    write(&queue, &tenant).await;
    let (job, retried) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::RetryAt(in_an_hour()), first_failure).await;
    write(&queue, &tenant).await;
    let (job, _) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::Dead, base - Duration::from_secs(3600)).await;

    let reason = "every attempt failed for 1 hour (2 attempts in a row)";
    let at = base;
    let too_few = FailingLongEnough { at, min_failures: 3, failing_before: base };
    assert_eq!(disable_failing(&queue, &tenant, &failing, too_few, reason).await, None, "2 failures < 3");
    let too_recent = FailingLongEnough { at, min_failures: 2, failing_before: first_failure - seconds(1) };
    assert_eq!(disable_failing(&queue, &tenant, &failing, too_recent, reason).await, None, "failing since later");
    assert!(get(&queue, &tenant, &failing).await.is_enabled(), "nothing written");
    assert!(deliveries(&queue, &tenant, &watcher).await.is_empty(), "no event");
    assert_eq!(delivery(&queue, &tenant, &failing, retried).await.state, DeliveryState::Pending);
    assert_eq!(ready(&queue).await, 1, "only the retry's job: no notice queued");

    let long_enough = FailingLongEnough { at, min_failures: 2, failing_before: first_failure };
    let disabled = disable_failing(&queue, &tenant, &failing, long_enough, reason)
        .await
        .expect("failing since `failing_before` (at or before it) with enough failures: disabled");
    let expected = WebhookHealth {
        state: WebhookState::Disabled,
        disabled_reason: Some(reason.into()),
        disabled_at: Some(at),
        last_success_at: None,
        consecutive_failures: 2,
        failing_since: Some(first_failure),
    };
    assert_eq!(disabled.health, expected);
    assert_eq!(get(&queue, &tenant, &failing).await, disabled);
    assert_eq!(delivery(&queue, &tenant, &failing, retried).await.state, DeliveryState::Skipped);
    let again = FailingLongEnough { at, min_failures: 1, failing_before: base };
    assert_eq!(disable_failing(&queue, &tenant, &failing, again, reason).await, None, "disabled already");
    assert_eq!(get(&queue, &tenant, &failing).await, disabled, "the second call changed nothing");
    assert_eq!(deliveries(&queue, &tenant, &failing).await.len(), 2, "no event to the disabled webhook itself");

    let told = deliveries(&queue, &tenant, &watcher).await;
    assert_eq!(told.len(), 1, "the other webhook hears of it once: {told:?}");
    assert_eq!(
        (told[0].event, told[0].state, told[0].attempts),
        (EventKind::WebhookDisabled, DeliveryState::Pending, 0)
    );
    let out = queue.deliveries.load(tenant.id, told[0].id).await.expect("load").expect("pending");
    let body: serde_json::Value = serde_json::from_slice(&out.body).expect("the event's JSON");
    assert_eq!(body["type"], "webhook.disabled");
    assert_eq!(body["data"]["id"], failing.id.to_string());
    assert_eq!(body["data"]["state"], "disabled", "the event is built from the disabled webhook");

    let works = claim_all(&queue).await;
    assert_eq!(delivered_to(&works), vec![told[0].id], "one job for the event's delivery: {works:?}");
    let notices: Vec<_> = works.iter().filter_map(|w| if let Work::Email(id) = w { Some(*id) } else { None }).collect();
    assert_eq!(notices.len(), 2, "one notice to each owner and admin: {works:?}");
    let mut recipients = Vec::new();
    for id in notices {
        let email = queue.storage.accounts.load_email(tenant.id, id).await.expect("load email").expect("pending");
        assert_eq!(email.purpose, Purpose::WebhookDisabled);
        assert_eq!(
            email.webhook,
            Some(WebhookNotice { id: failing.id, origin: ORIGIN.into(), reason: reason.into() }),
            "only the URL's origin"
        );
        assert!(email.live);
        assert_eq!(email.tenant.id, tenant.id);
        recipients.push(email.to.as_str().to_owned());
    }
    recipients.sort();
    assert_eq!(recipients, [admin.email.as_str(), owner.email.as_str()], "not the member");
}

pub async fn a_rotated_secret_keeps_the_previous_one_until_asked_not_to(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook_sealed(&queue, &tenant, &EventKind::ALL, b"sealed-1").await;
    let (_, event) = write(&queue, &tenant).await;
    let pending = delivery_of(&queue, &tenant, &hook, event).await.id;
    let rotate = async |tenant: &Tenant, id: WebhookId, sealed: &[u8], until: Option<OffsetDateTime>| {
        queue.storage.webhooks.rotate_secret(tenant.id, id, sealed, until, &trail()).await
    };
    let load = async || queue.deliveries.load(tenant.id, pending).await.expect("load").expect("pending");

    let until = clock::now() + Duration::from_secs(24 * 3600);
    let rotated = rotate(&tenant, hook.id, b"sealed-2", Some(until)).await.expect("rotate");
    assert_eq!(rotated, Webhook { rotation_ends_at: Some(until), ..hook.clone() });
    assert_eq!(get(&queue, &tenant, &hook).await, rotated);
    let out = load().await;
    assert_eq!(out.sealed_secret, b"sealed-2");
    assert_eq!(out.previous_secret, Some((b"sealed-1".to_vec(), until)));

    let later = until + Duration::from_secs(60);
    rotate(&tenant, hook.id, b"sealed-3", Some(later)).await.expect("rotate");
    let out = load().await;
    assert_eq!(out.sealed_secret, b"sealed-3");
    assert_eq!(out.previous_secret, Some((b"sealed-2".to_vec(), later)), "the secret just replaced");

    let rotated = rotate(&tenant, hook.id, b"sealed-4", None).await.expect("rotate");
    assert_eq!(rotated, hook, "no previous secret kept");
    assert_eq!(get(&queue, &tenant, &hook).await.rotation_ends_at, None);
    let out = load().await;
    assert_eq!((out.sealed_secret.as_slice(), out.previous_secret), (b"sealed-4".as_slice(), None));

    let theirs = rotate(&other, hook.id, b"evil", Some(until)).await;
    assert!(matches!(theirs, Err(Error::NotFound)), "{theirs:?}");
    let unknown = rotate(&tenant, WebhookId::new(), b"evil", None).await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
    let out = load().await;
    assert_eq!((out.sealed_secret.as_slice(), out.previous_secret), (b"sealed-4".as_slice(), None), "untouched");
}

pub async fn an_event_sent_to_one_webhook_makes_one_delivery_to_it_only(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let target = hook(&queue, &tenant, &[EventKind::ProjectDeleted]).await;
    let everything = hook(&queue, &tenant, &EventKind::ALL).await;
    let theirs = hook(&queue, &other, &EventKind::ALL).await;

    let ping = DomainEvent::webhook(EventKind::WebhookPing, &target, clock::now());
    let sent = queue.storage.webhooks.send_event(target.id, &ping, &trail()).await.expect("send_event");
    assert_eq!(
        (sent.tenant_id, sent.webhook_id, sent.event_id, sent.event, sent.state, sent.attempts),
        (tenant.id, target.id, ping.id, EventKind::WebhookPing, DeliveryState::Pending, 0)
    );
    assert_eq!(deliveries(&queue, &tenant, &target).await, vec![sent.clone()]);
    assert!(deliveries(&queue, &tenant, &everything).await.is_empty(), "to that webhook only");
    assert_eq!(ready(&queue).await, 1, "one job");

    let (job, claimed) = claim_delivery(&queue).await;
    assert_eq!((job.tenant, claimed), (tenant.id, sent.id));
    let out = queue.deliveries.load(tenant.id, sent.id).await.expect("load").expect("pending");
    assert_eq!(out.url, target.url);
    let body: serde_json::Value = serde_json::from_slice(&out.body).expect("the event's JSON");
    assert_eq!(body["type"], "webhook.ping");
    assert_eq!(body["id"], ping.id.to_string());
    assert_eq!(body["data"]["id"], target.id.to_string());
    queue.deliveries.discard(&job).await.expect("discard");
    assert!(claim(&queue).await.is_none(), "exactly one job");

    let ping = DomainEvent::webhook(EventKind::WebhookPing, &target, clock::now());
    let refused = queue.storage.webhooks.send_event(theirs.id, &ping, &trail()).await;
    assert!(matches!(refused, Err(Error::NotFound)), "another tenant's webhook: {refused:?}");
    let unknown = queue.storage.webhooks.send_event(WebhookId::new(), &ping, &trail()).await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
    assert!(deliveries(&queue, &other, &theirs).await.is_empty());
    assert_eq!(deliveries(&queue, &tenant, &target).await.len(), 1);
    assert_eq!(ready(&queue).await, 0, "nothing queued");
}

pub async fn a_retried_delivery_is_pending_again_with_one_job(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook(&queue, &tenant, &[EventKind::ProjectCreated]).await;
    let sibling = hook_sealed(&queue, &tenant, &[EventKind::ProjectDeleted], b"sealed").await;
    let retry = async |tenant: &Tenant, webhook: WebhookId, delivery: DeliveryId| {
        queue.storage.webhooks.retry_delivery(tenant.id, webhook, delivery, clock::now(), &trail()).await
    };

    write(&queue, &tenant).await;
    let (job, dead) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::Dead, clock::now()).await;
    let before = delivery(&queue, &tenant, &hook, dead).await;
    assert_eq!((before.state, before.attempts), (DeliveryState::Dead, 1));
    assert!(claim(&queue).await.is_none());

    let retried = retry(&tenant, hook.id, dead).await.expect("retry");
    assert_eq!(
        retried,
        Delivery { state: DeliveryState::Pending, ..before.clone() },
        "the same event, its attempts kept"
    );
    assert_eq!(delivery(&queue, &tenant, &hook, dead).await, retried);
    let (job, claimed) = claim_delivery(&queue).await;
    assert_eq!(claimed, dead);
    assert!(queue.deliveries.load(tenant.id, dead).await.expect("load").is_some());
    finish(&queue, &job).await;
    assert!(claim(&queue).await.is_none(), "claimed once");
    let done = delivery(&queue, &tenant, &hook, dead).await;
    assert_eq!((done.state, done.attempts, done.event_id), (DeliveryState::Delivered, 2, before.event_id));

    // A delivery waiting for its retry has its job brought forward, not doubled.
    write(&queue, &tenant).await;
    let (job, waiting) = claim_delivery(&queue).await;
    attempt(&queue, &job, NextStep::RetryAt(in_an_hour()), clock::now()).await;
    assert!(claim(&queue).await.is_none(), "its retry is not due yet");
    let brought = retry(&tenant, hook.id, waiting).await.expect("retry");
    assert_eq!((brought.state, brought.attempts), (DeliveryState::Pending, 1));
    let (job, claimed) = claim_delivery(&queue).await;
    assert_eq!(claimed, waiting, "due now");
    finish(&queue, &job).await;
    assert!(claim(&queue).await.is_none(), "one job, not two");
    assert_eq!(ready(&queue).await, 0);

    let of_sibling = retry(&tenant, sibling.id, dead).await;
    assert!(matches!(of_sibling, Err(Error::NotFound)), "another webhook's delivery: {of_sibling:?}");
    let of_other = retry(&other, hook.id, dead).await;
    assert!(matches!(of_other, Err(Error::NotFound)), "another tenant's: {of_other:?}");
    let unknown = retry(&tenant, hook.id, DeliveryId::new()).await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
    assert_eq!(delivery(&queue, &tenant, &hook, dead).await.state, DeliveryState::Delivered, "untouched");
    assert!(claim(&queue).await.is_none(), "nothing queued");
}

/// One webhook's deliveries in every state, made at known times around `since`.
struct Failed {
    tenant: Tenant,
    hook: Webhook,
    since: OffsetDateTime,
    /// Dead, but made before `since`.
    before: Delivery,
    /// Pending after a failed attempt, its retry due in an hour (the oldest since `since`).
    failed_pending: Delivery,
    skipped: Delivery,
    dead: Delivery,
    delivered: Delivery,
    /// Pending, never attempted (its job due now).
    never: Delivery,
}

async fn failed_deliveries(queue: &Queue) -> Failed {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = hook(queue, &tenant, &[EventKind::ProjectCreated]).await;
    let base = clock::now();
    let made = |secs: u64| base - Duration::from_secs(secs);
    // Each made and claimed in turn; its made-at time is its event's, so their ages don't follow
    // the order they were made in.
    let handle = async |age: u64, then: &str| {
        let (_, event) = write_at(queue, &tenant, made(age)).await;
        let id = delivery_of(queue, &tenant, &hook, event).await.id;
        if then != "wait" {
            let (job, claimed) = claim_delivery(queue).await;
            assert_eq!(claimed, id, "the new delivery's job");
            match then {
                "dead" => drop(attempt(queue, &job, NextStep::Dead, clock::now()).await),
                "retry" => drop(attempt(queue, &job, NextStep::RetryAt(in_an_hour()), clock::now()).await),
                "deliver" => drop(attempt(queue, &job, NextStep::Delivered, clock::now()).await),
                "skip" => queue.deliveries.skip(&job, id).await.expect("skip"),
                _ => unreachable!(),
            }
        }
        id
    };
    let before = handle(600, "dead").await;
    let failed_pending = handle(240, "retry").await;
    let skipped = handle(180, "skip").await;
    let dead = handle(120, "dead").await;
    let delivered = handle(90, "deliver").await;
    let never = handle(60, "wait").await;
    let get = async |id| delivery(queue, &tenant, &hook, id).await;
    let failed = Failed {
        since: made(300),
        before: get(before).await,
        failed_pending: get(failed_pending).await,
        skipped: get(skipped).await,
        dead: get(dead).await,
        delivered: get(delivered).await,
        never: get(never).await,
        tenant: tenant.clone(),
        hook: hook.clone(),
    };
    let states =
        [&failed.before, &failed.failed_pending, &failed.skipped, &failed.dead, &failed.delivered, &failed.never]
            .map(|d| (d.state, d.attempts));
    assert_eq!(
        states,
        [
            (DeliveryState::Dead, 1),
            (DeliveryState::Pending, 1),
            (DeliveryState::Skipped, 0),
            (DeliveryState::Dead, 1),
            (DeliveryState::Delivered, 1),
            (DeliveryState::Pending, 0),
        ]
    );
    assert_eq!(ready(queue).await, 2, "the retry's job and the new one's");
    failed
}

async fn recover(queue: &Queue, f: &Failed, since: OffsetDateTime, spacing: Duration, limit: usize) -> Recovered {
    let recovery = Recovery { since, now: clock::now(), spacing, limit };
    queue.storage.webhooks.recover(f.tenant.id, f.hook.id, &recovery, &trail()).await.expect("recover")
}

pub async fn recovery_sends_again_each_failed_delivery_since_a_time_once(queue: Queue) {
    let f = failed_deliveries(&queue).await;
    let recovered = recover(&queue, &f, f.since, Duration::ZERO, 100).await;
    assert_eq!(recovered, Recovered { deliveries: 3, next_since: None });
    for (d, state) in [
        (&f.before, DeliveryState::Dead),
        (&f.failed_pending, DeliveryState::Pending),
        (&f.skipped, DeliveryState::Pending),
        (&f.dead, DeliveryState::Pending),
        (&f.delivered, DeliveryState::Delivered),
        (&f.never, DeliveryState::Pending),
    ] {
        let now = delivery(&queue, &f.tenant, &f.hook, d.id).await;
        assert_eq!(now, Delivery { state, ..d.clone() }, "only the state changes");
    }
    let works = claim_all(&queue).await;
    let expected = sorted(vec![f.failed_pending.id, f.skipped.id, f.dead.id, f.never.id]);
    assert_eq!(delivered_to(&works), expected, "each failed one once, and the one never attempted: {works:?}");
    assert_eq!(works.len(), 4, "no other job: {works:?}");
    assert_eq!(ready(&queue).await, 0, "the failed pending one's job was moved, not doubled");

    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let recovery = Recovery { since: f.since, now: clock::now(), spacing: Duration::ZERO, limit: 100 };
    let theirs = queue.storage.webhooks.recover(other.id, f.hook.id, &recovery, &trail()).await;
    assert!(matches!(theirs, Err(Error::NotFound)), "another tenant's webhook: {theirs:?}");
    let unknown = queue.storage.webhooks.recover(f.tenant.id, WebhookId::new(), &recovery, &trail()).await;
    assert!(matches!(unknown, Err(Error::NotFound)), "{unknown:?}");
}

pub async fn recovery_goes_oldest_first_spaced_and_stops_at_its_limit(queue: Queue) {
    let f = failed_deliveries(&queue).await;
    let hour = Duration::from_secs(3600);
    let recovered = recover(&queue, &f, f.since, hour, 2).await;
    assert_eq!(
        recovered,
        Recovered { deliveries: 2, next_since: Some(f.dead.created_at) },
        "the two oldest; the first one left says where to go on"
    );
    let state = async |d: &Delivery| delivery(&queue, &f.tenant, &f.hook, d.id).await.state;
    assert_eq!(state(&f.failed_pending).await, DeliveryState::Pending);
    assert_eq!(state(&f.skipped).await, DeliveryState::Pending);
    assert_eq!(state(&f.dead).await, DeliveryState::Dead, "past the limit: untouched");
    let works = claim_all(&queue).await;
    assert_eq!(
        delivered_to(&works),
        sorted(vec![f.failed_pending.id, f.never.id]),
        "the oldest is due now, the next an hour later: {works:?}"
    );
    assert_eq!(ready(&queue).await, 1, "the skipped one's job waits its turn");

    let recovered = recover(&queue, &f, f.dead.created_at, hour, 2).await;
    assert_eq!(recovered, Recovered { deliveries: 1, next_since: None });
    assert_eq!(state(&f.dead).await, DeliveryState::Pending);
    let works = claim_all(&queue).await;
    assert_eq!(delivered_to(&works), vec![f.dead.id], "a call's first is due at its `now`: {works:?}");
    assert_eq!(ready(&queue).await, 1, "the skipped one's job still waits");
}

pub async fn pace_gives_each_attempt_the_webhooks_next_slot(queue: Queue) {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let paced = hook(&queue, &tenant, &[EventKind::ProjectCreated]).await;
    let other = hook(&queue, &tenant, &[EventKind::ProjectDeleted]).await;
    for h in [&paced, &other] {
        let change = WebhookChange { rate_limit_per_second: Some(Some(1)), ..WebhookChange::default() };
        update(&queue, &tenant, h, change, clock::now()).await;
    }
    // A minute ahead, so that a slot after it is still ahead whenever the claims look.
    let at = clock::now() + Duration::from_secs(60);
    let second = Duration::from_secs(1);
    let pace =
        async |job: &Job, delivery: DeliveryId| queue.deliveries.pace(job, delivery, at, second).await.expect("pace");
    let load =
        async |delivery: DeliveryId| queue.deliveries.load(tenant.id, delivery).await.expect("load").expect("pending");

    let (first_project, _) = write(&queue, &tenant).await;
    let (job, first) = claim_delivery(&queue).await;
    assert_eq!(pace(&job, first).await, None, "the first attempt is due at `at`");
    let out = load(first).await;
    assert_eq!((out.slot_at, out.rate_limit_per_second), (None, Some(1)));
    finish(&queue, &job).await;

    write(&queue, &tenant).await;
    let (job, second_one) = claim_delivery(&queue).await;
    assert_eq!(pace(&job, second_one).await, Some(at + second), "the next slot, one interval on");
    assert_eq!(load(second_one).await.slot_at, Some(at + second), "the delivery holds its slot");
    assert!(claim(&queue).await.is_none(), "its job waits for the slot");
    assert_eq!(ready(&queue).await, 1);

    let deleted = |p: &Project| vec![DomainEvent::project(EventKind::ProjectDeleted, p, clock::now())];
    queue.storage.projects.delete(tenant.id, first_project.id, &deleted, &trail()).await.expect("delete project");
    let (job, elsewhere) = claim_delivery(&queue).await;
    assert_eq!(delivery(&queue, &tenant, &other, elsewhere).await.webhook_id, other.id);
    assert_eq!(pace(&job, elsewhere).await, None, "another webhook's pace is its own");
    assert_eq!(load(elsewhere).await.slot_at, None);
    finish(&queue, &job).await;

    write(&queue, &tenant).await;
    let (job, third) = claim_delivery(&queue).await;
    assert_eq!(pace(&job, third).await, Some(at + 2 * second), "slots move on one interval per attempt");
    assert_eq!(load(third).await.slot_at, Some(at + 2 * second));
    assert!(claim(&queue).await.is_none(), "both paced jobs wait");
    assert_eq!(ready(&queue).await, 2);
}
