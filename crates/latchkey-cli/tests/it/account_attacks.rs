//! Attacks on accounts: email bombing through sign-up and resend, pre-hijacking an address
//! by signing it up first, learning which addresses have accounts, and the password reset
//! that answers them. Each checks what was stored and mailed, not only the status.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Page, Person, Server, count_rows, unique_email};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::Value;

use crate::{PASSWORD, bin, cli_login::refresh_with, oauth::token_pair};

/// How many messages went to `to` (optionally with this subject).
fn mails_to(server: &Server, to: &str, subject: Option<&str>) -> Result<usize> {
    Ok(server
        .outbox()?
        .iter()
        .filter(|m| m.to == to && subject.is_none_or(|s| m.subject == s))
        .count())
}

async fn accounts(server: &Server, email: &str) -> Result<i64> {
    count_rows(
        &server.database_url,
        &format!("SELECT COUNT(*) FROM users WHERE email = '{email}'"),
    )
    .await
}

/// Posts the sign-up form and returns the raw answer (status, redirect, cookies).
async fn raw_sign_up(
    server: &Server,
    ip: [u8; 4],
    email: &str,
    password: &str,
) -> Result<reqwest::Response> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .local_address(std::net::IpAddr::from(ip))
        .build()?;
    let form = Person {
        http: http.clone(),
        base: server.url.clone(),
    }
    .get("/signup")
    .await?;
    Ok(http
        .post(server.url("/signup"))
        .header("origin", &server.url)
        .form(&[
            ("csrf", form.csrf()?.as_str()),
            ("email", email),
            ("password", password),
            ("next", ""),
        ])
        .send()
        .await?)
}

#[tokio::test]
async fn email_bombing_through_resend_and_sign_up_is_throttled() -> Result<()> {
    let server = Server::start(bin()).await?;

    // Resend, again and again, from the browser that signed up.
    let victim = unique_email("bombed");
    let bomber = Person::new(&server)?;
    bomber.sign_up(&victim, PASSWORD).await?;
    let page = bomber.get("/check-email").await?;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let answer = bomber
            .post_form(
                "/verify-email/resend",
                &[("csrf", &page.csrf()?), ("next", "")],
            )
            .await?;
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(&statuses[..2], [200, 200], "two resends pass: {statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        mails_to(&server, &victim, None)?,
        3,
        "a handful of mails, not 31"
    );

    // The same address signed up again and again, from different networks.
    let target = unique_email("target");
    for last in 1..=3 {
        let answer = raw_sign_up(&server, [127, 0, 1, last], &target, PASSWORD).await?;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    }
    let refused = raw_sign_up(&server, [127, 0, 1, 4], &target, PASSWORD).await?;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(mails_to(&server, &target, None)?, 3);

    // Many addresses signed up from one network: refused once its budget is spent, and a
    // refused sign-up stores no account and sends no mail.
    let mut refused_at = None;
    for i in 0..40 {
        let email = unique_email("spray");
        let answer = raw_sign_up(&server, [127, 0, 2, 1], &email, PASSWORD).await?;
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = answer.headers()["retry-after"].to_str()?.parse()?;
            ensure!(retry > 0, "Retry-After {retry}");
            assert_eq!(
                accounts(&server, &email).await?,
                0,
                "nothing stored for a refused sign-up"
            );
            assert_eq!(mails_to(&server, &email, None)?, 0, "nothing sent");
            refused_at.get_or_insert(i);
        } else {
            assert_eq!(answer.status(), StatusCode::SEE_OTHER);
            assert_eq!(accounts(&server, &email).await?, 1);
        }
    }
    assert_eq!(
        refused_at,
        Some(20),
        "20 sign-ups from one address, then 429"
    );
    Ok(())
}

