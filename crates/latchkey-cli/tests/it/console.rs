//! The account console (issue 18), from a person's side: changing the password ends every other
//! session and OAuth login at once, keeps this one, and needs the current password; every
//! browser and login is listed and can be signed out alone; the audit log pages and filters.

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    PASSWORD, bin,
    cli_login::{browser_login, refresh_with, text},
    oauth::token_pair,
};

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
    let cli = CliHome::new(bin(), &server.url)?;
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

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/// `GET path` in `person`'s browser session: the status and the JSON answer.
async fn get_json(person: &Person, path: &str) -> Result<(StatusCode, Value)> {
    let response = person
        .http
        .get(format!("{}{path}", person.base))
        .send()
        .await?;
    Ok((response.status(), response.json().await?))
}

/// `DELETE /v1/sessions/{id}` in `person`'s browser session, from this site (or `origin`).
async fn end(person: &Person, id: &str, origin: Option<&str>) -> Result<(StatusCode, String)> {
    let response = person
        .http
        .delete(format!("{}/v1/sessions/{id}", person.base))
        .header("origin", origin.unwrap_or(&person.base))
        .send()
        .await?;
    Ok((response.status(), response.text().await?))
}

/// One field of each event of an audit page, newest first (as the API gives them).
fn newest_first<'a>(log: &'a Value, field: &str) -> Result<Vec<&'a str>> {
    Ok(log["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e[field].as_str())
        .collect())
}

/// One field of each event of an audit page, in the order they happened.
fn oldest_first<'a>(log: &'a Value, field: &str) -> Result<Vec<&'a str>> {
    let mut values = newest_first(log, field)?;
    values.reverse();
    Ok(values)
}

fn listed<'a>(sessions: &'a Value, list: &str) -> Result<&'a Vec<Value>> {
    sessions[list].as_array().context("a list")
}

