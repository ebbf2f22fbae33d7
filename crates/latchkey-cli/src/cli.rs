//! Flags (clap) and dispatch.

use clap::{Args, Parser, Subcommand};
use latchkey_server::ServeOptions;

use crate::{admin, auth_commands, exit::CliError, serve};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hostable authentication for developer tools"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the auth service.
    Serve(ServeArgs),
    /// Log in: approve in the browser, and the key is stored in the OS keychain.
    Login(LoginArgs),
    /// Show who you are logged in as, and where the credential comes from.
    Status(StatusArgs),
    /// Delete the stored credential and revoke it on the server.
    Logout(IssuerArgs),
    /// Print the API key in force, for scripts: `curl -H "Authorization: Bearer $(latchkey token)"`.
    Token(IssuerArgs),
    /// Administer a deployment in its database: signing keys, OAuth clients.
    Admin(AdminArgs),
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
    #[command(flatten)]
    pub options: ServeOptions,
}

#[derive(Debug, Args, Clone)]
pub struct IssuerArgs {
    /// The latchkey server [env: LATCHKEY_ISSUER; default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Do not open a browser; print the URL to open instead.
    #[arg(long)]
    pub no_browser: bool,
    /// Send the browser to this page (with token_flow_id, code and source=cli added) instead of
    /// the server's own approval page [env: LATCHKEY_LOGIN_URL]
    #[arg(long, value_name = "URL")]
    pub login_url: Option<String>,
    /// Store the key in a 0600 file, never in the OS keychain.
    #[arg(long, conflicts_with = "secure_storage")]
    pub insecure_storage: bool,
    /// Store the key in the OS keychain or fail; never fall back to a file.
    #[arg(long)]
    pub secure_storage: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Login(args) => auth_commands::login(args).await,
        Command::Status(args) => auth_commands::status(args).await,
        Command::Logout(args) => auth_commands::logout(args).await,
        Command::Token(args) => auth_commands::token(args).await,
        Command::Admin(args) => admin::run(args).await,
    }
}
