//! `latchkey login` on the token flow, end to end.

use anyhow::Result;
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use serde_json::Value;

use crate::{PASSWORD, bin};

#[tokio::test]
async fn login_then_status_me_token_and_logout_revokes_the_key() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    assert!(
        login
            .url
            .starts_with(&server.url("/login/cli?token_flow_id=tf_")),
        "{}",
        login.url
    );

    // The person signs up, confirms the email from the outbox, then approves.
    let email = unique_email("e2e");
    let person = Person::new(&server)?;
    person.sign_up(&email, PASSWORD).await?;
    person.open_verification_link(&server, &email).await?;
    let page = person.get(&login.url).await?;
    assert!(
        page.contains(&login.code),
        "the approval page shows the terminal's pairing code"
    );
    assert!(page.contains("latchkey CLI on"), "and names the client");
    person.approve(&login.url).await?;

    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "login failed: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("as {email}")), "{stdout}");
    assert!(
        stderr.contains("notice: no system keychain answers here"),
        "the file fallback is announced: {stderr}"
    );

    // The key lives in a 0600 file, and status reports it and its source.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.credentials_file())?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out = cli.run(&["status", "--json"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["email"], email.as_str());
    assert_eq!(status["source"], "file");
    assert!(
        status["key_prefix"]
            .as_str()
            .is_some_and(|p| p.starts_with("lk_"))
    );

    // `token` prints the key, and /v1/me answers to it, as Bearer and as X-API-Key.
    let out = cli.run(&["token"]).await?;
    let key = String::from_utf8(out.stdout)?.trim().to_owned();
    assert!(key.starts_with("lk_") && key.len() == 39, "{key}");
    let http = reqwest::Client::new();
    let me: Value = http
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["credential"]["kind"], "api_key");
    let me = http
        .get(server.url("/v1/me"))
        .header("x-api-key", &key)
        .send()
        .await?;
    assert_eq!(me.status(), 200);

    // Logout deletes the local copy and revokes the key on the server.
    let out = cli.run(&["logout"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked on the server"));
    let me = http
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(me.status(), 401);
    let out = cli.run(&["status"]).await?;
    assert_eq!(
        out.status.code(),
        Some(3),
        "not logged in is an auth failure"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `latchkey login`"));
    Ok(())
}

#[tokio::test]
async fn a_denied_login_exits_with_the_auth_code_and_says_so() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    let person = Person::verified_account(&server, &unique_email("deny"), PASSWORD).await?;
    person.deny(&login.url).await?;
    let (status, _, stderr) = login.finish().await?;
    assert_eq!(status.code(), Some(3));
    assert!(
        stderr.contains("the login was denied in the browser"),
        "{stderr}"
    );
    assert!(!cli.credentials_file().exists(), "nothing stored");
    Ok(())
}

#[tokio::test]
async fn the_environment_key_wins_and_status_says_where_it_comes_from() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("env"), PASSWORD).await?;
    let created: Value = person.create_api_key("ci").await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_API_KEY", &key);
    let out = cli.run(&["status", "--json"]).await?;
    let status: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(status["source"], "env");
    assert_eq!(status["source_detail"], "LATCHKEY_API_KEY");
    assert_eq!(status["logged_in"], true);
    let out = cli.run(&["token"]).await?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), key);

    // A mistyped key in the environment is caught before any request, with the variable named.
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let typo = format!("{}{last}", &key[..key.len() - 1]);
    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_API_KEY", &typo);
    let out = cli.run(&["status"]).await?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LATCHKEY_API_KEY does not hold a valid API key for latchkey"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn login_url_override_sends_the_browser_elsewhere_with_the_flow() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli
        .start_token_flow_login(&["--login-url", &server.url("/login/cli")])
        .await?;
    assert!(
        login.url.contains("token_flow_id=tf_") && login.url.ends_with("&source=cli"),
        "{}",
        login.url
    );
    assert!(login.url.contains(&format!("code={}", login.code)));
    // The server's page accepts the Memori-shaped URL too.
    let person = Person::verified_account(&server, &unique_email("url"), PASSWORD).await?;
    person.approve(&login.url).await?;
    let (status, _, stderr) = login.finish().await?;
    assert!(status.success(), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_lost_wait_response_can_be_fetched_again_within_the_window() -> Result<()> {
    let server = Server::start(bin()).await?;
    let http = reqwest::Client::new();
    let flow: Value = http
        .post(server.url("/v1/token-flow/create"))
        .json(&serde_json::json!({}))
        .send()
        .await?
        .json()
        .await?;
    let person = Person::verified_account(&server, &unique_email("redeliver"), PASSWORD).await?;
    person
        .approve(flow["web_url"].as_str().unwrap_or_default())
        .await?;
    let wait = serde_json::json!({"token_flow_id": flow["token_flow_id"], "wait_secret": flow["wait_secret"], "timeout": 5});
    let first: Value = http
        .post(server.url("/v1/token-flow/wait"))
        .json(&wait)
        .send()
        .await?
        .json()
        .await?;
    let second: Value = http
        .post(server.url("/v1/token-flow/wait"))
        .json(&wait)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(first["timeout"], false);
    assert!(
        first["api_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("lk_"))
    );
    assert_eq!(
        first["api_key"], first["token_secret"],
        "both client generations get the key"
    );
    assert_eq!(first, second, "a retried wait gets the same answer");
    assert_eq!(
        server
            .metric("latchkey_token_flows_delivered_total")
            .await?,
        1,
        "delivered once"
    );
    Ok(())
}
