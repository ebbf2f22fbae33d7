//! `latchkey keys create|list|revoke`: keys made on the command line, used through the gate,
//! limited by scopes, expired, revoked; and no one else's keys reachable by id, prefix or name.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use serde_json::Value;

use crate::{
    PASSWORD, bin,
    cli_login::text,
    gate_proxy::{answering_upstream, gate, issuer, server_with_gate, upstream},
};

/// A verified person whose CLI is logged in with a key made on the account page.
async fn logged_in(server: &Server, tag: &str) -> Result<(Person, CliHome)> {
    let person = Person::verified_account(server, &unique_email(tag), PASSWORD).await?;
    let login_key = person.new_api_key("login").await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{login_key}\n"))
        .await?;
    anyhow::ensure!(login.status.success(), "{}", text(&login.stderr));
    Ok((person, cli))
}

/// `keys create … --json`: the new key and what the server says of it.
async fn create(cli: &CliHome, args: &[&str]) -> Result<Value> {
    let mut all = vec!["keys", "create", "--json"];
    all.extend_from_slice(args);
    let out = cli.run(&all).await?;
    anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn status_through(gate: &str, key: &str) -> Result<u16> {
    Ok(reqwest::Client::new()
        .get(format!("{gate}/echo"))
        .bearer_auth(key)
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test]
async fn keys_made_on_the_command_line_pass_the_gate_by_scope_until_revoked() -> Result<()> {
    let server = issuer().await?;
    let upstream = upstream().await?;
    let (_gate, gate_url) = gate(
        &server,
        &upstream,
        &["--require-scope", "deploy", "--key-cache-secs", "1"],
    )
    .await?;
    let (person, cli) = logged_in(&server, "keys-cli").await?;
    let me = person.me().await?;

    let deploy = create(
        &cli,
        &[
            "--name",
            "deploy-bot",
            "--expires",
            "30d",
            "--scope",
            "deploy",
        ],
    )
    .await?;
    let deploy_key = deploy["api_key"].as_str().context("key")?.to_owned();
    assert_eq!(deploy["scopes"], serde_json::json!(["deploy"]));
    assert!(deploy["expires_at"].is_string(), "{deploy}");
    let read = create(&cli, &["--name", "reader", "--scope", "read"]).await?;
    let read_key = read["api_key"].as_str().context("key")?.to_owned();

    // Text: the key alone on stdout, for `KEY=$(latchkey keys create …)`.
    let plain = cli.run(&["keys", "create", "--name", "ci"]).await?;
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let ci_key = text(&plain.stdout).trim().to_owned();
    assert!(
        ci_key.starts_with("lk_") && !ci_key.contains(' '),
        "{ci_key}"
    );
    assert!(text(&plain.stderr).contains("shown only this once"));

    let listed = text(&cli.run(&["keys", "list"]).await?.stdout);
    let header = listed.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "KEY",
        "ORG",
        "CREATED",
        "LAST USED",
        "USES",
        "EXPIRES",
        "SCOPES",
    ] {
        assert!(header.contains(column), "{listed}");
    }
    let row = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    let org = me["org"]["slug"].as_str().context("org")?;
    assert!(row("deploy-bot").contains(org) && row("deploy-bot").ends_with("deploy"));
    assert!(row("ci").ends_with("all"), "{listed}");
    assert!(row("ci").contains("never"), "{listed}");

    // The gate wants `deploy`: a key limited to it passes, an unlimited key passes, a key
    // limited to something else does not.
    assert_eq!(status_through(&gate_url, &deploy_key).await?, 200);
    assert_eq!(status_through(&gate_url, &ci_key).await?, 200);
    assert_eq!(status_through(&gate_url, &read_key).await?, 403);
    // The upstream learns what each key may do.
    let scopes_seen = |key: String| {
        let gate_url = gate_url.clone();
        async move {
            let echoed: Value = reqwest::Client::new()
                .get(format!("{gate_url}/echo"))
                .bearer_auth(key)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(echoed["scopes"].clone())
        }
    };
    assert_eq!(scopes_seen(deploy_key.clone()).await?, "deploy");
    assert_eq!(scopes_seen(ci_key.clone()).await?, "*");

    // Not on a terminal, revoking wants --yes, and nothing changes without it.
    let unconfirmed = cli.run(&["keys", "revoke", "deploy-bot"]).await?;
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(text(&unconfirmed.stderr).contains("--yes"));
    assert_eq!(status_through(&gate_url, &deploy_key).await?, 200);

    let revoked = cli.run(&["keys", "revoke", "deploy-bot", "--yes"]).await?;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert!(text(&revoked.stdout).contains("Revoked the key \"deploy-bot\""));
    // The gate's cache is 1 s here: refused within that.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_through(&gate_url, &deploy_key).await? != 401 {
        assert!(
            Instant::now() < deadline,
            "the gate still admits a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!text(&cli.run(&["keys", "list"]).await?.stdout).contains("deploy-bot"));
    Ok(())
}

#[tokio::test]
async fn no_one_reaches_another_persons_keys_by_id_prefix_or_name() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (owner, owner_cli) = logged_in(&server, "keys-owner").await?;
    let (_, other_cli) = logged_in(&server, "keys-other").await?;
    let made = create(&owner_cli, &["--name", "owners-key"]).await?;
    let key = made["api_key"].as_str().context("key")?.to_owned();
    let id = made["id"].as_str().context("id")?.to_owned();
    let prefix = made["key_prefix"].as_str().context("prefix")?.to_owned();

    let theirs: Value =
        serde_json::from_slice(&other_cli.run(&["keys", "list", "--json"]).await?.stdout)?;
    let names: Vec<&str> = theirs["api_keys"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["login"], "only their own key");
    for which in [&id, &prefix, &"owners-key".to_owned()] {
        let attempt = other_cli.run(&["keys", "revoke", which, "--yes"]).await?;
        assert_eq!(attempt.status.code(), Some(2), "{}", text(&attempt.stderr));
        assert!(text(&attempt.stderr).contains("you have no API key"));
    }
    // Straight at the API, with the other person's credential: as if the key did not exist.
    let other_key = other_cli.run(&["token"]).await?;
    let direct = reqwest::Client::new()
        .delete(server.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(text(&other_key.stdout).trim())
        .send()
        .await?;
    assert_eq!(direct.status(), 404);
    assert_eq!(
        owner.api_key_count().await?,
        2,
        "the owner's keys are untouched"
    );
    let still = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await?;
    assert_eq!(still.status(), 200);
    Ok(())
}

#[tokio::test]
async fn the_in_process_gate_refuses_revoked_and_expired_keys_at_once() -> Result<()> {
    let upstream = answering_upstream().await?;
    let (server, gate_url) = server_with_gate(&upstream).await?;
    let (_, cli) = logged_in(&server, "keys-inproc").await?;
    let brief = create(&cli, &["--name", "brief", "--expires", "4s"]).await?;
    let brief_key = brief["api_key"].as_str().context("key")?.to_owned();
    assert_eq!(status_through(&gate_url, &brief_key).await?, 200);
    let doomed = create(&cli, &["--name", "doomed"]).await?;
    let doomed_key = doomed["api_key"].as_str().context("key")?.to_owned();
    assert_eq!(status_through(&gate_url, &doomed_key).await?, 200);

    let prefix = doomed["key_prefix"].as_str().context("prefix")?;
    let revoked = cli
        .run(&["keys", "revoke", &format!("{prefix}…"), "--yes"])
        .await?;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert_eq!(status_through(&gate_url, &doomed_key).await?, 401);

    // Expired: refused with the very answer a revoked key gets, and listed as expired.
    let expires_at = brief["expires_at"].as_str().context("expiry")?;
    let expires_at =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)?;
    let wait = expires_at - time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let answer = |key: String| {
        let gate_url = gate_url.clone();
        async move {
            let response = reqwest::Client::new()
                .get(format!("{gate_url}/x"))
                .bearer_auth(key)
                .send()
                .await?;
            anyhow::Ok((response.status().as_u16(), response.text().await?))
        }
    };
    assert_eq!(answer(brief_key).await?, answer(doomed_key).await?);
    let listed: Value =
        serde_json::from_slice(&cli.run(&["keys", "list", "--json"]).await?.stdout)?;
    let brief_row = listed["api_keys"]
        .as_array()
        .context("list")?
        .iter()
        .find(|k| k["name"] == "brief")
        .context("an expired key is still listed")?;
    assert_eq!(brief_row["expired"], true);
    assert!(text(&cli.run(&["keys", "list"]).await?.stdout).contains("expired"));
    Ok(())
}

#[tokio::test]
async fn a_key_limited_to_scopes_cannot_manage_keys_or_widen_itself() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (_, cli) = logged_in(&server, "keys-scoped").await?;
    let narrow = create(&cli, &["--name", "narrow", "--scope", "read"]).await?;
    let narrow_key = narrow["api_key"].as_str().context("key")?;
    let manager = create(
        &cli,
        &[
            "--name", "manager", "--scope", "read", "--scope", "api_keys",
        ],
    )
    .await?;
    let manager_key = manager["api_key"].as_str().context("key")?;
    let http = reqwest::Client::new();
    let keys_url = server.url("/v1/api-keys");

    let listing = http.get(&keys_url).bearer_auth(narrow_key).send().await?;
    assert_eq!(listing.status(), 403);
    let body: Value = listing.json().await?;
    assert_eq!(body["error"], "insufficient_scope");
    let made = http
        .post(&keys_url)
        .bearer_auth(narrow_key)
        .json(&serde_json::json!({"name": "escape"}))
        .send()
        .await?;
    assert_eq!(made.status(), 403);

    let wider = http
        .post(&keys_url)
        .bearer_auth(manager_key)
        .json(&serde_json::json!({"name": "wider", "scopes": ["read", "admin"]}))
        .send()
        .await?;
    assert_eq!(wider.status(), 403);
    let inherited: Value = http
        .post(&keys_url)
        .bearer_auth(manager_key)
        .json(&serde_json::json!({"name": "child"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(inherited["scopes"], serde_json::json!(["read", "api_keys"]));

    // Bad input: a clear 400, and nothing made.
    for bad in [
        serde_json::json!({"name": "x", "scopes": ["has space"]}),
        serde_json::json!({"name": "x", "expires_in": 0}),
        serde_json::json!({"name": "x", "expires_in": 3600, "expires_in_days": 1}),
    ] {
        let refused = http
            .post(&keys_url)
            .bearer_auth(manager_key)
            .json(&bad)
            .send()
            .await?;
        assert_eq!(refused.status(), 400, "{bad}");
    }
    let elsewhere = cli
        .run(&["keys", "create", "--name", "x", "--org", "not-my-org"])
        .await?;
    assert_eq!(
        elsewhere.status.code(),
        Some(3),
        "{}",
        text(&elsewhere.stderr)
    );
    assert!(text(&elsewhere.stderr).contains("not a member of the org"));
    let bad_scope = cli
        .run(&["keys", "create", "--name", "x", "--scope", "two words"])
        .await?;
    assert_eq!(
        bad_scope.status.code(),
        Some(2),
        "{}",
        text(&bad_scope.stderr)
    );
    assert!(text(&bad_scope.stderr).contains("is not valid"));
    let bad_lifetime = cli
        .run(&["keys", "create", "--name", "x", "--expires", "30"])
        .await?;
    assert_eq!(bad_lifetime.status.code(), Some(2));
    assert!(text(&bad_lifetime.stderr).contains("use a number and a unit"));
    let count = serde_json::from_slice::<Value>(
        &cli.run(&["keys", "list", "--json"]).await?.stdout,
    )?["api_keys"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(count, 4, "login, narrow, manager, child");
    Ok(())
}

/// `keys revoke` on a terminal (a pty from util-linux `script`), answering `input` at the prompt.
async fn revoke_on_a_terminal(cli: &CliHome, name: &str, input: &str) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let command = format!("\"$LATCHKEY_BIN\" keys revoke {name}");
    let mut child = cli
        .program("script".as_ref(), &["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await??;
    anyhow::ensure!(output.status.success(), "{}", text(&output.stderr));
    Ok(text(&output.stdout))
}

#[tokio::test]
async fn revoking_on_a_terminal_asks_first() -> Result<()> {
    let server = Server::start(bin()).await?;
    let (_, cli) = logged_in(&server, "keys-terminal").await?;
    create(&cli, &["--name", "asked"]).await?;
    let declined = revoke_on_a_terminal(&cli, "asked", "n\n").await?;
    assert!(
        declined.contains("Revoke the key \"asked\"") && declined.contains("Nothing was revoked"),
        "{declined}"
    );
    assert!(text(&cli.run(&["keys", "list"]).await?.stdout).contains("asked"));
    let accepted = revoke_on_a_terminal(&cli, "asked", "y\n").await?;
    assert!(accepted.contains("Revoked the key \"asked\""), "{accepted}");
    assert!(!text(&cli.run(&["keys", "list"]).await?.stdout).contains("asked"));
    Ok(())
}
