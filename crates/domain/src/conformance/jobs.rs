//! `JobQueue` and `DeliveryStore` conformance: a queue per tenant, one job of a tenant in flight, claims that
//! serve every tenant whatever another's backlog, and a cap on each tenant's pending jobs
//! that a write either fits under whole or fails against having changed nothing.

use std::future::Future;
use std::sync::Arc;

use super::Storage;
use super::fixtures;
use crate::clock;
use crate::entities::{Tenant, Webhook};
use crate::error::Error;
use crate::events::{DomainEvent, EventKind};
use crate::ids::WebhookId;
use crate::ports::{AttemptOutcome, DeliveryStore, Job, JobQueue, NextStep, Work};
use crate::trace::{Propagation, TraceParent};

/// How many pending jobs each tenant of a [`Queue`] fixture may have.
pub const CAP: u64 = 5;

/// A job queue over its storage, with each tenant's pending jobs capped at [`CAP`]. Unlike the
/// other suites', this fixture needs a queue of its own: claims see every tenant's jobs.
#[derive(Clone)]
pub struct Queue {
    /// The repositories whose writes enqueue.
    pub storage: Storage,
    /// The queue.
    pub jobs: Arc<dyn JobQueue>,
    /// What the worker records.
    pub deliveries: Arc<dyn DeliveryStore>,
}

impl Queue {
    /// Every port from one adapter that implements them all, capped at [`CAP`] by the caller.
    pub fn shared<S>(store: Arc<S>, storage: Storage) -> Self
    where
        S: JobQueue + DeliveryStore + 'static,
    {
        Self { storage, jobs: store.clone(), deliveries: store }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// The trace context a test runs a write under (see [`propagation`]).
    static TRACED: TraceParent;
}

/// The trace propagation to give the store of a [`Queue`] fixture: the context current for a
/// write is the one the test runs it under, none outside (as the web layer's answers the
/// current span's). Without it the trace tests fail.
pub fn propagation() -> Propagation {
    Propagation::new(|| TRACED.try_with(Clone::clone).ok(), |_, _| {})
}

/// Runs `write` with `traceparent` as the current trace context.
async fn traced<F: Future>(traceparent: &str, write: F) -> F::Output {
    TRACED.scope(TraceParent::parse(traceparent).expect("a valid traceparent"), write).await
}

/// Every `JobQueue` behaviour, as named tests; the argument is a [`Queue`] expression.
#[macro_export]
macro_rules! job_queue_suite {
    ($fixture:expr $(,)?) => {
        mod job_queue {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                jobs,
                $fixture,
                a_tenant_has_one_job_in_flight_and_another_tenant_is_served_meanwhile,
                a_tenant_just_served_goes_behind_one_already_waiting,
                a_retried_job_waits_for_its_time_and_a_released_one_comes_back,
                a_write_past_the_cap_fails_whole_and_changes_nothing,
                concurrent_writes_never_take_a_tenant_past_its_cap,
                finished_jobs_make_room_under_the_cap,
                the_gauges_count_waiting_and_running_jobs,
                a_delivery_is_loaded_with_its_webhook_event_and_sealed_secret,
                an_attempt_recorded_finishes_retries_or_kills_the_delivery,
                a_discarded_job_is_gone_and_a_deleted_webhooks_delivery_loads_as_nothing,
                a_job_whose_worker_died_is_rescued_and_claimed_again,
                a_suspended_or_deleted_tenants_jobs_wait_and_go_on_when_it_is_active_again,
                a_job_carries_the_trace_context_of_its_write_through_retries_and_releases,
                a_retry_asked_for_continues_the_askers_trace_and_one_with_none_keeps_the_jobs,
            );
        }
    };
}

/// A stored tenant with one webhook subscribed to every event.
async fn hooked_tenant(queue: &Queue) -> Tenant {
    let (tenant, _) = fixtures::tenant_with_owner(&queue.storage).await;
    let hook = Webhook::new(
        WebhookId::new(),
        tenant.id,
        format!("https://hooks.example.com/{}", fixtures::random_hex()),
        EventKind::ALL.to_vec(),
        clock::now(),
    );
    queue
        .storage
        .webhooks
        .create(&hook, b"sealed", &|_| Ok(()), None, &crate::audit::AuditTrail::none())
        .await
        .expect("create webhook");
    tenant
}

