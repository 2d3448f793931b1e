//! `/v1/users`: owners and admins manage users; admins can't touch owners; nobody removes or
//! demotes the last owner.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, header};
use crate::on_every_backend;

const NOBODY: &str = "0190f5c2-6a4e-7d3a-8b1c-3e2f4a5b6c7d";

async fn create(app: &TestApp, token: &str, body: Value) -> Response {
    app.on(Method::POST, "acme", "/v1/users", Some(token)).json(&body).send().await.unwrap()
}

async fn patch(app: &TestApp, slug: &str, token: &str, id: &str, role: &str) -> Response {
    app.on(Method::PATCH, slug, &format!("/v1/users/{id}"), Some(token))
        .json(&json!({"role": role}))
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, slug: &str, token: &str, id: &str) -> Response {
    app.on(Method::DELETE, slug, &format!("/v1/users/{id}"), Some(token)).send().await.unwrap()
}

/// The users of `acme` as `(email, role)`, newest first.
async fn roster(app: &TestApp, token: &str) -> Vec<(String, String)> {
    app.all("acme", token, "/v1/users")
        .await
        .iter()
        .map(|u| (u["email"].as_str().unwrap().to_owned(), u["role"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(e, r)| ((*e).to_owned(), (*r).to_owned())).collect()
}

on_every_backend! {
    async fn an_owner_adds_users_of_every_role_and_lists_them_newest_first(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let mut ids = vec![owner.user_id.clone()];
        for (email, role) in [("ada@acme.test", "admin"), ("mia@acme.test", "member"), ("otto@acme.test", "owner")] {
            let res = create(&app, &owner.token, json!({"email": email, "password": PASSWORD, "role": role})).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            let user: Value = res.json().await.unwrap();
            let id = user["id"].as_str().unwrap().to_owned();
            assert_eq!(user, json!({"id": id, "email": email, "role": role, "email_verified": false}), "no password, no hash");
            ids.push(id);
            app.login("acme", email).await;
        }
        let res = app.on(Method::GET, "acme", "/v1/users", Some(&owner.token)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(header(&res, "etag").is_some());
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["next_cursor"], Value::Null);
        let listed: Vec<&str> = page["items"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
        ids.reverse();
        assert_eq!(listed, ids, "newest first");
        assert!(!page.to_string().contains("argon2") && !page.to_string().contains("password"));
    }

    async fn the_users_list_is_paged_with_cursors(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        for i in 0..4 {
            let res = create(
                &app,
                &owner.token,
                json!({"email": format!("u{i}@acme.test"), "password": PASSWORD, "role": "member"}),
            )
            .await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
        let mut seen = Vec::new();
        let mut url = "/v1/users?limit=2".to_owned();
        let mut sizes = Vec::new();
        loop {
            let page: Value =
                app.on(Method::GET, "acme", &url, Some(&owner.token)).send().await.unwrap().json().await.unwrap();
            let items = page["items"].as_array().unwrap();
            sizes.push(items.len());
            seen.extend(items.iter().map(|u| u["email"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/v1/users?limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(seen, ["u3@acme.test", "u2@acme.test", "u1@acme.test", "u0@acme.test", "owner@acme.test"]);
        for bad in ["limit=0", "limit=101", "limit=abc", "cursor=bm90LWEtY3Vyc29y"] {
            let res =
                app.on(Method::GET, "acme", &format!("/v1/users?{bad}"), Some(&owner.token)).send().await.unwrap();
            assert_problem(res, 400, "bad_request").await;
        }
    }

    async fn an_email_taken_in_the_tenant_is_a_conflict_whatever_its_case(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        app.signup("bravo").await;
        let res =
            create(&app, &owner.token, json!({"email": "ada@acme.test", "password": PASSWORD, "role": "member"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        for email in ["ada@acme.test", "ADA@Acme.Test", "owner@acme.test"] {
            let res =
                create(&app, &owner.token, json!({"email": email, "password": "another password!", "role": "admin"}))
                    .await;
            let body = assert_problem(res, 409, "conflict").await;
            assert!(!body.to_string().to_lowercase().contains("constraint"), "{body}");
        }
        // Another tenant's owner's address is free here.
        let res =
            create(&app, &owner.token, json!({"email": "owner@bravo.test", "password": PASSWORD, "role": "member"}))
                .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(
            roster(&app, &owner.token).await,
            pairs(&[("owner@bravo.test", "member"), ("ada@acme.test", "member"), ("owner@acme.test", "owner"),])
        );
        // The first Ada's password still signs her in; the refused one does not.
        app.login("acme", "ada@acme.test").await;
    }

    async fn invalid_users_are_refused_naming_the_field_and_nothing_is_created(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        for (body, field) in [
            (json!({"email": "not-an-email", "password": PASSWORD, "role": "member"}), "email"),
            (json!({"email": "a@b@acme.test", "password": PASSWORD, "role": "member"}), "email"),
            (json!({"email": "ada@acme.test", "password": "too short", "role": "member"}), "password"),
            (json!({"email": "ada@acme.test", "password": "x".repeat(257), "role": "member"}), "password"),
            (json!({"email": "ada@acme.test", "password": PASSWORD, "role": "superuser"}), "role"),
            (json!({"email": "ada@acme.test", "password": PASSWORD, "role": "Owner"}), "role"),
            (json!({"email": "ada@acme.test", "password": PASSWORD, "role": 1}), "role"),
            (json!({"email": ["ada@acme.test"], "password": PASSWORD, "role": "member"}), "email"),
        ] {
            let res = create(&app, &owner.token, body.clone()).await;
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], field, "{body} -> {problem}");
        }
        assert_eq!(app.user_count("acme", &owner.token).await, 1);
        let res = app
            .on(Method::POST, "acme", "/v1/auth/login", None)
            .json(&json!({"email": "ada@acme.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_credentials").await;
        // An unknown role is refused on a change too.
        let res = patch(&app, "acme", &owner.token, &owner.user_id, "root").await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "role");
    }

    async fn a_member_may_not_manage_users(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (peer, _) = app.user("acme", &owner.token, "pat@acme.test", "member").await;
        let (_, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let res = app.on(Method::GET, "acme", "/v1/users", Some(&member)).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        let res =
            create(&app, &member, json!({"email": "eve@acme.test", "password": PASSWORD, "role": "member"})).await;
        assert_problem(res, 403, "forbidden").await;
        assert_problem(patch(&app, "acme", &member, &peer, "admin").await, 403, "forbidden").await;
        assert_problem(delete(&app, "acme", &member, &peer).await, 403, "forbidden").await;
        assert_problem(delete(&app, "acme", &member, &owner.user_id).await, 403, "forbidden").await;
        assert_eq!(
            roster(&app, &owner.token).await,
            pairs(&[("mia@acme.test", "member"), ("pat@acme.test", "member"), ("owner@acme.test", "owner"),])
        );
    }

    async fn an_admin_manages_non_owners_but_can_neither_make_nor_touch_an_owner(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (_, admin) = app.user("acme", &owner.token, "ada@acme.test", "admin").await;
        let res = create(&app, &admin, json!({"email": "otto@acme.test", "password": PASSWORD, "role": "owner"})).await;
        assert_problem(res, 403, "forbidden").await;
        let res = create(&app, &admin, json!({"email": "mia@acme.test", "password": PASSWORD, "role": "member"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let mia = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_problem(patch(&app, "acme", &admin, &mia, "owner").await, 403, "forbidden").await;
        assert_problem(patch(&app, "acme", &admin, &owner.user_id, "member").await, 403, "forbidden").await;
        assert_problem(patch(&app, "acme", &admin, &owner.user_id, "admin").await, 403, "forbidden").await;
        assert_problem(delete(&app, "acme", &admin, &owner.user_id).await, 403, "forbidden").await;
        // The owner is untouched and their token still works.
        assert_eq!(
            app.on(Method::GET, "acme", "/v1/me", Some(&owner.token)).send().await.unwrap().status(),
            StatusCode::OK
        );
        // What an admin may do: list, promote a member to admin, delete a member.
        assert_eq!(
            app.on(Method::GET, "acme", "/v1/users", Some(&admin)).send().await.unwrap().status(),
            StatusCode::OK
        );
        let res = patch(&app, "acme", &admin, &mia, "admin").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"id": mia, "email": "mia@acme.test", "role": "admin", "email_verified": false}));
        assert_eq!(delete(&app, "acme", &admin, &mia).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            roster(&app, &owner.token).await,
            pairs(&[("ada@acme.test", "admin"), ("owner@acme.test", "owner")])
        );
    }

    async fn the_last_owner_can_be_neither_demoted_nor_deleted(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        for role in ["admin", "member"] {
            let body =
                assert_problem(patch(&app, "acme", &owner.token, &owner.user_id, role).await, 409, "conflict").await;
            assert!(body["detail"].as_str().unwrap().contains("owner"), "{body}");
        }
        assert_problem(delete(&app, "acme", &owner.token, &owner.user_id).await, 409, "conflict").await;
        assert_eq!(roster(&app, &owner.token).await, pairs(&[("owner@acme.test", "owner")]));
        // Keeping the role is not a demotion.
        assert_eq!(patch(&app, "acme", &owner.token, &owner.user_id, "owner").await.status(), StatusCode::OK);
    }

    async fn with_a_second_owner_the_first_may_step_down_and_then_the_second_is_the_last(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let first = app.signup("acme").await;
        let (ada_id, _) = app.user("acme", &first.token, "ada@acme.test", "admin").await;
        let res = patch(&app, "acme", &first.token, &ada_id, "owner").await;
        assert_eq!(res.status(), StatusCode::OK);
        let ada = app.login("acme", "ada@acme.test").await;
        let res = patch(&app, "acme", &first.token, &first.user_id, "member").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["role"], "member");
        // Ada is now the last owner.
        assert_problem(patch(&app, "acme", &ada, &ada_id, "admin").await, 409, "conflict").await;
        assert_problem(delete(&app, "acme", &ada, &ada_id).await, 409, "conflict").await;
        assert_eq!(delete(&app, "acme", &ada, &first.user_id).await.status(), StatusCode::NO_CONTENT);
        assert_eq!(roster(&app, &ada).await, pairs(&[("ada@acme.test", "owner")]));
    }

    async fn a_deleted_users_token_and_password_stop_working_at_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (id, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        // Warm whatever caches the token's check.
        assert_eq!(app.on(Method::GET, "acme", "/v1/me", Some(&member)).send().await.unwrap().status(), StatusCode::OK);
        let res = delete(&app, "acme", &owner.token, &id).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.bytes().await.unwrap().is_empty());
        let res = app.on(Method::GET, "acme", "/v1/projects", Some(&member)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        let res = app
            .on(Method::POST, "acme", "/v1/auth/login", None)
            .json(&json!({"email": "mia@acme.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 401, "invalid_credentials").await;
        assert_problem(delete(&app, "acme", &owner.token, &id).await, 404, "not_found").await;
        assert_problem(patch(&app, "acme", &owner.token, &id, "admin").await, 404, "not_found").await;
        // The address is free again.
        let res =
            create(&app, &owner.token, json!({"email": "mia@acme.test", "password": PASSWORD, "role": "member"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    async fn a_role_changed_and_changed_back_does_not_revive_old_tokens(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (id, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        let list = |token: String| {
            let app = &app;
            async move { app.on(Method::GET, "acme", "/v1/projects", Some(&token)).send().await.unwrap() }
        };
        assert_eq!(list(member.clone()).await.status(), StatusCode::OK);
        assert_eq!(patch(&app, "acme", &owner.token, &id, "admin").await.status(), StatusCode::OK);
        assert_eq!(patch(&app, "acme", &owner.token, &id, "member").await.status(), StatusCode::OK);
        // Member again, as the old token says, but the token predates both changes.
        assert_problem(list(member).await, 401, "invalid_token").await;
        let fresh = app.login("acme", "mia@acme.test").await;
        assert_eq!(list(fresh.clone()).await.status(), StatusCode::OK);
        // Setting the role it already has changes nothing: the fresh token keeps working.
        assert_eq!(patch(&app, "acme", &owner.token, &id, "member").await.status(), StatusCode::OK);
        assert_eq!(list(fresh).await.status(), StatusCode::OK);
    }

    async fn a_token_stops_working_at_once_when_its_users_role_changes(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let owner = app.signup("acme").await;
        let (id, member) = app.user("acme", &owner.token, "mia@acme.test", "member").await;
        assert_eq!(
            app.on(Method::GET, "acme", "/v1/projects", Some(&member)).send().await.unwrap().status(),
            StatusCode::OK
        );
        let res = patch(&app, "acme", &owner.token, &id, "admin").await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.on(Method::GET, "acme", "/v1/projects", Some(&member)).send().await.unwrap();
        assert_problem(res, 401, "invalid_token").await;
        let admin = app.login("acme", "mia@acme.test").await;
        assert_eq!(
            app.on(Method::GET, "acme", "/v1/users", Some(&admin)).send().await.unwrap().status(),
            StatusCode::OK
        );
    }

    async fn another_tenants_user_and_a_malformed_id_are_not_found(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let acme = app.signup("acme").await;
        let bravo = app.signup("bravo").await;
        let (bravo_member, _) = app.user("bravo", &bravo.token, "mia@bravo.test", "member").await;
        for id in [
            bravo.user_id.as_str(),
            bravo_member.as_str(),
            NOBODY,
            "not-an-id",
            "0190F5C2-6A4E-7D3A-8B1C-3E2F4A5B6C7DX",
            "1",
        ] {
            let body = assert_problem(patch(&app, "acme", &acme.token, id, "admin").await, 404, "not_found").await;
            assert!(!body.to_string().contains("bravo"), "{body}");
            assert_problem(delete(&app, "acme", &acme.token, id).await, 404, "not_found").await;
        }
        let list = app.all("bravo", &bravo.token, "/v1/users").await;
        let roles: Vec<&str> = list.iter().map(|u| u["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["member", "owner"], "bravo's users are untouched");
    }
}