#[tokio::test]
async fn sign_up_answers_the_same_whether_or_not_the_address_has_an_account() -> Result<()> {
    let server = Server::start(bin()).await?;
    let owner_email = unique_email("owner");
    let owner = Person::verified_account(&server, &owner_email, PASSWORD).await?;

    let fresh = raw_sign_up(
        &server,
        [127, 0, 3, 1],
        &unique_email("fresh"),
        "another password",
    )
    .await?;
    let taken = raw_sign_up(&server, [127, 0, 3, 2], &owner_email, "attacker password").await?;
    let shape = |r: &reqwest::Response| {
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|c| c.to_str().ok()?.split('=').next().map(str::to_owned))
            .collect();
        (r.status(), r.headers().get("location").cloned(), cookies)
    };
    assert_eq!(
        shape(&fresh),
        shape(&taken),
        "same status, redirect and cookies"
    );
    assert_eq!(
        mails_to(
            &server,
            &owner_email,
            Some("Someone tried to sign up with your email")
        )?,
        1,
        "the owner is told"
    );
    // Nothing about the account changed: the owner's password and session still work.
    owner.me().await?;
    let attacker = Person::new(&server)?;
    assert_eq!(
        attacker
            .sign_in(&owner_email, "attacker password")
            .await?
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Person::new(&server)?
            .sign_in(&owner_email, PASSWORD)
            .await?
            .status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn account_pre_hijacking_never_takes_the_address_from_its_owner() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("squatted");

    // The attacker signs the victim's address up first and signs in to the unverified account.
    let attacker = Person::new(&server)?;
    attacker.sign_up(&email, "attacker password").await?;
    attacker.sign_in(&email, "attacker password").await?;
    let squatted: Value = attacker.me().await?;
    assert_eq!(squatted["email_verified"], false);
    let key = attacker
        .http
        .post(server.url("/v1/api-keys"))
        .header("origin", &server.url)
        .json(&serde_json::json!({"name": "persistence"}))
        .send()
        .await?;
    assert_eq!(
        key.status(),
        StatusCode::FORBIDDEN,
        "unverified accounts get no API keys"
    );
    assert_eq!(key.json::<Value>().await?["error"], "email_not_verified");
    let form = attacker.get("/account").await?;
    let page = attacker
        .post_form("/account/keys", &[("csrf", &form.csrf()?), ("name", "x")])
        .await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let stored = count_rows(&server.database_url, "SELECT COUNT(*) FROM api_keys").await?;
    assert_eq!(stored, 0);

    // The victim opens the link the attacker's sign-up sent her: her browser did not sign
    // up, so she is asked for the account's password, which she does not know.
    let squatter_link = server.verification_link(&email)?;
    let victim = Person::new(&server)?;
    let page = victim.get(&squatter_link).await?;
    assert!(page.contains("different browser"), "{}", page.html);
    let refused = submit_verification_password(&victim, &page, "her own password").await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        attacker.me().await?["email_verified"],
        false,
        "still unverified"
    );

    // She signs up herself: the squatter's account is replaced, its session void, its
    // password dead, its link spent.
    victim.sign_up(&email, PASSWORD).await?;
    assert_eq!(accounts(&server, &email).await?, 1);
    let gone = attacker.http.get(server.url("/v1/me")).send().await?;
    assert_eq!(
        gone.status(),
        StatusCode::UNAUTHORIZED,
        "the squatter's session ended"
    );
    assert_eq!(
        Person::new(&server)?
            .sign_in(&email, "attacker password")
            .await?
            .status,
        StatusCode::UNAUTHORIZED
    );
    let stale = Person::new(&server)?.get(&squatter_link).await?;
    assert_eq!(
        stale.status,
        StatusCode::BAD_REQUEST,
        "the squatter's link is dead"
    );

    // Her own link, in her browser, verifies and signs her in.
    let page = victim.get(&server.verification_link(&email)?).await?;
    assert!(page.url.ends_with("/account"), "{}", page.url);
    let me = victim.me().await?;
    assert_eq!(me["email_verified"], true);
    assert_ne!(
        me["user_id"], squatted["user_id"],
        "a new account, not the squatter's"
    );
    Ok(())
}

async fn submit_verification_password(
    person: &Person,
    page: &Page,
    password: &str,
) -> Result<Page> {
    person
        .post_form(
            "/verify-email",
            &[
                ("csrf", &page.csrf()?),
                ("token", &page.input("token").context("token field")?),
                ("email", &page.input("email").context("email field")?),
                ("next", ""),
                ("password", password),
            ],
        )
        .await
}

