//! Clients that are not built in: dynamic registration (RFC 7591) driven by the `oauth2` crate,
//! clients and machine clients declared in the config file, and `POST /auth/client`.

use anyhow::{Context, Result};
use latchkey_testkit::{LoopbackCallback, Person, Server, count_rows, sha256_hex, unique_email};
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, TokenResponse};
use serde_json::{Value, json};

use crate::{
    PASSWORD, bin,
    oauth::{consent, http, param, public_client},
};

pub(crate) async fn register(server: &Server, body: Value) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(server.url("/oauth/register"))
        .json(&body)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn a_self_registered_public_client_logs_in_with_pkce() -> Result<()> {
    let server = Server::start(bin()).await?;
    let callback = LoopbackCallback::start().await?;
    let (status, registered) = register(
        &server,
        json!({
            "client_name": "Inspector",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await?;
    assert_eq!(status, 201, "{registered}");
    let client_id = registered["client_id"].as_str().context("client_id")?;
    assert!(client_id.starts_with("dcr_"));
    assert_eq!(registered["token_endpoint_auth_method"], "none");

    let person = Person::verified_account(&server, &unique_email("dcr"), PASSWORD).await?;
    let client = public_client(&server, client_id, &callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let page = person.get(url.as_str()).await?;
    assert!(
        page.contains("id=\"self-registered\""),
        "the consent page says the name is unverified: {}",
        page.html
    );
    let query = consent(&person, url.as_str(), callback, "approve").await?;
    let code = param(&query, "code").context("code")?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.into()))
        .set_pkce_verifier(verifier)
        .request_async(&http()?)
        .await?;
    assert!(tokens.refresh_token().is_some());
    Ok(())
}

#[tokio::test]
async fn registration_refuses_what_a_public_client_may_not_have() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cases = [
        (
            json!({ "redirect_uris": ["https://evil.example/cb"] }),
            "invalid_redirect_uri",
        ),
        (json!({ "redirect_uris": [] }), "invalid_redirect_uri"),
        (
            json!({ "redirect_uris": ["http://127.0.0.1/cb#frag"] }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_basic" }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"] }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"] }),
            "invalid_client_metadata",
        ),
        (json!("not an object"), "invalid_client_metadata"),
    ];
    for (body, error) in cases {
        let (status, answer) = register(&server, body.clone()).await?;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
        assert!(answer["error_description"].is_string());
    }
    Ok(())
}

const MACHINE_SECRET: &str = "lkcs_machine-secret-for-tests";

/// `latchkey serve` with a config file declaring a machine client and a confidential client.
async fn server_with_declared_clients() -> Result<Server> {
    let hash = sha256_hex(MACHINE_SECRET);
    Server::start_with_config(
        bin(),
        &format!(
            "[[machine_clients]]\nclient_id = \"ci-bot\"\nsecret_sha256 = \"{hash}\"\nkey_ttl_secs = 3600\n\
             [[oauth_clients]]\nid = \"dashboard\"\nname = \"Dashboard\"\n\
             redirect_uris = [\"https://dashboard.example.com/cb\"]\nsecret_sha256 = \"{hash}\"\n"
        ),
        &[],
    )
    .await
}

