//! Access tokens on the wire: the one JWS shape latchkey issues (compact, `alg: EdDSA`,
//! `typ: at+jwt`, a `kid`), signed and checked with ed25519-dalek on keys parsed once. Pure:
//! the caller passes the keys, the expected issuer and audience, and the time. The issuer and
//! the gate both verify through [`verify`].

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::oauth::AccessTokenClaims;

/// Tolerated clock difference between the issuer and whoever checks its tokens (for `nbf`).
pub const LEEWAY_SECS: i64 = 60;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccessTokenError {
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the access token is not an EdDSA at+jwt")]
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

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// The encoded JWS header for tokens signed by `kid`: the same for every token.
pub fn encoded_header(kid: &str) -> String {
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// Signs `claims` as header.payload.signature, with a header made by [`encoded_header`].
pub fn sign(
    encoded_header: &str,
    key: &SigningKey,
    claims: &AccessTokenClaims,
) -> Result<String, serde_json::Error> {
    let payload = serde_json::to_vec(claims)?;
    let mut token = format!("{encoded_header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
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

/// Checks the header (EdDSA, `at+jwt`, a `kid` in `keys`) before the signature, so `alg: none`
/// and HS256-with-the-public-key never reach a verifier; then `verify_strict`, then `iss`,
/// `aud`, `exp` and `nbf`.
pub fn verify(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
    expect: Expectations<'_>,
) -> Result<AccessTokenClaims, AccessTokenError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(AccessTokenError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(AccessTokenError::Malformed)?;
    let header = parse_header(header)?;
    if header.alg != "EdDSA" || header.typ.as_deref() != Some("at+jwt") {
        return Err(AccessTokenError::WrongType);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.get(kid))
        .ok_or(AccessTokenError::UnknownKey)?;
    let signature = ed25519_dalek::Signature::from_slice(&decode(signature)?)
        .map_err(|_| AccessTokenError::Invalid)?;
    key.verify_strict(signing_input.as_bytes(), &signature)
        .map_err(|_| AccessTokenError::Invalid)?;
    let claims: AccessTokenClaims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| AccessTokenError::Invalid)?;
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

    #[test]
    fn tokens_round_trip_and_every_claim_check_bites() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let keys = HashMap::from([("k1".to_owned(), key.verifying_key())]);
        let now = 1_800_000_000;
        let token = sign(&encoded_header("k1"), &key, &claims(now)).expect("signed");
        assert_eq!(key_id(&token), Ok(Some("k1".into())));
        assert_eq!(
            verify(&token, &keys, expect(now)).map(|c| c.sub),
            Ok("usr_1".into())
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
        let unknown = sign(&encoded_header("k2"), &key, &claims(now)).expect("signed");
        assert_eq!(
            verify(&unknown, &keys, expect(now)).err(),
            Some(AccessTokenError::UnknownKey)
        );
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let forged = sign(&encoded_header("k1"), &stranger, &claims(now)).expect("signed");
        assert_eq!(
            verify(&forged, &keys, expect(now)).err(),
            Some(AccessTokenError::Invalid)
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
        for mangled in [format!("{token}.x"), "a.b".into(), "garbage".into()] {
            assert!(verify(&mangled, &keys, expect(now)).is_err(), "{mangled}");
        }
    }
}
