//! The audience rule (RFC 8707, RFC 9728): a gate accepts a token minted for the resource it
//! advertises, however the client spelled it (trailing slash, upper-case host, default port),
//! whether the gate was given a public URL or not, standalone or inside the server; and still
//! refuses a token for another resource.

use anyhow::{Context, Result};
use latchkey_testkit::{Person, Server, unique_email};
use serde_json::Value;

use crate::{
    PASSWORD,
    gate_proxy::{answering_upstream, gate, issuer, server_with_gate},
    oauth::token_pair_for,
};

/// The resource the gate at `gate_url` advertises (RFC 9728).
async fn advertised_resource(gate_url: &str) -> Result<String> {
    let document: Value = reqwest::get(format!("{gate_url}/.well-known/oauth-protected-resource"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(document["resource"]
        .as_str()
        .context("resource")?
        .to_owned())
}

/// The `aud` claim of a JWT.
fn audience(token: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let payload = token.split('.').nth(1).context("a JWT")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    Ok(claims["aud"].as_str().context("aud")?.to_owned())
}

/// Tokens for the advertised resource in every spelling pass; one for another resource does not.
async fn assert_audience_rule(server: &Server, person: &Person, gate_url: &str) -> Result<()> {
    let resource = advertised_resource(gate_url).await?;
    let port = resource.rsplit(':').next().context("port")?.to_owned();
    let spellings = [
        resource.clone(),
        format!("{resource}/"),
        resource.replace("http://", "HTTP://"),
    ];
    let http = reqwest::Client::new();
    for spelling in spellings {
        let (token, _) = token_pair_for(server, person, Some(&spelling)).await?;
        assert_eq!(
            audience(&token)?,
            resource,
            "the server records the canonical form"
        );
        let status = http
            .get(format!("{gate_url}/tool"))
            .bearer_auth(&token)
            .send()
            .await?
            .status();
        assert_eq!(
            status, 200,
            "a token for {spelling:?} through the gate advertising {resource}"
        );
    }
    let (elsewhere, _) = token_pair_for(
        server,
        person,
        Some(&format!("http://127.0.0.1:{port}/other")),
    )
    .await?;
    let status = http
        .get(format!("{gate_url}/tool"))
        .bearer_auth(&elsewhere)
        .send()
        .await?
        .status();
    assert_eq!(status, 401, "a token for another resource is refused");
    Ok(())
}

#[tokio::test]
async fn a_standalone_gate_on_default_flags_accepts_tokens_for_what_it_advertises() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("aud"), PASSWORD).await?;
    let (_gate, gate_url) = gate(&server, &answering_upstream().await?, &[]).await?;
    assert_audience_rule(&server, &person, &gate_url).await
}

#[tokio::test]
async fn a_gate_with_a_public_url_accepts_tokens_for_that_url() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("aud-public"), PASSWORD).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (_gate, gate_url) = gate(
        &server,
        &answering_upstream().await?,
        &[
            "--listen",
            &listen,
            "--public-url",
            &format!("http://localhost:{port}/"),
        ],
    )
    .await?;
    assert_eq!(
        advertised_resource(&gate_url).await?,
        format!("http://localhost:{port}")
    );
    assert_audience_rule(&server, &person, &gate_url).await
}

#[tokio::test]
async fn the_gate_inside_the_server_accepts_tokens_for_what_it_advertises() -> Result<()> {
    let (server, gate_url) = server_with_gate(&answering_upstream().await?).await?;
    let person = Person::verified_account(&server, &unique_email("aud-inside"), PASSWORD).await?;
    assert_audience_rule(&server, &person, &gate_url).await
}

#[tokio::test]
async fn a_deployment_that_lists_its_resources_refuses_tokens_for_any_other() -> Result<()> {
    let server = Server::start_with_config(
        crate::bin(),
        "allowed_resources = [\"https://api.example.test/mcp\"]\n",
        &[],
    )
    .await?;
    let ask = |resource: String| {
        let request = reqwest::Client::new()
            .post(server.url("/oauth/device_authorization"))
            .form(&[
                ("client_id", "latchkey-cli"),
                ("resource", resource.as_str()),
            ])
            .send();
        async move {
            let response = request.await?;
            anyhow::Ok((response.status().as_u16(), response.json::<Value>().await?))
        }
    };
    for known in [
        "https://api.example.test/mcp".to_owned(),
        "HTTPS://API.example.test:443/mcp".to_owned(),
        server.url.clone(),
    ] {
        assert_eq!(ask(known.clone()).await?.0, 200, "{known}");
    }
    for unknown in ["https://api.example.test/other", "https://evil.example/mcp"] {
        let (status, body) = ask(unknown.to_owned()).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target")),
            "{unknown}"
        );
    }
    Ok(())
}
