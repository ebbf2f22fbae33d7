//! The approval clicked through in headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser`), with screenshots kept in `test-artifacts/`.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{CliHome, Person, Server, unique_email};

use crate::{
    PASSWORD, bin,
    upstream::oidc_provider::{corp_config, start_provider},
};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser scripts' directory and the screenshot directory, once both are there.
fn browser_setup() -> Result<(PathBuf, PathBuf)> {
    let browser_dir = repo_root().join("tests/browser");
    ensure!(
        browser_dir.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run the README test command, which installs them"
    );
    let artifacts = repo_root().join("test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    Ok((browser_dir, artifacts))
}

/// Removes `path` so that only this run can create it again.
fn clear_screenshot(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The screenshot this run took: a PNG file, not one left by an earlier run (each test
/// clears its screenshots before it starts the browser).
fn assert_screenshot(path: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("no screenshot {}", path.display()))?;
    ensure!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
        "{} is not a screenshot",
        path.display()
    );
    Ok(())
}

/// Runs a browser script; what it printed on stdout.
async fn run_node(command: &mut tokio::process::Command) -> Result<String> {
    let node = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        command.kill_on_drop(true).output(),
    )
    .await
    .context("the browser run did not finish within 90 s")??;
    ensure!(
        node.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr)
    );
    Ok(String::from_utf8_lossy(&node.stdout).into_owned())
}

#[tokio::test]
async fn a_person_signs_up_and_approves_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let screenshot = artifacts.join("token-flow-approve.png");
    clear_screenshot(&screenshot)?;

    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    let email = unique_email("browser");
    let outbox = server.data_dir.join("outbox.jsonl");
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("approve.mjs")
            .args([&login.url, &login.code, &email, PASSWORD])
            .arg(&outbox)
            .arg(&screenshot),
    )
    .await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email));
    assert_screenshot(&screenshot)?;
    Ok(())
}

/// The OAuth consent page and the mgrep hand-off page, each finishing a waiting CLI.
#[tokio::test]
async fn consent_and_handoff_pages_finish_cli_logins_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let server = Server::start(bin()).await?;
    let oauth_cli = CliHome::new(bin(), &server.url)?;
    let oauth_login = oauth_cli.start_login(&["--method", "browser"]).await?;
    let handoff_cli = CliHome::new(bin(), &server.url)?;
    let handoff_login = handoff_cli
        .start_login(&[
            "--method",
            "browser",
            "--auth-url",
            &server.url("/cli/auth"),
        ])
        .await?;
    let email = unique_email("browser-oauth");
    clear_screenshot(&artifacts.join("handoff-sent.png"))?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("oauth.mjs")
            .args([&oauth_login.url, &oauth_login.code, &handoff_login.url])
            .args([&email, PASSWORD])
            .arg(server.data_dir.join("outbox.jsonl"))
            .arg(&artifacts),
    )
    .await?;
    for login in [oauth_login, handoff_login] {
        let (status, stdout, stderr) = login.finish().await?;
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(&email), "{stdout}");
    }
    assert_screenshot(&artifacts.join("handoff-sent.png"))?;
    Ok(())
}

/// An org created, an invitation sent and accepted, all from the pages.
#[tokio::test]
async fn an_org_invitation_is_sent_and_accepted_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = ["org-invited.png", "org-members.png"].map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start(bin()).await?;
    let ann = unique_email("browser-ann");
    let bob = unique_email("browser-bob");
    latchkey_testkit::Person::verified_account(&server, &ann, PASSWORD).await?;
    let bob_person = latchkey_testkit::Person::verified_account(&server, &bob, PASSWORD).await?;
    let slug = format!("team-{}", std::process::id());
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("orgs.mjs")
            .args([&server.url, &ann, &bob, PASSWORD, &slug])
            .arg(server.data_dir.join("outbox.jsonl"))
            .arg(&artifacts),
    )
    .await?;
    // The server agrees: Bob is an admin of the org.
    let key = bob_person.new_api_key("check").await?;
    let org: serde_json::Value = reqwest::Client::new()
        .get(server.url(&format!("/v1/orgs/{slug}")))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(org["role"], "admin", "{org}");
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

