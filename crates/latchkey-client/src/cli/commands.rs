//! `login`, `status`, `logout`, `token`, `switch`: thin terminal layers over the [`Client`], in
//! the words of the tool that runs them (its [`AppIdentity`]).

use std::{
    io::{IsTerminal, Read},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{
    IssuerArgs, LoginArgs, LogoutArgs, MethodArg, StatusArgs, SwitchArgs, TokenArgs,
    exit::{AUTH, CONFIG, CliError},
};
use crate::{
    AppIdentity, Client, ClientError, Credential, CredentialSource, IssuerSource, LoginEvent,
    LoginMethod, LoginOptions, LoginOutcome, NoBrowser, Secret, Settings, StoragePolicy,
    StoredAccount, UrlFlags, oauth_login::unix_now, storage::StorageKind, why_no_browser,
};
/// Commands warn (once each, on stderr) when the login lapses sooner than this.
const EXPIRY_WARNING_SECS: i64 = 7 * 24 * 3600;

/// One line on stderr when `credential`'s login lapses within [`EXPIRY_WARNING_SECS`].
fn warn_if_expiring(client: &Client, credential: &Credential) {
    let api_key_expiry = credential.account.as_ref().and_then(|a| a.key_expires_at);
    let left = credential
        .secret
        .login_expires_at()
        .or(api_key_expiry)
        .map(|at| at - unix_now())
        .filter(|left| *left < EXPIRY_WARNING_SECS);
    if let Some(left) = left {
        eprintln!(
            "warning: this login to {} expires {}; run `{} login` to renew it",
            client.settings().issuer_id(),
            in_words(left),
            client.settings().app.name
        );
    }
}

fn client(
    app: &AppIdentity,
    flags: &UrlFlags<'_>,
    storage: StoragePolicy,
) -> Result<Client, CliError> {
    let config_dir = dirs::config_dir().ok_or_else(|| {
        CliError::new(CONFIG, "could not find your config directory")
            .with_hint("set HOME or XDG_CONFIG_HOME")
    })?;
    let mut settings = Settings::resolve_with(
        app.clone(),
        |name| std::env::var(name).ok(),
        config_dir,
        flags,
    )?;
    settings.storage = storage;
    if let Ok(here) = std::env::current_dir() {
        settings.apply_project_file(&here)?;
    }
    Ok(Client::new(settings)?)
}

pub(super) fn issuer_client(app: &AppIdentity, issuer: &IssuerArgs) -> Result<Client, CliError> {
    client(
        app,
        &UrlFlags {
            issuer: issuer.issuer.as_deref(),
            ..UrlFlags::default()
        },
        StoragePolicy::Auto,
    )
}

/// Why launching a browser cannot work here, if it cannot.
fn no_browser_here() -> Option<NoBrowser> {
    let in_container = std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists();
    why_no_browser(
        &|name| std::env::var(name).ok(),
        in_container,
        cfg!(target_os = "linux"),
    )
}

fn short_key(key: &str) -> String {
    let visible = key.find('_').map_or(4, |i| i + 9).min(key.len());
    format!("{}…", &key[..visible])
}

fn method(arg: MethodArg) -> LoginMethod {
    match arg {
        MethodArg::Auto => LoginMethod::Auto,
        MethodArg::Browser => LoginMethod::Browser,
        MethodArg::Device => LoginMethod::Device,
        MethodArg::TokenFlow => LoginMethod::TokenFlow,
        MethodArg::Paste => LoginMethod::Paste,
    }
}

/// Copies `code` for `--copy`; a machine without a clipboard gets a notice, not a failure.
fn copy_to_clipboard(code: &str) {
    match arboard::Clipboard::new().and_then(|mut c| c.set_text(code.to_owned())) {
        Ok(()) => eprintln!("(copied {code} to the clipboard)"),
        Err(e) => eprintln!("notice: could not copy the code to the clipboard ({e})"),
    }
}

/// A QR code of `url` for a phone, when stderr is a terminal that can show one.
fn print_qr(url: &str) {
    if let Ok(code) = qrcode::QrCode::new(url.as_bytes()) {
        let art = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        eprintln!("{art}");
    }
}

/// The key a person pastes (not echoed) or a script pipes in.
fn read_key_from_stdin(client: &Client) -> Result<String, CliError> {
    let account_page = format!("{}/account", client.settings().issuer_id());
    let stdin = std::io::stdin();
    let key = if stdin.is_terminal() {
        rpassword::prompt_password(format!(
            "Paste an API key (create one at {account_page}) and press Enter: "
        ))
        .map_err(|e| CliError::new(CONFIG, e))?
    } else {
        let mut all = String::new();
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut all)
            .map_err(|e| CliError::new(CONFIG, e))?;
        all
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(
            CliError::new(CONFIG, "no key on standard input").with_hint(format!(
                "create a key at {account_page}, then `echo \"$KEY\" | {} login --with-token`",
                client.settings().app.name
            )),
        );
    }
    Ok(key.to_owned())
}

