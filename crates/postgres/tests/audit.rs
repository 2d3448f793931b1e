//! The audit log in PostgreSQL: append-only for the API role (grants, proven from the catalog
//! and by trying), and tamper-evident against the database owner (an edit, a deletion and a
//! reorder made as the owner are each reported where they are).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use plinth_domain::audit::{
    Actor, ActorKind, AuditEntry, AuditKey, AuditTrail, ChainProblem, Tamper, Verifier, to_micros,
};
use plinth_domain::conformance::fixtures;
use plinth_domain::ids::TenantId;
use plinth_domain::ports::{AuditLog, TenantRepository};
use plinth_domain::values::Role;
use plinth_postgres::{PgSettings, PgStore};
use plinth_testkit::TestDatabase;
use tokio_postgres::Client;
use uuid::Uuid;

fn key() -> Arc<AuditKey> {
    Arc::new(AuditKey::derive(b"audit tests"))
}

fn trail(action: &str) -> AuditTrail {
    let entry = AuditEntry {
        at: to_micros(plinth_domain::clock::now()),
        actor: Actor {
            kind: ActorKind::User,
            id: Some(Uuid::now_v7()),
            ip: Some("192.0.2.7".into()),
            user_agent: None,
        },
        action: action.into(),
        target: None,
        request_id: None,
        changes: r#"{"name":"as written"}"#.into(),
    };
    AuditTrail::new(key(), vec![entry])
}

/// A store, and a tenant whose chain has six entries.
async fn tenant_with_entries(db: &TestDatabase) -> (PgStore, TenantId) {
    let settings = PgSettings {
        pool_size: 2,
        pool_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(5),
        application_name: "plinth-audit-test".into(),
        direct_url: None,
        statement_cache: true,
    };
    let store = PgStore::connect(&db.app_url, &settings, Arc::new(plinth_domain::clock::SystemClock::new())).unwrap();
    let tenant = fixtures::tenant();
    let owner = fixtures::user(tenant.id, "owner", Role::Owner);
    TenantRepository::create_with_owner(&store, &tenant, &owner, None, &trail("tenant.created")).await.unwrap();
    for n in 0..5 {
        store.append(tenant.id, &trail(&format!("project.created.{n}"))).await.unwrap();
    }
    (store, tenant.id)
}

async fn first_problem(store: &PgStore, tenant: TenantId) -> Option<ChainProblem> {
    let (checkpoint, head) = store.ends(tenant).await.unwrap();
    let mut v = Verifier::new(key(), tenant, checkpoint);
    for r in store.chain(tenant, checkpoint.seq, u64::MAX, 1000).await.unwrap() {
        v.push(&r);
    }
    v.finish(head).first_problem
}

async fn as_owner(db: &TestDatabase, sql: &str, tenant: TenantId) {
    let owner: Client = db.owner().await;
    owner.execute(sql, &[tenant.as_uuid()]).await.unwrap();
}

#[tokio::test]
async fn the_api_role_may_append_and_read_but_never_change_or_delete_an_entry() {
    let db = TestDatabase::new().await;
    let (_store, tenant) = tenant_with_entries(&db).await;
    let app = db.app().await;
    let may = |table: &'static str, privilege: &'static str| {
        let app = &app;
        async move {
            let row = app.query_one("SELECT has_table_privilege(current_user, $1, $2)", &[&table, &privilege]).await;
            row.unwrap().get::<_, bool>(0)
        }
    };
    assert!(may("audit_log", "SELECT").await && may("audit_log", "INSERT").await);
    for privilege in ["UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"] {
        assert!(!may("audit_log", privilege).await, "audit_log {privilege}");
    }
    for privilege in ["DELETE", "TRUNCATE"] {
        assert!(!may("audit_heads", privilege).await, "audit_heads {privilege}");
        assert!(!may("api_keys", privilege).await, "api_keys {privilege}");
    }
    let column = |c: &'static str| {
        let app = &app;
        async move {
            let sql = "SELECT has_column_privilege(current_user, 'audit_heads', $1, 'UPDATE')";
            app.query_one(sql, &[&c]).await.unwrap().get::<_, bool>(0)
        }
    };
    assert!(column("seq").await && column("hash").await, "appends move the head");
    assert!(!column("checkpoint_seq").await && !column("checkpoint_hash").await, "only retention moves a checkpoint");

    // And trying, in the tenant's own context, fails.
    for sql in [
        "UPDATE audit_log SET action = 'nothing happened' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
        "UPDATE audit_heads SET checkpoint_seq = 5",
        "DELETE FROM audit_heads",
    ] {
        app.batch_execute("BEGIN").await.unwrap();
        app.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.to_string()]).await.unwrap();
        let refused = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}");
        app.batch_execute("ROLLBACK").await.unwrap();
    }
    let owner = db.owner().await;
    let n: i64 = owner.query_one("SELECT count(*) FROM audit_log", &[]).await.unwrap().get(0);
    assert_eq!(n, 6, "every entry is still there");
}

