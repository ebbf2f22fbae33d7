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

#[derive(Debug)]
pub struct CliError {
    code: u8,
    error: Box<dyn std::error::Error + Send + Sync>,
    hint: Option<String>,
    /// A client error's hint names the tool, so it is chosen when the error is reported.
    client_hint: Option<ClientHint>,
}

#[derive(Debug, Clone, Copy)]
enum ClientHint {
    SetIssuer,
    LogIn,
    TrustCa,
    LogInAgain,
    StartLoginAgain,
    UseFile,
}

impl CliError {
    pub fn new(code: u8, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            code,
            error: error.into(),
            hint: None,
            client_hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints `error: …` with its causes and the hint, and returns the exit code.
    pub fn report(self, app: &AppIdentity) -> ExitCode {
        eprintln!("error: {}", error_chain(self.error.as_ref()));
        let tool = &app.name;
        let hint = self.hint.or_else(|| {
            self.client_hint.map(|hint| match hint {
                ClientHint::SetIssuer => {
                    format!("set the server with --issuer or {}", app.env("ISSUER"))
                }
                ClientHint::TrustCa => format!("SSL_CERT_FILE=/path/to/ca-bundle.pem {tool} login"),
                ClientHint::LogIn => format!("run `{tool} login`"),
                ClientHint::LogInAgain => format!("run `{tool} login` to log in again"),
                ClientHint::StartLoginAgain => format!("run `{tool} login` again"),
                ClientHint::UseFile => format!(
                    "`{tool} login --insecure-storage` stores the key in a 0600 file instead"
                ),
            })
        });
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.code)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let code = match e.kind() {
            ErrorKind::Auth => AUTH,
            ErrorKind::Network => NETWORK,
            ErrorKind::Storage => STORAGE,
            ErrorKind::Config => CONFIG,
            ErrorKind::Internal => INTERNAL,
        };
        let client_hint = match &e {
            ClientError::Unreachable { .. } | ClientError::Refused { .. } => {
                Some(ClientHint::SetIssuer)
            }
            ClientError::UntrustedCertificate { .. } => Some(ClientHint::TrustCa),
            ClientError::KeyRejected | ClientError::SessionExpired => Some(ClientHint::LogInAgain),
            ClientError::NotLoggedIn { .. } => Some(ClientHint::LogIn),
            ClientError::FlowDenied
            | ClientError::FlowExpired
            | ClientError::FlowLost
            | ClientError::LoginTimedOut { .. } => Some(ClientHint::StartLoginAgain),
            ClientError::KeychainTimeout { .. } | ClientError::KeychainUnavailable { .. } => {
                Some(ClientHint::UseFile)
            }
            _ => None,
        };
        Self {
            client_hint,
            ..CliError::new(code, e)
        }
    }
}
