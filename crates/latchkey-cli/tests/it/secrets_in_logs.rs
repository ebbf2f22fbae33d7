//! No secret in any log line: the server and the CLI both log at `debug` while a person logs in
//! by every method (browser, device, token flow, hand-off, pasted key), refreshes, checks and
//! logs out; then every line is searched for anything shaped like a key, a token, a code, a
//! wait secret or a session, and for the password.

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Decision, Person, Server, unique_email};
use regex::Regex;

use crate::{
    PASSWORD, bin,
    cli_login::{browser_login, data_attribute, send_key_on_handoff_page},
};

/// Everything a login method printed to stderr (its log) and stdout.
fn output(status: std::process::ExitStatus, stdout: String, stderr: String) -> Result<String> {
    anyhow::ensure!(status.success(), "{stdout}\n{stderr}");
    Ok(format!("{stdout}\n{stderr}"))
}

async fn run(cli: &CliHome, args: &[&str]) -> Result<String> {
    let out = cli.run(args).await?;
    output(
        out.status,
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    )
}

/// Logs in through the mgrep hand-off page: the person confirms, the page posts the key.
async fn handoff_login(server: &Server, cli: &CliHome, person: &Person) -> Result<String> {
    let auth_url = server.url("/cli/auth");
    let login = cli
        .start_login(&["--method", "browser", "--auth-url", &auth_url])
        .await?;
    let (_, sent) = send_key_on_handoff_page(person, &login.url).await?;
    let key = data_attribute(&sent.html, "key").context("key")?;
    let state = data_attribute(&sent.html, "state").context("state")?;
    let callback = data_attribute(&sent.html, "redirect").context("redirect")?;
    reqwest::Client::new()
        .post(&callback)
        .header("origin", &server.url)
        .json(&serde_json::json!({ "apiKey": key, "state": state }))
        .send()
        .await?
        .error_for_status()?;
    let (status, stdout, stderr) = login.finish().await?;
    output(status, stdout, stderr)
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_through_every_login_method() -> Result<()> {
    let server = Server::start_logging(bin()).await?;
    let email = unique_email("quiet");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let mut cli_logs = String::new();

    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOG", "debug");
    let login = cli.start_token_flow_login(&[]).await?;
    person.approve(&login.url).await?;
    let (status, stdout, stderr) = login.finish().await?;
    cli_logs += &output(status, stdout, stderr)?;
    cli_logs += &run(&cli, &["status"]).await?;
    cli_logs += &run(&cli, &["logout"]).await?;

    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOG", "debug");
    browser_login(&server, &cli, &person).await?;
    cli_logs += &run(&cli, &["status", "--check"]).await?;
    cli_logs += &run(&cli, &["logout"]).await?;

    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOG", "debug");
    let login = cli.start_login(&["--method", "device"]).await?;
    person
        .decide_device_code(&login.code, Decision::Approve)
        .await?;
    let (status, stdout, stderr) = login.finish().await?;
    cli_logs += &output(status, stdout, stderr)?;
    let token = cli.run(&["token"]).await?;
    // `token` prints the token on stdout by design; its log is stderr.
    cli_logs += &String::from_utf8(token.stderr)?;
    cli_logs += &run(&cli, &["logout"]).await?;

    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOG", "debug");
    cli_logs += &handoff_login(&server, &cli, &person).await?;

    let cli = CliHome::new(bin(), &server.url)?.env("LATCHKEY_LOG", "debug");
    let key = person.new_api_key("pasted").await?;
    let pasted = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{key}\n"))
        .await?;
    cli_logs += &output(
        pasted.status,
        String::from_utf8(pasted.stdout)?,
        String::from_utf8(pasted.stderr)?,
    )?;

    let server_log = server.log()?;
    // The controls: both logged at debug, and the search finds a secret where there is one.
    assert!(server_log.contains("DEBUG"), "the server logged at debug");
    assert!(
        cli_logs.contains("DEBUG"),
        "the CLI logged at debug: {cli_logs}"
    );
    let secret_shapes = Regex::new(concat!(
        r"lk_[0-9A-Za-z]{36}",                         // API keys
        r"|lk(?:w|s|v|c|r|d|u|p|cs)_[0-9A-Za-z]{20,}", // wait secrets, sessions, links, codes, tokens
        r"|eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.", // JWTs
    ))?;
    assert!(
        secret_shapes.is_match(&key),
        "the search recognises an API key"
    );
    for (whose, log) in [("server", &server_log), ("CLI", &cli_logs)] {
        // In --dev, mails go to the log instead of SMTP, links and all, under their own
        // target: that is the dev mail transport, not a log line.
        for line in log.lines().filter(|l| !l.contains(" latchkey::dev_mail:")) {
            assert!(
                !secret_shapes.is_match(line) && !line.contains(PASSWORD),
                "a secret in the {whose}'s log: {line}"
            );
        }
    }
    Ok(())
}
