//! `JwtTokens`: the `TokenService` over `jsonwebtoken`, with the algorithm pinned by configuration.
//!
//! A token is verified only with the configured algorithm: the header's `alg` must name it
//! before any key is looked at, so neither `none` nor HS256-signed-with-a-public-key (the
//! HS/RS confusion) can get through. Asymmetric keys are chosen by the header's `kid` from
//! the configured set, never taken from the token (`jwk`, `jku` and `x5u` are ignored).

mod claims;
mod config;
mod keys;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Validation, decode, decode_header, encode};
use plinth_domain::ids::{SessionId, TenantId, UserId};
use plinth_domain::ports::{AccessToken, Claims, Clock, TokenService};
use plinth_domain::values::Role;
use plinth_domain::{Error, Result};

use self::claims::{Issued, Presented, Refusal};
use self::config::MAX_TTL;
pub use self::config::{AsymmetricAlgorithm, JwtConfig, JwtConfigError, KeyMaterial, KeySource};
use self::keys::KeySet;

/// Clock skew tolerated between the instance that issued a token and the one verifying it,
/// in seconds. Instances are NTP-synchronised, so a few seconds is plenty; more would only
/// stretch every token's life past its `exp`.
const LEEWAY_SECS: i64 = 5;

/// The longest token looked at. Issued tokens are well under 1 KiB (an RS256 signature is
/// 342 characters); anything far longer is refused before it is decoded or hashed.
const MAX_TOKEN_LEN: usize = 4096;

/// Tokens whose verification is remembered: a token is presented on every request, and
/// decoding and checking it again each time cost more than the rest of a cached answer.
const VERIFIED_TOKENS: usize = 32_768;

/// Issues and verifies access tokens with one pinned algorithm.
pub struct JwtTokens {
    /// Tokens that passed every check, with their claims: the exact same bytes verify the same
    /// way until `exp` (which is checked again on every use). Bounded; nothing else is cached
    /// (a refused token is checked afresh each time).
    verified: quick_cache::sync::Cache<String, Claims>,
    keys: KeySet,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Validated to lie in 1..=MAX_TTL seconds.
    ttl_secs: i64,
    /// `iat` and `exp` of issued tokens, and the time presented tokens are checked against.
    clock: Arc<dyn Clock>,
}

impl JwtTokens {
    /// Checks `config` and its keys. The keys are parsed and tried once here, so a bad key
    /// fails start-up rather than every request. Tokens are issued and checked at `clock`'s
    /// time.
    pub fn new(config: JwtConfig, clock: Arc<dyn Clock>) -> Result<Self, JwtConfigError> {
        if config.issuer.is_empty() {
            return Err(JwtConfigError::Empty("issuer"));
        }
        if config.audience.is_empty() {
            return Err(JwtConfigError::Empty("audience"));
        }
        if config.ttl.as_secs() == 0 || config.ttl > MAX_TTL {
            return Err(JwtConfigError::InvalidTtl);
        }
        let ttl_secs = i64::try_from(config.ttl.as_secs()).map_err(|_| JwtConfigError::InvalidTtl)?;
        let keys = KeySet::build(config.keys)?;

        let mut validation = Validation::new(keys.algorithm());
        validation.leeway = LEEWAY_SECS.unsigned_abs();
        // `tid`, `role`, `sid` and `iat` are required by `Presented`, which has no default for them.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        // `jsonwebtoken` would check `exp` against the system's clock; `Presented::into_claims`
        // checks it against ours, with the same leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;

        Ok(Self {
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
            keys,
            validation,
            issuer: config.issuer,
            audience: config.audience,
            ttl_secs,
            clock,
        })
    }

    /// A token as `issue` makes it, in a new session, but issued at `iat` (Unix seconds).
    #[cfg(test)]
    fn issue_at(&self, user: UserId, tenant: TenantId, role: Role, version: u32, iat: i64) -> Result<AccessToken> {
        self.issue_in(user, tenant, role, version, SessionId::new(), iat)
    }

    /// A token as `issue` makes it, but issued at `iat` (Unix seconds).
    fn issue_in(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        version: u32,
        session: SessionId,
        iat: i64,
    ) -> Result<AccessToken> {
        let claims = Issued {
            sub: user,
            tid: tenant,
            role,
            ver: version,
            sid: session,
            iat,
            exp: iat.saturating_add(self.ttl_secs),
            iss: &self.issuer,
            aud: &self.audience,
        };
        let token = encode(&self.keys.header(), &claims, self.keys.signing_key()).map_err(Error::internal)?;
        Ok(AccessToken { token, expires_in: self.ttl_secs.unsigned_abs() })
    }

    /// Now, in Unix seconds.
    fn unix_now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// The claims of `token`, or why it is refused.
    fn check(&self, token: &str) -> Result<Claims, Refusal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::TooLong);
        }
        let header = decode_header(token).map_err(|_| Refusal::Malformed)?;
        if header.alg != self.keys.algorithm() {
            return Err(Refusal::Algorithm);
        }
        let key = self.keys.verification_key(header.kid.as_deref()).ok_or(Refusal::UnknownKey)?;
        let data = decode::<Presented>(token, key, &self.validation).map_err(|e| refusal(&e))?;
        data.claims.into_claims(self.unix_now(), LEEWAY_SECS)
    }
}

impl TokenService for JwtTokens {
    fn issue(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        version: u32,
        session: SessionId,
    ) -> Result<AccessToken> {
        self.issue_in(user, tenant, role, version, session, self.unix_now())
    }

    fn verify(&self, token: &str) -> Result<Claims> {
        let now = self.unix_now();
        if let Some(claims) = self.verified.get(token) {
            if claims.expires_at.saturating_add(LEEWAY_SECS) >= now {
                return Ok(claims);
            }
            self.verified.remove(token);
        }
        match self.check(token) {
            Ok(claims) => {
                self.verified.insert(token.to_owned(), claims);
                Ok(claims)
            }
            Err(reason) => {
                tracing::debug!(reason = reason.as_str(), "access token refused");
                Err(Error::InvalidToken)
            }
        }
    }
}

impl fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtTokens")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// What a `jsonwebtoken` failure says about the token.
fn refusal(e: &JwtError) -> Refusal {
    match e.kind() {
        ErrorKind::InvalidSignature => Refusal::Signature,
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::InvalidAlgorithm => Refusal::Algorithm,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => Refusal::Claims,
        _ => Refusal::Malformed,
    }
}
