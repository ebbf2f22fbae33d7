//! Two-factor authentication from a person's side: an authenticator app is set up with a code
//! computed here, then asked for at every sign-in; each code and each recovery code works
//! once; wrong codes are throttled; an org may require its members to have a second factor.

use anyhow::{Context, Result};
use latchkey_testkit::{Page, Person, Server, unique_email};
use reqwest::StatusCode;
use totp_rs::{Builder, Secret, Totp};

use crate::{PASSWORD, bin};

/// The app a person sets up: the secret read off the setup page, as their phone would.
pub(crate) struct App(Totp);

impl App {
    /// The code the app shows `steps_ahead` steps of 30 s from now.
    pub(crate) fn code(&self, steps_ahead: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.0.generate(now + 30 * steps_ahead).to_string()
    }
}

/// Sets up an authenticator app for `person` from the security page: the app, and the
/// recovery codes shown once.
pub(crate) async fn enable_totp(person: &Person) -> Result<(App, Vec<String>)> {
    let csrf = person.get("/account/security").await?.csrf()?;
    let setup = person
        .post_form("/account/second-factor/setup", &[("csrf", &csrf)])
        .await?;
    anyhow::ensure!(setup.status == StatusCode::OK, "{}", setup.html);
    anyhow::ensure!(setup.contains("<svg"), "a QR code: {}", setup.html);
    let secret = between(&setup.html, "id=\"secret\">", "<").context("the secret as text")?;
    let secret = Secret::try_from_base32(&secret).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let app = App(Builder::new().with_secret(secret).build_noncompliant());
    let done = person
        .post_form(
            "/account/second-factor/confirm",
            &[("csrf", &csrf), ("code", &app.code(0))],
        )
        .await?;
    anyhow::ensure!(done.status == StatusCode::OK, "{}", done.html);
    let codes: Vec<String> = done
        .html
        .split("<code class=\"recovery-code\">")
        .skip(1)
        .filter_map(|rest| rest.split('<').next().map(str::to_owned))
        .collect();
    Ok((app, codes))
}

fn between(html: &str, start: &str, end: &str) -> Option<String> {
    let rest = html.split(start).nth(1)?;
    Some(rest.split(end).next()?.to_owned())
}

/// Signs in with the password: the page the browser lands on.
async fn password_step(server: &Server, email: &str) -> Result<(Person, Page)> {
    let person = Person::new(server)?;
    let page = person.sign_in(email, PASSWORD).await?;
    Ok((person, page))
}

async fn give_code(person: &Person, code: &str) -> Result<Page> {
    let csrf = person.get("/signin/second-factor").await?.csrf()?;
    person
        .post_form("/signin/second-factor", &[("csrf", &csrf), ("code", code)])
        .await
}