/// A CLI login by someone with no account here, through "Continue with" an upstream provider
/// and its own sign-in page (node oidc-provider).
#[tokio::test]
async fn a_cli_login_through_an_upstream_provider_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = ["upstream-provider.png", "upstream-consent.png"].map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let (_idp, issuer) = start_provider(&["interactive"]).await?;
    let server = Server::start_with_config(bin(), &corp_config(&issuer, &[])?, &[]).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_login(&["--method", "browser"]).await?;
    let email = unique_email("browser-upstream");
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("upstream.mjs")
            .args([&login.url, &login.code, &email])
            .arg(&artifacts),
    )
    .await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email), "{stdout}");
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

#[tokio::test]
async fn verification_elsewhere_and_password_reset_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = [
        "verify-elsewhere.png",
        "password-changed.png",
        "password-changed-here.png",
    ]
    .map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start(bin()).await?;
    let email = unique_email("browser-account");
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("account.mjs")
            .args([&server.url, &email, PASSWORD, "a new password entirely"])
            .arg(server.data_dir.join("outbox.jsonl"))
            .arg(&artifacts),
    )
    .await?;
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_single_page_app_on_another_origin_logs_in_and_calls_a_gated_api() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let done = artifacts.join("spa-done.png");
    clear_screenshot(&done)?;
    let page = std::fs::read_to_string(browser_dir.join("spa.html"))?;
    let spa = crate::gate_proxy::serve_app(axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { axum::response::Html(page) }
    }))
    .await?;
    let upstream = crate::gate_proxy::upstream().await?;
    let (server, gate_url) = crate::gate_proxy::server_with_gate_flags(
        &upstream,
        "[[oauth_clients]]\nid = \"spa\"\nname = \"The SPA\"\n\
         redirect_uris = [\"http://127.0.0.1/callback\"]\n",
        &["--gate-cors-origin", &spa],
    )
    .await?;
    let email = unique_email("browser-spa");
    let start = format!("{spa}/?issuer={}&gate={gate_url}&client_id=spa", server.url);
    let printed = run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("spa.mjs")
            .args([&start, &email, PASSWORD])
            .arg(server.data_dir.join("outbox.jsonl"))
            .arg(&artifacts),
    )
    .await?;
    let found: serde_json::Value =
        serde_json::from_str(printed.lines().last().context("the page printed nothing")?)
            .with_context(|| format!("the page printed: {printed}"))?;
    ensure!(found.get("error").is_none(), "the page failed: {found}");
    assert_eq!(found["token_type"], "Bearer", "{found}");
    assert_eq!(found["api_status"], 200, "{found}");
    assert!(
        found["api"]["user"]
            .as_str()
            .is_some_and(|u| u.starts_with("usr_")),
        "the API saw who called: {found}"
    );
    assert_eq!(found["anonymous_status"], 401, "{found}");
    assert!(
        found["challenge"]
            .as_str()
            .is_some_and(|c| c.contains("resource_metadata")),
        "the page could read WWW-Authenticate: {found}"
    );
    assert_eq!(found["revoke_status"], 200, "{found}");
    assert_screenshot(&done)?;
    Ok(())
}

#[tokio::test]
async fn the_security_page_lists_browsers_and_logins_and_signs_them_out() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots =
        ["security.png", "security-phone.png", "security-after.png"].map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start(bin()).await?;
    let email = unique_email("browser-security");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    // An app's login (an independent OAuth client) and a CLI's.
    let (_, refresh) = crate::oauth::token_pair(&server, &person).await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    crate::cli_login::browser_login(&server, &cli, &person).await?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("security.mjs")
            // Three browsers (this test's, and the script's laptop and phone), two logins.
            .args([&server.url, &email, PASSWORD, "3", "2"])
            .arg(&artifacts),
    )
    .await?;
    let (status, answer) = crate::cli_login::refresh_with(&server, &refresh).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant")),
        "the app revoked on the page can no longer refresh"
    );
    let token = cli.run(&["token", "--check"]).await?;
    assert!(
        !token.status.success(),
        "the CLI login revoked on the page no longer gives a token"
    );
    assert!(
        person.get("/account").await?.url.contains("/signin"),
        "the first browser was signed out with the others"
    );
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

