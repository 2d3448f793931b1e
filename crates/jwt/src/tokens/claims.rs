//! The claims as they travel in a token, and the reasons a presented token is refused.

use plinth_domain::ids::{SessionId, TenantId, UserId};
use plinth_domain::ports::Claims;
use plinth_domain::values::Role;
use serde::{Deserialize, Serialize};

/// The claims of a token being issued.
#[derive(Debug, Serialize)]
pub(super) struct Issued<'a> {
    pub(super) sub: UserId,
    pub(super) tid: TenantId,
    pub(super) role: Role,
    pub(super) ver: u32,
    pub(super) sid: SessionId,
    pub(super) iat: i64,
    pub(super) exp: i64,
    pub(super) iss: &'a str,
    pub(super) aud: &'a str,
}

/// The claims of a presented token whose signature, `iss` and `aud` `jsonwebtoken` has checked
/// (`exp` is checked by [`Presented::into_claims`], against the injected clock). Every claim is required. `iss` and `aud` are single strings: an array, which
/// `jsonwebtoken` would accept when any element matched, fails to deserialise, so both must
/// equal the configured value exactly. `iat` and `exp` are integers (no fractional seconds).
#[derive(Debug, Deserialize)]
pub(super) struct Presented {
    sub: String,
    tid: String,
    role: String,
    /// The user's token version; tokens issued before versions existed carry none and count
    /// as version 0, the version every user started with.
    #[serde(default)]
    ver: u32,
    /// The session; required: a token issued before sessions existed belongs to none, and is
    /// refused (its user signs in again).
    sid: String,
    iat: i64,
    exp: i64,
    #[allow(dead_code, reason = "checked by jsonwebtoken; declared so that it must be a string")]
    iss: String,
    #[allow(dead_code, reason = "checked by jsonwebtoken; declared so that it must be a string")]
    aud: String,
}

impl Presented {
    /// The domain's claims, if every claim is well-formed, the token has not expired and was
    /// not issued later than `now` (either give or take `leeway` seconds of clock skew between
    /// instances: a token is refused once `exp` is more than `leeway` seconds past).
    pub(super) fn into_claims(self, now: i64, leeway: i64) -> Result<Claims, Refusal> {
        let user = self.sub.parse::<UserId>().map_err(|_| Refusal::Claims)?;
        let tenant = self.tid.parse::<TenantId>().map_err(|_| Refusal::Claims)?;
        let role = self.role.parse::<Role>().map_err(|_| Refusal::Claims)?;
        let session = self.sid.parse::<SessionId>().map_err(|_| Refusal::Claims)?;
        if self.exp < now.saturating_sub(leeway) {
            return Err(Refusal::Expired);
        }
        if self.iat > now.saturating_add(leeway) || self.iat > self.exp {
            return Err(Refusal::IssuedLater);
        }
        Ok(Claims { user, tenant, role, version: self.ver, session, issued_at: self.iat, expires_at: self.exp })
    }
}

/// Why a token was refused: for the debug log only; the caller always sees `InvalidToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Longer than any token this service issues.
    TooLong,
    /// Not three base64url parts, or a header that is not a JOSE header.
    Malformed,
    /// The header names another algorithm than the pinned one (`none` included).
    Algorithm,
    /// No trusted key has the header's `kid`, or there is none.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// Past `exp`.
    Expired,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` is not the configured audience.
    Audience,
    /// A claim is missing or malformed.
    Claims,
    /// `iat` is in the future or after `exp`.
    IssuedLater,
}

impl Refusal {
    /// The reason, for a log field.
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Self::TooLong => "too long",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm not allowed",
            Self::UnknownKey => "unknown key id",
            Self::Signature => "bad signature",
            Self::Expired => "expired",
            Self::Issuer => "wrong issuer",
            Self::Audience => "wrong audience",
            Self::Claims => "missing or malformed claims",
            Self::IssuedLater => "issued in the future",
        }
    }
}
