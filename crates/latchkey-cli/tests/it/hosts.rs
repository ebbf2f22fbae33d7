//! The CLI against more than one server and account, as `gh auth` users expect: the first
//! login's server is remembered, `status` names the others, logging out the active account
//! hands over to the next, and `switch` and `logout` take an email in any case.

use anyhow::Result;
use latchkey_testkit::{CliHome, Person, Server, unique_email};
use serde_json::Value;

use crate::{PASSWORD, bin};

use crate::cli_login::text;

async fn status(cli: &CliHome) -> Result<Value> {
    Ok(serde_json::from_slice(
        &cli.run(&["status", "--json"]).await?.stdout,
    )?)
}

#[tokio::test]
async fn the_first_server_is_remembered_and_logging_out_hands_over_to_the_next_account()
-> Result<()> {
    let (first, second) = (Server::start(bin()).await?, Server::start(bin()).await?);
    let (a1, a2, b1) = (unique_email("a1"), unique_email("a2"), unique_email("b1"));
    let mut keys = Vec::new();
    for (server, email) in [(&first, &a1), (&first, &a2), (&second, &b1)] {
        let person = Person::verified_account(server, email, PASSWORD).await?;
        keys.push(person.new_api_key("laptop").await?);
        // A spare: logging out revokes the stored key on the server.
        keys.push(person.new_api_key("spare").await?);
    }
    let keys = [&keys[0], &keys[2], &keys[4], &keys[1]];
    // No LATCHKEY_ISSUER: the person names the server once, at login.
    let cli = CliHome::new(bin(), "")?;
    let nothing = cli.run(&["status"]).await?;
    assert_eq!(nothing.status.code(), Some(3));
    assert!(
        text(&nothing.stderr).contains("latchkey login --issuer"),
        "{}",
        text(&nothing.stderr)
    );

    let login = |server: &Server, key: &str| {
        let args = ["login", "--with-token", "--issuer", server.url.as_str()].map(str::to_owned);
        let key = format!("{key}\n");
        let cli = &cli;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli.run_with_stdin(&args, &key).await?;
            anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
            anyhow::Ok(())
        }
    };
    login(&first, keys[0]).await?;
    let now = status(&cli).await?;
    assert_eq!(
        (now["issuer"].as_str(), now["email"].as_str()),
        (Some(first.url.as_str()), Some(a1.as_str()))
    );
    assert_eq!(
        text(&cli.run(&["token"]).await?.stdout).trim(),
        keys[0].as_str()
    );

    // A second server does not move the default; status names it.
    login(&second, keys[2]).await?;
    let now = status(&cli).await?;
    assert_eq!(now["issuer"], first.url.as_str());
    assert_eq!(now["other_issuers"][0]["issuer"], second.url.as_str());
    assert_eq!(now["other_issuers"][0]["accounts"][0], b1.as_str());
    let shown = text(&cli.run(&["status"]).await?.stdout);
    assert!(
        shown.contains(&format!("Also logged in to {} as {b1}", second.url)),
        "{shown}"
    );

    // Two accounts on the first server; switch takes an email in any case.
    login(&first, keys[1]).await?;
    assert_eq!(status(&cli).await?["email"], a2.as_str());
    let switched = cli.run(&["switch", &a1.to_uppercase()]).await?;
    assert!(switched.status.success(), "{}", text(&switched.stderr));
    assert_eq!(status(&cli).await?["email"], a1.as_str());

    // Logging out the active account hands over to the other one.
    let out = cli.run(&["logout"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("Now using {a2}")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(status(&cli).await?["email"], a2.as_str());

    // Logging out the first server's last account (by name) makes the second the default.
    let out = cli.run(&["logout", &a2]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let now = status(&cli).await?;
    assert_eq!(
        (now["issuer"].as_str(), now["email"].as_str()),
        (Some(second.url.as_str()), Some(b1.as_str()))
    );
    let unknown = cli.run(&["logout", "nobody@example.com"]).await?;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));

    // --all leaves nothing behind, anywhere.
    login(&first, keys[3]).await?;
    let out = cli.run(&["logout", "--all"]).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&a1) && said.contains(&b1), "{said}");
    let index: Value = serde_json::from_slice(&std::fs::read(cli.credentials_file())?)?;
    assert_eq!(
        index["accounts"].as_array().map(Vec::len),
        Some(0),
        "{index}"
    );
    assert_eq!(cli.run(&["status"]).await?.status.code(), Some(3));
    Ok(())
}

