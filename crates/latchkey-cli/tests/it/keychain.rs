//! Credential storage against a real Secret Service: gnome-keyring-daemon in a private D-Bus
//! session (`dbus-run-session`). The test script installs both when missing.

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{CliHome, LoginProcess, Person, Server, unique_email};
use serde_json::Value;

use crate::{PASSWORD, bin};

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Inside one private session bus: unlock a fresh login keyring, log in, then show status and
/// what the keychain itself holds.
const SESSION_SCRIPT: &str = r#"
set -e
printf 'test-keyring-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
"$LATCHKEY_BIN" login --method token-flow --no-browser
echo "--- status"
"$LATCHKEY_BIN" status --json
echo "--- secret-tool"
secret-tool search --all username "$KEYCHAIN_ACCOUNT" 2>&1
"#;

#[tokio::test]
async fn login_lands_in_the_secret_service_when_one_answers() -> Result<()> {
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        ensure!(
            have(tool),
            "{tool} is missing: run the README test command, which installs it"
        );
    }
    let server = Server::start(bin()).await?;
    let email = unique_email("keyring");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let me = person.me().await?;
    let org = me["org"]["slug"].as_str().context("org")?.to_owned();

    let cli = CliHome::new(bin(), &server.url)?.env("KEYCHAIN_ACCOUNT", &org);
    let session = cli.program(
        "dbus-run-session".as_ref(),
        &["--", "sh", "-c", SESSION_SCRIPT],
    );
    let login = LoginProcess::start(session).await?;
    person.approve(&login.url).await?;
    let (status, stdout, stderr) = login.finish().await?;
    ensure!(
        status.success(),
        "login in a D-Bus session failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("stored in the system keychain"), "{stdout}");
    assert!(
        !stderr.contains("no system keychain answers here"),
        "{stderr}"
    );

    let status_json = stdout
        .split("--- status")
        .nth(1)
        .and_then(|rest| rest.split("--- secret-tool").next())
        .context("no status output")?;
    let status: Value = serde_json::from_str(status_json.trim())?;
    assert_eq!(status["source"], "keychain");
    assert_eq!(status["email"], email.as_str());

    // The Secret Service holds the key under service latchkey:<issuer-host>:<user-id>.
    let service_line = format!(
        "attribute.service = latchkey:{}:{}",
        server.addr,
        me["user_id"].as_str().unwrap_or_default()
    );
    assert!(
        stdout.contains(&service_line),
        "{service_line} not in:\n{stdout}"
    );
    assert!(stdout.contains("secret = lk_"), "{stdout}");
    // And no file copy of the secret exists.
    let index = std::fs::read_to_string(cli.credentials_file())?;
    assert!(
        !index.contains("lk_"),
        "the index must not hold the key: {index}"
    );
    Ok(())
}

#[tokio::test]
async fn secure_storage_without_a_keychain_fails_clearly_and_stores_nothing() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&["--secure-storage"]).await?;
    let person = Person::verified_account(&server, &unique_email("secure"), PASSWORD).await?;
    person.approve(&login.url).await?;
    let (status, _, stderr) = login.finish().await?;
    assert_eq!(
        status.code(),
        Some(5),
        "storage failures have their own exit code: {stderr}"
    );
    assert!(
        stderr.contains("the system keychain is not available"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--secure-storage"),
        "it says what to change: {stderr}"
    );
    assert!(!cli.credentials_file().exists());
    Ok(())
}
