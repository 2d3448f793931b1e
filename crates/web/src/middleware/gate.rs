//! The gate in front of `/v1`: the class of the path as routed, the bearer token, the rate
//! limit (by the policy the class and the token pick) and the tenant (from the host), in an
//! order that keeps anything anonymous from reaching the database past its quota (see
//! [`gate`]). What it learns is left in the request's extensions as a [`RequestCtx`] for the
//! extractors.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error as ActixError, HttpMessage as _, HttpRequest, ResponseError as _, web};
use plinth_domain::Error;
use plinth_domain::entities::Tenant;
use plinth_domain::host::{BaseDomain, HostTarget};
use plinth_domain::ports::Claims;
use plinth_domain::ports::{Decision, Policy, Quota};
use plinth_domain::timing::{self, Phase};
use plinth_domain::usecases::{Caller, Principal, Subject};
use plinth_domain::values::ApiKeyToken;

use super::client_ip::{bucket, client_info, client_of};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics::{RATE_LIMIT_FAIL_OPEN, RATE_LIMIT_REJECTIONS};

/// What the gate found out about a request.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The tenant the host names (none on the platform host).
    pub tenant: Option<Arc<Tenant>>,
    /// What the `Authorization` header established.
    pub auth: AuthState,
}

/// The outcome of looking at the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthState {
    /// No bearer token.
    Missing,
    /// A bearer token that is not valid on this host.
    Invalid,
    /// A valid token.
    Valid(Principal),
}

/// Which rules a path falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Signup: the platform host, the login quota.
    Signup,
    /// Login, refresh, and the requests that carry an emailed token or ask for one (password
    /// reset, verification, accepting an invitation): a tenant host, the login quota.
    Login,
    /// Everything else under `/v1`: a tenant host, the tenant or IP quota.
    Tenant,
    /// A password change: a tenant request that checks a password, so each attempt is counted
    /// by the client's login quota as well as by its tenant's (guessing the current password
    /// with a stolen access token is as slow as guessing it at login).
    Credentials,
}

