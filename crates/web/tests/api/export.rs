//! `GET /v1/tenant/export`: the owner gets every kind of line with its count and the `end`
//! line, and nothing secret; nobody else gets it; another tenant's rows never appear; one
//! export of a tenant at a time; each one audited; and a snapshot that writes made while it is
//! read do not change.

use std::sync::{Arc, Mutex};

use plinth_domain::audit::AuditTrail;
use plinth_domain::entities::Project;
use plinth_domain::ids::{ProjectId, TenantId};
use plinth_domain::ports::{Keyed, ProjectRepository};
use plinth_domain::values::ProjectName;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, assert_problem, header};
use crate::on_every_backend;

const LOOPBACK_OK: &[(&str, &str)] = &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")];

/// The kinds of lines, in the order an export writes them.
const KINDS: [&str; 7] = ["tenant", "user", "project", "webhook", "delivery", "audit", "end"];

/// Projects enough that an export of them fills every buffer between the database and a
/// client that stopped reading (the channel, the server's and the client's sockets) many
/// times over, so the export stays open while its answer is held: lines of about 380 bytes,
/// some 19 MB in all.
const MANY: usize = 50_000;

/// The lines of an export's body, parsed.
fn lines(body: &[u8]) -> Vec<Value> {
    assert_eq!(body.last(), Some(&b'\n'), "the body ends with a whole line");
    body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

/// The `data` of every line of `kind`.
fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).map(|l| &l["data"]).collect()
}

/// The ids of `items`, in their order.
fn ids<'a>(items: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    items.into_iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
}

/// Checks that `lines` is a whole export: kinds in order, one tenant line first, the `end`
/// line last with the count of each kind. Returns the counts.
fn assert_complete(lines: &[Value]) -> Value {
    let rank = |l: &Value| KINDS.iter().position(|k| l["type"] == *k).unwrap_or_else(|| panic!("a kind: {l}"));
    assert!(lines.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "kinds in order");
    assert_eq!(lines.first().map(|l| &l["type"]), Some(&json!("tenant")));
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "the end line is last");
    assert_eq!(of_kind(lines, "end").len(), 1);
    let counts = end["data"]["counts"].clone();
    for kind in &KINDS[..6] {
        assert_eq!(counts[kind], of_kind(lines, kind).len(), "the count of {kind}: {counts}");
    }
    counts
}

