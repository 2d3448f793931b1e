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
    let (operator, hash) = plinth_domain::values::OperatorTokens::issue().unwrap();
    let app = TestApp::start(&[("PLINTH_OPERATOR_TOKEN_HASHES", &hash)], None).await;
    let tenant = slug("openapi");
    let token = app.signup(&tenant).await.token;
    // Logout ends the session of the token it is called with: it gets one of its own.
    let spare = app.login(&tenant, &format!("owner@{tenant}.test")).await;
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
                request = request.bearer_auth(if id == "logout" { &spare } else { &token });
            } else if path.starts_with("/admin/") {
                request = request.bearer_auth(&operator);
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

/// `plinth openapi` is how the TypeScript client (`clients/typescript`) gets the document without
/// a server: it must print exactly what `GET /openapi.json` serves.
#[tokio::test]
async fn the_openapi_command_prints_the_document_the_server_serves() {
    let app = TestApp::start(&[], None).await;
    let served = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let served: Value = served.json().await.unwrap();
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_plinth"))
        // No configuration at all: the command needs none (not even PLINTH_JWT_SECRET).
        .env_clear()
        .arg("openapi")
        .output()
        .unwrap();
    let stdout = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.status.success(), "plinth openapi failed: {}", String::from_utf8_lossy(&printed.stderr));
    assert!(stdout.starts_with("{\n  \"openapi\": \"3.1"), "not pretty JSON: {}", &stdout[..stdout.len().min(80)]);
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert!(printed["paths"]["/v1/projects"]["post"].is_object(), "the document has the routes");
    assert_eq!(printed, served);
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

/// Every schema of a request value in `doc`: (where, schema), parameters and body properties.
fn request_values(doc: &Value) -> Vec<(String, Value)> {
    let schemas = &doc["components"]["schemas"];
    let resolve = |s: &Value| match s["$ref"].as_str() {
        Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
        None => s.clone(),
    };
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (place, name) = (p["in"].as_str().unwrap_or_default(), p["name"].as_str().unwrap_or_default());
                found.push((format!("{method} {path} ({id}) {place} {name}"), resolve(&p["schema"])));
            }
            let body = resolve(&op["requestBody"]["content"]["application/json"]["schema"]);
            for (name, s) in body["properties"].as_object().into_iter().flatten() {
                found.push((format!("{method} {path} ({id}) body {name}"), resolve(s)));
            }
        }
    }
    found
}

#[test]
fn every_string_the_server_validates_declares_its_form() {
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    // Login takes any strings and answers 401 when they sign no one in.
    // So does a password change's current password (a wrong one is 401).
    let free = ["(login) body email", "(login) body password", "(changePassword) body current_password"];
    let mut strings = 0;
    let mut missing = Vec::new();
    for (what, schema) in request_values(&doc) {
        if schema["type"] != "string" || free.iter().any(|f| what.ends_with(f)) {
            continue;
        }
        strings += 1;
        let declared = ["pattern", "format", "maxLength", "enum"].iter().any(|k| !schema[*k].is_null());
        if !declared {
            missing.push(what);
        }
    }
    assert!(strings >= 20, "only {strings} string values");
    assert!(missing.is_empty(), "no pattern, format or length:\n{}", missing.join("\n"));
}

/// The one schema `doc` declares for the request value `where_` ends with (they must agree).
fn declared(doc: &Value, where_: &str) -> Value {
    let mut schemas: Vec<Value> =
        request_values(doc).into_iter().filter(|(w, _)| w.ends_with(where_)).map(|(_, s)| s).collect();
    assert!(!schemas.is_empty(), "{where_} is not declared");
    schemas.dedup();
    assert_eq!(schemas.len(), 1, "{where_} is declared differently in places: {schemas:?}");
    schemas.remove(0)
}

/// Whether `value` is valid by `schema`'s pattern, lengths (in characters) and `not` enum.
fn valid(schema: &Value, value: &str) -> bool {
    let n = value.chars().count() as u64;
    let pattern = schema["pattern"].as_str().map(|p| regex::Regex::new(p).unwrap());
    pattern.is_none_or(|p| p.is_match(value))
        && schema["minLength"].as_u64().is_none_or(|min| n >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| n <= max)
        && !schema["not"]["enum"].as_array().into_iter().flatten().any(|v| v == value)
}

