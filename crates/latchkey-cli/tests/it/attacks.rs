//! Each test tries one attack against the real server or the CLI's loopback receiver, and
//! checks both the refusal and that nothing stored changed.

use anyhow::Result;
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{PASSWORD, bin};

async fn create_flow(server: &Server) -> Result<Value> {
    Ok(reqwest::Client::new()
        .post(server.url("/v1/token-flow/create"))
        .json(&json!({"utm_source": "attack-test"}))
        .send()
        .await?
        .json()
        .await?)
}

async fn wait(
    server: &Server,
    id: &Value,
    secret: &Value,
    timeout: f64,
) -> Result<(StatusCode, Value)> {
    let response = reqwest::Client::new()
        .post(server.url("/v1/token-flow/wait"))
        .json(&json!({"token_flow_id": id, "wait_secret": secret, "timeout": timeout}))
        .send()
        .await?;
    Ok((response.status(), response.json().await?))
}

#[tokio::test]
async fn wrong_wait_secret_looks_exactly_like_an_unknown_flow() -> Result<()> {
    let server = Server::start(bin()).await?;
    let flow = create_flow(&server).await?;
    let person = Person::verified_account(&server, &unique_email("probe"), PASSWORD).await?;
    person
        .approve(flow["web_url"].as_str().unwrap_or_default())
        .await?;

    let wrong = wait(&server, &flow["token_flow_id"], &json!("lkw_guessed"), 0.0).await?;
    let unknown = wait(
        &server,
        &json!("tf_doesnotexist00000000"),
        &json!("lkw_guessed"),
        0.0,
    )
    .await?;
    assert_eq!(wrong.0, StatusCode::NOT_FOUND);
    assert_eq!(
        wrong, unknown,
        "same status and body: flow ids cannot be probed"
    );
    assert_eq!(
        server
            .metric("latchkey_token_flows_delivered_total")
            .await?,
        0
    );

    // The rightful CLI still gets its key.
    let (status, body) = wait(&server, &flow["token_flow_id"], &flow["wait_secret"], 0.0).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(body["api_key"].as_str().is_some());
    Ok(())
}

#[tokio::test]
async fn an_unverified_account_cannot_approve() -> Result<()> {
    let server = Server::start(bin()).await?;
    let flow = create_flow(&server).await?;
    let url = flow["web_url"].as_str().unwrap_or_default();
    let person = Person::new(&server)?;
    person
        .sign_up(&unique_email("unverified"), PASSWORD)
        .await?;

    let page = person.get(url).await?;
    assert!(page.contains("Confirm your email address before approving"));
    assert!(
        !page.contains("id=\"approve\""),
        "no Approve button is offered"
    );
    // Posting the form anyway is refused.
    let refused = person
        .post_form(
            "/login/cli/approve",
            &[
                ("csrf", &page.csrf()?),
                (
                    "token_flow_id",
                    flow["token_flow_id"].as_str().unwrap_or_default(),
                ),
            ],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (status, body) = wait(&server, &flow["token_flow_id"], &flow["wait_secret"], 0.0).await?;
    assert_eq!(
        (status, body["timeout"].clone()),
        (StatusCode::OK, json!(true)),
        "still pending"
    );
    Ok(())
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused() -> Result<()> {
    let server = Server::start(bin()).await?;
    let flow = create_flow(&server).await?;
    let person = Person::verified_account(&server, &unique_email("csrf"), PASSWORD).await?;
    let flow_id = flow["token_flow_id"].as_str().unwrap_or_default();
    for csrf in ["", "forged-token-value-forged-token-value-forg"] {
        let refused = person
            .post_form(
                "/login/cli/approve",
                &[("csrf", csrf), ("token_flow_id", flow_id)],
            )
            .await?;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    let refused = person
        .post_form("/login/cli/approve", &[("token_flow_id", flow_id)])
        .await?;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "a missing field is a bad request"
    );
    let (_, body) = wait(&server, &flow["token_flow_id"], &flow["wait_secret"], 0.0).await?;
    assert_eq!(body["timeout"], true, "the flow is still pending");
    assert_eq!(
        server.metric("latchkey_token_flows_approved_total").await?,
        0
    );

    // A cookie-authenticated API call from another origin is refused too.
    let cross = person
        .http
        .post(server.url("/v1/api-keys"))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "stolen"}))
        .send()
        .await?;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(person.api_key_count().await?, 0, "no key was created");
    Ok(())
}

#[tokio::test]
async fn the_cli_loopback_receiver_refuses_other_origins_and_foreign_hosts() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    // The flow records the loopback port; the approval page embeds it in its script.
    let person = Person::verified_account(&server, &unique_email("loopback"), PASSWORD).await?;
    let page = person.get(&login.url).await?;
    let marker = "fetch(\"http://127.0.0.1:";
    let start = page
        .html
        .find(marker)
        .map(|i| i + marker.len())
        .unwrap_or(0);
    let port: u16 = page.html[start..]
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()?;
    let receiver = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();

    let ours = http
        .get(&receiver)
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(ours.status(), StatusCode::OK);
    assert_eq!(
        ours.headers()["access-control-allow-origin"],
        server.url.as_str()
    );
    let flow_id = ours.text().await?;
    assert!(login.url.contains(&flow_id));

    let evil = http
        .get(&receiver)
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let preflight = http
        .request(reqwest::Method::OPTIONS, &receiver)
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert_eq!(preflight.status(), StatusCode::FORBIDDEN);

    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    let rebound = http
        .get(&receiver)
        .header("host", format!("evil.example:{port}"))
        .send()
        .await?;
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    drop(login);
    Ok(())
}

