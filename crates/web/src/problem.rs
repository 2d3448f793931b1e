//! The one place where errors become RFC 9457 problem documents.
//!
//! Every error the API answers with goes through [`ApiError`]. A 500 logs its whole cause
//! chain and tells the client nothing of it; no detail ever carries SQL, a secret, or another
//! tenant's data.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use plinth_domain::Error;
use plinth_domain::error::{Conflict, FieldError};
use serde::Serialize;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A use case or port failed.
    #[error(transparent)]
    Domain(#[from] Error),
    /// A malformed body: not JSON at all.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body did not arrive within `PLINTH_BODY_TIMEOUT_S`.
    #[error("request body timed out")]
    RequestTimeout,
    /// A body without `Content-Type: application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A known path with a method it doesn't have; carries the `Allow` value.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// A quota is exhausted.
    #[error("rate limited")]
    RateLimited {
        /// Whole seconds until a request is admitted again.
        retry_after: u64,
    },
}

/// The problem document's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` says what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    /// The status's reason phrase.
    #[schema(example = "Too Many Requests")]
    pub title: &'static str,
    /// The HTTP status.
    #[schema(example = 429)]
    pub status: u16,
    /// What happened, for a human.
    #[schema(example = "Rate limit exceeded. Please slow down.")]
    pub detail: String,
    /// Stable and machine-readable.
    #[schema(example = "rate_limited")]
    pub code: &'static str,
    /// Per-field failures, for `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For `plan_limit_reached`: what is limited (`members`, `projects`, `webhooks`,
    /// `api_keys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "projects")]
    pub resource: Option<&'static str>,
    /// For `plan_limit_reached`: the plan's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 100)]
    pub limit: Option<u32>,
    /// For `plan_limit_reached`: how many the tenant has.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 100)]
    pub usage: Option<u64>,
}

/// Seconds a client should wait after a 503.
const UNAVAILABLE_RETRY_AFTER: &str = "1";
/// Seconds a client should wait after `queue_full`: long enough for workers to drain a few
/// hundred deliveries.
const QUEUE_FULL_RETRY_AFTER: &str = "30";

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        match self {
            Self::Malformed(m) => (S::BAD_REQUEST, "bad_request", m.clone()),
            Self::PayloadTooLarge => {
                (S::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is over 64 KiB.".into())
            }
            Self::RequestTimeout => {
                (S::REQUEST_TIMEOUT, "request_timeout", "The request body did not arrive in time.".into())
            }
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with Content-Type: application/json.".into(),
            ),
            Self::MethodNotAllowed(_) => {
                (S::METHOD_NOT_ALLOWED, "method_not_allowed", "This path does not support this method.".into())
            }
            Self::RateLimited { .. } => {
                (S::TOO_MANY_REQUESTS, "rate_limited", "Rate limit exceeded. Please slow down.".into())
            }
            Self::Domain(e) => domain_parts(e),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Domain(e) => domain_problem(e),
            _ => {
                let (status, code, detail) = self.parts();
                problem(status, code, detail, None)
            }
        }
    }
}

/// Status, code and detail of a domain error.
fn domain_parts(e: &Error) -> (StatusCode, &'static str, String) {
    use StatusCode as S;
    match e {
        Error::Validation(_) => {
            (S::UNPROCESSABLE_ENTITY, "validation_failed", "The request breaks a validation rule.".into())
        }
        Error::BadRequest(m) => (S::BAD_REQUEST, "bad_request", capitalise(m)),
        Error::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "A bearer token is required.".into()),
        Error::InvalidToken => (S::UNAUTHORIZED, "invalid_token", "The bearer token is not valid here.".into()),
        Error::InvalidCredentials => {
            (S::UNAUTHORIZED, "invalid_credentials", "The email or the password is wrong.".into())
        }
        Error::InvalidEmailToken => (
            S::BAD_REQUEST,
            "invalid_email_token",
            "This link is not valid: it may have been used, have expired or been revoked. Ask for a new one.".into(),
        ),
        Error::EmailUnverified => {
            (S::FORBIDDEN, "email_unverified", "Verify your email address before making changes.".into())
        }
        Error::Forbidden(m) => (S::FORBIDDEN, "forbidden", capitalise(m)),
        Error::PlanLimitReached { resource, limit, .. } => (
            S::FORBIDDEN,
            "plan_limit_reached",
            format!(
                "This tenant's plan allows {limit} {}; upgrade the plan or remove some first.",
                resource.replace('_', " ")
            ),
        ),
        Error::InsufficientScope(scope) => {
            (S::FORBIDDEN, "insufficient_scope", format!("This API key lacks the scope this route needs: {scope}."))
        }
        Error::TenantNotFound => (S::NOT_FOUND, "tenant_not_found", "No tenant is served at this host.".into()),
        Error::TenantSuspended => (
            S::FORBIDDEN,
            "tenant_suspended",
            "This tenant is suspended: nothing is served here until it is resumed.".into(),
        ),
        Error::NotFound => (S::NOT_FOUND, "not_found", "No such resource.".into()),
        Error::Conflict(c @ Conflict::ExportRunning) => (S::CONFLICT, "export_in_progress", capitalise(&c.to_string())),
        Error::Conflict(c) => (S::CONFLICT, "conflict", capitalise(&c.to_string())),
        Error::IdempotencyKeyReused => (
            S::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.".into(),
        ),
        Error::RateLimited { .. } => {
            (S::TOO_MANY_REQUESTS, "rate_limited", "Rate limit exceeded. Please slow down.".into())
        }
        Error::QueueFull => (
            S::TOO_MANY_REQUESTS,
            "queue_full",
            "This tenant has too many webhook deliveries waiting. Retry after they drain.".into(),
        ),
        Error::Unavailable { .. } => {
            (S::SERVICE_UNAVAILABLE, "service_unavailable", "A dependency is unavailable. Please retry shortly.".into())
        }
        Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "An internal error occurred.".into()),
    }
}