/// Creates a project of `tenant`: one delivery, one job.
async fn write(queue: &Queue, tenant: &Tenant, name: &str) -> crate::error::Result<crate::entities::Project> {
    let project = fixtures::project_at(tenant.id, name, fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &project, clock::now());
    queue
        .storage
        .projects
        .insert(&project, &[event], None, &crate::audit::AuditTrail::none(), None)
        .await
        .map(|_| project)
}

async fn claim(queue: &Queue) -> Option<Job> {
    queue.jobs.claim("conformance").await.expect("claim")
}

async fn finish(queue: &Queue, job: &Job) {
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let ok = AttemptOutcome { delivered: true, status: Some(200), error: None };
    queue.deliveries.record(job, delivery, &ok, NextStep::Delivered, clock::now()).await.expect("record");
}

pub async fn a_tenant_has_one_job_in_flight_and_another_tenant_is_served_meanwhile(queue: Queue) {
    let busy = hooked_tenant(&queue).await;
    let other = hooked_tenant(&queue).await;
    for n in 0..4 {
        write(&queue, &busy, &format!("backlog {n}")).await.expect("write");
    }
    write(&queue, &other, "the other's").await.expect("write");

    let first = claim(&queue).await.expect("the oldest head is due");
    assert_eq!(first.tenant, busy.id, "the oldest job first");
    let second = claim(&queue).await.expect("another tenant's job is due");
    assert_eq!(second.tenant, other.id, "the busy tenant's backlog does not hold the other back");
    assert!(claim(&queue).await.is_none(), "each tenant has one in flight: nothing else may be claimed");

    finish(&queue, &first).await;
    let next = claim(&queue).await.expect("the busy tenant's next job");
    assert_eq!(next.tenant, busy.id);
    assert_ne!(next.id, first.id);
}

pub async fn a_tenant_just_served_goes_behind_one_already_waiting(queue: Queue) {
    let flood = hooked_tenant(&queue).await;
    let other = hooked_tenant(&queue).await;
    for n in 0..4 {
        write(&queue, &flood, &format!("backlog {n}")).await.expect("write");
    }
    write(&queue, &other, "the other's").await.expect("write");
    // One worker: each job is finished before the next claim.
    let first = claim(&queue).await.expect("due");
    assert_eq!(first.tenant, flood.id, "the oldest job first");
    finish(&queue, &first).await;
    let second = claim(&queue).await.expect("due");
    assert_eq!(second.tenant, other.id, "the flood's older backlog does not win every claim");
    finish(&queue, &second).await;
    let third = claim(&queue).await.expect("due");
    assert_eq!(third.tenant, flood.id);
}

pub async fn a_retried_job_waits_for_its_time_and_a_released_one_comes_back(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    write(&queue, &tenant, "retried").await.expect("write");
    let job = claim(&queue).await.expect("due");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let failed = AttemptOutcome { delivered: false, status: Some(500), error: Some("http 500".into()) };
    let later = clock::now() + time::Duration::hours(1);
    queue.deliveries.record(&job, delivery, &failed, NextStep::RetryAt(later), clock::now()).await.expect("record");
    assert!(claim(&queue).await.is_none(), "a retry is not due before its time");

    write(&queue, &tenant, "released").await.expect("write");
    let fresh = claim(&queue).await.expect("the new job is due though the retry is not");
    queue.jobs.release(&fresh).await.expect("release");
    let again = claim(&queue).await.expect("a released job is due again");
    assert_eq!(again.id, fresh.id);
}