#[tokio::test]
async fn email_change_data_download_and_deletion_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = [
        "email-changed.png",
        "account-profile.png",
        "account-deleted.png",
    ]
    .map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start(bin()).await?;
    let email = unique_email("browser-profile");
    let new_email = unique_email("browser-profile-new");
    Person::verified_account(&server, &email, PASSWORD).await?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("profile.mjs")
            .args([&server.url, &email, PASSWORD, &new_email])
            .arg(server.data_dir.join("outbox.jsonl"))
            .arg(&artifacts),
    )
    .await?;
    assert!(
        Person::new(&server)?
            .sign_in(&new_email, PASSWORD)
            .await?
            .url
            .contains("/signin"),
        "the deleted account signs in no more"
    );
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_cli_login_s_sign_in_page_wears_the_tool_maker_s_brand() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let screenshot = artifacts.join("signin-branded.png");
    clear_screenshot(&screenshot)?;
    let server = Server::start_with_config(
        bin(),
        "[brand]\nproduct_name = \"Acme Cloud\"\naccent_color = \"#E11D48\"\n\
         support_url = \"https://acme.example/help\"\nterms_url = \"https://acme.example/terms\"\n\
         footer = \"Acme Inc., 1 Main Street\"\n",
        &[],
    )
    .await?;
    let cli = CliHome::for_tool(&crate::embedding::acme()?, "acme", &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("brand.mjs")
            .args([
                &login.url,
                "Acme Cloud",
                "acme CLI on",
                &login.code,
                "rgb(225, 29, 72)",
            ])
            .arg(&screenshot),
    )
    .await?;
    assert_screenshot(&screenshot)?;
    // Mails are signed with the brand too.
    let email = unique_email("branded");
    Person::new(&server)?.sign_up(&email, PASSWORD).await?;
    let mail = server
        .outbox()?
        .into_iter()
        .find(|m| m.to == email)
        .context("the verification mail")?;
    assert!(
        mail.text.ends_with(
            "-- \nAcme Cloud\nHelp: https://acme.example/help\nAcme Inc., 1 Main Street\n"
        ),
        "{}",
        mail.text
    );
    // What would break a page is refused at start, with the setting named.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, "[brand]\naccent_color = \"red;}\"\n")?;
    let refused = tokio::process::Command::new(bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .await?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("accent_color \"red;}\" is not a colour"),
        "{said}"
    );
    Ok(())
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_and_asked_for_in_a_real_browser() -> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = [
        "totp-setup.png",
        "recovery-codes.png",
        "second-factor-prompt.png",
    ]
    .map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start(bin()).await?;
    let email = unique_email("browser-totp");
    Person::verified_account(&server, &email, PASSWORD).await?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("second_factor.mjs")
            .args([&server.url, &email, PASSWORD])
            .arg(&artifacts),
    )
    .await?;
    let page = Person::new(&server)?.sign_in(&email, PASSWORD).await?;
    assert!(
        page.url.ends_with("/signin/second-factor"),
        "the password alone no longer signs in: {}",
        page.url
    );
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}

#[tokio::test]
async fn passkeys_are_added_used_alone_or_as_a_second_factor_and_removed_in_a_real_browser()
-> Result<()> {
    let (browser_dir, artifacts) = browser_setup()?;
    let shots = [
        "passkeys.png",
        "second-factor-passkey.png",
        "passkey-refused.png",
    ]
    .map(|s| artifacts.join(s));
    for shot in &shots {
        clear_screenshot(shot)?;
    }
    let server = Server::start_on_localhost(bin(), &[]).await?;
    assert!(
        server.url.starts_with("http://localhost:"),
        "{}",
        server.url
    );
    let email = unique_email("browser-passkeys");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    run_node(
        tokio::process::Command::new("node")
            .current_dir(&browser_dir)
            .arg("passkeys.mjs")
            .args([&server.url, &email, PASSWORD])
            .arg(&artifacts),
    )
    .await?;
    let log = person
        .get("/v1/audit?type=passkey_added,passkey_removed")
        .await?;
    assert_eq!(log.html.matches("passkey_added").count(), 2, "{}", log.html);
    assert_eq!(
        log.html.matches("passkey_removed").count(),
        2,
        "{}",
        log.html
    );
    for shot in &shots {
        assert_screenshot(shot)?;
    }
    Ok(())
}
