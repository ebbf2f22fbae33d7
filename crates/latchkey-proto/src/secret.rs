//! High-entropy secrets as newtypes: `Debug` never prints them, `expose_secret` says where they leave.
//!
//! They are stored only as a [`SecretHash`] (SHA-256): with 256 bits of randomness no slow hash is
//! needed, and a lookup by hash is O(1).

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base62;

/// SHA-256 of a secret: what the database keeps in its place.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Reads a hash written as 64 hex digits (as `sha256sum` prints it), for secrets an
    /// operator declares in a config file without writing them down in the clear.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(Self(out))
    }

    /// The hash in lowercase hex, as `sha256sum` prints it. A gate computes one for every
    /// request with an API key (its rate-limit key): two table lookups a byte, not a
    /// `format!` each.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// Constant-time comparison, for checking a presented secret against a stored hash.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What every such secret starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh secret: the prefix, then 43 base62 characters (256 bits).
            pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
                Self(format!("{}{}", $prefix, base62::random(rng, 43)))
            }

            /// Wraps a secret received from outside; it is only ever compared by hash.
            pub fn from_presented(value: String) -> Self {
                Self(value)
            }

            pub fn expose_secret(&self) -> &str {
                &self.0
            }

            pub fn hash(&self) -> SecretHash {
                SecretHash::of(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_string!(
    /// Proves that a token-flow wait comes from the CLI that created the flow; the key in flight
    /// is sealed to it.
    WaitSecret,
    "lkw_"
);
secret_string!(
    /// A browser session, carried in the `HttpOnly` session cookie.
    SessionToken,
    "lks_"
);
secret_string!(
    /// The single-use token in an email-verification link.
    VerificationToken,
    "lkv_"
);
secret_string!(
    /// The single-use token in the link that confirms a new email address, valid for a day.
    EmailChangeToken,
    "lke_"
);
secret_string!(
    /// A sign-in waiting for its second factor (a cookie), valid for 10 minutes.
    SecondFactorToken,
    "lkf_"
);
secret_string!(
    /// Names a WebAuthn ceremony between its options and the browser's answer (5 minutes).
    CeremonyToken,
    "lkwc_"
);
secret_string!(
    /// Held by the browser that signed up (a cookie): that browser may use the verification
    /// link without typing the password again; any other must prove it knows the password.
    SignUpReceipt,
    "lku_"
);
secret_string!(
    /// The single-use token in a password-reset link, valid for 30 minutes.
    PasswordResetToken,
    "lkp_"
);
secret_string!(
    /// The single-use token in an invitation to an org, valid for 7 days.
    InvitationToken,
    "lki_"
);
secret_string!(
    /// Lets a self-registered client read, update and delete its registration (RFC 7592).
    RegistrationAccessToken,
    "lkra_"
);
secret_string!(
    /// A single-use OAuth authorization code (RFC 6749 §4.1.2), valid for a minute.
    AuthorizationCode,
    "lkc_"
);
secret_string!(
    /// An opaque OAuth refresh token, rotated on every use.
    RefreshToken,
    "lkr_"
);
secret_string!(
    /// A confidential OAuth client's secret; stored as SHA-256 (it has 256 bits of entropy).
    ClientSecret,
    "lkcs_"
);
secret_string!(
    /// The secret a device-grant client polls with (RFC 8628 `device_code`).
    DeviceCode,
    "lkd_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_read_from_hex_match_the_secret() {
        let hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        let hash = SecretHash::from_hex(hex).expect("64 hex digits");
        assert!(hash.matches(&SecretHash::of("secret")));
        assert_eq!(SecretHash::from_hex(&hex.to_uppercase()), Some(hash));
        assert_eq!(hash.to_hex(), hex);
        assert_eq!(SecretHash::from_hex(&hex[1..]), None);
        assert_eq!(SecretHash::from_hex(&format!("{}zz", &hex[2..])), None);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = WaitSecret::generate(&mut rand::thread_rng());
        let printed = format!("{secret:?}");
        assert_eq!(printed, "WaitSecret([redacted])");
        assert!(!printed.contains(&secret.expose_secret()[4..]));
    }

    #[test]
    fn hash_matches_only_the_same_secret() {
        let mut rng = rand::thread_rng();
        let a = SessionToken::generate(&mut rng);
        let b = SessionToken::generate(&mut rng);
        assert!(
            a.hash()
                .matches(&SessionToken::from_presented(a.expose_secret().into()).hash())
        );
        assert!(!a.hash().matches(&b.hash()));
        assert_eq!(a.expose_secret().len(), 4 + 43);
    }
}
