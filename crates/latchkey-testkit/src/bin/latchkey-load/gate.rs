//! `gate`: `latchkey gate` against nginx as a plain reverse proxy (no auth), in front of the same
//! upstream, in one run: peak requests per second (API key and JWT through the gate), the
//! latency the gate adds over going direct at half of its peak, and the gate's memory with
//! 10,000 idle SSE streams open.

use std::{convert::Infallible, path::Path, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use axum::{
    Router,
    response::sse::{Event, Sse},
    routing::get,
};
use latchkey_testkit::{Decision, Person, Server, sha256_hex, spawn_until};
use tokio::{process::Command, task::JoinSet, time::Instant};

use crate::{Memory, report};

const GATE_SECRET: &str = "lkcs_bench-gate-secret-bench-gate-secret";

/// The upstream: `/` answers a few bytes; `/idle` opens an SSE stream that never sends.
async fn upstream() -> Result<String> {
    let idle = || async { Sse::new(futures_util::stream::pending::<Result<Event, Infallible>>()) };
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/idle", get(idle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// nginx with 2 workers and keepalive to the upstream, as a plain reverse proxy.
async fn nginx(upstream: &str, dir: &Path) -> Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let upstream = upstream.trim_start_matches("http://");
    let config = format!(
        "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n  access_log off;\n  upstream app {{ server {upstream}; keepalive 64; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
               proxy_pass http://app;\n      proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
        dir = dir.display()
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, config)?;
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|n| Path::new(n).exists() || which(n))
        .context("nginx is not installed: apt-get install nginx-light")?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&file)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, url));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "nginx did not start; see {}",
        dir.join("error.log").display()
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).exists()))
}