#[tokio::test]
async fn a_key_the_server_refused_is_never_handed_out_again() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("dead"), PASSWORD).await?;
    let key = person.new_api_key("laptop").await?;
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{key}\n"))
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    let checked = cli.run(&["token", "--check"]).await?;
    assert_eq!(
        text(&checked.stdout).trim(),
        key,
        "{}",
        text(&checked.stderr)
    );

    // Revoked on the account page (as a person would, from the browser).
    person.revoke_first_api_key().await?;

    // Without --check, token does not ask the server: it cannot know yet.
    assert!(cli.run(&["token"]).await?.status.success());
    // Once the server has refused it, no command hands it out again.
    let checked = cli.run(&["token", "--check"]).await?;
    assert_eq!(checked.status.code(), Some(3));
    assert!(
        text(&checked.stdout).is_empty(),
        "nothing printed: {}",
        text(&checked.stdout)
    );
    assert!(
        text(&checked.stderr).contains("refused by the server"),
        "{}",
        text(&checked.stderr)
    );
    let offline = cli.run(&["token"]).await?;
    assert_eq!(offline.status.code(), Some(3), "{}", text(&offline.stdout));
    assert!(text(&offline.stdout).is_empty());
    assert_eq!(
        cli.run(&["status", "--check"]).await?.status.code(),
        Some(3)
    );

    // A new login replaces the dead credential.
    let fresh = person.new_api_key("again").await?;
    let login = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{fresh}\n"))
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert_eq!(text(&cli.run(&["token"]).await?.stdout).trim(), fresh);
    Ok(())
}

