//! CORS where browsers call: the gate for the origins it lists (answering their preflights
//! itself), and the issuer's public documents and code + PKCE endpoints for any origin, with
//! no cookies and no client secrets from web pages.

use anyhow::Result;
use latchkey_testkit::{Person, Server, unique_email};
use reqwest::{Method, Response, header};
use serde_json::Value;

use crate::{
    PASSWORD, bin,
    gate_proxy::{GATE_SECRET, answering_upstream, gate, issuer, server_with_gate_flags},
};

const APP: &str = "http://127.0.0.1:5173";
const STRANGER: &str = "https://evil.example";

fn header_of(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_lowercase()
}

/// A browser's preflight for a POST with these headers, from `origin`.
async fn preflight(url: &str, origin: &str, headers: &str) -> Result<Response> {
    Ok(reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .header(header::ORIGIN, origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .await?)
}

async fn from_origin(url: &str, origin: &str, bearer: Option<&str>) -> Result<Response> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header(header::ORIGIN, origin)
        .body("{}");
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    Ok(request.send().await?)
}

/// What every CORS answer of the gate must be for a listed origin, and must not be for others.
async fn check_gate_cors(gate_url: &str, key: &str) -> Result<()> {
    let mcp = format!("{gate_url}/mcp");
    let asked = "authorization, content-type, mcp-session-id, mcp-protocol-version";
    let allowed = preflight(&mcp, APP, asked).await?;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header_of(&allowed, "access-control-allow-origin"), APP);
    let allow_headers = header_of(&allowed, "access-control-allow-headers");
    for needed in asked.split(", ").chain(["x-api-key"]) {
        assert!(allow_headers.contains(needed), "{needed}: {allow_headers}");
    }
    assert!(header_of(&allowed, "access-control-allow-methods").contains("post"));
    assert_eq!(header_of(&allowed, "access-control-allow-credentials"), "");
    assert_ne!(
        allowed.text().await?,
        "upstream",
        "the gate answers a listed origin's preflight itself"
    );

    let refused = preflight(&mcp, STRANGER, asked).await?;
    assert_eq!(header_of(&refused, "access-control-allow-origin"), "");

    // A refusal is readable by the listed page, WWW-Authenticate included: that is how a
    // browser MCP client finds the issuer.
    let unauthenticated = from_origin(&mcp, APP, None).await?;
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        header_of(&unauthenticated, "access-control-allow-origin"),
        APP
    );
    let exposed = header_of(&unauthenticated, "access-control-expose-headers");
    assert!(
        exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
        "{exposed}"
    );
    let admitted = from_origin(&mcp, APP, Some(key)).await?;
    assert_eq!(admitted.status(), 200);
    assert_eq!(header_of(&admitted, "access-control-allow-origin"), APP);
    let elsewhere = from_origin(&mcp, STRANGER, Some(key)).await?;
    assert_eq!(header_of(&elsewhere, "access-control-allow-origin"), "");
    Ok(())
}

#[tokio::test]
async fn the_gate_answers_cors_for_the_origins_it_lists_and_no_others() -> Result<()> {
    let server = issuer().await?;
    let upstream = answering_upstream().await?;
    let person = Person::verified_account(&server, &unique_email("cors-gate"), PASSWORD).await?;
    let key = person.new_api_key("spa").await?;

    let (_listing, listing_url) = gate(&server, &upstream, &["--cors-origin", APP]).await?;
    check_gate_cors(&listing_url, &key).await?;

    // Without a list, a preflight is the upstream's to answer, as before.
    let (_plain, plain_url) = gate(&server, &upstream, &[]).await?;
    let passed = preflight(&format!("{plain_url}/mcp"), APP, "authorization").await?;
    assert_eq!(passed.text().await?, "upstream");

    // A wildcard or a URL with a path is not an origin: the gate does not start.
    for bad in ["*", "https://app.example.com/path", "null"] {
        let refused = std::process::Command::new(bin())
            .args(["gate", "--upstream", &upstream, "--issuer", &server.url])
            .args(["--client-id", "gate", "--cors-origin", bad])
            .env("LATCHKEY_GATE_CLIENT_SECRET", GATE_SECRET)
            .output()?;
        assert_eq!(refused.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("is not an origin"));
    }
    Ok(())
}

