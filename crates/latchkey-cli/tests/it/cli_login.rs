//! `latchkey login` by every method, end to end, the person played over HTTP: the browser
//! (OAuth code + PKCE to the loopback callback), the device code, a pasted key, `--json` then
//! `--complete`; then refreshing, `status --check`, several accounts, and logout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Decision, Page, Person, Server, unique_email};
use serde_json::Value;

use crate::{PASSWORD, bin};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The active account's entry in the credential file.
fn stored_secret(cli: &CliHome) -> Result<Value> {
    let index: Value = serde_json::from_slice(&std::fs::read(cli.credentials_file())?)?;
    index["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["active"] == true))
        .map(|a| a["secret"].clone())
        .context("no active account in the credential file")
}

/// Rewrites the active account's secret in the credential file.
fn edit_secret(cli: &CliHome, edit: impl Fn(&mut Value)) -> Result<()> {
    let path = cli.credentials_file();
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    for account in index["accounts"].as_array_mut().context("accounts")? {
        if account["active"] == true {
            edit(&mut account["secret"]);
        }
    }
    std::fs::write(&path, serde_json::to_vec(&index)?)?;
    Ok(())
}

/// Approves the consent page at `url` as `person`; the browser is then sent to the CLI's
/// loopback callback, whose page is returned.
pub(crate) async fn approve_consent(
    person: &Person,
    url: &str,
    pairing_code: &str,
) -> Result<String> {
    let page = person.get(url).await?;
    anyhow::ensure!(
        page.contains(pairing_code),
        "the consent page shows the terminal's code: {}",
        page.html
    );
    let back = person
        .post_form(
            "/oauth/authorize",
            &[
                ("csrf", &page.csrf()?),
                ("request", &page.input("request").context("consent form")?),
                ("decision", "approve"),
            ],
        )
        .await?;
    anyhow::ensure!(
        back.url.starts_with("http://127.0.0.1:") && back.url.contains("/callback?code="),
        "sent back to the CLI: {}",
        back.url
    );
    Ok(back.html)
}

pub(crate) async fn browser_login(server: &Server, cli: &CliHome, person: &Person) -> Result<()> {
    let login = cli.start_login(&["--method", "browser"]).await?;
    assert!(login.url.starts_with(&server.url("/oauth/authorize?")));
    assert!(login.url.contains("code_challenge_method=S256"));
    let callback_page = approve_consent(person, &login.url, &login.code).await?;
    assert!(
        callback_page.contains("You are logged in"),
        "{callback_page}"
    );
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    Ok(())
}

pub(crate) async fn refresh_with(server: &Server, refresh_token: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "latchkey-cli"),
        ])
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
pub(crate) async fn browser_login_stores_tokens_that_refresh_once_and_logout_revokes_them()
-> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("browser-login");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    browser_login(&server, &cli, &person).await?;

    let status: Value = serde_json::from_slice(&cli.run(&["status", "--json"]).await?.stdout)?;
    assert_eq!(status["credential"], "oauth");
    assert_eq!(status["email"], email.as_str());
    assert_eq!(status["source"], "file");

    let token = cli.run(&["token"]).await?;
    assert!(token.status.success(), "{}", text(&token.stderr));
    let access = text(&token.stdout).trim().to_owned();
    assert_eq!(access.split('.').count(), 3, "a JWT: {access}");
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&access)
        .send()
        .await?;
    assert_eq!(me.status(), 200);
    assert!(cli.run(&["status", "--check"]).await?.status.success());

    // Within a minute of expiry: four `token` calls at once refresh once, and all print the
    // new token. Had two refreshed, the second would have presented a spent refresh token and
    // revoked the family.
    let first_refresh = stored_secret(&cli)?["refresh_token"].clone();
    edit_secret(&cli, |s| s["expires_at"] = (now() + 10).into())?;
    let (a, b, c, d) = tokio::join!(
        cli.run(&["token"]),
        cli.run(&["token"]),
        cli.run(&["token"]),
        cli.run(&["token"])
    );
    let printed: Vec<String> = [a?, b?, c?, d?]
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", text(&o.stderr));
            text(&o.stdout).trim().to_owned()
        })
        .collect();
    assert!(printed.iter().all(|p| p == &printed[0]), "{printed:?}");
    assert_ne!(printed[0], access, "refreshed");
    assert_ne!(stored_secret(&cli)?["refresh_token"], first_refresh);
    assert_eq!(
        server.metric("latchkey_refresh_token_reuse_total").await?,
        0
    );
    // A login that lapses within a week is announced, by status and by token alike (on
    // stderr: a script's $(latchkey token) still gets the token alone).
    edit_secret(&cli, |s| {
        s["refresh_expires_at"] = (now() + 3 * 86_400 - 60).into()
    })?;
    let warning = format!(
        "warning: this login to {} expires in 2 days; run `latchkey login` to renew it",
        server.url
    );
    let status = cli.run(&["status"]).await?;
    assert!(status.status.success());
    assert!(
        text(&status.stderr).contains(&warning),
        "{}",
        text(&status.stderr)
    );
    let token = cli.run(&["token"]).await?;
    assert!(
        text(&token.stderr).contains(&warning),
        "{}",
        text(&token.stderr)
    );
    assert!(!text(&token.stdout).contains("warning"));
    edit_secret(&cli, |s| {
        s["refresh_expires_at"] = (now() + 30 * 86_400).into()
    })?;
    assert!(!text(&cli.run(&["token"]).await?.stderr).contains("warning"));

    let current_refresh = stored_secret(&cli)?["refresh_token"]
        .as_str()
        .context("refresh token")?
        .to_owned();
    let current_access = text(&cli.run(&["token"]).await?.stdout).trim().to_owned();
    let logout = cli.run(&["logout"]).await?;
    assert!(logout.status.success(), "{}", text(&logout.stderr));
    assert!(text(&logout.stdout).contains("revoked on the server"));
    let (code, body) = refresh_with(&server, &current_refresh).await?;
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_grant")));
    // Revoked means revoked: the access token of the login is refused at once, not in an hour.
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&current_access)
        .send()
        .await?;
    assert_eq!(me.status(), 401);
    // (Presenting a spent refresh token earlier would have revoked the login as a replay.)
    let (code, _) = refresh_with(&server, first_refresh.as_str().context("str")?).await?;
    assert_eq!(code, 400, "the first refresh token is spent");
    assert_eq!(
        cli.run(&["status", "--check"]).await?.status.code(),
        Some(3)
    );
    Ok(())
}

