//! Building successful answers: JSON bodies, ETags and conditional GETs.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use plinth_domain::tagged::TaggedJson;
use plinth_domain::timing::{self, Phase};
use serde::Serialize;

use crate::problem::ApiError;

/// The media type of every JSON body plinth sends.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `value` as a JSON body with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<HttpResponse, ApiError> {
    let body = serialize(value)?;
    Ok(HttpResponse::build(status).insert_header((header::CONTENT_TYPE, JSON)).body(body))
}

/// `value` as a 200 JSON body that no cache keeps (`Cache-Control: no-store`).
pub fn private<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    let mut res = json(StatusCode::OK, value)?;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A strong ETag of `body`.
pub fn etag(body: &[u8]) -> HeaderValue {
    let tag = plinth_domain::tagged::etag(body);
    HeaderValue::from_bytes(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether `If-None-Match` lists `tag` (or `*`). Weak comparison, as RFC 9110 asks for
/// `If-None-Match`.
fn none_match(req: &HttpRequest, tag: &HeaderValue) -> bool {
    let tag = tag.as_bytes();
    req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |candidate| {
            let c = candidate.trim();
            c == "*" || c.strip_prefix("W/").unwrap_or(c).as_bytes() == tag
        },
    )
}

/// A successful GET of JSON `body`: 200 with an `ETag`, or 304 when the client has it.
pub fn get_json(req: &HttpRequest, body: Bytes) -> HttpResponse {
    let tag = etag(&body);
    answer(req, tag, body)
}

/// A successful GET of a body that comes with its tag, as [`get_json`].
pub fn get_tagged(req: &HttpRequest, json: &TaggedJson) -> HttpResponse {
    match HeaderValue::from_maybe_shared(json.etag()) {
        Ok(tag) => answer(req, tag, json.body()),
        Err(_) => get_json(req, json.body()),
    }
}

fn answer(req: &HttpRequest, tag: HeaderValue, body: Bytes) -> HttpResponse {
    if none_match(req, &tag) {
        return HttpResponse::NotModified().insert_header((header::ETAG, tag)).finish();
    }
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, JSON)).insert_header((header::ETAG, tag)).body(body)
}

/// A successful GET of `value`, as [`get_json`].
pub fn get<T: Serialize>(req: &HttpRequest, value: &T) -> Result<HttpResponse, ApiError> {
    let body = serialize(value)?;
    Ok(get_json(req, Bytes::from(body)))
}

/// `value` as JSON, timed as the request's `ser` phase.
pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, plinth_domain::Error> {
    let _ser = timing::measure(Phase::Ser);
    serde_json::to_vec(value).map_err(plinth_domain::Error::internal)
}