pub async fn a_write_past_the_cap_fails_whole_and_changes_nothing(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    for n in 0..CAP {
        write(&queue, &tenant, &format!("fits {n}")).await.expect("under the cap");
    }
    let refused = fixtures::project_at(tenant.id, "one too many", fixtures::ago(1));
    let event = DomainEvent::project(EventKind::ProjectCreated, &refused, clock::now());
    let result = queue.storage.projects.insert(&refused, &[event], None, &crate::audit::AuditTrail::none(), None).await;
    assert!(matches!(result, Err(Error::QueueFull)), "{result:?}");
    assert!(queue.storage.projects.get(tenant.id, refused.id).await.expect("get").is_none(), "no project");
    assert_eq!(queue.jobs.stats().await.expect("stats").ready, CAP, "no job");
    let projects = queue.storage.projects.list(tenant.id, None, 100).await.expect("list");
    assert_eq!(projects.len() as u64, CAP);

    let renamed = |p: &crate::entities::Project| vec![DomainEvent::project(EventKind::ProjectUpdated, p, clock::now())];
    let name = fixtures::project_name("renamed");
    let rename = queue
        .storage
        .projects
        .rename(tenant.id, projects[0].id, &name, &renamed, &crate::audit::AuditTrail::none())
        .await;
    assert!(matches!(rename, Err(Error::QueueFull)), "{rename:?}");
    let kept = queue.storage.projects.get(tenant.id, projects[0].id).await.expect("get").expect("the project");
    assert_eq!(kept.name, projects[0].name, "the refused rename changed nothing");

    let other = hooked_tenant(&queue).await;
    write(&queue, &other, "another tenant has room").await.expect("the cap is per tenant");
}

pub async fn concurrent_writes_never_take_a_tenant_past_its_cap(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..3 * CAP {
        let (queue, tenant) = (queue.clone(), tenant.clone());
        writes.spawn(async move { write(&queue, &tenant, &format!("racer {n}")).await });
    }
    let results = writes.join_all().await;
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Error::QueueFull))), "{results:?}");
    assert_eq!(ok, CAP, "exactly the cap's worth of writes succeed");
    assert_eq!(queue.jobs.stats().await.expect("stats").ready, CAP);
    assert_eq!(queue.storage.projects.list(tenant.id, None, 100).await.expect("list").len() as u64, CAP);
}

pub async fn finished_jobs_make_room_under_the_cap(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    for n in 0..CAP {
        write(&queue, &tenant, &format!("fits {n}")).await.expect("under the cap");
    }
    assert!(matches!(write(&queue, &tenant, "full").await, Err(Error::QueueFull)));
    let job = claim(&queue).await.expect("due");
    assert!(
        matches!(write(&queue, &tenant, "still full").await, Err(Error::QueueFull)),
        "a job in flight is still pending"
    );
    finish(&queue, &job).await;
    write(&queue, &tenant, "room again").await.expect("a finished job made room");
}

pub async fn the_gauges_count_waiting_and_running_jobs(queue: Queue) {
    let empty = queue.jobs.stats().await.expect("stats");
    assert_eq!((empty.ready, empty.running, empty.oldest_ready), (0, 0, None));
    let a = hooked_tenant(&queue).await;
    let b = hooked_tenant(&queue).await;
    for n in 0..3 {
        write(&queue, &a, &format!("a {n}")).await.expect("write");
    }
    write(&queue, &b, "b").await.expect("write");
    let stats = queue.jobs.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.running), (4, 0));
    assert!(stats.oldest_ready.is_some());

    let job = claim(&queue).await.expect("due");
    let stats = queue.jobs.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.running), (3, 1));
    finish(&queue, &job).await;
    let stats = queue.jobs.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.running), (3, 0));
}

/// The deliveries of `tenant`'s webhook, newest first.
async fn deliveries_of(queue: &Queue, tenant: &Tenant) -> Vec<crate::entities::Delivery> {
    let hooks = queue.storage.webhooks.list(tenant.id, None, 10).await.expect("list webhooks");
    queue.storage.webhooks.deliveries(tenant.id, hooks[0].id, None, 100).await.expect("list deliveries")
}

pub async fn a_delivery_is_loaded_with_its_webhook_event_and_sealed_secret(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    let project = write(&queue, &tenant, "Apollo").await.expect("write");
    let job = claim(&queue).await.expect("due");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let out = queue.deliveries.load(tenant.id, delivery).await.expect("load").expect("pending");
    assert_eq!(out.delivery.id, delivery);
    assert_eq!(out.sealed_secret, b"sealed");
    assert!(out.url.starts_with("https://hooks.example.com/"), "{}", out.url);
    let body: serde_json::Value = serde_json::from_slice(&out.body).expect("the event's JSON");
    assert_eq!(body["type"], "project.created");
    assert_eq!(body["data"]["id"], project.id.to_string());
    let (other, _) = fixtures::tenant_with_owner(&queue.storage).await;
    assert!(queue.deliveries.load(other.id, delivery).await.expect("load").is_none(), "another tenant's");
}

