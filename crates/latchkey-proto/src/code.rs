//! Codes a person reads and compares or types: 8 letters, shown as `XXXX-XXXX`.
//!
//! The alphabet has no vowels (no words can form) and no look-alike letters, as RFC 8628 §6.1
//! advises: 20^8 ≈ 2^34.6 combinations.

use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const LEN: usize = 8;

/// The anti-phishing code the terminal and the browser both show before a person approves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PairingCode(String);

impl PairingCode {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let letters: String = (0..LEN)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect();
        Self(format!("{}-{}", &letters[..4], &letters[4..]))
    }

    /// Accepts what a person might type: any case, with or without the dash or spaces.
    pub fn parse(value: &str) -> Option<Self> {
        let letters: String = value
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let ok = letters.len() == LEN && letters.bytes().all(|b| ALPHABET.contains(&b));
        ok.then(|| Self(format!("{}-{}", &letters[..4], &letters[4..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_two_groups_of_four_unambiguous_letters() {
        let code = PairingCode::generate(&mut rand::thread_rng());
        let s = code.as_str();
        assert_eq!(s.len(), 9);
        assert_eq!(&s[4..5], "-");
        assert!(
            s.bytes()
                .filter(|&b| b != b'-')
                .all(|b| ALPHABET.contains(&b))
        );
        assert_eq!(PairingCode::parse(s), Some(code.clone()));
    }

    #[test]
    fn parse_forgives_case_and_separators_but_not_foreign_letters() {
        assert_eq!(
            PairingCode::parse("bcdf ghjk").map(|c| c.0),
            Some("BCDF-GHJK".to_owned())
        );
        assert_eq!(PairingCode::parse("BCDF-GHJA"), None, "vowels never occur");
        assert_eq!(PairingCode::parse("BCDF-GHJ"), None);
    }
}
