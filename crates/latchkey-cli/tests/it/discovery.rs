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
    assert_eq!(jwks.keys.len(), 1, "a new database gets one signing key");
    let key = &jwks.keys[0];
    assert_eq!(
        (key.kty.as_str(), key.crv.as_str(), key.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    assert_eq!(key.x.len(), 43, "32 bytes, base64url");

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
