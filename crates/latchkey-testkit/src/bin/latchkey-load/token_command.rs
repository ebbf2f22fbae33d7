//! `token-command`: the whole-process wall time of `latchkey token` with a fresh OAuth token in
//! the credential file: what a script pays per `$(latchkey token)`.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{CliHome, Decision, Person, Server};
use tokio::time::Instant;

use crate::report;

pub async fn token_command(bin: &Path, runs: usize) -> Result<()> {
    let server = Server::start(bin).await?;
    let person =
        Person::verified_account(&server, "token@example.com", "load test password").await?;
    let cli = CliHome::new(bin, &server.url)?;
    let login = cli.start_login(&["--method", "device"]).await?;
    person
        .decide_device_code(&login.code, Decision::Approve)
        .await?;
    let (status, _, stderr) = login.finish().await?;
    ensure!(status.success(), "the device login failed: {stderr}");

    let mut times = Vec::with_capacity(runs);
    let mut printed = None;
    for _ in 0..runs {
        let started = Instant::now();
        let output = cli
            .command(&["token"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?;
        times.push(started.elapsed());
        ensure!(output.status.success(), "latchkey token failed");
        let token = String::from_utf8(output.stdout)?;
        ensure!(
            printed.get_or_insert_with(|| token.clone()) == &token,
            "the token changed: a refresh happened, so this is not the cached path"
        );
    }
    let token = printed.context("no runs")?;
    ensure!(token.trim().split('.').count() == 3, "not a JWT: {token}");
    let mean = times.iter().sum::<Duration>() / u32::try_from(runs)?;
    println!(
        "`latchkey token`, fresh OAuth token in the 0600 file, {runs} runs: mean {:.2} ms",
        mean.as_secs_f64() * 1e3
    );
    report("latchkey token wall time", &mut times);
    Ok(())
}