/// The class of `path`, which must be the path as actix's router matches it (percent-decoded
/// but for `%2F`, `%25` and `%2B`: `req.match_info().as_str()`), never the path as written,
/// so that every spelling that reaches a handler falls under that handler's rules.
fn classify(path: &str) -> Class {
    match path {
        "/v1/signup" => Class::Signup,
        "/v1/auth/login"
        | "/v1/auth/refresh"
        | "/v1/auth/password-reset"
        | "/v1/auth/password-reset/confirm"
        | "/v1/auth/verify-email"
        | "/v1/invitations/accept" => Class::Login,
        "/v1/me/password" => Class::Credentials,
        _ => Class::Tenant,
    }
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `Bearer` token of the `Authorization` header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    // UTF-8 rather than `to_str`'s visible-ASCII check, which goes byte by byte: anything
    // else a token holds fails its own decoding.
    let value = std::str::from_utf8(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the request's host addresses: its `Host` header, else its URI's authority.
pub(crate) fn host_target(req: &HttpRequest, base_domain: &BaseDomain) -> HostTarget {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    base_domain.classify(host.or_else(|| req.uri().host()))
}

/// The policy, quota and decision that counted a request, if the limiter answered.
pub(crate) type Limit = Option<(Policy, Quota, Decision)>;

/// A bearer credential that checks out before anything is looked up: a JWT whose signature
/// and claims verify, or an API key whose check verifies (a key this server issued; whether it
/// is its tenant's, live and unrevoked is looked up once the host's tenant is known).
enum Credential {
    Jwt(Claims),
    Key(ApiKeyToken),
}

/// The credential `token` carries, if it checks out on its own.
fn credential(state: &AppState, token: &str) -> Option<Credential> {
    if ApiKeyToken::looks_like(token) {
        state.plinth.parse_key(token).ok().map(Credential::Key)
    } else {
        state.plinth.verify_token(token).ok().map(Credential::Jwt)
    }
}

/// Of two limits that both counted a request, the one closer to running out (by the share of
/// its quota left): the one whose headers the client needs.
fn tighter(a: Limit, b: Limit) -> Limit {
    match (a, b) {
        (Some(x), Some(y)) => {
            // remaining/limit compared without division: x.r * y.l vs y.r * x.l.
            let share = |l: &(Policy, Quota, Decision), other: &(Policy, Quota, Decision)| {
                u64::from(l.2.remaining) * u64::from(other.1.per_minute.get())
            };
            if !y.2.allowed || (x.2.allowed && share(&y, &x) < share(&x, &y)) { Some(y) } else { Some(x) }
        }
        (x, None) => x,
        (None, y) => y,
    }
}

/// Tenant, auth and rate limit for one request.
///
/// A request is counted by exactly one policy, and before anything it names is looked up,
/// unless it carries a token that verifies: signup and login by the login policy, anything
/// else without such a token by the IP policy, and only then is its host's tenant resolved
/// (which may reach the database). A verified token's host is resolved first, since its
/// tenant's plan counts it if the host is that tenant's.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, ActixError> {
    // Until the handler is called (or the request refused): dropped at either.
    let gate_time = timing::measure(Phase::Gate);
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::Domain(Error::internal("application state is missing")).into());
    };
    let class = classify(req.match_info().as_str());
    let target = host_target(req.request(), &state.base_domain);
    let token = bearer(req.headers());
    // A documented path asked with a method it lacks gets 405 with `Allow` from the router's
    // default service on any host: it needs no tenant, and looking one up would turn it into
    // a 404 on a host that names none. Asked only when the answer changes what happens (the
    // host names no tenant, or no tenant is found): walking the route table on every request
    // cost a twentieth of a cached read.
    let routed = || !state.routes.lacks_method(req.path(), req.method().as_str());
    let credential = match (class, token) {
        (Class::Tenant | Class::Credentials, Some(token)) => credential(&state, token),
        _ => None,
    };

    let (tenant, auth, limit) = match credential {
        Some(credential) => {
            let tenant = tenant_of(&state, class, target, routed).await;
            let auth = match &tenant {
                Ok(Some(t)) => {
                    let principal = match &credential {
                        Credential::Jwt(claims) => state.plinth.authenticate(t, claims).await,
                        Credential::Key(key) => state.plinth.authenticate_key(t, key).await,
                    };
                    match principal {
                        Ok(p) => AuthState::Valid(p),
                        Err(Error::InvalidToken) => AuthState::Invalid,
                        Err(e) => return Ok(reject(req, ApiError::Domain(e), None)),
                    }
                }
                _ => AuthState::Invalid,
            };
            let subject = match (auth, &tenant) {
                (AuthState::Valid(_), Ok(Some(t))) => Subject::Tenant(t),
                _ => Subject::Ip(client(&req, &state)),
            };
            // A key with its own quota is counted by it first: what it refuses never spends its
            // tenant's quota (a capped key can't lock its tenant out).
            let own = match auth {
                AuthState::Valid(Principal { caller: Caller::Key { key, quota: Some(quota) }, .. }) => {
                    count(&state, Subject::Key(key, quota)).await
                }
                _ => None,
            };
            if let Some(refusal) = refused(own) {
                return Ok(too_many(req, refusal, auth));
            }
            let limit = tighter(count(&state, subject).await, own);
            if let Some(refusal) = refused(limit) {
                return Ok(too_many(req, refusal, auth));
            }
            if class == Class::Credentials {
                let login = count(&state, Subject::Login(client(&req, &state))).await;
                if let Some(refusal) = refused(login) {
                    return Ok(too_many(req, refusal, auth));
                }
            }
            (tenant, auth, limit)
        }
        None => {
            let auth = if token.is_some() { AuthState::Invalid } else { AuthState::Missing };
            let ip = client(&req, &state);
            let subject = match class {
                Class::Tenant | Class::Credentials => Subject::Ip(ip),
                Class::Signup | Class::Login => Subject::Login(ip),
            };
            let limit = count(&state, subject).await;
            if let Some(refusal) = refused(limit) {
                return Ok(too_many(req, refusal, auth));
            }
            (tenant_of(&state, class, target, routed).await, auth, limit)
        }
    };
    let tenant = match tenant {
        Ok(t) => t,
        Err(e) => return Ok(reject(req, ApiError::Domain(e), limit)),
    };

    // A request that may change something carries its origin to the audit entries it writes.
    let origin = (!req.method().is_safe()).then(|| origin(req.request(), &state));
    req.extensions_mut().insert(RequestCtx { tenant, auth });
    drop(gate_time);
    let mut res = match origin {
        Some(origin) => plinth_domain::audit::with_origin(origin, next.call(req)).await?,
        None => next.call(req).await?,
    }
    .map_into_left_body();
    // A 429 from the handler was refused by another count than this policy's (a mailbox's, a
    // tenant's queue): this policy's `RateLimit` would tell the client it may go on at once.
    if let Some((policy, quota, d)) = &limit
        && res.status() != StatusCode::TOO_MANY_REQUESTS
    {
        ratelimit_headers(res.headers_mut(), *policy, *quota, d);
    }
    if matches!(auth, AuthState::Valid(_)) {
        make_private(res.headers_mut());
    }
    Ok(res)
}

