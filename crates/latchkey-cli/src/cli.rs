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
    /// Say more on stderr: what the client does and why things fail (LATCHKEY_LOG=debug).
    #[arg(short, long, global = true)]
    verbose: bool,
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
    /// Delete a stored credential and revoke it on the server: the active account's, the one
    /// named, or (--all) every one.
    Logout(LogoutArgs),
    /// Print a valid credential for scripts, refreshing it first when it is about to expire:
    /// `curl -H "Authorization: Bearer $(latchkey token)"`. Never prints one the server has
    /// refused.
    Token(TokenArgs),
    /// Choose which of your logged-in accounts is active (no argument: list them).
    Switch(SwitchArgs),
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

#[derive(Debug, Args, Clone)]
pub struct IssuerArgs {
    /// The latchkey server [env: LATCHKEY_ISSUER; default: the first one you logged in to, else
    /// http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
}

/// `--method`: how to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// The browser where one can open; a device code over SSH, without a display, in a container.
    Auto,
    /// OAuth in the browser, back to this machine on a loopback port.
    Browser,
    /// A code to type on any device (for SSH sessions and headless machines).
    Device,
    /// Approve a login request in the browser (Modal-style token flow).
    TokenFlow,
    /// Paste an API key (read from stdin).
    Paste,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// How to log in.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    /// Read an API key from stdin (for CI): `echo "$KEY" | latchkey login --with-token`.
    #[arg(long, conflicts_with_all = ["method", "json", "complete"])]
    pub with_token: bool,
    /// Do not open a browser; print the URL (and code) to open instead.
    #[arg(long)]
    pub no_browser: bool,
    /// Start the login, print {id, url, code, method, next_step} as JSON and exit (for agents
    /// and scripts); finish it with --complete.
    #[arg(long, conflicts_with = "complete")]
    pub json: bool,
    /// Finish a login started with --json.
    #[arg(long, value_name = "ID")]
    pub complete: Option<String>,
    /// Copy the code to the clipboard.
    #[arg(long)]
    pub copy: bool,
    /// Send the browser to this hand-off page instead of the OAuth consent page; it hands the
    /// key straight back [env: LATCHKEY_AUTH_URL]
    #[arg(long, value_name = "URL")]
    pub auth_url: Option<String>,
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
    /// Print nothing; exit 0 only if a valid credential is present (no network while the
    /// token is fresh).
    #[arg(long, conflicts_with = "json")]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Ask the server first that the credential is still accepted (an API key can be revoked
    /// before it expires); exit 3 if not.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The account to log out (email, user id or org); the active one when omitted.
    #[arg(conflicts_with = "all")]
    pub account: Option<String>,
    /// Log out every account: on every server, or on the one --issuer names.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The account's email, user id or org.
    pub account: Option<String>,
    /// Print JSON: `{issuer, accounts: [{email, user_id, org, active, storage, refused}]}`.
    #[arg(long)]
    pub json: bool,
}

/// The client commands log only when asked (`-v`, or `LATCHKEY_LOG=debug`, say), to stderr.
fn init_client_logging(verbose: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
        .ok()
        .or_else(|| {
            verbose.then(|| {
                tracing_subscriber::EnvFilter::new("warn,latchkey=debug,latchkey_client=debug")
            })
        });
    if let Some(filter) = filter {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    if !matches!(cli.command, Command::Serve(_) | Command::Gate(_)) {
        init_client_logging(cli.verbose);
    }
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Login(args) => auth_commands::login(args).await,
        Command::Status(args) => auth_commands::status(args).await,
        Command::Logout(args) => auth_commands::logout(args).await,
        Command::Token(args) => auth_commands::token(args).await,
        Command::Switch(args) => auth_commands::switch(args),
        Command::Admin(args) => admin::run(args).await,
        Command::Gate(args) => crate::gate::run(args).await,
    }
}
