//! XChaCha20-Poly1305 sealing: personal data under per-subject keys, and those keys
//! wrapped under a key-encryption key derived from the server secret.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 24;

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    /// Derives a purpose-bound key from the server secret.
    pub fn derive(secret: &[u8], purpose: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"medledger-kdf\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(secret);
        Self(h.finalize().into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// nonce ‖ ciphertext. `aad` binds the ciphertext to its context (the subject).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = chacha20poly1305::aead::Payload { msg: plaintext, aad };
        let mut out = nonce.to_vec();
        // Encryption with a fresh 24-byte nonce cannot fail for in-memory sizes.
        out.extend(cipher.encrypt(XNonce::from_slice(&nonce), payload).unwrap_or_default());
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        cipher.decrypt(XNonce::from_slice(nonce), chacha20poly1305::aead::Payload { msg: ct, aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let k = SecretKey::random();
        let sealed = k.seal(b"ann@example.org", b"user-1");
        assert_eq!(k.open(&sealed, b"user-1").unwrap(), b"ann@example.org");
        assert!(k.open(&sealed, b"user-2").is_none(), "aad binds the subject");
        assert!(SecretKey::random().open(&sealed, b"user-1").is_none());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(&bad, b"user-1").is_none());
        assert!(k.open(b"short", b"user-1").is_none());
    }

    #[test]
    fn derived_keys_depend_on_purpose_and_secret() {
        assert_eq!(SecretKey::derive(b"s", "a").0, SecretKey::derive(b"s", "a").0);
        assert_ne!(SecretKey::derive(b"s", "a").0, SecretKey::derive(b"s", "b").0);
        assert_ne!(SecretKey::derive(b"s", "a").0, SecretKey::derive(b"t", "a").0);
    }
}
