//! `Idempotency-Key` on the POST routes: a retry gets the first answer again, status and body,
//! and does nothing twice; the same key with another body is refused. The use case guards its
//! write with the key (see `plinth_domain::usecases::Idempotency`); this module reads the
//! header and renders the answers that are kept.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use plinth_domain::Error;
use plinth_domain::ports::{IdempotencyKey, StoredResponse};
use plinth_domain::usecases::{Answer, Idempotency, KeptAnswer};

use super::respond::JSON;
use crate::problem::{ApiError, PROBLEM_JSON, domain_problem};

const HEADER: &str = "idempotency-key";

/// The request's `Idempotency-Key`, if it sent one. Errors: 400 for a malformed key.
fn key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = req.headers().get(HEADER) else { return Ok(None) };
    raw.to_str()
        .ok()
        .and_then(|s| IdempotencyKey::parse(s).ok())
        .map(Some)
        .ok_or(ApiError::Domain(Error::BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")))
}

/// The answer kept for a request refused without a change (4xx): its problem document. A
/// failure a retry may fix (5xx) is not kept.
fn refused(e: &Error) -> Option<StoredResponse> {
    let problem = domain_problem(e);
    if problem.status >= 500 {
        return None;
    }
    let body = serde_json::to_vec(&problem).ok()?;
    Some(StoredResponse { status: problem.status, body: Bytes::from(body), location: None })
}

/// A JSON body with `status` (and `Location`), as it is kept for retries.
pub fn stored<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    location: Option<String>,
) -> plinth_domain::Result<StoredResponse> {
    let body = super::respond::serialize(value)?;
    Ok(StoredResponse { status: status.as_u16(), body: Bytes::from(body), location })
}

/// `r` as a response; a replay says so in `Idempotent-Replayed`.
pub fn to_response(r: &StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    let media = if status.is_success() { JSON } else { HeaderValue::from_static(PROBLEM_JSON) };
    res.insert_header((header::CONTENT_TYPE, media));
    if let Some(loc) = &r.location {
        res.insert_header((header::LOCATION, loc.as_str()));
    }
    if replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    res.body(r.body.clone())
}

/// Runs the use case `run` with the request's idempotency key (if any) and answers: `first`
/// renders a fresh result, a replay is the kept answer. `fingerprint` hashes the body; the
/// route is mixed in, so the same key on another route is another request.
pub async fn guarded<T>(
    req: &HttpRequest,
    fingerprint: u128,
    kept: KeptAnswer<'_, T>,
    run: impl AsyncFnOnce(Option<Idempotency<'_, T>>) -> plinth_domain::Result<Answer<T>>,
    first: impl FnOnce(T) -> Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let key = key(req)?;
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let fingerprint = fingerprint ^ xxhash_rust::xxh3::xxh3_128(route.as_bytes());
    let idempotency = key.as_ref().map(|key| Idempotency { key, fingerprint, kept, refused: &refused });
    match run(idempotency).await? {
        Answer::Done(value) => first(value),
        Answer::Replay(stored) => Ok(to_response(&stored, true)),
    }
}
