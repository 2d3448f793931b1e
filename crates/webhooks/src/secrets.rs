//! Webhook secrets at rest: ChaCha20-Poly1305 under `PLINTH_ENCRYPTION_KEY`, a fresh random
//! nonce per secret, and the webhook's id as associated data so a ciphertext can't be moved
//! to another row.

use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

/// Why a secret could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The ciphertext was altered, belongs to another row, or was sealed under another key.
    #[error("the stored secret can't be decrypted")]
    Corrupt,
    /// The cipher refused to seal the secret.
    #[error("the secret can't be sealed")]
    Seal,
}

/// Seals and opens secrets under one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// A box under `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: ChaCha20Poly1305::new(&Key::from(*key)) }
    }

    /// `nonce || ciphertext` of `secret`, bound to `context` (the webhook's id). Errors when
    /// the cipher refuses (a message beyond its length limit): nothing half-sealed is returned.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed =
            self.cipher.encrypt(&nonce, Payload { msg: secret, aad: context }).map_err(|_| SecretError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The secret [`SecretBox::seal`] sealed with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Corrupt)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: context })
            .map_err(|_| SecretError::Corrupt)
    }
}

impl plinth_domain::ports::SecretCipher for SecretBox {
    fn seal(&self, secret: &[u8], context: &[u8]) -> plinth_domain::Result<Vec<u8>> {
        SecretBox::seal(self, secret, context).map_err(plinth_domain::Error::internal)
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> plinth_domain::Result<Vec<u8>> {
        SecretBox::open(self, sealed, context).map_err(plinth_domain::Error::internal)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_context_only() {
        let a = SecretBox::new(&[7; 32]);
        let sealed = a.seal(b"whsec_abc", b"webhook-1").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"), "the plaintext must not appear");
        assert_eq!(a.open(&sealed, b"webhook-1"), Ok(b"whsec_abc".to_vec()));
        assert_eq!(a.open(&sealed, b"webhook-2"), Err(SecretError::Corrupt));
        assert_eq!(SecretBox::new(&[8; 32]).open(&sealed, b"webhook-1"), Err(SecretError::Corrupt));
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(a.open(&tampered, b"webhook-1"), Err(SecretError::Corrupt));
        assert_eq!(a.open(&sealed[..10], b"webhook-1"), Err(SecretError::Corrupt));
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let a = SecretBox::new(&[1; 32]);
        assert_ne!(a.seal(b"s", b"c").unwrap(), a.seal(b"s", b"c").unwrap());
    }
}