pub async fn login(app: &AppIdentity, args: LoginArgs) -> Result<(), CliError> {
    let storage = match (args.insecure_storage, args.secure_storage) {
        (true, _) => StoragePolicy::FileOnly,
        (_, true) => StoragePolicy::KeychainOnly,
        _ => StoragePolicy::Auto,
    };
    let client = client(
        app,
        &UrlFlags {
            issuer: args.issuer.issuer.as_deref(),
            login_url: args.login_url.as_deref(),
            auth_url: args.auth_url.as_deref(),
        },
        storage,
    )?;
    // Say at once what is tried: a wrong URL then fails within a second, not silently.
    eprintln!("Connecting to {}…", client.settings().issuer_id());
    if let Some(subject) = subject_token(&args)? {
        let outcome = client
            .login_with_subject_token(&subject, args.org.as_deref())
            .await?;
        report_login(&client, outcome);
        return require_subscription(&client, args.require_entitlement.as_deref()).await;
    }
    let no_browser = no_browser_here();
    let options = LoginOptions {
        open_browser: !args.no_browser && no_browser.is_none(),
        utm_source: Some("cli".into()),
    };
    let requested = if args.with_token {
        LoginMethod::Paste
    } else {
        method(args.method)
    };
    // Nothing is opened when finishing a login started elsewhere: no browser notice then.
    let starting = !args.json && args.complete.is_none();
    if let (LoginMethod::Auto, Some(reason), true) = (requested, no_browser, starting) {
        eprintln!(
            "No browser can open here ({}): log in with a code on any device.",
            reason.describe()
        );
    }
    if args.json {
        let started = client.start_login(requested, &options, &app.name).await?;
        println!("{}", json!(started));
        return Ok(());
    }

    let interactive = std::io::stderr().is_terminal();
    let spinner = ProgressBar::hidden();
    let copy = args.copy;
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
            if let Some(code) = code {
                eprintln!("Check that the page shows the code {code}");
                if copy {
                    copy_to_clipboard(code);
                }
            }
            if interactive {
                if !browser_opened {
                    print_qr(url);
                }
                spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message("Waiting for approval in the browser…");
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
    let opener = |url: &str| open::that_detached(url).is_ok();
    let outcome = match (&args.complete, requested) {
        (Some(id), _) => {
            eprintln!("Waiting for login {id} to be approved…");
            client.complete_login(id, &mut on_event).await
        }
        (None, LoginMethod::Paste) => {
            let key = read_key_from_stdin(&client)?;
            client.login_with_key(&key).await
        }
        (None, method) => client.login(method, options, &opener, &mut on_event).await,
    };
    spinner.finish_and_clear();
    report_login(&client, outcome?);
    match &args.org {
        Some(org) => use_org(&client, org).await?,
        // A pasted key already belongs to one org.
        None if requested != LoginMethod::Paste => {
            super::orgs::choose_after_login(&client).await?;
        }
        None => {}
    }
    require_subscription(&client, args.require_entitlement.as_deref()).await
}

/// The credential `--subject-token-file` or `--subject-token-env` names, if either is given.
fn subject_token(args: &LoginArgs) -> Result<Option<String>, CliError> {
    let token = match (&args.subject_token_file, &args.subject_token_env) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            CliError::new(
                CONFIG,
                format!("cannot read the subject token from {}: {e}", path.display()),
            )
        })?,
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            CliError::new(CONFIG, format!("the environment variable {var} is not set")).with_hint(
                "in GitHub Actions, fetch the job's OIDC token into it first (see the README)",
            )
        })?,
        (None, None) => return Ok(None),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::new(CONFIG, "the subject token is empty"));
    }
    Ok(Some(token.to_owned()))
}

