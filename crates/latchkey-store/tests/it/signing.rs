use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use latchkey_core::{AccessGrant, AccessTokenError};
use latchkey_proto::{
    jws::Algorithm,
    oauth::{Jwk, Jwks},
};

use crate::Harness;

const ISSUER: &str = "http://127.0.0.1:8080";

fn grant(resource: Option<&str>) -> AccessGrant {
    AccessGrant {
        user_id: "usr_1".into(),
        org_id: "org_1".into(),
        client_id: "latchkey-cli".into(),
        scope: "openid offline_access".into(),
        resource: resource.map(str::to_owned),
        login: None,
        alg: None,
        lifetime: None,
        standing: Default::default(),
    }
}

/// The published key of `alg` (there is one of each).
fn key_of(jwks: &Jwks, alg: Algorithm) -> Jwk {
    jwks.keys
        .iter()
        .find(|k| k.alg == alg.as_str())
        .cloned()
        .expect("a key of every algorithm")
}

async fn harness_with_keys() -> Harness {
    let h = Harness::new().await;
    h.service.load_signing_keys().await.expect("keys");
    h
}

#[tokio::test]
async fn an_issued_token_verifies_with_the_claims_of_the_grant() {
    let h = harness_with_keys().await;
    let issued = h.service.issue_access_token(&grant(None)).expect("issued");
    assert_eq!(issued.expires_in, Duration::from_secs(3600));
    let claims = h
        .service
        .verify_access_token(&issued.token, ISSUER)
        .expect("valid");
    assert_eq!(claims, issued.claims);
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, ISSUER, "no resource: the issuer's own API");
    assert_eq!(claims.sub, "usr_1");
    assert_eq!(claims.tenant_id, "org_1");
    assert_eq!(claims.subscription_status, "none");
    assert_eq!(claims.exp - claims.iat, 3600);

    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(issued.token.split('.').next().expect("header"))
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(
        header["kid"],
        key_of(&h.service.jwks(), Algorithm::EdDSA).kid.as_str()
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_by_the_service_clock() {
    let h = harness_with_keys().await;
    let issued = h.service.issue_access_token(&grant(None)).expect("issued");
    h.clock.advance(Duration::from_secs(3599));
    assert!(h.service.verify_access_token(&issued.token, ISSUER).is_ok());
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.service.verify_access_token(&issued.token, ISSUER),
        Err(AccessTokenError::Expired)
    );
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused_here() {
    let h = harness_with_keys().await;
    let issued = h
        .service
        .issue_access_token(&grant(Some("https://mcp.example.com")))
        .expect("issued");
    assert_eq!(
        h.service.verify_access_token(&issued.token, ISSUER),
        Err(AccessTokenError::WrongAudience)
    );
    assert!(
        h.service
            .verify_access_token(&issued.token, "https://mcp.example.com")
            .is_ok()
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let h = harness_with_keys().await;
    let issued = h.service.issue_access_token(&grant(None)).expect("issued");
    let parts: Vec<&str> = issued.token.split('.').collect();

    // A changed claim under the original signature.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = "usr_admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        h.service.verify_access_token(&tampered, ISSUER),
        Err(AccessTokenError::Invalid)
    );

    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert!(matches!(
        h.service.verify_access_token(&unsigned, ISSUER),
        Err(AccessTokenError::Malformed | AccessTokenError::WrongType)
    ));

    // HS256 keyed with the published public key (the classic algorithm-confusion attack).
    let jwk = &key_of(&h.service.jwks(), Algorithm::EdDSA);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(jwk.kid.clone());
    let confused = jsonwebtoken::encode(
        &header,
        &issued.claims,
        &jsonwebtoken::EncodingKey::from_secret(jwk.x.as_deref().expect("x").as_bytes()),
    )
    .expect("hs256");
    assert_eq!(
        h.service.verify_access_token(&confused, ISSUER),
        Err(AccessTokenError::WrongType)
    );

    // Signed by a key this issuer never published.
    let stranger = harness_with_keys().await;
    let foreign = stranger
        .service
        .issue_access_token(&grant(None))
        .expect("issued");
    assert_eq!(
        h.service.verify_access_token(&foreign.token, ISSUER),
        Err(AccessTokenError::UnknownKey)
    );
    assert_eq!(
        h.service.verify_access_token("not.a.jwt", ISSUER),
        Err(AccessTokenError::Malformed)
    );
    // Extra segments, or a signature cut short, are not the same token.
    for mangled in [
        format!("{}.extra", issued.token),
        format!("{}.{}", parts[0], parts[1]),
        issued.token[..issued.token.len() - 4].to_owned(),
    ] {
        assert!(
            h.service.verify_access_token(&mangled, ISSUER).is_err(),
            "{mangled}"
        );
    }
    // The issuer's own tokens verify with an independent implementation (jsonwebtoken).
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[ISSUER]);
    validation.set_issuer(&[ISSUER]);
    let key =
        jsonwebtoken::DecodingKey::from_ed_components(jwk.x.as_deref().expect("x")).expect("jwk");
    let decoded = jsonwebtoken::decode::<serde_json::Value>(&issued.token, &key, &validation)
        .expect("jsonwebtoken accepts our tokens");
    assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"));
}

