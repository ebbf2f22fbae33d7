//! The key-encryption key that seals the token-signing keys at rest.
//!
//! Signing keys live in the database with every other row, so a backup, a replica dump or a
//! local user who can read the file would otherwise be able to mint access tokens. Each
//! private key is sealed with XChaCha20-Poly1305 under a 256-bit master key that lives outside
//! the database (a file or an environment variable), with the key id as associated data, so a
//! sealed key cannot be moved to another row either.

use base64::Engine;
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::{CryptoRng, RngCore};
use thiserror::Error;

/// Marks a sealed private key (and its format version).
const SEALED_PREFIX: &[u8] = b"lkmk1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, Error)]
pub enum MasterKeyError {
    #[error(
        "a master key is 32 random bytes in base64 (44 characters) or hex (64 digits); \
         make one with `head -c 32 /dev/urandom | base64`"
    )]
    Malformed,
    #[error("the signing key {0} was sealed with another master key")]
    WrongKey(String),
}

/// A 256-bit key-encryption key. `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }

    /// Reads the text of a key file or variable: base64 (standard or URL-safe) or hex.
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ];
        // 64 hex digits read the same as a hash does; 44 characters of base64 otherwise.
        if let Some(hash) = latchkey_proto::SecretHash::from_hex(text) {
            return Ok(Self(hash.0));
        }
        engines
            .iter()
            .filter_map(|engine| engine.decode(text).ok())
            .find_map(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or(MasterKeyError::Malformed)
    }

    /// The text form written to a key file.
    pub fn to_text(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `private` (a signing key's PKCS#8 document) bound to its key id.
    pub fn seal<R: RngCore + CryptoRng>(&self, rng: &mut R, kid: &str, private: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: private,
            aad: kid.as_bytes(),
        };
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 seals any message under 256 GiB"));
        [SEALED_PREFIX, &nonce, &sealed].concat()
    }

    /// Opens what [`MasterKey::seal`] made for `kid`.
    pub fn open(&self, kid: &str, stored: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let wrong = || MasterKeyError::WrongKey(kid.to_owned());
        let body = stored.strip_prefix(SEALED_PREFIX).ok_or_else(wrong)?;
        if body.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: kid.as_bytes(),
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| wrong())
    }
}

/// Whether a stored private key is sealed (older databases kept them in the clear).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_master_key_and_its_kid() {
        let mut rng = rand::thread_rng();
        let master = MasterKey::generate(&mut rng);
        let sealed = master.seal(&mut rng, "sk_1", b"private key document");
        assert!(is_sealed(&sealed));
        assert!(
            !sealed.windows(b"private".len()).any(|w| w == b"private"),
            "the plaintext is not in the sealed form"
        );
        assert_eq!(
            master.open("sk_1", &sealed).expect("opens"),
            b"private key document"
        );
        assert!(master.open("sk_2", &sealed).is_err(), "bound to its kid");
        let other = MasterKey::generate(&mut rng);
        assert!(other.open("sk_1", &sealed).is_err(), "needs its master key");
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(master.open("sk_1", &tampered).is_err());
        assert!(master.open("sk_1", b"plain pkcs8").is_err());
    }

    #[test]
    fn key_files_are_base64_or_hex_of_32_bytes() {
        let master = MasterKey::generate(&mut rand::thread_rng());
        let text = master.to_text();
        assert_eq!(text.len(), 44);
        assert_eq!(
            MasterKey::parse(&format!("{text}\n")).expect("base64").0,
            master.0
        );
        let hex: String = master.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(MasterKey::parse(&hex).expect("hex").0, master.0);
        for bad in [
            "",
            "short",
            &text[..40],
            &hex[..62],
            "zz".repeat(32).as_str(),
        ] {
            assert!(MasterKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{master:?}"), "MasterKey([redacted])");
    }
}
