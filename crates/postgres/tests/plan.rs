//! The list query uses its index, on a table large enough for the planner to care.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plinth_postgres::seed::{SeedPlan, seed};
use plinth_testkit::TestDatabase;

#[tokio::test]
async fn the_projects_list_query_uses_the_tenant_ordered_index_at_100k_rows() {
    let db = TestDatabase::new().await;
    let plan = SeedPlan {
        tenants: 1_000,
        users_per_tenant: 1,
        projects_per_tenant: 100,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        slug_prefix: "p".into(),
    };
    let seeded = seed(&db.owner_url, &plan, |_, _| {}).await.unwrap();
    let owner = db.owner().await;
    let rows: i64 = owner.query_one("SELECT count(*) FROM projects", &[]).await.unwrap().get(0);
    assert!(rows >= 100_000, "{rows}");

    let app = db.app().await;
    let tenant = seeded[500].id;
    app.batch_execute("BEGIN").await.unwrap();
    app.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.to_string()]).await.unwrap();
    for (sql, params) in [
        (
            "EXPLAIN (FORMAT TEXT) SELECT tenant_id, id, name, created_at, updated_at FROM projects \
             WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 51",
            1,
        ),
        (
            "EXPLAIN (FORMAT TEXT) SELECT tenant_id, id, name, created_at, updated_at FROM projects \
             WHERE tenant_id = $1 AND (created_at, id) < (now(), $2) ORDER BY created_at DESC, id DESC LIMIT 51",
            2,
        ),
    ] {
        let id = uuid::Uuid::max();
        let rows = if params == 1 {
            app.query(sql, &[&tenant]).await.unwrap()
        } else {
            app.query(sql, &[&tenant, &id]).await.unwrap()
        };
        let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let plan = plan.join("\n");
        assert!(plan.contains("projects_list_idx"), "the list query must use the index:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "no sequential scan:\n{plan}");
        assert!(!plan.contains("Sort"), "the index gives the order; no sort:\n{plan}");
    }
    app.batch_execute("COMMIT").await.unwrap();
}
