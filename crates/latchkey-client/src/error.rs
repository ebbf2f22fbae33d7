//! Client errors, each with a kind that fixes the CLI's exit code, and messages that say what to
//! do next.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The person must do something (log in again, approve, fix input).
    Auth,
    /// The issuer could not be reached.
    Network,
    /// Neither the keychain nor the file could hold the credential.
    Storage,
    /// Settings or flags are wrong.
    Config,
    /// A bug or an unexpected answer.
    Internal,
    /// The org's subscription does not grant what was asked.
    Subscription,
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("could not reach {url}: check your connection, or that the server is running")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Nothing answered the first connection: a wrong URL or a server that is not running,
    /// which waiting will not fix (later in a session, a refused connection is a restart and
    /// is retried as [`ClientError::Unreachable`]).
    #[error("nothing answers at {url} ({reason}): check the URL, or that the server is running")]
    Refused { url: String, reason: String },
    #[error(
        "the TLS certificate of {url} is not trusted; if a proxy on your network inspects TLS, \
         set SSL_CERT_FILE to its CA bundle"
    )]
    UntrustedCertificate {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Active subscription required — Subscribe at: {subscribe_url}")]
    SubscriptionRequired { subscribe_url: String },
    #[error("the server answered {status}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the login request expired before it was approved; run the login command again")]
    FlowExpired,
    #[error("the login was denied in the browser")]
    FlowDenied,
    #[error("the server no longer knows this login request; run the login command again")]
    FlowLost,
    #[error("not logged in to {issuer}")]
    NotLoggedIn { issuer: String },
    #[error("the stored API key was refused by the server; log in again")]
    KeyRejected,
    #[error("your login has expired or was revoked; log in again")]
    SessionExpired,
    #[error("the server refused the request ({code}): {description}")]
    OAuth { code: String, description: String },
    #[error("no login arrived within {minutes} minutes; run the login command again")]
    LoginTimedOut { minutes: u64 },
    #[error("the browser reported an error: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Authorization {
        error: String,
        description: Option<String>,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "the system keychain is not available ({reason}); drop --secure-storage to use a file instead"
    )]
    KeychainUnavailable { reason: String },
    #[error(
        "the system keychain did not answer within {secs} seconds; is it locked? Unlock it, or use --insecure-storage"
    )]
    KeychainTimeout { secs: u64 },
    #[error("the system keychain refused the operation")]
    Keychain(#[source] keyring_core::Error),
    #[error("could not write the credential file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the credential file {path} is damaged; delete it and log in again")]
    CorruptFile { path: String },
    #[error("could not start the local login receiver on 127.0.0.1")]
    Loopback(#[source] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        use ClientError as E;
        match self {
            E::Unreachable { .. } | E::Refused { .. } | E::UntrustedCertificate { .. } => {
                ErrorKind::Network
            }
            E::Server { status, .. } if *status >= 500 => ErrorKind::Network,
            // The server found the request itself wrong (a bad name or scope): a usage error.
            E::Server {
                status: 400 | 422, ..
            } => ErrorKind::Config,
            E::Server { .. }
            | E::FlowExpired
            | E::FlowDenied
            | E::FlowLost
            | E::KeyRejected
            | E::NotLoggedIn { .. }
            | E::SessionExpired
            | E::OAuth { .. }
            | E::LoginTimedOut { .. }
            | E::Authorization { .. } => ErrorKind::Auth,
            E::Config(_) => ErrorKind::Config,
            E::KeychainUnavailable { .. }
            | E::KeychainTimeout { .. }
            | E::Keychain(_)
            | E::File { .. }
            | E::CorruptFile { .. } => ErrorKind::Storage,
            E::Loopback(_) | E::Internal(_) => ErrorKind::Internal,
            E::SubscriptionRequired { .. } => ErrorKind::Subscription,
        }
    }

    /// Whether the same request may succeed if retried (connection failures, 502/503/504).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || matches!(
                self,
                ClientError::Server {
                    status: 502..=504,
                    ..
                }
            )
    }
}
