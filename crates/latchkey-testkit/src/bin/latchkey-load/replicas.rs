//! `replicas`: the same load on SQLite, on PostgreSQL with one replica, and on PostgreSQL with
//! two replicas behind an even split: token flows created → approved → delivered per second,
//! the approve → wait-return latency (across replicas when there are two: created and waited
//! on one, approved on the other), and `client_credentials` tokens per second.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Decision, Person, Server, TestDatabase};
use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, sleep},
};

use crate::{
    client_credentials::{LATCHKEY_FORM, bench_client_config, measure},
    create_flow, report, wait_for_key,
};

pub async fn replicas(
    bin: &std::path::Path,
    postgres: &str,
    flows: usize,
    concurrency: usize,
    seconds: u64,
) -> Result<()> {
    println!(
        "{flows} token flows ({concurrency} at a time) and {seconds} s of client_credentials ({concurrency} connections) per setup"
    );
    for (setup, replicas) in [("SQLite", 0), ("PostgreSQL", 1), ("PostgreSQL", 2)] {
        let database = match replicas {
            0 => None,
            _ => Some(TestDatabase::create(postgres).await?),
        };
        let mut extra = Vec::new();
        if let Some(db) = &database {
            extra.extend(["--database-url", db.url.as_str()]);
        }
        let first = Server::start_with_config(bin, &bench_client_config(), &extra).await?;
        let mut servers = vec![first];
        while servers.len() < replicas {
            servers.push(servers[0].replica().await?);
        }
        let label = match replicas {
            0 => "SQLite, 1 process".to_owned(),
            n => format!("{setup}, {n} replica{}", if n > 1 { "s" } else { "" }),
        };
        run_setup(&label, &servers, flows, concurrency, seconds).await?;
    }
    Ok(())
}

async fn run_setup(
    label: &str,
    servers: &[Server],
    flows: usize,
    concurrency: usize,
    seconds: u64,
) -> Result<()> {
    let person =
        Person::verified_account(&servers[0], "replicas@example.com", "load test password").await?;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let cli = reqwest::Client::new();
    let gate = std::sync::Arc::new(Semaphore::new(concurrency));
    let mut runs = JoinSet::new();
    let started = Instant::now();
    for i in 0..flows {
        let permit = gate.clone().acquire_owned().await?;
        let (waited_on, approved_on) = (
            urls[i % urls.len()].clone(),
            urls[(i + 1) % urls.len()].clone(),
        );
        let approver = Person {
            http: person.http.clone(),
            base: approved_on.clone(),
        };
        let cli = cli.clone();
        runs.spawn(async move {
            let _permit = permit;
            let flow = create_flow(&waited_on, &cli).await?;
            let page = flow.web_url.replacen(&waited_on, &approved_on, 1);
            let form = approver.approval_form(&page).await?;
            let wait = tokio::spawn(wait_for_key(waited_on, cli, flow));
            sleep(Duration::from_millis(20)).await;
            let pressed = Instant::now();
            form.submit(&approver, Decision::Approve).await?;
            let answered = Instant::now();
            let returned = wait.await??;
            // The wake-up is sent at commit, before the approval's answer is written, so a
            // wait often returns first; after it, only the notification path can be slow.
            anyhow::Ok((
                returned - pressed,
                answered - pressed,
                returned.saturating_duration_since(answered),
            ))
        });
    }
    let mut wake = Vec::with_capacity(flows);
    let mut approve_request = Vec::with_capacity(flows);
    let mut after_answer = Vec::with_capacity(flows);
    while let Some(run) = runs.join_next().await {
        let (to_return, approval, after) = run??;
        wake.push(to_return);
        approve_request.push(approval);
        after_answer.push(after);
    }
    let elapsed = started.elapsed();
    let mut delivered = 0;
    for server in servers {
        delivered += server
            .metric("latchkey_token_flows_delivered_total")
            .await?;
    }
    ensure!(
        delivered == flows as u64,
        "{delivered} keys delivered for {flows} flows"
    );
    let token_urls: Vec<String> = servers.iter().map(|s| s.url("/oauth/token")).collect();
    let mut tokens = measure(&token_urls, LATCHKEY_FORM, concurrency, seconds)
        .await
        .context("client_credentials")?;
    println!(
        "{label}: {:.0} token flows/s (create → approve → delivered); {:.0} client_credentials tokens/s",
        flows as f64 / elapsed.as_secs_f64(),
        tokens.tokens_per_sec
    );
    let across = if servers.len() > 1 {
        "approved on the other replica"
    } else {
        "same process"
    };
    report(&format!("  Approve → wait returned ({across})"), &mut wake);
    report(
        "  Approve request (mint, seal, commit)",
        &mut approve_request,
    );
    report(
        "  wait returned after the approval was answered",
        &mut after_answer,
    );
    report("  client_credentials request", &mut tokens.latencies);
    Ok(())
}