#[tokio::test]
async fn a_second_factor_is_asked_at_sign_in_and_each_code_works_once() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("two-factor");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;

    // A wrong first code leaves it off.
    let csrf = person.get("/account/security").await?.csrf()?;
    person
        .post_form("/account/second-factor/setup", &[("csrf", &csrf)])
        .await?;
    let wrong = person
        .post_form(
            "/account/second-factor/confirm",
            &[("csrf", &csrf), ("code", "000000")],
        )
        .await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.html);
    assert!(
        person
            .get("/account/security")
            .await?
            .contains("id=\"second-factor-off\"")
    );

    let (app, codes) = enable_totp(&person).await?;
    assert_eq!(codes.len(), 10);
    assert!(
        person
            .get("/account/security")
            .await?
            .contains("10 recovery codes left")
    );
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == email && m.subject == "Two-factor authentication is on")
    );

    // The password alone no longer signs in: the code is asked, and no session exists yet.
    let (laptop, page) = password_step(&server, &email).await?;
    assert!(page.url.ends_with("/signin/second-factor"), "{}", page.url);
    assert!(laptop.get("/account").await?.url.contains("/signin"));
    let refused = give_code(&laptop, "123456").await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.contains("not right"), "{}", refused.html);
    // The setup's code was spent; the app's next one signs in, once.
    let next = app.code(1);
    let signed_in = give_code(&laptop, &next).await?;
    assert!(signed_in.url.ends_with("/account"), "{}", signed_in.url);
    let (phone, _) = password_step(&server, &email).await?;
    let replayed = give_code(&phone, &next).await?;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "a code works once"
    );

    // A recovery code, once.
    let recovered = give_code(&phone, &codes[0].to_uppercase()).await?;
    assert!(recovered.url.ends_with("/account"), "{}", recovered.url);
    let (tablet, _) = password_step(&server, &email).await?;
    let again = give_code(&tablet, &codes[0]).await?;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );
    assert!(
        laptop
            .get("/account/security")
            .await?
            .contains("9 recovery codes left")
    );

    // Wrong codes are throttled, and then even the right one waits.
    let mut throttled = None;
    for guess in 0..8 {
        let page = give_code(&tablet, &format!("{:06}", 100_000 + guess)).await?;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(page);
            break;
        }
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = throttled.context("wrong codes are throttled")?;
    assert!(throttled.contains("many codes tried"), "{}", throttled.html);
    let waits = give_code(&tablet, &codes[1]).await?;
    assert_eq!(waits.status, StatusCode::TOO_MANY_REQUESTS);

    // Without the waiting sign-in's cookie there is nothing to finish.
    let stranger = Person::new(&server)?;
    let csrf = stranger.get("/signin").await?.csrf()?;
    let lost = stranger
        .post_form(
            "/signin/second-factor",
            &[("csrf", &csrf), ("code", &app.code(0))],
        )
        .await?;
    assert_eq!(lost.status, StatusCode::BAD_REQUEST);

    // The log has it, and nothing secret.
    let log = laptop
        .get("/v1/audit?type=second_factor_enabled,recovery_code_used")
        .await?;
    assert!(log.contains("second_factor_enabled") && log.contains("recovery_code_used"));
    for secret in codes.iter().chain([&next]) {
        assert!(!log.contains(secret.as_str()), "the log holds a code");
    }

    // Turning it off takes the password.
    let csrf = laptop.get("/account/security").await?.csrf()?;
    let refused = laptop
        .post_form(
            "/account/second-factor/disable",
            &[("csrf", &csrf), ("password", "not my password")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let off = laptop
        .post_form(
            "/account/second-factor/disable",
            &[("csrf", &csrf), ("password", PASSWORD)],
        )
        .await?;
    assert!(off.url.ends_with("/account/security"), "{}", off.html);
    let (_, page) = password_step(&server, &email).await?;
    assert!(page.url.ends_with("/account"), "the password alone again");
    Ok(())
}

/// `POST path` with a JSON body from `person`'s browser on this site: status and answer.
async fn post_json(
    person: &Person,
    path: &str,
    body: serde_json::Value,
) -> Result<(StatusCode, serde_json::Value)> {
    let response = person
        .http
        .post(format!("{}{path}", person.base))
        .header("origin", &person.base)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or_default()))
}

#[tokio::test]
async fn passkey_ceremonies_answer_once_and_refuse_forgeries() -> Result<()> {
    let server = Server::start_on_localhost(bin(), &[]).await?;
    let stranger = Person::new(&server)?;
    let page = stranger.get("/signin").await?;
    assert!(
        page.contains("id=\"signin-passkey\""),
        "offered on a domain name"
    );
    let csrf = page.csrf()?;

    let (status, _) = post_json(
        &stranger,
        "/signin/passkey/start",
        serde_json::json!({"csrf": "forged"}),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged form token");
    let (status, _) = post_json(
        &stranger,
        "/account/passkeys/start",
        serde_json::json!({"csrf": csrf}),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "adding one needs a session"
    );

    let (status, started) = post_json(
        &stranger,
        "/signin/passkey/start",
        serde_json::json!({"csrf": csrf}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert!(
        started["options"]["publicKey"]["challenge"].is_string(),
        "{started}"
    );
    let ceremony = started["ceremony"].as_str().context("ceremony")?.to_owned();
    let forged = serde_json::json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA",
                     "userHandle": "AAAA"}
    });
    let finish = |ceremony: &str| serde_json::json!({"csrf": csrf, "ceremony": ceremony, "credential": forged});
    let (status, refused) =
        post_json(&stranger, "/signin/passkey/finish", finish(&ceremony)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let (status, again) = post_json(&stranger, "/signin/passkey/finish", finish(&ceremony)).await?;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a ceremony answers once: {again}"
    );
    let (status, unknown) =
        post_json(&stranger, "/signin/passkey/finish", finish("lkwc_made-up")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{unknown}");
    assert!(
        stranger.get("/account").await?.url.contains("/signin"),
        "nobody signed in"
    );

    // Reached by an IP address, WebAuthn cannot work: nothing is offered, and asking says why.
    let by_ip = Server::start(bin()).await?;
    let visitor = Person::new(&by_ip)?;
    let page = visitor.get("/signin").await?;
    assert!(!page.contains("signin-passkey"));
    let (status, said) = post_json(
        &visitor,
        "/signin/passkey/start",
        serde_json::json!({"csrf": page.csrf()?}),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        said["message"]
            .as_str()
            .is_some_and(|m| m.contains("domain name")),
        "{said}"
    );
    Ok(())
}
