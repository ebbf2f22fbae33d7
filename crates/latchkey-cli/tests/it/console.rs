//! The account console (issue 18), from a person's side: changing the password ends every other
//! session and OAuth login at once, keeps this one, and needs the current password.

use anyhow::Result;
use latchkey_testkit::{Person, Server, unique_email};
use reqwest::StatusCode;

use crate::{PASSWORD, bin, cli_login::refresh_with, oauth::token_pair};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// `latchkey admin <args>` on `server`'s database (its config file too, if it has one): the
/// exit code, stdout and stderr.
pub(crate) async fn admin(server: &Server, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["admin", "--dev", "--data-dir"])
        .arg(&server.data_dir)
        .args(["--database-url", &server.database_url]);
    if let Some(config) = server
        .data_dir
        .parent()
        .map(|dir| dir.join("latchkey.toml"))
        .filter(|file| file.exists())
    {
        command.arg("--config").arg(config);
    }
    let out = command.args(args).output().await?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The OAuth login `refresh` is over, while the API key `key` still works.
async fn logins_over_keys_kept(server: &Server, refresh: &str, key: &str) -> Result<()> {
    let (status, answer) = refresh_with(server, refresh).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(key)
        .send()
        .await?;
    assert_eq!(me.status(), StatusCode::OK, "API keys keep working");
    Ok(())
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_login_but_this_one() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("changes");
    let here = Person::verified_account(&server, &email, PASSWORD).await?;
    let elsewhere = Person::new(&server)?;
    elsewhere.sign_in(&email, PASSWORD).await?;
    assert!(elsewhere.get("/account").await?.url.ends_with("/account"));
    let (_, refresh) = token_pair(&server, &here).await?;
    let key = here.new_api_key("kept").await?;
    let account = here.get("/account").await?;
    assert!(
        account.contains("id=\"change-password\""),
        "{}",
        account.html
    );
    let csrf = account.csrf()?;

    // Refused, nothing changed: a wrong current password, a new one too short, a forged form.
    for (current, new, csrf, status) in [
        (
            "not my password",
            NEW_PASSWORD,
            csrf.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (PASSWORD, "short", csrf.as_str(), StatusCode::BAD_REQUEST),
        (PASSWORD, NEW_PASSWORD, "forged", StatusCode::FORBIDDEN),
    ] {
        let page = here
            .post_form(
                "/account/password",
                &[("csrf", csrf), ("current", current), ("new", new)],
            )
            .await?;
        assert_eq!(page.status, status, "{current} {new} {csrf}: {}", page.html);
        assert!(elsewhere.get("/account").await?.url.ends_with("/account"));
    }
    let check = Person::new(&server)?;
    assert!(
        check
            .sign_in(&email, PASSWORD)
            .await?
            .url
            .ends_with("/account")
    );

    let changed = here
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("new", NEW_PASSWORD),
            ],
        )
        .await?;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.html);
    assert!(changed.contains("Password changed"));
    // This session stays; the others (two browsers) are signed out; the OAuth login is over;
    // API keys keep working.
    assert!(here.get("/account").await?.url.ends_with("/account"));
    for other in [&elsewhere, &check] {
        assert!(other.get("/account").await?.url.contains("/signin"));
    }
    logins_over_keys_kept(&server, &refresh, &key).await?;
    // The old password no longer signs in; the new one does; the owner was told.
    let again = Person::new(&server)?;
    assert!(
        again
            .sign_in(&email, PASSWORD)
            .await?
            .url
            .contains("/signin")
    );
    assert!(
        again
            .sign_in(&email, NEW_PASSWORD)
            .await?
            .url
            .ends_with("/account")
    );
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == email && m.subject == "Your password was changed"),
        "the owner is told"
    );
    Ok(())
}

#[tokio::test]
async fn an_operator_signs_a_compromised_account_out_everywhere() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("compromised");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let other_browser = Person::new(&server)?;
    other_browser.sign_in(&email, PASSWORD).await?;
    let (_, refresh) = token_pair(&server, &person).await?;
    let key = person.new_api_key("kept").await?;
    let (code, listed, _) = admin(&server, &["users", "list"]).await?;
    assert_eq!(code, Some(0));
    assert!(
        listed.contains(&email) && listed.contains("verified"),
        "{listed}"
    );
    let (code, shown, _) = admin(&server, &["users", "show", &email]).await?;
    assert_eq!(code, Some(0));
    assert!(shown.contains("(owner), personal"), "{shown}");

    let (code, said, stderr) = admin(&server, &["sessions", "revoke", "--user", &email]).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(said.contains("2 browser session(s) ended"), "{said}");
    for browser in [&person, &other_browser] {
        assert!(browser.get("/account").await?.url.contains("/signin"));
    }
    logins_over_keys_kept(&server, &refresh, &key).await?;

    let (code, _, stderr) = admin(
        &server,
        &["sessions", "revoke", "--user", "nobody@example.com"],
    )
    .await?;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("there is no account"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn signed_out_the_sign_in_page_names_the_tool_asking_and_its_code() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    let stranger = Person::new(&server)?;
    let page = stranger.get(&login.url).await?;
    assert!(page.url.contains("/signin"), "signed out: {}", page.url);
    let asking = format!("code {}", login.code);
    assert!(
        page.contains("Sign in to approve the login from") && page.contains(&asking),
        "{}",
        page.html
    );
    // The code shown is the server's, never the link's; a made-up flow shows nothing.
    let flow = login
        .url
        .split("token_flow_id=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_default()
        .to_owned();
    for (next, shows) in [
        (
            format!("/login/cli?token_flow_id={flow}&code=FAKE-CODE"),
            true,
        ),
        (
            "/login/cli?token_flow_id=tf_madeup&code=FAKE-CODE".to_owned(),
            false,
        ),
    ] {
        let page = stranger
            .get(&format!(
                "/signin?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .await?;
        assert!(!page.contains("code FAKE-CODE"), "{}", page.html);
        assert_eq!(page.contains(&asking), shows, "{next}: {}", page.html);
    }
    Ok(())
}
