//! Flags (clap) and dispatch.

use clap::{Args, Parser, Subcommand};
use latchkey_client::{
    AppIdentity,
    cli::{AuthCommand, CliError, GlobalArgs, LATCHKEY_DEFAULT_ISSUER},
};
use latchkey_server::ServeOptions;

use crate::{admin, serve};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hostable authentication for developer tools"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the auth service.
    Serve(ServeArgs),
    /// login, status, logout, token, switch: the CLI any tool can embed.
    #[command(flatten)]
    Auth(AuthCommand),
    /// Administer a deployment in its database: signing keys, OAuth clients.
    Admin(AdminArgs),
    /// Run the auth proxy in front of an API or MCP server.
    Gate(crate::gate::GateArgs),
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The same database settings as `latchkey serve` (flags, LATCHKEY_* env vars, TOML file).
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Access-token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Identity providers people sign in with.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// Orgs' subscriptions, set by hand (deployments without Stripe, support).
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// Accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Browser sessions and OAuth logins.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List accounts, newest first: id, email, verified, created.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show one account (by email or id) and its orgs.
    Show { user: String },
    /// Disable an account (by email or id): it cannot sign in, every browser session and OAuth
    /// login ends, and its API keys are refused until it is enabled again.
    Disable { user: String },
    /// Enable a disabled account again: it may sign in, and its API keys work again.
    Enable { user: String },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Sign an account out everywhere: every browser session ends and every OAuth login's
    /// refresh family is revoked (API keys are revoked with `keys`).
    Revoke {
        /// The account's email or id.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// Set an org's subscription; it applies as of now, so older billing events do not undo it.
    Set {
        /// The org (slug or id).
        #[arg(long)]
        org: String,
        /// A tier of the config's `[tiers.<name>]`.
        #[arg(long)]
        tier: String,
        /// none, trialing, active, past_due, canceled or unpaid.
        #[arg(long)]
        status: String,
        /// When it ends (YYYY-MM-DD, UTC midnight); open-ended when omitted.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
    },
    /// Show an org's subscription and what it grants now.
    Show {
        /// The org (slug or id).
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Show the configured providers, the callback URL to register at each, and whether its
    /// discovery document answers; exit 4 if one does not.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key; the previous one stays in the JWKS until its tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client and print its id (and, for a confidential client, its secret, once).
    Create {
        /// What the consent page calls the client.
        #[arg(long)]
        name: String,
        /// An allowed redirect URI (repeat for several); loopback only for public clients.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (a CLI or native app): no secret, loopback redirects only.
        #[arg(long)]
        public: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with the same settings as the flags (flags and LATCHKEY_* env vars win).
    #[arg(long, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// text (for people) or json (one object per line, with request ids, for log collectors).
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: crate::serve::LogFormat,
    #[command(flatten)]
    pub options: ServeOptions,
}

/// The reference CLI is latchkey-client's command set under latchkey's own name.
pub fn latchkey() -> AppIdentity {
    AppIdentity::new("latchkey", LATCHKEY_DEFAULT_ISSUER)
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Auth(command) => {
            latchkey_client::cli::init_logging(&latchkey(), cli.global.verbose);
            latchkey_client::cli::run(&latchkey(), command).await
        }
        Command::Admin(args) => admin::run(args).await,
        Command::Gate(args) => crate::gate::run(args).await,
    }
}
