//! The OpenAPI document is complete: every operation it documents is routed. actix-web can't
//! list its routes, so routes are registered only through the document (clippy.toml forbids
//! the other ways) and this test calls every documented operation: a 405, or a 404 that the
//! operation does not document, means the document and the routes disagree.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, slug};

/// The problem codes a response's description names in backticks (`not_found`).
fn codes_named(description: &str) -> Vec<&str> {
    description.split('`').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_a_documented_status() {
    let app = TestApp::start(&[], None).await;
    let tenant = slug("openapi");
    let token = app.signup(&tenant).await.token;
    let tenant_host = format!("{tenant}.localhost");
    let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
    assert!(doc["components"]["schemas"]["NotReady"].is_object(), "the 503 body of /readyz is documented");

    let mut called = 0;
    let mut failures = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or_default();
            // Fill every path parameter with a random id.
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { s.to_owned() })
                .collect::<Vec<_>>()
                .join("/");
            // Signup lives on the platform host; every other `/v1` route on a tenant's.
            let host = if path.starts_with("/v1/") && id != "signup" { tenant_host.as_str() } else { "localhost" };
            let mut request = app.request(m.clone(), host, &concrete);
            if path.starts_with("/v1/") {
                request = request.bearer_auth(&token);
            }
            if ["POST", "PUT", "PATCH"].contains(&m.as_str()) {
                request = request.json(&json!({}));
            }
            let res = request.send().await.unwrap();
            called += 1;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let documented = &op["responses"][status.as_str()];
            let what = format!("{} {path} ({id}) answered {status} {body}", m.as_str());
            if status == StatusCode::METHOD_NOT_ALLOWED {
                failures.push(format!("{what}: the route is not registered for this method"));
            } else if status == StatusCode::NOT_FOUND {
                let description = documented["description"].as_str();
                let code = body["code"].as_str().unwrap_or_default();
                match description {
                    None => failures.push(format!("{what}: 404 is not documented")),
                    Some(d) if !codes_named(d).is_empty() && !codes_named(d).contains(&code) => {
                        failures.push(format!("{what}: 404 `{code}` is not the documented 404 ({d})"));
                    }
                    Some(_) => {}
                }
            } else if documented.is_null() {
                failures.push(format!("{what}: {status} is not documented"));
            }
        }
    }
    assert!(called >= 20, "only {called} operations are documented");
    assert!(
        failures.is_empty(),
        "{} of {called} operations disagree with the document:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn codes_are_read_from_backticks() {
    assert_eq!(codes_named("No tenant (`tenant_not_found`), or none (`not_found`)"), ["tenant_not_found", "not_found"]);
    assert!(codes_named("Not the platform host").is_empty());
}

#[test]
fn every_operation_that_reads_a_body_documents_the_body_deadline() {
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    let mut with_body = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"].is_null() {
                continue;
            }
            with_body += 1;
            let description = op["responses"]["408"]["description"].as_str().unwrap_or_default();
            assert_eq!(codes_named(description), ["request_timeout"], "{method} {path}: 408 is not documented");
        }
    }
    assert!(with_body >= 7, "only {with_body} operations read a body");
}
