//! Sealing the key in flight to the token flow's wait secret.
//!
//! At creation the server derives an X25519 key pair from the wait secret (HKDF-SHA256, salted
//! with the flow id), keeps the public half and a hash of the secret, and forgets the secret.
//! Approval seals the new API key to the public half (an anonymous `crypto_box` sealed box);
//! only a wait that presents the secret can derive the private half and open it. A copy of the
//! database therefore holds no usable key for flows in flight.

use crypto_box::{PublicKey, SecretKey};
use hkdf::Hkdf;
use latchkey_proto::WaitSecret;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use thiserror::Error;

const INFO: &[u8] = b"latchkey token-flow seal v1";

#[derive(Debug, Error)]
pub enum SealError {
    #[error("the sealed key could not be opened with this wait secret")]
    Open,
    #[error("sealing the key failed")]
    Seal,
}

fn secret_key(wait_secret: &WaitSecret, flow_id: &str) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(
        Some(flow_id.as_bytes()),
        wait_secret.expose_secret().as_bytes(),
    );
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    if hk.expand(INFO, &mut okm).is_err() {
        unreachable!("HKDF output length is fixed and valid");
    }
    SecretKey::from(okm)
}

/// The public key a flow created with this wait secret seals to.
pub fn seal_public_key(wait_secret: &WaitSecret, flow_id: &str) -> [u8; 32] {
    *secret_key(wait_secret, flow_id).public_key().as_bytes()
}

pub fn seal<R: RngCore + CryptoRng>(
    public_key: &[u8; 32],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    PublicKey::from(*public_key)
        .seal(rng, plaintext)
        .map_err(|_| SealError::Seal)
}

pub fn open(wait_secret: &WaitSecret, flow_id: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    secret_key(wait_secret, flow_id)
        .unseal(sealed)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wait_secret_and_flow_it_was_made_for_open_the_seal() {
        let mut rng = rand::thread_rng();
        let secret = WaitSecret::generate(&mut rng);
        let public = seal_public_key(&secret, "tf_1");
        let sealed = seal(&public, b"lk_the_key", &mut rng).expect("seal");
        assert!(
            !sealed.windows(10).any(|w| w == b"lk_the_key"),
            "plaintext visible"
        );
        assert_eq!(open(&secret, "tf_1", &sealed).expect("open"), b"lk_the_key");

        let other = WaitSecret::generate(&mut rng);
        assert!(open(&other, "tf_1", &sealed).is_err());
        assert!(
            open(&secret, "tf_2", &sealed).is_err(),
            "bound to the flow id"
        );
    }
}