/// Strings near the edges of the declared forms: whitespace and control characters around and
/// inside, lengths around each limit, the reserved slugs, characters that grow when lowercased.
fn edge_cases() -> Vec<String> {
    let mut cases: Vec<String> =
        ["", " ", "a", "ab", "abc", "-ab", "ab-", "Abc", "www", "api", "status", "a@b", "@b", "a@"]
            .map(str::to_owned)
            .to_vec();
    let pieces = [
        " ", "\t", "\n", "\u{0}", "\u{7f}", "\u{85}", "\u{a0}", "\u{1c}", "\u{3000}", "\u{feff}", "@", "é", "İ", "!",
        "~",
    ];
    for p in pieces {
        cases.extend([
            format!("{p}abc"),
            format!("abc{p}"),
            format!("ab{p}c"),
            format!("{p}a@b.c{p}"),
            format!("a{p}@b"),
        ]);
    }
    for n in [9, 10, 53, 54, 55, 56, 62, 63, 64, 252, 253, 254, 255, 256, 257] {
        cases.extend([
            "a".repeat(n),
            format!(" {} ", "a".repeat(n)),
            format!("a@{}", "b".repeat(n.saturating_sub(2))),
            format!("a@{}", "İ".repeat(n.saturating_sub(2))),
            "é".repeat(n),
        ]);
    }
    cases
}

/// `value` against the domain rule the document says `where_` follows.
fn accepted(where_: &str, value: &str) -> bool {
    use plinth_domain::ports::IdempotencyKey;
    use plinth_domain::values::{Email, Password, ProjectName, Slug, TenantName};
    match where_ {
        "body tenant_slug" => Slug::parse(value).is_ok(),
        "body tenant_name" => TenantName::parse(value).is_ok(),
        "(createProject) body name" => ProjectName::parse(value).is_ok(),
        // JSON Schema can't bound the length of the trimmed and lowercased form, so the
        // document bounds the text as sent: it refuses more than 254 characters with the
        // spaces around them (the server trims them first), and allows 254 that grow when
        // lowercased ('İ', the one character that does, becomes two; the server refuses those).
        "(signup) body email" => {
            let as_sent = value.replace('İ', "i");
            Email::parse(&as_sent).is_ok() && as_sent.chars().count() <= Email::MAX_LEN
        }
        "(signup) body password" | "(changePassword) body new_password" => Password::parse(value).is_ok(),
        "(refresh) body refresh_token" => plinth_domain::values::RefreshToken::parse(value).is_ok(),
        // A value with a space at either end never arrives as sent (HTTP strips it), so the
        // document refuses it.
        "header Idempotency-Key" => value == value.trim_matches(' ') && IdempotencyKey::parse(value).is_ok(),
        // Only the form (41 bytes in canonical unpadded base64url): whether plinth signed it
        // is for the server alone to know.
        "query cursor" => {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).is_ok_and(|raw| raw.len() == 41)
        }
        other => panic!("no rule for {other}"),
    }
}

const RULES: [&str; 9] = [
    "body tenant_slug",
    "body tenant_name",
    "(createProject) body name",
    "(signup) body email",
    "(signup) body password",
    "(changePassword) body new_password",
    "(refresh) body refresh_token",
    "header Idempotency-Key",
    "query cursor",
];