#[tokio::test]
async fn browsers_and_logins_are_listed_and_each_signed_out_alone() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("console");
    let here = Person::verified_account(&server, &email, PASSWORD).await?;
    let laptop = Person::with_user_agent(&server, FIREFOX)?;
    laptop.sign_in(&email, PASSWORD).await?;
    let phone = Person::with_user_agent(&server, SAFARI)?;
    phone.sign_in(&email, PASSWORD).await?;
    let news = |server: &Server| -> Result<usize> {
        Ok(server
            .outbox()?
            .iter()
            .filter(|m| m.to == email && m.subject == "New sign-in to your account")
            .count())
    };
    assert_eq!(news(&server)?, 2, "each new browser is mailed to the owner");
    let cli = CliHome::new(bin(), &server.url)?;
    browser_login(&server, &cli, &here).await?;
    let (access, refresh) = token_pair(&server, &here).await?;

    let (status, sessions) = get_json(&laptop, "/v1/sessions").await?;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    let browsers = listed(&sessions, "sessions")?;
    assert_eq!(browsers.len(), 3, "{sessions}");
    let mine: Vec<&Value> = browsers.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(mine.len(), 1, "{sessions}");
    assert_eq!(mine[0]["device"], "Firefox on Linux");
    let phone_id = browsers
        .iter()
        .find(|s| s["device"] == "Safari on iPhone")
        .and_then(|s| s["id"].as_str())
        .context("the phone is listed by name")?
        .to_owned();
    let logins = listed(&sessions, "logins")?;
    assert_eq!(logins.len(), 2, "{sessions}");
    assert!(logins.iter().all(|l| l["method"] == "browser"
        && l["client_id"] == "latchkey-cli"
        && l["scopes"].as_array().is_some_and(|s| !s.is_empty())));
    let cli_login = logins
        .iter()
        .find(|l| l["device_name"].as_str().is_some_and(|d| !d.is_empty()))
        .context("the CLI reported its host name")?;
    let cli_login_id = cli_login["id"].as_str().context("id")?.to_owned();
    let other_login_id = logins
        .iter()
        .find(|l| l["id"] != cli_login_id.as_str())
        .and_then(|l| l["id"].as_str())
        .context("the other login")?
        .to_owned();

    // The CLI sees the same, its own login marked.
    let out = cli.run(&["sessions", "--json"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout)?;
    let own = listed(&seen, "logins")?
        .iter()
        .find(|l| l["current"] == true)
        .context("the CLI's own login is marked")?;
    assert_eq!(own["id"], cli_login_id.as_str());
    let table = text(&cli.run(&["sessions"]).await?.stdout);
    assert!(
        table.contains("browser: Safari on iPhone") && table.contains(&format!("* {cli_login_id}")),
        "{table}"
    );

    // Refused, nothing ended: another account's id, a forged origin, an id that is nobody's.
    let mallory = Person::verified_account(&server, &unique_email("mallory"), PASSWORD).await?;
    let (status, body) = end(&mallory, &phone_id, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("GET /v1/sessions"), "{body}");
    let (status, _) = end(&laptop, &phone_id, Some("https://evil.example")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = end(&laptop, "rf_nobodys", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(phone.get("/account").await?.url.ends_with("/account"));

    // The phone signed out from the CLI; the other login from the laptop.
    let out = cli.run(&["sessions", "--revoke", &phone_id]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(phone.get("/account").await?.url.contains("/signin"));
    let (status, _) = end(&laptop, &other_login_id, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = refresh_with(&server, &refresh).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&access)
        .send()
        .await?;
    assert_eq!(
        me.status(),
        StatusCode::UNAUTHORIZED,
        "its access token ended too"
    );

    // The CLI revokes its own login: it is told, and `token` no longer has one to print.
    let out = cli.run(&["sessions", "--revoke", &cli_login_id]).await?;
    assert!(
        text(&out.stderr).contains("That was this login"),
        "{}",
        text(&out.stderr)
    );
    for args in [&["token", "--check"][..], &["token"]] {
        let token = cli.run(args).await?;
        assert!(!token.status.success(), "{args:?}: {}", text(&token.stdout));
        assert!(
            text(&token.stderr).contains("login"),
            "{}",
            text(&token.stderr)
        );
    }

    // The audit log has it all, in order, with nothing secret in it.
    let (status, log) = get_json(&laptop, "/v1/audit").await?;
    assert_eq!(status, StatusCode::OK, "{log}");
    let kinds: Vec<&str> = oldest_first(&log, "type")?;
    let expected = [
        "sign_in",
        "sign_in",
        "sign_in",
        "login_approved",
        "login_approved",
        "signed_out",
        "login_revoked",
        "login_revoked",
    ];
    assert_eq!(kinds, expected, "{log}");
    let raw = log.to_string();
    for secret in [PASSWORD, refresh.as_str(), access.as_str()] {
        assert!(!raw.contains(secret), "the audit log holds a secret: {raw}");
    }
    Ok(())
}

#[tokio::test]
async fn the_audit_log_pages_filters_and_refuses_what_it_cannot_read() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("audited");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    for name in ["one", "two", "three"] {
        person.new_api_key(name).await?;
    }
    let (_, first) = get_json(&person, "/v1/audit?limit=2").await?;
    let page: Vec<&str> = first["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(page.len(), 2);
    assert!(
        page[0].contains("\"three\"") && page[1].contains("\"two\""),
        "{first}"
    );
    let cursor = first["next_cursor"].as_str().context("a next page")?;
    let (_, second) = get_json(&person, &format!("/v1/audit?limit=2&before={cursor}")).await?;
    assert!(
        second["events"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"one\""))
    );
    let (_, created) = get_json(&person, "/v1/audit?type=api_key_created").await?;
    assert_eq!(
        created["events"].as_array().map(Vec::len),
        Some(3),
        "{created}"
    );
    assert!(created["next_cursor"].is_null());

    for (query, says) in [
        ("type=sign_in,drop_table", "drop_table"),
        ("before=1%20OR%201=1", "next_cursor"),
        ("limit=0", "between 1 and 200"),
        ("limit=lots", "limit"),
    ] {
        let (status, body) = get_json(&person, &format!("/v1/audit?{query}")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(says)),
            "{query}: {body}"
        );
    }
    let (status, _) = get_json(&Person::new(&server)?, "/v1/audit").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_and_its_keys_wait_until_it_is_enabled() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("disabled");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let key = person.new_api_key("waits").await?;
    let (_, refresh) = token_pair(&server, &person).await?;
    let me = |key: String| {
        let url = server.url("/v1/me");
        async move {
            Ok::<_, anyhow::Error>(
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(key)
                    .send()
                    .await?
                    .status(),
            )
        }
    };
    assert_eq!(me(key.clone()).await?, StatusCode::OK);

    let (code, said, stderr) = admin(&server, &["users", "disable", &email]).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(said.contains("is disabled"), "{said}");
    assert!(person.get("/account").await?.url.contains("/signin"));
    let again = Person::new(&server)?;
    let refused = again.sign_in(&email, PASSWORD).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.contains("account is disabled"), "{}", refused.html);
    assert_eq!(me(key.clone()).await?, StatusCode::UNAUTHORIZED);
    let (status, answer) = refresh_with(&server, &refresh).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (_, listed, _) = admin(&server, &["users", "list"]).await?;
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&email) && l.ends_with("disabled")),
        "{listed}"
    );

    let (code, said, stderr) = admin(&server, &["users", "enable", &email]).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(said.contains("is enabled"), "{said}");
    assert_eq!(me(key).await?, StatusCode::OK, "the key works again");
    assert!(
        again
            .sign_in(&email, PASSWORD)
            .await?
            .url
            .ends_with("/account")
    );
    let (code, _, stderr) = admin(&server, &["users", "disable", "nobody@example.com"]).await?;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("there is no account"), "{stderr}");
    let (status, log) = get_json(&again, "/v1/audit?type=account_disabled,account_enabled").await?;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = newest_first(&log, "type")?;
    assert_eq!(kinds, ["account_enabled", "account_disabled"]);
    Ok(())
}

