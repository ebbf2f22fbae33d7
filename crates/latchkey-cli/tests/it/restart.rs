//! The server dies (SIGKILL) or is stopped (SIGTERM) while a CLI waits; restarted on the same
//! data directory, the pending flow survives and the waiting CLI completes its login.

use anyhow::Result;
use latchkey_testkit::{CliHome, Person, Server, unique_email};

use crate::{PASSWORD, bin};

#[tokio::test]
async fn a_login_survives_a_server_kill_between_create_and_approve() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let email = unique_email("restart");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOGIN_WAIT_TIMEOUT", "2");
    let login = cli.start_token_flow_login(&[]).await?;

    server.kill().await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.restart().await?;

    // The session cookie is in the database too: the person is still signed in.
    person.approve(&login.url).await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email), "{stdout}");
    assert!(
        stderr.contains("still trying"),
        "the CLI reported the outage: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stopping_server_answers_held_waits_at_once() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let email = unique_email("sigterm");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    // Each wait the CLI sends may be held for 50 s.
    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOGIN_WAIT_TIMEOUT", "50");
    let login = cli.start_token_flow_login(&[]).await?;
    let held = std::time::Instant::now();
    while server.metric("latchkey_token_flow_waits_open").await? < 1 {
        anyhow::ensure!(
            held.elapsed().as_secs() < 10,
            "the CLI's wait never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let stopping = std::time::Instant::now();
    let exited =
        tokio::time::timeout(std::time::Duration::from_secs(20), server.terminate()).await??;
    assert!(exited.success(), "{exited:?}");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(5),
        "the held wait kept the server from stopping for {:?}",
        stopping.elapsed()
    );

    server.restart().await?;
    person.approve(&login.url).await?;
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&email), "{stdout}");
    Ok(())
}
