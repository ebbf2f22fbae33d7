//! The whole login command set (`login`, `status`, `logout`, `token`, `switch`, `keys`) for a
//! tool's own binary: a clap [`AuthCommand`] to put among its subcommands, and a runner that
//! speaks with the tool's name, env vars, key prefix, OAuth client and default server
//! ([`AppIdentity`]).
//!
//! ```no_run
//! use latchkey_client::{AppIdentity, cli};
//!
//! #[derive(clap::Parser)]
//! #[command(name = "acme", version)]
//! struct Acme {
//!     #[command(flatten)]
//!     global: cli::GlobalArgs,
//!     #[command(subcommand)]
//!     command: cli::AuthCommand,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let app = AppIdentity::new("acme", "https://auth.acme.example").with_client_id("acme-cli");
//!     let acme: Acme = cli::parse(&app);
//!     cli::main(app, acme.global, acme.command)
//! }
//! ```
//!
//! A tool with commands of its own puts `#[command(flatten)] Auth(cli::AuthCommand)` in its
//! subcommand enum and calls [`run`] for that arm. Behind the `cli` cargo feature.

mod commands;
pub mod exit;
mod keys;
mod orgs;
mod sessions;
mod table;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use exit::CliError;

use crate::AppIdentity;

/// latchkey's own built-in server; the help text names the tool's instead.
pub const LATCHKEY_DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Say more on stderr: what the client does and why things fail (LATCHKEY_LOG=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The login commands, for a tool's clap parser.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
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
    /// Create, list and revoke your API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Your organizations (no subcommand: list them, the one your credential acts for marked).
    Orgs(OrgsArgs),
    /// Where you are signed in: browser sessions, and the apps and CLI logins holding tokens
    /// for you; `--revoke ID` signs one out.
    Sessions(SessionsArgs),
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Sign out this browser session (`ses_…`) or revoke this login (`rf_…`): its tokens stop
    /// working at once.
    #[arg(long, value_name = "ID")]
    pub revoke: Option<String>,
    /// Print `{sessions: [{id, device, ip, created_at, last_seen_at, current}], logins: [{id,
    /// client_id, client_name, method, device_name, scopes, created_at, last_used_at,
    /// current}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OrgsArgs {
    #[command(subcommand)]
    pub command: Option<OrgsCommand>,
    #[command(flatten)]
    pub list: OrgsListArgs,
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// List your orgs and your role in each; `*` marks the one your credential acts for.
    List(OrgsListArgs),
    /// Create an org; you are its owner.
    Create(OrgsCreateArgs),
    /// Invite someone by email: they get a link to join, valid for 7 days.
    Invite(OrgsInviteArgs),
    /// List an org's members and their roles.
    Members(OrgsMembersArgs),
    /// Leave an org (not your personal one; an org keeps an owner). Your keys in it stop
    /// working.
    Leave(OrgsLeaveArgs),
}

