//! `latchkey admin`: changes made directly in a deployment's database. Running servers see new
//! clients at once and new signing keys within a minute (they reload keys periodically).

use latchkey_core::oauth::{ClientOrigin, NewClient};
use latchkey_server::{ServeConfig, ServeOptions, upstream::Upstream};

use latchkey_client::cli::exit::{CONFIG, CliError, INTERNAL, NETWORK};

use crate::cli::{
    AdminArgs, AdminCommand, ClientsCommand, KeysCommand, ProvidersCommand, SessionsCommand,
    SubscriptionsCommand, UsersCommand,
};

pub async fn run(args: AdminArgs) -> Result<(), CliError> {
    let file = match &args.serve.config {
        Some(path) => ServeOptions::from_toml_file(path).map_err(|e| CliError::new(CONFIG, e))?,
        None => ServeOptions::default(),
    };
    let config =
        ServeConfig::try_from(args.serve.options.or(file)).map_err(|e| CliError::new(CONFIG, e))?;
    if let AdminCommand::Providers(ProvidersCommand::List) = args.command {
        return list_providers(&config).await;
    }
    let service = latchkey_server::admin_service(&config)
        .await
        .map_err(|e| CliError::new(INTERNAL, e))?;
    match args.command {
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let kids = service
                .rotate_signing_key()
                .await
                .map_err(|e| CliError::new(INTERNAL, e))?;
            println!(
                "Added signing keys {} (EdDSA, RS256, ES256). Running servers sign with them \
                 within a minute; the previous keys stay in the JWKS until the tokens they \
                 signed have expired.",
                kids.join(", ")
            );
        }
        AdminCommand::Providers(ProvidersCommand::List) => {}
        AdminCommand::Subscriptions(command) => subscriptions(&service, command).await?,
        AdminCommand::Users(command) => users(&service, command).await?,
        AdminCommand::Sessions(SessionsCommand::Revoke { user }) => {
            let user = find_user(&service, &user).await?;
            let ended = service
                .sign_out_everywhere(&user)
                .await
                .map_err(|e| CliError::new(INTERNAL, e))?;
            println!(
                "Signed {} out everywhere: {ended} browser session(s) ended and every OAuth \
                 login revoked. Their API keys still work.",
                user.email
            );
        }
        AdminCommand::Clients(ClientsCommand::Create {
            name,
            redirect_uris,
            public,
        }) => {
            let (client, secret) = service
                .create_oauth_client(NewClient {
                    name,
                    redirect_uris,
                    confidential: !public,
                    origin: ClientOrigin::Operator,
                    registration_token: None,
                    post_logout_redirect_uris: Vec::new(),
                    id_token_alg: None,
                    access_token_alg: None,
                })
                .await
                .map_err(|e| CliError::new(CONFIG, e))?;
            println!("client_id: {}", client.id);
            if let Some(secret) = secret {
                println!("client_secret: {}", secret.expose_secret());
                eprintln!("Store the secret now: it is not shown again.");
            }
        }
    }
    Ok(())
}

/// The account whose email or id is `who`; exit 2 when there is none.
async fn find_user(
    service: &latchkey_core::Service,
    who: &str,
) -> Result<latchkey_core::store::User, CliError> {
    service
        .find_user(who)
        .await
        .map_err(|e| CliError::new(INTERNAL, e))?
        .ok_or_else(|| {
            CliError::new(
                CONFIG,
                format!("there is no account {who:?} (an email or a user id)"),
            )
        })
}

async fn set_disabled(
    service: &latchkey_core::Service,
    user: &latchkey_core::store::User,
    disabled: bool,
) -> Result<(), CliError> {
    match service.set_disabled(user, disabled).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::new(
            CONFIG,
            format!("the account {} was deleted meanwhile", user.email),
        )),
        Err(e) => Err(CliError::new(INTERNAL, e)),
    }
}

