//! The events API: every write's events listed newest first, each its envelope with the
//! entity as the API shows it; paged by cursor, filtered by type and time, refused by name when
//! a filter is bad; one tenant's only, however asked; for owners, admins and keys with
//! `webhooks:read`; and webhooks subscribe to every type but `webhook.ping`.

use std::collections::BTreeSet;

use plinth_domain::events::EventKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};
use crate::on_every_backend;

/// Webhooks to 127.0.0.1, which the tests' receivers listen on.
const LOOPBACK_OK: &[(&str, &str)] = &[("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true")];

/// GET `path` on `slug` as `token`, answered 200; its body.
async fn get(app: &TestApp, slug: &str, token: &str, path: &str) -> Value {
    let res = app.on(Method::GET, slug, path, Some(token)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.json().await.unwrap()
}

/// The `type` of each item of a page.
fn types(items: &[Value]) -> Vec<&str> {
    items.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The ids of `items`.
fn ids(items: &[Value]) -> Vec<&str> {
    items.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

/// Creates a key on `slug` with `scopes`; its JSON (`key` the secret).
async fn key(app: &TestApp, slug: &str, token: &str, scopes: &[&str]) -> Value {
    let body = json!({"name": "reader", "scopes": scopes});
    let res = app.on(Method::POST, slug, "/v1/api-keys", Some(token)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

/// Registers a webhook on `slug` for `events`.
async fn register(app: &TestApp, slug: &str, token: &str, events: &[&str]) -> reqwest::Response {
    let body = json!({"url": "http://127.0.0.1:9/hook", "events": events});
    app.on(Method::POST, slug, "/v1/webhooks", Some(token)).json(&body).send().await.unwrap()
}

on_every_backend! {
    pgbouncer too;
    async fn every_write_is_listed_newest_first_with_the_entity_as_the_api_shows_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("evented").await;
        let (member_id, _) = app.user("evented", &owner.token, "ada@evented.test", "member").await;
        let res = app.on(Method::PATCH, "evented", &format!("/v1/users/{member_id}"), Some(&owner.token))
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let admin: Value = res.json().await.unwrap();
        let created = key(&app, "evented", &owner.token, &["projects:read"]).await;
        let path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());
        let res = app.on(Method::DELETE, "evented", &path, Some(&owner.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let path = format!("/v1/users/{member_id}");
        assert_eq!(app.on(Method::DELETE, "evented", &path, Some(&owner.token)).send().await.unwrap().status(), StatusCode::NO_CONTENT);
        let project = app.project("evented", &owner.token, "Apollo").await;

        let events = app.all("evented", &owner.token, "/v1/events").await;
        assert_eq!(
            types(&events),
            ["project.created", "user.deleted", "api_key.revoked", "api_key.created", "user.updated", "user.created", "user.created"]
        );
        for e in &events {
            let fields: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(fields, BTreeSet::from(["id", "type", "created_at", "tenant_id", "data"]), "{e}");
            assert_eq!(e["tenant_id"], owner.tenant_id);
        }
        assert_eq!(events[0]["data"], project);
        assert_eq!(events[1]["data"], admin, "a removed user as they were");
        assert_eq!(events[4]["data"], admin);
        let mut key_view = created.clone();
        key_view.as_object_mut().unwrap().remove("key");
        assert_eq!(events[2]["data"], key_view, "the key as the list shows it, never its secret");
        assert_eq!(events[3]["data"], key_view);
        let users = app.all("evented", &owner.token, "/v1/users").await;
        assert_eq!(events[6]["data"], users[0], "signup's owner");
        assert_eq!(events[5]["data"]["email"], "ada@evented.test");
        assert_eq!(events[5]["data"]["role"], "member");
        let text = Value::Array(events.clone()).to_string();
        assert!(!text.contains("argon2") && !text.contains(created["key"].as_str().unwrap()), "{text}");

        // One event: its envelope as listed, and its deliveries (none: no webhook).
        let one = get(&app, "evented", &owner.token, &format!("/v1/events/{}", events[2]["id"].as_str().unwrap())).await;
        assert_eq!(one, json!({"event": events[2], "deliveries": []}));
    }

    async fn pages_follow_their_cursor_and_filter_by_type_and_time(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("paged").await.token;
        for n in 0..4 {
            app.project("paged", &owner, &format!("p{n}")).await;
            app.user("paged", &owner, &format!("u{n}@paged.test"), "member").await;
        }
        let every = app.all("paged", &owner, "/v1/events").await;
        assert_eq!(every.len(), 9);
        let mut walked = Vec::new();
        let mut page = get(&app, "paged", &owner, "/v1/events?limit=2").await;
        loop {
            walked.extend(page["items"].as_array().unwrap().iter().cloned());
            let Some(cursor) = page["next_cursor"].as_str() else { break };
            page = get(&app, "paged", &owner, &format!("/v1/events?limit=2&cursor={cursor}")).await;
        }
        assert_eq!(walked, every, "pages of two, newest first, nothing twice or left out");
        let times: Vec<&str> = every.iter().map(|e| e["created_at"].as_str().unwrap()).collect();
        let parsed: Vec<_> = times
            .iter()
            .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap())
            .collect();
        assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

        let users = get(&app, "paged", &owner, "/v1/events?type=user.created&limit=3").await;
        assert_eq!(types(users["items"].as_array().unwrap()), ["user.created"; 3]);
        let cursor = users["next_cursor"].as_str().unwrap();
        let rest = get(&app, "paged", &owner, &format!("/v1/events?type=user.created&limit=3&cursor={cursor}")).await;
        assert_eq!(types(rest["items"].as_array().unwrap()), ["user.created"; 2], "four members and the owner");
        assert!(rest["next_cursor"].is_null());

        // `since` keeps the events at or after a time: from the fourth newest on, exactly.
        let since = times[3];
        let recent = app.all("paged", &owner, &format!("/v1/events?since={}", urlencode(since))).await;
        let expected: Vec<&Value> = every.iter().zip(&parsed).filter(|(_, t)| **t >= parsed[3]).map(|(e, _)| e).collect();
        assert_eq!(recent.iter().collect::<Vec<_>>(), expected);
        assert!(recent.len() >= 4 && recent.len() < every.len(), "{}", recent.len());
        let projects = app.all("paged", &owner, &format!("/v1/events?type=project.created&since={}", urlencode(since))).await;
        assert!(projects.iter().all(|e| e["type"] == "project.created" && recent.contains(e)));
        // Any RFC 3339 time bounds the list, even one whose UTC form leaves the years 0–9999.
        for later in ["2999-01-01T00:00:00%2B02:00", "9999-12-31T23:59:59-01:00"] {
            assert_eq!(get(&app, "paged", &owner, &format!("/v1/events?since={later}")).await, json!({"items": [], "next_cursor": null}));
        }
        assert_eq!(app.all("paged", &owner, "/v1/events?since=0000-01-01T00:00:00%2B01:00").await, every);
    }

    async fn bad_filters_are_refused_by_name(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("filters").await.token;
        let res = app.on(Method::GET, "filters", "/v1/events?type=user.exploded", Some(&owner)).send().await.unwrap();
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "type", "{problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        for kind in EventKind::ALL {
            assert!(message.contains(kind.as_str()), "{} is not listed: {message}", kind.as_str());
        }
        for since in ["yesterday", "2025-01-31", "2025-01-31T09:30:00", "2025-13-01T00:00:00Z", ""] {
            let path = format!("/v1/events?since={since}");
            let res = app.on(Method::GET, "filters", &path, Some(&owner)).send().await.unwrap();
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "since", "{since}: {problem}");
        }
        let res = app.on(Method::GET, "filters", "/v1/events?type=nope&since=nope", Some(&owner)).send().await.unwrap();
        let problem = assert_problem(res, 422, "validation_failed").await;
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["type", "since"]);
        for path in ["/v1/events?limit=0", "/v1/events?cursor=nope", "/v1/events?type=a&type=b"] {
            let res = app.on(Method::GET, "filters", path, Some(&owner)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        }
        for path in ["/v1/events/not-an-id", &format!("/v1/events/{}", uuid::Uuid::now_v7())] {
            let res = app.on(Method::GET, "filters", path, Some(&owner)).send().await.unwrap();
            assert_problem(res, 404, "not_found").await;
        }
    }

    async fn another_tenant_sees_none_of_the_events_by_list_id_or_cursor(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let a = app.signup("tenant-a").await.token;
        let b = app.signup("tenant-b").await.token;
        for n in 0..3 {
            app.project("tenant-a", &a, &format!("a{n}")).await;
        }
        app.project("tenant-b", &b, "b0").await;
        let a_events = app.all("tenant-a", &a, "/v1/events").await;
        let b_events = app.all("tenant-b", &b, "/v1/events").await;
        assert_eq!((a_events.len(), b_events.len()), (4, 2));
        let a_ids: BTreeSet<&str> = ids(&a_events).into_iter().collect();
        assert!(ids(&b_events).iter().all(|id| !a_ids.contains(id)));
        for id in &a_ids {
            let res = app.on(Method::GET, "tenant-b", &format!("/v1/events/{id}"), Some(&b)).send().await.unwrap();
            assert_problem(res, 404, "not_found").await;
        }
        // A cursor from A's list, used on B's host, pages B's events only.
        let page = get(&app, "tenant-a", &a, "/v1/events?limit=1").await;
        let cursor = page["next_cursor"].as_str().unwrap();
        let from_a = get(&app, "tenant-b", &b, &format!("/v1/events?limit=100&cursor={cursor}")).await;
        let items = from_a["items"].as_array().unwrap();
        assert!(items.iter().all(|e| e["tenant_id"] == b_events[0]["tenant_id"]), "{items:?}");
        assert!(ids(items).iter().all(|id| !a_ids.contains(id)));
        // A's token on B's host is refused outright.
        let res = app.on(Method::GET, "tenant-b", "/v1/events", Some(&a)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
    }

    async fn keys_need_webhooks_read_and_members_may_not_read_events(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("scoped").await.token;
        let (_, member) = app.user("scoped", &owner, "m@scoped.test", "member").await;
        let (_, admin) = app.user("scoped", &owner, "a@scoped.test", "admin").await;
        let id = app.all("scoped", &owner, "/v1/events").await[0]["id"].as_str().unwrap().to_owned();
        let one = format!("/v1/events/{id}");
        let without = key(&app, "scoped", &owner, &["projects:read", "webhooks:write", "audit:read"]).await;
        let with = key(&app, "scoped", &owner, &["webhooks:read"]).await;
        for path in ["/v1/events", one.as_str()] {
            let res = app.on(Method::GET, "scoped", path, without["key"].as_str()).send().await.unwrap();
            let problem = assert_problem(res, 403, "insufficient_scope").await;
            assert!(problem["detail"].as_str().unwrap().contains("webhooks:read"), "{problem}");
            let res = app.on(Method::GET, "scoped", path, Some(&member)).send().await.unwrap();
            assert_problem(res, 403, "forbidden").await;
            for token in [with["key"].as_str().unwrap(), &admin, &owner] {
                assert_eq!(app.on(Method::GET, "scoped", path, Some(token)).send().await.unwrap().status(), StatusCode::OK);
            }
        }
    }

    async fn an_event_shows_one_delivery_per_webhook_that_took_it(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let owner = app.signup("delivered").await.token;
        let users: Value = register(&app, "delivered", &owner, &["user.created", "user.deleted"]).await.json().await.unwrap();
        let both: Value = register(&app, "delivered", &owner, &["user.created"]).await.json().await.unwrap();
        register(&app, "delivered", &owner, &["project.created"]).await;
        app.user("delivered", &owner, "new@delivered.test", "member").await;
        let event = &app.all("delivered", &owner, "/v1/events?type=user.created").await[0];
        let one = get(&app, "delivered", &owner, &format!("/v1/events/{}", event["id"].as_str().unwrap())).await;
        assert_eq!(&one["event"], event);
        let deliveries = one["deliveries"].as_array().unwrap();
        let hooks: BTreeSet<&str> = deliveries.iter().map(|d| d["webhook_id"].as_str().unwrap()).collect();
        assert_eq!(hooks, BTreeSet::from([users["id"].as_str().unwrap(), both["id"].as_str().unwrap()]));
        for d in deliveries {
            assert_eq!((&d["event_id"], &d["event"]), (&event["id"], &json!("user.created")), "{d}");
            assert_eq!((d["state"].as_str(), d["attempts"].as_u64()), (Some("pending"), Some(0)), "no worker runs here");
            let listed = app.all("delivered", &owner, &format!("/v1/webhooks/{}/deliveries", d["webhook_id"].as_str().unwrap())).await;
            assert!(listed.iter().any(|l| l["id"] == d["id"]), "the webhook's own list has it");
        }
    }

    async fn webhooks_subscribe_to_every_event_type_but_ping(backend: Backend) {
        let app = TestApp::spawn_with(backend, LOOPBACK_OK).await;
        let owner = app.signup("subscribed").await.token;
        let all: Vec<&str> = EventKind::subscribable().map(EventKind::as_str).collect();
        assert!(all.contains(&"invitation.accepted") && !all.contains(&"webhook.ping"), "{all:?}");
        let res = register(&app, "subscribed", &owner, &all).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        assert_eq!(created["events"], json!(all));
        let res = register(&app, "subscribed", &owner, &["user.created", "webhook.ping"]).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "events");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(all.iter().all(|k| message.contains(k)) && !message.contains("webhook.ping"), "{message}");
    }
}

/// `text` as a query value: `+` (a time's offset) percent-encoded.
fn urlencode(text: &str) -> String {
    text.replace('+', "%2B")
}
