//! Signing in with an upstream OpenID Connect provider (node oidc-provider, `tests/oidc`): a
//! new person signs up through it, signs in again to the same account, and finishes a CLI login
//! with that account; and the attacks on the flow are refused with nothing created.

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Person, Server, spawn_until, unique_email};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{PASSWORD, bin, mcp::repo_root};

const CLIENT_SECRET: &str = "upstream-client-secret";

/// The provider, and its issuer URL.
async fn provider() -> Result<(Child, String)> {
    let dir = repo_root().join("tests/oidc");
    anyhow::ensure!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is missing: run the README test command, which installs it"
    );
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .args(["provider.mjs", "latchkey", CLIENT_SECRET])
        // Its start-up warnings (a test runtime, in-memory storage) are expected.
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let (child, issuer) = spawn_until(command, "oidc-provider listening on ").await?;
    Ok((child, issuer.trim().to_owned()))
}

/// The `[[identity_providers]]` entry for the provider at `issuer`, as `corp`, its secret in a
/// file.
fn corp_config(issuer: &str, allowed_domains: &[&str]) -> Result<String> {
    let secret = tempfile::NamedTempFile::new()?;
    std::fs::write(secret.path(), format!("{CLIENT_SECRET}\n"))?;
    let (_file, path) = secret.keep()?;
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
    let answer = reqwest::Client::new()
        .post(format!("{issuer}/test/account"))
        .json(&json!({"sub": sub, "email": email, "email_verified": verified, "name": "Ann"}))
        .send()
        .await?;
    anyhow::ensure!(answer.status() == 204, "{}", answer.status());
    Ok(())
}

async fn user_id(person: &Person) -> Result<String> {
    Ok(person.me().await?["user_id"]
        .as_str()
        .context("user_id")?
        .to_owned())
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
    let no_redirects = |jar: bool| {
        reqwest::Client::builder()
            .cookie_store(jar)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    };

    // Walk the redirects by hand, to hold on to the callback URL.
    let browser = no_redirects(true)?;
    let mut url = server.url("/auth/login/corp");
    as_person(&issuer, "sub-bob", "bob@corp.example", true).await?;
    let callback = loop {
        let response = browser.get(&url).send().await?;
        let location = response
            .headers()
            .get("location")
            .context("a redirect")?
            .to_str()?
            .to_owned();
        let next = url::Url::parse(&url)?.join(&location)?.to_string();
        if next.starts_with(&server.url("/auth/callback/corp")) {
            break next;
        }
        url = next;
    };
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
