//! Proofs that tenant isolation is enforced by PostgreSQL itself, connected as `plinth_app`,
//! even for SQL that forgets its `WHERE tenant_id = …`. Each would fail the day someone
//! weakens the schema, the policies or the role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plinth_testkit::TestDatabase;
use tokio_postgres::Client;
use uuid::Uuid;

/// Two tenants with a user and two projects each, written as the owner.
async fn two_tenants(db: &TestDatabase) -> (Uuid, Uuid) {
    let owner = db.owner().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, slug) in [(a, "tenant-a"), (b, "tenant-b")] {
        owner.execute("INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)", &[&id, &slug]).await.unwrap();
        owner
            .execute(
                "INSERT INTO users (tenant_id, id, email, role, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, 'x@y.z', 'owner', 'h', now(), now())",
                &[&id, &Uuid::now_v7()],
            )
            .await
            .unwrap();
        for n in ["one", "two"] {
            owner
                .execute(
                    "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) VALUES ($1, $2, $3, now(), now())",
                    &[&id, &Uuid::now_v7(), &n],
                )
                .await
                .unwrap();
        }
    }
    (a, b)
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn set_tenant(client: &Client, tenant: Uuid) {
    client.batch_execute("BEGIN").await.unwrap();
    client.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.to_string()]).await.unwrap();
}

#[tokio::test]
async fn with_no_tenant_set_a_query_sees_no_rows() {
    let db = TestDatabase::new().await;
    two_tenants(&db).await;
    let app = db.app().await;
    for table in ["tenants", "users", "projects", "events", "idempotency_keys"] {
        assert_eq!(count(&app, &format!("SELECT count(*) FROM {table}")).await, 0, "{table}");
    }
    // An empty setting (as left by a finished transaction) is "no tenant" too, never an error.
    app.batch_execute("SET app.current_tenant = ''").await.unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM projects").await, 0);
    let owner = db.owner().await;
    assert_eq!(count(&owner, "SELECT count(*) FROM projects").await, 4, "the rows do exist");
}

#[tokio::test]
async fn with_a_tenant_set_a_query_without_where_sees_only_that_tenant() {
    let db = TestDatabase::new().await;
    let (a, _) = two_tenants(&db).await;
    let app = db.app().await;
    set_tenant(&app, a).await;
    let rows = app.query("SELECT tenant_id FROM projects", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get::<_, Uuid>(0) == a));
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM tenants").await, 1);
    app.batch_execute("COMMIT").await.unwrap();
    // The setting was transaction-local: nothing carries over on a pooled connection.
    assert_eq!(count(&app, "SELECT count(*) FROM projects").await, 0);
}

#[tokio::test]
async fn writing_another_tenants_rows_fails() {
    let db = TestDatabase::new().await;
    let (a, b) = two_tenants(&db).await;
    let app = db.app().await;
    set_tenant(&app, a).await;
    let insert = app
        .execute(
            "INSERT INTO projects (tenant_id, id, name, created_at, updated_at) VALUES ($1, $2, 'x', now(), now())",
            &[&b, &Uuid::now_v7()],
        )
        .await;
    let err = insert.expect_err("an insert for another tenant must fail");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    app.batch_execute("ROLLBACK").await.unwrap();

    set_tenant(&app, a).await;
    let moved = app.execute("UPDATE projects SET tenant_id = $1", &[&b]).await;
    assert!(moved.is_err(), "moving rows to another tenant must fail");
    app.batch_execute("ROLLBACK").await.unwrap();

    set_tenant(&app, a).await;
    assert_eq!(app.execute("DELETE FROM projects WHERE tenant_id = $1", &[&b]).await.unwrap(), 0);
    assert_eq!(app.execute("UPDATE projects SET name = 'pwned' WHERE tenant_id = $1", &[&b]).await.unwrap(), 0);
    app.batch_execute("COMMIT").await.unwrap();
    let owner = db.owner().await;
    assert_eq!(count(&owner, "SELECT count(*) FROM projects WHERE name = 'pwned'").await, 0);
    assert_eq!(count(&owner, "SELECT count(*) FROM projects").await, 4);
}