#[derive(Debug, Args)]
pub struct OrgsListArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Print `{orgs: [{id, slug, name, role, personal, acting}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OrgsCreateArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// 3 to 39 lowercase letters, digits and single hyphens, starting with a letter.
    pub slug: String,
    /// The name people see (default: the slug).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct OrgsInviteArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Who to invite.
    pub email: String,
    /// The org (slug or id).
    #[arg(long)]
    pub org: String,
    /// owner, admin or member.
    #[arg(long, default_value = "member")]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct OrgsMembersArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The org (slug or id).
    #[arg(long)]
    pub org: String,
    /// Print `{org, members: [{user_id, email, name, role, joined_at}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OrgsLeaveArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The org (slug or id).
    #[arg(long)]
    pub org: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it, this once, alone on stdout:
    /// `KEY=$(latchkey keys create --name ci --expires 30d)`.
    Create(KeysCreateArgs),
    /// List your API keys: name, prefix, org, created, last used, uses, expiry, scopes.
    List(KeysListArgs),
    /// Revoke an API key named by its id, prefix or name: programs using it are refused.
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// What the key is for ("laptop", "CI"); 1 to 100 characters.
    #[arg(long)]
    pub name: String,
    /// How long the key lives: 45s, 90m, 12h, 30d, 2w, 1y (default: until revoked).
    #[arg(long, value_name = "LIFETIME")]
    pub expires: Option<String>,
    /// The org the key acts for (id or slug; default: yours).
    #[arg(long)]
    pub org: Option<String>,
    /// Limit the key to this scope (repeat for several; default: everything you may do).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Print the key and its details as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Print `{api_keys: [{id, name, key_prefix, org_id, scopes, created_at, expires_at,
    /// expired, last_used_at, usage_count}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The key's id, prefix (as `keys list` shows it) or name.
    pub key: String,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args, Clone, Default)]
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
    /// Then act for this org (slug or id): a credential for it is traded for the new login
    /// (RFC 8693 token exchange) and stored beside it, under your user id and the org.
    #[arg(long, value_name = "ORG", conflicts_with_all = ["json", "complete"])]
    pub org: Option<String>,
    /// Log in without a browser by exchanging the credential in this file (RFC 8693): an API
    /// key or access token of this server (with --org), or a CI job's OIDC token that the
    /// server trusts (keyless CI).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["with_token", "method", "json", "complete", "subject_token_env"])]
    pub subject_token_file: Option<std::path::PathBuf>,
    /// The same, with the credential in this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["with_token", "method", "json", "complete"])]
    pub subject_token_env: Option<String>,
    /// Fail (exit 6, saying where to subscribe) unless the org the login acts for has a
    /// subscription that grants this entitlement; the credential is kept either way.
    #[arg(long, value_name = "NAME", conflicts_with = "json")]
    pub require_entitlement: Option<String>,
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
    /// Print an access token that acts for this org instead (slug or id; 1 hour), traded for
    /// the logged-in credential (RFC 8693 token exchange).
    #[arg(long, value_name = "ORG", conflicts_with = "check")]
    pub org: Option<String>,
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
    /// Act for this org (slug or id): its stored credential, or else one traded for the active
    /// credential (RFC 8693 token exchange) and stored beside it. With an account: that
    /// person's stored credential for the org.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// Print JSON: `{issuer, accounts: [{email, user_id, org, active, storage, refused}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Parses the command line into the tool's parser `T`, with the help text of the login
/// commands in the tool's words: its name, its env vars and its default server.
pub fn parse<T: clap::Parser>(app: &AppIdentity) -> T {
    let matches = in_tools_words(T::command(), app).get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `command` with latchkey's name, env prefix and default server replaced by `app`'s in the help
/// text of the login commands and of `--verbose`, wherever they sit; the tool's own text is
/// left as it wrote it.
pub fn in_tools_words(command: clap::Command, app: &AppIdentity) -> clap::Command {
    command
        .mut_args(|arg| match arg.get_id().as_str() {
            "verbose" => reword_arg(arg, app),
            _ => arg,
        })
        .mut_subcommands(|sub| {
            if AuthCommand::has_subcommand(sub.get_name()) {
                reword_command(sub, app)
            } else {
                in_tools_words(sub, app)
            }
        })
}

fn reword(text: &clap::builder::StyledStr, app: &AppIdentity) -> String {
    text.to_string()
        .replace("LATCHKEY_", &format!("{}_", app.env_prefix))
        .replace("latchkey", &app.name)
        .replace(LATCHKEY_DEFAULT_ISSUER, &app.default_issuer)
}

fn reword_arg(mut arg: clap::Arg, app: &AppIdentity) -> clap::Arg {
    if let Some(help) = arg.get_help().map(|h| reword(h, app)) {
        arg = arg.help(help);
    }
    if let Some(long_help) = arg.get_long_help().map(|h| reword(h, app)) {
        arg = arg.long_help(long_help);
    }
    arg
}

fn reword_command(mut command: clap::Command, app: &AppIdentity) -> clap::Command {
    if let Some(about) = command.get_about().map(|a| reword(a, app)) {
        command = command.about(about);
    }
    if let Some(long_about) = command.get_long_about().map(|a| reword(a, app)) {
        command = command.long_about(long_about);
    }
    command
        .mut_args(|arg| reword_arg(arg, app))
        .mut_subcommands(|sub| reword_command(sub, app))
}

/// Runs one login command for `app`.
pub async fn run(app: &AppIdentity, command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Login(args) => commands::login(app, args).await,
        AuthCommand::Status(args) => commands::status(app, args).await,
        AuthCommand::Logout(args) => commands::logout(app, args).await,
        AuthCommand::Token(args) => commands::token(app, args).await,
        AuthCommand::Switch(args) => commands::switch(app, args).await,
        AuthCommand::Keys(KeysCommand::Create(args)) => keys::create(app, args).await,
        AuthCommand::Keys(KeysCommand::List(args)) => keys::list(app, args).await,
        AuthCommand::Keys(KeysCommand::Revoke(args)) => keys::revoke(app, args).await,
        AuthCommand::Orgs(OrgsArgs { command, list }) => match command {
            None => orgs::list(app, list).await,
            Some(OrgsCommand::List(args)) => orgs::list(app, args).await,
            Some(OrgsCommand::Create(args)) => orgs::create(app, args).await,
            Some(OrgsCommand::Invite(args)) => orgs::invite(app, args).await,
            Some(OrgsCommand::Members(args)) => orgs::members(app, args).await,
            Some(OrgsCommand::Leave(args)) => orgs::leave(app, args).await,
        },
        AuthCommand::Sessions(args) => sessions::run(app, args).await,
    }
}

