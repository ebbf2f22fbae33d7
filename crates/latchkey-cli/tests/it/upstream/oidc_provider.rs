//! Signing in with an upstream OpenID Connect provider (node oidc-provider, `tests/oidc`): a
//! new person signs up through it, signs in again to the same account, and finishes a CLI login
//! with that account; and the attacks on the flow are refused with nothing created.

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Person, Server, spawn_until, unique_email};
use serde_json::json;
use tokio::process::{Child, Command};

use super::{callback_url, no_redirects, secret_file, user_id};
use crate::{PASSWORD, bin, mcp::repo_root};

const CLIENT_SECRET: &str = "upstream-client-secret";

/// The provider, and its issuer URL.
async fn provider() -> Result<(Child, String)> {
    start_provider(&[]).await
}

/// The provider started with `extra` arguments (`interactive`: a sign-in page), and its
/// issuer URL.
pub async fn start_provider(extra: &[&str]) -> Result<(Child, String)> {
    let dir = repo_root().join("tests/oidc");
    anyhow::ensure!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is missing: run the README test command, which installs it"
    );
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .args(["provider.mjs", "latchkey", CLIENT_SECRET])
        .args(extra)
        // Its start-up warnings (a test runtime, in-memory storage) are expected.
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let (child, issuer) = spawn_until(command, "oidc-provider listening on ").await?;
    Ok((child, issuer.trim().to_owned()))
}

/// The `[[identity_providers]]` entry for the provider at `issuer`, as `corp`, its secret in a
/// file.
pub fn corp_config(issuer: &str, allowed_domains: &[&str]) -> Result<String> {
    let path = secret_file(CLIENT_SECRET)?;
    Ok(format!(
        "[[identity_providers]]\nid = \"corp\"\nkind = \"oidc\"\n\
         display_name = \"Corp SSO\"\nissuer = \"{issuer}\"\nclient_id = \"latchkey\"\n\
         client_secret_file = \"{}\"\nallowed_email_domains = {}\n",
        path.display(),
        json!(allowed_domains)
    ))
}

/// latchkey with the provider at `issuer` configured as `corp`.
async fn server_with(issuer: &str, allowed_domains: &[&str]) -> Result<Server> {
    Server::start_with_config(bin(), &corp_config(issuer, allowed_domains)?, &[]).await
}

/// Who the provider signs in next.
async fn as_person(issuer: &str, sub: &str, email: &str, verified: bool) -> Result<()> {
    as_account(
        issuer,
        json!({"sub": sub, "email": email, "email_verified": verified, "name": "Ann"}),
    )
    .await
}

/// Who the provider signs in next, by their claims.
async fn as_account(issuer: &str, claims: serde_json::Value) -> Result<()> {
    let answer = reqwest::Client::new()
        .post(format!("{issuer}/test/account"))
        .json(&claims)
        .send()
        .await?;
    anyhow::ensure!(answer.status() == 204, "{}", answer.status());
    Ok(())
}

#[tokio::test]
async fn a_person_signs_up_and_in_with_the_provider_and_logs_the_cli_in() -> Result<()> {
    let (_idp, issuer) = provider().await?;
    let server = server_with(&issuer, &[]).await?;
    let email = unique_email("upstream");
    as_person(&issuer, "sub-ann", &email, true).await?;

    // The sign-in page offers the provider, keeping where the person was going.
    let browser = Person::new(&server)?;
    let signin = browser.get("/signin?next=%2Faccount").await?;
    assert!(
        signin.html.contains("Continue with Corp SSO")
            && signin.html.contains("/auth/login/corp?next=%2Faccount"),
        "{}",
        signin.html
    );

    // First time: an account, verified by the provider's word, no mail, a session.
    let landed = browser.get("/auth/login/corp?next=%2Faccount").await?;
    assert_eq!(landed.status, 200, "{}", landed.html);
    assert!(landed.url.ends_with("/account"), "{}", landed.url);
    assert!(landed.html.contains(&email), "{}", landed.html);
    let me = browser.me().await?;
    assert_eq!(me["email_verified"], true);
    let first = user_id(&browser).await?;
    assert!(
        server.outbox()?.iter().all(|m| m.to != email),
        "no verification mail"
    );

    // Again, in another browser: the same account.
    let again = Person::new(&server)?;
    again.get("/auth/login/corp").await?;
    assert_eq!(user_id(&again).await?, first);

    // A CLI login approved with that session: the account has no password, and needs none.
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_login(&["--method", "device"]).await?;
    let approved = again
        .decide_device_code(&login.code, latchkey_testkit::Decision::Approve)
        .await?;
    assert!(
        approved.html.contains("Device connected"),
        "{}",
        approved.html
    );
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email), "{stdout}");

    // And no password signs in to it.
    let guesser = Person::new(&server)?;
    let guessed = guesser.sign_in(&email, "!upstream").await?;
    assert!(guessed.html.contains("error"), "{}", guessed.html);
    Ok(())
}

