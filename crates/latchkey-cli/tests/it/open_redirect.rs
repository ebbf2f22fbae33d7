//! Open-redirect attacks on every place that continues to a `next` path: each target the
//! server answers is resolved by Node's WHATWG URL parser (what a browser does with
//! `Location`) and must stay on the issuer's origin.

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Person, Server, unique_email};
use reqwest::{StatusCode, redirect::Policy};
use tokio::io::AsyncWriteExt;

use crate::{PASSWORD, bin};

/// Known bypasses of "starts with one slash" checks, as the decoded `next` value.
const BYPASSES: &[&str] = &[
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\u{7f}/evil.example",
    "/\u{1}/evil.example",
    "\t//evil.example",
    " //evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    "%2F%2Fevil.example",
    "https://evil.example/",
    "https:evil.example",
    "http:/evil.example",
    "javascript:alert(document.domain)",
    "//user:pass@evil.example",
    "/@evil.example",
    "//\u{e9}vil.example",
    "//evil\u{3002}example",
    "/..//evil.example",
    "/%2e%2e//evil.example",
    "/a/../..//evil.example",
];

/// Resolves each `Location` against `base` with Node's `URL`.
async fn resolve_in_node(base: &str, locations: &[String]) -> Result<Vec<String>> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/resolve.mjs");
    let mut node = tokio::process::Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running node: the README test command installs it")?;
    let input = serde_json::json!({ "base": base, "locations": locations });
    let mut stdin = node.stdin.take().context("node's stdin")?;
    stdin.write_all(input.to_string().as_bytes()).await?;
    drop(stdin);
    let output = node.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A client that shows redirects instead of following them, sharing `person`'s cookies.
fn no_redirects() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()?)
}

fn location(response: &reqwest::Response) -> Result<String> {
    ensure!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    Ok(response
        .headers()
        .get("location")
        .context("a redirect without Location")?
        .to_str()?
        .to_owned())
}

async fn assert_all_on_origin(server: &Server, cases: &[(String, String)]) -> Result<()> {
    let base = format!("{}/", server.url);
    let locations: Vec<String> = cases.iter().map(|(_, l)| l.clone()).collect();
    let resolved = resolve_in_node(&base, &locations).await?;
    for ((raw, location), href) in cases.iter().zip(&resolved) {
        ensure!(
            href.starts_with(&base),
            "next={raw:?} answered Location {location:?}, which a browser opens as {href}"
        );
    }
    Ok(())
}

async fn sign_in_page_redirect(
    client: &reqwest::Client,
    server: &Server,
    next: &str,
) -> Result<String> {
    let response = client
        .get(server.url("/signin"))
        .query(&[("next", next)])
        .send()
        .await?;
    location(&response)
}

#[tokio::test]
async fn open_redirect_through_next_on_the_sign_in_page_stays_on_the_issuer() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("redirect");
    Person::verified_account(&server, &email, PASSWORD).await?;
    let client = no_redirects()?;
    let signed_in = submit_credentials(&client, &server, "/signin", &email, "").await?;
    ensure!(
        signed_in.status() == StatusCode::SEE_OTHER,
        "sign-in: {}",
        signed_in.status()
    );

    // A signed-in person opening /signin?next=… is sent straight on.
    let mut cases = Vec::new();
    for raw in BYPASSES {
        cases.push((
            raw.to_string(),
            sign_in_page_redirect(&client, &server, raw).await?,
        ));
    }
    assert_all_on_origin(&server, &cases).await?;

    // The positive control: a real path is followed, canonically encoded.
    assert_eq!(
        sign_in_page_redirect(&client, &server, "/account?tab=keys").await?,
        "/account?tab=keys"
    );
    assert_eq!(
        sign_in_page_redirect(&client, &server, "/a b").await?,
        "/a%20b"
    );
    Ok(())
}

/// Posts the sign-up or sign-in form with `next`, as the page's own form would.
async fn submit_credentials(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    email: &str,
    next: &str,
) -> Result<reqwest::Response> {
    let form = Person {
        http: client.clone(),
        base: server.url.clone(),
    }
    .get("/signup") // the form's CSRF token; /signin would redirect a signed-in client
    .await?;
    Ok(client
        .post(server.url(path))
        .header("origin", &server.url)
        .form(&[
            ("csrf", form.csrf()?.as_str()),
            ("email", email),
            ("password", PASSWORD),
            ("next", next),
        ])
        .send()
        .await?)
}

#[tokio::test]
async fn open_redirect_through_next_on_sign_up_sign_in_and_verification_stays_on_the_issuer()
-> Result<()> {
    let server = Server::start(bin()).await?;
    let mut cases = Vec::new();
    // One fresh account per target, to stay within the sign-up and sign-in throttles.
    for raw in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/..//evil.example",
        "/\\evil.example",
    ] {
        let email = unique_email("redirect");
        let client = no_redirects()?;
        let signed_up = submit_credentials(&client, &server, "/signup", &email, raw).await?;
        cases.push((format!("sign-up {raw:?}"), location(&signed_up)?));

        // The verification link carries `next`: it must redirect on our origin, and never
        // fail after spending the link.
        let verified = client.get(server.verification_link(&email)?).send().await?;
        cases.push((format!("verification {raw:?}"), location(&verified)?));
        let me: serde_json::Value = client
            .get(server.url("/v1/me"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ensure!(
            me["email_verified"] == true,
            "the link verified the account: {me}"
        );

        let signed_in = submit_credentials(&client, &server, "/signin", &email, raw).await?;
        ensure!(
            signed_in.headers().get("set-cookie").is_some(),
            "sign-in with next={raw:?} opened a session"
        );
        cases.push((format!("sign-in {raw:?}"), location(&signed_in)?));
    }
    assert_all_on_origin(&server, &cases).await?;

    // The positive control: a real path survives all three.
    let email = unique_email("redirect");
    let client = no_redirects()?;
    let signed_up = submit_credentials(&client, &server, "/signup", &email, "/device?x=1").await?;
    assert_eq!(location(&signed_up)?, "/check-email?next=%2Fdevice%3Fx%3D1");
    let verified = client.get(server.verification_link(&email)?).send().await?;
    assert_eq!(location(&verified)?, "/device?x=1");
    let signed_in = submit_credentials(&client, &server, "/signin", &email, "/device?x=1").await?;
    assert_eq!(location(&signed_in)?, "/device?x=1");
    Ok(())
}
