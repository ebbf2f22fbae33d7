//! The device authorization grant (RFC 8628), driven by the `oauth2` crate, with the person on
//! `/device`; and the attacks on it: fast polling, guessing codes, denial.

use std::time::Duration;

use anyhow::{Context, Result};
use latchkey_testkit::{Decision, Person, Server, unique_email};
use oauth2::{
    AuthType, ClientId, DeviceAuthorizationUrl, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl, basic::BasicClient,
};
use serde_json::Value;

use crate::{PASSWORD, bin};

async fn device_authorization(server: &Server) -> Result<Value> {
    Ok(reqwest::Client::new()
        .post(server.url("/oauth/device_authorization"))
        .form(&[
            ("client_id", "latchkey-cli"),
            ("scope", "openid offline_access"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn poll(server: &Server, device_code: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "latchkey-cli"),
        ])
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn the_oauth2_crate_gets_tokens_once_the_person_approves_the_code() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("device"), PASSWORD).await?;
    let client = BasicClient::new(ClientId::new("latchkey-cli".into()))
        .set_device_authorization_url(DeviceAuthorizationUrl::new(
            server.url("/oauth/device_authorization"),
        )?)
        .set_token_uri(TokenUrl::new(server.url("/oauth/token"))?)
        .set_auth_type(AuthType::RequestBody);
    let http = crate::oauth::http()?;
    let details: StandardDeviceAuthorizationResponse =
        client.exchange_device_code().request_async(&http).await?;
    let user_code = details.user_code().secret().clone();
    assert!(
        user_code.len() == 9 && user_code.as_bytes()[4] == b'-',
        "XXXX-XXXX: {user_code}"
    );
    assert_eq!(details.verification_uri().as_str(), server.url("/device"));

    let polling = {
        let (client, http, details) = (client.clone(), http.clone(), details.clone());
        tokio::spawn(async move {
            client
                .exchange_device_access_token(&details)
                .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(60)))
                .await
        })
    };
    let done = person
        .decide_device_code(&user_code, Decision::Approve)
        .await?;
    assert!(done.contains("Return to your terminal"));
    let tokens = tokio::time::timeout(Duration::from_secs(30), polling)
        .await
        .context("polling did not finish")??
        .context("the device grant failed")?;
    let me: Value = http
        .get(server.url("/v1/me"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["credential"]["kind"], "access_token");
    assert!(tokens.refresh_token().is_some());

    // Delivered once: a later poll with the same device code gets nothing.
    let (status, body) = poll(&server, details.device_code().secret()).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    Ok(())
}

#[tokio::test]
async fn polling_too_fast_is_slowed_and_a_denial_is_reported() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("deny"), PASSWORD).await?;
    let started = device_authorization(&server).await?;
    let device_code = started["device_code"].as_str().context("device_code")?;
    assert_eq!(started["interval"], 5);

    let (_, first) = poll(&server, device_code).await?;
    assert_eq!(first["error"], "authorization_pending");
    let (_, second) = poll(&server, device_code).await?;
    assert_eq!(second["error"], "slow_down");

    person
        .decide_device_code(
            started["user_code"].as_str().context("code")?,
            Decision::Deny,
        )
        .await?;
    let (_, denied) = poll(&server, device_code).await?;
    assert_eq!(denied["error"], "access_denied");
    let (_, unknown) = poll(&server, "lkd_guessed").await?;
    assert_eq!(unknown["error"], "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn guessing_user_codes_is_throttled() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("guess"), PASSWORD).await?;
    let form = person.get("/device").await?;
    let csrf = form.csrf()?;
    let mut statuses = Vec::new();
    for guess in [
        "BCDF-GHJK",
        "BCDF-GHJL",
        "BCDF-GHJM",
        "BCDF-GHJN",
        "BCDF-GHJP",
        "BCDF-GHJQ",
        "BCDF-GHJR",
        "BCDF-GHJS",
        "BCDF-GHJT",
        "BCDF-GHJV",
        "BCDF-GHJW",
    ] {
        let page = person
            .post_form("/device", &[("csrf", &csrf), ("user_code", guess)])
            .await?;
        statuses.push(page.status.as_u16());
    }
    assert_eq!(&statuses[..10], &[404; 10], "wrong codes are refused");
    assert_eq!(statuses[10], 429, "the 11th guess in a row is throttled");

    // Even a real code is refused while throttled, so guessing gains nothing.
    let started = device_authorization(&server).await?;
    let real = started["user_code"].as_str().context("code")?;
    let page = person
        .post_form("/device", &[("csrf", &csrf), ("user_code", real)])
        .await?;
    assert_eq!(page.status.as_u16(), 429);
    Ok(())
}
