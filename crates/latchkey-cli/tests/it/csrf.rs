//! Cross-site request forgery against every signed-in form: a form token planted with a
//! cookie of the attacker's choosing, the attacker's own session's token, and forms posted
//! from another site. Each is refused with 403 and changes nothing; the victim's own form
//! (the control) goes through.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Person, Server, unique_email};
use reqwest::{StatusCode, cookie::CookieStore};
use serde_json::{Value, json};

use crate::{PASSWORD, bin};

/// A person whose cookies the test can read.
fn person_with_jar(server: &Server) -> Result<(Person, Arc<reqwest::cookie::Jar>)> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let person = Person {
        http: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()?,
        base: server.url.clone(),
    };
    Ok((person, jar))
}

/// A signed-in, verified person whose cookies the test can read.
async fn victim(server: &Server) -> Result<(Person, Arc<reqwest::cookie::Jar>)> {
    let (person, jar) = person_with_jar(server)?;
    let email = unique_email("csrf-victim");
    person.sign_up(&email, PASSWORD).await?;
    person.open_verification_link(server, &email).await?;
    Ok((person, jar))
}

fn cookie_header(jar: &reqwest::cookie::Jar, server: &Server) -> Result<String> {
    let url = server.url.parse()?;
    Ok(jar
        .cookies(&url)
        .context("the victim has cookies")?
        .to_str()?
        .to_owned())
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value(header: &str, name: &str) -> Option<String> {
    header
        .split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(str::to_owned)
}

/// Every signed-in form, with the fields it needs besides `csrf`.
struct Targets {
    flow: Value,
    device: Value,
    authorize_request: String,
}

impl Targets {
    async fn new(server: &Server) -> Result<Self> {
        let http = reqwest::Client::new();
        let flow: Value = http
            .post(server.url("/v1/token-flow/create"))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        let device: Value = http
            .post(server.url("/oauth/device_authorization"))
            .form(&[("client_id", "latchkey-cli"), ("scope", "openid")])
            .send()
            .await?
            .json()
            .await?;
        let authorize_request = format!(
            "response_type=code&client_id=latchkey-cli&redirect_uri={}&state=s&scope=openid\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            "http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
        );
        Ok(Self {
            flow,
            device,
            authorize_request,
        })
    }

    fn forms(&self) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
        vec![
            ("/account/keys", vec![("name", "planted".to_owned())]),
            (
                "/login/cli/approve",
                vec![(
                    "token_flow_id",
                    self.flow["token_flow_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )],
            ),
            (
                "/device/decide",
                vec![
                    (
                        "user_code",
                        self.device["user_code"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    ("decision", "approve".to_owned()),
                ],
            ),
            (
                "/oauth/authorize",
                vec![
                    ("request", self.authorize_request.clone()),
                    ("decision", "approve".to_owned()),
                ],
            ),
            ("/signout", vec![]),
        ]
    }

    /// Nothing the forms would do has happened: no key, the flow and the device code still
    /// pending, the session alive.
    async fn assert_untouched(&self, server: &Server, victim: &Person, keys: usize) -> Result<()> {
        assert_eq!(victim.api_key_count().await?, keys, "no key was created");
        let wait: Value = reqwest::Client::new()
            .post(server.url("/v1/token-flow/wait"))
            .json(&json!({"token_flow_id": self.flow["token_flow_id"], "wait_secret": self.flow["wait_secret"], "timeout": 0}))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(wait["timeout"], true, "the flow is still pending: {wait}");
        let poll: Value = reqwest::Client::new()
            .post(server.url("/oauth/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                (
                    "device_code",
                    self.device["device_code"].as_str().unwrap_or_default(),
                ),
                ("client_id", "latchkey-cli"),
            ])
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(poll["error"], "authorization_pending", "{poll}");
        victim.me().await.context("the victim is still signed in")?;
        Ok(())
    }
}

/// Posts `path` with exactly these cookies and headers, as a forged request would arrive.
async fn forged_post(
    server: &Server,
    path: &str,
    cookies: &str,
    csrf: &str,
    fields: &[(&'static str, String)],
    headers: &[(&str, &str)],
) -> Result<reqwest::Response> {
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf)];
    form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(server.url(path))
        .header("cookie", cookies)
        .form(&form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(request.send().await?)
}

#[tokio::test]
async fn csrf_with_a_planted_cookie_or_the_attackers_own_token_is_refused_everywhere() -> Result<()>
{
    let server = Server::start(bin()).await?;
    let (victim, jar) = victim(&server).await?;
    let keys = victim.api_key_count().await?;
    let session = cookie_value(&cookie_header(&jar, &server)?, "lk_session").context("session")?;
    let targets = Targets::new(&server).await?;

    // The attacker fetches a form anonymously: a pre-session cookie and its token.
    let anonymous = Person::new(&server)?;
    let planted_token = anonymous.get("/signin").await?.csrf()?;
    let (anonymous, anon_jar) = person_with_jar(&server)?;
    let planted_token_2 = anonymous.get("/signin").await?.csrf()?;
    let planted_cookie =
        cookie_value(&cookie_header(&anon_jar, &server)?, "lk_csrf").context("csrf cookie")?;
    ensure!(
        planted_token != planted_token_2,
        "every pre-session cookie has its own token"
    );

    // And signs in to an account of their own: that session's form token.
    let attacker =
        Person::verified_account(&server, &unique_email("csrf-attacker"), PASSWORD).await?;
    let attackers_token = attacker.get("/account").await?.csrf()?;

    let forgeries = [
        (
            format!("lk_session={session}; lk_csrf={planted_cookie}"),
            &planted_token_2,
            "a planted lk_csrf cookie",
        ),
        (
            format!("lk_session={session}"),
            &attackers_token,
            "the attacker's session's token",
        ),
    ];
    for (path, fields) in targets.forms() {
        for (cookies, token, what) in &forgeries {
            let origin = [("origin", server.url.as_str())];
            let answer = forged_post(&server, path, cookies, token, &fields, &origin).await?;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path} with {what}");
        }
    }
    targets.assert_untouched(&server, &victim, keys).await?;
    Ok(())
}

#[tokio::test]
async fn forms_posted_from_another_site_are_refused_even_with_the_right_token() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (victim, jar) = victim(&server).await?;
    let keys = victim.api_key_count().await?;
    let cookies = cookie_header(&jar, &server)?;
    let token = victim.get("/account").await?.csrf()?;
    let targets = Targets::new(&server).await?;

    for (path, fields) in targets.forms() {
        for headers in [
            [
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            [("origin", "null"), ("sec-fetch-site", "cross-site")],
            [
                ("origin", server.url.as_str()),
                ("sec-fetch-site", "same-site"),
            ],
        ] {
            let answer = forged_post(&server, path, &cookies, &token, &fields, &headers).await?;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path} {headers:?}");
        }
    }
    targets.assert_untouched(&server, &victim, keys).await?;

    // The control: the same form from the site itself goes through.
    let answer = forged_post(
        &server,
        "/account/keys",
        &cookies,
        &token,
        &[("name", "mine".to_owned())],
        &[
            ("origin", server.url.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await?;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(victim.api_key_count().await?, keys + 1);
    Ok(())
}
