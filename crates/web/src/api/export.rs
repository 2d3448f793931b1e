//! `GET /v1/tenant/export`: everything the tenant holds, for its owner, as NDJSON streamed as
//! it is read.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use plinth_domain::export::TenantExport;

use super::extract::{Auth, TenantCtx};
use crate::problem::ApiError;
use crate::state::AppState;

/// The media type of an export.
const NDJSON: HeaderValue = HeaderValue::from_static("application/x-ndjson");

/// An export of a tenant with one user, project, webhook and delivery, and its audit log cut
/// to one entry: what the document shows.
const EXAMPLE: &str = concat!(
    r#"{"type":"tenant","data":{"id":"0193a0c4-7e52-7b1c-9d3e-5f1a2b3c4d5e","slug":"acme","name":"Acme Inc.","plan":"free"}}"#,
    "\n",
    r#"{"type":"user","data":{"id":"0193a0c4-7e52-7b1c-9d3e-5f1a2b3c4d5f","email":"ada@acme.test","role":"owner","email_verified":true,"created_at":"2026-01-05T09:12:44.120511Z"}}"#,
    "\n",
    r#"{"type":"project","data":{"id":"0193a0c5-0a11-7c3d-8e4f-6a7b8c9d0e1f","name":"Apollo","created_at":"2026-01-05T09:13:02.004211Z","updated_at":"2026-01-05T09:13:02.004211Z"}}"#,
    "\n",
    r#"{"type":"webhook","data":{"id":"0193a0c5-1b22-7d4e-9f50-7b8c9d0e1f20","url":"https://hooks.example.com/plinth","events":["project.created"],"created_at":"2026-01-05T09:12:58.771002Z"}}"#,
    "\n",
    r#"{"type":"delivery","data":{"id":"0193a0c5-0a12-7e5f-a061-8c9d0e1f2031","webhook_id":"0193a0c5-1b22-7d4e-9f50-7b8c9d0e1f20","event_id":"0193a0c5-0a11-7f60-b172-9d0e1f203142","event":"project.created","state":"delivered","attempts":1,"last_error":null,"created_at":"2026-01-05T09:13:02.004211Z"}}"#,
    "\n",
    r#"{"type":"audit","data":{"seq":1,"at":"2026-01-05T09:12:44.120511Z","actor":{"kind":"user","id":"0193a0c4-7e52-7b1c-9d3e-5f1a2b3c4d5f","ip":"203.0.113.7","user_agent":"curl/8.5.0"},"action":"tenant.created","target":{"type":"tenant","id":"0193a0c4-7e52-7b1c-9d3e-5f1a2b3c4d5e"},"request_id":"4bf92f3577b34da6a3ce929d0e0e4736","changes":{"slug":"acme","name":"Acme Inc.","owner":"ada@acme.test"},"hash":"5d41402abc4b2a76b9719d911017c592aaf8a1f2c3b4d5e6f708192a3b4c5d6e","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}}"#,
    "\n",
    r#"{"type":"end","data":{"counts":{"tenant":1,"user":1,"project":1,"webhook":1,"delivery":1,"audit":1}}}"#,
    "\n",
);

/// [`EXAMPLE`] as the document's example of the answer.
pub(crate) fn example() -> serde_json::Value {
    serde_json::Value::String(EXAMPLE.to_owned())
}

/// Everything the tenant holds, as NDJSON, for its owner to take elsewhere.
///
/// Data portability: one consistent snapshot, sent as it is read (chunked), as the file
/// `<slug>-export.ndjson`. One JSON object per line, `{"type": "<kind>", "data": {…}}`: first
/// one `tenant` line, then every `user`, `project`, `webhook`, `delivery` and `audit` entry, in
/// that order (each kind by id, which is the order they were made in; audit entries by `seq`,
/// as `GET /v1/audit-log` shows them), and last `{"type": "end", "data": {"counts": {…}}}`:
/// how many lines of each kind came before it. A body without the `end` line is incomplete:
/// the export failed after it began, and the connection was closed. No password hash, webhook
/// secret, token or key is ever in it. Nothing written after the export began is in it,
/// however long it takes to read.
///
/// One export of a tenant runs at a time (`409 export_in_progress` meanwhile); each is
/// recorded in the audit log as `tenant.exported`.
#[utoipa::path(
    tag = "tenant",
    operation_id = "exportTenant",
    security(("bearer" = [])),
    responses((
        status = 200,
        description = "The export: NDJSON, one line per record, the `end` line last",
        content_type = "application/x-ndjson",
        body = String,
        headers(
            ("Content-Disposition" = String, description = "`attachment; filename=\"<slug>-export.ndjson\"`"),
            ("Cache-Control" = String, description = "`private, no-store`")
        ),
        example = example
    ))
)]
#[get("/tenant/export")]
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    tenant: TenantCtx,
    who: Auth,
) -> Result<HttpResponse, ApiError> {
    // A read, but an audited one: its entry names where the request came from.
    let origin = crate::middleware::gate::origin(&req, &state);
    let started = state.plinth.export_tenant(&tenant.0, Some(&who.0));
    let export = plinth_domain::audit::with_origin(origin, started).await?;
    Ok(streamed(&tenant.0.slug, export))
}

/// The answer that streams `export`, as the file `<slug>-export.ndjson`.
pub(crate) fn streamed(slug: &plinth_domain::values::Slug, from: TenantExport) -> HttpResponse {
    let file = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(format!("{slug}-export.ndjson"))],
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("private, no-store")))
        .insert_header(file)
        .streaming(chunks(from))
}

/// The export's chunks as a response body: read one at a time as the client takes them, so
/// the export's reads follow the client. An error ends the body early (the `end` line missing).
fn chunks(
    from: TenantExport,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, plinth_domain::Error>> + 'static {
    futures_util::stream::unfold(from, |mut from| async move {
        let chunk = from.next().await?;
        Some((chunk, from))
    })
}