#[tokio::test]
async fn a_verification_link_opened_elsewhere_works_with_the_password() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("elsewhere");
    Person::new(&server)?.sign_up(&email, PASSWORD).await?;
    let phone = Person::new(&server)?;
    let page = phone.get(&server.verification_link(&email)?).await?;
    let page = submit_verification_password(&phone, &page, PASSWORD).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.url.ends_with("/account"), "{}", page.url);
    assert_eq!(phone.me().await?["email_verified"], true);
    Ok(())
}

/// The reset link in the newest reset mail to `to`; it leaves in the background.
async fn reset_link(server: &Server, to: &str) -> Result<String> {
    for _ in 0..100 {
        let link = server
            .outbox()?
            .into_iter()
            .rev()
            .find(|m| m.to == to && m.subject == "Reset your password")
            .and_then(|m| {
                m.text
                    .split_whitespace()
                    .find(|w| w.contains("/reset-password?token="))
                    .map(str::to_owned)
            });
        if let Some(link) = link {
            return Ok(link);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("no reset mail to {to}")
}

async fn ask_for_reset(server: &Server, email: &str) -> Result<Page> {
    let person = Person::new(server)?;
    let form = person.get("/forgot-password").await?;
    person
        .post_form(
            "/forgot-password",
            &[("csrf", &form.csrf()?), ("email", email)],
        )
        .await
}

#[tokio::test]
async fn password_reset_is_single_use_and_signs_every_session_out() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("reset");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let (_, refresh) = token_pair(&server, &person).await?;

    // The same answer for an address with no account, which gets no mail.
    let nobody = unique_email("nobody");
    let known = ask_for_reset(&server, &email).await?;
    let unknown = ask_for_reset(&server, &nobody).await?;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.html, unknown.html);
    let link = reset_link(&server, &email).await?;
    assert_eq!(mails_to(&server, &nobody, None)?, 0);

    let stranger = Person::new(&server)?;
    let form = stranger.get(&link).await?;
    assert_eq!(form.status, StatusCode::OK);
    let done = stranger
        .post_form(
            "/reset-password",
            &[
                ("csrf", &form.csrf()?),
                ("token", &form.input("token").context("token")?),
                ("password", "a brand new password"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.contains("Password changed"));
    assert_eq!(
        mails_to(&server, &email, Some("Your password was changed"))?,
        1
    );

    // Every session and refresh family is gone; the old password is dead.
    let session = person.http.get(server.url("/v1/me")).send().await?;
    assert_eq!(session.status(), StatusCode::UNAUTHORIZED);
    let (status, refreshed) = refresh_with(&server, &refresh).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST.as_u16());
    assert_eq!(refreshed["error"], "invalid_grant");
    assert_eq!(
        Person::new(&server)?
            .sign_in(&email, PASSWORD)
            .await?
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Person::new(&server)?
            .sign_in(&email, "a brand new password")
            .await?
            .status,
        StatusCode::OK
    );

    // The link works once.
    let again = stranger.get(&link).await?;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let replay = stranger
        .post_form(
            "/reset-password",
            &[
                ("csrf", &form.csrf()?),
                ("token", &form.input("token").context("token")?),
                ("password", "the attacker's password"),
            ],
        )
        .await?;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        Person::new(&server)?
            .sign_in(&email, "the attacker's password")
            .await?
            .status,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn links_without_their_token_and_a_garbled_feed_request_get_clear_400s() -> Result<()> {
    let server = Server::start(bin()).await?;
    for path in [
        "/verify-email",
        "/reset-password",
        "/reset-password?token=lkp_nope",
    ] {
        let page = Person::new(&server)?.get(path).await?;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(page.contains("not valid"), "{path}: {}", page.html);
    }
    let feed = reqwest::get(server.url("/oauth/revocations?since=yesterday")).await?;
    assert_eq!(feed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(feed.json::<Value>().await?["error"], "invalid_request");
    Ok(())
}
