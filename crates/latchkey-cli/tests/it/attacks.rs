//! Each test tries one attack against the real server or the CLI's loopback receiver, and
//! checks both the refusal and that nothing stored changed.

use anyhow::{Context, Result};
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
    let email = unique_email("unverified");
    person.sign_up(&email, PASSWORD).await?;
    person.sign_in(&email, PASSWORD).await?;

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
    // The control: a well-formed key with a valid checksum that does not exist does reach it.
    let unknown = latchkey_proto::ApiKey::generate(
        &latchkey_proto::KeyPrefix::default(),
        &mut rand::rngs::OsRng,
    );
    let r = http
        .get(server.url("/v1/me"))
        .header("x-api-key", unknown.expose_secret())
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        server
            .metric("latchkey_api_key_store_lookups_total")
            .await?,
        lookups + 1,
        "a well-formed key is looked up"
    );
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
    // Revoking it twice is a 404.
    let r = person
        .http
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn revoking_another_users_live_key_is_refused_and_the_key_keeps_working() -> Result<()> {
    let server = Server::start(bin()).await?;
    let owner = Person::verified_account(&server, &unique_email("owner"), PASSWORD).await?;
    let created: Value = owner.create_api_key("mine").await?;
    let key = created["api_key"].as_str().context("key")?.to_owned();
    let id = created["id"].as_str().context("id")?.to_owned();
    let attacker = Person::verified_account(&server, &unique_email("attacker"), PASSWORD).await?;
    let attackers_key = attacker.new_api_key("attack").await?;

    let by_session = attacker
        .http
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert_eq!(by_session.status(), StatusCode::NOT_FOUND);
    let by_key = reqwest::Client::new()
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&attackers_key)
        .send()
        .await?;
    assert_eq!(by_key.status(), StatusCode::NOT_FOUND);
    let form = attacker.get("/account").await?;
    let by_form = attacker
        .post_form(
            &format!("/account/keys/{id}/revoke"),
            &[("csrf", &form.csrf()?)],
        )
        .await?;
    assert_eq!(by_form.status, StatusCode::NOT_FOUND);

    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(me.status(), StatusCode::OK, "the owner's key still works");
    assert_eq!(owner.api_key_count().await?, 1);
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

/// A person whose requests come from `ip` (any address in 127.0.0.0/8 reaches the server).
fn person_at(server: &Server, ip: [u8; 4]) -> Result<Person> {
    Ok(Person {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .local_address(std::net::IpAddr::from(ip))
            .build()?,
        base: server.url.clone(),
    })
}

#[tokio::test]
async fn password_guessing_backs_off_per_address_without_locking_the_owner_out() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("guess");
    Person::verified_account(&server, &email, PASSWORD).await?;

    // One address: five free failures, then a lock that even the right password waits out.
    let attacker = person_at(&server, [127, 0, 0, 10])?;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let page = attacker
            .sign_in(&email, &format!("wrong password {i}"))
            .await?;
        statuses.push(page.status.as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429],
        "the sixth failure locks"
    );
    let page = attacker.sign_in(&email, PASSWORD).await?;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("Too many sign-in attempts"));

    // Guessers on more addresses empty the account's bucket of failures: an address that
    // has failed is then refused at once ...
    for last in 11..=12 {
        let other = person_at(&server, [127, 0, 0, last])?;
        for i in 0..2 {
            let page = other.sign_in(&email, &format!("guess {last}.{i}")).await?;
            assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{last}.{i}");
        }
    }
    let refused = person_at(&server, [127, 0, 0, 11])?
        .sign_in(&email, "one more guess")
        .await?;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);

    // ... but the owner, from an address with no failures, still signs in.
    let owner = person_at(&server, [127, 0, 0, 20])?;
    let page = owner.sign_in(&email, PASSWORD).await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    owner.me().await?;
    Ok(())
}

#[tokio::test]
async fn session_cookies_are_http_only_and_lax() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("cookie");
    Person::verified_account(&server, &email, PASSWORD).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()?;
    let form = Person {
        http: http.clone(),
        base: server.url.clone(),
    }
    .get("/signin")
    .await?;
    let r = http
        .post(server.url("/signin"))
        .form(&[
            ("csrf", form.csrf()?.as_str()),
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

#[tokio::test]
async fn metrics_are_never_served_on_the_public_address() -> Result<()> {
    let server = Server::start(bin()).await?;
    let public = reqwest::get(server.url("/metrics")).await?;
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let admin = reqwest::get(&server.metrics_url).await?;
    assert_eq!(admin.status(), StatusCode::OK);
    assert!(
        admin
            .text()
            .await?
            .contains("latchkey_api_keys_verified_total")
    );
    Ok(())
}

#[tokio::test]
async fn over_https_every_response_carries_hsts_and_nosniff() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let data = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", "https://auth.example.test", "--data-dir"])
        .arg(data.path());
    let (_server, public) =
        latchkey_testkit::spawn_until(command, "latchkey is listening on ").await?;
    // The start-up line says where it listens as well as the URL people use.
    assert_eq!(
        public,
        format!("https://auth.example.test (bound to 127.0.0.1:{port})")
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for path in ["/healthz", "/signin", "/nowhere", "/.well-known/jwks.json"] {
        let response = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await?;
        let headers = response.headers();
        assert_eq!(
            headers["strict-transport-security"], "max-age=63072000; includeSubDomains",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    // And the cookies cannot be set or shadowed by a subdomain.
    let form = http
        .get(format!("http://127.0.0.1:{port}/signin"))
        .send()
        .await?;
    let cookie = form.headers()["set-cookie"].to_str()?;
    assert!(
        cookie.starts_with("__Host-lk_csrf=") && cookie.contains("Secure"),
        "{cookie}"
    );
    Ok(())
}
