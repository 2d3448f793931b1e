//! `GET /docs`: the API reference, this document rendered by Redoc. The page and the renderer
//! are compiled into the binary, so the page needs no network and no CDN; the page loads only
//! from its own origin (its Content-Security-Policy says so), and the renderer is read-only: it
//! never sends a request to the API on the reader's behalf.
//!
//! Redoc over Swagger UI and Scalar: one self-contained script (1.1 MB), every operation
//! rendered into the page with its security requirements (and so the API key scope), every
//! response with its example, and no "try it" console to hold a reader's token.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use plinth_domain::Error;

use crate::problem::{ApiError, Problem};

/// The version of the Redoc bundle in `assets/redoc`, which busts caches of the script's URL.
pub const REDOC_VERSION: &str = "2.5.4";

/// The renderer: `redoc.standalone.js` from the `redoc` npm package, unchanged.
static REDOC: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// [`REDOC`] compressed (`gzip -9 -n`): a third of the bytes to send, and to hold in the
/// kernel's buffers for a client that reads slowly.
static REDOC_GZIP: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js.gz");

/// Whether `/docs` is served (`PLINTH_DOCS`, on by default).
#[derive(Debug, Clone, Copy)]
pub struct DocsPage {
    /// Served when true; 404 `not_found` when not.
    pub enabled: bool,
}

impl DocsPage {
    fn check(self) -> Result<(), ApiError> {
        if self.enabled { Ok(()) } else { Err(Error::NotFound.into()) }
    }
}

/// What the page may load: its own scripts and the document, inline styles (Redoc's
/// components style themselves), images written as data, and its search worker (a blob).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; \
                   font-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn page() -> String {
    // `expand-responses="all"` renders every response (errors too) opened, not behind a click.
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>plinth API reference</title>
</head>
<body>
<redoc spec-url="/openapi.json" expand-responses="all" required-props-first="true" hide-hostname="true"></redoc>
<script src="/docs/redoc.standalone.js?v={REDOC_VERSION}"></script>
</body>
</html>
"#
    )
}

/// The API reference page.
#[utoipa::path(
    tag = "platform",
    operation_id = "docs",
    responses(
        (status = 200, description = "This document, rendered by Redoc from assets served by plinth itself", content_type = "text/html"),
        (status = 404, description = "The page is off (`PLINTH_DOCS=false`): `not_found`", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/docs")]
pub async fn docs(page_config: web::Data<DocsPage>) -> Result<HttpResponse, ApiError> {
    page_config.check()?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(page()))
}

/// The renderer's script, for the page.
#[utoipa::path(
    tag = "platform",
    operation_id = "docsScript",
    responses(
        (status = 200, description = "Redoc's standalone bundle (MIT), which `/docs` loads", content_type = "text/javascript"),
        (status = 404, description = "The page is off (`PLINTH_DOCS=false`): `not_found`", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/docs/redoc.standalone.js")]
pub async fn script(req: HttpRequest, page_config: web::Data<DocsPage>) -> Result<HttpResponse, ApiError> {
    page_config.check()?;
    let mut res = HttpResponse::Ok();
    // The page asks for it by version (`?v=`): a new version is a new URL.
    res.insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::VARY, "Accept-Encoding"));
    if accepts_gzip(&req) {
        res.insert_header((header::CONTENT_ENCODING, "gzip"));
        return Ok(res.body(REDOC_GZIP));
    }
    Ok(res.body(REDOC))
}

/// Whether the request's `Accept-Encoding` takes gzip (and not with `q=0`).
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers().get_all(header::ACCEPT_ENCODING).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
        },
    )
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    #[test]
    fn the_bundle_is_the_one_the_readme_names() {
        // assets/redoc/README.md says where it comes from; a changed file must change both.
        let digest = Sha256::digest(REDOC);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b");
        let readme = include_str!("../../assets/redoc/README.md");
        assert!(readme.contains(&hex) && readme.contains(&format!("redoc {REDOC_VERSION}")));
    }

    #[test]
    fn the_compressed_bundle_is_the_bundle() -> Result<(), Box<dyn std::error::Error>> {
        use std::process::{Command, Stdio};
        let mut gunzip = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = gunzip.stdin.take().ok_or("no stdin")?;
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, REDOC_GZIP));
        let out = gunzip.wait_with_output()?;
        writer.join().map_err(|_| "the writer panicked")??;
        assert!(out.status.success());
        assert!(out.stdout == REDOC, "redoc.standalone.js.gz is not redoc.standalone.js: run `gzip -9 -n -kf` again");
        Ok(())
    }

    #[test]
    fn gzip_is_sent_to_whoever_takes_it() {
        let with = |value: &str| {
            let req = actix_web::test::TestRequest::default().insert_header((header::ACCEPT_ENCODING, value));
            accepts_gzip(&req.to_http_request())
        };
        assert!(with("gzip") && with("br, GZIP;q=0.5") && with("deflate, x-gzip"));
        assert!(!with("br") && !with("gzip;q=0") && !with("identity") && !with("gzipx"));
        assert!(!accepts_gzip(&actix_web::test::TestRequest::default().to_http_request()));
    }

    #[test]
    fn the_page_loads_only_from_its_own_origin() {
        let page = page();
        assert!(page.contains(r#"spec-url="/openapi.json""#));
        assert!(page.contains(&format!(r#"<script src="/docs/redoc.standalone.js?v={REDOC_VERSION}">"#)));
        assert!(!page.contains("http:") && !page.contains("https:"), "no address off this origin");
        assert!(CSP.contains("default-src 'none'") && CSP.contains("script-src 'self';"));
    }
}
