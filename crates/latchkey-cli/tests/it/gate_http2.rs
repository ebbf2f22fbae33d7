//! The gate forwarding over HTTP/2 (`--upstream-http2`): events pass one by one, streams share
//! a few upstream connections, idle ones are closed once a burst is over, and requests an
//! upstream refuses unprocessed are sent again, body and all.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{
    Router,
    response::sse::{Event, Sse},
    routing::get,
};
use latchkey_testkit::{Person, unique_email};
use tokio::process::Command;

use crate::{
    PASSWORD, bin,
    gate_proxy::{GATE_SECRET, event_delays, events, gate, issuer, serve_app},
};

/// A gate forwarding over HTTP/2 on one worker (so one pool of connections), unlimited.
const HTTP2_ON_ONE_WORKER: [&str; 7] = [
    "--upstream-http2",
    "--workers",
    "1",
    "--rate-limit-per-key",
    "0",
    "--rate-limit-per-ip",
    "0",
];

/// Connections from anywhere on this machine to the loopback `port`, established (IPv4).
fn connections_to(port: u16) -> Result<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let remote = format!(":{port:04X}");
    Ok(table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2).is_some_and(|peer| peer.ends_with(&remote))
                && fields.get(3) == Some(&"01")
        })
        .count())
}

#[tokio::test]
async fn over_http2_the_gate_s_streams_share_a_few_upstream_connections() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-h2"), PASSWORD).await?;
    let key = person.new_api_key("h2").await?;
    // axum serves h2c beside HTTP/1.1, allowing 200 concurrent streams a connection.
    let app = Router::new()
        .route(
            "/idle",
            get(|| async {
                Sse::new(futures_util::stream::pending::<Result<Event, Infallible>>())
            }),
        )
        .route(
            "/version",
            get(
                |version: axum::http::Version, headers: axum::http::HeaderMap| async move {
                    // Over HTTP/2 the upstream is named by `:authority` alone.
                    let host = headers
                        .get("host")
                        .map_or("", |h| h.to_str().unwrap_or("?"));
                    format!("{version:?}{host}")
                },
            ),
        )
        .route("/events", get(events));
    let upstream = serve_app(app).await?;
    let upstream_port: u16 = upstream.rsplit(':').next().context("port")?.parse()?;
    let (_gate, gate_url) = gate(&server, &upstream, &HTTP2_ON_ONE_WORKER).await?;
    let version = || async {
        let answer = reqwest::Client::new()
            .get(format!("{gate_url}/version"))
            .bearer_auth(&key)
            .send()
            .await?;
        anyhow::ensure!(answer.status() == 200, "{}", answer.status());
        anyhow::Ok(answer.text().await?)
    };
    assert_eq!(version().await?, "HTTP/2.0");
    // Events pass one by one, as over HTTP/1.1.
    let delays = event_delays(&gate_url, &key).await?;
    assert_eq!(delays.len(), 10, "every event arrived");
    assert!(
        delays.iter().all(|d| *d <= 20),
        "event delays (ms): {delays:?}"
    );

    // More streams than the upstream allows on one connection, each held open: every one is
    // answered (none waits for another to close), over as few connections as the gate's
    // per-connection cap allows.
    let open = idle_streams(&gate_url, &key, 250).await?;
    let per_connection = latchkey_gate::proxy::HTTP2_STREAMS_PER_CONNECTION;
    assert_eq!(
        connections_to(upstream_port)?,
        250_usize.div_ceil(per_connection)
    );

    // Once the streams are over, the next request leaves one connection open, not three.
    drop(open);
    let mut left = usize::MAX;
    for _ in 0..50 {
        assert_eq!(version().await?, "HTTP/2.0");
        left = connections_to(upstream_port)?;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "idle HTTP/2 connections stayed open");

    // For an upstream that allows fewer streams a connection, the cap is set to match.
    let refused = Command::new(bin())
        .args(["gate", "--upstream-http2", "--upstream-http2-streams", "0"])
        .args([
            "--upstream",
            &upstream,
            "--issuer",
            &server.url,
            "--client-id",
            "gate",
        ])
        .env("LATCHKEY_GATE_CLIENT_SECRET", GATE_SECRET)
        .output()
        .await?;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("between 1 and 10000"),
        "{refused:?}"
    );
    let mut capped = HTTP2_ON_ONE_WORKER.to_vec();
    capped.extend(["--upstream-http2-streams", "50"]);
    let (_capped_gate, capped_url) = gate(&server, &upstream, &capped).await?;
    let open = idle_streams(&capped_url, &key, 120).await?;
    assert_eq!(
        connections_to(upstream_port)?,
        left + 3,
        "120 streams at 50 a connection, beside the first gate's one"
    );
    drop(open);
    Ok(())
}

/// `count` SSE streams opened through `gate_url` at once and held open, every one answered
/// within 10 s.
async fn idle_streams(gate_url: &str, key: &str, count: usize) -> Result<Vec<reqwest::Response>> {
    let http = reqwest::Client::builder().http1_only().build()?;
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = http.get(format!("{gate_url}/idle")).bearer_auth(key);
        opening.spawn(tokio::time::timeout(
            Duration::from_secs(10),
            request.send(),
        ));
    }
    let mut open = Vec::new();
    while let Some(opened) = opening.join_next().await {
        let response = opened?.context("an SSE stream was never answered")??;
        anyhow::ensure!(response.status() == 200, "{}", response.status());
        open.push(response);
    }
    Ok(open)
}

/// An h2c upstream (HTTP/2 only) that answers each request with its own body, except on its
/// first connection: there, once four requests were answered, it refuses every stream with
/// `REFUSED_STREAM`, unprocessed. Returns its URL and how many streams it refused and
/// answered.
async fn refusing_upstream() -> Result<(String, Arc<AtomicUsize>, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (refused, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counts = (refused.clone(), answered.clone());
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            connections += 1;
            let (refusing, (refused, answered_in_all)) = (connections == 1, counts.clone());
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut answered = 0;
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    if refusing && answered == 4 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    answered += 1;
                    answered_in_all.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        let mut received = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            received.extend_from_slice(&chunk);
                        }
                        let response = axum::http::Response::new(());
                        if let Ok(mut sending) = respond.send_response(response, false) {
                            let _ = sending.send_data(received.into(), true);
                        }
                    });
                }
            });
        }
    });
    Ok((base, refused, answered))
}

#[tokio::test]
async fn requests_the_upstream_refuses_unprocessed_are_sent_again_body_and_all() -> Result<()> {
    let server = issuer().await?;
    let person =
        Person::verified_account(&server, &unique_email("gate-h2-refused"), PASSWORD).await?;
    let key = person.new_api_key("h2").await?;
    let (upstream, refused, answered) = refusing_upstream().await?;
    let (_gate, gate_url) = gate(&server, &upstream, &HTTP2_ON_ONE_WORKER).await?;
    let http = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    let count = 60;
    for id in 0..count {
        let message = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}");
        let request = http
            .post(format!("{gate_url}/mcp"))
            .bearer_auth(&key)
            .body(message.clone());
        calls.spawn(async move {
            let answer = request.send().await?;
            anyhow::Ok((message, answer.status(), answer.text().await?))
        });
    }
    while let Some(call) = calls.join_next().await {
        let (message, status, body) = call??;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body, message,
            "the upstream got the whole body when it was sent again"
        );
    }
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the upstream refused no stream: nothing was sent again"
    );
    // Each call reached it once: what was refused unprocessed, and only that, was sent again.
    assert_eq!(answered.load(Ordering::Relaxed), count);
    Ok(())
}
