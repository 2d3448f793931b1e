//! The keys `JwtTokens` signs and verifies with, built and checked once from a `KeySource`.
//!
//! Every check that can be made at start-up is made here, so a bad key file stops the
//! process instead of failing every login: the signing key signs a probe message and the
//! public key under its `kid` must verify it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, crypto};

use super::config::{AsymmetricAlgorithm, JwtConfigError, KeySource, MIN_SECRET_LEN};

/// The size of an Ed25519 public key. `jsonwebtoken` slices a verification key to this
/// length when it verifies, so a shorter one must be refused here, not panic there.
const ED25519_PUBLIC_KEY_LEN: usize = 32;

/// A validated signing key and the verification keys that go with it.
pub(super) struct KeySet {
    algorithm: Algorithm,
    signing: EncodingKey,
    /// The signing key's `kid`; `None` for HS256, whose tokens carry none.
    kid: Option<String>,
    verifying: Verifying,
}

enum Verifying {
    /// HS256: the one secret, whatever the header's `kid` says.
    Shared(DecodingKey),
    /// Public keys by `kid`.
    ByKid(HashMap<String, DecodingKey>),
}

impl KeySet {
    /// Reads and checks every key of `source`.
    pub(super) fn build(source: KeySource) -> Result<Self, JwtConfigError> {
        match source {
            KeySource::Hs256 { secret } => {
                if secret.expose().len() < MIN_SECRET_LEN {
                    return Err(JwtConfigError::SecretTooShort);
                }
                Ok(Self {
                    algorithm: Algorithm::HS256,
                    signing: EncodingKey::from_secret(secret.expose()),
                    kid: None,
                    verifying: Verifying::Shared(DecodingKey::from_secret(secret.expose())),
                })
            }
            KeySource::Asymmetric { algorithm, signing_key_pem, kid, verification_keys } => {
                if kid.is_empty() {
                    return Err(JwtConfigError::EmptyKid);
                }
                let signing = signing_key(algorithm, signing_key_pem.expose())
                    .ok_or_else(|| JwtConfigError::InvalidSigningKey { kid: kid.clone(), algorithm })?;
                let mut by_kid = HashMap::with_capacity(verification_keys.len());
                for (vkid, pem) in verification_keys {
                    let key = verification_key(algorithm, &vkid, &pem)?;
                    match by_kid.entry(vkid) {
                        Entry::Occupied(e) => {
                            return Err(JwtConfigError::DuplicateKid { kid: e.key().clone() });
                        }
                        Entry::Vacant(e) => e.insert(key),
                    };
                }
                let own =
                    by_kid.get(&kid).ok_or_else(|| JwtConfigError::MissingVerificationKey { kid: kid.clone() })?;
                probe(algorithm, &signing, own, &kid)?;
                Ok(Self { algorithm: jose(algorithm), signing, kid: Some(kid), verifying: Verifying::ByKid(by_kid) })
            }
        }
    }

    /// The pinned algorithm.
    pub(super) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The header of a new token: the pinned algorithm, and the signing key's `kid`.
    pub(super) fn header(&self) -> Header {
        Header { kid: self.kid.clone(), ..Header::new(self.algorithm) }
    }

    /// The key new tokens are signed with.
    pub(super) fn signing_key(&self) -> &EncodingKey {
        &self.signing
    }

    /// The key a token whose header names `kid` is verified with, if it is trusted.
    pub(super) fn verification_key(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match &self.verifying {
            Verifying::Shared(key) => Some(key),
            Verifying::ByKid(keys) => keys.get(kid?),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = match &self.verifying {
            Verifying::Shared(_) => Vec::new(),
            Verifying::ByKid(keys) => keys.keys().map(String::as_str).collect(),
        };
        kids.sort_unstable();
        f.debug_struct("KeySet")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("verification_kids", &kids)
            .finish_non_exhaustive()
    }
}

fn jose(algorithm: AsymmetricAlgorithm) -> Algorithm {
    match algorithm {
        AsymmetricAlgorithm::EdDsa => Algorithm::EdDSA,
        AsymmetricAlgorithm::Rs256 => Algorithm::RS256,
    }
}

fn signing_key(algorithm: AsymmetricAlgorithm, pem: &[u8]) -> Option<EncodingKey> {
    match algorithm {
        AsymmetricAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem).ok(),
        AsymmetricAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem).ok(),
    }
}

fn verification_key(algorithm: AsymmetricAlgorithm, kid: &str, pem: &[u8]) -> Result<DecodingKey, JwtConfigError> {
    if kid.is_empty() {
        return Err(JwtConfigError::EmptyKid);
    }
    // `jsonwebtoken` reads an RSA private key as a verification key without complaint, and
    // then no signature ever verifies: say what is wrong instead.
    if pem.windows(b"PRIVATE KEY".len()).any(|w| w == b"PRIVATE KEY") {
        return Err(JwtConfigError::PrivateVerificationKey { kid: kid.to_owned() });
    }
    let key = match algorithm {
        AsymmetricAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem).ok().filter(is_ed25519_sized),
        AsymmetricAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem).ok(),
    };
    key.ok_or_else(|| JwtConfigError::InvalidVerificationKey { kid: kid.to_owned(), algorithm })
}

fn is_ed25519_sized(key: &DecodingKey) -> bool {
    matches!(key.kind(), DecodingKeyKind::SecretOrDer(b) if b.len() == ED25519_PUBLIC_KEY_LEN)
}

/// Signs a fixed message with `signing` and verifies it with `own`.
fn probe(
    algorithm: AsymmetricAlgorithm,
    signing: &EncodingKey,
    own: &DecodingKey,
    kid: &str,
) -> Result<(), JwtConfigError> {
    const MESSAGE: &[u8] = b"plinth-jwt key check";
    // An RSA public key passes `from_rsa_pem` as a signing key; signing is what fails.
    let signature = crypto::sign(MESSAGE, signing, jose(algorithm))
        .map_err(|_| JwtConfigError::InvalidSigningKey { kid: kid.to_owned(), algorithm })?;
    match crypto::verify(&signature, MESSAGE, own, jose(algorithm)) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(JwtConfigError::KeyMismatch { kid: kid.to_owned() }),
    }
}
