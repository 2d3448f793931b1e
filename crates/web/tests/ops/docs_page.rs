//! `GET /docs` in a real browser: headless Chromium (Debian's `chromium`) loads the page from a
//! running plinth, runs Redoc, and every operation of the document is in what it renders, with
//! its path, its auth and API key scope, every answer it documents (errors included) and its
//! examples. A screenshot of the page is saved as `target/tmp/docs.png`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// Runs headless Chromium with `args` on a profile of its own; fails saying how to install it.
async fn chromium(args: Vec<String>) -> Output {
    let profile = std::env::temp_dir().join(format!("plinth-chromium-{}", uuid::Uuid::now_v7().simple()));
    let dir = profile.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            // The machine has no way out: no background fetches, no component updates, no QUIC.
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .args(args)
            .output()
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    match out {
        Ok(out) => out,
        Err(e) => panic!(
            "could not run chromium ({e}): this test drives Debian's headless Chromium; install it with \
             `apt-get install chromium` (`.ci/run` does when it is missing)"
        ),
    }
}

/// `html` as text: tags dropped, the entities Redoc writes decoded, whitespace folded.
fn text_of(html: &str) -> String {
    let mut text = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#x27;", "'");
    text.replace("&amp;", "&").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each operation's section of the rendered page, by operation id: from the element Redoc gives
/// the id `tag/<tag>/operation/<id>` to the next such section.
fn sections(dom: &str) -> Vec<(String, String)> {
    const START: &str = "<div id=\"tag/";
    let starts: Vec<usize> = dom
        .match_indices(START)
        .map(|(i, _)| i)
        .filter(|&i| dom[i..].split('"').nth(1).is_some_and(|id| id.contains("/operation/")))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let end = starts.get(n + 1).copied().unwrap_or(dom.len());
            let id = dom[i..].split('"').nth(1).unwrap_or_default();
            let operation = id.rsplit('/').next().unwrap_or_default().to_owned();
            (operation, text_of(&dom[i..end]))
        })
        .collect()
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs.png")
}

#[tokio::test]
async fn the_page_renders_every_operation_with_its_auth_answers_and_examples_in_chromium() {
    let app = TestApp::start(&[], None).await;
    let doc: Value = app.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap().json().await.unwrap();
    let url = format!("{}/docs", app.address);

    // Virtual time lets Redoc fetch the document and render before the DOM is taken.
    let out = chromium(vec!["--virtual-time-budget=30000".into(), "--dump-dom".into(), url.clone()]).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && dom.contains("<redoc"), "chromium did not render the page:\n{log}");
    // The policy lets the page load nothing from elsewhere: Redoc's footer asks for its logo
    // from Redocly's CDN, which is refused (Redoc then leaves it out). Anything else refused
    // would be a part of the renderer that does not work.
    for refused in log.lines().filter(|l| l.contains("Content Security Policy")) {
        assert!(
            refused.contains("'https://cdn.redoc.ly/redoc/logo-mini.svg'") && refused.contains("has been blocked"),
            "the page broke its own policy: {refused}"
        );
    }
    let rendered = sections(&dom);

    let mut failures = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            operations += 1;
            let Some((_, text)) = rendered.iter().find(|(rendered_id, _)| rendered_id == id) else {
                failures.push(format!("{method} {path} ({id}) is not on the page"));
                continue;
            };
            if let Some(summary) = op["summary"].as_str() {
                // As the page sets it: one line, backticks rendered as code.
                let folded = summary.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.replace('`', "").contains(&folded.replace('`', "")) {
                    failures.push(format!("{id}: the summary `{folded}` is not shown"));
                }
            }
            let mut expect = |what: &str, needle: &str| {
                if !text.contains(needle) {
                    failures.push(format!("{id}: {what} `{needle}` is not shown"));
                }
            };
            expect("the path", &format!("{method} {path}"));
            for requirement in op["security"].as_array().into_iter().flatten() {
                expect("the auth", "Authorizations:");
                for (scheme, scopes) in requirement.as_object().unwrap() {
                    expect("a security scheme", scheme);
                    for scope in scopes.as_array().unwrap() {
                        expect("the API key scope", scope.as_str().unwrap());
                    }
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                expect("an answer", status);
                // Each problem code an answer names (in backticks) is on the page.
                let description = response["description"].as_str().unwrap_or_default();
                for code in description.split('`').skip(1).step_by(2) {
                    expect("an error code", code);
                }
            }
            let answers_with_body = op["responses"].as_object().unwrap().values().any(|r| r["content"].is_object());
            if answers_with_body {
                expect("the examples", "Response samples");
            }
            if op["requestBody"].is_object() {
                expect("the request example", "Request samples");
            }
            // Redoc writes `"string"` (or 0) where a schema has no example of its own.
            if text.contains(": \"string\"") {
                failures.push(format!("{id}: a sample shows a placeholder, not an example"));
            }
        }
    }
    assert!(operations >= 60, "only {operations} operations in the document");
    assert!(failures.is_empty(), "{} problems with the rendered page:\n{}", failures.len(), failures.join("\n"));

    let shot = screenshot_path();
    let out = chromium(vec![
        "--virtual-time-budget=30000".into(),
        "--hide-scrollbars".into(),
        "--window-size=1440,2000".into(),
        format!("--screenshot={}", shot.display()),
        url,
    ])
    .await;
    assert!(out.status.success(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} is not a screenshot of a page", shot.display());
}

#[tokio::test]
async fn the_page_loads_only_from_plinth_and_is_off_when_turned_off() {
    let app = TestApp::start(&[], None).await;
    for host in ["localhost", "acme.localhost", "127.0.0.1"] {
        let res = app.request(Method::GET, host, "/docs").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "on {host}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "the page fetches only its own origin: {csp}");
        let page = res.text().await.unwrap();
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere:\n{page}");
    }
    let script = app.request(Method::GET, "localhost", "/docs/redoc.standalone.js").send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(script.headers()["vary"], "Accept-Encoding");
    let plain = script.bytes().await.unwrap();
    assert!(plain.len() > 500_000, "the whole renderer is served");
    // A browser gets it compressed: a third of the bytes to send, and to hold for a slow reader.
    let compressed = app
        .request(Method::GET, "localhost", "/docs/redoc.standalone.js")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    let gzip = compressed.bytes().await.unwrap();
    assert!(gzip.starts_with(&[0x1f, 0x8b]) && gzip.len() * 3 < plain.len(), "{} bytes compressed", gzip.len());

    let off = TestApp::start(&[("PLINTH_DOCS", "false")], None).await;
    for path in ["/docs", "/docs/redoc.standalone.js"] {
        let res = off.request(Method::GET, "localhost", path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "not_found", "{path}");
    }
    // The rest of the platform routes don't care.
    let res = off.request(Method::GET, "localhost", "/openapi.json").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[test]
fn sections_are_cut_at_each_operation_and_read_as_text() {
    let dom = r#"<div id="tag/a/operation/one" data-section-id="x"><h2>One &amp; <b>only</b></h2></div>
        <div id="tag/a">tag</div><div id="tag/b/operation/two" data-section-id="y">Two &lt;id&gt;</div>"#;
    let found = sections(dom);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "one");
    assert_eq!(found[0].1, "One & only tag");
    assert_eq!(found[1], ("two".to_owned(), "Two <id>".to_owned()));
}
