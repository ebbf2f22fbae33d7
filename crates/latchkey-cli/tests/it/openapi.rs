//! The JSON API's contract: the OpenAPI 3.1 document the server serves is the one checked in
//! (`openapi.json`), and schemathesis, a property-based API tester no one here wrote, finds no
//! 5xx, no response off its schema and no 4xx without the documented error body.

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Person, Server, unique_email};
use serde_json::Value;

use crate::{PASSWORD, bin, mcp::repo_root};

#[tokio::test]
async fn the_served_openapi_document_is_the_checked_in_one() -> Result<()> {
    let server = Server::start(bin()).await?;
    let served: Value = reqwest::get(server.url("/openapi.json"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(served["openapi"], "3.1.0");
    let path = repo_root().join("openapi.json");
    let pretty = format!("{}\n", serde_json::to_string_pretty(&served)?);
    if std::env::var_os("LATCHKEY_BLESS").is_some() {
        std::fs::write(&path, &pretty)?;
    }
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).context("openapi.json is missing")?)?;
    ensure!(
        checked_in == served,
        "the served OpenAPI document differs from openapi.json: if the change is meant, \
         write it with `LATCHKEY_BLESS=1 cargo test -p latchkey-cli --test it openapi::the_served`"
    );
    // Every JSON endpoint the router serves is in it.
    let paths = served["paths"].as_object().context("paths")?;
    for path in [
        "/v1/token-flow/create",
        "/v1/token-flow/wait",
        "/v1/me",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/gate/usage",
        "/auth/client",
        "/oauth/token",
        "/oauth/introspect",
        "/oauth/revoke",
        "/oauth/revocations",
        "/oauth/device_authorization",
        "/oauth/register",
        "/oauth/register/{client_id}",
        "/oauth/userinfo",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    Ok(())
}

/// The `Cookie` header of a browser signed in as `email` (its session, and its CSRF binding).
async fn signed_in_cookies(server: &Server, email: &str) -> Result<String> {
    use reqwest::cookie::CookieStore;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let person = Person {
        http: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()?,
        base: server.url.clone(),
    };
    person.sign_in(email, PASSWORD).await?;
    let cookies = jar
        .cookies(&server.url.parse()?)
        .context("no cookies after signing in")?;
    Ok(cookies.to_str()?.to_owned())
}

/// schemathesis against `server` with `headers` on every request; its report when it fails.
async fn schemathesis(server: &Server, headers: &[String]) -> Result<()> {
    let program = repo_root().join(".venv-api/bin/schemathesis");
    ensure!(
        program.exists(),
        "schemathesis is missing: run the README test command, which installs it in .venv-api"
    );
    // It keeps a cache in its working directory: not in the repository.
    let scratch = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(program);
    command
        .current_dir(scratch.path())
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", CHECKS, "--max-examples", "30", "--seed", "1"])
        .args([
            "--workers",
            "2",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .args(["--suppress-health-check", "all"])
        .kill_on_drop(true);
    for header in headers {
        command.args(["--header", header]);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), command.output())
        .await
        .context("schemathesis did not finish within 5 minutes")??;
    ensure!(
        output.status.success(),
        "schemathesis found problems:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// What every response must satisfy: no 5xx, a documented status, content type, headers and
/// body (so every 4xx carries its documented error body).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[tokio::test]
async fn schemathesis_finds_nothing_with_an_api_key_or_a_session() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("schemathesis");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let key = person.new_api_key("schemathesis").await?;
    // Keys ever made in the personal org, revoked ones too, read from the database: the run
    // revokes keys it made, and deletes orgs it made with their keys.
    let personal = person.me().await?["org"]["id"]
        .as_str()
        .context("org id")?
        .to_owned();
    let personal_keys = format!("SELECT COUNT(*) FROM api_keys WHERE org_id = '{personal}'");
    let personal_keys = || latchkey_testkit::count_rows(&server.database_url, &personal_keys);
    schemathesis(&server, &[format!("Authorization: Bearer {key}")]).await?;
    let after_key_run = personal_keys().await?;
    assert!(
        after_key_run > 1,
        "the run with the key made keys: it was let in"
    );
    let cookies = signed_in_cookies(&server, &email).await?;
    schemathesis(
        &server,
        &[
            format!("Cookie: {cookies}"),
            format!("Origin: {}", server.url),
        ],
    )
    .await?;
    assert!(
        personal_keys().await? > after_key_run,
        "the run with the session made keys: it was let in"
    );
    // Nothing it sent took the account away from its owner.
    assert!(person.me().await.is_ok());
    Ok(())
}
