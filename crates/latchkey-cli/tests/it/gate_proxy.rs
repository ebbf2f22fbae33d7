//! `latchkey gate` as a process in front of an upstream in this test: the RFC 9728 document,
//! 401 with its `WWW-Authenticate`, identity headers, server-sent events streamed event by
//! event, a dead upstream, and the loud `--insecure-no-auth`.

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use axum::{
    Router,
    response::sse::{Event, Sse},
    routing::get,
};
use latchkey_testkit::{Person, Server, sha256_hex, start_gate, unique_email};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::{PASSWORD, bin};

pub const GATE_SECRET: &str = "lkcs_gate-proxy-introspection-secret";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Ten events, 100 ms apart, each carrying the time it was sent.
pub async fn events() -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    Sse::new(futures_util::stream::unfold(0, |sent| async move {
        if sent == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok(Event::default().data(now_ms().to_string())), sent + 1))
    }))
}

/// How long (ms) each event of the upstream's `/events` took to reach the client through
/// `gate_url`.
pub async fn event_delays(gate_url: &str, key: &str) -> Result<Vec<u128>> {
    let mut stream = reqwest::Client::new()
        .get(format!("{gate_url}/events"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?;
    let mut delays = Vec::new();
    let mut pending = String::new();
    while let Some(chunk) = stream.chunk().await? {
        let received = now_ms();
        pending.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let sent: u128 = event
                .trim()
                .strip_prefix("data: ")
                .context("an SSE data line")?
                .parse()?;
            delays.push(received.saturating_sub(sent));
        }
    }
    Ok(delays)
}

/// An upstream over HTTP/1.1 or h2c: `/events` (SSE), `/echo` (the identity headers it was
/// given, and the HTTP version it was asked in), and "upstream" for anything else.
pub async fn upstream() -> Result<String> {
    let app = Router::new().route("/events", get(events)).route(
        "/echo",
        get(
            |version: axum::http::Version, headers: axum::http::HeaderMap| async move {
                let get = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                axum::Json(serde_json::json!({
                    "user": get("x-latchkey-user"),
                    "org": get("x-latchkey-org"),
                    "scopes": get("x-latchkey-scopes"),
                    "api_key": get("x-api-key"),
                    "version": format!("{version:?}"),
                }))
            },
        ),
    );
    serve_app(app.fallback(|| async { "upstream" })).await
}

/// `latchkey gate` in front of `upstream`, with `server` as its issuer.
pub async fn gate(server: &Server, upstream: &str, extra: &[&str]) -> Result<(Child, String)> {
    start_gate(bin(), upstream, &server.url, GATE_SECRET, extra).await
}

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn serve_app(app: Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// An upstream answering 200 to everything.
pub async fn answering_upstream() -> Result<String> {
    serve_app(Router::new().fallback(|| async { "upstream" })).await
}

/// `latchkey serve` with the gate inside it, in front of `upstream`; and the gate's URL, once
/// it accepts connections.
pub async fn server_with_gate(upstream: &str) -> Result<(Server, String)> {
    server_with_gate_flags(upstream, "", &[]).await
}

/// [`server_with_gate`] with a config file holding `config`, and more flags for `serve`.
pub async fn server_with_gate_flags(
    upstream: &str,
    config: &str,
    extra: &[&str],
) -> Result<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut flags = vec!["--gate-upstream", upstream, "--gate-listen", &listen];
    flags.extend_from_slice(extra);
    let server = Server::start_with_config(bin(), config, &flags).await?;
    wait_for_port(port).await;
    Ok((server, format!("http://{listen}")))
}

/// Waits (2.5 s at most) until something accepts connections on the loopback `port`.
pub(crate) async fn wait_for_port(port: u16) {
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn issuer() -> Result<Server> {
    Server::start_with_config(
        bin(),
        &format!(
            "[[oauth_clients]]\nid = \"gate\"\nname = \"gate\"\nsecret_sha256 = \"{}\"\n",
            sha256_hex(GATE_SECRET)
        ),
        &["--usage-flush-secs", "1"],
    )
    .await
}

#[tokio::test]
async fn the_gate_admits_keys_streams_events_and_explains_refusals() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-proxy"), PASSWORD).await?;
    let key = person.new_api_key("gate").await?;
    let me = person.me().await?;
    let upstream = upstream().await?;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let admin_addr = admin.to_string();
    let (_gate, gate_url) = gate(&server, &upstream, &["--admin-listen", &admin_addr]).await?;
    let http = reqwest::Client::new();

    let metadata: Value = http
        .get(format!("{gate_url}/.well-known/oauth-protected-resource"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(metadata["resource"], gate_url.as_str());
    assert_eq!(metadata["authorization_servers"][0], server.url.as_str());

    // CORS preflights carry no credential: they pass to the upstream (which has no OPTIONS
    // route here, hence its 405).
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{gate_url}/echo"))
        .send()
        .await?;
    assert_eq!(preflight.status(), 405);

    let refused = http.get(format!("{gate_url}/echo")).send().await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"].to_str()?,
        format!("Bearer resource_metadata=\"{gate_url}/.well-known/oauth-protected-resource\"")
    );

    let echoed: Value = http
        .get(format!("{gate_url}/echo"))
        .header("x-api-key", &key)
        .header("x-latchkey-user", "usr_admin")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(echoed["user"], me["user_id"]);
    assert_eq!(echoed["api_key"], Value::Null);

    // Each event reaches the client within 20 ms of being sent upstream.
    let delays = event_delays(&gate_url, &key).await?;
    assert_eq!(delays.len(), 10, "every event arrived");
    assert!(
        delays.iter().all(|d| *d <= 20),
        "event delays (ms) through the gate: {delays:?}"
    );

    // The counters are on the admin listener only.
    let metrics = http
        .get(format!("http://{admin_addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("latchkey_gate_requests_total{outcome=\"admitted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_gate_requests_total{outcome=\"unauthorized\"} 1")
            && metrics.contains("latchkey_gate_requests_total{outcome=\"public\"} 1"),
        "{metrics}"
    );
    let proxied = http.get(format!("{gate_url}/metrics")).send().await?;
    assert_eq!(
        proxied.status(),
        401,
        "/metrics on the proxied port is the upstream's"
    );
    Ok(())
}

#[tokio::test]
async fn a_dead_upstream_is_a_502_and_no_auth_mode_is_loud() -> Result<()> {
    let server = issuer().await?;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", listener.local_addr()?)
    };
    let (_gate, gate_url) = gate(&server, &closed, &["--insecure-no-auth"]).await?;
    let response = reqwest::get(format!("{gate_url}/anything")).await?;
    assert_eq!(
        response.status(),
        502,
        "no credential needed, and no upstream"
    );
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "bad_gateway");

    let mut command = Command::new(bin());
    command
        .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &closed])
        .args([
            "--issuer",
            &server.url,
            "--client-id",
            "gate",
            "--insecure-no-auth",
        ])
        .env("LATCHKEY_GATE_CLIENT_SECRET", GATE_SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    let warned = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await? {
            let loud = line.contains("WARNING: --insecure-no-auth");
            seen.push(line);
            if loud {
                return anyhow::Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await;
    child.start_kill()?;
    assert!(matches!(warned, Ok(Ok(true))), "{}", seen.join("\n"));
    Ok(())
}

#[tokio::test]
async fn rate_limits_answer_429_and_entitlements_point_to_the_subscribe_page() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-limits"), PASSWORD).await?;
    let key = person.new_api_key("gate").await?;
    let upstream = upstream().await?;
    let http = reqwest::Client::new();

    // 2 per second per key: a burst of 4, then 429 with Retry-After.
    let (_limited, limited_url) = gate(
        &server,
        &upstream,
        &["--rate-limit-per-key", "2", "--rate-limit-per-ip", "0"],
    )
    .await?;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let response = http
            .get(format!("{limited_url}/echo"))
            .header("x-api-key", &key)
            .send()
            .await?;
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await?;
            assert_eq!(body["error"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(&statuses[..4], [200; 4], "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|v| {
        v.to_str()
            .is_ok_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1))
    }));

    // 1 per second per address applies before any credential is checked.
    let (_by_ip, by_ip_url) = gate(&server, &upstream, &["--rate-limit-per-ip", "1"]).await?;
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        anonymous.push(
            http.get(format!("{by_ip_url}/echo"))
                .send()
                .await?
                .status()
                .as_u16(),
        );
    }
    assert_eq!(anonymous, [401, 401, 429, 429]);

    // A tier the credential does not have: 403 with where to subscribe.
    let (_paid, paid_url) = gate(&server, &upstream, &["--require-entitlement", "pro"]).await?;
    let refused = http
        .get(format!("{paid_url}/echo"))
        .header("x-api-key", &key)
        .send()
        .await?;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await?;
    let subscribe = server.url("/account");
    assert_eq!(body["error"], "subscription_required");
    assert_eq!(body["subscribe_url"], subscribe.as_str());
    assert_eq!(
        body["message"],
        format!("Active subscription required — Subscribe at: {subscribe}").as_str()
    );
    Ok(())
}