/// The problem document of a domain error: the body `ApiError::Domain(e)` answers with.
pub fn domain_problem(e: &Error) -> Problem {
    let (status, code, detail) = domain_parts(e);
    let errors = match e {
        Error::Validation(errors) => Some(errors.clone()),
        _ => None,
    };
    let mut p = problem(status, code, detail, errors);
    if let Error::PlanLimitReached { resource, limit, usage } = e {
        (p.resource, p.limit, p.usage) = (Some(*resource), Some(*limit), Some(*usage));
    }
    p
}

fn problem(status: StatusCode, code: &'static str, detail: String, errors: Option<Vec<FieldError>>) -> Problem {
    Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        code,
        errors,
        resource: None,
        limit: None,
        usage: None,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).chain(std::iter::once('.')).collect(),
        None => String::new(),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Domain(e @ Error::Internal(_)) => log_cause("internal error", e),
            Self::Domain(e @ Error::Unavailable { .. }) => log_unavailable(e),
            _ => {}
        }
        let problem = self.problem();
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            Self::Domain(Error::Unauthorized) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::Domain(Error::InvalidToken) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            Self::Domain(Error::Unavailable { .. }) => {
                res.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER));
            }
            Self::Domain(Error::QueueFull) => {
                res.insert_header((header::RETRY_AFTER, QUEUE_FULL_RETRY_AFTER));
            }
            Self::RateLimited { retry_after } | Self::Domain(Error::RateLimited { retry_after_secs: retry_after }) => {
                res.insert_header((header::RETRY_AFTER, retry_after.max(&1).to_string()));
            }
            Self::MethodNotAllowed(allow) => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            Self::RequestTimeout => {
                // The rest of the body may still trickle in: the connection can't be reused.
                res.force_close();
            }
            _ => {}
        }
        res.body(crate::api::respond::serialize(&problem).unwrap_or_default())
    }
}

/// A dependency outage is expected operation, not a bug: a warning, with its cause.
fn log_unavailable(e: &Error) {
    let cause = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
    tracing::warn!(error = %e, cause = %cause, "answered 503");
}

/// Logs an error with its whole cause chain.
fn log_cause(what: &str, e: &Error) {
    tracing::error!(error = %e.chain(), "{what}");
}

impl From<Conflict> for ApiError {
    fn from(c: Conflict) -> Self {
        Self::Domain(Error::Conflict(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_tells_the_client_nothing_of_its_cause() {
        let e = ApiError::Domain(Error::internal("relation \"projects\" does not exist at SELECT secret"));
        let body = serde_json::to_string(&e.problem()).unwrap_or_default();
        assert!(!body.contains("SELECT") && !body.contains("projects"), "{body}");
        assert!(body.contains("\"code\":\"internal\""));
    }

    #[test]
    fn validation_failures_list_their_fields() {
        let e = ApiError::Domain(Error::invalid("name", "must be 1 to 255 characters"));
        let p = e.problem();
        assert_eq!((p.status, p.code), (422, "validation_failed"));
        assert_eq!(p.errors.map(|e| e[0].field.clone()).as_deref(), Some("name"));
    }
}