pub async fn an_attempt_recorded_finishes_retries_or_kills_the_delivery(queue: Queue) {
    use crate::entities::DeliveryState;
    let tenant = hooked_tenant(&queue).await;
    write(&queue, &tenant, "Apollo").await.expect("write");
    let job = claim(&queue).await.expect("due");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let failed = AttemptOutcome { delivered: false, status: Some(500), error: Some("HTTP 500".into()) };
    let later = clock::now() + std::time::Duration::from_secs(3600);
    queue.deliveries.record(&job, delivery, &failed, NextStep::RetryAt(later), clock::now()).await.expect("record");
    let d = &deliveries_of(&queue, &tenant).await[0];
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 1));
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("500")), "{d:?}");
    assert!(claim(&queue).await.is_none(), "a retry waits for its time");

    write(&queue, &tenant, "Artemis").await.expect("write");
    let job = claim(&queue).await.expect("the tenant's next job is due");
    let Work::Deliver(second) = job.work else { panic!("a delivery job") };
    queue.deliveries.record(&job, second, &failed, NextStep::Dead, clock::now()).await.expect("record");
    let dead = deliveries_of(&queue, &tenant).await.into_iter().find(|d| d.id == second).expect("listed");
    assert_eq!((dead.state, dead.attempts), (DeliveryState::Dead, 1));

    write(&queue, &tenant, "Hermes").await.expect("write");
    let job = claim(&queue).await.expect("due");
    let Work::Deliver(third) = job.work else { panic!("a delivery job") };
    finish(&queue, &job).await;
    let done = deliveries_of(&queue, &tenant).await.into_iter().find(|d| d.id == third).expect("listed");
    assert_eq!((done.state, done.attempts), (DeliveryState::Delivered, 1));
    assert!(claim(&queue).await.is_none(), "finished and dead jobs are not claimed again");
    assert_eq!(queue.jobs.stats().await.expect("stats").ready, 1, "only the retry waits");
}

pub async fn a_discarded_job_is_gone_and_a_deleted_webhooks_delivery_loads_as_nothing(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    write(&queue, &tenant, "Apollo").await.expect("write");
    let job = claim(&queue).await.expect("due");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let hooks = queue.storage.webhooks.list(tenant.id, None, 10).await.expect("list");
    queue.storage.webhooks.delete(tenant.id, hooks[0].id, &crate::audit::AuditTrail::none()).await.expect("delete");
    assert!(queue.deliveries.load(tenant.id, delivery).await.expect("load").is_none());
    queue.deliveries.discard(&job).await.expect("discard");
    assert!(claim(&queue).await.is_none());
    let stats = queue.jobs.stats().await.expect("stats");
    assert_eq!((stats.ready, stats.running), (0, 0));
}

pub async fn a_job_whose_worker_died_is_rescued_and_claimed_again(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    write(&queue, &tenant, "Apollo").await.expect("write");
    let job = claim(&queue).await.expect("due");
    assert!(claim(&queue).await.is_none(), "in flight");
    assert_eq!(queue.jobs.rescue(std::time::Duration::from_secs(3600)).await.expect("rescue"), 0, "not yet");
    assert!(claim(&queue).await.is_none(), "still in flight");
    assert_eq!(queue.jobs.rescue(std::time::Duration::ZERO).await.expect("rescue"), 1);
    let again = claim(&queue).await.expect("rescued");
    assert_eq!(again.id, job.id);
}

