//! What the CLI prints, pinned with insta snapshots: messages are part of the interface, and a
//! change to one should be a decision, seen in review.

use std::process::Output;

use anyhow::Result;
use latchkey_testkit::{CliHome, Person, Server, unique_email};

use crate::{PASSWORD, bin};

/// Exit code, stdout and stderr as one text.
fn transcript(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `body` with what changes from run to run (the issuer's port, the temp config dir,
/// emails, codes, ids) replaced by names.
fn stable(issuer: &str, config_dir: Option<&str>, body: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex::escape(issuer), "[ISSUER]");
    if let Some(dir) = config_dir {
        settings.add_filter(&regex::escape(dir), "[CONFIG]");
    }
    settings.add_filter(r"tf_[A-Za-z0-9]+", "[FLOW]");
    settings.add_filter(r"[B-Z]{4}-[B-Z]{4}", "[CODE]");
    settings.add_filter(r"[a-z0-9]+-\d+-\d+@example\.com", "[EMAIL]");
    settings.add_filter(r"lk_[A-Za-z0-9]+…", "[KEY]…");
    settings.add_filter(r"\(org [a-z0-9-]+\)", "(org [ORG])");
    settings.add_filter(r"unix:path=[^`]+", "unix:path=[BUS]");
    // Inside a container the reason is the container, elsewhere the missing display.
    settings.add_filter(
        r"\((this is a container|there is no display)\)",
        "([NO BROWSER])",
    );
    settings.bind(body);
}

#[tokio::test]
async fn commands_that_need_a_login_say_how_to_get_one() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    for command in ["status", "token", "logout"] {
        let out = cli.run(&[command]).await?;
        stable(&server.url, None, || {
            // The same message for each of the three commands.
            insta::allow_duplicates! {
                insta::assert_snapshot!(transcript(&out), @r#"
                exit 3
                --- stdout
                --- stderr
                error: not logged in to [ISSUER]
                hint: run `latchkey login`
                "#);
            }
        });
    }
    Ok(())
}

#[tokio::test]
async fn an_unreachable_or_plain_http_issuer_is_explained() -> Result<()> {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", listener.local_addr()?)
    };
    let started = std::time::Instant::now();
    let unreachable = CliHome::new(bin(), &closed)?.run(&["login"]).await?;
    // A first connection that nothing accepts fails at once: no backoff for a wrong URL.
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "took {waited:?}"
    );
    let plain = CliHome::new(bin(), "http://auth.example.com")?
        .run(&["login"])
        .await?;
    stable(&closed, None, || {
        insta::assert_snapshot!(transcript(&unreachable), @r#"
            exit 4
            --- stdout
            --- stderr
            Connecting to [ISSUER]…
            No browser can open here ([NO BROWSER]): log in with a code on any device.
            error: nothing answers at [ISSUER] (Connection refused (os error 111)): check the URL, or that the server is running
            hint: set the server with --issuer or LATCHKEY_ISSUER
            "#);
        insta::assert_snapshot!(transcript(&plain), @r#"
            exit 2
            --- stdout
            --- stderr
            error: the issuer http://auth.example.com uses plain http on a host that is not this machine; use https
            "#);
    });
    Ok(())
}

#[tokio::test]
async fn login_status_and_logout_as_a_person_sees_them() -> Result<()> {
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli.start_token_flow_login(&[]).await?;
    let email = unique_email("output");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let printed = login.printed.join("\n");
    person.approve(&login.url).await?;
    let (exit, stdout, rest) = login.finish().await?;
    assert!(exit.success(), "{stdout}{rest}");
    let status = cli.run(&["status"]).await?;
    let logout = cli.run(&["logout"]).await?;
    let config_dir = cli.config_dir().display().to_string();
    stable(&server.url, Some(&config_dir), || {
        insta::assert_snapshot!(format!("{printed}\n{rest}--- stdout\n{stdout}"), @r#"
            Connecting to [ISSUER]…
            Open this URL in a browser to log in:
              [ISSUER]/login/cli?token_flow_id=[FLOW]&code=[CODE]
            Check that the page shows the code [CODE]
            Waiting for approval in the browser…
            notice: no system keychain answers here, so the credential is in [CONFIG]/latchkey/credentials.json (readable by you only). Unlock or install one (gnome-keyring, KWallet) to use it, or pass --insecure-storage to choose the file and not see this again; -v shows why.
            --- stdout
            Logged in to [ISSUER] as [EMAIL] (org [ORG]). The credential is stored in [CONFIG]/latchkey/credentials.json.
            "#);
        insta::assert_snapshot!(transcript(&status), @r#"
            exit 0
            --- stdout
            Logged in to [ISSUER] as [EMAIL] (org [ORG])
            API key [KEY]… from [CONFIG]/latchkey/credentials.json
            Subscription: free (none)
            --- stderr
            "#);
        insta::assert_snapshot!(transcript(&logout), @r#"
            exit 0
            --- stdout
            Logged out [EMAIL] from [ISSUER]; the credential was revoked on the server.
            --- stderr
            "#);
    });
    // -v says why the keychain could not be used; without it, only the one plain line.
    let key = person.new_api_key("verbose").await?;
    let verbose = cli
        .run_with_stdin(&["-v", "login", "--with-token"], &format!("{key}\n"))
        .await?;
    let said = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "{said}");
    assert!(
        said.contains("the system keychain is not available") && said.contains("zbus"),
        "{said}"
    );
    assert!(!rest.contains("zbus"), "{rest}");
    Ok(())
}

#[tokio::test]
async fn serve_says_why_it_cannot_reach_its_database_and_which_settings_are_wrong() -> Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let data = tempfile::tempdir()?;
    let serve = |extra: &[&str]| {
        let mut command = std::process::Command::new(bin());
        command
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .env_remove("LATCHKEY_DATABASE_URL");
        command.output()
    };
    let unreachable = format!("postgres://postgres@{closed}/latchkey");
    let outputs = [
        serve(&["--database-url", &unreachable])?,
        serve(&["--database-url", "mysql://db.internal/latchkey"])?,
        serve(&["--database-max-connections", "8"])?,
    ];
    let texts: Vec<String> = outputs.iter().map(transcript).collect();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex::escape(&closed.to_string()), "[CLOSED PORT]");
    settings.bind(|| insta::assert_snapshot!(texts.join("\n")));
    Ok(())
}

#[tokio::test]
async fn bad_input_is_explained_in_plain_words() -> Result<()> {
    // serve on every interface, with no public URL.
    let data = tempfile::tempdir()?;
    let everywhere = std::process::Command::new(bin())
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()?;
    // An empty paste.
    let server = Server::start(bin()).await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let empty = cli.run_with_stdin(&["login", "--with-token"], "\n").await?;
    // A key without a name, a next_url with a tab, an address that is none.
    let person = Person::verified_account(&server, &unique_email("words"), PASSWORD).await?;
    let api = |path: &str, body: serde_json::Value| {
        person
            .http
            .post(server.url(path))
            .header("origin", &server.url)
            .json(&body)
            .send()
    };
    let unnamed: serde_json::Value = api("/v1/api-keys", serde_json::json!({ "name": " " }))
        .await?
        .json()
        .await?;
    let tabbed: serde_json::Value = api(
        "/v1/token-flow/create",
        serde_json::json!({ "next_url": "/a\tb" }),
    )
    .await?
    .json()
    .await?;
    let stranger = Person::new(&server)?;
    let form = stranger.get("/signup").await?;
    let signup = stranger
        .post_form(
            "/signup",
            &[
                ("csrf", &form.csrf()?),
                ("email", "x\"); drop"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let refusal = signup
        .html
        .lines()
        .find(|l| l.contains("id=\"error\""))
        .unwrap_or_default()
        .trim()
        .to_owned();
    stable(
        &server.url,
        Some(&cli.config_dir().display().to_string()),
        || {
            let mut settings = insta::Settings::clone_current();
            settings.add_filter(r"0\.0\.0\.0:\d+", "0.0.0.0:[PORT]");
            settings.bind(|| {
            insta::assert_snapshot!(transcript(&everywhere), @r#"
            exit 2
            --- stdout
            --- stderr
            error: listening on 0.0.0.0:[PORT], where other machines reach it, needs the URL they use: pass --public-url https://<host> (the https address of this server, or of the TLS proxy in front of it)
            "#);
        });
            insta::assert_snapshot!(transcript(&empty), @r#"
        exit 2
        --- stdout
        --- stderr
        Connecting to [ISSUER]…
        error: no key on standard input
        hint: create a key at [ISSUER]/account, then `echo "$KEY" | latchkey login --with-token`
        "#);
            insta::assert_snapshot!(unnamed["message"].as_str().unwrap_or_default(), @r#"Give the key a name of 1 to 100 characters (what it is for: "laptop", "CI")"#);
            insta::assert_snapshot!(tabbed["message"].as_str().unwrap_or_default(), @"A next_url must be at most 512 characters, without control characters (tabs, newlines)");
            insta::assert_snapshot!(refusal, @r#"<p class="error" id="error">“x&#34;); drop” is not an email address: an address looks like name@example.com</p>"#);
        },
    );
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_the_request_id_every_answer_returns() -> Result<()> {
    let log = tempfile::NamedTempFile::new()?;
    let data = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(bin());
    command
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(data.path().join("data"))
        // Requests are logged at debug (tower-http's level for them).
        .env("LATCHKEY_LOG", "info,tower_http=debug")
        .env_remove("LATCHKEY_DATABASE_URL")
        .stderr(log.reopen()?);
    let (_server, url) =
        latchkey_testkit::spawn_until(command, "latchkey is listening on ").await?;
    let http = reqwest::Client::new();
    let chosen = http
        .get(format!("{url}/healthz"))
        .header("x-request-id", "req-from-the-caller")
        .send()
        .await?;
    assert_eq!(chosen.headers()["x-request-id"], "req-from-the-caller");
    let minted = http.get(format!("{url}/v1/me")).send().await?;
    let id = minted.headers()["x-request-id"].to_str()?.to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // Every line is one JSON object; the requests' lines name their ids.
    let mut seen = String::new();
    for _ in 0..50 {
        seen = std::fs::read_to_string(log.path())?;
        if seen.contains(&id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lines: Vec<serde_json::Value> = seen
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["span"]["request_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"req-from-the-caller") && ids.contains(&id.as_str()),
        "{seen}"
    );
    assert!(
        !seen.contains('\u{1b}'),
        "no colour codes in a file: {seen}"
    );
    Ok(())
}

#[tokio::test]
async fn a_start_on_a_busy_port_leaves_no_data_directory_behind() -> Result<()> {
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let parent = tempfile::tempdir()?;
    let data = parent.path().join("latchkey-data");
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--dev",
            "--listen",
            &busy.local_addr()?.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not listen on"));
    assert!(!data.exists(), "a failed start created {}", data.display());
    Ok(())
}

#[tokio::test]
async fn status_and_switch_json_keep_their_documented_shape() -> Result<()> {
    let (server, elsewhere) = (Server::start(bin()).await?, Server::start(bin()).await?);
    let cli = CliHome::new(bin(), &server.url)?;
    for (on, tag) in [
        (&server, "jsona"),
        (&server, "jsonb"),
        (&elsewhere, "jsonc"),
    ] {
        let person = Person::verified_account(on, &unique_email(tag), PASSWORD).await?;
        let key = person.new_api_key("laptop").await?;
        let login = cli
            .run_with_stdin(
                &["login", "--with-token", "--issuer", &on.url],
                &format!("{key}\n"),
            )
            .await?;
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
    }
    let pretty = |out: &Output| -> Result<String> {
        let value: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(serde_json::to_string_pretty(&value)?)
    };
    let status = pretty(&cli.run(&["status", "--json"]).await?)?;
    let switch = pretty(&cli.run(&["switch", "--json"]).await?)?;
    let config_dir = cli.config_dir().display().to_string();
    stable(&server.url, Some(&config_dir), || {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(&regex::escape(&elsewhere.url), "[OTHER ISSUER]");
        settings.add_filter(r"usr_[A-Za-z0-9]+", "[USER]");
        settings.add_filter(r#""org": "[a-z0-9-]+""#, r#""org": "[ORG]""#);
        settings.add_filter(
            r#""key_prefix": "lk_[A-Za-z0-9]+""#,
            r#""key_prefix": "[KEY]""#,
        );
        settings.bind(|| {
            insta::assert_snapshot!(status, @r#"
            {
              "credential": "api_key",
              "email": "[EMAIL]",
              "expires_at": null,
              "issuer": "[ISSUER]",
              "key_prefix": "[KEY]",
              "logged_in": true,
              "login_expires_at": null,
              "org": "[ORG]",
              "other_accounts": [
                "[EMAIL]"
              ],
              "other_issuers": [
                {
                  "accounts": [
                    "[EMAIL]"
                  ],
                  "issuer": "[OTHER ISSUER]"
                }
              ],
              "source": "file",
              "source_detail": "[CONFIG]/latchkey/credentials.json",
              "subscription": {
                "entitlements": [],
                "status": "none",
                "tier": "free"
              },
              "user_id": "[USER]"
            }
            "#);
            insta::assert_snapshot!(switch, @r#"
            {
              "accounts": [
                {
                  "active": false,
                  "email": "[EMAIL]",
                  "org": "[ORG]",
                  "refused": false,
                  "storage": "file",
                  "user_id": "[USER]"
                },
                {
                  "active": true,
                  "email": "[EMAIL]",
                  "org": "[ORG]",
                  "refused": false,
                  "storage": "file",
                  "user_id": "[USER]"
                }
              ],
              "issuer": "[ISSUER]"
            }
            "#);
        });
    });
    Ok(())
}

#[tokio::test]
async fn every_flag_of_every_command_is_in_the_readme() -> Result<()> {
    let readme = std::fs::read_to_string(crate::mcp::repo_root().join("README.md"))?;
    let flag = regex::Regex::new(r"--[a-z][a-z-]+")?;
    let mut missing = Vec::new();
    for command in [
        "login",
        "status",
        "logout",
        "token",
        "switch",
        "keys create",
        "keys list",
        "keys revoke",
        "orgs list",
        "orgs create",
        "orgs invite",
        "orgs members",
        "orgs leave",
        "serve",
        "gate",
        "admin keys rotate",
        "admin clients create",
    ] {
        let help = std::process::Command::new(bin())
            .args(command.split(' '))
            .arg("--help")
            .output()?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for found in flag.find_iter(&help).map(|m| m.as_str()) {
            if found != "--help" && !readme.contains(found) {
                missing.push(format!("{command} {found}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md does not mention: {missing:?}"
    );
    Ok(())
}