/// Makes `org` the one the stored credential acts for, and says so.
pub(super) async fn use_org(client: &Client, org: &str) -> Result<(), CliError> {
    match client.use_org(org).await? {
        Some(outcome) => report_login(client, outcome),
        None => {
            if let Some(active) = client.accounts()?.into_iter().find(|a| a.active) {
                println!("Now acting for the org {} as {}.", active.org, active.email);
            }
        }
    }
    Ok(())
}

fn report_login(client: &Client, outcome: LoginOutcome) {
    if let Some(reason) = &outcome.stored.fallback_reason {
        // The raw reason (a D-Bus error, say) helps only someone debugging: `-v` shows it.
        tracing::debug!(%reason, "the system keychain is not available");
        eprintln!(
            "notice: no system keychain answers here, so the credential is in {} (readable by you \
             only). Unlock or install one (gnome-keyring, KWallet) to use it, or pass \
             --insecure-storage to choose the file and not see this again; -v shows why.",
            outcome.stored.path.display()
        );
    }
    let place = match outcome.stored.kind {
        StorageKind::Keychain => "the system keychain".to_owned(),
        StorageKind::File => outcome.stored.path.display().to_string(),
    };
    let (_, org) = outcome.me.acting_org();
    println!(
        "Logged in to {} as {} (org {org}). The credential is stored in {place}.",
        client.settings().issuer_id(),
        outcome.me.name(),
    );
    if client.settings().env_api_key.is_some() {
        eprintln!(
            "note: {} is set in your environment and takes precedence over the stored credential",
            client.settings().app.api_key_env()
        );
    }
}

/// For a tool (or a `--require-entitlement` login) that requires a subscription: fails (exit
/// 6) unless the credential now active acts for an org whose subscription grants it. The
/// credential stays stored.
async fn require_subscription(client: &Client, flag: Option<&str>) -> Result<(), CliError> {
    let Some(required) = flag.or(client.settings().app.required_entitlement.as_deref()) else {
        return Ok(());
    };
    let bearer = client.bearer().await?;
    let me = client.whoami(&bearer).await?;
    Ok(latchkey_proto::wire::check_entitlement(&me, required)
        .map_err(|subscribe_url| ClientError::SubscriptionRequired { subscribe_url })?)
}

/// "Subscription: pro (active, renews 2027-01-31)", or the free tier with where to subscribe.
fn describe_subscription(subscription: &latchkey_proto::wire::SubscriptionInfo) -> String {
    use super::orgs::date;
    let mut line = format!(
        "Subscription: {} ({}",
        subscription.tier,
        subscription.status.replace('_', " ")
    );
    match (
        subscription.status.as_str(),
        subscription.current_period_end,
    ) {
        ("active", Some(end)) => line.push_str(&format!(", renews {}", date(end))),
        ("trialing", Some(end)) => line.push_str(&format!(", trial ends {}", date(end))),
        (_, Some(end)) => line.push_str(&format!(", period ends {}", date(end))),
        _ => {}
    }
    line.push(')');
    if let (true, Some(url)) = (
        subscription.entitlements.is_empty(),
        &subscription.subscribe_url,
    ) {
        line.push_str(&format!("; subscribe at {url}"));
    }
    line
}

fn not_logged_in(client: &Client) -> CliError {
    let error = CliError::new(
        AUTH,
        format!("not logged in to {}", client.settings().issuer_id()),
    );
    match client.settings().issuer_source {
        IssuerSource::BuiltIn => error.with_hint(format!(
            "run `{tool} login`, or `{tool} login --issuer https://<your server>` for another \
             server",
            tool = client.settings().app.name
        )),
        _ => error.with_hint(format!("run `{} login`", client.settings().app.name)),
    }
}

/// The other servers this machine is logged in to, each with its accounts' emails.
fn other_issuers(client: &Client) -> Vec<(String, Vec<String>)> {
    let here = client.settings().issuer_id();
    let mut others: Vec<(String, Vec<String>)> = Vec::new();
    for account in client.all_accounts().unwrap_or_default() {
        if account.issuer == here {
            continue;
        }
        match others
            .iter_mut()
            .find(|(issuer, _)| *issuer == account.issuer)
        {
            Some((_, emails)) => emails.push(account.email),
            None => others.push((account.issuer, vec![account.email])),
        }
    }
    others
}