/// The link in the newest mail to `to` that contains `marker`.
fn link_in_mail(server: &Server, to: &str, marker: &str) -> Result<String> {
    let mails = server.outbox()?;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.to == to && m.text.contains(marker))
        .with_context(|| format!("no mail to {to} with {marker}"))?;
    mail.text
        .split_whitespace()
        .find(|w| w.contains(marker))
        .map(str::to_owned)
        .context("no link in the mail")
}

#[tokio::test]
async fn a_new_email_takes_effect_only_through_the_link_sent_to_it() -> Result<()> {
    let server = Server::start(bin()).await?;
    let old = unique_email("moving");
    let new = unique_email("moved");
    let person = Person::verified_account(&server, &old, PASSWORD).await?;
    let taken = unique_email("taken");
    Person::verified_account(&server, &taken, PASSWORD).await?;
    let csrf = person.get("/account").await?.csrf()?;
    let ask = |email: &str, password: &str, csrf: &str| {
        let fields = [("csrf", csrf), ("email", email), ("password", password)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let person = &person;
        async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            person.post_form("/account/email", &fields).await
        }
    };
    // Refused, nothing sent: a wrong password, an address in use, the same one, nonsense, a
    // forged form.
    for (email, password, csrf, status) in [
        (
            new.as_str(),
            "not my password",
            csrf.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            taken.as_str(),
            PASSWORD,
            csrf.as_str(),
            StatusCode::CONFLICT,
        ),
        (
            old.as_str(),
            PASSWORD,
            csrf.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not an address",
            PASSWORD,
            csrf.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (new.as_str(), PASSWORD, "forged", StatusCode::FORBIDDEN),
    ] {
        let page = ask(email, password, csrf).await?;
        assert_eq!(
            page.status, status,
            "{email} {password} {csrf}: {}",
            page.html
        );
    }
    assert!(!server.outbox()?.iter().any(|m| m.to == new));

    let asked = ask(&new, PASSWORD, &csrf).await?;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.html);
    assert!(asked.contains("Check your new inbox"));
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == old && m.subject == "Your email address is about to change"),
        "the old address is told"
    );
    // Until the link is opened, nothing changed.
    assert!(
        Person::new(&server)?
            .sign_in(&old, PASSWORD)
            .await?
            .url
            .ends_with("/account")
    );
    let stranger = Person::new(&server)?;
    let forged = stranger
        .get("/account/email/confirm?token=lke_guessed")
        .await?;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);

    let link = link_in_mail(&server, &new, "/account/email/confirm?token=")?;
    let confirmed = stranger.get(&link).await?;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.html);
    assert!(
        confirmed.contains(&format!("is now {new}")),
        "{}",
        confirmed.html
    );
    assert_eq!(
        stranger.get(&link).await?.status,
        StatusCode::BAD_REQUEST,
        "used once"
    );
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == old && m.subject == "Your email address was changed")
    );
    assert!(
        Person::new(&server)?
            .sign_in(&old, PASSWORD)
            .await?
            .url
            .contains("/signin")
    );
    assert!(
        Person::new(&server)?
            .sign_in(&new, PASSWORD)
            .await?
            .url
            .ends_with("/account")
    );
    let (_, log) = get_json(&person, "/v1/audit?type=email_changed").await?;
    assert!(
        log["events"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&old) && d.contains(&new)),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn deleting_the_account_ends_every_credential_and_frees_the_address() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("leaving");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let key = person.new_api_key("goes").await?;
    let (access, refresh) = token_pair(&server, &person).await?;
    let slug = unique_email("owned")
        .split('@')
        .next()
        .context("an email")?
        .to_owned();
    person.create_org(&slug).await?;

    // The data first: everything about the account, no secret.
    let export = person
        .http
        .get(server.url("/v1/account/export"))
        .send()
        .await?;
    assert_eq!(export.status(), StatusCode::OK);
    assert!(
        export.headers()["content-disposition"]
            .to_str()?
            .starts_with("attachment")
    );
    let data: Value = export.json().await?;
    assert_eq!(data["email"], email.as_str());
    assert_eq!(data["api_keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(data["logins"].as_array().map(Vec::len), Some(1));
    assert!(data["orgs"].as_array().is_some_and(|o| o.len() == 2));
    assert!(
        data["audit_events"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    let raw = data.to_string();
    for secret in [key.as_str(), refresh.as_str(), access.as_str(), PASSWORD] {
        assert!(!raw.contains(secret), "the export holds a secret");
    }

    let csrf = person.get("/account").await?.csrf()?;
    let delete = |confirm: String, password: &'static str, csrf: String| {
        let person = &person;
        async move {
            person
                .post_form(
                    "/account/delete",
                    &[
                        ("csrf", &csrf),
                        ("confirm", &confirm),
                        ("password", password),
                    ],
                )
                .await
        }
    };
    // Refused, nothing deleted: the only owner of an org, a wrong confirmation, a wrong
    // password, a forged form.
    let page = delete(email.to_uppercase(), PASSWORD, csrf.clone()).await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(
        page.contains(&slug),
        "names the org to hand over: {}",
        page.html
    );
    let gone = person
        .http
        .delete(server.url(&format!("/v1/orgs/{slug}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    for (confirm, password, csrf, status) in [
        (
            "someone@else.example",
            PASSWORD,
            csrf.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (
            email.as_str(),
            "not my password",
            csrf.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (email.as_str(), PASSWORD, "forged", StatusCode::FORBIDDEN),
    ] {
        let page = delete(confirm.to_owned(), password, csrf.to_owned()).await?;
        assert_eq!(page.status, status, "{confirm} {password}: {}", page.html);
        assert!(person.get("/account").await?.url.ends_with("/account"));
    }

    let page = delete(email.clone(), PASSWORD, csrf.clone()).await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.contains("Account deleted"));
    assert!(person.get("/account").await?.url.contains("/signin"));
    let http = reqwest::Client::new();
    for bearer in [&key, &access] {
        let me = http
            .get(server.url("/v1/me"))
            .bearer_auth(bearer)
            .send()
            .await?;
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, answer) = refresh_with(&server, &refresh).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == email && m.subject == "Your account was deleted")
    );
    // The address is free: signing up with it makes a new account.
    let again = Person::verified_account(&server, &email, PASSWORD).await?;
    assert_eq!(again.me().await?["email"], email.as_str());
    Ok(())
}

#[tokio::test]
async fn the_audit_log_records_each_change_in_order_with_nothing_secret() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("recorded");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let key = person.create_api_key("recorded").await?;
    let key_id = key["id"].as_str().context("key id")?.to_owned();
    let secret_key = key["api_key"].as_str().context("the key")?.to_owned();
    let revoked = person
        .http
        .delete(server.url(&format!("/v1/api-keys/{key_id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let csrf = person.get("/account").await?.csrf()?;
    let changed = person
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
    let (_, recovery) = crate::second_factor::enable_totp(&person).await?;
    let new_email = unique_email("recorded-new");
    let asked = person
        .post_form(
            "/account/email",
            &[
                ("csrf", &csrf),
                ("email", &new_email),
                ("password", NEW_PASSWORD),
            ],
        )
        .await?;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.html);
    let link = link_in_mail(&server, &new_email, "/account/email/confirm?token=")?;
    assert_eq!(
        Person::new(&server)?.get(&link).await?.status,
        StatusCode::OK
    );
    // A refresh token presented twice: the login ends, and its owner is told.
    let (access, refresh) = token_pair(&server, &person).await?;
    assert_eq!(refresh_with(&server, &refresh).await?.0, 200);
    assert_eq!(refresh_with(&server, &refresh).await?.0, 400);
    assert!(
        server
            .outbox()?
            .iter()
            .any(|m| m.to == new_email && m.subject == "A login of yours was signed out"),
        "the reuse is mailed"
    );

    let (status, log) = get_json(&person, "/v1/audit").await?;
    assert_eq!(status, StatusCode::OK, "{log}");
    let kinds: Vec<&str> = oldest_first(&log, "type")?;
    assert_eq!(
        kinds,
        [
            "sign_in",
            "api_key_created",
            "api_key_revoked",
            "password_changed",
            "second_factor_enabled",
            "email_changed",
            "login_approved",
            "refresh_token_reused",
        ],
        "{log}"
    );
    let raw = log.to_string();
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        &secret_key,
        &access,
        &refresh,
        &link,
        &recovery[0],
    ] {
        assert!(!raw.contains(secret), "the audit log holds a secret");
    }

    // An operator's subscription change is in the org's log.
    let org = person.me().await?["org"]["slug"]
        .as_str()
        .context("slug")?
        .to_owned();
    let (code, _, stderr) = admin(
        &server,
        &[
            "subscriptions",
            "set",
            "--org",
            &org,
            "--tier",
            "free",
            "--status",
            "active",
        ],
    )
    .await?;
    assert_eq!(code, Some(0), "{stderr}");
    let (_, org_log) = get_json(
        &person,
        &format!("/v1/audit?org={org}&type=subscription_changed"),
    )
    .await?;
    assert!(
        org_log["events"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("active free") && d.contains("operator")),
        "{org_log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cli_given_an_api_key_is_a_login_listed_and_revoked_like_the_others() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("token-flow-login");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let made_on_purpose = person.new_api_key("not a login").await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    person.approve(&login.url).await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");

    let out = cli.run(&["sessions", "--json"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout)?;
    let logins = listed(&seen, "logins")?;
    assert_eq!(logins.len(), 1, "a key made on purpose is no login: {seen}");
    let own = &logins[0];
    assert_eq!(own["method"], "token_flow");
    assert_eq!(own["current"], true, "{seen}");
    assert!(
        own["client_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("latchkey CLI on ") && !n.ends_with("on ")),
        "the CLI names the machine it logged in on: {seen}"
    );
    let id = own["id"].as_str().context("id")?.to_owned();
    assert!(id.starts_with("key_"), "{id}");

    let out = cli.run(&["sessions", "--revoke", &id]).await?;
    assert!(
        text(&out.stderr).contains("That was this login"),
        "{}",
        text(&out.stderr)
    );
    let token = cli.run(&["token", "--check"]).await?;
    assert!(!token.status.success(), "the login's key is revoked");
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&made_on_purpose)
        .send()
        .await?;
    assert_eq!(me.status(), StatusCode::OK, "other keys live on");
    let (_, log) = get_json(&person, "/v1/audit?type=login_approved,login_revoked").await?;
    let details: Vec<&str> = newest_first(&log, "detail")?;
    assert!(
        details
            .first()
            .is_some_and(|d| d.contains("token_flow") && d.contains(&id)),
        "{log}"
    );
    Ok(())
}
