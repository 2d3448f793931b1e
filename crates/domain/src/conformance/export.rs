//! `TenantExporter` conformance: an export is the tenant's line, then each kind by id (audit
//! entries by seq), then the `end` line; it holds its own tenant's rows only, as they were
//! when it began; a tenant has one export at a time, until its reader goes away.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Storage;
use super::fixtures;
use crate::audit::{Actor, ActorKind, AuditEntry, AuditKey, AuditTrail, Target, to_micros};
use crate::clock;
use crate::entities::{Tenant, Webhook};
use crate::error::{Conflict, Error};
use crate::events::{DomainEvent, EventKind};
use crate::export::TenantExport;
use crate::ids::WebhookId;
use crate::ports::Keyed;
use crate::values::Role;

/// Every `TenantExporter` behaviour, as named tests; the argument is a [`Storage`] expression.
#[macro_export]
macro_rules! tenant_exporter_suite {
    ($fixture:expr $(,)?) => {
        mod tenant_exporter {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                export,
                $fixture,
                an_export_is_the_tenant_then_each_kind_by_id_then_the_end,
                an_export_holds_its_own_tenants_rows_only,
                an_export_holds_the_rows_there_when_it_began,
                a_tenant_has_one_export_at_a_time_until_its_reader_goes,
                an_unknown_tenant_is_not_found,
            );
        }
    };
}

/// Projects enough to fill the export's channel many times over, and to be read in several
/// batches: an export of them waits for its reader long before it has read them all.
const MANY: usize = 2_500;

/// Starts an export of `tenant`. Errors: the port's.
async fn start(storage: &Storage, tenant: &Tenant) -> Result<TenantExport, Error> {
    let (writer, export) = TenantExport::channel();
    storage.exporter.export(tenant, writer).await.map(|()| export)
}

/// Reads the whole export: its lines, parsed (the last one checked to be `end`).
async fn read(mut export: TenantExport) -> Vec<Value> {
    let mut body = Vec::new();
    while let Some(chunk) = export.next().await {
        body.extend_from_slice(&chunk.expect("the export does not fail"));
    }
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.last().map(|l| &l["type"]), Some(&Value::from("end")), "the export ends with its end line");
    lines
}

/// The `data` of the lines of `kind`.
fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).map(|l| &l["data"]).collect()
}

/// The ids of the lines of `kind`, in their order.
fn ids(lines: &[Value], kind: &str) -> Vec<String> {
    of_kind(lines, kind).iter().map(|d| d["id"].as_str().expect("an id").to_owned()).collect()
}

/// `ids`, sorted.
fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Stores `n` projects of `tenant` with names of 200-odd characters; returns their ids.
async fn projects(storage: &Storage, tenant: &Tenant, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{i:05} {}", "x".repeat(200));
        let project = fixtures::project_at(tenant.id, &name, fixtures::ago(60));
        let written = storage.projects.insert(&project, &[], None, &AuditTrail::none(), None).await;
        assert_eq!(written.expect("insert succeeds"), Keyed::Written);
        ids.push(project.id.to_string());
    }
    ids
}

/// Whatever a line shows of `tenant`'s webhook (which has a sealed secret).
fn webhook(tenant: &Tenant) -> Webhook {
    Webhook::new(
        WebhookId::new(),
        tenant.id,
        format!("https://hooks.example.com/{}", fixtures::random_hex()),
        vec![EventKind::ProjectCreated],
        clock::truncate(fixtures::ago(30)),
    )
}

/// An entry of `tenant`'s audit log.
fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        at: to_micros(clock::now()),
        actor: Actor { kind: ActorKind::Operator, id: None, ip: None, user_agent: None },
        action: action.into(),
        target: Some(Target::new("tenant", fixtures::random_hex())),
        request_id: None,
        changes: "{}".into(),
    }
}

/// Every kind of line, by id, with its count.
pub async fn an_export_is_the_tenant_then_each_kind_by_id_then_the_end(storage: Storage) {
    let (tenant, owner) = fixtures::tenant_with_owner(&storage).await;
    let member = fixtures::user(tenant.id, "member", Role::Member);
    storage.users.create(&member, None, &AuditTrail::none(), None).await.expect("create succeeds");
    let hook = webhook(&tenant);
    let sealed = b"sealed secret bytes";
    storage.webhooks.create(&hook, sealed, &|_| Ok(()), None, &AuditTrail::none()).await.expect("create succeeds");
    let mut made = Vec::new();
    for name in ["b", "a", "c"] {
        let project = fixtures::project_at(tenant.id, name, fixtures::ago(10));
        let event = DomainEvent::project(EventKind::ProjectCreated, &project, project.created_at);
        storage.projects.insert(&project, &[event], None, &AuditTrail::none(), None).await.expect("insert succeeds");
        made.push(project.id.to_string());
    }
    let key = std::sync::Arc::new(AuditKey::derive(b"conformance"));
    let trail = AuditTrail::new(key, vec![entry("first.thing"), entry("second.thing")]);
    storage.audit.append(tenant.id, &trail).await.expect("append succeeds");

    let lines = read(start(&storage, &tenant).await.expect("the export starts")).await;
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().expect("a type")).collect();
    let mut expected = vec!["tenant", "user", "user", "project", "project", "project", "webhook"];
    expected.extend(["delivery"; 3]);
    expected.extend(["audit", "audit", "end"]);
    assert_eq!(kinds, expected);
    assert_eq!(lines[0]["data"]["id"], tenant.id.to_string());
    assert_eq!(lines[0]["data"]["slug"], tenant.slug.as_str());
    assert_eq!(ids(&lines, "user"), sorted(vec![owner.id.to_string(), member.id.to_string()]));
    assert_eq!(ids(&lines, "project"), sorted(made), "by id");
    let hooks = of_kind(&lines, "webhook");
    let fields: Vec<&String> = hooks[0].as_object().expect("an object").keys().collect();
    let expected = [
        "consecutive_failures",
        "created_at",
        "disabled_at",
        "disabled_reason",
        "events",
        "failing_since",
        "id",
        "last_success_at",
        "rate_limit_per_second",
        "rotation_ends_at",
        "state",
        "url",
    ];
    assert_eq!(sorted(fields.into_iter().cloned().collect()), expected, "no secret");
    for delivery in of_kind(&lines, "delivery") {
        assert_eq!(delivery["webhook_id"], hook.id.to_string());
        assert_eq!(delivery["state"], "pending");
    }
    let delivery_ids = ids(&lines, "delivery");
    assert_eq!(delivery_ids, sorted(delivery_ids.clone()), "by id");
    let audit = of_kind(&lines, "audit");
    assert_eq!((audit[0]["action"].as_str(), audit[1]["action"].as_str()), (Some("first.thing"), Some("second.thing")));
    assert_eq!(audit[1]["seq"].as_u64(), audit[0]["seq"].as_u64().map(|s| s + 1), "by seq");
    for user in of_kind(&lines, "user") {
        assert!(user.get("password_hash").is_none() && !user.to_string().contains("argon2"), "{user}");
    }
    let counts = &lines[lines.len() - 1]["data"]["counts"];
    let expected = serde_json::json!({"tenant": 1, "user": 2, "project": 3, "webhook": 1, "delivery": 3, "audit": 2});
    assert_eq!(counts, &expected);
}