/// Runs the CLI with `dir` as its working directory.
async fn run_in(
    cli: &CliHome,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<std::process::Output> {
    Ok(cli.command(args).current_dir(dir).output().await?)
}

#[tokio::test]
async fn a_project_file_chooses_the_server_and_account_for_its_directory() -> Result<()> {
    let (first, second) = (Server::start(bin()).await?, Server::start(bin()).await?);
    let (a1, a2, b1) = (
        unique_email("pa1"),
        unique_email("pa2"),
        unique_email("pb1"),
    );
    let cli = CliHome::new(bin(), "")?;
    let mut keys = std::collections::HashMap::new();
    for (server, email) in [(&first, &a1), (&first, &a2), (&second, &b1)] {
        let person = Person::verified_account(server, email, PASSWORD).await?;
        let key = person.new_api_key("laptop").await?;
        let out = cli
            .run_with_stdin(
                &["login", "--with-token", "--issuer", &server.url],
                &format!("{key}\n"),
            )
            .await?;
        assert!(out.status.success(), "{}", text(&out.stderr));
        keys.insert(email.clone(), key);
    }
    // Outside any project: the remembered server and its active account (the last login there).
    let outside = tempfile::tempdir()?;
    let token = |dir: std::path::PathBuf| {
        let cli = &cli;
        async move {
            anyhow::Ok(
                text(&run_in(cli, &dir, &["token"]).await?.stdout)
                    .trim()
                    .to_owned(),
            )
        }
    };
    assert_eq!(token(outside.path().to_owned()).await?, keys[&a2]);

    // A project on the second server, used from a subdirectory.
    let project = tempfile::tempdir()?;
    std::fs::write(
        project.path().join(".latchkey.toml"),
        format!("issuer = \"{}\"\n", second.url),
    )?;
    let deep = project.path().join("src/module");
    std::fs::create_dir_all(&deep)?;
    let status: Value =
        serde_json::from_slice(&run_in(&cli, &deep, &["status", "--json"]).await?.stdout)?;
    assert_eq!(
        (status["issuer"].as_str(), status["email"].as_str()),
        (Some(second.url.as_str()), Some(b1.as_str()))
    );
    let chosen_by = project.path().join(".latchkey.toml").display().to_string();
    assert_eq!(status["project_file"], chosen_by.as_str());
    let shown = text(&run_in(&cli, &deep, &["status"]).await?.stdout);
    assert!(
        shown.contains(&format!("Chosen for this directory by {chosen_by}")),
        "{shown}"
    );
    // A flag still wins.
    let flagged: Value = serde_json::from_slice(
        &run_in(&cli, &deep, &["status", "--json", "--issuer", &first.url])
            .await?
            .stdout,
    )?;
    assert_eq!(flagged["issuer"], first.url.as_str());

    // A project that uses another account than the active one, by email in any case.
    let other = tempfile::tempdir()?;
    std::fs::write(
        other.path().join(".latchkey.toml"),
        format!("account = \"{}\"\n", a1.to_uppercase()),
    )?;
    assert_eq!(token(other.path().to_owned()).await?, keys[&a1]);
    assert_eq!(
        token(outside.path().to_owned()).await?,
        keys[&a2],
        "the active account is unchanged"
    );

    // A file naming a server this machine never logged in to is refused before anything is
    // sent there, even the key in LATCHKEY_API_KEY.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let stranger = crate::gate_proxy::serve_app(axum::Router::new().fallback(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "{}" }
    }))
    .await?;
    let planted = tempfile::tempdir()?;
    std::fs::write(
        planted.path().join(".latchkey.toml"),
        format!("issuer = \"{stranger}\"\n"),
    )?;
    let mut leaky = cli.command(&["status"]);
    leaky
        .current_dir(planted.path())
        .env("LATCHKEY_API_KEY", &keys[&a1]);
    let refused = leaky.output().await?;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("which you have not logged in to"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A file that names nobody logged in, or is not a project file, is an error that says so.
    std::fs::write(
        other.path().join(".latchkey.toml"),
        "account = \"nobody@example.com\"\n",
    )?;
    let nobody = run_in(&cli, other.path(), &["token"]).await?;
    assert_eq!(nobody.status.code(), Some(2));
    assert!(
        text(&nobody.stderr).contains("asks for the account nobody@example.com"),
        "{}",
        text(&nobody.stderr)
    );
    std::fs::write(other.path().join(".latchkey.toml"), "isuer = \"typo\"\n")?;
    let typo = run_in(&cli, other.path(), &["status"]).await?;
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo.stderr).contains(".latchkey.toml") && text(&typo.stderr).contains("isuer"),
        "{}",
        text(&typo.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn a_key_that_expires_soon_is_announced_by_every_command() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("expiring"), PASSWORD).await?;
    let created: Value = person
        .http
        .post(server.url("/v1/api-keys"))
        .header("origin", &server.url)
        .json(&serde_json::json!({ "name": "short-lived", "expires_in_days": 3 }))
        .send()
        .await?
        .json()
        .await?;
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    let cli = CliHome::new(bin(), &server.url)?;
    let login = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{key}\n"))
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    // Three days ahead, counted in whole days from when the key was made: 2 or 3 days left.
    let warning = format!("warning: this login to {} expires in ", server.url);
    for command in ["token", "status"] {
        let out = cli.run(&[command]).await?;
        let said = text(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains(&warning) && said.contains(" days; run `latchkey login` to renew it"),
            "{command}: {said}"
        );
    }
    // A key without an expiry says nothing.
    let lasting = person.new_api_key("lasting").await?;
    let login = cli
        .run_with_stdin(&["login", "--with-token"], &format!("{lasting}\n"))
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(!text(&cli.run(&["token"]).await?.stderr).contains("warning"));
    Ok(())
}
