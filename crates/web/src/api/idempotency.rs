//! `Idempotency-Key` on the POST routes: a retry gets the first answer again, status and body,
//! and does nothing twice; the same key with another body is refused.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _};
use bytes::Bytes;
use plinth_domain::Error;
use plinth_domain::error::Conflict;
use plinth_domain::ports::{Claim, IdempotencyKey, IdempotencyScope, StoredResponse};
use plinth_domain::usecases::{Plinth, Principal};

use super::respond::JSON;
use crate::problem::{ApiError, PROBLEM_JSON};

const HEADER: &str = "idempotency-key";

/// A successful answer that can be stored and replayed.
#[derive(Debug)]
pub struct Created {
    /// The status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Bytes,
    /// The `Location` header.
    pub location: Option<String>,
    /// What a replay gets instead of `body`, when the first answer holds something that must
    /// not be kept (a webhook's secret).
    pub replay_body: Option<Bytes>,
}

fn to_response(r: &StoredResponse, replayed: bool) -> HttpResponse {
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

async fn stored_error(e: ApiError) -> StoredResponse {
    let res = e.error_response();
    let status = res.status().as_u16();
    let body = actix_web::body::to_bytes(res.into_body()).await.unwrap_or_default();
    StoredResponse { status, body, location: None }
}

/// Runs `handler` at most once per idempotency key of `who`: without the header it just runs.
pub async fn once<F, Fut>(
    plinth: &Plinth,
    req: &HttpRequest,
    who: &Principal,
    fingerprint: u128,
    handler: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Created, ApiError>>,
{
    let Some(raw) = req.headers().get(HEADER) else {
        let c = handler().await?;
        return Ok(to_response(
            &StoredResponse { status: c.status.as_u16(), body: c.body, location: c.location },
            false,
        ));
    };
    let key =
        raw.to_str().ok().and_then(|s| IdempotencyKey::parse(s).ok()).ok_or(ApiError::Domain(Error::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        )))?;
    let scope = IdempotencyScope { tenant: who.tenant, user: who.user, key };
    // The same key on another route is another request.
    let fingerprint = fingerprint ^ xxhash_rust::xxh3::xxh3_128(req.path().as_bytes());
    let ports = plinth.ports();
    match ports.idempotency.claim(&scope, fingerprint, plinth.settings().idempotency_ttl).await? {
        Claim::Replay(stored) => Ok(to_response(&stored, true)),
        Claim::Mismatch => Err(Error::IdempotencyKeyReused.into()),
        Claim::InProgress => Err(Error::Conflict(Conflict::RequestInProgress).into()),
        Claim::Acquired => {
            let (stored, first) = match handler().await {
                Ok(c) => {
                    let first = StoredResponse { status: c.status.as_u16(), body: c.body, location: c.location };
                    let kept = c.replay_body.map(|body| StoredResponse { body, ..first.clone() });
                    (kept.unwrap_or_else(|| first.clone()), first)
                }
                Err(e) if e.status_code().is_server_error() => {
                    // A retry may succeed where this failed: let it run again.
                    if let Err(release) = ports.idempotency.release(&scope).await {
                        tracing::warn!(error = %release, "could not release an idempotency key");
                    }
                    return Err(e);
                }
                Err(e) => {
                    let stored = stored_error(e).await;
                    (stored.clone(), stored)
                }
            };
            ports.idempotency.complete(&scope, &stored).await?;
            Ok(to_response(&first, false))
        }
    }
}
