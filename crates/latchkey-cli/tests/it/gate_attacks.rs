//! Attacks on `latchkey gate`: forged and expired JWTs (wrong audience, wrong issuer, `alg:
//! none`, HS256 keyed with the public key), oversized headers, slowloris, and path tricks
//! against a `--public` prefix, sent byte for byte over raw TCP so no client normalises them.

use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use latchkey_testkit::{Person, unique_email};
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
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
