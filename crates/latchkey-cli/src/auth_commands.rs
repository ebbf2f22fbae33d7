//! `login`, `status`, `logout`, `token`: thin terminal layers over `latchkey-client`.

use std::{io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use latchkey_client::{
    AppIdentity, Client, CredentialSource, LoginEvent, LoginOptions, Settings, StoragePolicy,
    storage::StorageKind,
};
use serde_json::json;

use crate::{
    cli::{IssuerArgs, LoginArgs, StatusArgs},
    exit::{AUTH, CliError},
};

const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";

fn client(
    issuer: &IssuerArgs,
    login_url: Option<&str>,
    storage: StoragePolicy,
) -> Result<Client, CliError> {
    let config_dir = dirs::config_dir().ok_or_else(|| {
        CliError::new(crate::exit::CONFIG, "could not find your config directory")
            .with_hint("set HOME or XDG_CONFIG_HOME")
    })?;
    let mut settings = Settings::resolve(
        AppIdentity::new("latchkey", DEFAULT_ISSUER),
        |name| std::env::var(name).ok(),
        config_dir,
        issuer.issuer.as_deref(),
        login_url,
    )?;
    settings.storage = storage;
    Ok(Client::new(settings)?)
}

/// Whether launching a browser can work here: not over SSH, and on Linux only with a display.
fn browser_can_open() -> bool {
    let has = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    if has("SSH_CONNECTION") || has("SSH_TTY") {
        return false;
    }
    if cfg!(target_os = "linux") {
        return has("DISPLAY") || has("WAYLAND_DISPLAY");
    }
    true
}

fn short_key(key: &str) -> String {
    let visible = key.find('_').map_or(4, |i| i + 9).min(key.len());
    format!("{}…", &key[..visible])
}

pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let storage = match (args.insecure_storage, args.secure_storage) {
        (true, _) => StoragePolicy::FileOnly,
        (_, true) => StoragePolicy::KeychainOnly,
        _ => StoragePolicy::Auto,
    };
    let client = client(&args.issuer, args.login_url.as_deref(), storage)?;
    let interactive = std::io::stderr().is_terminal();
    let spinner = ProgressBar::hidden();
    let mut on_event = |event: LoginEvent<'_>| match event {
        LoginEvent::Started {
            url,
            code,
            browser_opened,
        } => {
            if browser_opened {
                eprintln!("Opened your browser at:\n  {url}");
            } else {
                eprintln!("Open this URL in a browser to log in:\n  {url}");
            }
            eprintln!("Check that the page shows the code {code}");
            if interactive {
                spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message(format!(
                    "Waiting for approval in the browser (code {code})…"
                ));
                spinner.enable_steady_tick(Duration::from_millis(120));
            } else {
                eprintln!("Waiting for approval in the browser…");
            }
        }
        LoginEvent::Retrying { error } => {
            spinner.suspend(|| eprintln!("warning: {error}; still trying…"));
        }
        LoginEvent::Approved => spinner.finish_and_clear(),
    };
    let options = LoginOptions {
        open_browser: !args.no_browser && browser_can_open(),
        utm_source: Some("cli".into()),
    };
    let opener = |url: &str| open::that_detached(url).is_ok();
    let outcome = client
        .login_token_flow(options, &opener, &mut on_event)
        .await;
    spinner.finish_and_clear();
    let outcome = outcome?;
    if let Some(reason) = &outcome.stored.fallback_reason {
        eprintln!(
            "notice: the system keychain is not available ({reason}); the key is stored in {} (mode 0600). Pass --secure-storage to require the keychain.",
            outcome.stored.path.display()
        );
    }
    let place = match outcome.stored.kind {
        StorageKind::Keychain => "the system keychain".to_owned(),
        StorageKind::File => outcome.stored.path.display().to_string(),
    };
    println!(
        "Logged in to {} as {} (org {}). The key is stored in {place}.",
        client.settings().issuer_id(),
        outcome.me.email,
        outcome.me.org.slug
    );
    if let Some(var) = client
        .settings()
        .env_api_key
        .as_ref()
        .map(|_| client.settings().app.api_key_env())
    {
        eprintln!(
            "note: {var} is set in your environment and takes precedence over the stored key"
        );
    }
    Ok(())
}

fn not_logged_in(client: &Client) -> CliError {
    CliError::new(
        AUTH,
        format!("not logged in to {}", client.settings().issuer_id()),
    )
    .with_hint("run `latchkey login`")
}

pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let client = client(&args.issuer, None, StoragePolicy::Auto)?;
    let issuer = client.settings().issuer_id();
    let Some(credential) = client.credential()? else {
        if args.json {
            println!("{}", json!({ "logged_in": false, "issuer": issuer }));
        }
        return Err(not_logged_in(&client));
    };
    let (source, detail) = match &credential.source {
        CredentialSource::Env(var) => ("env", var.clone()),
        CredentialSource::Keychain => ("keychain", "the system keychain".to_owned()),
        CredentialSource::File(path) => ("file", path.display().to_string()),
    };
    let me = client.whoami(&credential.api_key).await;
    if args.json {
        let mut out = json!({
            "logged_in": me.is_ok(),
            "issuer": issuer,
            "source": source,
            "source_detail": detail,
            "key_prefix": short_key(&credential.api_key).trim_end_matches('…'),
        });
        match &me {
            Ok(me) => {
                out["user_id"] = json!(me.user_id);
                out["email"] = json!(me.email);
                out["org"] = json!(me.org.slug);
            }
            Err(e) => out["error"] = json!(e.to_string()),
        }
        println!("{out}");
    } else if let Ok(me) = &me {
        println!(
            "Logged in to {issuer} as {} (org {})",
            me.email, me.org.slug
        );
        println!("API key {} from {detail}", short_key(&credential.api_key));
    }
    me.map(|_| ()).map_err(CliError::from)
}

pub async fn logout(args: IssuerArgs) -> Result<(), CliError> {
    let client = client(&args, None, StoragePolicy::Auto)?;
    let Some((account, revoked)) = client.logout().await? else {
        return Err(not_logged_in(&client));
    };
    match revoked {
        Ok(()) => println!(
            "Logged out {}; the key was revoked on the server.",
            account.email
        ),
        Err(e) => {
            println!(
                "Logged out {}; the key was deleted from this machine.",
                account.email
            );
            eprintln!(
                "warning: revoking it on the server failed ({e}); revoke it from your account page"
            );
        }
    }
    if client.settings().env_api_key.is_some() {
        eprintln!(
            "note: {} is still set in your environment",
            client.settings().app.api_key_env()
        );
    }
    Ok(())
}

pub async fn token(args: IssuerArgs) -> Result<(), CliError> {
    let client = client(&args, None, StoragePolicy::Auto)?;
    let credential = client.credential()?.ok_or_else(|| not_logged_in(&client))?;
    println!("{}", credential.api_key);
    Ok(())
}