#[tokio::test]
async fn key_usage_reaches_the_issuer_in_batches_counted_once() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-usage"), PASSWORD).await?;
    let key = person.new_api_key("gate").await?;
    let (_gate, gate_url) = gate(&server, &upstream().await?, &["--usage-flush-secs", "1"]).await?;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        http.get(format!("{gate_url}/echo"))
            .header("x-api-key", &key)
            .send()
            .await?
            .error_for_status()?;
    }
    // The gate reports within a second, the issuer writes within another.
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = person
            .api_keys()
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        if usage["usage_count"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        usage["usage_count"], 5,
        "the introspection is not a use: {usage}"
    );
    assert!(usage["last_used_at"].is_string(), "{usage}");

    // Only a confidential client may report.
    let report =
        serde_json::json!({ "keys": [{ "key_id": "key_x", "count": 1000, "last_used_at": 0 }] });
    let anonymous = http
        .post(server.url("/v1/gate/usage"))
        .json(&report)
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    let public_client = http
        .post(server.url("/v1/gate/usage"))
        .basic_auth("latchkey-cli", Some(""))
        .json(&report)
        .send()
        .await?;
    assert_eq!(public_client.status(), 401);
    let malformed = http
        .post(server.url("/v1/gate/usage"))
        .basic_auth("gate", Some(GATE_SECRET))
        .json(&serde_json::json!({ "keys": "all of them" }))
        .send()
        .await?;
    assert_eq!(malformed.status(), 400);
    Ok(())
}

