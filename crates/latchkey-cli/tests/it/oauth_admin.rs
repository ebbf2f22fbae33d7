//! Machine clients and resource servers: `latchkey admin clients create`, the
//! client_credentials grant (driven by the `oauth2` crate), introspection, revocation, and
//! `latchkey admin keys rotate`.

use anyhow::{Context, Result};
use latchkey_proto::oauth::Jwks;
use latchkey_testkit::{Person, Server, unique_email};
use oauth2::{AuthType, ClientId, ClientSecret, TokenResponse, TokenUrl, basic::BasicClient};
use serde_json::Value;

use crate::{PASSWORD, bin};

/// Runs `latchkey admin … --database-url <the server's>` and returns its stdout.
async fn admin(server: &Server, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(bin())
        .args(["admin", "--dev", "--data-dir"])
        .arg(&server.data_dir)
        .args(["--database-url", &server.database_url])
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "latchkey admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Creates a confidential client; returns its id and secret.
async fn confidential_client(server: &Server, name: &str) -> Result<(String, String)> {
    let out = admin(server, &["clients", "create", "--name", name]).await?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {name} in {out}"))
    };
    Ok((field("client_id:")?, field("client_secret:")?))
}

async fn introspect(
    server: &Server,
    auth: Option<(&str, &str)>,
    token: &str,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new()
        .post(server.url("/oauth/introspect"))
        .form(&[("token", token)]);
    if let Some((id, secret)) = auth {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn a_machine_client_gets_tokens_that_a_resource_server_can_introspect() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (id, secret) = confidential_client(&server, "billing worker").await?;
    let (rs_id, rs_secret) = confidential_client(&server, "resource server").await?;

    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new(secret.clone()))
        .set_token_uri(TokenUrl::new(server.url("/oauth/token"))?)
        .set_auth_type(AuthType::BasicAuth);
    let http = oauth2::reqwest::Client::new();
    let token = client
        .exchange_client_credentials()
        .request_async(&http)
        .await?;
    assert!(
        token.refresh_token().is_none(),
        "machines get no refresh token"
    );
    let jwt = token.access_token().secret().clone();

    let (status, body) = introspect(&server, Some((&rs_id, &rs_secret)), &jwt).await?;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "access_token");
    assert_eq!(body["client_id"], id.as_str());

    // An API key and garbage, through the same endpoint.
    let person = Person::verified_account(&server, &unique_email("rs"), PASSWORD).await?;
    let key = person.create_api_key("rs").await?["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, body) = introspect(&server, Some((&rs_id, &rs_secret)), &key).await?;
    assert_eq!(
        (body["active"].clone(), body["token_type"].clone()),
        (true.into(), "api_key".into())
    );
    let (_, body) = introspect(&server, Some((&rs_id, &rs_secret)), "lk_garbage").await?;
    assert_eq!(body, serde_json::json!({ "active": false }));

    // Introspection needs an authenticated confidential client.
    let (status, body) = introspect(&server, None, &jwt).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = introspect(&server, Some((&rs_id, "lkcs_wrong")), &jwt).await?;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .post(server.url("/oauth/introspect"))
        .form(&[("token", jwt.as_str()), ("client_id", "latchkey-cli")])
        .send()
        .await?;
    assert_eq!(
        response.json::<Value>().await?["error"],
        "unauthorized_client"
    );

    // A wrong secret gets no token at all.
    let wrong = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new("lkcs_wrong".into()))
        .set_token_uri(TokenUrl::new(server.url("/oauth/token"))?)
        .set_auth_type(AuthType::BasicAuth);
    assert!(
        wrong
            .exchange_client_credentials()
            .request_async(&http)
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn rotating_the_signing_key_keeps_earlier_tokens_valid() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let (id, secret) = confidential_client(&server, "rotation").await?;
    let client = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(server.url("/oauth/token"))?);
    let http = oauth2::reqwest::Client::new();
    let before = client
        .exchange_client_credentials()
        .request_async(&http)
        .await?;

    let out = admin(&server, &["keys", "rotate"]).await?;
    assert!(out.starts_with("Added signing keys sk_"), "{out}");
    server.restart().await?;
    let jwks: Jwks = reqwest::get(server.url("/.well-known/jwks.json"))
        .await?
        .json()
        .await?;
    assert_eq!(
        jwks.keys.len(),
        6,
        "old and new keys of the three algorithms are all published"
    );
    let after = client
        .exchange_client_credentials()
        .request_async(&http)
        .await?;
    assert_ne!(
        jwt_kid(before.access_token().secret())?,
        jwt_kid(after.access_token().secret())?,
        "new tokens are signed with the new key"
    );
    Ok(())
}

/// The `kid` in a JWT's header.
fn jwt_kid(token: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD.decode(token.split('.').next().context("no header")?)?,
    )?;
    Ok(header["kid"].as_str().context("no kid")?.to_owned())
}
