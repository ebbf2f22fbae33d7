//! Attacks on `latchkey gate`: forged and expired JWTs (wrong audience, wrong issuer, `alg:
//! none`, HS256 keyed with the public key), oversized headers, slowloris, and path tricks
//! against a `--public` prefix, sent byte for byte over raw TCP so no client normalises them.

use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use latchkey_testkit::{Person, Server, unique_email};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    PASSWORD,
    gate_proxy::{gate, issuer},
    jwt_attacks::forge,
    oauth::access_token,
};

/// An upstream that answers every path with 200 and the path it saw.
async fn upstream() -> Result<String> {
    let app = Router::new().fallback(|uri: axum::http::Uri| async move { uri.to_string() });
    crate::gate_proxy::serve_app(app).await
}

/// An upstream that answers with every request header it received, as a JSON object.
async fn header_echo() -> Result<String> {
    let app = Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let seen: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value.into())
            })
            .collect();
        axum::Json(seen)
    });
    crate::gate_proxy::serve_app(app).await
}

/// Sends `head` as is and returns the status code of the answer.
async fn raw_status(gate_url: &str, head: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(gate_url.trim_start_matches("http://")).await?;
    stream.write_all(head.as_bytes()).await?;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await??;
    let line = String::from_utf8_lossy(&answer[..n]);
    line.split_whitespace()
        .nth(1)
        .context(format!("no status in {line:?}"))?
        .parse()
        .context("status")
}

#[tokio::test]
async fn forged_jwts_are_refused_at_the_gate() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-jwt"), PASSWORD).await?;
    let real = access_token(&server, &person).await?;
    let forgeries = forge(&server, &real).await?;
    let (_gate, gate_url) = gate(&server, &upstream().await?, &[]).await?;
    let http = reqwest::Client::new();
    let status = |token: String| {
        let request = http
            .get(format!("{gate_url}/api"))
            .bearer_auth(token)
            .send();
        async move { anyhow::Ok(request.await?.status().as_u16()) }
    };
    assert_eq!(status(real.clone()).await?, 200);
    assert_eq!(status(forgeries.resigned).await?, 200, "the control passes");
    for (what, token) in forgeries.forged {
        assert_eq!(status(token).await?, 401, "{what}");
    }
    Ok(())
}