/// The tenant the host names, for a request of `class`: none for signup on the platform host,
/// nor for a request no route takes (`routed()` false). `routed` is asked only when its answer
/// matters: when the host names no tenant, or names one that is not found.
async fn tenant_of(
    state: &AppState,
    class: Class,
    target: HostTarget,
    routed: impl Fn() -> bool,
) -> Result<Option<Arc<Tenant>>, Error> {
    // A request no route takes gets its 405, which needs no tenant: a host that names none
    // must not turn it into a 404; but a valid token on its tenant's host is still counted by
    // that tenant's plan.
    let unless_unrouted = |e: Error| if routed() { Err(e) } else { Ok(None) };
    match (class, target) {
        (Class::Signup, HostTarget::Platform) => Ok(None),
        (Class::Signup, HostTarget::Tenant(slug)) if !routed() => Ok(state.plinth.resolve_tenant(&slug).await.ok()),
        (Class::Signup, _) => unless_unrouted(Error::NotFound),
        (_, HostTarget::Tenant(slug)) => match state.plinth.resolve_tenant(&slug).await {
            Ok(tenant) => Ok(Some(tenant)),
            Err(e) => unless_unrouted(e),
        },
        (_, _) => unless_unrouted(Error::TenantNotFound),
    }
}

/// What the per-address policies count the request as: the client's address (see
/// [`client_ip`]), an IPv6 one by its prefix.
pub(crate) fn client(req: &ServiceRequest, state: &AppState) -> IpAddr {
    bucket(client_of(req.request(), &state.trusted_proxies), state.ipv6_prefix)
}

/// Where a request comes from, for the audit log: its id, the client's whole address and its
/// `User-Agent` (cut as a session's is). The gate sets it for requests that may write; a read
/// that is audited (an export) sets it itself.
pub(crate) fn origin(req: &HttpRequest, state: &AppState) -> plinth_domain::audit::Origin {
    let client = client_info(req, &state.trusted_proxies);
    let request_id =
        req.extensions().get::<super::request_id::RequestId>().and_then(|id| id.0.to_str().ok().map(str::to_owned));
    plinth_domain::audit::Origin { request_id, ip: client.ip, user_agent: client.user_agent }
}

/// Counts one request of `subject`.
pub(crate) async fn count(state: &AppState, subject: Subject<'_>) -> Limit {
    let (policy, quota) = state.plinth.quota(&subject);
    match state.plinth.admit(subject).await {
        Ok((_, decision)) => Some((policy, quota, decision)),
        Err(e) => {
            // The limiter already falls back to the local one; failing open beats failing all.
            tracing::warn!(error = %e, "rate limiter failed; admitting the request");
            metrics::counter!(RATE_LIMIT_FAIL_OPEN).increment(1);
            None
        }
    }
}

/// The limit, if it refused the request.
pub(crate) fn refused(limit: Limit) -> Option<(Policy, Quota, Decision)> {
    limit.filter(|(_, _, d)| !d.allowed)
}

/// 429, with the policy's headers; `private` when the request was authenticated.
pub(crate) fn too_many<B>(
    req: ServiceRequest,
    refusal: (Policy, Quota, Decision),
    auth: AuthState,
) -> ServiceResponse<EitherBody<B>> {
    let (policy, _, d) = refusal;
    metrics::counter!(RATE_LIMIT_REJECTIONS, "policy" => policy.as_str()).increment(1);
    let mut res = reject(req, ApiError::RateLimited { retry_after: d.retry_after_secs }, Some(refusal));
    if matches!(auth, AuthState::Valid(_)) {
        make_private(res.headers_mut());
    }
    res
}