/// A tool's whole `main` for a login command: logging as asked, an async runtime, the command,
/// and on failure `error: …` and `hint: …` on stderr and the exit code of the error's kind.
pub fn main(app: AppIdentity, global: GlobalArgs, command: AuthCommand) -> ExitCode {
    init_logging(&app, global.verbose);
    block_on(&app, run(&app, command))
}

/// Runs one of the tool's own commands as [`main`] runs a login command: on an async runtime,
/// its failure reported in the tool's name with its exit code.
pub fn block_on(
    app: &AppIdentity,
    command: impl std::future::Future<Output = Result<(), CliError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return CliError::new(exit::INTERNAL, e)
                .with_hint("the system refused the threads an async runtime needs")
                .report(app);
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(app),
    }
}

/// A client for the tool's commands of its own, with the server, storage and project file the
/// login commands would use.
pub fn client(app: &AppIdentity) -> Result<crate::Client, CliError> {
    commands::issuer_client(app, &IssuerArgs::default())
}

/// Logs only when asked (`-v`, or `<PREFIX>_LOG=debug`, say), to stderr, in colour only on a
/// terminal.
pub fn init_logging(app: &AppIdentity, verbose: bool) {
    let crate_name = app.name.replace('-', "_");
    let filter = tracing_subscriber::EnvFilter::try_from_env(app.env("LOG"))
        .ok()
        .or_else(|| {
            verbose.then(|| {
                tracing_subscriber::EnvFilter::new(format!(
                    "warn,{crate_name}=debug,latchkey_client=debug"
                ))
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// A tool with a command of its own beside the login commands.
    #[derive(Parser)]
    #[command(name = "acme", about = "Acme, built on latchkey")]
    struct Acme {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: AcmeCommand,
    }

    #[derive(Subcommand)]
    enum AcmeCommand {
        #[command(flatten)]
        Auth(AuthCommand),
        /// Deploy with the latchkey token.
        Deploy,
    }

    fn help(command: &mut clap::Command, path: &[&str]) -> String {
        let mut here = command;
        for name in path {
            here = here.find_subcommand_mut(name).expect("a subcommand");
        }
        here.render_long_help().to_string()
    }

    #[test]
    fn the_login_commands_speak_in_the_tools_words_and_its_own_text_is_kept() {
        let app = AppIdentity::new("acme", "https://auth.acme.example");
        let mut command = in_tools_words(Acme::command(), &app);
        let login = help(&mut command, &["login"]);
        assert!(login.contains("ACME_ISSUER"), "{login}");
        assert!(login.contains("https://auth.acme.example"), "{login}");
        assert!(login.contains("| acme login --with-token"), "{login}");
        let create = help(&mut command, &["keys", "create"]);
        assert!(create.contains("$(acme keys create"), "{create}");
        for path in [&["login"][..], &["keys", "create"], &["token"]] {
            let text = help(&mut command, path).to_lowercase();
            assert!(!text.contains("latchkey"), "{path:?}: {text}");
        }
        assert!(help(&mut command, &[]).contains("Acme, built on latchkey"));
        assert!(help(&mut command, &["deploy"]).contains("with the latchkey token"));
        assert!(help(&mut command, &[]).contains("ACME_LOG"));
    }
}