/// Exports `slug` as `token`'s caller, checking the answer's headers; the body.
async fn export_body(app: &TestApp, slug: &str, token: &str) -> Vec<u8> {
    let res = app.on(Method::GET, slug, "/v1/tenant/export", Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type").as_deref(), Some("application/x-ndjson"));
    assert_eq!(header(&res, "cache-control").as_deref(), Some("private, no-store"));
    let disposition = format!("attachment; filename=\"{slug}-export.ndjson\"");
    assert_eq!(header(&res, "content-disposition"), Some(disposition));
    assert_eq!(header(&res, "transfer-encoding").as_deref(), Some("chunked"), "streamed");
    res.bytes().await.unwrap().to_vec()
}

/// Exports `slug`: its lines, checked whole.
async fn export(app: &TestApp, slug: &str, token: &str) -> Vec<Value> {
    let lines = lines(&export_body(app, slug, token).await);
    assert_complete(&lines);
    lines
}

/// Starts an export of `slug` and reads its first chunk only: the export stays open (its
/// writer waits for this reader) while the answer is held.
async fn hold(app: &TestApp, slug: &str, token: &str) -> (Response, Vec<u8>) {
    let mut res = app.on(Method::GET, slug, "/v1/tenant/export", Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let first = res.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert!(first.starts_with(br#"{"type":"tenant""#), "{}", String::from_utf8_lossy(&first[..80]));
    (res, first)
}

/// Reads the rest of a held export; all its lines.
async fn finish(res: Response, mut body: Vec<u8>) -> Vec<Value> {
    body.extend_from_slice(&res.bytes().await.unwrap());
    let lines = lines(&body);
    assert_complete(&lines);
    lines
}

/// Puts projects straight into an app's store, as many as a test needs and fast: through the
/// memory adapter's port, or as PostgreSQL's owner. Their ids are below any the API makes
/// (UUIDs whose leading time is 0), so an export, by id, reads them first.
enum Seeder {
    Memory(Arc<dyn ProjectRepository>),
    Postgres,
}

/// An app on `backend`, and its seeder.
async fn seeded_app(backend: Backend) -> (TestApp, Seeder) {
    seeded_app_with(backend, &[]).await
}

/// As [`seeded_app`], with `vars` on top.
async fn seeded_app_with(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, Seeder) {
    let repository: Arc<Mutex<Option<Arc<dyn ProjectRepository>>>> = Arc::default();
    let keep = repository.clone();
    let vars: Vec<(&str, &str)> = LOOPBACK_OK.iter().copied().chain(vars.iter().copied()).collect();
    let app = TestApp::spawn_adapted(backend, &vars, move |ports| {
        *keep.lock().unwrap() = Some(ports.projects.clone());
    })
    .await;
    let seeder = match backend {
        Backend::Memory => Seeder::Memory(repository.lock().unwrap().take().unwrap()),
        Backend::Postgres | Backend::PgBouncer => Seeder::Postgres,
    };
    (app, seeder)
}

/// The id of the `i`th seeded project.
fn seeded_id(i: usize) -> Uuid {
    Uuid::from_u128(i as u128)
}

/// A seeded project's name: 200-odd characters.
fn seeded_name(i: usize) -> String {
    format!("seeded {i:06} {}", "x".repeat(190))
}

impl Seeder {
    /// Gives tenant `tenant` the projects `1..=n`.
    async fn seed(&self, app: &TestApp, tenant: &str, n: usize) {
        match self {
            Self::Memory(projects) => {
                let now = OffsetDateTime::now_utc();
                let tenant: TenantId = tenant.parse().unwrap();
                for i in 1..=n {
                    let project = Project {
                        id: ProjectId::from_uuid(seeded_id(i)),
                        tenant_id: tenant,
                        name: ProjectName::parse(&seeded_name(i)).unwrap(),
                        created_at: now,
                        updated_at: now,
                    };
                    let written = projects.insert(&project, &[], None, &AuditTrail::none(), None).await.unwrap();
                    assert_eq!(written, Keyed::Written);
                }
            }
            Self::Postgres => {
                let owner = app.db.as_ref().unwrap().owner().await;
                let tenant: Uuid = tenant.parse().unwrap();
                let n = i64::try_from(n).unwrap();
                owner
                    .execute(
                        "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) \
                         SELECT $1, lpad(to_hex(i), 32, '0')::uuid, 'seeded ' || lpad(i::text, 6, '0') || ' ' || \
                         repeat('x', 190), now(), now() FROM generate_series(1, $2::bigint) AS i",
                        &[&tenant, &n],
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

async fn register_webhook(app: &TestApp, slug: &str, token: &str) -> Value {
    let res = app
        .on(Method::POST, slug, "/v1/webhooks", Some(token))
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["project.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

/// The tenant's audit log, oldest first, as `GET /v1/audit-log` shows it.
async fn audit_log(app: &TestApp, slug: &str, token: &str) -> Vec<Value> {
    let mut entries = app.all(slug, token, "/v1/audit-log").await;
    entries.reverse();
    entries
}

/// The `tenant.exported` entries of the tenant's audit log, oldest first.
async fn exported_entries(app: &TestApp, slug: &str, token: &str) -> Vec<Value> {
    audit_log(app, slug, token).await.into_iter().filter(|e| e["action"] == "tenant.exported").collect()
}

on_every_backend! {
    async fn the_owner_gets_every_kind_of_line_with_its_count_and_nothing_secret(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let owner = app.signup("exported").await;
        app.user("exported", &owner.token, "ada@exported.test", "admin").await;
        app.user("exported", &owner.token, "grace@exported.test", "member").await;
        let webhook = register_webhook(&app, "exported", &owner.token).await;
        let secret = webhook["secret"].as_str().unwrap().to_owned();
        for name in ["Apollo", "Gemini", "Mercury"] {
            app.project("exported", &owner.token, name).await;
        }

        let body = export_body(&app, "exported", &owner.token).await;
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(!text.contains(&secret), "the webhook's secret is nowhere in the export");
        assert!(!text.contains("whsec_") && !text.contains("secret"), "nor any secret field");
        assert!(!text.contains("argon2") && !text.contains("password"), "no password or hash");
        let lines = lines(&body);
        let counts = assert_complete(&lines);
        assert_eq!(counts, json!({"tenant": 1, "user": 3, "project": 3, "webhook": 1, "delivery": 3, "audit": counts["audit"]}));

        let tenant = of_kind(&lines, "tenant")[0];
        assert_eq!((tenant["id"].as_str(), tenant["slug"].as_str()), (Some(owner.tenant_id.as_str()), Some("exported")));
        assert_eq!(tenant["plan"], "free");

        let mut listed = ids(&app.all("exported", &owner.token, "/v1/users").await);
        listed.sort();
        let users = of_kind(&lines, "user");
        assert_eq!(ids(users.iter().copied()), listed, "every user, by id");
        for user in &users {
            assert!(user["email"].is_string() && user["role"].is_string() && user["created_at"].is_string(), "{user}");
        }

        let mut projects = app.all("exported", &owner.token, "/v1/projects").await;
        projects.sort_by_key(|p| p["id"].as_str().unwrap().to_owned());
        assert_eq!(of_kind(&lines, "project"), projects.iter().collect::<Vec<_>>(), "as the API shows them, by id");

        let webhooks = of_kind(&lines, "webhook");
        assert_eq!(webhooks[0]["id"], webhook["id"]);
        assert_eq!(webhooks[0]["url"], "http://127.0.0.1:9/hook");
        assert_eq!(webhooks[0]["events"], json!(["project.created"]));
        assert!(webhooks[0]["created_at"].is_string());

        for delivery in of_kind(&lines, "delivery") {
            assert_eq!(delivery["webhook_id"], webhook["id"], "{delivery}");
            assert_eq!((delivery["event"].as_str(), delivery["state"].as_str()), (Some("project.created"), Some("pending")));
            assert!(delivery["event_id"].is_string() && delivery["attempts"] == 0 && delivery["last_error"].is_null());
        }

        // The audit log as `GET /v1/audit-log` shows it, oldest first, up to the export's own
        // entry (written once the snapshot was taken, so not in it).
        let mut log = audit_log(&app, "exported", &owner.token).await;
        assert_eq!(log.pop().map(|e| e["action"].clone()), Some(json!("tenant.exported")));
        assert_eq!(of_kind(&lines, "audit"), log.iter().collect::<Vec<_>>());
        assert!(log.len() >= 8, "signup, logins, users, webhook, projects: {}", log.len());
    }

    async fn only_the_owner_may_export_and_no_refusal_is_recorded(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("guarded").await.token;
        let (_, admin) = app.user("guarded", &owner, "ada@guarded.test", "admin").await;
        let (_, member) = app.user("guarded", &owner, "grace@guarded.test", "member").await;
        let key = app
            .on(Method::POST, "guarded", "/v1/api-keys", Some(&owner))
            .json(&json!({"name": "everything", "scopes": ["projects:read", "projects:write", "users:read",
                "users:write", "webhooks:read", "webhooks:write", "audit:read"]}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        for (who, token) in [("an admin", &admin), ("a member", &member), ("the owner's API key", &key)] {
            let res = app.on(Method::GET, "guarded", "/v1/tenant/export", Some(token)).send().await.unwrap();
            let body = assert_problem(res, 403, "forbidden").await;
            assert!(body["detail"].is_string(), "{who}: {body}");
        }
        let res = app.on(Method::GET, "guarded", "/v1/tenant/export", None).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
        let res = app.on(Method::GET, "guarded", "/v1/tenant/export", Some("not.a.token")).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        assert!(exported_entries(&app, "guarded", &owner).await.is_empty(), "a refused export is not recorded");
        export(&app, "guarded", &owner).await;
        assert_eq!(exported_entries(&app, "guarded", &owner).await.len(), 1);
    }

    async fn another_tenants_rows_never_appear(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let a = app.signup("tenant-a").await;
        let b = app.signup("tenant-b").await;
        let mut made = std::collections::HashMap::new();
        for (slug, token) in [("tenant-a", &a.token), ("tenant-b", &b.token)] {
            register_webhook(&app, slug, token).await;
            let mut projects = Vec::new();
            for i in 0..3 {
                projects.push(app.project(slug, token, &format!("{slug} project {i}")).await["id"].clone());
            }
            made.insert(slug, projects);
        }
        for (slug, me, other, them) in [("tenant-a", &a, "tenant-b", &b), ("tenant-b", &b, "tenant-a", &a)] {
            let body = export_body(&app, slug, &me.token).await;
            let text = String::from_utf8(body.clone()).unwrap();
            for theirs in [other, them.tenant_id.as_str(), them.user_id.as_str()] {
                assert!(!text.contains(theirs), "{theirs} of {other} in {slug}'s export");
            }
            for id in &made[other] {
                assert!(!text.contains(id.as_str().unwrap()), "{other}'s project {id} in {slug}'s export");
            }
            let lines = lines(&body);
            assert_complete(&lines);
            let projects: Vec<Value> = of_kind(&lines, "project").into_iter().map(|p| p["id"].clone()).collect();
            let mut own = made[slug].clone();
            own.sort_by_key(|id| id.as_str().unwrap().to_owned());
            assert_eq!(projects, own, "exactly {slug}'s projects");
            assert_eq!(of_kind(&lines, "delivery").len(), 3, "{slug}'s deliveries only");
            assert!(of_kind(&lines, "audit").iter().all(|e| e["actor"]["id"] == me.user_id), "{slug}'s own log");
        }
    }

    async fn a_second_export_of_a_tenant_waits_for_the_first_and_other_tenants_do_not(backend: Backend) {
        let (app, seeder) = seeded_app(backend).await;
        let busy = app.signup("busy").await;
        let calm = app.signup("calm").await;
        seeder.seed(&app, &busy.tenant_id, MANY).await;

        let (held, first) = hold(&app, "busy", &busy.token).await;
        let res = app.on(Method::GET, "busy", "/v1/tenant/export", Some(&busy.token)).send().await.unwrap();
        let body = assert_problem(res, 409, "export_in_progress").await;
        assert_eq!(body["detail"], "An export of this tenant is already running; try again when it ends.");
        assert_eq!(export(&app, "calm", &calm.token).await.len(), 5, "another tenant's export runs meanwhile");

        // The held export is whole once read.
        let lines = finish(held, first).await;
        assert_eq!(of_kind(&lines, "project").len(), MANY);
        assert_eq!(exported_entries(&app, "busy", &busy.token).await.len(), 1, "the refused one is not recorded");
    }

    async fn an_instance_runs_a_bounded_number_of_exports_at_once(backend: Backend) {
        let (app, seeder) = seeded_app_with(backend, &[("PLINTH_EXPORTS_PER_INSTANCE", "1")]).await;
        let first = app.signup("first").await;
        let second = app.signup("second").await;
        seeder.seed(&app, &first.tenant_id, MANY).await;
        // One export held open takes the instance's only place: another tenant's waits its turn
        // (each holds a database connection while it is read).
        let (held, body) = hold(&app, "first", &first.token).await;
        let res = app.on(Method::GET, "second", "/v1/tenant/export", Some(&second.token)).send().await.unwrap();
        assert_eq!(header(&res, "retry-after").as_deref(), Some("30"));
        assert_problem(res, 429, "rate_limited").await;
        assert_eq!(of_kind(&finish(held, body).await, "project").len(), MANY);
        // The place is free once the first has ended (its writer gone with its connection).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let res = app.on(Method::GET, "second", "/v1/tenant/export", Some(&second.token)).send().await.unwrap();
            if res.status() == StatusCode::OK {
                assert_complete(&lines(&res.bytes().await.unwrap()));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the place of an ended export is not freed: {}", res.status());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn a_client_that_goes_away_ends_its_export(backend: Backend) {
        let (app, seeder) = seeded_app(backend).await;
        let owner = app.signup("dropped").await;
        seeder.seed(&app, &owner.tenant_id, MANY).await;
        let (held, _) = hold(&app, "dropped", &owner.token).await;
        drop(held);
        // The export notices at its next send, ends, and frees its tenant for the next one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let res = loop {
            let res = app.on(Method::GET, "dropped", "/v1/tenant/export", Some(&owner.token)).send().await.unwrap();
            if res.status() != StatusCode::CONFLICT {
                break res;
            }
            assert!(std::time::Instant::now() < deadline, "the export of a client gone 10 s ago still runs");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(res.status(), StatusCode::OK);
        let lines = lines(&res.bytes().await.unwrap());
        assert_eq!(assert_complete(&lines)["project"], MANY);
    }

    async fn an_export_is_recorded_with_who_and_where_from(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("recorded").await;
        let res = app.on(Method::GET, "recorded", "/v1/tenant/export", Some(&owner.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let request_id = header(&res, "x-request-id").unwrap();
        let lines = lines(&res.bytes().await.unwrap());
        assert!(of_kind(&lines, "audit").iter().all(|e| e["action"] != "tenant.exported"), "the snapshot predates its entry");
        let entries = exported_entries(&app, "recorded", &owner.token).await;
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(entry["actor"]["kind"], "user");
        assert_eq!(entry["actor"]["id"], owner.user_id);
        assert_eq!(entry["actor"]["ip"], "127.0.0.1");
        assert_eq!(entry["target"], json!({"type": "tenant", "id": owner.tenant_id}));
        assert_eq!(entry["request_id"], request_id);
        assert_eq!(entry["changes"], json!({}));
        let res = app.on(Method::GET, "recorded", "/v1/audit-log/verify", Some(&owner.token)).send().await.unwrap();
        let verified: Value = res.json().await.unwrap();
        assert_eq!(verified["valid"], true, "the chain with the export's entry verifies: {verified}");
    }

    async fn a_snapshot_holds_what_was_there_when_it_began_whatever_is_written_while_it_is_read(backend: Backend) {
        let (app, seeder) = seeded_app(backend).await;
        let owner = app.signup("moving").await;
        seeder.seed(&app, &owner.tenant_id, MANY).await;

        let log = audit_log(&app, "moving", &owner.token).await;
        let (held, first) = hold(&app, "moving", &owner.token).await;
        // Writes while the export is read: new projects (read last, by id), the deletion of
        // the seeded project it would read last, a webhook and their audit entries (kinds it
        // reads after the projects).
        register_webhook(&app, "moving", &owner.token).await;
        let mut created = Vec::new();
        for i in 0..5 {
            created.push(app.project("moving", &owner.token, &format!("written meanwhile {i}")).await["id"].clone());
        }
        let last = ProjectId::from_uuid(seeded_id(MANY));
        let res = app.on(Method::DELETE, "moving", &format!("/v1/projects/{last}"), Some(&owner.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        // The export was still running when those writes committed.
        let res = app.on(Method::GET, "moving", "/v1/tenant/export", Some(&owner.token)).send().await.unwrap();
        assert_problem(res, 409, "export_in_progress").await;

        let lines = finish(held, first).await;
        let projects = ids(of_kind(&lines, "project"));
        let seeded: Vec<String> = (1..=MANY).map(|i| seeded_id(i).to_string()).collect();
        assert_eq!(projects, seeded, "exactly the projects there when the export began");
        assert!(of_kind(&lines, "webhook").is_empty() && of_kind(&lines, "delivery").is_empty());
        assert_eq!(of_kind(&lines, "audit"), log.iter().collect::<Vec<_>>(), "the log as it was");

        let now = export(&app, "moving", &owner.token).await;
        let projects = ids(of_kind(&now, "project"));
        assert_eq!(projects.len(), MANY - 1 + created.len(), "a later export has them");
        assert!(!projects.contains(&last.to_string()));
        assert_eq!((of_kind(&now, "webhook").len(), of_kind(&now, "delivery").len()), (1, 5));
    }
}
