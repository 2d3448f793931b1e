//! Every list's statements, as the adapters prepare them, use their index on tables large
//! enough for the planner to care: no sequential scan, and no sort where a tenant's rows are
//! not capped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plinth_postgres::keyset::Keyset;
use plinth_postgres::lists;
use plinth_postgres::seed::{SeedPlan, seed};
use plinth_testkit::TestDatabase;
use tokio_postgres::types::ToSql;

/// How a list's rows may be ordered.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// By the index: a page reads only its own rows, however many the tenant has.
    Index,
    /// Any index, and a sort, are allowed: the tenant's rows are capped (a tenant has at most
    /// 100 webhooks), so the planner may rightly fetch them all by its key and sort them.
    Capped,
}

/// Asserts that `EXPLAIN` of `sql` with `params`, as `app` under `tenant`, uses `index`, never
/// scans the table, and sorts only when `order` allows it (which allows any index).
async fn assert_uses(
    app: &tokio_postgres::Client,
    tenant: uuid::Uuid,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    index: &str,
    order: Order,
) {
    app.batch_execute("BEGIN").await.unwrap();
    app.execute("SELECT set_config('app.current_tenant', $1, true)", &[&tenant.to_string()]).await.unwrap();
    let rows = app.query(&format!("EXPLAIN (FORMAT TEXT) {sql}"), params).await.unwrap();
    app.batch_execute("COMMIT").await.unwrap();
    let plan = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n");
    assert!(order == Order::Capped || plan.contains(index), "{sql}\nmust use {index}:\n{plan}");
    assert!(!plan.contains("Seq Scan"), "{sql}\nno sequential scan:\n{plan}");
    if order == Order::Index {
        assert!(!plan.contains("Sort"), "{sql}\nthe index gives the order, no sort:\n{plan}");
    }
}

/// Both statements of `list`, with the filter's parameters `filter` and a cursor.
async fn assert_list_uses(
    app: &tokio_postgres::Client,
    tenant: uuid::Uuid,
    list: Keyset,
    filter: &[&(dyn ToSql + Sync)],
    index: &str,
    order: Order,
) {
    let (limit, at, id) = (51_i64, time::OffsetDateTime::now_utc(), uuid::Uuid::max());
    let mut first: Vec<&(dyn ToSql + Sync)> = filter.to_vec();
    first.push(&limit);
    assert_uses(app, tenant, list.first, &first, index, order).await;
    let mut after: Vec<&(dyn ToSql + Sync)> = filter.to_vec();
    after.extend([&at as &(dyn ToSql + Sync), &id, &limit]);
    assert_uses(app, tenant, list.after, &after, index, order).await;
}

#[tokio::test]
async fn every_list_uses_its_tenant_ordered_index_at_100k_rows() {
    let db = TestDatabase::new().await;
    let plan = SeedPlan {
        tenants: 1_000,
        users_per_tenant: 20,
        projects_per_tenant: 100,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        slug_prefix: "p".into(),
    };
    let seeded = seed(&db.owner_url, &plan, |_, _| {}).await.unwrap();
    let owner = db.owner().await;
    // Webhooks and deliveries in bulk, as the owner: 20 webhooks a tenant, 100 deliveries each
    // for one webhook of every tenant.
    owner
        .batch_execute(
            "INSERT INTO webhooks (tenant_id, id, url, events, secret_sealed, created_at) \
               SELECT t.id, gen_random_uuid(), 'https://hooks.example.com/' || n, ARRAY['project.created'], \
                      '\\x00', now() - n * interval '1 second' \
               FROM tenants t, generate_series(1, 20) n; \
             INSERT INTO events (tenant_id, id, kind, payload, created_at) \
               SELECT t.id, gen_random_uuid(), 'project.created', '{}', now() FROM tenants t; \
             INSERT INTO webhook_deliveries (tenant_id, id, webhook_id, event_id, event, created_at, updated_at) \
               SELECT w.tenant_id, gen_random_uuid(), w.id, e.id, 'project.created', \
                      now() - n * interval '1 second', now() \
               FROM (SELECT DISTINCT ON (tenant_id) tenant_id, id FROM webhooks ORDER BY tenant_id, id) w \
               JOIN events e ON e.tenant_id = w.tenant_id, generate_series(1, 100) n; \
             INSERT INTO events (tenant_id, id, kind, payload, created_at) \
               SELECT t.id, gen_random_uuid(), \
                      (ARRAY['user.created', 'user.updated', 'api_key.created', 'project.created'])[1 + n % 4], \
                      '{}', now() - n * interval '1 second' \
               FROM tenants t, generate_series(1, 100) n; \
             ANALYZE",
        )
        .await
        .unwrap();
    for table in ["webhook_deliveries", "events"] {
        let rows: i64 = owner.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert!(rows >= 100_000, "{table}: {rows}");
    }

    let app = db.app().await;
    let tenant = seeded[500].id;
    let webhook: uuid::Uuid = owner
        .query_one("SELECT webhook_id FROM webhook_deliveries WHERE tenant_id = $1 LIMIT 1", &[&tenant])
        .await
        .unwrap()
        .get(0);
    assert_list_uses(&app, tenant, lists::PROJECTS, &[&tenant], "projects_list_idx", Order::Index).await;
    assert_list_uses(&app, tenant, lists::USERS, &[&tenant], "users_list_idx", Order::Index).await;
    assert_list_uses(&app, tenant, lists::WEBHOOKS, &[&tenant], "webhooks_list_idx", Order::Capped).await;
    assert_list_uses(
        &app,
        tenant,
        lists::DELIVERIES,
        &[&tenant, &webhook],
        "webhook_deliveries_list_idx",
        Order::Index,
    )
    .await;
    // One tenant with many events of each kind: the planner rightly sorts a few dozen rows, but
    // must read a large tenant's page off the index.
    owner
        .execute(
            "INSERT INTO events (tenant_id, id, kind, payload, created_at) \
               SELECT $1, gen_random_uuid(), \
                      (ARRAY['user.created', 'user.updated', 'api_key.created', 'project.created'])[1 + n % 4], \
                      '{}', now() - n * interval '1 second' \
               FROM generate_series(1, 20000) n",
            &[&tenant],
        )
        .await
        .unwrap();
    owner.batch_execute("ANALYZE events").await.unwrap();
    let since = time::OffsetDateTime::UNIX_EPOCH;
    assert_list_uses(&app, tenant, lists::EVENTS, &[&tenant, &since], "events_list_idx", Order::Index).await;
    let kind = "user.updated";
    let of_kind: [&(dyn ToSql + Sync); 3] = [&tenant, &kind, &since];
    assert_list_uses(&app, tenant, lists::EVENTS_OF_KIND, &of_kind, "events_kind_list_idx", Order::Index).await;
}