#[tokio::test]
async fn status_check_needs_no_network_while_the_token_is_fresh() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("check"), PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    browser_login(&server, &cli, &person).await?;
    server.kill().await?;
    assert!(
        cli.run(&["status", "--check"]).await?.status.success(),
        "a fresh token is valid without asking the server"
    );
    edit_secret(&cli, |s| s["expires_at"] = (now() - 1).into())?;
    let stale = cli.run(&["status", "--check"]).await?;
    assert_eq!(
        stale.status.code(),
        Some(4),
        "an expired token must be refreshed, and the server is down: {}",
        text(&stale.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn device_login_completes_once_the_code_is_approved_elsewhere() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("device-login");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    // No display, as over SSH: `auto` picks the device flow and launches nothing.
    let login = cli.start_login(&[]).await?;
    assert!(
        login.url.starts_with(&server.url("/device?user_code=")),
        "{}",
        login.url
    );
    assert_eq!(login.code.len(), 9, "XXXX-XXXX: {}", login.code);
    person
        .decide_device_code(&login.code, Decision::Approve)
        .await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email));
    let status: Value = serde_json::from_slice(&cli.run(&["status", "--json"]).await?.stdout)?;
    assert_eq!(status["credential"], "oauth");
    Ok(())
}

#[tokio::test]
async fn json_login_prints_the_next_step_and_complete_finishes_it() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("json-login");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;

    let started = cli.run(&["login", "--json"]).await?;
    assert!(started.status.success(), "{}", text(&started.stderr));
    let started: Value = serde_json::from_slice(&started.stdout)?;
    assert_eq!(started["method"], "device");
    let id = started["id"].as_str().context("id")?;
    assert!(
        started["next_step"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("login --complete {id}"))),
        "{started}"
    );
    assert!(!cli.credentials_file().exists(), "nothing stored yet");
    person
        .decide_device_code(started["code"].as_str().context("code")?, Decision::Approve)
        .await?;
    // Approved already: --complete returns at once, saying what it waits for, and opens nothing.
    let started_at = std::time::Instant::now();
    let done = cli.run(&["login", "--complete", id]).await?;
    let took = started_at.elapsed();
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(text(&done.stdout).contains(&email));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let said = text(&done.stderr);
    assert!(said.contains(&format!("Waiting for login {id}")), "{said}");
    assert!(!said.contains("No browser"), "{said}");

    let again = cli.run(&["login", "--complete", id]).await?;
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("no pending login"));

    let flow: Value = serde_json::from_slice(
        &cli.run(&["login", "--json", "--method", "token-flow"])
            .await?
            .stdout,
    )?;
    assert_eq!(flow["method"], "token-flow");
    person.approve(flow["url"].as_str().context("url")?).await?;
    let done = cli
        .run(&["login", "--complete", flow["id"].as_str().context("id")?])
        .await?;
    assert!(done.status.success(), "{}", text(&done.stderr));
    let status: Value = serde_json::from_slice(&cli.run(&["status", "--json"]).await?.stdout)?;
    assert_eq!(status["credential"], "api_key");

    let browser = cli.run(&["login", "--json", "--method", "browser"]).await?;
    assert_eq!(browser.status.code(), Some(2), "{}", text(&browser.stderr));
    Ok(())
}

