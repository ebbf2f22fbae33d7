//! Signing in with GitHub (the testkit's stand-in, laid out as GitHub Enterprise Server) and
//! with a plain OAuth 2.0 provider read through a userinfo mapping.

use anyhow::{Context, Result};
use latchkey_testkit::{
    CliHome, GitHubStandIn, GitHubUser, Person, Server, count_rows, unique_email,
};
use reqwest::StatusCode;

use super::{callback_url, no_redirects, secret_file, user_id};
use crate::{PASSWORD, bin, cli_login::approve_consent};

pub const GITHUB_SECRET: &str = "github-client-secret";

/// The `[[identity_providers]]` entry for the stand-in, as `github`, plus `extra` lines.
pub fn github_config(github: &GitHubStandIn, extra: &str) -> Result<String> {
    Ok(format!(
        "[[identity_providers]]\nid = \"github\"\nkind = \"github\"\ndisplay_name = \"GitHub\"\n\
         client_id = \"gh-client\"\nclient_secret_file = \"{}\"\ngithub_url = \"{}\"\n{extra}",
        secret_file(GITHUB_SECRET)?.display(),
        github.url
    ))
}

/// GitHub's stand-in, and latchkey with it configured as `github` (plus `extra` config).
pub async fn with_github(extra: &str) -> Result<(GitHubStandIn, Server)> {
    let github = GitHubStandIn::start("gh-client", GITHUB_SECRET).await?;
    let server = Server::start_with_config(bin(), &github_config(&github, extra)?, &[]).await?;
    Ok((github, server))
}

/// The href of the "Continue with …" link to `provider` on `page`.
pub fn continue_link(html: &str, provider: &str) -> Result<String> {
    let marker = format!("id=\"provider-{provider}\" href=\"");
    let start = html.find(&marker).context("no Continue with link")? + marker.len();
    let end = start + html[start..].find('"').context("unterminated href")?;
    Ok(html_escape::decode_html_entities(&html[start..end]).into_owned())
}

pub async fn users(server: &Server) -> Result<i64> {
    count_rows(&server.database_url, "SELECT COUNT(*) FROM users").await
}

#[tokio::test]
async fn github_signs_people_up_and_in_and_a_cli_login_continues_after_it() -> Result<()> {
    let (github, server) = with_github("").await?;
    let email = unique_email("octo");
    github.sign_in_as(GitHubUser {
        id: 583_231,
        login: "octocat".into(),
        name: Some("The Octocat".into()),
        public_email: Some("public@example.com".into()),
        emails: vec![
            ("secondary@example.com".into(), false, true),
            (email.clone(), true, true),
        ],
    });

    // A CLI login (browser method) meets the sign-in page, which offers GitHub and keeps
    // where the login was going: after GitHub, the consent page, then the terminal.
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_login(&["--method", "browser"]).await?;
    let person = Person::new(&server)?;
    let signin = person.get(&login.url).await?;
    assert!(signin.url.contains("/signin?next="), "{}", signin.url);
    let link = continue_link(&signin.html, "github")?;
    assert!(
        link.starts_with("/auth/login/github?next=%2Foauth%2Fauthorize"),
        "{link}"
    );
    let consent = person.get(&link).await?;
    assert!(consent.url.contains("/oauth/authorize?"), "{}", consent.url);
    let back = approve_consent(&person, &login.url, &login.code).await?;
    assert!(back.contains("You are logged in"), "{back}");
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&email),
        "the primary verified address: {stdout}"
    );

    // The account: the primary verified address, never the public or a secondary one.
    let me = person.me().await?;
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["email_verified"], true);
    let account = person.get("/account").await?;
    assert!(account.html.contains("GitHub"), "{}", account.html);
    assert!(
        account.html.contains("your only way to sign in"),
        "{}",
        account.html
    );
    assert!(!account.html.contains("unlink-github"), "{}", account.html);

    // Again from another browser, with an open redirect as `next`: the same account, and the
    // redirect stays on this site.
    let again = Person::new(&server)?;
    let landed = again
        .get("/auth/login/github?next=%2F%2Fevil.example%2Fsteal")
        .await?;
    assert_eq!(landed.url, server.url("/account"), "{}", landed.html);
    assert_eq!(user_id(&again).await?, user_id(&person).await?);
    Ok(())
}