/// A tenant that is not active has its jobs passed by (not failed, not counted as waiting
/// behind); once active again they are claimed as before. Other tenants are served meanwhile.
pub async fn a_suspended_or_deleted_tenants_jobs_wait_and_go_on_when_it_is_active_again(queue: Queue) {
    let paused = hooked_tenant(&queue).await;
    let other = hooked_tenant(&queue).await;
    write(&queue, &paused, "waits").await.expect("write");
    let now = clock::now();
    for lifecycle in [
        crate::entities::Lifecycle { suspended_at: Some(now), ..Default::default() },
        crate::entities::Lifecycle { deleted_at: Some(now), purge_after: Some(now), ..Default::default() },
    ] {
        set_lifecycle(&queue, &paused, lifecycle).await;
        write(&queue, &other, "goes").await.expect("write");
        let job = claim(&queue).await.expect("the other tenant's job");
        assert_eq!(job.tenant, other.id);
        assert!(claim(&queue).await.is_none(), "the paused tenant's job waits");
        finish(&queue, &job).await;
    }
    set_lifecycle(&queue, &paused, crate::entities::Lifecycle::default()).await;
    let job = claim(&queue).await.expect("its job goes on");
    assert_eq!(job.tenant, paused.id);
}

async fn set_lifecycle(queue: &Queue, tenant: &Tenant, lifecycle: crate::entities::Lifecycle) {
    let trail = crate::audit::AuditTrail::none();
    let now = queue.storage.tenants.find_by_slug(&tenant.slug).await.expect("find").expect("the tenant").lifecycle;
    let set = queue.storage.tenants.set_lifecycle(tenant.id, &now, &lifecycle, &[], &trail);
    assert!(set.await.expect("set lifecycle"));
}

/// Two trace contexts, as a request's span would give them.
const TRACE_A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_B: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Fails `job`'s delivery once, with the next attempt due at `at`.
async fn fail(queue: &Queue, job: &Job, at: time::OffsetDateTime) {
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let failed = AttemptOutcome { delivered: false, status: Some(500), error: Some("refused".into()) };
    queue.deliveries.record(job, delivery, &failed, NextStep::RetryAt(at), clock::now()).await.expect("record");
}

pub async fn a_job_carries_the_trace_context_of_its_write_through_retries_and_releases(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    traced(TRACE_A, write(&queue, &tenant, "traced")).await.expect("write");
    let job = claim(&queue).await.expect("the job");
    assert_eq!(job.trace, TraceParent::parse(TRACE_A), "the context of the write that enqueued it");

    fail(&queue, &job, clock::now()).await;
    let retried = claim(&queue).await.expect("the retry is due");
    assert_eq!((retried.id, &retried.trace), (job.id, &job.trace), "a retry keeps it");
    queue.jobs.release(&retried).await.expect("release");
    let released = claim(&queue).await.expect("the released job");
    assert_eq!((released.id, &released.trace), (job.id, &job.trace), "a released job keeps it");
    finish(&queue, &released).await;

    write(&queue, &tenant, "untraced").await.expect("write");
    let plain = claim(&queue).await.expect("the job");
    assert_eq!(plain.trace, None, "a write with no trace context enqueues a job with none");
}

pub async fn a_retry_asked_for_continues_the_askers_trace_and_one_with_none_keeps_the_jobs(queue: Queue) {
    let tenant = hooked_tenant(&queue).await;
    traced(TRACE_A, write(&queue, &tenant, "traced")).await.expect("write");
    let job = claim(&queue).await.expect("the job");
    let Work::Deliver(delivery) = job.work else { panic!("a delivery job") };
    let webhook = queue.deliveries.load(tenant.id, delivery).await.expect("load").expect("pending").delivery.webhook_id;
    let later = clock::now() + time::Duration::hours(1);
    let retry = || {
        let trail = crate::audit::AuditTrail::none();
        let webhooks = queue.storage.webhooks.clone();
        async move { webhooks.retry_delivery(tenant.id, webhook, delivery, clock::now(), &trail).await.expect("retry") }
    };

    fail(&queue, &job, later).await;
    traced(TRACE_B, retry()).await;
    let asked = claim(&queue).await.expect("the retry asked for is due now");
    assert_eq!(asked.id, job.id, "the waiting job is brought forward");
    assert_eq!(asked.trace, TraceParent::parse(TRACE_B), "it continues the trace of the retry's request");

    fail(&queue, &asked, later).await;
    retry().await;
    let again = claim(&queue).await.expect("due now");
    assert_eq!(again.trace, TraceParent::parse(TRACE_B), "a retry with no trace context keeps the job's");
}