#[tokio::test]
async fn keys_with_a_bad_checksum_are_refused_without_a_database_lookup() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("checksum"), PASSWORD).await?;
    let created: Value = person.create_api_key("probe").await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    let http = reqwest::Client::new();
    let lookups = server
        .metric("latchkey_api_key_store_lookups_total")
        .await?;

    let mut typo = key.clone().into_bytes();
    typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo)?;
    for bad in [typo.as_str(), "lk_garbage", "sk_live_notoursatall", ""] {
        let r = http
            .get(server.url("/v1/me"))
            .header("x-api-key", bad)
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        let body: Value = r.json().await?;
        assert!(body["error"].is_string() && body["message"].is_string());
    }
    assert_eq!(
        server
            .metric("latchkey_api_key_store_lookups_total")
            .await?,
        lookups,
        "no refused key reached the database"
    );
    // A well-formed key that does not exist does reach it (and is then negatively cached).
    let r = http
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("revoke"), PASSWORD).await?;
    let created: Value = person.create_api_key("soon revoked").await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(server.url("/v1/me"))
            .bearer_auth(&key)
            .send()
            .await?
            .status(),
        200
    );
    let id = created["id"].as_str().unwrap_or_default();
    let r = http
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the cached entry was dropped on revoke"
    );
    // Revoking someone else's key, or twice, is a 404 that changes nothing.
    let other = Person::verified_account(&server, &unique_email("other"), PASSWORD).await?;
    let r = other
        .http
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() -> Result<()> {
    let server = Server::start(bin()).await?;
    let http = reqwest::Client::new();
    let create = server.url("/v1/token-flow/create");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            http.post(&create)
                .json(&json!({"next_url": "https://evil.example/"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create)
                .json(&json!({"next_url": "//evil.example/"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create).json(&json!({"localhost_port": 70000})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create).json(&json!({"localhost_port": 0})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create)
                .json(&json!({"utm_source": "x".repeat(65)})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create).json(&json!({"unknown_field": 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.post(&create).body("{not json"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (request, expected) in cases {
        let r = request.send().await?;
        assert_eq!(r.status(), expected);
        let body: Value = r.json().await?;
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        server.metric("latchkey_token_flows_created_total").await?,
        0,
        "no flow was created"
    );

    let flow = create_flow(&server).await?;
    for timeout in [-1.0, 61.0] {
        let (status, body) = wait(
            &server,
            &flow["token_flow_id"],
            &flow["wait_secret"],
            timeout,
        )
        .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "timeout {timeout}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Timeout must be"),
            "{body}"
        );
    }
    let r = http
        .post(server.url("/v1/token-flow/wait"))
        .json(&json!({"token_flow_id": "x"}))
        .send()
        .await?;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a missing field is a bad request"
    );
    let r = http
        .post(server.url("/v1/api-keys"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await?;
    assert_eq!(body["error"], "unauthorized");
    Ok(())
}

#[tokio::test]
async fn password_guessing_is_throttled_per_account() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("guess");
    Person::verified_account(&server, &email, PASSWORD).await?;
    let attacker = Person::new(&server)?;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let page = attacker
            .sign_in(&email, &format!("wrong password {i}"))
            .await?;
        statuses.push(page.status);
    }
    // Signing up signed in once; the next nine guesses are answered, then the account is locked.
    let first_refusal = statuses
        .iter()
        .position(|s| *s == StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first_refusal, Some(9), "{statuses:?}");
    assert!(
        statuses[..9].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[9..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Even the right password waits now: the limit is per account, not per guess outcome.
    let page = attacker.sign_in(&email, PASSWORD).await?;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("Too many sign-in attempts"));
    Ok(())
}

#[tokio::test]
async fn session_cookies_are_http_only_and_lax() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("cookie");
    Person::verified_account(&server, &email, PASSWORD).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = http.get(server.url("/signin")).send().await?;
    let csrf_cookie = form.headers()["set-cookie"].to_str()?.to_owned();
    let csrf = csrf_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_start_matches("lk_csrf=")
        .to_owned();
    let r = http
        .post(server.url("/signin"))
        .header("cookie", format!("lk_csrf={csrf}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("password", PASSWORD),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/account",
        "an external next is not followed"
    );
    let cookie = r.headers()["set-cookie"].to_str()?;
    assert!(cookie.starts_with("lk_session=lks_"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback cannot use Secure"
    );
    Ok(())
}

#[tokio::test]
async fn oversized_and_trickled_request_heads_are_cut_off() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(bin()).await?;
    let address = server.url.trim_start_matches("http://").to_owned();

    let mut huge = tokio::net::TcpStream::connect(&address).await?;
    huge.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: latchkey\r\nX-Padding: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    huge.read_to_end(&mut answer).await?;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A head trickled a byte every half second is cut off when the 10 s header read timeout
    // passes, not held for as long as the client keeps trickling.
    let mut slow = tokio::net::TcpStream::connect(&address).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\nX-Slow: ")
        .await?;
    let started = std::time::Instant::now();
    let mut cut = false;
    while started.elapsed() < std::time::Duration::from_secs(20) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if slow.write_all(b"a").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(read) =
            tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // EOF, a reset, or hyper's 408 before closing.
            if let Ok(n) = read {
                assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"));
            }
            cut = true;
            break;
        }
    }
    assert!(cut, "the slow client was never cut off");
    let after = started.elapsed().as_secs_f64();
    assert!((9.0..15.0).contains(&after), "cut off after {after:.1} s");

    // The server still answers everyone else.
    assert_eq!(
        reqwest::get(server.url("/healthz")).await?.status(),
        StatusCode::OK
    );
    Ok(())
}
