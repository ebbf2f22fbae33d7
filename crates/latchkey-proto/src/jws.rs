//! JWS on the wire: the compact tokens latchkey issues (access tokens, `typ: at+jwt`; ID tokens,
//! `typ: JWT`), signed with Ed25519 (`EdDSA`, the default for access tokens), RSA
//! (`RS256`, what OpenID Connect requires for ID tokens and what every JWT library verifies) or
//! P-256 (`ES256`), on keys parsed once. Pure: the caller passes the keys, the expected issuer
//! and audience, and the time. The issuer and the gate both verify through [`verify`].

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{CryptoRng, RngCore};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;

use crate::oauth::{AccessTokenClaims, Jwk};

/// Tolerated clock difference between the issuer and whoever checks its tokens (for `nbf`).
pub const LEEWAY_SECS: i64 = 60;

/// The `typ` of an access token (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The `typ` of an ID token.
pub const ID_TOKEN_TYPE: &str = "JWT";

/// RSA keys are generated at this size (what RFC 7518 requires at least, and what OIDC
/// providers use).
const RSA_BITS: usize = 2048;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccessTokenError {
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not a JWT of the expected type, signed with the algorithm of its key")]
    WrongType,
    #[error("the access token was signed by a key this issuer does not know")]
    UnknownKey,
    #[error("the access token's signature or claims are not valid")]
    Invalid,
    #[error("the access token was issued for another audience")]
    WrongAudience,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was revoked: its login was signed out or revoked; log in again")]
    Revoked,
}

/// A JWS algorithm latchkey signs with (RFC 7518, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    EdDSA,
    RS256,
    ES256,
}

impl Algorithm {
    pub const ALL: [Self; 3] = [Self::EdDSA, Self::RS256, Self::ES256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// OpenID Connect's `at_hash`: the left half of the access token's hash, with the hash of
    /// the ID token's algorithm (SHA-512 for Ed25519).
    pub fn at_hash(self, access_token: &str) -> String {
        let digest = match self {
            Self::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
            Self::RS256 | Self::ES256 => Sha256::digest(access_token.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stored or presented key could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the {0} key is damaged")]
pub struct KeyError(pub Algorithm);

/// A private key that signs tokens.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Rs256(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    Es256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A new key (RSA: 2048 bits, which takes a moment).
    pub fn generate(
        alg: Algorithm,
        rng: &mut (impl CryptoRng + RngCore),
    ) -> Result<Self, KeyError> {
        Ok(match alg {
            Algorithm::EdDSA => Self::Ed25519(ed25519_dalek::SigningKey::generate(rng)),
            Algorithm::RS256 => {
                let key = rsa::RsaPrivateKey::new(rng, RSA_BITS).map_err(|_| KeyError(alg))?;
                Self::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
            Algorithm::ES256 => Self::Es256(p256::ecdsa::SigningKey::random(rng)),
        })
    }

    /// A key from its PKCS#8 DER document.
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let damaged = |_| KeyError(alg);
        Ok(match alg {
            Algorithm::EdDSA => {
                Self::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(damaged)?)
            }
            Algorithm::RS256 => Self::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(
                rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(damaged)?,
            ))),
            Algorithm::ES256 => {
                Self::Es256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(damaged)?)
            }
        })
    }

    /// The key as a PKCS#8 DER document (to be sealed before it is stored).
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let damaged = |_| KeyError(self.alg());
        let document = match self {
            Self::Ed25519(key) => key.to_pkcs8_der().map_err(damaged)?,
            Self::Rs256(key) => key.as_ref().as_ref().to_pkcs8_der().map_err(damaged)?,
            Self::Es256(key) => key.to_pkcs8_der().map_err(damaged)?,
        };
        Ok(document.as_bytes().to_vec())
    }

    pub fn alg(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Rs256(_) => Algorithm::RS256,
            Self::Es256(_) => Algorithm::ES256,
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Ed25519(key) => VerifyingKey::Ed25519(key.verifying_key()),
            Self::Rs256(key) => VerifyingKey::Rs256(Box::new(rsa::pkcs1v15::VerifyingKey::new(
                key.as_ref().as_ref().to_public_key(),
            ))),
            Self::Es256(key) => VerifyingKey::Es256(*key.verifying_key()),
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        match self {
            Self::Ed25519(key) => key.sign(input).to_bytes().to_vec(),
            Self::Rs256(key) => key.sign(input).to_vec(),
            Self::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
        }
    }
}

