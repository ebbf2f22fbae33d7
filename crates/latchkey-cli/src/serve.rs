//! `latchkey serve`: merges flags, env and the config file, then runs the server.

use latchkey_server::{ServeConfig, ServeOptions};
use tracing_subscriber::EnvFilter;

use latchkey_client::cli::exit::{CONFIG, CliError, INTERNAL, NETWORK};

use crate::cli::ServeArgs;

/// How the server's log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal only.
    #[default]
    Text,
    /// For log collectors: one JSON object per line, with the request id of each request.
    Json,
}

/// Logs to stderr, filtered by `LATCHKEY_LOG`, and takes the whole open-file hard limit: every
/// held wait or proxied stream is an open socket. Shared by `serve` and `gate`.
pub fn init_server_process(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

/// Resolves on Ctrl-C or SIGTERM: how `serve` and `gate` are told to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    init_server_process(args.log_format);

    let file = match &args.config {
        Some(path) => ServeOptions::from_toml_file(path).map_err(|e| CliError::new(CONFIG, e))?,
        None => ServeOptions::default(),
    };
    let config = ServeConfig::try_from(args.options.or(file)).map_err(|e| {
        CliError::new(CONFIG, e)
            .with_hint("see `latchkey serve --help` for every setting and its env var")
    })?;
    latchkey_server::serve(config, shutdown_signal())
        .await
        .map_err(|e| match e {
            latchkey_server::ServeError::Config(_)
            | latchkey_server::ServeError::Smtp(_)
            | latchkey_server::ServeError::DataDir(_)
            | latchkey_server::ServeError::Signing(latchkey_core::SigningError::Sealed(_)) => {
                CliError::new(CONFIG, e)
            }
            latchkey_server::ServeError::Store(_) => CliError::new(NETWORK, e).with_hint(
                "check --database-url (LATCHKEY_DATABASE_URL) and that the database is running and reachable",
            ),
            _ => CliError::new(INTERNAL, e),
        })
}