#[test]
fn each_declared_form_accepts_exactly_what_the_server_accepts() {
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    let mut disagreements = Vec::new();
    for where_ in RULES {
        let schema = declared(&doc, where_);
        for value in edge_cases() {
            if valid(&schema, &value) != accepted(where_, &value) {
                disagreements.push(format!("{where_}: {value:?} (document: {})", valid(&schema, &value)));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn the_cursors_plinth_issues_have_the_declared_form() {
    use plinth_domain::page::{Cursor, CursorKey};
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    let schema = declared(&doc, "query cursor");
    for (micros, key) in [(0, [0; 32]), (1_700_000_000_000_000, [7; 32]), (i64::MAX / 1000, [255; 32])] {
        let created_at = plinth_domain::clock::from_micros(micros).unwrap();
        for _ in 0..50 {
            let cursor = Cursor { created_at, id: uuid::Uuid::now_v7() }.encode(&CursorKey::new(key));
            assert!(valid(&schema, &cursor), "{cursor}");
        }
    }
}

#[test]
fn values_drawn_from_each_declared_pattern_are_accepted_and_random_ones_judged_alike() {
    use proptest::strategy::{Strategy as _, ValueTree as _};
    use proptest::test_runner::TestRunner;
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    let mut runner = TestRunner::deterministic();
    for where_ in RULES {
        let schema = declared(&doc, where_);
        let Some(pattern) = schema["pattern"].as_str() else { continue };
        // proptest draws from the pattern without the anchors.
        let body = pattern.trim_start_matches('^').trim_end_matches('$');
        let drawn = proptest::string::string_regex(body).unwrap();
        for _ in 0..500 {
            let value = drawn.new_tree(&mut runner).unwrap().current();
            assert_eq!(valid(&schema, &value), accepted(where_, &value), "{where_}: {value:?}");
        }
        let random = proptest::string::string_regex(".{0,300}").unwrap();
        for _ in 0..500 {
            let value = random.new_tree(&mut runner).unwrap().current();
            assert_eq!(valid(&schema, &value), accepted(where_, &value), "{where_}: {value:?}");
        }
    }
}

/// The values in `schema` (resolved against `schemas`) that have no example: the paths of the
/// strings, numbers and booleans that neither they nor a schema around them give one for.
/// `seen` stops at a schema already being walked (a recursive one).
fn without_example(schemas: &Value, schema: &Value, at: &str, seen: &mut Vec<String>, missing: &mut Vec<String>) {
    let has_example = |s: &Value| !s["example"].is_null() || s["examples"].as_array().is_some_and(|e| !e.is_empty());
    if has_example(schema) || !schema["enum"].is_null() || !schema["const"].is_null() {
        return;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/").to_owned();
        if seen.contains(&name) {
            return;
        }
        seen.push(name.clone());
        without_example(schemas, &schemas[&name], &format!("{at}>{name}"), seen, missing);
        seen.pop();
        return;
    }
    let mut composed = false;
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema[key].as_array().into_iter().flatten() {
            composed = true;
            without_example(schemas, part, at, seen, missing);
        }
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        composed = true;
        without_example(schemas, property, &format!("{at}.{name}"), seen, missing);
    }
    if schema["additionalProperties"].is_object() {
        composed = true;
        without_example(schemas, &schema["additionalProperties"], &format!("{at}{{}}"), seen, missing);
    }
    if schema["items"].is_object() {
        composed = true;
        without_example(schemas, &schema["items"], &format!("{at}[]"), seen, missing);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let scalar = types.iter().any(|t| ["string", "integer", "number", "boolean"].contains(t));
    if !composed && (scalar || types.contains(&"object")) {
        missing.push(at.to_owned());
    }
}

#[test]
fn every_body_and_answer_the_document_describes_has_an_example() {
    let doc = serde_json::to_value(plinth_web::startup::openapi_document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut missing = Vec::new();
    let mut bodies = 0;
    let mut problems = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            for (media, content) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                bodies += 1;
                let at = format!("{method} {path} ({id}) request {media}");
                without_example(schemas, &content["schema"], &at, &mut Vec::new(), &mut missing);
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    let at = format!("{method} {path} ({id}) {status} {media}");
                    if media == "application/problem+json"
                        && content["schema"]["$ref"].as_str().is_some_and(|r| r.ends_with("/Problem"))
                    {
                        // An error's example is the problem plinth renders for the code it names.
                        problems += 1;
                        let example = &content["example"];
                        let code = example["code"].as_str().unwrap_or_default();
                        let named = codes_named(response["description"].as_str().unwrap_or_default());
                        let ok = example["status"].as_u64().map(|s| s.to_string()).as_ref() == Some(status)
                            && example["type"] == "about:blank"
                            && !example["detail"].as_str().unwrap_or_default().is_empty()
                            && (named.is_empty()
                                || named.contains(&code)
                                || code == "rate_limited"
                                || code == "internal");
                        if !ok {
                            missing.push(format!("{at}: example {example}"));
                        }
                    } else if !content["example"].is_null() {
                        // An example of the whole answer (an export's lines) covers it.
                        bodies += 1;
                    } else if media.ends_with("json") {
                        bodies += 1;
                        without_example(schemas, &content["schema"], &at, &mut Vec::new(), &mut missing);
                    }
                }
            }
        }
    }
    assert!(bodies >= 60 && problems >= 300, "only {bodies} bodies and {problems} error answers");
    assert!(missing.is_empty(), "{} values have no example:\n{}", missing.len(), missing.join("\n"));
}

#[test]
fn a_value_without_an_example_is_found_however_deep() {
    let schemas = json!({
        "Inner": {"type": "object", "properties": {"ok": {"type": "string", "example": "x"}, "bare": {"type": ["integer", "null"]}}},
    });
    let schema = json!({"type": "object", "properties": {"list": {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}}}});
    let mut missing = Vec::new();
    without_example(&schemas, &schema, "op", &mut Vec::new(), &mut missing);
    assert_eq!(missing, ["op.list[]>Inner.bare"]);
}