#[tokio::test]
async fn the_callback_refuses_replays_other_browsers_and_unvouched_emails() -> Result<()> {
    let (_idp, issuer) = provider().await?;
    let server = server_with(&issuer, &["corp.example"]).await?;
    let browser = no_redirects(true)?;
    as_person(&issuer, "sub-bob", "bob@corp.example", true).await?;
    let callback = callback_url(&browser, &server, "/auth/login/corp").await?;
    // From another browser (no cookie): refused, and the sign-in is still good for its own.
    let stranger = no_redirects(false)?.get(&callback).send().await?;
    assert_eq!(stranger.status(), 400);
    assert!(stranger.text().await?.contains("another browser"));
    let finished = browser.get(&callback).send().await?;
    assert_eq!(finished.status(), 303, "{}", finished.text().await?);
    // Replayed: the state was used up.
    let replayed = browser.get(&callback).send().await?;
    assert_eq!(replayed.status(), 400);
    assert!(replayed.text().await?.contains("already used"));
    // No state at all.
    let bare = browser
        .get(server.url("/auth/callback/corp?code=x"))
        .send()
        .await?;
    assert_eq!(bare.status(), 400);
    // The provider's own refusal: a page that says so, with a way to try again.
    let denied = browser
        .get(server.url("/auth/callback/corp?error=access_denied&state=x"))
        .send()
        .await?;
    assert_eq!(denied.status(), 403);
    assert!(denied.text().await?.contains("/auth/login/corp"));

    // An unverified email, or one outside the allowed domains: nothing is created.
    for (sub, email, verified, why) in [
        (
            "sub-u",
            "unverified@corp.example",
            false,
            "has not confirmed",
        ),
        (
            "sub-o",
            "outsider@other.example",
            true,
            "not an address allowed",
        ),
    ] {
        as_person(&issuer, sub, email, verified).await?;
        let person = Person::new(&server)?;
        let page = person.get("/auth/login/corp").await?;
        assert_eq!(page.status, 403, "{}", page.html);
        assert!(page.html.contains(why), "{}", page.html);
        assert!(person.me().await.is_err(), "no session");
        let sign_up = Person::new(&server)?.sign_up(email, PASSWORD).await?;
        assert!(
            sign_up.html.contains("Check your email"),
            "the address is still free"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_provider_never_takes_over_an_existing_account() -> Result<()> {
    let (_idp, issuer) = provider().await?;
    let server = server_with(&issuer, &[]).await?;
    let email = unique_email("owner");
    let owner = Person::verified_account(&server, &email, PASSWORD).await?;
    let owner_id = user_id(&owner).await?;
    // Someone whose provider account claims the same (verified) address.
    as_person(&issuer, "sub-mallory", &email, true).await?;
    let mallory = Person::new(&server)?;
    let page = mallory.get("/auth/login/corp").await?;
    assert_eq!(page.status, 409, "{}", page.html);
    assert!(page.html.contains("already exists"), "{}", page.html);
    assert!(mallory.me().await.is_err(), "no session for the taker");
    // The owner's account is untouched, and still signs in with its password.
    let owner_again = Person::new(&server)?;
    owner_again.sign_in(&email, PASSWORD).await?;
    assert_eq!(user_id(&owner_again).await?, owner_id);
    Ok(())
}

#[tokio::test]
async fn a_google_hosted_domain_admits_only_that_domains_accounts() -> Result<()> {
    let (_idp, issuer) = provider().await?;
    let config = format!(
        "[[identity_providers]]\nid = \"google\"\nkind = \"google\"\ndisplay_name = \"Google\"\n\
         issuer = \"{issuer}\"\nclient_id = \"latchkey\"\nclient_secret_file = \"{}\"\n\
         hosted_domain = \"corp.example\"\n",
        secret_file(CLIENT_SECRET)?.display()
    );
    let server = Server::start_with_config(bin(), &config, &[]).await?;
    // Google is asked for the domain's accounts only ...
    let first = no_redirects(true)?
        .get(server.url("/auth/login/google"))
        .send()
        .await?;
    let location = first
        .headers()
        .get("location")
        .context("a redirect")?
        .to_str()?;
    assert!(location.contains("hd=corp.example"), "{location}");
    // ... and what its ID token says is checked: a personal account (no `hd`), or another
    // organization's, even with an address at the domain, is refused.
    for (sub, hd) in [("sub-personal", None), ("sub-other", Some("other.example"))] {
        as_account(
            &issuer,
            json!({"sub": sub, "email": unique_email("x"), "email_verified": true, "hd": hd}),
        )
        .await?;
        let person = Person::new(&server)?;
        let page = person.get("/auth/login/google").await?;
        assert_eq!(page.status, 403, "{}", page.html);
        assert!(
            page.html
                .contains("accounts of the corp.example organization may sign in"),
            "{}",
            page.html
        );
        assert!(person.me().await.is_err());
    }
    let email = unique_email("member");
    as_account(
        &issuer,
        json!({"sub": "sub-member", "email": email, "email_verified": true, "hd": "corp.example"}),
    )
    .await?;
    let member = Person::new(&server)?;
    member.get("/auth/login/google").await?;
    assert_eq!(member.me().await?["email"], email.as_str());
    Ok(())
}

#[tokio::test]
async fn admin_providers_list_shows_the_callback_and_checks_discovery() -> Result<()> {
    let (_idp, issuer) = provider().await?;
    let dir = tempfile::tempdir()?;
    let list = |config: String| {
        let file = dir.path().join("latchkey.toml");
        let data = dir.path().join("data");
        async move {
            std::fs::write(&file, config)?;
            let output = Command::new(bin())
                .args(["admin", "--dev", "--listen", "127.0.0.1:8095", "--config"])
                .arg(&file)
                .arg("--data-dir")
                .arg(&data)
                .args(["providers", "list"])
                .output()
                .await?;
            anyhow::Ok(output)
        }
    };
    let answering = list(corp_config(&issuer, &[])?).await?;
    let shown = String::from_utf8_lossy(&answering.stdout);
    assert!(
        answering.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&answering.stderr)
    );
    assert!(shown.contains("corp (Corp SSO)"), "{shown}");
    assert!(
        shown.contains("http://127.0.0.1:8095/auth/callback/corp"),
        "{shown}"
    );
    assert!(shown.contains("discovery: ok"), "{shown}");

    let silent = list(corp_config("http://127.0.0.1:9", &[])?).await?;
    assert_eq!(silent.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&silent.stdout).contains("discovery: FAILED"));
    Ok(())
}