async fn auth_client(server: &Server, body: Value) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(server.url("/auth/client"))
        .json(&body)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn anonymous_registration_is_throttled_per_address() -> Result<()> {
    let server = Server::start(bin()).await?;
    let client = json!({
        "client_name": "Flood",
        "redirect_uris": ["http://127.0.0.1/callback"],
    });
    for n in 1..=30 {
        let (status, body) = register(&server, client.clone()).await?;
        assert_eq!(status, 201, "registration {n}: {body}");
    }
    let stored = "SELECT count(*) FROM oauth_clients WHERE name = 'Flood'";
    assert_eq!(count_rows(&server.database_url, stored).await?, 30);

    let refused = reqwest::Client::new()
        .post(server.url("/oauth/register"))
        .json(&client)
        .send()
        .await?;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    assert!(
        (1..=30).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("try again in")),
        "{body}"
    );
    assert_eq!(
        count_rows(&server.database_url, stored).await?,
        30,
        "the refused registration stored nothing"
    );

    // The budget is the address's: another address still registers.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()?
        .post(server.url("/oauth/register"))
        .json(&client)
        .send()
        .await?;
    assert_eq!(elsewhere.status(), 201);

    // A registration asking for what a public client may not have still gets its own answer.
    let (status, body) = register(
        &server,
        json!({
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");
    Ok(())
}

#[tokio::test]
async fn a_declared_machine_client_trades_its_secret_for_a_short_lived_key() -> Result<()> {
    let server = server_with_declared_clients().await?;
    let (status, issued) = auth_client(
        &server,
        json!({ "client_id": "ci-bot", "client_secret": MACHINE_SECRET }),
    )
    .await?;
    assert_eq!(status, 200, "{issued}");
    let key = issued["api_key"].as_str().context("api_key")?;
    assert!(key.starts_with(issued["key_prefix"].as_str().context("prefix")?));
    let expires = time::OffsetDateTime::parse(
        issued["expires_at"].as_str().context("expires_at")?,
        &time::format_description::well_known::Rfc3339,
    )?;
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left.whole_seconds() > 3500 && left.whole_seconds() <= 3600,
        "{left}"
    );
    let me: Value = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .header("x-api-key", key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(me["user_id"], issued["user_id"]);
    assert_eq!(me["email"], "ci-bot@machine-clients.invalid");

    // The same account every time; wrong secrets and unknown clients look alike.
    let (_, again) = auth_client(
        &server,
        json!({ "client_id": "ci-bot", "client_secret": MACHINE_SECRET }),
    )
    .await?;
    assert_eq!(again["user_id"], issued["user_id"]);
    assert_ne!(again["api_key"], issued["api_key"]);
    let (wrong, wrong_body) = auth_client(
        &server,
        json!({ "client_id": "ci-bot", "client_secret": "guess" }),
    )
    .await?;
    let (unknown, unknown_body) = auth_client(
        &server,
        json!({ "client_id": "nobody", "client_secret": MACHINE_SECRET }),
    )
    .await?;
    assert_eq!((wrong, unknown), (401, 401));
    assert_eq!(wrong_body, unknown_body);
    assert_eq!(wrong_body["error"], "unauthorized");
    let (missing, _) = auth_client(&server, json!({ "client_id": "ci-bot" })).await?;
    assert_eq!(missing, 400);

    // The machine account has no password: it cannot sign in on a page.
    let person = Person::new(&server)?;
    let page = person
        .sign_in("ci-bot@machine-clients.invalid", "anything at all")
        .await?;
    assert!(
        !page.status.is_success() || !page.url.contains("/account"),
        "{}",
        page.url
    );
    Ok(())
}

#[tokio::test]
async fn a_declared_confidential_client_gets_client_credentials_tokens() -> Result<()> {
    let server = server_with_declared_clients().await?;
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .basic_auth("dashboard", Some(MACHINE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let wrong = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .basic_auth("dashboard", Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    Ok(())
}

#[tokio::test]
async fn confidential_self_registration_is_refused_unless_the_deployment_allows_it() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (status, body) = register(
        &server,
        json!({
            "client_name": "Backend",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
        }),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let stored = "SELECT COUNT(*) FROM oauth_clients WHERE name = 'Backend'";
    assert_eq!(count_rows(&server.database_url, stored).await?, 0);
    Ok(())
}

/// `registration_client_uri` with the registration access token.
async fn manage(
    method: reqwest::Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new()
        .request(method, uri)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_client_registers_as_confidential_then_reads_updates_and_deletes_its_registration()
-> Result<()> {
    let server =
        Server::start_with_config(bin(), "[registration]\nallow_confidential = true\n", &[])
            .await?;
    let (status, registered) = register(
        &server,
        json!({
            "client_name": "Billing backend",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "redirect_uris": ["https://billing.example.com/callback"],
        }),
    )
    .await?;
    assert_eq!(status, 201, "{registered}");
    let id = registered["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    let secret = registered["client_secret"]
        .as_str()
        .context("client_secret")?
        .to_owned();
    assert_eq!(registered["client_secret_expires_at"], 0);
    let token = registered["registration_access_token"]
        .as_str()
        .context("registration_access_token")?
        .to_owned();
    let uri = registered["registration_client_uri"]
        .as_str()
        .context("registration_client_uri")?
        .to_owned();
    assert_eq!(uri, server.url(&format!("/oauth/register/{id}")));

    // The secret works for client credentials (the oauth2 crate as the client).
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(secret.clone()))
        .set_token_uri(oauth2::TokenUrl::new(server.url("/oauth/token"))?);
    let tokens = client
        .exchange_client_credentials()
        .request_async(&http()?)
        .await?;
    assert!(!tokens.access_token().secret().is_empty());

    // Read it back (no secrets in it); a wrong token reads nothing, and says the same for an
    // unknown client.
    let (status, read) = manage(reqwest::Method::GET, &uri, &token, None).await?;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["client_name"], "Billing backend");
    assert!(read.get("client_secret").is_none() && read.get("registration_access_token").is_none());
    let wrong = manage(reqwest::Method::GET, &uri, "lkra_guessed", None).await?;
    let unknown = manage(
        reqwest::Method::GET,
        &server.url("/oauth/register/dcr_nobody"),
        &token,
        None,
    )
    .await?;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown, "client ids cannot be probed");

    // Update: a new name and redirect URI; the method cannot change.
    let (status, updated) = manage(
        reqwest::Method::PUT,
        &uri,
        &token,
        Some(json!({
            "client_name": "Billing backend v2",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "redirect_uris": ["https://billing.example.com/v2/callback"],
        })),
    )
    .await?;
    assert_eq!(status, 200, "{updated}");
    let (_, read) = manage(reqwest::Method::GET, &uri, &token, None).await?;
    assert_eq!(read["client_name"], "Billing backend v2");
    assert_eq!(
        read["redirect_uris"],
        json!(["https://billing.example.com/v2/callback"])
    );
    let (status, refused) = manage(
        reqwest::Method::PUT,
        &uri,
        &token,
        Some(json!({"client_name": "x", "token_endpoint_auth_method": "none"})),
    )
    .await?;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );

    // Delete: the client is gone, its secret no longer works.
    assert_eq!(
        manage(reqwest::Method::DELETE, &uri, &token, None).await?.0,
        204
    );
    assert!(
        client
            .exchange_client_credentials()
            .request_async(&http()?)
            .await
            .is_err()
    );
    assert_eq!(
        manage(reqwest::Method::GET, &uri, &token, None).await?.0,
        401
    );
    Ok(())
}