#[tokio::test]
async fn oversized_heads_slowloris_and_path_tricks_get_nowhere() -> Result<()> {
    let server = issuer().await?;
    let (_gate, gate_url) = gate(
        &server,
        &upstream().await?,
        &["--public", "/public", "--header-read-timeout-secs", "1"],
    )
    .await?;

    assert_eq!(
        raw_status(&gate_url, "GET /public/info HTTP/1.1\r\nHost: gate\r\n\r\n").await?,
        200
    );
    for tricky in [
        "/public/../private",
        "/public/./../private",
        "/public%2F..%2Fprivate",
        "/public/%2e%2e/private",
        "/public/..;/private",
        "/public/%252e%252e/private",
        "/public/%00/../private",
        "/publicity",
    ] {
        let head = format!("GET {tricky} HTTP/1.1\r\nHost: gate\r\n\r\n");
        assert_eq!(raw_status(&gate_url, &head).await?, 401, "{tricky}");
    }

    let huge = format!(
        "GET /public/info HTTP/1.1\r\nHost: gate\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_eq!(raw_status(&gate_url, &huge).await?, 431);

    // A head trickled a byte at a time is cut off once the header read timeout passes.
    let mut slow = TcpStream::connect(gate_url.trim_start_matches("http://")).await?;
    slow.write_all(b"GET /public/info HTTP/1.1\r\nHost: gate\r\nX-Slow: ")
        .await?;
    let started = std::time::Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"a").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // EOF, or hyper's 408 before closing.
            assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"));
            cut = true;
            break;
        }
    }
    assert!(cut, "the slow client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// What the upstream saw of a request carrying credentials, forged identity headers and
/// `extra` ones.
async fn headers_seen_upstream(
    gate_url: &str,
    method: reqwest::Method,
    path: &str,
    credential: &str,
    extra: &[(&str, &str)],
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut request = reqwest::Client::new().request(method, format!("{gate_url}{path}"));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request
        .bearer_auth(credential)
        .header("x-api-key", credential)
        .header("x-latchkey-user", "usr_forged")
        .header("X-Latchkey-Email", "boss@example.com")
        .header("x-latchkey-subscription", "pro")
        .header("x-latchkey-anything-else", "forged")
        .header("x-request-id", "kept")
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
    Ok(response.json().await?)
}

/// Neither gate lets a client's credentials or any `X-Latchkey-*` header reach the upstream:
/// not on public paths, not on `OPTIONS`, not on authenticated requests (where only the
/// gate's own identity headers arrive).
async fn assert_no_leaks(gate_url: &str, key: &str, user_id: &str, public: bool) -> Result<()> {
    let mut requests = vec![
        (reqwest::Method::OPTIONS, "/private"),
        (reqwest::Method::GET, "/private"),
    ];
    if public {
        requests.push((reqwest::Method::GET, "/public/info"));
    }
    for (method, path) in requests {
        let seen = headers_seen_upstream(gate_url, method.clone(), path, key, &[]).await?;
        assert_eq!(
            seen["x-request-id"], "kept",
            "{method} {path}: the control arrives"
        );
        for leaked in [
            "authorization",
            "x-api-key",
            "x-latchkey-email",
            "x-latchkey-subscription",
            "x-latchkey-anything-else",
        ] {
            assert!(
                !seen.contains_key(leaked),
                "{method} {path} leaked {leaked}: {seen:?}"
            );
        }
        let user = seen.get("x-latchkey-user").and_then(|v| v.as_str());
        if path == "/private" && method == reqwest::Method::GET {
            assert_eq!(user, Some(user_id), "the gate's own identity header");
        } else {
            assert_eq!(
                user, None,
                "{method} {path}: no identity on an unauthenticated pass"
            );
        }
    }
    Ok(())
}

/// A new account on `server` with an API key of its own: the key, and the account's user id.
async fn key_and_user(server: &Server, label: &str) -> Result<(String, String)> {
    let person = Person::verified_account(server, &unique_email(label), PASSWORD).await?;
    let key = person.new_api_key(label).await?;
    let user_id = person.me().await?["user_id"]
        .as_str()
        .context("user id")?
        .to_owned();
    Ok((key, user_id))
}

#[tokio::test]
async fn credentials_and_forged_identity_headers_never_reach_the_upstream() -> Result<()> {
    let upstream = header_echo().await?;
    let server = issuer().await?;
    let (key, user_id) = key_and_user(&server, "gate-leak").await?;
    let (_gate, gate_url) = gate(&server, &upstream, &["--public", "/public"]).await?;
    assert_no_leaks(&gate_url, &key, &user_id, true).await?;

    // The gate inside the server (which has no public paths), in front of the same upstream.
    let (inside, inside_url) = crate::gate_proxy::server_with_gate(&upstream).await?;
    let (key, user_id) = key_and_user(&inside, "gate-leak").await?;
    assert_no_leaks(&inside_url, &key, &user_id, false).await
}

/// `Connection` names headers to drop at the next hop. A client naming the gate's own
/// identity headers there must not make the gate drop them after setting them: an upstream
/// would then see a key's request with no scopes and no user.
#[tokio::test]
async fn a_connection_header_cannot_strip_the_gate_s_identity_headers() -> Result<()> {
    let upstream = header_echo().await?;
    let server = issuer().await?;
    let (key, user_id) = key_and_user(&server, "gate-hop").await?;
    for flags in [&[][..], &["--upstream-http2"]] {
        let (_gate, gate_url) = gate(&server, &upstream, flags).await?;
        let seen = headers_seen_upstream(
            &gate_url,
            reqwest::Method::GET,
            "/private",
            &key,
            &[
                (
                    "connection",
                    "keep-alive, X-Latchkey-Scopes, x-latchkey-user, x-latchkey-org, x-private",
                ),
                ("x-private", "dropped"),
            ],
        )
        .await?;
        assert_eq!(seen.get("x-latchkey-user"), Some(&user_id.clone().into()));
        assert_eq!(seen.get("x-latchkey-scopes"), Some(&"*".into()));
        assert!(seen.contains_key("x-latchkey-org"), "{flags:?}: {seen:?}");
        assert!(
            !seen.contains_key("x-private"),
            "other named headers still stay on their hop: {flags:?}: {seen:?}"
        );
    }
    Ok(())
}

/// An upstream that reads the whole request body and answers its length.
async fn body_reader() -> Result<String> {
    let app =
        Router::new().fallback(|body: axum::body::Bytes| async move { body.len().to_string() });
    crate::gate_proxy::serve_app(app).await
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_a_502() -> Result<()> {
    let server = issuer().await?;
    let upstream = body_reader().await?;
    let chunked = |body: &str| {
        format!(
            "POST /public/upload HTTP/1.1\r\nHost: gate\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        )
    };
    // Over HTTP/2 too, where the body streams on a connection other requests share.
    for flags in [
        &["--public", "/public"][..],
        &["--public", "/public", "--upstream-http2"],
    ] {
        let (_gate, gate_url) = gate(&server, &upstream, flags).await?;
        assert_eq!(
            raw_status(&gate_url, &chunked("5\r\nhello\r\n0\r\n\r\n")).await?,
            200,
            "the control, {flags:?}"
        );
        for broken in [
            "zz\r\nhello\r\n0\r\n\r\n",
            "5\r\nhelloXX\r\n0\r\n\r\n",
            "-1\r\n\r\n",
        ] {
            assert_eq!(
                raw_status(&gate_url, &chunked(broken)).await?,
                400,
                "{broken:?}, {flags:?}"
            );
        }
    }
    Ok(())
}

/// Sends a POST whose body comes 200 ms after its head, as clients that write them apart do,
/// without a credential; then, unless the refusal said `Connection: close`, a second request on
/// the same connection. The refusal's head and whether the second request was answered.
async fn refused_then_reused(gate_url: &str) -> Result<(String, bool)> {
    let address = gate_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await?;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(body.as_bytes()).await?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let (refusal, length) = loop {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the gate closed the connection without answering");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, _)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .context("content-length")?
                .parse::<usize>()?;
            break (head.to_owned(), length);
        }
    };
    while received.len() < refusal.len() + 4 + length {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the refusal was cut short");
        received.extend_from_slice(&buf[..n]);
    }
    if refusal.to_ascii_lowercase().contains("connection: close") {
        return Ok((refusal, false));
    }
    stream
        .write_all(
            format!(
                "GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: {address}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await?
        .unwrap_or(0);
    Ok((refusal, n > 0))
}

#[tokio::test]
async fn a_refused_request_never_leaves_its_connection_silently_dead() -> Result<()> {
    let server = issuer().await?;
    let (_gate, standalone) = gate(&server, &upstream().await?, &[]).await?;
    let (_inside, inside) = crate::gate_proxy::server_with_gate(&upstream().await?).await?;
    for gate_url in [&standalone, &inside] {
        let (refusal, reused) = refused_then_reused(gate_url).await?;
        assert!(refusal.starts_with("HTTP/1.1 401"), "{refusal}");
        // Either the client is told to open a new connection, or this one still serves.
        assert!(
            reused || refusal.to_ascii_lowercase().contains("connection: close"),
            "{gate_url}: the gate closed the connection after a 401 without saying so:\n{refusal}"
        );
    }
    Ok(())
}
