//! Extractors: what handlers take from a request, each failing with the contract's answer.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use bytes::Bytes;
use plinth_domain::Error;
use plinth_domain::entities::Tenant;
use plinth_domain::page::PageRequest;
use plinth_domain::usecases::{Caller, ClientInfo, Principal};
use serde::de::DeserializeOwned;

use super::access::{Access, access};
use crate::middleware::client_ip::client_info;
use crate::middleware::gate::{AuthState, RequestCtx};
use crate::problem::ApiError;
use crate::state::AppState;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a request's body may take to arrive once plinth starts reading it
/// (`PLINTH_BODY_TIMEOUT_S`), as app data; [`DEFAULT_BODY_TIMEOUT`] where none is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

/// The body deadline when the app registers no [`BodyTimeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The tenant the request's host names.
#[derive(Debug, Clone)]
pub struct TenantCtx(pub Arc<Tenant>);

impl FromRequest for TenantCtx {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let tenant = req.extensions().get::<RequestCtx>().and_then(|c| c.tenant.clone());
        ready(tenant.map(TenantCtx).ok_or(ApiError::Domain(Error::TenantNotFound)))
    }
}

/// Where the request comes from, for the session it may start: the client's address (as the
/// rate limits find it, whole) and its `User-Agent` (cut to 256 characters).
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl FromRequest for Client {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let info = match req.app_data::<web::Data<AppState>>() {
            Some(state) => client_info(req, &state.trusted_proxies),
            None => ClientInfo::new(None, req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok())),
        };
        ready(Ok(Client(info)))
    }
}

/// The caller, from a valid bearer token: 401 otherwise. With `PLINTH_REQUIRE_VERIFIED_EMAIL`,
/// a caller whose address is not verified may read, and manage their own account (`/v1/me/…`,
/// `/v1/auth/…`: sessions, password, a new verification link), but any other write answers
/// 403 `email_unverified`.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.extensions().get::<RequestCtx>().map(|c| c.auth) {
            Some(AuthState::Valid(p)) => permitted(req, p).and_then(|p| verified_for(req, p)).map(Auth),
            Some(AuthState::Invalid) => Err(Error::InvalidToken.into()),
            Some(AuthState::Missing) | None => Err(Error::Unauthorized.into()),
        })
    }
}

/// `p`, unless it is an API key this route is closed to: 403 `insufficient_scope` naming the
/// scope it lacks, or `forbidden` for a route only people may call.
fn permitted(req: &HttpRequest, p: Principal) -> Result<Principal, ApiError> {
    if matches!(p.caller, Caller::User { .. }) {
        return Ok(p);
    }
    let pattern = req.match_pattern().unwrap_or_default();
    match access(req.method().as_str(), &pattern) {
        Access::Scope(scope) => p.require_scope(scope)?,
        Access::People => {
            p.person()?;
        }
    }
    Ok(p)
}

/// `p`, unless the deployment requires a verified address for this request and `p` has none.
fn verified_for(req: &HttpRequest, p: Principal) -> Result<Principal, ApiError> {
    if p.email_verified || req.method().is_safe() {
        return Ok(p);
    }
    let own_account = {
        let path = req.match_info().as_str();
        path.starts_with("/v1/me/") || path.starts_with("/v1/auth/")
    };
    let required = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.plinth.settings().email.require_verified);
    p.require_verified(required && !own_account)?;
    Ok(p)
}

/// A resource's id from its path segment: a malformed id names nothing, so it is `404
/// not_found` like an id of another tenant's resource.
pub fn resource_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::Domain(Error::NotFound))
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Clone, Copy)]
pub struct Paging(pub PageRequest);

/// The query parameters every list takes, as the OpenAPI document declares them (`Paging`
/// parses them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u16>,
    /// The `next_cursor` of the previous page, as it was (only plinth's signature makes one
    /// valid).
    #[param(schema_with = super::schemas::cursor)]
    pub cursor: Option<String>,
}

/// The `Idempotency-Key` header of the POST routes, as the OpenAPI document declares it
/// (`idempotency::guarded` reads it).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1–255 printable ASCII characters, neither first nor last a space: a retry with the same
    /// key and body gets the first answer again.
    #[param(rename = "Idempotency-Key", schema_with = super::schemas::idempotency_key)]
    pub key: Option<String>,
}