fn describe_secret(secret: &Secret) -> String {
    match secret {
        Secret::ApiKey { api_key } => format!("API key {}", short_key(api_key)),
        Secret::Oauth(_) => "OAuth tokens".to_owned(),
    }
}

fn in_words(secs: i64) -> String {
    let (n, unit) = match secs {
        ..=0 => return "now".to_owned(),
        1..3600 => ((secs + 59) / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("in {n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub async fn status(app: &AppIdentity, args: StatusArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    let issuer = client.settings().issuer_id();
    if args.check {
        // Fresh tokens are valid without asking; stale ones are refreshed; keys are checked.
        let credential = client
            .fresh_credential()
            .await?
            .ok_or_else(|| not_logged_in(&client))?;
        if let Secret::ApiKey { .. } = &credential.secret {
            client.check(&credential).await?;
        }
        return Ok(());
    }
    let credential = match client.fresh_credential().await {
        Ok(Some(c)) => c,
        Ok(None) => {
            if args.json {
                println!("{}", json!({ "logged_in": false, "issuer": issuer }));
            }
            return Err(not_logged_in(&client));
        }
        Err(e) => return Err(e.into()),
    };
    let (source, detail) = match &credential.source {
        CredentialSource::Env(var) => ("env", var.clone()),
        CredentialSource::Keychain => ("keychain", "the system keychain".to_owned()),
        CredentialSource::File(path) => ("file", path.display().to_string()),
    };
    let login_expires_in = credential
        .secret
        .login_expires_at()
        .map(|at| at - unix_now());
    let me = client.check(&credential).await;
    let others: Vec<String> = client
        .accounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.active)
        .map(|a| a.email)
        .collect();
    let elsewhere = other_issuers(&client);
    if args.json {
        let mut out = json!({
            "logged_in": me.is_ok(),
            "issuer": issuer,
            "source": source,
            "source_detail": detail,
            "credential": match &credential.secret {
                Secret::ApiKey { .. } => "api_key",
                Secret::Oauth(_) => "oauth",
            },
            "expires_at": credential.secret.expires_at(),
            "login_expires_at": credential.secret.login_expires_at(),
            "other_accounts": others,
            "other_issuers": elsewhere
                .iter()
                .map(|(issuer, emails)| json!({ "issuer": issuer, "accounts": emails }))
                .collect::<Vec<_>>(),
        });
        if let Some(project) = &client.settings().project {
            out["project_file"] = json!(project.path.display().to_string());
        }
        if let Secret::ApiKey { api_key } = &credential.secret {
            out["key_prefix"] = json!(short_key(api_key).trim_end_matches('…'));
        }
        match &me {
            Ok(me) => {
                out["user_id"] = json!(me.user_id);
                out["email"] = json!(me.email);
                out["org"] = json!(me.acting_org().1);
                if let Some(subscription) = &me.subscription {
                    out["subscription"] = json!(subscription);
                }
            }
            Err(e) => out["error"] = json!(e.to_string()),
        }
        println!("{out}");
    } else if let Ok(me) = &me {
        println!(
            "Logged in to {issuer} as {} (org {})",
            me.name(),
            me.acting_org().1
        );
        println!("{} from {detail}", describe_secret(&credential.secret));
        if let Some(subscription) = &me.subscription {
            println!("{}", describe_subscription(subscription));
        }
        if let Some(project) = &client.settings().project {
            println!("Chosen for this directory by {}", project.path.display());
        }
        if let Some(left) = login_expires_in {
            println!("The login expires {}.", in_words(left));
        }
        if !others.is_empty() {
            println!(
                "Also logged in here: {} (`{} switch <email>`)",
                others.join(", "),
                app.name
            );
        }
        for (other, emails) in &elsewhere {
            println!(
                "Also logged in to {other} as {} (`{} status --issuer {other}`)",
                emails.join(", "),
                app.name
            );
        }
    }
    warn_if_expiring(&client, &credential);
    me.map(|_| ()).map_err(CliError::from)
}

/// Prints what a logout did.
fn report_logout(account: &StoredAccount, revoked: Result<(), ClientError>) {
    match revoked {
        Ok(()) => println!(
            "Logged out {} from {}; the credential was revoked on the server.",
            account.email, account.issuer
        ),
        Err(e) => {
            println!(
                "Logged out {} from {}; the credential was deleted from this machine.",
                account.email, account.issuer
            );
            eprintln!(
                "warning: revoking it on the server failed ({e}); revoke it from your account page"
            );
        }
    }
}

/// Whether the person named the issuer (flag or env var) rather than leaving it to the default.
fn issuer_named(client: &Client) -> bool {
    matches!(
        client.settings().issuer_source,
        IssuerSource::Flag | IssuerSource::Env(_)
    )
}

pub async fn logout(app: &AppIdentity, args: LogoutArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    if args.all {
        let mut issuers: Vec<String> = if issuer_named(&client) {
            vec![client.settings().issuer_id()]
        } else {
            client
                .all_accounts()?
                .into_iter()
                .map(|a| a.issuer)
                .collect()
        };
        issuers.sort();
        issuers.dedup();
        let mut logged_out = 0;
        for issuer in issuers {
            let on_issuer = issuer_client(
                app,
                &IssuerArgs {
                    issuer: Some(issuer),
                },
            )?;
            while let Some((account, revoked)) = on_issuer.logout(None).await? {
                report_logout(&account, revoked);
                logged_out += 1;
            }
        }
        if logged_out == 0 {
            return Err(not_logged_in(&client));
        }
    } else {
        let Some((account, revoked)) = client.logout(args.account.as_deref()).await? else {
            return Err(not_logged_in(&client));
        };
        report_logout(&account, revoked);
        if let Some(next) = client.accounts()?.into_iter().find(|a| a.active) {
            println!(
                "Now using {} (org {}) on {}.",
                next.email,
                next.org,
                client.settings().issuer_id()
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

pub async fn token(app: &AppIdentity, args: TokenArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    if let Some(org) = &args.org {
        let exchanged = client.exchange_for_org(org).await?;
        println!("{}", exchanged.access_token);
        return Ok(());
    }
    let credential = client
        .fresh_credential()
        .await?
        .ok_or_else(|| not_logged_in(&client))?;
    if args.check {
        client.check(&credential).await?;
    }
    warn_if_expiring(&client, &credential);
    println!("{}", credential.secret.bearer());
    Ok(())
}

/// An account as `switch --json` lists it (a stable schema: fields are only ever added).
fn account_json(account: &StoredAccount) -> serde_json::Value {
    json!({
        "email": account.email,
        "user_id": account.user_id,
        "org": account.org,
        "active": account.active,
        "storage": match account.storage {
            StorageKind::Keychain => "keychain",
            StorageKind::File => "file",
        },
        "refused": account.refused_at.is_some(),
    })
}

pub async fn switch(app: &AppIdentity, args: SwitchArgs) -> Result<(), CliError> {
    let client = issuer_client(app, &args.issuer)?;
    if let (Some(org), None) = (&args.org, &args.account) {
        return use_org(&client, org).await;
    }
    let issuer = client.settings().issuer_id();
    if let Some(who) = &args.account {
        client.switch(who, args.org.as_deref())?;
    }
    let accounts = client.accounts()?;
    if accounts.is_empty() {
        return Err(not_logged_in(&client));
    }
    if args.json {
        let listed: Vec<_> = accounts.iter().map(account_json).collect();
        println!("{}", json!({ "issuer": issuer, "accounts": listed }));
        return Ok(());
    }
    if args.account.is_some() {
        if let Some(active) = accounts.iter().find(|a| a.active) {
            println!(
                "Now using {} (org {}) on {issuer}.",
                active.email, active.org
            );
        }
        return Ok(());
    }
    for a in accounts {
        let mark = if a.active { "*" } else { " " };
        let place = match a.storage {
            StorageKind::Keychain => "system keychain".to_owned(),
            StorageKind::File => client
                .settings()
                .config_dir
                .join("credentials.json")
                .display()
                .to_string(),
        };
        println!(
            "{mark} {} (org {}, {}) in {place}",
            a.email, a.org, a.user_id
        );
    }
    Ok(())
}
