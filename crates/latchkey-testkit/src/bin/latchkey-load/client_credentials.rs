//! `client-credentials`: access tokens per second for a confidential client, from latchkey and,
//! in the same run with the same load, from node's `oidc-provider` 9 (in memory, EdDSA JWTs).

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use latchkey_testkit::{Server, sha256_hex};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::JoinSet,
    time::Instant,
};

use crate::report;

const CLIENT_ID: &str = "bench";
const CLIENT_SECRET: &str = "bench-secret-bench-secret-bench-secret";
/// oidc-provider issues JWTs for a resource server; latchkey records it in `aud` the same way.
const RESOURCE: &str = "https://api.bench.example";
pub(crate) static LATCHKEY_FORM: &[(&str, &str)] =
    &[("grant_type", "client_credentials"), ("resource", RESOURCE)];

/// The config declaring the confidential client the load runs as.
pub(crate) fn bench_client_config() -> String {
    format!(
        "[[oauth_clients]]\nid = \"{CLIENT_ID}\"\nname = \"bench\"\nsecret_sha256 = \"{}\"\n",
        sha256_hex(CLIENT_SECRET)
    )
}

/// One target's result.
pub(crate) struct Throughput {
    pub(crate) tokens_per_sec: f64,
    pub(crate) latencies: Vec<Duration>,
}

/// Hammers the token URLs (spread evenly, as a load balancer would) from `concurrency`
/// keep-alive connections for `seconds`, after a one-second warm-up; every response must be a
/// 200 carrying an access token.
pub(crate) async fn measure(
    token_urls: &[String],
    form: &[(&str, &str)],
    concurrency: usize,
    seconds: u64,
) -> Result<Throughput> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let form: std::sync::Arc<[(String, String)]> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let run = |until: Instant| {
        let mut workers = JoinSet::new();
        for worker in 0..concurrency {
            let (http, url) = (http.clone(), token_urls[worker % token_urls.len()].clone());
            let form = form.clone();
            workers.spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let response = http
                        .post(&url)
                        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                        .form(&*form)
                        .send()
                        .await?;
                    let status = response.status();
                    let body: serde_json::Value = response.json().await?;
                    ensure!(
                        status == 200 && body["access_token"].is_string(),
                        "{url} answered {status}: {body}"
                    );
                    latencies.push(started.elapsed());
                }
                anyhow::Ok(latencies)
            });
        }
        workers
    };
    let mut warm_up = run(Instant::now() + Duration::from_secs(1));
    while let Some(w) = warm_up.join_next().await {
        w??;
    }
    let started = Instant::now();
    let mut workers = run(started + Duration::from_secs(seconds));
    let mut latencies = Vec::new();
    while let Some(w) = workers.join_next().await {
        latencies.extend(w??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Throughput {
        tokens_per_sec: latencies.len() as f64 / elapsed,
        latencies,
    })
}

/// `node bench/oidc-provider/server.mjs <port>`, once it says it listens.
async fn start_oidc_provider(dir: &Path) -> Result<(Child, String)> {
    ensure!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run `npm ci` in {}",
        dir.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .arg(port.to_string())
        .current_dir(dir)
        .env("NODE_ENV", "production")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("listening on ") {
                return Ok(());
            }
        }
        bail!("oidc-provider exited before listening")
    })
    .await
    .context("oidc-provider did not start within 30 s")??;
    Ok((child, format!("http://127.0.0.1:{port}/token")))
}

pub async fn client_credentials(
    bin: &Path,
    oidc_provider_dir: &Path,
    concurrency: usize,
    seconds: u64,
) -> Result<()> {
    let server = Server::start_with_config(bin, &bench_client_config(), &[]).await?;
    let (_node, node_token_url) = start_oidc_provider(oidc_provider_dir).await?;
    println!(
        "client_credentials, {concurrency} connections, {seconds} s each (after 1 s warm-up), EdDSA JWTs for {RESOURCE}"
    );

    static PEER_FORM: &[(&str, &str)] = &[
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        ("resource", RESOURCE),
    ];
    let mut ours = measure(
        &[server.url("/oauth/token")],
        LATCHKEY_FORM,
        concurrency,
        seconds,
    )
    .await?;
    let mut peer = measure(&[node_token_url], PEER_FORM, concurrency, seconds).await?;
    for (name, result) in [("latchkey", &mut ours), ("oidc-provider 9", &mut peer)] {
        println!(
            "{name}: {:.0} tokens/s ({} tokens)",
            result.tokens_per_sec,
            result.latencies.len()
        );
        report(&format!("{name} token request"), &mut result.latencies);
    }
    println!(
        "ratio latchkey / oidc-provider: {:.1}× (target ≥ 5×)",
        ours.tokens_per_sec / peer.tokens_per_sec
    );
    Ok(())
}
