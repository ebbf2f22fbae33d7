//! `acme`, the example tool that embeds latchkey-client's command set in 15 lines, driven as a
//! person drives `latchkey`: every message, env var, hint, file and help text is in acme's name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use serde_json::Value;

use crate::{
    PASSWORD, bin,
    cli_login::{approve_consent, text},
};

/// The `acme` example, built beside this test binary by `cargo build --examples` (which
/// `scripts/test` runs).
pub(crate) fn acme() -> Result<PathBuf> {
    example("acme")
}

fn example(name: &str) -> Result<PathBuf> {
    let test_binary = std::env::current_exe()?;
    let acme = test_binary
        .parent()
        .and_then(Path::parent)
        .context("the test binary sits in <target>/<profile>/deps")?
        .join("examples")
        .join(name);
    anyhow::ensure!(
        acme.is_file(),
        "{} is missing: build it with `cargo build --workspace --examples`",
        acme.display()
    );
    Ok(acme)
}

/// A server minting `acme_` keys, with acme's public client declared as its README says.
async fn acme_server() -> Result<Server> {
    Server::start_with_config(
        bin(),
        "[[oauth_clients]]\nid = \"acme-cli\"\nname = \"acme CLI\"\n\
         redirect_uris = [\"http://127.0.0.1/callback\", \"http://[::1]/callback\"]\n",
        &["--key-prefix", "acme"],
    )
    .await
}

fn json(out: &std::process::Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("not JSON: {}{}", text(&out.stdout), text(&out.stderr)))
}