/// `admin users list|show|disable|enable`.
async fn users(service: &latchkey_core::Service, command: UsersCommand) -> Result<(), CliError> {
    match command {
        UsersCommand::List { limit, offset } => {
            let users = service
                .users(limit, offset)
                .await
                .map_err(|e| CliError::new(INTERNAL, e))?;
            for user in users {
                println!(
                    "{}  {}  {}  {}{}",
                    user.id,
                    user.email,
                    if user.email_verified {
                        "verified"
                    } else {
                        "unverified"
                    },
                    user.created_at.date(),
                    if user.disabled_at.is_some() {
                        "  disabled"
                    } else {
                        ""
                    }
                );
            }
        }
        UsersCommand::Disable { user } => {
            let user = find_user(service, &user).await?;
            set_disabled(service, &user, true).await?;
            println!(
                "{} is disabled: signed out everywhere, and its API keys are refused until \
                 `admin users enable {}`.",
                user.email, user.email
            );
        }
        UsersCommand::Enable { user } => {
            let user = find_user(service, &user).await?;
            set_disabled(service, &user, false).await?;
            println!(
                "{} is enabled: it may sign in again, and its API keys work again.",
                user.email
            );
        }
        UsersCommand::Show { user } => {
            let user = find_user(service, &user).await?;
            println!("id: {}", user.id);
            println!(
                "email: {} ({})",
                user.email,
                if user.email_verified {
                    "verified"
                } else {
                    "unverified"
                }
            );
            println!("created: {}", user.created_at.date());
            if let Some(at) = user.disabled_at {
                println!("disabled: since {}", at.date());
            }
            let orgs = service
                .orgs(&user)
                .await
                .map_err(|e| CliError::new(INTERNAL, e))?;
            for membership in orgs {
                println!(
                    "org: {} ({}){}",
                    membership.org.slug,
                    membership.role,
                    if membership.personal {
                        ", personal"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

/// `admin subscriptions set|show`.
async fn subscriptions(
    service: &latchkey_core::Service,
    command: SubscriptionsCommand,
) -> Result<(), CliError> {
    use latchkey_core::billing::{BillingError, SubscriptionStatus};
    let refused = |e: BillingError| match e {
        BillingError::Store(_) => CliError::new(INTERNAL, e),
        other => CliError::new(CONFIG, other),
    };
    let org = match command {
        SubscriptionsCommand::Set {
            org,
            tier,
            status,
            until,
        } => {
            let status =
                SubscriptionStatus::parse(&status).map_err(|e| CliError::new(CONFIG, e))?;
            let until = until.as_deref().map(parse_date).transpose()?;
            service
                .set_subscription(&org, status, &tier, until)
                .await
                .map_err(refused)?;
            org
        }
        SubscriptionsCommand::Show { org } => org,
    };
    let (org, subscription, standing) = service.subscription_of(&org).await.map_err(refused)?;
    println!("org: {} ({})", org.slug, org.id);
    match subscription {
        Some(s) => {
            println!("status: {}", s.status);
            println!("tier bought: {}", s.tier);
            let end = s
                .current_period_end
                .map_or("open-ended".to_owned(), |t| t.date().to_string());
            println!("period ends: {end}");
            if let Some(customer) = s.customer_id {
                println!("billing customer: {customer}");
            }
            if let Some(id) = s.subscription_id {
                println!("billing subscription: {id}");
            }
        }
        None => println!("status: none (never subscribed)"),
    }
    println!(
        "grants now: tier {}, entitlements [{}]",
        standing.tier,
        standing.entitlements.join(", ")
    );
    Ok(())
}

/// `YYYY-MM-DD` as that day's UTC midnight.
fn parse_date(raw: &str) -> Result<time::OffsetDateTime, CliError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw, format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            CliError::new(
                CONFIG,
                format!("\u{201c}{raw}\u{201d} is not a date: use YYYY-MM-DD"),
            )
        })
}

/// `admin providers list`: needs no database, only the config and the providers themselves.
async fn list_providers(config: &ServeConfig) -> Result<(), CliError> {
    // Without a public URL, the server is reached at its listen address, as `serve` says.
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => url::Url::parse(&format!("http://{}", config.listen))
            .map_err(|e| CliError::new(CONFIG, e))?,
    };
    let upstream = Upstream::new(config.identity_providers.clone(), public_url)
        .map_err(|e| CliError::new(INTERNAL, e))?;
    if config.identity_providers.is_empty() {
        println!(
            "No identity providers are configured ([[identity_providers]] in the config file)."
        );
        return Ok(());
    }
    let mut failed = 0;
    for p in &config.identity_providers {
        let id = &p.provider.id;
        println!("{id} ({}): {}", p.provider.display_name, p.location());
        println!(
            "  callback URL to register there: {}",
            upstream.callback_url(id)
        );
        match upstream.check(p).await {
            Ok(true) => println!("  discovery: ok"),
            Ok(false) => println!("  discovery: none (OAuth 2.0, endpoints as configured)"),
            Err(e) => {
                failed += 1;
                println!("  discovery: FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(CliError::new(
            NETWORK,
            format!("{failed} identity provider(s) did not answer discovery"),
        ));
    }
    Ok(())
}
