//! API keys: `<prefix>_<30 base62 random><6 base62 crc32>`.
//!
//! The CRC32 (IEEE) covers everything before it, prefix included, so a typo or a string that was
//! never a key is refused without a database lookup, and secret scanners can recognise real keys.
//! Keys are stored only as the SHA-256 of the whole key ([`KeyHash`]).

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{base62, secret::SecretHash};

const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// How many random characters the listed display prefix shows (the rest stay secret).
const DISPLAY_RANDOM_LEN: usize = 8;

/// The deployment's key prefix (`lk` by default): 1 to 16 lowercase letters and digits, starting
/// with a letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyPrefix(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the API key prefix {0:?} is not valid: use 1 to 16 lowercase letters or digits, starting with a letter"
)]
pub struct InvalidKeyPrefix(String);

impl KeyPrefix {
    pub fn parse(value: &str) -> Result<Self, InvalidKeyPrefix> {
        let ok = (1..=16).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidKeyPrefix(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self("lk".to_owned())
    }
}

impl TryFrom<String> for KeyPrefix {
    type Error = InvalidKeyPrefix;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<KeyPrefix> for String {
    fn from(value: KeyPrefix) -> Self {
        value.0
    }
}

impl std::fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not an API key of this deployment. Found without touching storage.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiKeyFormatError {
    #[error("the API key does not start with this server's prefix `{expected}_`")]
    WrongPrefix { expected: String },
    #[error("the API key has the wrong length or characters")]
    Malformed,
    #[error("the API key's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
}

/// SHA-256 of a whole API key: the only form in which keys are stored.
pub type KeyHash = SecretHash;

/// A well-formed API key (format and checksum checked). Whether it exists is the store's business.
#[derive(Clone)]
pub struct ApiKey {
    value: String,
    prefix_len: usize,
}

impl ApiKey {
    pub fn generate<R: RngCore + CryptoRng>(prefix: &KeyPrefix, rng: &mut R) -> Self {
        let mut value = format!("{}_{}", prefix.as_str(), base62::random(rng, RANDOM_LEN));
        let checksum = base62::encode_u32_fixed6(crc32fast::hash(value.as_bytes()));
        value.extend(checksum.iter().map(|&b| char::from(b)));
        Self {
            value,
            prefix_len: prefix.as_str().len(),
        }
    }

    /// Checks prefix, length, alphabet and checksum, in that order; no allocation on failure.
    pub fn parse(value: &str, prefix: &KeyPrefix) -> Result<Self, ApiKeyFormatError> {
        let p = prefix.as_str();
        let body = value
            .strip_prefix(p)
            .and_then(|rest| rest.strip_prefix('_'))
            .ok_or_else(|| ApiKeyFormatError::WrongPrefix {
                expected: p.to_owned(),
            })?;
        if body.len() != RANDOM_LEN + CHECKSUM_LEN || !base62::is_base62(body.as_bytes()) {
            return Err(ApiKeyFormatError::Malformed);
        }
        let (covered, checksum) = value.split_at(value.len() - CHECKSUM_LEN);
        if base62::encode_u32_fixed6(crc32fast::hash(covered.as_bytes())) != checksum.as_bytes() {
            return Err(ApiKeyFormatError::BadChecksum);
        }
        Ok(Self {
            value: value.to_owned(),
            prefix_len: p.len(),
        })
    }

    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    pub fn hash(&self) -> KeyHash {
        SecretHash::of(&self.value)
    }

    /// What listings show so a person can tell keys apart: `lk_AbCd1234`.
    pub fn display_prefix(&self) -> &str {
        &self.value[..self.prefix_len + 1 + DISPLAY_RANDOM_LEN]
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…[redacted])", self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lk() -> KeyPrefix {
        KeyPrefix::default()
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse_back() {
        let key = ApiKey::generate(&lk(), &mut rand::thread_rng());
        let s = key.expose_secret();
        assert_eq!(s.len(), 3 + 30 + 6);
        assert!(s.starts_with("lk_"));
        let parsed = ApiKey::parse(s, &lk()).expect("a generated key parses");
        assert_eq!(parsed.hash(), key.hash());
        assert_eq!(key.display_prefix(), &s[..11]);
    }

    #[test]
    fn a_single_changed_character_is_refused_by_the_checksum() {
        let key = ApiKey::generate(&lk(), &mut rand::thread_rng());
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            ApiKey::parse(&typo, &lk()).err(),
            Some(ApiKeyFormatError::BadChecksum)
        );
    }

    #[test]
    fn other_deployments_and_garbage_are_refused() {
        let key = ApiKey::generate(
            &KeyPrefix::parse("acme").expect("valid"),
            &mut rand::thread_rng(),
        );
        assert!(matches!(
            ApiKey::parse(key.expose_secret(), &lk()),
            Err(ApiKeyFormatError::WrongPrefix { .. })
        ));
        assert_eq!(
            ApiKey::parse("lk_short", &lk()).err(),
            Some(ApiKeyFormatError::Malformed)
        );
        assert_eq!(
            ApiKey::parse("lk_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &lk()).err(),
            Some(ApiKeyFormatError::Malformed)
        );
    }

    #[test]
    fn debug_shows_only_the_display_prefix() {
        let key = ApiKey::generate(&lk(), &mut rand::thread_rng());
        let printed = format!("{key:?}");
        assert!(printed.contains(key.display_prefix()));
        assert!(!printed.contains(&key.expose_secret()[12..]));
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyPrefix::parse("mg").is_ok());
        for bad in ["", "Mg", "1lk", "lk_", "abcdefghijklmnopq"] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = ApiKey::parse(&s, &lk());
        }

        #[test]
        fn random_well_shaped_strings_almost_never_pass_the_checksum(body in "[0-9A-Za-z]{36}") {
            let candidate = format!("lk_{body}");
            let accepted = ApiKey::parse(&candidate, &lk()).is_ok();
            // 1 in 2^32 odds; a pass is only allowed when the checksum really matches.
            let (covered, checksum) = candidate.split_at(candidate.len() - 6);
            let expected = crate::base62::encode_u32_fixed6(crc32fast::hash(covered.as_bytes()));
            prop_assert_eq!(accepted, expected == checksum.as_bytes());
        }
    }
}