#[tokio::test]
async fn the_api_role_is_not_privileged_and_owns_nothing() {
    let db = TestDatabase::new().await;
    let app = db.app().await;
    let row = app
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    let flags: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(flags, (false, false, false, false));
    let owned = count(
        &app,
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user",
    )
    .await;
    assert_eq!(owned, 0);
    assert_eq!(app.query_one("SELECT current_user::text", &[]).await.unwrap().get::<_, String>(0), "plinth_app");
    // And it can't take what it wasn't granted.
    assert!(app.batch_execute("ALTER TABLE projects DISABLE ROW LEVEL SECURITY").await.is_err());
    assert!(app.batch_execute("CREATE TABLE sneaky (id int)").await.is_err());
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_a_checked_policy_and_a_tenant_first_key() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    let tables: Vec<String> = owner
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attname = 'tenant_id' AND c.relkind = 'r' AND n.nspname = 'public' AND NOT a.attisdropped",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 4, "expected the tenant tables, found {tables:?}");
    for expected in ["users", "projects", "sessions", "refresh_tokens"] {
        assert!(tables.iter().any(|t| t == expected), "{expected} is a tenant table: {tables:?}");
    }
    for table in &tables {
        let row = owner
            .query_one("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1", &[table])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1), "{table}: RLS must be enabled and forced");
        let policies = owner
            .query("SELECT qual, with_check FROM pg_policies WHERE tablename = $1 AND schemaname = 'public'", &[table])
            .await
            .unwrap();
        assert!(!policies.is_empty(), "{table}: no policy");
        for p in &policies {
            let using: Option<String> = p.get(0);
            let check: Option<String> = p.get(1);
            for (what, expr) in [("USING", using), ("WITH CHECK", check)] {
                let expr = expr.unwrap_or_else(|| panic!("{table}: a policy without {what}"));
                assert!(
                    expr.contains("tenant_id") && expr.contains("app.current_tenant"),
                    "{table}: {what} must compare tenant_id with app.current_tenant: {expr}"
                );
            }
        }
        // Primary key and unique constraints begin with tenant_id.
        let keys = owner
            .query(
                "SELECT con.conname::text, a.attname::text FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = con.conkey[1] \
                 WHERE c.relname = $1 AND con.contype IN ('p', 'u')",
                &[table],
            )
            .await
            .unwrap();
        assert!(keys.iter().any(|k| k.get::<_, String>(0).ends_with("_pkey")), "{table}: no primary key");
        for k in &keys {
            let (name, first): (String, String) = (k.get(0), k.get(1));
            assert_eq!(first, "tenant_id", "{table}: constraint {name} must begin with tenant_id");
        }
        // Foreign keys to other tenant tables include tenant_id.
        let fks = owner
            .query(
                "SELECT con.conname::text, (SELECT array_agg(a.attname::text) FROM pg_attribute a \
                   WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey)) \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                 WHERE c.relname = $1 AND con.contype = 'f'",
                &[table],
            )
            .await
            .unwrap();
        for fk in &fks {
            let (name, cols): (String, Vec<String>) = (fk.get(0), fk.get(1));
            assert!(cols.iter().any(|c| c == "tenant_id"), "{table}: foreign key {name} must include tenant_id");
        }
    }
}

#[tokio::test]
async fn the_api_role_can_prune_expired_sessions_but_never_live_ones() {
    let db = TestDatabase::new().await;
    let (a, b) = two_tenants(&db).await;
    let owner = db.owner().await;
    for (tenant, ends) in [(a, "now() + interval '1 day'"), (b, "now() - interval '1 second'")] {
        let sql = format!(
            "INSERT INTO sessions (tenant_id, id, user_id, created_at, last_used_at, idle_expires_at, expires_at) \
             SELECT tenant_id, $2, id, now(), now(), {ends}, {ends} FROM users WHERE tenant_id = $1"
        );
        owner.execute(&sql, &[&tenant, &Uuid::now_v7()]).await.unwrap();
    }
    let app = db.app().await;
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0, "no tenant set: no session visible");
    let row = app.query_one("SELECT plinth_prune_sessions(now() + interval '100 years')", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "only the expired session goes, whatever the cutoff asked");
    assert_eq!(count(&owner, "SELECT count(*) FROM sessions").await, 1);
}

#[tokio::test]
async fn the_api_role_resolves_a_slug_without_reading_other_tenants() {
    let db = TestDatabase::new().await;
    let (a, _) = two_tenants(&db).await;
    let app = db.app().await;
    let row = app.query_one("SELECT id FROM tenant_by_slug('tenant-a')", &[]).await.unwrap();
    assert_eq!(row.get::<_, Uuid>(0), a);
    assert!(app.query_opt("SELECT id FROM tenant_by_slug('nobody')", &[]).await.unwrap().is_none());
    assert_eq!(count(&app, "SELECT count(*) FROM tenants").await, 0, "no direct read of every tenant");
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let db = TestDatabase::new().await;
    let owner = db.owner().await;
    owner.execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1", &[]).await.unwrap();
    let result = plinth_postgres::migrate::migrate(&db.owner_url, Some(plinth_testkit::APP_PASSWORD)).await;
    assert!(result.is_err(), "a diverging migration must be refused");
    let status = plinth_postgres::migrate::status(&db.owner_url).await.unwrap();
    assert!(status.iter().all(|m| m.applied), "{status:?}");
}

#[tokio::test]
async fn migrations_refuse_to_run_as_the_api_role() {
    let db = TestDatabase::new().await;
    let err = plinth_postgres::migrate::migrate(&db.app_url, None).await.expect_err("must refuse");
    assert!(err.to_string().contains("owner"), "{err}");
}