/// A JWT for `person` by the device grant, over plain HTTP.
async fn access_token(server: &Server, person: &Person) -> Result<String> {
    let http = reqwest::Client::new();
    let started: serde_json::Value = http
        .post(server.url("/oauth/device_authorization"))
        .form(&[("client_id", "latchkey-cli"), ("scope", "openid")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_code = started["user_code"].as_str().context("user_code")?;
    person
        .decide_device_code(user_code, Decision::Approve)
        .await?;
    let tokens: serde_json::Value = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            (
                "device_code",
                started["device_code"].as_str().context("device_code")?,
            ),
            ("client_id", "latchkey-cli"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(tokens["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// One run of load: `concurrency` keep-alive connections for `seconds`, or paced at `rate`
/// requests per second in all when given. Every answer must be a 200.
async fn load(
    url: &str,
    credential: Option<&str>,
    concurrency: usize,
    seconds: u64,
    rate: Option<f64>,
) -> Result<(f64, Vec<Duration>)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let (http, url) = (http.clone(), url.to_owned());
        let credential = credential.map(str::to_owned);
        let period = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut pace = period.map(|p| {
                let mut ticks = tokio::time::interval_at(
                    Instant::now() + p.mul_f64(worker as f64 / concurrency as f64),
                    p,
                );
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            while Instant::now() < until {
                if let Some(ticks) = pace.as_mut() {
                    ticks.tick().await;
                }
                let mut request = http.get(&url);
                if let Some(credential) = &credential {
                    request = request.bearer_auth(credential);
                }
                let sent = Instant::now();
                let response = request.send().await?;
                let status = response.status();
                response.bytes().await?;
                ensure!(status == 200, "{url} answered {status}");
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done??);
    }
    Ok((
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    ))
}

fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
    samples.get(rank - 1).copied().unwrap_or_default()
}

pub async fn gate(bin: &Path, concurrency: usize, seconds: u64, idle_streams: usize) -> Result<()> {
    let files = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    // Each stream is a socket to the gate and one on to the upstream, in the gate and here.
    ensure!(
        files > 2 * idle_streams as u64 + 500,
        "RLIMIT_NOFILE is {files}: {idle_streams} proxied streams need {} (raise `ulimit -Hn` or pass --idle-streams)",
        2 * idle_streams + 500
    );
    let server = Server::start_with_config(
        bin,
        &format!(
            "[[oauth_clients]]\nid = \"gate\"\nname = \"gate\"\nsecret_sha256 = \"{}\"\n",
            sha256_hex(GATE_SECRET)
        ),
        &[],
    )
    .await?;
    let person =
        Person::verified_account(&server, "gate-bench@example.com", "load test password").await?;
    let key = person.new_api_key("bench").await?;
    let jwt = access_token(&server, &person).await?;
    let upstream = upstream().await?;
    let tmp = tempfile::tempdir()?;
    let (_nginx, nginx_url) = nginx(&upstream, tmp.path()).await?;
    let mut command = Command::new(bin);
    command
        .args(["gate", "--listen", "127.0.0.1:0", "--upstream", &upstream])
        .args(["--issuer", &server.url, "--client-id", "gate"])
        .args(["--rate-limit-per-key", "0", "--rate-limit-per-ip", "0"])
        .env("LATCHKEY_GATE_CLIENT_SECRET", GATE_SECRET)
        .env("LATCHKEY_LOG", "warn");
    let (gate, rest) = spawn_until(command, "latchkey gate is listening on ").await?;
    let gate_url = rest
        .split_whitespace()
        .next()
        .context("gate URL")?
        .to_owned();
    println!(
        "gate vs nginx: {concurrency} connections, {seconds} s per run, {} cores, RLIMIT_NOFILE {files}",
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // Warm every path (JWKS fetched, key introspected, pools filled).
    for (url, credential) in [
        (&gate_url, Some(key.as_str())),
        (&gate_url, Some(jwt.as_str())),
        (&nginx_url, None),
        (&upstream, None),
    ] {
        load(url, credential, concurrency, 1, None).await?;
    }
    let mut peaks = Vec::new();
    for (name, url, credential) in [
        ("direct to the upstream", &upstream, None),
        ("nginx (no auth)", &nginx_url, None),
        ("gate, API key", &gate_url, Some(key.as_str())),
        ("gate, JWT", &gate_url, Some(jwt.as_str())),
    ] {
        let (rps, mut latencies) = load(url, credential, concurrency, seconds, None).await?;
        println!("{name}: {rps:.0} requests/s");
        report(&format!("{name} at peak"), &mut latencies);
        peaks.push((name, rps));
    }
    let nginx_rps = peaks[1].1;
    for (name, rps) in &peaks[2..] {
        println!(
            "ratio {name} / nginx: {:.2} (target ≥ 1.0)",
            rps / nginx_rps
        );
    }

    // Added latency at half of the gate's peak (API key): the same paced load, direct and
    // through the gate.
    let half = peaks[2].1 / 2.0;
    let (_, mut direct) = load(&upstream, None, concurrency, seconds, Some(half)).await?;
    let (_, mut proxied) = load(&nginx_url, None, concurrency, seconds, Some(half)).await?;
    let (_, mut gated) = load(&gate_url, Some(&key), concurrency, seconds, Some(half)).await?;
    for q in [0.5, 0.99] {
        let base = quantile(&mut direct, q);
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "at {half:.0} requests/s, p{}: direct {:.0} µs; nginx {:.0} µs (adds {:.0}); gate {:.0} µs (adds {:.0})",
            (q * 100.0) as u32,
            micros(base),
            micros(quantile(&mut proxied, q)),
            micros(quantile(&mut proxied, q).saturating_sub(base)),
            micros(quantile(&mut gated, q)),
            micros(quantile(&mut gated, q).saturating_sub(base)),
        );
    }

    // Idle SSE streams held open through the gate.
    let pid = gate.id().context("gate pid")?;
    let before = Memory::of(pid)?;
    let http = Arc::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .http1_only()
            .build()?,
    );
    let mut streams = Vec::with_capacity(idle_streams);
    for chunk in 0..idle_streams.div_ceil(500) {
        let mut opening = JoinSet::new();
        for _ in 0..500.min(idle_streams - chunk * 500) {
            let (http, url, key) = (http.clone(), format!("{gate_url}/idle"), key.clone());
            opening.spawn(async move {
                let response = http.get(url).bearer_auth(key).send().await?;
                ensure!(
                    response.status() == 200,
                    "idle stream refused: {}",
                    response.status()
                );
                anyhow::Ok(response)
            });
        }
        while let Some(opened) = opening.join_next().await {
            streams.push(opened??);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = Memory::of(pid)?;
    println!(
        "gate RSS: {} idle, {} holding {} SSE streams (peak {}); target ≤ 100 MB",
        before.rss_mib(),
        held.rss_mib(),
        streams.len(),
        held.peak_mib()
    );
    drop(streams);
    Ok(())
}
