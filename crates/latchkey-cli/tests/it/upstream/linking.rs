//! Linking and unlinking providers on the account page: an existing account is linked only by
//! its owner, signed in; a link cannot be finished from another browser or another account;
//! the last way to sign in cannot be unlinked; and a deployment can turn passwords off.

use anyhow::{Context, Result};
use latchkey_testkit::{GitHubStandIn, GitHubUser, Person, Server, unique_email};
use reqwest::StatusCode;

use super::{
    callback_url,
    github::{GITHUB_SECRET, continue_link, github_config, users, with_github},
    no_redirects, user_id,
};
use crate::{PASSWORD, bin};

async fn identities(server: &latchkey_testkit::Server) -> Result<i64> {
    latchkey_testkit::count_rows(&server.database_url, "SELECT COUNT(*) FROM identities").await
}

#[tokio::test]
async fn an_existing_account_is_linked_only_after_its_owner_signs_in() -> Result<()> {
    let (github, server) = with_github("").await?;
    let email = unique_email("owner");
    let owner = Person::verified_account(&server, &email, PASSWORD).await?;
    let owner_id = user_id(&owner).await?;

    // GitHub shows the owner's address but has not verified it: refused outright.
    github.sign_in_as(GitHubUser::new(20, &email, false));
    let unverified = Person::new(&server)?;
    let page = unverified.get("/auth/login/github").await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(page.html.contains("has not confirmed"), "{}", page.html);
    assert!(unverified.me().await.is_err());

    github.sign_in_as(GitHubUser::new(21, &email, true));

    // GitHub vouches for the owner's address: still no silent link, but a way to link it.
    let browser = Person::new(&server)?;
    let refused = browser.get("/auth/login/github").await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    assert!(refused.html.contains("already exists"), "{}", refused.html);
    assert!(browser.me().await.is_err());
    assert_eq!(identities(&server).await?, 0);
    let to_link = "/signin?next=%2Faccount%2Flink%2Fgithub";
    assert!(refused.html.contains(to_link), "{}", refused.html);

    // The owner signs in with the password on that page, and GitHub is linked.
    let signin = browser.get(to_link).await?;
    let account = browser
        .post_form(
            "/signin",
            &[
                ("csrf", &signin.csrf()?),
                ("email", &email),
                ("password", PASSWORD),
                ("next", &signin.input("next").context("next")?),
            ],
        )
        .await?;
    assert_eq!(account.url, server.url("/account"), "{}", account.html);
    assert!(account.html.contains("unlink-github"), "{}", account.html);

    // From now on GitHub signs in to that account.
    let elsewhere = Person::new(&server)?;
    elsewhere.get("/auth/login/github").await?;
    assert_eq!(user_id(&elsewhere).await?, owner_id);

    // Unlinked (the password remains): GitHub no longer signs in to it.
    let page = browser.get("/account").await?;
    let unlinked = browser
        .post_form(
            "/account/identities/github/unlink",
            &[("csrf", &page.csrf()?)],
        )
        .await?;
    assert!(
        !unlinked.html.contains("unlink-github"),
        "{}",
        unlinked.html
    );
    assert!(unlinked.html.contains("link-github"), "{}", unlinked.html);
    let after = Person::new(&server)?.get("/auth/login/github").await?;
    assert_eq!(after.status, StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test]
async fn a_link_cannot_be_finished_by_another_browser_or_another_account() -> Result<()> {
    let (github, server) = with_github("").await?;
    let attacker_email = unique_email("attacker");
    Person::verified_account(&server, &attacker_email, PASSWORD).await?;
    let victim = Person::verified_account(&server, &unique_email("victim"), PASSWORD).await?;
    github.sign_in_as(GitHubUser::new(31, &attacker_email, true));

    // The attacker starts linking their GitHub account and hands the callback to the victim:
    // it belongs to the attacker's browser, so nothing is linked to the victim.
    let attacker = Person {
        http: no_redirects(true)?,
        base: server.url.clone(),
    };
    attacker.sign_in(&attacker_email, PASSWORD).await?;
    let callback = callback_url(&attacker.http, &server, "/account/link/github").await?;
    let planted = victim.get(&callback).await?;
    assert_eq!(planted.status, StatusCode::BAD_REQUEST, "{}", planted.html);
    assert!(planted.html.contains("another browser"), "{}", planted.html);

    // The attacker's own browser, now signed in as someone else: refused too.
    let other_email = unique_email("other");
    Person::verified_account(&server, &other_email, PASSWORD).await?;
    let form = attacker.get("/signin?again=true").await?;
    attacker
        .post_form(
            "/signin",
            &[
                ("csrf", &form.csrf()?),
                ("email", &other_email),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let switched = attacker.get(&callback).await?;
    assert_eq!(
        switched.status,
        StatusCode::BAD_REQUEST,
        "{}",
        switched.html
    );
    assert!(
        switched.html.contains("another account"),
        "{}",
        switched.html
    );
    assert_eq!(identities(&server).await?, 0);

    // Signed out, the link page asks for a sign-in first.
    let stranger = Person::new(&server)?;
    let page = stranger.get("/account/link/github").await?;
    assert!(
        page.url.contains("/signin?next=%2Faccount%2Flink%2Fgithub"),
        "{}",
        page.url
    );
    Ok(())
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked() -> Result<()> {
    let (github, server) = with_github("").await?;
    github.sign_in_as(GitHubUser::new(41, &unique_email("only"), true));
    let person = Person::new(&server)?;
    person.get("/auth/login/github").await?;
    let page = person.get("/account").await?;
    let refused = person
        .post_form(
            "/account/identities/github/unlink",
            &[("csrf", &page.csrf()?)],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    assert!(
        refused.html.contains("only way to sign in"),
        "{}",
        refused.html
    );
    // Without the CSRF token: refused before anything is looked at.
    let forged = person
        .post_form("/account/identities/github/unlink", &[("csrf", "forged")])
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
    // Unknown or unlinked providers.
    let unknown = person
        .post_form(
            "/account/identities/gitlab/unlink",
            &[("csrf", &page.csrf()?)],
        )
        .await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(identities(&server).await?, 1);
    let fresh = Person::new(&server)?;
    fresh.get("/auth/login/github").await?;
    assert_eq!(
        user_id(&fresh).await?,
        user_id(&person).await?,
        "still signs in"
    );
    Ok(())
}

#[tokio::test]
async fn a_deployment_without_passwords_offers_only_its_providers() -> Result<()> {
    let github = GitHubStandIn::start("gh-client", GITHUB_SECRET).await?;
    let config = format!("password_sign_in = false\n{}", github_config(&github, "")?);
    let server = Server::start_with_config(bin(), &config, &[]).await?;
    let email = unique_email("sso");
    let person = Person::new(&server)?;
    let signin = person.get("/signin").await?;
    assert!(
        !signin.html.contains("name=\"password\""),
        "{}",
        signin.html
    );
    let link = continue_link(&signin.html, "github")?;
    let signup = person.get("/signup").await?;
    assert!(
        !signup.html.contains("name=\"password\""),
        "{}",
        signup.html
    );

    // The password endpoints refuse, whatever is posted to them.
    for (path, fields) in [
        (
            "/signin",
            vec![("email", email.as_str()), ("password", PASSWORD)],
        ),
        (
            "/signup",
            vec![("email", email.as_str()), ("password", PASSWORD)],
        ),
        ("/forgot-password", vec![("email", email.as_str())]),
    ] {
        // The sign-in page has no form left; the CSRF token comes from another page.
        let csrf = person.get("/forgot-password").await?.csrf()?;
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let page = person.post_form(path, &form).await?;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.html);
        assert!(
            page.html.contains("asswords are turned off here"),
            "{path}: {}",
            page.html
        );
    }
    assert_eq!(users(&server).await?, 0);

    // GitHub signs the person up.
    github.sign_in_as(GitHubUser::new(51, &email, true));
    person.get(&link).await?;
    assert_eq!(person.me().await?["email"], email.as_str());
    Ok(())
}