/// A public key that verifies tokens.
#[derive(Clone, Debug)]
pub enum VerifyingKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256(Box<rsa::pkcs1v15::VerifyingKey<Sha256>>),
    Es256(p256::ecdsa::VerifyingKey),
}

impl VerifyingKey {
    pub fn alg(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Rs256(_) => Algorithm::RS256,
            Self::Es256(_) => Algorithm::ES256,
        }
    }

    /// The public key as stored: Ed25519's 32 bytes, P-256's uncompressed SEC1 point, or
    /// RSA's PKCS#1 DER.
    pub fn to_public_bytes(&self) -> Result<Vec<u8>, KeyError> {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        Ok(match self {
            Self::Ed25519(key) => key.to_bytes().to_vec(),
            Self::Rs256(key) => key
                .as_ref()
                .as_ref()
                .to_pkcs1_der()
                .map_err(|_| KeyError(Algorithm::RS256))?
                .into_vec(),
            Self::Es256(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        })
    }

    /// The inverse of [`VerifyingKey::to_public_bytes`].
    pub fn from_public_bytes(alg: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        let damaged = KeyError(alg);
        Ok(match alg {
            Algorithm::EdDSA => Self::Ed25519(
                bytes
                    .try_into()
                    .ok()
                    .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(b).ok())
                    .ok_or(damaged)?,
            ),
            Algorithm::RS256 => Self::Rs256(Box::new(rsa::pkcs1v15::VerifyingKey::new(
                rsa::RsaPublicKey::from_pkcs1_der(bytes).map_err(|_| damaged)?,
            ))),
            Algorithm::ES256 => {
                Self::Es256(p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|_| damaged)?)
            }
        })
    }

    /// The key as a JWKS lists it (RFC 7517, RFC 7518 §6, RFC 8037), with `alg` and `use`.
    pub fn to_jwk(&self, kid: &str) -> Jwk {
        use rsa::traits::PublicKeyParts as _;
        let b64 = |bytes: &[u8]| Some(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: kid.to_owned(),
            key_use: "sig".into(),
            alg: self.alg().as_str().into(),
        };
        match self {
            Self::Ed25519(key) => {
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = b64(key.as_bytes());
            }
            Self::Rs256(key) => {
                let key: &rsa::RsaPublicKey = key.as_ref().as_ref();
                jwk.kty = "RSA".into();
                jwk.n = b64(&key.n().to_bytes_be());
                jwk.e = b64(&key.e().to_bytes_be());
            }
            Self::Es256(key) => {
                let point = key.to_encoded_point(false);
                jwk.kty = "EC".into();
                jwk.crv = Some("P-256".into());
                jwk.x = point.x().and_then(|x| b64(x));
                jwk.y = point.y().and_then(|y| b64(y));
            }
        }
        jwk
    }

    /// A key from a JWKS entry; `None` for a key of another kind, use or algorithm, or a
    /// damaged one.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        let field = |value: &Option<String>| URL_SAFE_NO_PAD.decode(value.as_deref()?).ok();
        if jwk.key_use != "sig" {
            return None;
        }
        let alg = Algorithm::parse(&jwk.alg)?;
        match (alg, jwk.kty.as_str(), jwk.crv.as_deref()) {
            (Algorithm::EdDSA, "OKP", Some("Ed25519")) => {
                Self::from_public_bytes(alg, &field(&jwk.x)?).ok()
            }
            (Algorithm::RS256, "RSA", None) => {
                let n = rsa::BigUint::from_bytes_be(&field(&jwk.n)?);
                let e = rsa::BigUint::from_bytes_be(&field(&jwk.e)?);
                let key = rsa::RsaPublicKey::new(n, e).ok()?;
                Some(Self::Rs256(Box::new(rsa::pkcs1v15::VerifyingKey::new(key))))
            }
            (Algorithm::ES256, "EC", Some("P-256")) => {
                let mut point = vec![4];
                point.extend(field(&jwk.x)?);
                point.extend(field(&jwk.y)?);
                Self::from_public_bytes(alg, &point).ok()
            }
            _ => None,
        }
    }

    fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier as _;
        match self {
            Self::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(input, &s).is_ok()),
            Self::Rs256(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|s| key.verify(input, &s).is_ok()),
            Self::Es256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(input, &s).is_ok()),
        }
    }
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// Whether `token` has the shape of a JWT (three base64url parts, the first an encoded `{"`),
/// which tells it from this issuer's API keys and opaque secrets before anything is verified.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The encoded JWS header for tokens of type `typ` signed by `kid` with `alg`: the same for
/// every such token.
pub fn encoded_header(alg: Algorithm, kid: &str, typ: &str) -> String {
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": typ, "kid": kid });
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// Signs `claims` as header.payload.signature, with a header made by [`encoded_header`] for
/// this key's algorithm.
pub fn sign(
    encoded_header: &str,
    key: &SigningKey,
    claims: &impl Serialize,
) -> Result<String, serde_json::Error> {
    let payload = serde_json::to_vec(claims)?;
    let mut token = format!("{encoded_header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// `None` accepts any audience (introspection on behalf of any resource).
    pub audience: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// The header's `kid`, for a verifier that must first fetch an unknown key.
pub fn key_id(token: &str) -> Result<Option<String>, AccessTokenError> {
    let header = token.split('.').next().ok_or(AccessTokenError::Malformed)?;
    Ok(parse_header(header)?.kid)
}

fn decode(part: &str) -> Result<Vec<u8>, AccessTokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AccessTokenError::Malformed)
}

fn parse_header(part: &str) -> Result<Header, AccessTokenError> {
    serde_json::from_slice(&decode(part)?).map_err(|_| AccessTokenError::Malformed)
}

/// Checks the header (type `typ`, a `kid` in `keys`, and exactly that key's algorithm, so
/// `alg: none`, HS256-with-the-public-key and any other algorithm swap never reach a
/// verifier), then the signature; returns the payload, whose claims are the caller's to check.
pub fn verify_signature<C: DeserializeOwned>(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
    typ: &str,
) -> Result<C, AccessTokenError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(AccessTokenError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(AccessTokenError::Malformed)?;
    let header = parse_header(header)?;
    let alg = Algorithm::parse(&header.alg).ok_or(AccessTokenError::WrongType)?;
    if header.typ.as_deref() != Some(typ) {
        return Err(AccessTokenError::WrongType);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.get(kid))
        .ok_or(AccessTokenError::UnknownKey)?;
    if alg != key.alg() {
        return Err(AccessTokenError::WrongType);
    }
    if !key.verify(signing_input.as_bytes(), &decode(signature)?) {
        return Err(AccessTokenError::Invalid);
    }
    serde_json::from_slice(&decode(payload)?).map_err(|_| AccessTokenError::Invalid)
}

/// Checks an access token: [`verify_signature`], then `iss`, `aud`, `exp` and `nbf`.
pub fn verify(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
    expect: Expectations<'_>,
) -> Result<AccessTokenClaims, AccessTokenError> {
    let claims: AccessTokenClaims = verify_signature(token, keys, ACCESS_TOKEN_TYPE)?;
    if claims.iss != expect.issuer {
        return Err(AccessTokenError::Invalid);
    }
    if expect
        .audience
        .is_some_and(|audience| !crate::resource::same_resource(&claims.aud, audience))
    {
        return Err(AccessTokenError::WrongAudience);
    }
    if expect.now >= claims.exp {
        return Err(AccessTokenError::Expired);
    }
    if expect.now + LEEWAY_SECS < claims.nbf {
        return Err(AccessTokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://auth.example".into(),
            sub: "usr_1".into(),
            aud: "https://api.example".into(),
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: "at_1".into(),
            client_id: "latchkey-cli".into(),
            scope: "openid".into(),
            org_id: "org_1".into(),
            tenant_id: "org_1".into(),
            subscription_status: "none".into(),
            subscription_tier: "free".into(),
            entitlements: Vec::new(),
            sid: None,
        }
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations {
            issuer: "https://auth.example",
            audience: Some("https://api.example"),
            now,
        }
    }

    fn key(alg: Algorithm, seed: u64) -> SigningKey {
        use rand::SeedableRng;
        SigningKey::generate(alg, &mut rand::rngs::StdRng::seed_from_u64(seed)).expect("key")
    }

    fn header(alg: Algorithm, kid: &str) -> String {
        encoded_header(alg, kid, ACCESS_TOKEN_TYPE)
    }

    #[test]
    fn tokens_of_every_algorithm_round_trip_and_every_claim_check_bites() {
        for alg in Algorithm::ALL {
            let key = key(alg, 7);
            let keys = HashMap::from([("k1".to_owned(), key.verifying_key())]);
            let now = 1_800_000_000;
            let token = sign(&header(alg, "k1"), &key, &claims(now)).expect("signed");
            assert_eq!(key_id(&token), Ok(Some("k1".into())));
            assert_eq!(
                verify(&token, &keys, expect(now)).map(|c| c.sub),
                Ok("usr_1".into()),
                "{alg}"
            );
            assert_eq!(
                verify(&token, &keys, expect(now + 3600)).err(),
                Some(AccessTokenError::Expired)
            );
            assert_eq!(
                verify(&token, &keys, expect(now - 61)).err(),
                Some(AccessTokenError::NotYetValid)
            );
            let other_audience = Expectations {
                audience: Some("https://other.example"),
                ..expect(now)
            };
            assert_eq!(
                verify(&token, &keys, other_audience).err(),
                Some(AccessTokenError::WrongAudience)
            );
            let other_issuer = Expectations {
                issuer: "https://evil.example",
                ..expect(now)
            };
            assert_eq!(
                verify(&token, &keys, other_issuer).err(),
                Some(AccessTokenError::Invalid)
            );
            let unknown = sign(&header(alg, "k2"), &key, &claims(now)).expect("signed");
            assert_eq!(
                verify(&unknown, &keys, expect(now)).err(),
                Some(AccessTokenError::UnknownKey)
            );
            let stranger = self::key(alg, 9);
            let forged = sign(&header(alg, "k1"), &stranger, &claims(now)).expect("signed");
            assert_eq!(
                verify(&forged, &keys, expect(now)).err(),
                Some(AccessTokenError::Invalid),
                "{alg}"
            );
            let none = format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#),
                token.split('.').nth(1).expect("payload")
            );
            assert_eq!(
                verify(&none, &keys, expect(now)).err(),
                Some(AccessTokenError::WrongType)
            );
            let id_token = sign(
                &encoded_header(alg, "k1", ID_TOKEN_TYPE),
                &key,
                &claims(now),
            )
            .expect("signed");
            assert_eq!(
                verify(&id_token, &keys, expect(now)).err(),
                Some(AccessTokenError::WrongType),
                "an ID token is not an access token"
            );
            for mangled in [format!("{token}.x"), "a.b".into(), "garbage".into()] {
                assert!(verify(&mangled, &keys, expect(now)).is_err(), "{mangled}");
            }
        }
    }

    #[test]
    fn a_token_naming_another_algorithm_than_its_key_is_refused() {
        let now = 1_800_000_000;
        let rsa = key(Algorithm::RS256, 1);
        let keys = HashMap::from([("k1".to_owned(), rsa.verifying_key())]);
        for (alg, signer) in [
            (Algorithm::EdDSA, key(Algorithm::EdDSA, 1)),
            (Algorithm::ES256, key(Algorithm::ES256, 1)),
        ] {
            let token = sign(&header(alg, "k1"), &signer, &claims(now)).expect("signed");
            assert_eq!(
                verify(&token, &keys, expect(now)).err(),
                Some(AccessTokenError::WrongType)
            );
        }
        // Signed by the right key, but the header names another algorithm.
        let lying = sign(&header(Algorithm::ES256, "k1"), &rsa, &claims(now)).expect("signed");
        assert_eq!(
            verify(&lying, &keys, expect(now)).err(),
            Some(AccessTokenError::WrongType)
        );
    }

    #[test]
    fn keys_survive_storage_and_the_jwks() {
        for alg in Algorithm::ALL {
            let signer = key(alg, 3);
            let stored = SigningKey::from_pkcs8_der(alg, &signer.to_pkcs8_der().expect("der"))
                .expect("parsed");
            let public = signer.verifying_key();
            let bytes = public.to_public_bytes().expect("bytes");
            let same = |key: Option<VerifyingKey>| key.and_then(|k| k.to_public_bytes().ok());
            assert_eq!(same(Some(stored.verifying_key())), Some(bytes.clone()));
            assert_eq!(
                same(VerifyingKey::from_public_bytes(alg, &bytes).ok()),
                Some(bytes.clone())
            );
            let jwk = public.to_jwk("k1");
            assert_eq!(
                (jwk.alg.as_str(), jwk.key_use.as_str()),
                (alg.as_str(), "sig")
            );
            assert_eq!(same(VerifyingKey::from_jwk(&jwk)), Some(bytes));
            let mut encryption = jwk.clone();
            encryption.key_use = "enc".into();
            assert!(VerifyingKey::from_jwk(&encryption).is_none());
            assert!(SigningKey::from_pkcs8_der(alg, b"not a key").is_err());
        }
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // OpenID Connect Core, appendix A.3's access token and at_hash (RS256).
        assert_eq!(
            Algorithm::RS256.at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(Algorithm::EdDSA.at_hash("x").len(), 43);
    }
}