#[tokio::test]
async fn tokens_of_every_algorithm_verify_here_and_with_jsonwebtoken() {
    let h = harness_with_keys().await;
    let jwks = h.service.jwks();
    assert_eq!(jwks.keys.len(), 3, "one key of each algorithm");
    for (alg, theirs) in [
        (Algorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA),
        (Algorithm::RS256, jsonwebtoken::Algorithm::RS256),
        (Algorithm::ES256, jsonwebtoken::Algorithm::ES256),
    ] {
        let issued = h
            .service
            .issue_access_token(&AccessGrant {
                alg: Some(alg),
                ..grant(None)
            })
            .expect("issued");
        let claims = h
            .service
            .verify_access_token(&issued.token, ISSUER)
            .expect("verifies here");
        assert_eq!(claims, issued.claims);
        let jwk = key_of(&jwks, alg);
        let part = |value: &Option<String>| value.clone().expect("a key component");
        let key = match alg {
            Algorithm::EdDSA => jsonwebtoken::DecodingKey::from_ed_components(&part(&jwk.x)),
            Algorithm::RS256 => {
                jsonwebtoken::DecodingKey::from_rsa_components(&part(&jwk.n), &part(&jwk.e))
            }
            Algorithm::ES256 => {
                jsonwebtoken::DecodingKey::from_ec_components(&part(&jwk.x), &part(&jwk.y))
            }
        }
        .expect("the JWK is readable");
        let mut validation = jsonwebtoken::Validation::new(theirs);
        validation.set_audience(&[ISSUER]);
        validation.set_issuer(&[ISSUER]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&issued.token, &key, &validation)
            .expect("jsonwebtoken accepts the token");
        assert_eq!(decoded.header.kid.as_deref(), Some(jwk.kid.as_str()));
    }
}

#[tokio::test]
async fn keys_survive_a_restart_and_rotation_keeps_old_tokens_valid_until_they_expire() {
    let h = harness_with_keys().await;
    let before = h.service.issue_access_token(&grant(None)).expect("issued");

    let restarted = h.another_service().await;
    restarted.load_signing_keys().await.expect("keys");
    assert_eq!(
        restarted.jwks(),
        h.service.jwks(),
        "the same key, not a new one"
    );
    assert!(restarted.verify_access_token(&before.token, ISSUER).is_ok());

    let new_kids = restarted.rotate_signing_key().await.expect("rotated");
    assert_eq!(new_kids.len(), 3, "a new key of every algorithm");
    let jwks = restarted.jwks();
    assert_eq!(jwks.keys.len(), 6, "the old keys stay published");
    // Keys come in Algorithm::ALL's order: EdDSA first.
    let new_kid = new_kids[0].clone();
    let after = restarted.issue_access_token(&grant(None)).expect("issued");
    assert!(restarted.verify_access_token(&before.token, ISSUER).is_ok());
    let header = jsonwebtoken::decode_header(&after.token).expect("header");
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));

    // A rotation after every token of the first key has expired forgets that key.
    h.clock.advance(Duration::from_secs(3600 + 61));
    restarted.rotate_signing_key().await.expect("rotated again");
    let kids: Vec<String> = restarted.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(
        kids.len(),
        6,
        "the first keys are gone, the second and third stay"
    );
    assert!(kids.contains(&new_kid));
    assert_eq!(
        restarted.verify_access_token(&before.token, ISSUER),
        Err(AccessTokenError::UnknownKey)
    );
}

#[tokio::test]
async fn a_copy_of_the_database_cannot_sign() {
    let h = harness_with_keys().await;
    let records = h.store.signing_keys().await.expect("keys");
    let active = records
        .iter()
        .find(|r| r.retired_at.is_none() && r.alg == Algorithm::EdDSA)
        .expect("an active key");
    assert!(latchkey_core::master_key::is_sealed(&active.private_pkcs8));
    let der = h
        .master_key
        .open(&active.kid, &active.private_pkcs8)
        .expect("opens with the master key");
    let seed = {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        ed25519_dalek::SigningKey::from_pkcs8_der(&der)
            .expect("a PKCS#8 Ed25519 key")
            .to_bytes()
    };
    let copy = h.database_copy().await;
    assert!(
        !copy.windows(seed.len()).any(|w| w == seed),
        "the private key is not in the database in the clear"
    );

    // A service with the copy but not the master key cannot load it, let alone sign.
    for wrong in [
        None,
        Some(latchkey_core::master_key::MasterKey::generate(
            &mut rand::thread_rng(),
        )),
    ] {
        let thief = h.service_with_master_key(wrong).await;
        let loaded = thief.load_signing_keys().await;
        assert!(
            matches!(loaded, Err(latchkey_core::SigningError::Sealed(_))),
            "{loaded:?}"
        );
        assert!(thief.issue_access_token(&grant(None)).is_err());
    }
}

#[tokio::test]
async fn keys_kept_in_the_clear_by_an_older_version_are_sealed_at_the_next_start() {
    let h = Harness::new().await;
    let old = h.service_with_master_key(None).await;
    old.load_signing_keys().await.expect("a key in the clear");
    let before = old.issue_access_token(&grant(None)).expect("issued");
    let stored = h.store.signing_keys().await.expect("keys");
    assert!(
        stored
            .iter()
            .all(|k| !latchkey_core::master_key::is_sealed(&k.private_pkcs8))
    );

    h.service
        .load_signing_keys()
        .await
        .expect("loaded and sealed");
    let sealed = h.store.signing_keys().await.expect("keys");
    assert_eq!(sealed.len(), 3, "the same keys, not new ones");
    assert!(
        sealed
            .iter()
            .all(|k| latchkey_core::master_key::is_sealed(&k.private_pkcs8))
    );
    assert!(h.service.verify_access_token(&before.token, ISSUER).is_ok());
    let after = h.service.issue_access_token(&grant(None)).expect("signs");
    assert!(old.verify_access_token(&after.token, ISSUER).is_ok());
}
