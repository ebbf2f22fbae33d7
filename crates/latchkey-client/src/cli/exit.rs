//! Errors at a CLI's edge: each has a kind that fixes the exit code, and a hint a person can act
//! on, in the tool's own words.

use std::process::ExitCode;

use latchkey_proto::error::error_chain;

use crate::{AppIdentity, ClientError, ErrorKind};

pub const INTERNAL: u8 = 1;
pub const CONFIG: u8 = 2;
pub const AUTH: u8 = 3;
pub const NETWORK: u8 = 4;
pub const STORAGE: u8 = 5;
/// The org's subscription does not grant what was asked (the message says where to subscribe).
pub const SUBSCRIPTION: u8 = 6;

#[derive(Debug)]
pub struct CliError {
    code: u8,
    error: Box<dyn std::error::Error + Send + Sync>,
    hint: Option<String>,
}

impl CliError {
    pub fn new(code: u8, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            code,
            error: error.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints `error: …` with its causes and the hint, and returns the exit code. A client
    /// error's hint names the tool, so it is chosen here, from the error.
    pub fn report(self, app: &AppIdentity) -> ExitCode {
        eprintln!("error: {}", error_chain(self.error.as_ref()));
        let hint = self.hint.or_else(|| {
            self.error
                .downcast_ref::<ClientError>()
                .and_then(|e| client_hint(e, app))
        });
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.code)
    }
}

/// What the person can do about a client error, in the tool's words.
fn client_hint(error: &ClientError, app: &AppIdentity) -> Option<String> {
    let tool = &app.name;
    let hint = match error {
        ClientError::Unreachable { .. } | ClientError::Refused { .. } => {
            format!("set the server with --issuer or {}", app.env("ISSUER"))
        }
        ClientError::UntrustedCertificate { .. } => {
            format!("SSL_CERT_FILE=/path/to/ca-bundle.pem {tool} login")
        }
        ClientError::KeyRejected | ClientError::SessionExpired => {
            format!("run `{tool} login` to log in again")
        }
        ClientError::NotLoggedIn { .. } => format!("run `{tool} login`"),
        ClientError::FlowDenied
        | ClientError::FlowExpired
        | ClientError::FlowLost
        | ClientError::LoginTimedOut { .. } => format!("run `{tool} login` again"),
        ClientError::KeychainTimeout { .. } | ClientError::KeychainUnavailable { .. } => {
            format!("`{tool} login --insecure-storage` stores the key in a 0600 file instead")
        }
        _ => return None,
    };
    Some(hint)
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let code = match e.kind() {
            ErrorKind::Auth => AUTH,
            ErrorKind::Network => NETWORK,
            ErrorKind::Storage => STORAGE,
            ErrorKind::Config => CONFIG,
            ErrorKind::Internal => INTERNAL,
            ErrorKind::Subscription => SUBSCRIPTION,
        };
        CliError::new(code, e)
    }
}
