//! The load harness behind BENCHMARKS.md. It starts the release `latchkey serve --dev` on an
//! ephemeral port with a fresh data directory and plays CLIs and a person against it over HTTP:
//!
//! - `approve-latency`: the time from pressing Approve to the CLI's long-poll wait returning
//!   the key, over many flows;
//! - `held-waits`: the server's memory with many waits held open at once, and how fast an
//!   approval still wakes its wait while they are held;
//! - `client-credentials`: access tokens per second, against node's oidc-provider in the same run;
//! - `exchange`: token exchanges (an API key, a CI job's OIDC token) per second beside
//!   `client_credentials`;
//! - `token-command`: the wall time of `latchkey token` with a cached token;
//! - `replicas`: token flows and client_credentials on SQLite and on PostgreSQL with one and two
//!   replicas, and the cross-replica wake-up latency.

mod client_credentials;
mod exchange;
mod gate;
mod replicas;
mod token_command;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use latchkey_proto::wire::{TokenFlowCreateResponse, TokenFlowWaitResponse};
use latchkey_testkit::{Decision, Person, Server};
use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, sleep},
};

#[derive(Parser)]
#[command(about = "Load harness for latchkey serve (see BENCHMARKS.md)")]
struct Args {
    /// The latchkey binary to run; build it first with `cargo build --release -p latchkey-cli`.
    #[arg(long, default_value = "target/release/latchkey")]
    bin: PathBuf,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Approve → wait-return latency, p50/p99 over `--flows` token flows.
    ApproveLatency {
        #[arg(long, default_value_t = 1000)]
        flows: usize,
        /// Flows in progress at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Server RSS with `--waits` token-flow waits held open at once.
    HeldWaits {
        #[arg(long, default_value_t = 10_000)]
        waits: usize,
        /// Flows approved (one at a time) while the others are held, to time their wake-up.
        #[arg(long, default_value_t = 100)]
        approvals: usize,
        /// How each wait is sent: as the latchkey CLI does (reqwest: head and body in one
        /// `writev`, on a keep-alive connection), or on a plain socket with `Connection: close`,
        /// head and body in one write (as Python's http.client, Go and curl send a small body)
        /// or in two, the body 5 ms after the head.
        #[arg(long, value_enum, default_value_t = WaitClient::Reqwest)]
        client: WaitClient,
    },
    /// `client_credentials` tokens per second: latchkey, then node's oidc-provider 9.
    ClientCredentials {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Where `bench/oidc-provider` (with its node_modules) is.
        #[arg(long, default_value = "bench/oidc-provider")]
        oidc_provider: PathBuf,
    },
    /// RFC 8693 token exchanges per second (an API key, a CI job's token) beside
    /// `client_credentials`, on one server.
    Exchange {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// `latchkey gate` against nginx (no auth) in front of the same upstream, loaded by wrk and
    /// oha (`scripts/bench` installs them), each shown not to be the bottleneck.
    Gate {
        /// Keep-alive connections of the load generator.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// Runs of each target; min, median and max are reported.
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Idle SSE streams held open through each proxy for the memory figure (7,000: the
        /// most the upstream chain holds under a 20,000-descriptor limit).
        #[arg(long, default_value_t = 7_000)]
        idle_streams: usize,
    },
    /// SQLite vs PostgreSQL with one and two replicas: token flows/s, wake-up latency,
    /// client_credentials tokens/s.
    Replicas {
        #[arg(long, default_value_t = 2000)]
        flows: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The PostgreSQL server to create the runs' databases on.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres: String,
    },
    /// Wall time of `latchkey token` (process start to exit) with a fresh cached token.
    TokenCommand {
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
}

/// What the token-flow scenarios share: a server, a signed-in person, a CLI's HTTP client.
struct TokenFlowRun {
    server: Server,
    person: Person,
    cli: reqwest::Client,
    files: u64,
}

impl TokenFlowRun {
    async fn start(bin: &std::path::Path) -> Result<Self> {
        // Each held wait is a socket here and one in the server (which inherits this limit).
        let files = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
        let server = Server::start(bin).await?;
        let person =
            Person::verified_account(&server, "load@example.com", "load test password").await?;
        let cli = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        println!(
            "latchkey-load: {} on {} cores, RLIMIT_NOFILE {files}",
            server.url,
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        Ok(Self {
            server,
            person,
            cli,
            files,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.bin.exists(),
        "{} does not exist; run `cargo build --release -p latchkey-cli` first",
        args.bin.display()
    );
    match args.scenario {
        Scenario::ApproveLatency { flows, concurrency } => {
            let run = TokenFlowRun::start(&args.bin).await?;
            approve_latency(&run.server, &run.person, &run.cli, flows, concurrency).await
        }
        Scenario::HeldWaits {
            waits,
            approvals,
            client,
        } => {
            let run = TokenFlowRun::start(&args.bin).await?;
            ensure!(
                run.files > waits as u64 + 200,
                "RLIMIT_NOFILE is {}; {waits} waits need about {} (raise the hard limit with `ulimit -Hn`)",
                run.files,
                waits + 200
            );
            let approvals = approvals.min(waits);
            held_waits(&run.server, &run.person, &run.cli, waits, approvals, client).await
        }
        Scenario::ClientCredentials {
            concurrency,
            seconds,
            oidc_provider,
        } => {
            client_credentials::client_credentials(&args.bin, &oidc_provider, concurrency, seconds)
                .await
        }
        Scenario::Exchange {
            concurrency,
            seconds,
        } => exchange::exchange(&args.bin, concurrency, seconds).await,
        Scenario::Replicas {
            flows,
            concurrency,
            seconds,
            postgres,
        } => replicas::replicas(&args.bin, &postgres, flows, concurrency, seconds).await,
        Scenario::TokenCommand { runs } => token_command::token_command(&args.bin, runs).await,
        Scenario::Gate {
            concurrency,
            seconds,
            repetitions,
            idle_streams,
        } => gate::gate(&args.bin, concurrency, seconds, repetitions, idle_streams).await,
    }
}

async fn approve_latency(
    server: &Server,
    person: &Person,
    cli: &reqwest::Client,
    flows: usize,
    concurrency: usize,
) -> Result<()> {
    let gate = std::sync::Arc::new(Semaphore::new(concurrency));
    let mut runs = JoinSet::new();
    let started = Instant::now();
    for _ in 0..flows {
        let permit = gate.clone().acquire_owned().await?;
        let (server_url, person, cli) = (server.url.clone(), person.clone(), cli.clone());
        runs.spawn(async move {
            let _permit = permit;
            one_approval(&server_url, &person, &cli).await
        });
    }
    let mut to_wait_return = Vec::with_capacity(flows);
    let mut approve_request = Vec::with_capacity(flows);
    while let Some(run) = runs.join_next().await {
        let timing = run??;
        to_wait_return.push(timing.to_wait_return);
        approve_request.push(timing.approve_request);
    }
    let elapsed = started.elapsed();
    let delivered = server
        .metric("latchkey_token_flows_delivered_total")
        .await?;
    ensure!(
        delivered == flows as u64,
        "the server delivered {delivered} keys for {flows} flows"
    );
    println!(
        "{flows} flows, {concurrency} at a time, in {:.1} s; every wait returned a key",
        elapsed.as_secs_f64()
    );
    report(
        "Approve pressed → wait returned the key",
        &mut to_wait_return,
    );
    report("Approve request (mint, seal, store)", &mut approve_request);
    Ok(())
}

struct ApprovalTiming {
    to_wait_return: Duration,
    approve_request: Duration,
}

/// One CLI login: create, wait (parked on the server), the person approves; times the approval.
async fn one_approval(
    server_url: &str,
    person: &Person,
    cli: &reqwest::Client,
) -> Result<ApprovalTiming> {
    let flow = create_flow(server_url, cli).await?;
    let form = person.approval_form(&flow.web_url).await?;
    let wait = tokio::spawn(wait_for_key(server_url.to_owned(), cli.clone(), flow));
    // Let the wait reach the server and park, so the figure includes the wake-up.
    sleep(Duration::from_millis(50)).await;
    let pressed = Instant::now();
    form.submit(person, Decision::Approve).await?;
    let approve_request = pressed.elapsed();
    let returned = wait.await??;
    Ok(ApprovalTiming {
        to_wait_return: returned - pressed,
        approve_request,
    })
}

async fn create_flow(server_url: &str, cli: &reqwest::Client) -> Result<TokenFlowCreateResponse> {
    Ok(cli
        .post(format!("{server_url}/v1/token-flow/create"))
        .json(&serde_json::json!({ "client_name": "latchkey-load" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The wait request for `flow`, held up to 60 s.
fn wait_body(flow: &TokenFlowCreateResponse) -> serde_json::Value {
    serde_json::json!({
        "token_flow_id": flow.token_flow_id,
        "wait_secret": flow.wait_secret,
        "timeout": 60,
    })
}

/// Whether a wait's answer carries the key (`false`: it timed out, ask again).
fn key_arrived(response: &TokenFlowWaitResponse) -> Result<bool> {
    if response.timeout {
        return Ok(false);
    }
    ensure!(response.api_key.is_some(), "the wait returned no key");
    Ok(true)
}

/// Long-polls until the key arrives; returns when it did.
async fn wait_for_key(
    server_url: String,
    cli: reqwest::Client,
    flow: TokenFlowCreateResponse,
) -> Result<Instant> {
    loop {
        let response: TokenFlowWaitResponse = cli
            .post(format!("{server_url}/v1/token-flow/wait"))
            .json(&wait_body(&flow))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let returned = Instant::now();
        if key_arrived(&response)? {
            return Ok(returned);
        }
    }
}

/// How the held waits are sent.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum WaitClient {
    Reqwest,
    OneWrite,
    TwoWrites,
}

/// [`wait_for_key`] over a plain socket, the connection closed by the server after each
/// answer; the request in one write, or its body in a second one 5 ms after the head.
async fn wait_on_plain_socket(
    server_url: String,
    flow: TokenFlowCreateResponse,
    two_writes: bool,
) -> Result<Instant> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server_url
        .strip_prefix("http://")
        .context("the harness talks plain HTTP")?;
    let body = serde_json::to_vec(&wait_body(&flow))?;
    let mut request = format!(
        "POST /v1/token-flow/wait HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let head_len = request.len();
    request.extend_from_slice(&body);
    loop {
        let mut socket = tokio::net::TcpStream::connect(address).await?;
        socket.set_nodelay(true)?;
        if two_writes {
            socket
                .write_all(&request[..head_len])
                .await
                .context("writing the head")?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            socket
                .write_all(&request[head_len..])
                .await
                .context("writing the body")?;
        } else {
            socket.write_all(&request).await.context("writing")?;
        }
        let mut answer = Vec::new();
        socket
            .read_to_end(&mut answer)
            .await
            .context("reading the answer")?;
        let returned = Instant::now();
        let answer = String::from_utf8(answer)?;
        let (head, json) = answer
            .split_once("\r\n\r\n")
            .context("the wait answer has no body")?;
        ensure!(head.starts_with("HTTP/1.1 200"), "the wait failed: {head}");
        if key_arrived(&serde_json::from_str(json)?)? {
            return Ok(returned);
        }
    }
}

async fn held_waits(
    server: &Server,
    person: &Person,
    cli: &reqwest::Client,
    waits: usize,
    approvals: usize,
    client: WaitClient,
) -> Result<()> {
    let pid = server.pid().context("the server is not running")?;
    let idle = Memory::of(pid)?;

    let gate = std::sync::Arc::new(Semaphore::new(64));
    let mut creating = JoinSet::new();
    for _ in 0..waits {
        let permit = gate.clone().acquire_owned().await?;
        let (server_url, cli) = (server.url.clone(), cli.clone());
        creating.spawn(async move {
            let _permit = permit;
            create_flow(&server_url, &cli).await
        });
    }
    let mut flows = Vec::with_capacity(waits);
    while let Some(flow) = creating.join_next().await {
        flows.push(flow??);
    }
    let created = Memory::of(pid)?;

    // Open the waits in batches, each one confirmed parked by the server's gauge, so the
    // listen backlog never overflows.
    let opened = Instant::now();
    let mut held = Vec::with_capacity(waits);
    let mut urls = Vec::with_capacity(waits);
    while !flows.is_empty() {
        let batch = flows.len().min(500);
        for flow in flows.drain(..batch) {
            urls.push(flow.web_url.clone());
            held.push(match client {
                WaitClient::Reqwest => {
                    tokio::spawn(wait_for_key(server.url.clone(), cli.clone(), flow))
                }
                WaitClient::OneWrite => {
                    tokio::spawn(wait_on_plain_socket(server.url.clone(), flow, false))
                }
                WaitClient::TwoWrites => {
                    tokio::spawn(wait_on_plain_socket(server.url.clone(), flow, true))
                }
            });
        }
        if let Err(e) = parked(server, held.len()).await {
            // A wait that ended early says why.
            for wait in held.iter_mut().filter(|wait| wait.is_finished()) {
                if let Err(why) = (&mut *wait).await? {
                    bail!("{e}: a wait failed: {why:#}");
                }
            }
            return Err(e);
        }
    }
    let open_for = opened.elapsed();
    let holding = Memory::of(pid)?;

    let mut wake = Vec::with_capacity(approvals);
    for (url, wait) in urls.iter().zip(held.iter_mut()).take(approvals) {
        let form = person.approval_form(url).await?;
        let pressed = Instant::now();
        form.submit(person, Decision::Approve).await?;
        wake.push((&mut *wait).await?? - pressed);
    }
    let still_held = server.metric("latchkey_token_flow_waits_open").await?;
    for wait in &held {
        wait.abort();
    }

    println!(
        "{waits} waits opened in {:.1} s; {still_held} still held after {approvals} approvals",
        open_for.as_secs_f64()
    );
    println!("server RSS idle:               {}", idle.rss_mib());
    println!("server RSS with {waits} flows:   {}", created.rss_mib());
    println!("server RSS holding {waits} waits: {}", holding.rss_mib());
    println!("server peak RSS (VmHWM):       {}", holding.peak_mib());
    report(
        &format!("Approve → wait returned, {} others held", waits - 1),
        &mut wake,
    );
    Ok(())
}

/// Waits until the server reports `count` waits held open.
async fn parked(server: &Server, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = server.metric("latchkey_token_flow_waits_open").await?;
        if open >= count as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {open} of {count} waits were held open after 60 s");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of a process, from /proc.
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading /proc/<pid>/status (the harness needs Linux)")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    fn rss_mib(&self) -> String {
        format!("{:.1} MiB", self.rss_kib as f64 / 1024.0)
    }

    fn peak_mib(&self) -> String {
        format!("{:.1} MiB", self.peak_kib as f64 / 1024.0)
    }
}

fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e3
    };
    println!(
        "{what}: n={} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}