#[tokio::test]
async fn websockets_pass_through_the_gate_once_authenticated() -> Result<()> {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-ws"), PASSWORD).await?;
    let key = person.new_api_key("ws").await?;
    // An upstream that echoes every text message, upper-cased.
    let app = Router::new().route(
        "/ws",
        get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(Message::Text(text))) = socket.recv().await {
                    if socket
                        .send(Message::Text(text.to_uppercase().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        }),
    );
    let upstream = serve_app(app).await?;
    // A gate forwarding over HTTP/2 still upgrades over HTTP/1.1, which has the upgrade.
    for flags in [&[][..], &["--upstream-http2"]] {
        let (_gate, gate_url) = gate(&server, &upstream, flags).await?;
        let ws_url = format!("{}/ws", gate_url.replace("http://", "ws://"));

        let refused = tokio_tungstenite::connect_async(&ws_url).await;
        assert!(
            matches!(&refused, Err(tungstenite::Error::Http(r)) if r.status() == 401),
            "{refused:?}"
        );

        let mut request = ws_url.as_str().into_client_request()?;
        request.headers_mut().insert("x-api-key", key.parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        for word in ["hello", "through", "the gate"] {
            socket.send(tungstenite::Message::text(word)).await?;
            let answer = socket.next().await.context("socket closed")??;
            assert_eq!(
                answer.into_text()?.as_str(),
                word.to_uppercase(),
                "{flags:?}"
            );
        }
        socket.close(None).await?;
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_before_the_gate_exits() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-drain"), PASSWORD).await?;
    let key = person.new_api_key("gate").await?;
    let (mut gate, gate_url) = gate(&server, &upstream().await?, &[]).await?;
    let mut stream = reqwest::Client::new()
        .get(format!("{gate_url}/events"))
        .bearer_auth(&key)
        .send()
        .await?
        .error_for_status()?;
    let first = stream.chunk().await?.context("a first event")?;
    assert!(first.starts_with(b"data: "));
    let pid = gate.id().context("gate pid")?;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    // The stream runs to its end (ten events in all) although the gate is stopping.
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = stream.chunk().await? {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(rest.matches("data: ").count(), 10, "{rest}");
    let exited = tokio::time::timeout(Duration::from_secs(10), gate.wait()).await??;
    assert!(exited.success(), "{exited:?}");
    // And it no longer accepts connections.
    assert!(reqwest::get(format!("{gate_url}/events")).await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_gate_inside_the_server_refuses_a_revoked_key_at_once() -> Result<()> {
    let upstream = upstream().await?;
    let (server, gate_url) = server_with_gate(&upstream).await?;
    let person = Person::verified_account(&server, &unique_email("gate-inside"), PASSWORD).await?;
    let created = person.create_api_key("inside").await?;
    let key = created["api_key"].as_str().context("key")?.to_owned();
    let key_id = created["id"].as_str().context("id")?.to_owned();
    let me = person.me().await?;
    let http = reqwest::Client::new();
    let echo = |credential: String| {
        let request = http
            .get(format!("{gate_url}/echo"))
            .bearer_auth(credential)
            .send();
        async move { anyhow::Ok(request.await?) }
    };
    let seen: Value = echo(key.clone()).await?.error_for_status()?.json().await?;
    assert_eq!(seen["user"], me["user_id"]);
    let jwt = crate::oauth::access_token(&server, &person).await?;
    assert_eq!(echo(jwt).await?.status(), 200);

    let revoked = person
        .http
        .delete(server.url(&format!("/v1/api-keys/{key_id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert!(revoked.status().is_success());
    assert_eq!(echo(key).await?.status(), 401, "no cache to wait out");
    Ok(())
}

#[tokio::test]
async fn the_gate_inside_serve_takes_the_standalone_gate_s_settings() -> Result<()> {
    let upstream = upstream().await?;
    // From the file: public paths, a required scope, the rate limits, the worker threads,
    // HTTP/2 to the upstream.
    let (server, gate_url) = server_with_gate_flags(
        &upstream,
        "gate_public = [\"/health\"]\ngate_require_scope = \"deploy\"\n\
         gate_rate_limit_per_key = 0\ngate_rate_limit_per_ip = 0\ngate_workers = 3\n\
         gate_upstream_http2 = true\n",
        &[],
    )
    .await?;
    let before = three_workers(server.pid().context("server pid")?).await?;
    let person = Person::verified_account(&server, &unique_email("in-process"), PASSWORD).await?;
    let key_with_scope = |scope: &'static str| {
        let person = &person;
        async move {
            let created: Value = person
                .http
                .post(format!("{}/v1/api-keys", person.base))
                .header("origin", &person.base)
                .json(&serde_json::json!({ "name": scope, "scopes": [scope] }))
                .send()
                .await?
                .json()
                .await?;
            created["api_key"]
                .as_str()
                .map(str::to_owned)
                .context("a new key")
        }
    };
    let scoped = key_with_scope("deploy").await?;
    let unscoped = key_with_scope("read").await?;
    let http = reqwest::Client::new();
    let call = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("{gate_url}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(call("/health", None).await?.status(), 200, "a public path");
    assert_eq!(call("/private", None).await?.status(), 401);
    let refused = call("/private", Some(&unscoped)).await?;
    assert_eq!(refused.status(), 403, "the scope is required");
    // Rate limits off: a burst far past the default 50 a second passes whole.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (url, key) = (format!("{gate_url}/private"), scoped.clone());
        let http = http.clone();
        burst.spawn(async move { http.get(url).bearer_auth(key).send().await });
    }
    while let Some(answer) = burst.join_next().await {
        assert_eq!(answer??.status(), 200, "no 429 with the limits off");
    }
    let echoed: Value = call("/echo", Some(&scoped)).await?.json().await?;
    assert_eq!(echoed["version"], "HTTP/2.0", "{echoed}");
    // The gate's own threads served that, not the issuer's runtime.
    let after = worker_cpu_ns(server.pid().context("server pid")?)?;
    let served: u64 = after.iter().map(|(worker, ns)| ns - before[worker]).sum();
    assert!(served > 0, "the gate workers served nothing: {after:?}");
    Ok(())
}

/// CPU time each `gate-worker-N` thread of `pid` has used, in nanoseconds, by name.
fn worker_cpu_ns(pid: u32) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut workers = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let name = std::fs::read_to_string(task.join("comm"))?
            .trim()
            .to_owned();
        if name.starts_with("gate-worker-") {
            let schedstat = std::fs::read_to_string(task.join("schedstat"))?;
            let ns = schedstat
                .split_whitespace()
                .next()
                .context("schedstat")?
                .parse()?;
            workers.insert(name, ns);
        }
    }
    Ok(workers)
}

/// The CPU time of `pid`'s gate workers, once it has exactly three (a thread takes its name
/// once it runs: they get a moment).
async fn three_workers(pid: u32) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut workers = worker_cpu_ns(pid)?;
    for _ in 0..100 {
        if workers.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        workers = worker_cpu_ns(pid)?;
    }
    assert_eq!(
        workers.keys().collect::<Vec<_>>(),
        ["gate-worker-0", "gate-worker-1", "gate-worker-2"]
    );
    Ok(workers)
}

#[tokio::test]
async fn the_gate_serves_on_one_worker_per_core_that_no_other_user_can_join() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("gate-workers"), PASSWORD).await?;
    let key = person.new_api_key("gate").await?;
    let upstream = answering_upstream().await?;

    let refused = Command::new(bin())
        .args(["gate", "--workers", "0", "--upstream", &upstream])
        .args(["--issuer", &server.url, "--client-id", "gate"])
        .env("LATCHKEY_GATE_CLIENT_SECRET", GATE_SECRET)
        .output()
        .await?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--workers must be at least 1"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let (gate, gate_url) = gate(
        &server,
        &upstream,
        &["--workers", "3", "--rate-limit-per-ip", "0"],
    )
    .await?;
    let pid = gate.id().context("gate pid")?;
    let before = three_workers(pid).await?;
    // Each request on a connection of its own: the kernel spreads them over the workers'
    // sockets, and every worker answers its share.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    for _ in 0..60 {
        let answer = fresh
            .get(format!("{gate_url}/work"))
            .bearer_auth(&key)
            .send()
            .await?;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await?, "upstream");
    }
    let after = worker_cpu_ns(pid)?;
    for (worker, ns) in &before {
        assert!(after[worker] > *ns, "{worker} served nothing: {after:?}");
    }

    // The workers' sockets share the port (SO_REUSEPORT). The kernel lets only sockets of the
    // same user into that group: another account binding the port beside the gate, to take
    // a share of its connections, is refused.
    let port = gate_url.rsplit(':').next().context("port")?;
    let join = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen()\nprint('joined')"
    );
    let same_user = Command::new("/usr/bin/python3")
        .args(["-c", &join])
        .output()
        .await?;
    assert!(
        String::from_utf8_lossy(&same_user.stdout).contains("joined"),
        "the gate's own user can join its port: the check below is meaningful"
    );
    if nix_is_root() {
        let other_user = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                &join,
            ])
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&other_user.stderr);
        assert!(
            !other_user.status.success(),
            "another user joined the gate's port"
        );
        assert!(stderr.contains("Address already in use"), "{stderr}");
    } else {
        eprintln!("not root: cannot run the other-user attempt here");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}
