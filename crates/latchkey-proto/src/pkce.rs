//! PKCE (RFC 7636), S256 only: OAuth 2.1 and the MCP authorization spec forbid `plain`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256; plain is not accepted")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters (the SHA-256 of the verifier)")]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~")]
    MalformedVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// A validated S256 code challenge, as the authorization request carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Parses `code_challenge` and `code_challenge_method` from an authorization request. A
    /// missing method means `plain` (RFC 7636 §4.3), so it is refused too.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge
            .filter(|c| !c.is_empty())
            .ok_or(PkceError::MissingChallenge)?;
        if method != Some("S256") {
            return Err(PkceError::UnsupportedMethod);
        }
        let decodes_to_a_digest = URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|d| d.len() == 32);
        if challenge.len() != 43 || !decodes_to_a_digest {
            return Err(PkceError::MalformedChallenge);
        }
        Ok(Self(challenge.to_owned()))
    }

    /// The S256 challenge of `verifier` (what a client sends).
    pub fn s256(verifier: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the token request's `code_verifier` against this challenge, in constant time.
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !well_formed {
            return Err(PkceError::MalformedVerifier);
        }
        let expected = Self::s256(verifier);
        if bool::from(expected.0.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

/// A fresh verifier (43 characters, 256 bits) for clients.
pub fn generate_verifier(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = CodeChallenge::parse(
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            Some("S256"),
        )
        .expect("valid");
        assert_eq!(challenge, CodeChallenge::s256(verifier));
        assert_eq!(challenge.verify(verifier), Ok(()));
    }

    #[test]
    fn missing_and_plain_challenges_are_refused() {
        let c = CodeChallenge::s256("x").0;
        assert_eq!(
            CodeChallenge::parse(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            CodeChallenge::parse(Some(&c), Some("plain")),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            CodeChallenge::parse(Some(&c), None),
            Err(PkceError::UnsupportedMethod),
            "no method means plain"
        );
        assert_eq!(
            CodeChallenge::parse(Some("short"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn a_wrong_or_malformed_verifier_is_refused() {
        let verifier = "a".repeat(43);
        let challenge = CodeChallenge::s256(&verifier);
        assert_eq!(challenge.verify(&"b".repeat(43)), Err(PkceError::Mismatch));
        assert_eq!(
            challenge.verify(&"a".repeat(42)),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            challenge.verify(&format!("{}+", "a".repeat(43))),
            Err(PkceError::MalformedVerifier)
        );
    }

    proptest! {
        #[test]
        fn generated_verifiers_verify_against_their_own_challenge_only(seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let verifier = generate_verifier(&mut rng);
            let other = generate_verifier(&mut rng);
            let challenge = CodeChallenge::parse(
                Some(CodeChallenge::s256(&verifier).as_str()),
                Some("S256"),
            ).expect("a generated challenge parses");
            prop_assert_eq!(challenge.verify(&verifier), Ok(()));
            prop_assert_eq!(challenge.verify(&other), Err(PkceError::Mismatch));
        }
    }
}
