//! `/v1/projects`: create, read, list (keyset pages, newest first), rename, delete; every read
//! sees the last write; nothing crosses tenants.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{TestApp, assert_problem, header};
use crate::on_every_backend;

const NOBODY: &str = "0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d";

async fn get(app: &TestApp, slug: &str, token: &str, path: &str) -> Response {
    app.on(Method::GET, slug, path, Some(token)).send().await.unwrap()
}

async fn rename(app: &TestApp, slug: &str, token: &str, id: &str, name: &str) -> Response {
    app.on(Method::PATCH, slug, &format!("/v1/projects/{id}"), Some(token))
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, slug: &str, token: &str, id: &str) -> Response {
    app.on(Method::DELETE, slug, &format!("/v1/projects/{id}"), Some(token)).send().await.unwrap()
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

on_every_backend! {
    pgbouncer too;
    async fn creating_a_project_answers_201_with_the_project_and_its_location(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let res = app
            .on(Method::POST, "acme", "/v1/projects", Some(&owner.token))
            .json(&json!({"name": "  Apollo  "}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(header(&res, "content-type").as_deref(), Some("application/json"));
        let location = header(&res, "location").unwrap();
        let project: Value = res.json().await.unwrap();
        let id = project["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(location, format!("/v1/projects/{id}"));
        assert_eq!(project["name"], "Apollo", "the name is trimmed");
        assert_eq!(project.as_object().unwrap().len(), 4, "{project}");
        let created = at(&project["created_at"]);
        assert!(created >= before && created <= OffsetDateTime::now_utc() + time::Duration::seconds(1));
        assert_eq!(project["updated_at"], project["created_at"]);
        let res = get(&app, "acme", &owner.token, &location).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(header(&res, "etag").is_some());
        assert_eq!(res.json::<Value>().await.unwrap(), project);
    }

    async fn every_role_may_create_read_list_and_rename_but_only_managers_delete(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (_, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let (_, admin) = app.user("acme", &owner.token, "ada@acme.test", "admin").await;
        let p = app.project("acme", &member, "Member's").await;
        let id = p["id"].as_str().unwrap();
        assert_eq!(get(&app, "acme", &member, &format!("/v1/projects/{id}")).await.status(), StatusCode::OK);
        assert_eq!(get(&app, "acme", &member, "/v1/projects").await.status(), StatusCode::OK);
        assert_eq!(rename(&app, "acme", &member, id, "Renamed").await.status(), StatusCode::OK);
        assert_problem(delete(&app, "acme", &member, id).await, 403, "forbidden").await;
        let still: Value = get(&app, "acme", &owner.token, &format!("/v1/projects/{id}")).await.json().await.unwrap();
        assert_eq!(still["name"], "Renamed", "a refused delete deletes nothing");
        assert_eq!(delete(&app, "acme", &admin, id).await.status(), StatusCode::NO_CONTENT);
        let q = app.project("acme", &owner.token, "Owner's").await;
        assert_eq!(
            delete(&app, "acme", &owner.token, q["id"].as_str().unwrap()).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.project_count("acme", &owner.token).await, 0);
    }

    async fn seven_projects_walked_three_at_a_time_come_newest_first_in_pages_of_3_3_1(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let mut created = Vec::new();
        for i in 0..7 {
            created.push(app.project("acme", &owner.token, &format!("p{i}")).await["id"].as_str().unwrap().to_owned());
        }
        created.reverse();
        let mut seen: Vec<String> = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/projects?limit=3&cursor={c}"),
                None => "/v1/projects?limit=3".to_owned(),
            };
            let res = get(&app, "acme", &owner.token, &path).await;
            assert_eq!(res.status(), StatusCode::OK);
            let page: Value = res.json().await.unwrap();
            sizes.push(page["items"].as_array().unwrap().len());
            seen.extend(ids(&page));
            match &page["next_cursor"] {
                Value::String(c) => cursor = Some(c.clone()),
                Value::Null => break,
                other => panic!("next_cursor is {other}"),
            }
            assert!(sizes.len() < 5, "the walk ends");
        }
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(seen, created, "newest first, no duplicates, nothing skipped");
        // The default page holds them all; `created_at` never increases down the list.
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects").await.json().await.unwrap();
        assert_eq!(ids(&page), created);
        assert_eq!(page["next_cursor"], Value::Null);
        let times: Vec<OffsetDateTime> =
            page["items"].as_array().unwrap().iter().map(|p| at(&p["created_at"])).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        // A page that ends exactly at the last item has no next cursor.
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects?limit=7").await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 7);
        assert_eq!(page["next_cursor"], Value::Null);
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects?limit=100").await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 7);
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects?limit=1").await.json().await.unwrap();
        assert_eq!(ids(&page), created[..1]);
    }

    async fn an_empty_tenant_lists_no_projects(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let other = app.signup("bravo").await;
        app.project("bravo", &other.token, "Not yours").await;
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects").await.json().await.unwrap();
        assert_eq!(page, json!({"items": [], "next_cursor": null}));
    }

    async fn a_limit_outside_1_to_100_or_a_cursor_plinth_did_not_issue_is_a_bad_request(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        for i in 0..3 {
            app.project("acme", &owner.token, &format!("p{i}")).await;
        }
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects?limit=1").await.json().await.unwrap();
        let good = page["next_cursor"].as_str().unwrap().to_owned();
        let mut other_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        other_version[0] ^= 0xff;
        let other_version = URL_SAFE_NO_PAD.encode(other_version);
        let long = "A".repeat(200);
        for query in [
            "limit=0".to_owned(),
            "limit=101".to_owned(),
            "limit=abc".to_owned(),
            "limit=-1".to_owned(),
            "limit=".to_owned(),
            "limit=1.5".to_owned(),
            "limit=99999999999999999999".to_owned(),
            "cursor=".to_owned(),
            "cursor=not-a-cursor".to_owned(),
            "cursor=%25%25%25".to_owned(),
            format!("cursor={}", &good[1..]),
            format!("cursor={good}AA"),
            format!("cursor={other_version}"),
            format!("cursor={long}"),
            format!("limit=0&cursor={good}"),
        ] {
            let res = get(&app, "acme", &owner.token, &format!("/v1/projects?{query}")).await;
            let body = assert_problem(res, 400, "bad_request").await;
            assert!(!body["detail"].as_str().unwrap().is_empty(), "{query}");
        }
        // The genuine cursor still works.
        let res = get(&app, "acme", &owner.token, &format!("/v1/projects?limit=1&cursor={good}")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    async fn renaming_a_project_answers_it_with_the_new_name_and_a_later_updated_at(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let p = app.project("acme", &owner.token, "Apollo").await;
        let id = p["id"].as_str().unwrap();
        let path = format!("/v1/projects/{id}");
        // A cached read before the write.
        assert_eq!(get(&app, "acme", &owner.token, &path).await.status(), StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let res = rename(&app, "acme", &owner.token, id, " Artemis ").await;
        assert_eq!(res.status(), StatusCode::OK);
        let renamed: Value = res.json().await.unwrap();
        assert_eq!(renamed["id"], id);
        assert_eq!(renamed["name"], "Artemis");
        assert_eq!(renamed["created_at"], p["created_at"]);
        assert!(at(&renamed["updated_at"]) >= at(&renamed["created_at"]));
        assert!(at(&renamed["updated_at"]) > at(&p["updated_at"]), "{renamed}");
        let read: Value = get(&app, "acme", &owner.token, &path).await.json().await.unwrap();
        assert_eq!(read, renamed, "the next read sees the write");
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects").await.json().await.unwrap();
        assert_eq!(page["items"][0], renamed);
    }

    async fn invalid_names_are_refused_naming_the_field_and_change_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let p = app.project("acme", &owner.token, "Apollo").await;
        let id = p["id"].as_str().unwrap();
        for body in [
            json!({"name": ""}),
            json!({"name": "   "}),
            json!({"name": "x".repeat(256)}),
            json!({"name": format!(" {} ", "é".repeat(256))}),
            json!({"name": "a\u{0}b"}),
            json!({"name": 42}),
            json!({"name": null}),
            json!({"name": ["Apollo"]}),
        ] {
            let res =
                app.on(Method::POST, "acme", "/v1/projects", Some(&owner.token)).json(&body).send().await.unwrap();
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "name", "{body} -> {problem}");
            assert!(problem["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
            let res = app
                .on(Method::PATCH, "acme", &format!("/v1/projects/{id}"), Some(&owner.token))
                .json(&body)
                .send()
                .await
                .unwrap();
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "name", "{body} -> {problem}");
        }
        let res =
            app.on(Method::POST, "acme", "/v1/projects", Some(&owner.token)).json(&json!({})).send().await.unwrap();
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("name"), "{problem}");
        assert_eq!(app.project_count("acme", &owner.token).await, 1);
        let read: Value = get(&app, "acme", &owner.token, &format!("/v1/projects/{id}")).await.json().await.unwrap();
        assert_eq!(read, p);
        // 255 characters after trimming is a name.
        let long = format!("  {}  ", "é".repeat(255));
        let created = app.project("acme", &owner.token, &long).await;
        assert_eq!(created["name"].as_str().unwrap().chars().count(), 255);
    }

    async fn a_deleted_project_is_gone_for_every_later_request(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let keep = app.project("acme", &owner.token, "Keep").await;
        let p = app.project("acme", &owner.token, "Doomed").await;
        let id = p["id"].as_str().unwrap();
        let path = format!("/v1/projects/{id}");
        assert_eq!(get(&app, "acme", &owner.token, &path).await.status(), StatusCode::OK);
        assert_eq!(get(&app, "acme", &owner.token, "/v1/projects").await.status(), StatusCode::OK);
        let res = delete(&app, "acme", &owner.token, id).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.bytes().await.unwrap().is_empty());
        assert_problem(get(&app, "acme", &owner.token, &path).await, 404, "not_found").await;
        assert_problem(delete(&app, "acme", &owner.token, id).await, 404, "not_found").await;
        assert_problem(rename(&app, "acme", &owner.token, id, "Back").await, 404, "not_found").await;
        let page: Value = get(&app, "acme", &owner.token, "/v1/projects").await.json().await.unwrap();
        assert_eq!(ids(&page), [keep["id"].as_str().unwrap()]);
    }

    async fn another_tenants_project_and_a_malformed_id_are_not_found_and_stay_untouched(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let acme = app.signup("acme").await;
        let bravo = app.signup("bravo").await;
        let theirs = app.project("bravo", &bravo.token, "Bravo's secret").await;
        let their_id = theirs["id"].as_str().unwrap();
        for id in [their_id, NOBODY, "not-an-id", "0190f5c26a4e7d3a8b1c3e2f4a5b6c7d", "%27%20OR%201=1"] {
            let path = format!("/v1/projects/{id}");
            let body = assert_problem(get(&app, "acme", &acme.token, &path).await, 404, "not_found").await;
            assert!(!body.to_string().contains("secret"), "{body}");
            assert_problem(rename(&app, "acme", &acme.token, id, "Mine now").await, 404, "not_found").await;
            assert_problem(delete(&app, "acme", &acme.token, id).await, 404, "not_found").await;
        }
        let page: Value = get(&app, "acme", &acme.token, "/v1/projects").await.json().await.unwrap();
        assert_eq!(page["items"], json!([]));
        let read: Value =
            get(&app, "bravo", &bravo.token, &format!("/v1/projects/{their_id}")).await.json().await.unwrap();
        assert_eq!(read, theirs);
    }

    async fn a_write_is_visible_to_the_next_read_even_after_a_cached_read(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let first = get(&app, "acme", &owner.token, "/v1/projects").await;
        let etag = header(&first, "etag").unwrap();
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["items"], json!([]));
        // Served again, from the cache.
        let again = get(&app, "acme", &owner.token, "/v1/projects").await;
        assert_eq!(header(&again, "etag").unwrap(), etag);
        let p = app.project("acme", &owner.token, "Fresh").await;
        let res = get(&app, "acme", &owner.token, "/v1/projects").await;
        assert_ne!(header(&res, "etag").unwrap(), etag);
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["items"], json!([p]));
        // An If-None-Match of the stale list gets the new list, not a 304.
        let res = app
            .on(Method::GET, "acme", "/v1/projects", Some(&owner.token))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // Another member of the tenant sees it too.
        let (_, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let page: Value = get(&app, "acme", &member, "/v1/projects").await.json().await.unwrap();
        assert_eq!(page["items"], json!([p]));
    }
}