/// Another tenant's rows never appear.
pub async fn an_export_holds_its_own_tenants_rows_only(storage: Storage) {
    let (mine, _) = fixtures::tenant_with_owner(&storage).await;
    let (theirs, their_owner) = fixtures::tenant_with_owner(&storage).await;
    let own = projects(&storage, &mine, 2).await;
    let other = projects(&storage, &theirs, 2).await;
    let lines = read(start(&storage, &mine).await.expect("the export starts")).await;
    assert_eq!(ids(&lines, "project"), sorted(own));
    let text = lines.iter().map(Value::to_string).collect::<String>();
    for id in other.iter().chain([&theirs.id.to_string(), &their_owner.id.to_string()]) {
        assert!(!text.contains(id.as_str()), "{id} of another tenant is in the export");
    }
}

/// Rows written while the export is read are not in it, nor are rows deleted meanwhile
/// missing from it: not of the kind it is reading then, nor of the kinds it reads after (which
/// a statement-level snapshot would show).
pub async fn an_export_holds_the_rows_there_when_it_began(storage: Storage) {
    let (tenant, _) = fixtures::tenant_with_owner(&storage).await;
    let before = sorted(projects(&storage, &tenant, MANY).await);
    let export = start(&storage, &tenant).await.expect("the export starts");
    // Nothing read yet: the export waits for its reader, in its projects, with most unread.
    let added = projects(&storage, &tenant, 3).await;
    let last: crate::ids::ProjectId = before[MANY - 1].parse().expect("an id");
    storage.projects.delete(tenant.id, last, &|_| Vec::new(), &AuditTrail::none()).await.expect("delete succeeds");
    let hook = webhook(&tenant);
    storage.webhooks.create(&hook, b"sealed", &|_| Ok(()), None, &AuditTrail::none()).await.expect("create succeeds");
    let key = std::sync::Arc::new(AuditKey::derive(b"conformance"));
    let trail = AuditTrail::new(key, vec![entry("written.meanwhile")]);
    storage.audit.append(tenant.id, &trail).await.expect("append succeeds");

    let lines = read(export).await;
    assert_eq!(ids(&lines, "project"), before, "the projects of when it began");
    assert!(of_kind(&lines, "webhook").is_empty(), "no webhook made after it began");
    assert!(of_kind(&lines, "audit").is_empty(), "no entry appended after it began");
    let now = read(start(&storage, &tenant).await.expect("a later export starts")).await;
    let expected: Vec<String> = before[..MANY - 1].iter().cloned().chain(added).collect();
    assert_eq!(ids(&now, "project"), sorted(expected));
    assert_eq!((of_kind(&now, "webhook").len(), of_kind(&now, "audit").len()), (1, 1));
}

/// A second export of a tenant is refused while the first is under way (another tenant's is
/// not), and allowed once the first's reader has gone.
pub async fn a_tenant_has_one_export_at_a_time_until_its_reader_goes(storage: Storage) {
    let (busy, _) = fixtures::tenant_with_owner(&storage).await;
    let (calm, _) = fixtures::tenant_with_owner(&storage).await;
    projects(&storage, &busy, MANY).await;
    let held = start(&storage, &busy).await.expect("the export starts");
    let second = start(&storage, &busy).await;
    assert!(matches!(second, Err(Error::Conflict(Conflict::ExportRunning))), "{second:?}");
    read(start(&storage, &calm).await.expect("another tenant's export starts")).await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match start(&storage, &busy).await {
            Err(Error::Conflict(Conflict::ExportRunning)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    let lines = read(again.expect("the tenant is free once the reader went away")).await;
    assert_eq!(ids(&lines, "project").len(), MANY);
}

/// A tenant the store does not hold.
pub async fn an_unknown_tenant_is_not_found(storage: Storage) {
    let result = start(&storage, &fixtures::tenant()).await;
    assert!(matches!(result, Err(Error::TenantNotFound)), "{result:?}");
}