#[tokio::test]
async fn pasted_keys_log_in_and_switch_moves_between_accounts() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (email_a, email_b) = (unique_email("paste-a"), unique_email("paste-b"));
    let a = Person::verified_account(&server, &email_a, PASSWORD).await?;
    let b = Person::verified_account(&server, &email_b, PASSWORD).await?;
    let key_a = a.new_api_key("ci").await?;
    let key_b = b.new_api_key("ci").await?;
    let cli = CliHome::new(bin(), &server.url)?;

    // One character changed (to something it was not), as a mistyped paste would be.
    let last = if key_a.ends_with('x') { 'y' } else { 'x' };
    let typo = cli
        .run_with_stdin(
            &["login", "--with-token"],
            &format!("{}{last}\n", &key_a[..key_a.len() - 1]),
        )
        .await?;
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo.stderr));
    assert!(text(&typo.stderr).contains("not an API key for latchkey"));
    assert!(!cli.credentials_file().exists(), "nothing stored");

    for key in [&key_a, &key_b] {
        let login = cli
            .run_with_stdin(&["login", "--with-token"], &format!("{key}\n"))
            .await?;
        assert!(login.status.success(), "{}", text(&login.stderr));
    }
    let who = |out: &std::process::Output| -> Result<String> {
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["email"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(who(&cli.run(&["status", "--json"]).await?)?, email_b);
    let listed = text(&cli.run(&["switch"]).await?.stdout);
    assert!(listed.contains(&format!("* {email_b}")) && listed.contains(&email_a));

    let switched = cli.run(&["switch", &email_a]).await?;
    assert!(switched.status.success(), "{}", text(&switched.stderr));
    assert_eq!(who(&cli.run(&["status", "--json"]).await?)?, email_a);
    assert_eq!(text(&cli.run(&["token"]).await?.stdout).trim(), key_a);

    let unknown = cli.run(&["switch", "nobody@example.com"]).await?;
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(who(&cli.run(&["status", "--json"]).await?)?, email_a);
    Ok(())
}

/// The fields of the hand-off page's script, as `data-` attributes.
/// Opens the hand-off page at `url` as `person` and presses Send key: the confirmation page,
/// and the page whose script delivers the key.
pub(crate) async fn send_key_on_handoff_page(person: &Person, url: &str) -> Result<(Page, Page)> {
    let confirm = person.get(url).await?;
    let sent = person
        .post_form(
            "/cli/auth",
            &[
                ("csrf", &confirm.csrf()?),
                ("request", &confirm.input("request").context("form")?),
            ],
        )
        .await?;
    Ok((confirm, sent))
}

pub(crate) fn data_attribute(html: &str, name: &str) -> Option<String> {
    let marker = format!("data-{name}=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html_escape::decode_html_entities(&html[start..end]).into_owned())
}

#[tokio::test]
async fn the_handoff_page_delivers_a_key_to_the_waiting_cli_and_the_callback_refuses_forgeries()
-> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("handoff");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let auth_url = server.url("/cli/auth");
    let login = cli
        .start_login(&["--method", "browser", "--auth-url", &auth_url])
        .await?;
    let url = url::Url::parse(&login.url)?;
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let callback = query["redirect_uri"].clone();
    let state = query["state"].clone();
    assert!(callback.starts_with("http://127.0.0.1:") && callback.ends_with("/callback"));
    let http = reqwest::Client::new();
    let post = |origin: &str, body: Value| {
        http.post(&callback)
            .header("origin", origin)
            .json(&body)
            .send()
    };

    // Another site may not post to the receiver, and the state must be this login's.
    let forged = serde_json::json!({ "apiKey": "lk_forged", "state": state });
    assert_eq!(post("http://evil.example", forged).await?.status(), 403);
    let wrong_state = serde_json::json!({ "apiKey": "lk_forged", "state": "guess" });
    assert_eq!(post(&server.url, wrong_state).await?.status(), 400);
    let rebound = http
        .get(format!("{callback}?apiKey=lk_x&state={state}"))
        .header("host", "evil.example")
        .send()
        .await?;
    assert_eq!(rebound.status(), 421);
    let preflight = http
        .request(reqwest::Method::OPTIONS, &callback)
        .header("origin", &server.url)
        .header("access-control-request-method", "POST")
        .send()
        .await?;
    assert_eq!(preflight.status(), 204);
    let allowed = |name: &str| {
        preflight.headers()[name]
            .to_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(allowed("access-control-allow-origin"), server.url);
    assert!(allowed("access-control-allow-methods").contains("POST"));
    assert!(allowed("access-control-allow-headers").contains("content-type"));

    // The person confirms on the hand-off page; the page's script posts the key.
    let (confirm, sent) = send_key_on_handoff_page(&person, &login.url).await?;
    assert!(
        confirm.contains("Send an API key to your terminal?"),
        "{}",
        confirm.html
    );
    assert!(sent.status.is_success(), "{}", sent.html);
    let key = data_attribute(&sent.html, "key").context("key on the page")?;
    assert!(sent.contains(&format!("export LATCHKEY_API_KEY={key}")));
    assert_eq!(
        data_attribute(&sent.html, "state").as_deref(),
        Some(state.as_str())
    );
    let delivered = post(
        &server.url,
        serde_json::json!({ "apiKey": key, "store": "latchkey", "state": state }),
    )
    .await?;
    assert_eq!(delivered.status(), 200);
    assert_eq!(
        delivered.headers()["access-control-allow-origin"],
        server.url.as_str()
    );
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(text(&cli.run(&["token"]).await?.stdout).trim(), key);
    Ok(())
}

#[tokio::test]
async fn the_handoff_page_refuses_remote_redirects_and_forged_forms() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("handoff-bad"), PASSWORD).await?;
    for redirect in [
        "https://evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://user@127.0.0.1:9/callback",
    ] {
        let page = person
            .get(&format!(
                "/cli/auth?state=s&redirect_uri={}",
                url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
            ))
            .await?;
        assert_eq!(page.status, 400, "{redirect}");
        assert!(!page.contains("csrf"), "no form for {redirect}");
    }
    let no_state = person
        .get("/cli/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback")
        .await?;
    assert_eq!(no_state.status, 400);

    let request = "redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&state=s";
    let forged = person
        .post_form("/cli/auth", &[("csrf", "forged"), ("request", request)])
        .await?;
    assert_eq!(forged.status, 403);
    assert_eq!(person.api_key_count().await?, 0, "no key minted");
    Ok(())
}

