//! Discovery documents served by the real binary, as an OAuth client or a gate reads them.

use anyhow::Result;
use latchkey_proto::oauth::{Jwks, ServerMetadata};
use latchkey_testkit::Server;

use crate::bin;

#[tokio::test]
async fn metadata_and_jwks_describe_this_issuer_and_survive_a_restart() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let response = reqwest::get(server.url("/.well-known/oauth-authorization-server")).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "*",
        "browser-based clients can read it"
    );
    let metadata: ServerMetadata = response.json().await?;
    assert_eq!(metadata.issuer, server.url);
    assert_eq!(metadata.jwks_uri, server.url("/.well-known/jwks.json"));
    assert_eq!(metadata.code_challenge_methods_supported, ["S256"]);
    assert!(metadata.authorization_response_iss_parameter_supported);
    let openid: ServerMetadata = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await?
        .json()
        .await?;
    assert_eq!(openid, metadata);

    let jwks: Jwks = reqwest::get(&metadata.jwks_uri).await?.json().await?;
    let mut kinds: Vec<(&str, Option<&str>, &str, &str)> = jwks
        .keys
        .iter()
        .map(|k| {
            (
                k.kty.as_str(),
                k.crv.as_deref(),
                k.alg.as_str(),
                k.key_use.as_str(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("EC", Some("P-256"), "ES256", "sig"),
            ("OKP", Some("Ed25519"), "EdDSA", "sig"),
            ("RSA", None, "RS256", "sig"),
        ],
        "a new database gets one signing key of each algorithm"
    );
    let ed25519 = jwks.keys.iter().find(|k| k.alg == "EdDSA").expect("EdDSA");
    assert_eq!(
        ed25519.x.as_ref().map(String::len),
        Some(43),
        "32 bytes, base64url"
    );

    server.restart().await?;
    let again: Jwks = reqwest::get(server.url("/.well-known/jwks.json"))
        .await?
        .json()
        .await?;
    assert_eq!(
        again, jwks,
        "the key is kept in the database, not made anew"
    );
    Ok(())
}