/// An authenticated answer is `private` and never `public`: `private` replaces a `public`
/// value and is added to any other (`no-store` becomes `private, no-store`).
fn make_private(headers: &mut HeaderMap) {
    let directives = |v: &HeaderValue| -> Vec<String> {
        v.to_str().unwrap_or_default().split(',').map(|d| d.trim().to_ascii_lowercase()).collect()
    };
    let value = match headers.get(header::CACHE_CONTROL).map(directives) {
        None => HeaderValue::from_static("private"),
        Some(d) if d.iter().any(|d| d == "public") => HeaderValue::from_static("private"),
        Some(d) if d.iter().any(|d| d == "private") => return,
        Some(d) => match HeaderValue::from_str(&format!("private, {}", d.join(", "))) {
            Ok(v) => v,
            Err(_) => HeaderValue::from_static("private"),
        },
    };
    headers.insert(header::CACHE_CONTROL, value);
}

pub(crate) fn reject<B>(req: ServiceRequest, error: ApiError, limit: Limit) -> ServiceResponse<EitherBody<B>> {
    let mut res = req.into_response(error.error_response()).map_into_right_body();
    if let Some((policy, quota, d)) = &limit {
        ratelimit_headers(res.headers_mut(), *policy, *quota, d);
    }
    res
}

/// `RateLimit-Policy: "tenant";q=300;w=60` and `RateLimit: "tenant";r=299;t=1`, written
/// without `format!` (they go on every answer).
fn ratelimit_headers(headers: &mut HeaderMap, policy: Policy, quota: Quota, d: &Decision) {
    let name = policy.as_str();
    let mut n = itoa::Buffer::new();
    let mut value = Vec::with_capacity(48);
    for part in ["\"", name, "\";q=", n.format(quota.per_minute.get()), ";w="] {
        value.extend_from_slice(part.as_bytes());
    }
    value.extend_from_slice(n.format(Quota::WINDOW_SECS).as_bytes());
    let split = value.len();
    for part in ["\"", name, "\";r=", n.format(d.remaining), ";t="] {
        value.extend_from_slice(part.as_bytes());
    }
    value.extend_from_slice(n.format(d.reset_secs).as_bytes());
    let value = bytes::Bytes::from(value);
    if let (Ok(p), Ok(v)) =
        (HeaderValue::from_maybe_shared(value.slice(..split)), HeaderValue::from_maybe_shared(value.slice(split..)))
    {
        headers.insert(RATELIMIT_POLICY, p);
        headers.insert(RATELIMIT, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_found_whatever_the_scheme_case() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
        assert_eq!(bearer(&h), Some("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn an_authenticated_answer_is_private_and_never_public() {
        let private = |cc: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(cc) = cc {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
            }
            make_private(&mut h);
            h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        assert_eq!(private(None), "private");
        assert_eq!(private(Some("public, max-age=60")), "private");
        assert_eq!(private(Some("max-age=60, Public")), "private");
        assert_eq!(private(Some("no-store")), "private, no-store");
        assert_eq!(private(Some("private, max-age=5")), "private, max-age=5");
    }

    #[test]
    fn ratelimit_headers_name_the_policy_quota_and_what_remains() {
        let mut h = HeaderMap::new();
        let quota = Quota::per_minute(300).unwrap_or(Quota { per_minute: std::num::NonZeroU32::MIN });
        let d = Decision { allowed: true, limit: 300, remaining: 299, reset_secs: 1, retry_after_secs: 0 };
        ratelimit_headers(&mut h, Policy::Tenant, quota, &d);
        assert_eq!(h.get(RATELIMIT_POLICY).map(HeaderValue::as_bytes), Some(&b"\"tenant\";q=300;w=60"[..]));
        assert_eq!(h.get(RATELIMIT).map(HeaderValue::as_bytes), Some(&b"\"tenant\";r=299;t=1"[..]));
    }

    #[test]
    fn signup_and_login_are_their_own_classes() {
        assert_eq!(classify("/v1/signup"), Class::Signup);
        assert_eq!(classify("/v1/auth/login"), Class::Login);
        for path in [
            "/v1/auth/password-reset",
            "/v1/auth/password-reset/confirm",
            "/v1/auth/verify-email",
            "/v1/invitations/accept",
        ] {
            assert_eq!(classify(path), Class::Login, "{path}");
        }
        assert_eq!(classify("/v1/invitations"), Class::Tenant);
        assert_eq!(classify("/v1/projects"), Class::Tenant);
        assert_eq!(classify("/v1/me/password"), Class::Credentials);
        assert_eq!(classify("/v1/signup/"), Class::Tenant);
    }
}