#[tokio::test]
async fn a_browser_login_gives_up_cleanly_when_the_person_denies() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("deny"), PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_login(&["--method", "browser"]).await?;
    let page = person.get(&login.url).await?;
    person
        .post_form(
            "/oauth/authorize",
            &[
                ("csrf", &page.csrf()?),
                ("request", &page.input("request").context("form")?),
                ("decision", "deny"),
            ],
        )
        .await?;
    let (status, _, stderr) =
        tokio::time::timeout(Duration::from_secs(30), login.finish()).await??;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("denied"), "{stderr}");
    assert!(!cli.credentials_file().exists());
    Ok(())
}

#[tokio::test]
async fn auto_never_launches_a_browser_over_ssh_and_copy_says_when_it_cannot_copy() -> Result<()> {
    let server = Server::start(bin()).await?;
    // A display is there, so only the SSH session keeps the browser closed (the other
    // conditions are unit-tested in `latchkey_client::login`).
    let cli = CliHome::new(bin(), &server.url)?
        .env("DISPLAY", ":0")
        .env("SSH_CONNECTION", "10.0.0.2 52000 10.0.0.1 22");
    let login = latchkey_testkit::LoginProcess::start(cli.command(&["login", "--copy"])).await?;
    assert!(
        login.url.starts_with(&server.url("/device?user_code=")),
        "{}",
        login.url
    );
    let printed = login.printed.join("\n");
    assert!(printed.contains("(this is an SSH session)"), "{printed}");
    assert!(printed.contains("Open this URL in a browser"), "{printed}");
    assert!(
        printed.contains("could not copy the code to the clipboard"),
        "--copy says why it could not copy: {printed}"
    );
    Ok(())
}