#[tokio::test]
async fn the_in_process_gate_takes_its_origins_from_serve() -> Result<()> {
    let upstream = answering_upstream().await?;
    let (server, gate_url) =
        server_with_gate_flags(&upstream, "", &["--gate-cors-origin", APP]).await?;
    let person = Person::verified_account(&server, &unique_email("cors-inproc"), PASSWORD).await?;
    check_gate_cors(&gate_url, &person.new_api_key("spa").await?).await
}

#[tokio::test]
async fn the_issuer_answers_cors_for_browser_clients_but_never_takes_a_secret_from_a_page()
-> Result<()> {
    let server = issuer().await?;
    for path in [
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/register",
        "/oauth/userinfo",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let asked = "content-type, mcp-protocol-version";
        let answer = preflight(&server.url(path), APP, asked).await?;
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        let allowed = header_of(&answer, "access-control-allow-headers");
        assert!(
            allowed.contains("mcp-protocol-version"),
            "{path}: {allowed}"
        );
        assert_eq!(
            header_of(&answer, "access-control-allow-origin"),
            "*",
            "{path}"
        );
        assert_eq!(
            header_of(&answer, "access-control-allow-credentials"),
            "",
            "{path}"
        );
    }
    // The pages, which run on the session cookie, answer no one else's site.
    for path in ["/account", "/signin", "/oauth/authorize", "/v1/api-keys"] {
        let answer = preflight(&server.url(path), APP, "content-type").await?;
        assert_eq!(
            header_of(&answer, "access-control-allow-origin"),
            "",
            "{path}"
        );
    }

    // The gate's confidential client works from a server, and is refused from a web page.
    let http = reqwest::Client::new();
    let grant = [("grant_type", "client_credentials")];
    let from_server = http
        .post(server.url("/oauth/token"))
        .basic_auth("gate", Some(GATE_SECRET))
        .form(&grant)
        .send()
        .await?;
    assert_eq!(from_server.status(), 200);
    for by_post in [false, true] {
        let mut request = http
            .post(server.url("/oauth/token"))
            .header(header::ORIGIN, APP);
        request = if by_post {
            request.form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "gate"),
                ("client_secret", GATE_SECRET),
            ])
        } else {
            request.basic_auth("gate", Some(GATE_SECRET)).form(&grant)
        };
        let from_page = request.send().await?;
        assert_eq!(from_page.status(), 401);
        let body: Value = from_page.json().await?;
        assert_eq!(body["error"], "invalid_client");
        assert!(body.get("access_token").is_none());
    }
    let revoke_from_page = http
        .post(server.url("/oauth/revoke"))
        .header(header::ORIGIN, APP)
        .form(&[
            ("token", "anything"),
            ("client_id", "gate"),
            ("client_secret", GATE_SECRET),
        ])
        .send()
        .await?;
    assert_eq!(revoke_from_page.status(), 401);

    // Registration from a page: a public client yes, a confidential one no.
    let register = |auth_method: &'static str| {
        http.post(server.url("/oauth/register"))
            .header(header::ORIGIN, APP)
            .json(&serde_json::json!({
                "client_name": "spa",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": auth_method,
            }))
            .send()
    };
    let public = register("none").await?;
    assert_eq!(public.status(), 201);
    assert_eq!(header_of(&public, "access-control-allow-origin"), "*");
    let confidential = register("client_secret_basic").await?;
    assert_eq!(confidential.status(), 400);
    let body: Value = confidential.json().await?;
    assert_eq!(body["error"], "invalid_client_metadata");
    Ok(())
}

#[tokio::test]
async fn a_bearer_scheme_in_any_case_is_a_bearer_token() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("bearer-case"), PASSWORD).await?;
    let key = person.new_api_key("any case").await?;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let me = reqwest::Client::new()
            .get(server.url("/v1/me"))
            .header(header::AUTHORIZATION, format!("{scheme} {key}"))
            .send()
            .await?;
        assert_eq!(me.status(), 200, "{scheme}");
    }
    let (access_token, _) = crate::oauth::token_pair_for(&server, &person, None).await?;
    let userinfo = reqwest::Client::new()
        .get(server.url("/oauth/userinfo"))
        .header(header::AUTHORIZATION, format!("BEARER {access_token}"))
        .send()
        .await?;
    assert_eq!(
        userinfo.status(),
        200,
        "{}",
        header_of(&userinfo, "www-authenticate")
    );
    Ok(())
}
