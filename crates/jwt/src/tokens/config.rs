//! What `JwtTokens` is built from: the algorithm and its keys, the issuer, audience and lifetime.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::TryRngCore;
use rand::rngs::OsRng;

/// The shortest HS256 secret accepted, in bytes: the size of an HMAC-SHA256 output, the
/// minimum RFC 7518 §3.2 allows.
pub(super) const MIN_SECRET_LEN: usize = 32;

/// The longest token lifetime accepted: far more than an access token should live, so it
/// only catches a unit mistake (milliseconds given as seconds).
pub(super) const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Key bytes (an HMAC secret, a private key's PEM). `Debug` never prints them.
#[derive(Clone)]
pub struct KeyMaterial(Vec<u8>);

impl KeyMaterial {
    /// Wraps key bytes read from the configuration.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// `len` bytes from the operating system's random number generator.
    fn random(len: usize) -> Result<Self, JwtConfigError> {
        let mut bytes = vec![0; len];
        OsRng.try_fill_bytes(&mut bytes).map_err(|_| JwtConfigError::Random)?;
        Ok(Self(bytes))
    }

    /// The bytes, for building keys.
    pub(super) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(***)")
    }
}

/// The public-key algorithms a deployment may pin (`PLINTH_JWT_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricAlgorithm {
    /// Ed25519 signatures.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl AsymmetricAlgorithm {
    /// The algorithm's JOSE name, as in a token's header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for AsymmetricAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AsymmetricAlgorithm {
    type Err = JwtConfigError;

    /// The exact JOSE name: `EdDSA` or `RS256`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            _ => Err(JwtConfigError::UnknownAlgorithm),
        }
    }
}

/// The keys tokens are signed and verified with.
#[derive(Clone)]
pub enum KeySource {
    /// One shared secret signs and verifies, with HS256.
    Hs256 {
        /// At least 32 bytes.
        secret: KeyMaterial,
    },
    /// A private key signs; a set of public keys, told apart by `kid`, verifies.
    Asymmetric {
        /// The pinned algorithm.
        algorithm: AsymmetricAlgorithm,
        /// The signing key: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); PKCS#1 also works
        /// for RSA.
        signing_key_pem: KeyMaterial,
        /// The signing key's id, written into every token's header.
        kid: String,
        /// `(kid, public key PEM)` pairs: every key a token may be signed with. It must
        /// include the signing key's own public key under `kid`; older keys, whose private
        /// part may be gone, keep their tokens valid until they are removed from here.
        verification_keys: Vec<(String, Vec<u8>)>,
    },
}

impl KeySource {
    /// HS256 with `secret` (at least 32 bytes).
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        Self::Hs256 { secret: KeyMaterial::new(secret) }
    }

    /// HS256 with a random secret: for a single instance without configured keys, whose
    /// tokens need not outlive the process.
    pub fn random_hs256() -> Result<Self, JwtConfigError> {
        Ok(Self::Hs256 { secret: KeyMaterial::random(MIN_SECRET_LEN)? })
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256 { secret } => f.debug_struct("Hs256").field("secret", secret).finish(),
            Self::Asymmetric { algorithm, signing_key_pem, kid, verification_keys } => f
                .debug_struct("Asymmetric")
                .field("algorithm", algorithm)
                .field("signing_key_pem", signing_key_pem)
                .field("kid", kid)
                .field("verification_keys", &verification_keys.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// Everything `JwtTokens` needs. The web crate reads it from the environment and the key files.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The algorithm and its keys.
    pub keys: KeySource,
    /// `iss`, written into every token and required on every token verified.
    pub issuer: String,
    /// `aud`, written into every token and required on every token verified.
    pub audience: String,
    /// How long a token is valid; whole seconds count, from 1 s to a year.
    pub ttl: Duration,
}

/// Why a configuration was refused. No message includes key material; some name a `kid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// An algorithm name other than `EdDSA` or `RS256`.
    #[error("the algorithm must be one of EdDSA, RS256")]
    UnknownAlgorithm,
    /// The HS256 secret is too short to resist guessing.
    #[error("the HS256 secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    /// The random secret could not be drawn.
    #[error("the operating system's random number generator failed")]
    Random,
    /// A `kid` is empty.
    #[error("a key id (kid) must not be empty")]
    EmptyKid,
    /// Two verification keys share one `kid`.
    #[error("two verification keys have the key id `{kid}`")]
    DuplicateKid {
        /// The repeated key id.
        kid: String,
    },
    /// The signing key can't be read or can't sign with the configured algorithm.
    #[error("the signing key `{kid}` is not a {algorithm} private key in PEM form")]
    InvalidSigningKey {
        /// The signing key's id.
        kid: String,
        /// The configured algorithm.
        algorithm: AsymmetricAlgorithm,
    },
    /// A verification key can't be read as a public key of the configured algorithm.
    #[error("the verification key `{kid}` is not a {algorithm} public key in PEM form")]
    InvalidVerificationKey {
        /// The key's id.
        kid: String,
        /// The configured algorithm.
        algorithm: AsymmetricAlgorithm,
    },
    /// A private key was given where a public key belongs.
    #[error("the verification key `{kid}` is a private key; give its public key")]
    PrivateVerificationKey {
        /// The key's id.
        kid: String,
    },
    /// No verification key has the signing key's `kid`: its own tokens would be refused.
    #[error("no verification key has the signing key's id `{kid}`")]
    MissingVerificationKey {
        /// The signing key's id.
        kid: String,
    },
    /// The verification key under the signing key's `kid` is not its public key.
    #[error("the verification key `{kid}` does not verify the signing key's signatures")]
    KeyMismatch {
        /// The signing key's id.
        kid: String,
    },
    /// `iss` or `aud` is empty.
    #[error("the {0} must not be empty")]
    Empty(&'static str),
    /// The lifetime is under a second or over a year.
    #[error("the token lifetime must be from 1 second to 366 days")]
    InvalidTtl,
}
