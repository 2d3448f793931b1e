//! The OpenAPI document describes every event: one schema per event type (`event.<type>`, its
//! `type` that one and its `data` the schema of what it is about), `Event` any of them by
//! `type`; and the events a running plinth stores, as the events API gives them back, are valid
//! by their schemas, on both backends. JSON Schema is checked by [`conforms`], which knows every
//! keyword the document uses and fails on any other, so nothing passes unchecked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use plinth_domain::events::{DomainEvent, EventKind};
use plinth_domain::ports::{EmailSender, MailFailure, OutboundEmail};
use plinth_testkit::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, slug};

/// The document, as the server builds it.
fn document() -> Value {
    serde_json::to_value(plinth_web::startup::openapi_document()).unwrap()
}

/// The component schema `name`.
fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no component {name}");
    schema
}

/// Whether `value` is of the JSON type `name`.
fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Whether the string `text` has the `format` named.
fn has_format(text: &str, format: &str) -> bool {
    match format {
        "uuid" => uuid::Uuid::try_parse(text).is_ok(),
        "date-time" => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok(),
        "uri" => text.starts_with("http://") || text.starts_with("https://"),
        other => panic!("unknown string format {other}"),
    }
}

/// Checks `value` at `at` against `schema`, resolving `$ref`s in `doc`: every keyword the
/// document uses is checked, and one this does not know panics (the test must learn it). The
/// first mismatch is the error, with where it is.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why} (value {value}, schema {schema})"));
    let Some(keywords) = schema.as_object() else { return fail("a schema must be an object".into()) };
    for (keyword, arg) in keywords {
        match keyword.as_str() {
            "description" | "example" | "examples" | "title" | "default" => {}
            "$ref" => {
                let name = arg.as_str().unwrap().trim_start_matches("#/components/schemas/");
                conforms(doc, component(doc, name), value, at)?;
            }
            "type" => {
                let ok = match arg {
                    Value::String(t) => is_type(value, t),
                    Value::Array(ts) => ts.iter().any(|t| is_type(value, t.as_str().unwrap())),
                    _ => panic!("type {arg}"),
                };
                if !ok {
                    return fail(format!("not of type {arg}"));
                }
            }
            "format" => match (arg.as_str().unwrap(), value) {
                ("int32", Value::Number(n)) if n.as_i64().is_none_or(|n| i32::try_from(n).is_err()) => {
                    return fail("not an int32".into());
                }
                ("int32" | "int64", _) => {}
                (format, Value::String(s)) if !has_format(s, format) => return fail(format!("not a {format}")),
                _ => {}
            },
            "enum" if !arg.as_array().unwrap().contains(value) => return fail(format!("not one of {arg}")),
            "enum" => {}
            "pattern" => {
                if let Some(s) = value.as_str()
                    && !regex::Regex::new(arg.as_str().unwrap()).unwrap().is_match(s)
                {
                    return fail(format!("does not match {arg}"));
                }
            }
            "minLength" | "maxLength" => {
                if let Some(s) = value.as_str() {
                    let (n, bound) = (s.chars().count() as u64, arg.as_u64().unwrap());
                    if (keyword == "minLength" && n < bound) || (keyword == "maxLength" && n > bound) {
                        return fail(format!("{keyword} {bound}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(bound)) = (value.as_f64(), arg.as_f64())
                    && ((keyword == "minimum" && n < bound) || (keyword == "maximum" && n > bound))
                {
                    return fail(format!("{keyword} {bound}"));
                }
            }
            "minItems" => {
                if value.as_array().is_some_and(|a| (a.len() as u64) < arg.as_u64().unwrap()) {
                    return fail(format!("fewer than {arg} items"));
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    conforms(doc, arg, item, &format!("{at}/{i}"))?;
                }
            }
            "required" => {
                for name in arg.as_array().unwrap() {
                    if value.is_object() && value.get(name.as_str().unwrap()).is_none() {
                        return fail(format!("no {name}"));
                    }
                }
            }
            "properties" => {
                for (name, property) in arg.as_object().unwrap() {
                    if let Some(v) = value.get(name) {
                        conforms(doc, property, v, &format!("{at}/{name}"))?;
                    }
                }
            }
            "additionalProperties" => {
                let known: BTreeSet<&str> = keywords
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str())
                    .collect();
                for (name, v) in value.as_object().into_iter().flatten().filter(|(k, _)| !known.contains(k.as_str())) {
                    match arg {
                        Value::Bool(false) => return fail(format!("{name} is not allowed")),
                        Value::Bool(true) => {}
                        extra => conforms(doc, extra, v, &format!("{at}/{name}"))?,
                    }
                }
            }
            "propertyNames" => {
                for name in value.as_object().into_iter().flatten().map(|(k, _)| k) {
                    conforms(doc, arg, &Value::String(name.clone()), &format!("{at} (key {name})"))?;
                }
            }
            "allOf" => {
                for part in arg.as_array().unwrap() {
                    conforms(doc, part, value, at)?;
                }
            }
            "oneOf" => {
                let matching: Vec<&Value> =
                    arg.as_array().unwrap().iter().filter(|s| conforms(doc, s, value, at).is_ok()).collect();
                if matching.len() != 1 {
                    return fail(format!("matches {} of oneOf, not one", matching.len()));
                }
                // The discriminator names the one that matches.
                if let Some(d) = keywords.get("discriminator") {
                    let tag =
                        value.get(d["propertyName"].as_str().unwrap()).and_then(Value::as_str).unwrap_or_default();
                    if matching[0]["$ref"] != d["mapping"][tag] {
                        return fail(format!("the discriminator maps {tag} elsewhere"));
                    }
                }
            }
            "discriminator" => assert!(keywords.contains_key("oneOf"), "a discriminator without oneOf"),
            "not" => {
                if conforms(doc, arg, value, at).is_ok() {
                    return fail(format!("matches not {arg}"));
                }
            }
            other => panic!("{at}: the checker does not know the keyword {other}"),
        }
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_the_schemas_refuse() {
    let doc = document();
    let event = json!({
        "id": uuid::Uuid::now_v7(), "type": "api_key.revoked", "created_at": "2025-01-31T09:30:00Z",
        "tenant_id": uuid::Uuid::now_v7(),
        "data": {"id": uuid::Uuid::now_v7(), "name": "CI", "prefix": "plk_x", "scopes": ["projects:read"], "role": "admin",
                 "created_by": null, "rate_limit_per_minute": null, "created_at": "2025-01-30T08:00:00Z",
                 "last_used_at": null, "expires_at": null}
    });
    let schema = component(&doc, "event.api_key.revoked");
    assert_eq!(conforms(&doc, schema, &event, ""), Ok(()));
    assert_eq!(conforms(&doc, component(&doc, "Event"), &event, ""), Ok(()));
    let broken = |path: &str, to: Value| {
        let mut e = event.clone();
        *e.pointer_mut(path).unwrap() = to;
        e
    };
    for bad in [
        broken("/type", json!("api_key.created")),
        broken("/id", json!("not-a-uuid")),
        broken("/created_at", json!("yesterday")),
        broken("/data/role", json!("root")),
        broken("/data/scopes", json!(["root"])),
        broken("/data/name", json!(7)),
        broken("/data", json!({"id": uuid::Uuid::now_v7()})),
    ] {
        assert!(conforms(&doc, schema, &bad, "").is_err(), "{bad}");
    }
    assert!(conforms(&doc, component(&doc, "Event"), &broken("/type", json!("user.created")), "").is_err());
    let mut without = event.clone();
    without.as_object_mut().unwrap().remove("tenant_id");
    assert!(conforms(&doc, schema, &without, "").is_err());
}

#[test]
fn every_event_type_has_its_schema_and_event_is_any_of_them_by_type() {
    let doc = document();
    let any = component(&doc, "Event");
    let refs: Vec<&str> = any["oneOf"].as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect();
    assert_eq!(refs.len(), EventKind::ALL.len());
    assert_eq!(any["discriminator"]["propertyName"], "type");
    let expected_data = |kind: EventKind| match kind.subject() {
        plinth_domain::events::Subject::Project => "Project",
        plinth_domain::events::Subject::Tenant => "Tenant",
        plinth_domain::events::Subject::User => "User",
        plinth_domain::events::Subject::Invitation => "AcceptedInvitation",
        plinth_domain::events::Subject::ApiKey => "ApiKey",
        plinth_domain::events::Subject::Webhook => "Webhook",
    };
    for kind in EventKind::ALL {
        let name = format!("event.{}", kind.as_str());
        let reference = format!("#/components/schemas/{name}");
        assert!(refs.contains(&reference.as_str()), "Event lacks {name}");
        assert_eq!(any["discriminator"]["mapping"][kind.as_str()], reference);
        let schema = component(&doc, &name);
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["type"]["enum"], json!([kind.as_str()]), "{name}");
        assert_eq!(schema["properties"]["data"]["$ref"], format!("#/components/schemas/{}", expected_data(kind)));
        let required: BTreeSet<&str> =
            schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(required, BTreeSet::from(["id", "type", "created_at", "tenant_id", "data"]));
    }
    // The list and the one event answer with them.
    let list = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let page = component(&doc, list["$ref"].as_str().unwrap().trim_start_matches("#/components/schemas/"));
    assert_eq!(page["properties"]["items"]["items"]["$ref"], "#/components/schemas/Event");
    let one = &doc["paths"]["/v1/events/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(component(&doc, "EventDetail")["properties"]["event"]["$ref"], "#/components/schemas/Event");
    assert_eq!(one["$ref"], "#/components/schemas/EventDetail");
}

#[test]
fn the_webhook_events_plinth_makes_are_valid_by_their_schemas() {
    // Made here as the worker makes them: this branch's writes store none of these kinds.
    let doc = document();
    let hook =
        plinth_domain::conformance::fixtures::webhook(plinth_domain::ids::TenantId::new(), &[EventKind::UserCreated]);
    for kind in [EventKind::WebhookDisabled, EventKind::WebhookPing] {
        let event = serde_json::to_value(DomainEvent::webhook(kind, &hook, plinth_domain::clock::now())).unwrap();
        let schema = component(&doc, &format!("event.{}", kind.as_str()));
        assert_eq!(conforms(&doc, schema, &event, ""), Ok(()), "{}", kind.as_str());
        assert_eq!(conforms(&doc, component(&doc, "Event"), &event, ""), Ok(()));
    }
}

/// Keeps the messages plinth sends, so a test can follow their links.
#[derive(Default)]
struct Outbox(Mutex<Vec<OutboundEmail>>);

#[async_trait]
impl EmailSender for Outbox {
    async fn send(&self, email: &OutboundEmail) -> Result<(), MailFailure> {
        self.0.lock().unwrap().push(email.clone());
        Ok(())
    }

    fn describe(&self) -> String {
        "outbox".into()
    }
}

/// Makes a plinth on `db` (memory when `None`) store an event of every type its writes store,
/// reads them back through the events API, and checks each (and the answers holding them)
/// against the document.
async fn stored_events_are_valid(db: Option<TestDatabase>) {
    let doc = document();
    let (operator, hash) = plinth_domain::values::OperatorTokens::issue().unwrap();
    let outbox = Arc::new(Outbox::default());
    let mailer = outbox.clone();
    let app =
        TestApp::start_adapted(&[("PLINTH_OPERATOR_TOKEN_HASHES", &hash)], db, |ports| ports.mailer = mailer).await;
    let tenant = slug("schemas");
    let owner = app.signup(&tenant).await.token;
    let send =
        |method: Method, path: String, body: Value| app.on(method, &tenant, &path, Some(&owner)).json(&body).send();
    let project: Value =
        send(Method::POST, "/v1/projects".into(), json!({"name": "Apollo"})).await.unwrap().json().await.unwrap();
    let path = format!("/v1/projects/{}", project["id"].as_str().unwrap());
    assert!(send(Method::PATCH, path.clone(), json!({"name": "Artemis"})).await.unwrap().status().is_success());
    assert!(send(Method::DELETE, path, json!({})).await.unwrap().status().is_success());
    let (member, _) = app.user(&tenant, &owner, &format!("m@{tenant}.test"), "member").await;
    let path = format!("/v1/users/{member}");
    assert!(send(Method::PATCH, path.clone(), json!({"role": "admin"})).await.unwrap().status().is_success());
    assert!(send(Method::DELETE, path, json!({})).await.unwrap().status().is_success());
    let body = json!({"name": "CI", "scopes": ["projects:read"], "expires_at": "2099-01-01T00:00:00Z", "rate_limit_per_minute": 60});
    let key: Value = send(Method::POST, "/v1/api-keys".into(), body).await.unwrap().json().await.unwrap();
    let path = format!("/v1/api-keys/{}", key["id"].as_str().unwrap());
    assert!(send(Method::DELETE, path, json!({})).await.unwrap().status().is_success());
    let invited = json!({"email": format!("new@{tenant}.test"), "role": "member"});
    assert_eq!(send(Method::POST, "/v1/invitations".into(), invited).await.unwrap().status(), StatusCode::CREATED);
    while app.plinth.work_one("schemas").await.unwrap() {}
    let link = outbox.0.lock().unwrap().last().expect("the invitation was sent").link.clone();
    let token = link.split_once("#token=").unwrap().1.to_owned();
    let body = json!({"token": token, "password": "a passphrase of the new member"});
    let accepted = app.on(Method::POST, &tenant, "/v1/invitations/accept", None).json(&body).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    let admin = |method: Method, path: String, body: Value| {
        app.request(method, "localhost", &path).bearer_auth(&operator).json(&body).send()
    };
    for (method, action, body) in [
        (Method::PUT, "plan", json!({"plan": "pro"})),
        (Method::POST, "suspend", json!({"reason": "a schema check"})),
        (Method::POST, "resume", json!({})),
    ] {
        let res = admin(method, format!("/admin/v1/tenants/{tenant}/{action}"), body).await.unwrap();
        assert!(res.status().is_success(), "{action}: {}", res.status());
    }

    let list = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let one = &doc["paths"]["/v1/events/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let mut seen = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value =
            send(Method::GET, format!("/v1/events?limit=5{cursor}"), json!({})).await.unwrap().json().await.unwrap();
        assert_eq!(conforms(&doc, list, &page, "page"), Ok(()));
        for event in page["items"].as_array().unwrap() {
            let kind = event["type"].as_str().unwrap().to_owned();
            assert_eq!(conforms(&doc, component(&doc, &format!("event.{kind}")), event, &kind), Ok(()));
            let path = format!("/v1/events/{}", event["id"].as_str().unwrap());
            let detail: Value = send(Method::GET, path, json!({})).await.unwrap().json().await.unwrap();
            assert_eq!(conforms(&doc, one, &detail, &kind), Ok(()));
            seen.insert(kind);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let stored: BTreeSet<String> = EventKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, EventKind::WebhookDisabled | EventKind::WebhookPing))
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(seen, stored, "an event of every type the writes store");
}

#[tokio::test]
async fn the_events_plinth_stores_in_memory_are_valid_by_their_schemas() {
    stored_events_are_valid(None).await;
}

#[tokio::test]
async fn the_events_plinth_stores_in_postgres_are_valid_by_their_schemas() {
    stored_events_are_valid(Some(TestDatabase::new().await)).await;
}
