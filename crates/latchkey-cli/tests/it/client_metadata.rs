//! Client ID Metadata Documents: an MCP-style client whose `client_id` is the URL of its own
//! metadata, driven by the `oauth2` crate; and the SSRF guards around fetching it.

use anyhow::{Context, Result};
use latchkey_testkit::{CannedServer, LoopbackCallback, Person, Server, unique_email};
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, TokenResponse};
use serde_json::json;

use crate::{
    PASSWORD, bin,
    oauth::{consent, http, param, public_client},
};

const DOC_PATH: &str = "/oauth/client.json";

/// A metadata document naming itself, with the loopback redirect the test listens on.
async fn document(name: &str) -> Result<CannedServer> {
    let name = name.to_owned();
    CannedServer::start(
        "200 OK",
        &[("content-type", "application/json")],
        move |base| {
            json!({
                "client_id": format!("{base}{DOC_PATH}"),
                "client_name": name,
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
            })
            .to_string()
            .into_bytes()
        },
    )
    .await
}

async fn server_fetching_loopback_documents() -> Result<Server> {
    Server::start_with_config(bin(), "", &["--client-metadata-insecure-loopback"]).await
}

fn authorize_url(server: &Server, client_id: &str, redirect: &str) -> String {
    let mut url = url::Url::parse(&server.url("/oauth/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "s")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    url.into()
}

#[tokio::test]
async fn a_client_identified_by_its_metadata_url_logs_in_with_pkce() -> Result<()> {
    let server = server_fetching_loopback_documents().await?;
    let doc = document("Doc Client").await?;
    let client_id = doc.url(DOC_PATH);
    let person = Person::verified_account(&server, &unique_email("cimd"), PASSWORD).await?;
    let callback = LoopbackCallback::start().await?;
    let client = public_client(&server, &client_id, &callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let page = person.get(url.as_str()).await?;
    assert!(page.contains("Doc Client"), "{}", page.html);
    assert!(
        page.contains("id=\"client-host\">127.0.0.1</strong>"),
        "the consent page names the document's host: {}",
        page.html
    );
    let query = consent(&person, url.as_str(), callback, "approve").await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").context("code")?.into(),
        ))
        .set_pkce_verifier(verifier)
        .request_async(&http()?)
        .await?;
    assert!(tokens.refresh_token().is_some());

    // A redirect URI the document does not list is refused on a page, not followed.
    let page = person
        .get(&authorize_url(
            &server,
            &client_id,
            "http://127.0.0.1:9/elsewhere",
        ))
        .await?;
    assert_eq!(page.status, 400, "{}", page.html);
    Ok(())
}

#[tokio::test]
async fn documents_that_lie_sprawl_or_redirect_are_refused() -> Result<()> {
    let server = server_fetching_loopback_documents().await?;
    let person = Person::verified_account(&server, &unique_email("cimd-bad"), PASSWORD).await?;
    let impostor = CannedServer::start("200 OK", &[], |_| {
        json!({ "client_id": "https://trusted.example/client.json",
                "redirect_uris": ["http://127.0.0.1/callback"] })
        .to_string()
        .into_bytes()
    })
    .await?;
    let huge = CannedServer::start("200 OK", &[], |base| {
        let padding = "x".repeat(6 * 1024);
        json!({ "client_id": format!("{base}{DOC_PATH}"), "client_name": padding,
                "redirect_uris": ["http://127.0.0.1/callback"] })
        .to_string()
        .into_bytes()
    })
    .await?;
    let redirecting = CannedServer::start(
        "302 Found",
        &[("location", "http://127.0.0.1:9/other.json")],
        |_| Vec::new(),
    )
    .await?;
    for (fixture, expected) in [
        (&impostor, "not the URL it was fetched from"),
        (&huge, "larger than"),
        (&redirecting, "302"),
    ] {
        let page = person
            .get(&authorize_url(
                &server,
                &fixture.url(DOC_PATH),
                "http://127.0.0.1:5/callback",
            ))
            .await?;
        assert_eq!(page.status, 400, "{expected}: {}", page.html);
        assert!(page.contains(expected), "{expected}: {}", page.html);
    }
    Ok(())
}

#[tokio::test]
async fn metadata_urls_on_private_networks_are_never_fetched() -> Result<()> {
    // The default server: https only, public addresses only.
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("ssrf"), PASSWORD).await?;
    let doc = document("Local").await?;
    let cases = [
        (doc.url(DOC_PATH), "must use https"),
        (
            doc.url(DOC_PATH).replace("http://", "https://"),
            "does not resolve to a public address",
        ),
        (
            "https://localhost/client.json".into(),
            "does not resolve to a public address",
        ),
        (
            "https://10.0.0.1/client.json".into(),
            "does not resolve to a public address",
        ),
        (
            "https://169.254.169.254/latest/meta-data".into(),
            "does not resolve to a public address",
        ),
        (
            "https://[::1]/client.json".into(),
            "does not resolve to a public address",
        ),
        // A name that does not resolve reads the same: no probing of internal DNS.
        (
            "https://no-such-host.invalid/client.json".into(),
            "does not resolve to a public address",
        ),
    ];
    for (client_id, expected) in cases {
        let page = person
            .get(&authorize_url(
                &server,
                &client_id,
                "http://127.0.0.1:5/callback",
            ))
            .await?;
        assert_eq!(page.status, 400, "{client_id}: {}", page.html);
        assert!(page.contains(expected), "{client_id}: {}", page.html);
    }
    let token = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "lkc_x"),
            ("client_id", "https://10.0.0.1/client.json"),
        ])
        .send()
        .await?;
    assert_eq!(token.status(), 401);
    Ok(())
}