#[tokio::test]
async fn github_without_a_verified_primary_address_creates_nothing_and_says_why() -> Result<()> {
    let (github, server) = with_github("").await?;
    let before = users(&server).await?;

    github.sign_in_as(GitHubUser::new(7, &unique_email("unverified"), false));
    let page = Person::new(&server)?.get("/auth/login/github").await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(
        page.html.contains("GitHub has not confirmed"),
        "{}",
        page.html
    );

    // No address at all: a user whose list GitHub refuses (no user:email scope asked for), and
    // who shows a public email on the profile, which is never taken on trust.
    let (narrow, narrow_server) = with_github("scopes = [\"read:user\"]\n").await?;
    narrow.sign_in_as(GitHubUser {
        public_email: Some(unique_email("public")),
        ..GitHubUser::new(8, &unique_email("hidden"), true)
    });
    let page = Person::new(&narrow_server)?
        .get("/auth/login/github")
        .await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(
        page.html.contains("GitHub gave no email address"),
        "{}",
        page.html
    );

    // The person says no at GitHub: a page that says so and offers to try again.
    github.deny_next();
    let denied = Person::new(&server)?.get("/auth/login/github").await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(
        denied.html.contains("GitHub did not sign you in"),
        "{}",
        denied.html
    );
    assert!(
        denied.html.contains("href=\"/auth/login/github\""),
        "{}",
        denied.html
    );

    assert_eq!(users(&server).await?, before, "nothing created");
    assert_eq!(users(&narrow_server).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_failed_code_exchange_can_be_retried_but_a_used_state_never_works_twice() -> Result<()> {
    let (github, server) = with_github("").await?;
    let email = unique_email("retry");
    github.sign_in_as(GitHubUser::new(9, &email, true));
    let browser = Person {
        http: no_redirects(true)?,
        base: server.url.clone(),
    };
    let callback = callback_url(&browser.http, &server, "/auth/login/github").await?;

    // GitHub's token endpoint is down: a page that says so, and nothing is used up.
    github.fail_token_endpoint(Some(StatusCode::BAD_GATEWAY));
    let down = browser.get(&callback).await?;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.html);
    assert!(down.html.contains("Try again"), "{}", down.html);
    // A code GitHub does not know (its error comes as a 200 with an `error` field).
    github.fail_token_endpoint(None);
    let forged = callback.replace("code=", "code=forged");
    let refused = browser.get(&forged).await?;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.html);
    assert!(
        refused.html.contains("failed the checks"),
        "{}",
        refused.html
    );
    assert_eq!(users(&server).await?, 0);

    // The same callback again, GitHub back up: signed in.
    let done = browser.get(&callback).await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(browser.me().await?["email"], email.as_str());
    // Used: never again, even with the same cookie.
    let replayed = browser.get(&callback).await?;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.html.contains("already used"), "{}", replayed.html);
    Ok(())
}

