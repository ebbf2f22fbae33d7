//! Forged access tokens at `/v1/me`: expired (with the server's own key, read from its
//! database), signed by another key under the same `kid`, `alg: none`, HS256 keyed with the
//! public key, another issuer or audience. A re-signed copy of the real claims passes, so each
//! refusal is about the one thing changed.

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth2::TokenResponse;
use serde_json::Value;

use crate::oauth::{approved_code, http};

fn part(token: &str, index: usize) -> Result<Value> {
    let encoded = token.split('.').nth(index).context("JWT part")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded)?)?)
}

fn sign(claims: &Value, kid: &str, algorithm: Algorithm, key: &EncodingKey) -> Result<String> {
    let mut header = Header::new(algorithm);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}

async fn me_status(server: &latchkey_testkit::Server, token: &str) -> Result<u16> {
    Ok(reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

/// A real token re-signed with the server's own key (the control, which must pass), and the
/// forgeries of it, each named.
pub struct Forgeries {
    pub resigned: String,
    pub forged: Vec<(&'static str, String)>,
}

/// Forges variants of `real`, a token `server` issued, with its signing key read from its
/// database as an attacker holding a copy would.
pub async fn forge(server: &latchkey_testkit::Server, real: &str) -> Result<Forgeries> {
    let header = part(real, 0)?;
    let claims = part(real, 1)?;
    let kid = header["kid"].as_str().context("kid")?;
    let sql = "SELECT private_pkcs8, public_key FROM signing_keys WHERE kid = $1";
    let (private, public): (Vec<u8>, Vec<u8>) = if server.database_url.starts_with("postgres") {
        let db = sqlx::PgPool::connect(&server.database_url).await?;
        sqlx::query_as(sql).bind(kid).fetch_one(&db).await?
    } else {
        let db = sqlx::SqlitePool::connect(&format!("{}?mode=ro", server.database_url)).await?;
        sqlx::query_as(sql).bind(kid).fetch_one(&db).await?
    };
    // The insider's view: the database and the master key in the data directory.
    let master = latchkey_core::master_key::MasterKey::parse(&std::fs::read_to_string(
        server.data_dir.join("master.key"),
    )?)?;
    let private = master.open(kid, &private)?;
    let server_key = EncodingKey::from_ed_der(&private);
    let resigned = sign(&claims, kid, Algorithm::EdDSA, &server_key)?;

    let now = claims["iat"].as_i64().context("iat")?;
    let mut expired = claims.clone();
    expired["iat"] = (now - 7200).into();
    expired["nbf"] = (now - 7200).into();
    expired["exp"] = (now - 3600).into();
    let mut other_issuer = claims.clone();
    other_issuer["iss"] = "https://evil.example".into();
    let mut other_audience = claims.clone();
    other_audience["aud"] = "https://another-api.example".into();

    let other_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let other_der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other_key)?;
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#)),
        real.split('.').nth(1).context("claims")?
    );
    let forged = vec![
        (
            "expired",
            sign(&expired, kid, Algorithm::EdDSA, &server_key)?,
        ),
        (
            "another issuer",
            sign(&other_issuer, kid, Algorithm::EdDSA, &server_key)?,
        ),
        (
            "another audience",
            sign(&other_audience, kid, Algorithm::EdDSA, &server_key)?,
        ),
        (
            "another key, same kid",
            sign(
                &claims,
                kid,
                Algorithm::EdDSA,
                &EncodingKey::from_ed_der(other_der.as_bytes()),
            )?,
        ),
        ("alg none", unsigned),
        (
            "HS256 keyed with the public key",
            sign(
                &claims,
                kid,
                Algorithm::HS256,
                &EncodingKey::from_secret(&public),
            )?,
        ),
        (
            "unknown kid",
            sign(&claims, "kid-nobody-has", Algorithm::EdDSA, &server_key)?,
        ),
    ];
    Ok(Forgeries { resigned, forged })
}

#[tokio::test]
async fn forged_and_expired_access_tokens_are_refused() -> Result<()> {
    let approved = approved_code("jwt-attacks").await?;
    let server = &approved.server;
    let tokens = approved
        .client
        .exchange_code(approved.code)
        .set_pkce_verifier(approved.verifier)
        .request_async(&http()?)
        .await?;
    let real = tokens.access_token().secret().clone();
    assert_eq!(me_status(server, &real).await?, 200);
    let forgeries = forge(server, &real).await?;
    assert_eq!(
        me_status(server, &forgeries.resigned).await?,
        200,
        "the control passes"
    );
    for (what, token) in forgeries.forged {
        assert_eq!(me_status(server, &token).await?, 401, "{what}");
    }
    Ok(())
}
