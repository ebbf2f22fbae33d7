//! Credential storage against a real Secret Service: gnome-keyring-daemon in a private D-Bus
//! session (`dbus-run-session`). The test script installs both when missing.

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{CliHome, LoginProcess, Person, Server, unique_email};
use serde_json::{Value, json};

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

/// Two people, each in their personal org and a shared one, on one machine and one keychain:
/// four credentials, none overwriting another, each acting for its own org.
const ORGS_SCRIPT: &str = r#"
set -e
printf 'test-keyring-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
for who in ANN BOB; do
  eval key=\$${who}_KEY
  printf '%s\n' "$key" | "$LATCHKEY_BIN" login --with-token >/dev/null
  echo "--- $who personal"; "$LATCHKEY_BIN" token
  "$LATCHKEY_BIN" switch --org "$TEAM" >/dev/null
  echo "--- $who team"; "$LATCHKEY_BIN" token
done
echo "--- switch"
"$LATCHKEY_BIN" switch --json
echo "--- secret-tool"
secret-tool search --all username "$TEAM" 2>&1
# Ann's email changes on the server meanwhile: her credentials are still found by her user id.
touch "$SYNC.ready"
while [ ! -e "$SYNC.changed" ]; do sleep 0.1; done
echo "--- ambiguous"; "$LATCHKEY_BIN" switch "$ANN_ID" 2>&1 || true
"$LATCHKEY_BIN" switch "$ANN_ID" --org "$TEAM" >/dev/null
echo "--- after email change"; "$LATCHKEY_BIN" token
echo "--- status after email change"; "$LATCHKEY_BIN" status --json
echo "--- switch after email change"; "$LATCHKEY_BIN" switch --json
echo "--- end"
"#;

#[tokio::test]
async fn two_people_with_two_orgs_each_keep_four_credentials_in_one_keychain() -> Result<()> {
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        ensure!(
            have(tool),
            "{tool} is missing: run the README test command, which installs it"
        );
    }
    let server = Server::start(bin()).await?;
    let mut people = Vec::new();
    for tag in ["ann", "bob"] {
        let person = Person::verified_account(&server, &unique_email(tag), PASSWORD).await?;
        let key = person.new_api_key("login").await?;
        let me = person.me().await?;
        people.push((person, key, me));
    }
    // Ann's team, which Bob joins (made here through the API: the CLI is the subject).
    let team = format!("kc-team-{}", std::process::id());
    let http = reqwest::Client::new();
    let api = |key: &str, method: reqwest::Method, path: String, body: Value| {
        http.request(method, server.url(&path))
            .bearer_auth(key.to_owned())
            .json(&body)
            .send()
    };
    api(
        &people[0].1,
        reqwest::Method::POST,
        "/v1/orgs".into(),
        serde_json::json!({"slug": team}),
    )
    .await?
    .error_for_status()?;
    let bob_email = people[1].2["email"].as_str().context("email")?.to_owned();
    api(
        &people[0].1,
        reqwest::Method::POST,
        format!("/v1/orgs/{team}/invitations"),
        serde_json::json!({"email": bob_email}),
    )
    .await?
    .error_for_status()?;
    let link = server
        .outbox()?
        .into_iter()
        .rev()
        .find(|m| m.to == bob_email)
        .and_then(|m| {
            m.text
                .split_whitespace()
                .find(|w| w.contains("/invitations/accept?token="))
                .map(str::to_owned)
        })
        .context("the invitation")?;
    let page = people[1].0.get(&link).await?;
    people[1]
        .0
        .post_form(
            "/invitations/accept",
            &[
                ("csrf", &page.csrf()?),
                ("token", &page.input("token").context("token")?),
            ],
        )
        .await?;

    let cli = CliHome::new(bin(), &server.url)?
        .env("ANN_KEY", &people[0].1)
        .env("BOB_KEY", &people[1].1)
        .env("TEAM", &team);
    let sync = cli.config_dir().with_file_name("sync");
    let ann_id = people[0].2["user_id"]
        .as_str()
        .context("user_id")?
        .to_owned();
    let session = cli
        .program(
            "dbus-run-session".as_ref(),
            &["--", "sh", "-c", ORGS_SCRIPT],
        )
        .env("SYNC", &sync)
        .env("ANN_ID", &ann_id)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let ready = sync.with_extension("ready");
    for _ in 0..600 {
        if ready.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let new_email = unique_email("ann-renamed");
    let changed = latchkey_testkit::execute(
        &server.database_url,
        &format!("UPDATE users SET email = '{new_email}' WHERE id = '{ann_id}'"),
    )
    .await?;
    ensure!(changed == 1, "the email change touched {changed} rows");
    std::fs::write(sync.with_extension("changed"), "")?;
    let output = session.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "the session failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let section = |name: &str| {
        stdout
            .split(&format!("--- {name}\n"))
            .nth(1)
            .and_then(|rest| rest.split("\n---").next())
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    // Each of the four credentials acts for its person and org.
    for (index, who) in ["ANN", "BOB"].into_iter().enumerate() {
        let personal = people[index].2["org"]["slug"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for (org, expected) in [("personal", personal.as_str()), ("team", team.as_str())] {
            let token = section(&format!("{who} {org}"));
            let me: Value = http
                .get(server.url("/v1/me"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            assert_eq!(
                me["user_id"], people[index].2["user_id"],
                "{who} {org}: {me}"
            );
            assert_eq!(me["acting_org"]["slug"], expected, "{who} {org}: {me}");
        }
    }
    let listed: Value = serde_json::from_str(&section("switch"))?;
    let accounts = listed["accounts"].as_array().context("accounts")?;
    assert_eq!(accounts.len(), 4, "{listed}");
    assert!(
        accounts.iter().all(|a| a["storage"] == "keychain"),
        "{listed}"
    );
    // After Ann's email changed on the server, her credential is found by her user id and
    // says who she is now; still four credentials, none added or lost.
    let ambiguous = section("ambiguous");
    assert!(
        ambiguous.contains("matches several accounts") && ambiguous.contains("--org"),
        "{ambiguous}"
    );
    let after = section("after email change");
    assert_eq!(after, section("ANN team"), "the same credential, found");
    let status: Value = serde_json::from_str(&section("status after email change"))?;
    assert_eq!(
        (&status["user_id"], &status["email"]),
        (&json!(ann_id), &json!(new_email))
    );
    let relisted: Value = serde_json::from_str(&section("switch after email change"))?;
    assert_eq!(relisted["accounts"].as_array().map(Vec::len), Some(4));
    // In the keychain: one entry per person for the team, under each person's user id.
    let secrets = section("secret-tool");
    for (_, _, me) in &people {
        let service = format!(
            "attribute.service = latchkey:{}:{}",
            server.addr,
            me["user_id"].as_str().unwrap_or_default()
        );
        assert!(secrets.contains(&service), "{service} not in:\n{secrets}");
    }
    Ok(())
}