#[tokio::test]
async fn acme_speaks_in_its_own_name_from_help_to_logout() -> Result<()> {
    let server = acme_server().await?;
    let acme_bin = acme()?;
    let cli = CliHome::for_tool(&acme_bin, "acme", &server.url)?;

    // Help: acme's env vars, commands and default server; nothing says latchkey.
    for args in [
        &["--help"][..],
        &["login", "--help"],
        &["status", "--help"],
        &["logout", "--help"],
        &["token", "--help"],
        &["switch", "--help"],
        &["keys", "--help"],
        &["keys", "create", "--help"],
        &["keys", "list", "--help"],
        &["keys", "revoke", "--help"],
    ] {
        let help = cli.run(args).await?;
        assert!(help.status.success(), "{}", text(&help.stderr));
        let help = text(&help.stdout);
        assert!(
            !help.to_lowercase().contains("latchkey"),
            "{args:?}:\n{help}"
        );
    }
    let login_help = text(&cli.run(&["login", "--help"]).await?.stdout);
    assert!(login_help.contains("ACME_ISSUER"), "{login_help}");
    assert!(
        login_help.contains("| acme login --with-token"),
        "{login_help}"
    );
    let top_help = text(&cli.run(&["--help"]).await?.stdout);
    assert!(
        top_help.contains("Acme's command line") && top_help.contains("ACME_LOG"),
        "{top_help}"
    );

    // Not logged in: acme's hint, and the exit code for "log in".
    let nobody = cli.run(&["status"]).await?;
    assert_eq!(nobody.status.code(), Some(3), "{}", text(&nobody.stderr));
    assert!(
        text(&nobody.stderr).contains("hint: run `acme login`"),
        "{}",
        text(&nobody.stderr)
    );

    // A key from this server logs in; a latchkey-style key is not acme's.
    let (email_a, email_b) = (unique_email("acme-a"), unique_email("acme-b"));
    let a = Person::verified_account(&server, &email_a, PASSWORD).await?;
    let b = Person::verified_account(&server, &email_b, PASSWORD).await?;
    let key_a = a.new_api_key("acme").await?;
    let key_b = b.new_api_key("acme").await?;
    assert!(key_a.starts_with("acme_"), "{key_a}");
    let foreign = cli
        .run_with_stdin(&["login", "--with-token"], "lk_notacmeskey\n")
        .await?;
    assert_eq!(foreign.status.code(), Some(2), "{}", text(&foreign.stderr));
    assert!(
        text(&foreign.stderr).contains("not an API key for acme"),
        "{}",
        text(&foreign.stderr)
    );
    let empty = cli.run_with_stdin(&["login", "--with-token"], "").await?;
    assert!(
        text(&empty.stderr).contains("| acme login --with-token"),
        "{}",
        text(&empty.stderr)
    );
    assert!(!cli.credentials_file().exists(), "nothing stored yet");
    for key in [&key_a, &key_b] {
        let login = cli
            .run_with_stdin(
                &["login", "--with-token", "--insecure-storage"],
                &format!("{key}\n"),
            )
            .await?;
        assert!(login.status.success(), "{}", text(&login.stderr));
        assert!(text(&login.stdout).starts_with(&format!("Logged in to {}", server.url)));
    }
    assert!(
        cli.credentials_file()
            .ends_with(".config/acme/credentials.json")
            && cli.credentials_file().is_file()
    );

    // status, switch, token: the same commands and schema as latchkey's.
    let status = text(&cli.run(&["status"]).await?.stdout);
    assert!(
        status.contains(&format!("as {email_b}"))
            && status.contains(&format!(
                "Also logged in here: {email_a} (`acme switch <email>`)"
            )),
        "{status}"
    );
    let switched = json(
        &cli.run(&["switch", &email_a.to_uppercase(), "--json"])
            .await?,
    )?;
    let active: Vec<_> = switched["accounts"]
        .as_array()
        .context("accounts")?
        .iter()
        .filter(|a| a["active"] == true)
        .map(|a| a["email"].clone())
        .collect();
    assert_eq!(active, vec![Value::from(email_a.clone())]);
    assert_eq!(text(&cli.run(&["token"]).await?.stdout).trim(), key_a);

    // ACME_API_KEY wins over what is stored, and is checked for acme's prefix.
    let env_cli = CliHome::for_tool(&acme_bin, "acme", &server.url)?.env("ACME_API_KEY", &key_b);
    assert_eq!(text(&env_cli.run(&["token"]).await?.stdout).trim(), key_b);
    let wrong_env =
        CliHome::for_tool(&acme_bin, "acme", &server.url)?.env("ACME_API_KEY", "lk_notacmeskey");
    let refused = wrong_env.run(&["token"]).await?;
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("ACME_API_KEY does not hold a valid API key for acme"));

    // acme keys: the same key commands, minting acme's keys.
    let made = json(
        &cli.run(&["keys", "create", "--name", "from-acme", "--json"])
            .await?,
    )?;
    assert!(
        made["api_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("acme_")),
        "{made}"
    );
    let listed = text(&cli.run(&["keys", "list"]).await?.stdout);
    assert!(listed.contains("from-acme"), "{listed}");
    let revoked = cli.run(&["keys", "revoke", "from-acme", "--yes"]).await?;
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));

    // A key revoked on the server: acme says how to log in again, in its name.
    a.revoke_first_api_key().await?;
    let dead = cli.run(&["token", "--check"]).await?;
    assert_eq!(dead.status.code(), Some(3), "{}", text(&dead.stderr));
    assert!(text(&dead.stderr).contains("hint: run `acme login` to log in again"));

    // logout hands over to the other account and says so.
    let out = cli.run(&["logout"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("Now using {email_b}")),
        "{}",
        text(&out.stdout)
    );
    let all = cli.run(&["logout", "--all"]).await?;
    assert!(all.status.success(), "{}", text(&all.stderr));
    let gone = cli.run(&["token"]).await?;
    assert_eq!(gone.status.code(), Some(3));
    Ok(())
}