impl FromRequest for Paging {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        #[derive(serde::Deserialize)]
        struct Raw {
            limit: Option<String>,
            cursor: Option<String>,
        }
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Domain(Error::internal("application state is missing"))));
        };
        let key = &state.plinth.settings().cursor_key;
        let parsed = serde_urlencoded_query::<Raw>(req.query_string()).and_then(|raw| {
            PageRequest::parse(raw.limit.as_deref(), raw.cursor.as_deref(), key).map_err(ApiError::from)
        });
        ready(parsed.map(Paging))
    }
}

fn serde_urlencoded_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    web::Query::<T>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::Malformed("The query string is malformed.".into()))
}

/// A JSON body of at most 64 KiB, sent as `application/json` within the body deadline
/// ([`BodyTimeout`]), with a fingerprint of its bytes for idempotency keys.
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// A hash of the raw bytes.
    pub fingerprint: u128,
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence.to_ascii_lowercase().starts_with("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// Parses `bytes` as the JSON object `T`: malformed JSON (trailing garbage included) is 400,
/// well-formed JSON of the wrong shape is 422 naming the field (`body` for the whole of it).
///
/// The bytes are parsed as JSON first and only then shaped into `T`, so that every shape
/// error is a 422 (serde_json reports some of them, such as a number where an enum belongs,
/// as syntax errors when it deserializes `T` straight from the bytes).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::Malformed("The body is not valid JSON.".into()))?;
    if !value.is_object() {
        // Also keeps serde from reading an array as a struct's fields in order.
        return Err(Error::invalid("body", "must be a JSON object").into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { "body".to_owned() } else { field };
        let message = e.into_inner().to_string();
        ApiError::Domain(Error::Validation(vec![plinth_domain::FieldError::new(field, message)]))
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let too_long = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > BODY_LIMIT);
        let deadline = req.app_data::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        let body = Bytes::from_request(req, payload);
        Box::pin(async move {
            if too_long {
                return Err(ApiError::PayloadTooLarge);
            }
            // A client that trickles its body would otherwise hold the connection (and this
            // request's buffers) for as long as it likes.
            let read = tokio::time::timeout(deadline, body).await.map_err(|_| ApiError::RequestTimeout)?;
            let bytes: Bytes = read.map_err(|e| {
                if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::Malformed("The body could not be read.".into())
                }
            })?;
            if !json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let value = parse_json(&bytes)?;
            Ok(Self { value, fingerprint: xxhash_rust::xxh3::xxh3_128(&bytes) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Role {
        Owner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct WithRole {
        role: Role,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u8,
    }

    #[test]
    fn malformed_json_is_a_bad_request_and_the_wrong_shape_names_its_field() {
        assert!(matches!(parse_json::<Body>(b"{\"name\": "), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<Body>(b"not json"), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<Body>(br#"{"name": "x", "count": 1} trailing"#), Err(ApiError::Malformed(_))));
        match parse_json::<Body>(br#"{"name": "x", "count": 300}"#) {
            Err(ApiError::Domain(Error::Validation(e))) => assert_eq!(e[0].field, "count"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"count": 1}"#) {
            Err(ApiError::Domain(Error::Validation(e))) => assert!(e[0].message.contains("name"), "{e:?}"),
            other => panic!("{other:?}"),
        }
        match parse_json::<WithRole>(br#"{"role": 1}"#) {
            Err(ApiError::Domain(Error::Validation(e))) => assert_eq!(e[0].field, "role"),
            other => panic!("{other:?}"),
        }
        for not_an_object in [&b"1"[..], b"null", b"\"name\""] {
            match parse_json::<Body>(not_an_object) {
                Err(ApiError::Domain(Error::Validation(e))) => assert_eq!(e[0].field, "body"),
                other => panic!("{other:?}"),
            }
        }
        match parse_json::<Body>(b"[1]") {
            Err(ApiError::Domain(Error::Validation(e))) => assert_eq!(e[0].field, "body"),
            other => panic!("{other:?}"),
        }
    }
}