#[tokio::test]
async fn two_tabs_can_sign_in_at_once() -> Result<()> {
    let (github, server) = with_github("").await?;
    github.sign_in_as(GitHubUser::new(10, &unique_email("tabs"), true));
    let browser = no_redirects(true)?;
    let first = callback_url(&browser, &server, "/auth/login/github").await?;
    let second = callback_url(&browser, &server, "/auth/login/github").await?;
    for callback in [second, first] {
        let done = browser.get(&callback).send().await?;
        assert_eq!(
            done.status(),
            StatusCode::SEE_OTHER,
            "{}",
            done.text().await?
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_plain_oauth2_provider_is_read_through_its_userinfo_mapping() -> Result<()> {
    // The stand-in's endpoints configured by hand, as for any OAuth 2.0 provider; its `/user`
    // says nothing of verification, so it vouches for no address.
    let github = GitHubStandIn::start("gh-client", GITHUB_SECRET).await?;
    let g = &github.url;
    let config = format!(
        "[[identity_providers]]\nid = \"forge\"\nkind = \"oauth2\"\ndisplay_name = \"Forge\"\n\
         client_id = \"gh-client\"\nclient_secret_file = \"{}\"\n\
         authorization_url = \"{g}/login/oauth/authorize\"\n\
         token_url = \"{g}/login/oauth/access_token\"\nuserinfo_url = \"{g}/api/v3/user\"\n\
         userinfo_subject = \"id\"\nuserinfo_email = \"email\"\nuserinfo_name = \"login\"\n",
        secret_file(GITHUB_SECRET)?.display()
    );
    let server = Server::start_with_config(bin(), &config, &[]).await?;
    let email = unique_email("forge");
    github.sign_in_as(GitHubUser {
        public_email: Some(email.clone()),
        ..GitHubUser::new(11, &email, true)
    });

    // Signing up through it: refused, the address is not vouched for.
    let page = Person::new(&server)?.get("/auth/login/forge").await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(
        page.html.contains("Forge has not confirmed"),
        "{}",
        page.html
    );
    assert_eq!(users(&server).await?, 0);

    // Linked by a signed-in person, it then signs them in.
    let owner = Person::verified_account(&server, &unique_email("owner"), PASSWORD).await?;
    let linked = owner.get("/account/link/forge").await?;
    assert_eq!(linked.url, server.url("/account"), "{}", linked.html);
    assert!(linked.html.contains("unlink-forge"), "{}", linked.html);
    assert!(
        linked.html.contains(&email),
        "the address at link time: {}",
        linked.html
    );
    let elsewhere = Person::new(&server)?;
    elsewhere.get("/auth/login/forge").await?;
    assert_eq!(user_id(&elsewhere).await?, user_id(&owner).await?);
    Ok(())
}

#[tokio::test]
async fn pages_that_need_a_sign_in_offer_the_providers_and_come_back_after_them() -> Result<()> {
    let (github, server) = with_github("").await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let token_flow = cli.start_token_flow_login(&[]).await?;
    let approval = token_flow.url.replace(&server.url, "");
    for (number, page) in ["/device", approval.as_str()].into_iter().enumerate() {
        github.sign_in_as(GitHubUser::new(
            60 + number as u64,
            &unique_email("pages"),
            true,
        ));
        let person = Person::new(&server)?;
        let signin = person.get(page).await?;
        let link = continue_link(&signin.html, "github")?;
        let next = url::form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>();
        assert!(link.ends_with(&format!("next={next}")), "{page}: {link}");
        let back = person.get(&link).await?;
        assert_eq!(back.url, server.url(page), "{}", back.html);
        assert_eq!(back.status, StatusCode::OK);
    }
    Ok(())
}

#[tokio::test]
async fn over_https_the_sign_in_cookie_is_host_only_and_the_callback_is_the_public_one()
-> Result<()> {
    let github = GitHubStandIn::start("gh-client", GITHUB_SECRET).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("latchkey.toml");
    std::fs::write(&config, github_config(&github, "")?)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", "https://auth.example.test", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let (_server, _) = latchkey_testkit::spawn_until(command, "latchkey is listening on ").await?;
    let started = no_redirects(false)?
        .get(format!("http://127.0.0.1:{port}/auth/login/github"))
        .send()
        .await?;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let cookie = started
        .headers()
        .get("set-cookie")
        .context("a cookie")?
        .to_str()?;
    assert!(cookie.starts_with("__Host-lk_upstream_"), "{cookie}");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    let location = started
        .headers()
        .get("location")
        .context("a redirect")?
        .to_str()?;
    let to_github = url::Url::parse(location)?;
    assert!(location.starts_with(&format!("{}/login/oauth/authorize?", github.url)));
    let redirect_uri = to_github
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .context("redirect_uri")?
        .1
        .into_owned();
    assert_eq!(
        redirect_uri,
        "https://auth.example.test/auth/callback/github"
    );
    Ok(())
}