#[tokio::test]
async fn acme_logs_in_through_its_own_oauth_client() -> Result<()> {
    let server = acme_server().await?;
    let email = unique_email("acme-oauth");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let cli = CliHome::for_tool(&acme()?, "acme", &server.url)?;
    let login = cli.start_login(&["--method", "browser"]).await?;
    assert!(
        login.url.contains("client_id=acme-cli"),
        "acme logs in as its own client: {}",
        login.url
    );
    let consent = person.get(&login.url).await?;
    assert!(
        consent.html.contains("acme CLI") && !consent.html.contains("latchkey CLI"),
        "the consent page names acme: {}",
        consent.html
    );
    let callback_page = approve_consent(&person, &login.url, &login.code).await?;
    assert!(
        callback_page.contains("You are logged in"),
        "{callback_page}"
    );
    let (status, stdout, stderr) = login.finish().await?;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("as {email}")), "{stdout}");
    let status = json(&cli.run(&["status", "--json"]).await?)?;
    assert_eq!(status["credential"], "oauth");
    assert_eq!(status["email"], Value::from(email));
    Ok(())
}

#[test]
fn the_readme_shows_acme_as_it_is_and_it_is_at_most_15_lines() -> Result<()> {
    let root = crate::mcp::repo_root();
    let example = std::fs::read_to_string(root.join("crates/latchkey-client/examples/acme.rs"))?;
    let code: String = example
        .lines()
        .filter(|line| !line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    let code = code.trim();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    assert!(
        readme.contains(&format!("```rust\n{code}\n```")),
        "README.md shows examples/acme.rs as it is:\n{code}"
    );
    let own_lines = code
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("use "))
        .count();
    assert!(own_lines <= 15, "acme has {own_lines} lines of its own");
    Ok(())
}

#[tokio::test]
async fn acme_s_ci_mode_trades_the_job_s_oidc_token_with_nothing_stored() -> Result<()> {
    use crate::federation::{job_claims, through_gate, trusting_server};
    let idp = latchkey_testkit::OidcStandIn::start("unused", "unused").await?;
    let (server, gate, _, org_id) = trusting_server(
        &idp,
        "[[oauth_clients]]\nid = \"acme-cli\"\nname = \"acme CLI\"\n\
         redirect_uris = [\"http://127.0.0.1/callback\"]\n",
        &["--key-prefix", "acme"],
    )
    .await?;
    let job_token = idp.sign(&job_claims(&idp.issuer, "acme/app", "refs/heads/main"))?;
    let cli = CliHome::for_tool(&example("acme_ci")?, "acme", &server.url)?
        .env("ACME_CI_TOKEN", &job_token);
    let printed = cli.run(&[]).await?;
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let through = through_gate(&gate, text(&printed.stdout).trim()).await?;
    assert_eq!(through["org"], org_id.as_str(), "{through}");
    assert!(
        !cli.credentials_file().exists() && !cli.config_dir().join("acme").exists(),
        "nothing stored"
    );
    let unset = CliHome::for_tool(&example("acme_ci")?, "acme", &server.url)?
        .run(&[])
        .await?;
    assert_eq!(unset.status.code(), Some(2));
    assert!(text(&unset.stderr).contains("ACME_CI_TOKEN is not set"));
    Ok(())
}

#[tokio::test]
async fn acme_s_login_can_require_a_paid_entitlement() -> Result<()> {
    let server = Server::start_with_config(
        bin(),
        "[tiers.free]\nentitlements = []\n[tiers.pro]\nentitlements = [\"cloud_sync\"]\n\
         [billing]\nsubscribe_url = \"https://acme.example/pricing?org={org_id}\"\n",
        &["--key-prefix", "acme"],
    )
    .await?;
    let person = Person::verified_account(&server, &unique_email("acme-paid"), PASSWORD).await?;
    let key = person.new_api_key("acme").await?;
    let cli = CliHome::for_tool(&acme()?, "acme", &server.url)?;
    let login = cli
        .run_with_stdin(
            &[
                "login",
                "--with-token",
                "--require-entitlement",
                "cloud_sync",
            ],
            &format!("{key}\n"),
        )
        .await?;
    assert_eq!(login.status.code(), Some(6), "{}", text(&login.stderr));
    let stderr = text(&login.stderr);
    assert!(
        stderr.contains(
            "Active subscription required — Subscribe at: https://acme.example/pricing?org=org_"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("latchkey"), "in acme's words: {stderr}");
    // The credential is kept: subscribing is all that is left to do.
    assert!(cli.run(&["token"]).await?.status.success());
    Ok(())
}