#[tokio::test]
async fn an_untouched_chain_verifies() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    assert_eq!(first_problem(&store, tenant).await, None);
}

#[tokio::test]
async fn an_entry_edited_by_the_owner_is_reported() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    as_owner(&db, r#"UPDATE audit_log SET changes = '{"name":"rewritten"}' WHERE tenant_id = $1 AND seq = 3"#, tenant)
        .await;
    assert_eq!(first_problem(&store, tenant).await, Some(ChainProblem { seq: 3, problem: Tamper::Edited }));

    let (store, other) = tenant_with_entries(&db).await;
    as_owner(&db, "UPDATE audit_log SET at = at - interval '1 day' WHERE tenant_id = $1 AND seq = 5", other).await;
    assert_eq!(first_problem(&store, other).await, Some(ChainProblem { seq: 5, problem: Tamper::Edited }));
}

#[tokio::test]
async fn an_entry_deleted_by_the_owner_is_reported() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    as_owner(&db, "DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 4", tenant).await;
    assert_eq!(first_problem(&store, tenant).await, Some(ChainProblem { seq: 4, problem: Tamper::Deleted }));

    let (store, other) = tenant_with_entries(&db).await;
    as_owner(&db, "DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 6", other).await;
    assert_eq!(
        first_problem(&store, other).await,
        Some(ChainProblem { seq: 6, problem: Tamper::Deleted }),
        "the newest"
    );
}

#[tokio::test]
async fn a_head_moved_back_or_an_entry_written_around_the_chain_is_reported() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    // The API role may move its chain's head (appends do), so it is the one that tries.
    let app = db.app().await;
    app.batch_execute("BEGIN").await.unwrap();
    app.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.to_string()]).await.unwrap();
    app.execute("UPDATE audit_heads SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4)", &[])
        .await
        .unwrap();
    app.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first_problem(&store, tenant).await, Some(ChainProblem { seq: 5, problem: Tamper::Inserted }));

    let (store, other) = tenant_with_entries(&db).await;
    as_owner(
        &db,
        "INSERT INTO audit_log (tenant_id, seq, at, actor_kind, action, changes, prev_hash, hash) \
         VALUES ($1, 1000, now(), 'user', 'user.deleted', '{}', '\\x00', '\\x01')",
        other,
    )
    .await;
    assert_eq!(first_problem(&store, other).await, Some(ChainProblem { seq: 1000, problem: Tamper::Edited }));
}

#[tokio::test]
async fn entries_reordered_by_the_owner_are_reported() {
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    for sql in [
        "UPDATE audit_log SET seq = 1000 WHERE tenant_id = $1 AND seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE tenant_id = $1 AND seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE tenant_id = $1 AND seq = 1000",
    ] {
        as_owner(&db, sql, tenant).await;
    }
    assert_eq!(first_problem(&store, tenant).await, Some(ChainProblem { seq: 2, problem: Tamper::Reordered }));
}

#[tokio::test]
async fn a_change_that_fails_at_commit_leaves_no_entry() {
    use plinth_domain::ports::ProjectRepository;
    let db = TestDatabase::new().await;
    let (store, tenant) = tenant_with_entries(&db).await;
    // A check PostgreSQL runs at commit, after every statement of the write (the audit entry
    // included) has succeeded.
    db.owner()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.name = 'Doomed' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$; \
             CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON projects DEFERRABLE INITIALLY DEFERRED \
             FOR EACH ROW EXECUTE FUNCTION refuse_doomed();",
        )
        .await
        .unwrap();
    let head = store.ends(tenant).await.unwrap().1;
    let doomed = fixtures::project_at(tenant, "Doomed", fixtures::ago(1));
    assert!(store.insert(&doomed, &[], None, &trail("project.created"), None).await.is_err());
    assert_eq!(store.ends(tenant).await.unwrap().1, head, "the head did not move");
    let owner = db.owner().await;
    let n: i64 = owner.query_one("SELECT count(*) FROM audit_log", &[]).await.unwrap().get(0);
    assert_eq!(n, 6, "no entry of the rolled-back change");

    let kept = fixtures::project_at(tenant, "Kept", fixtures::ago(1));
    store.insert(&kept, &[], None, &trail("project.created"), None).await.unwrap();
    assert_eq!(store.ends(tenant).await.unwrap().1.seq, 7, "the next change appends where the chain was");
    assert_eq!(first_problem(&store, tenant).await, None);
}
