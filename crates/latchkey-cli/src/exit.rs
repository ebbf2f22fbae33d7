//! Errors at the CLI's edge: each has a kind that fixes the exit code, and a hint a person can
//! act on.

use std::process::ExitCode;

use latchkey_client::{ClientError, ErrorKind};

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

    /// Prints `error: …` with its causes and the hint, and returns the exit code.
    pub fn report(self) -> ExitCode {
        let text = latchkey_server::error::error_chain(self.error.as_ref());
        eprintln!("error: {text}");
        if let Some(hint) = self.hint {
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
        let hint = match &e {
            ClientError::Unreachable { .. } | ClientError::Refused { .. } => {
                Some("set the server with --issuer or LATCHKEY_ISSUER")
            }
            ClientError::UntrustedCertificate { .. } => {
                Some("SSL_CERT_FILE=/path/to/ca-bundle.pem latchkey login")
            }
            ClientError::KeyRejected | ClientError::SessionExpired => {
                Some("run `latchkey login` to log in again")
            }
            ClientError::FlowDenied
            | ClientError::FlowExpired
            | ClientError::FlowLost
            | ClientError::LoginTimedOut { .. } => Some("run `latchkey login` again"),
            ClientError::KeychainTimeout { .. } | ClientError::KeychainUnavailable { .. } => {
                Some("`latchkey login --insecure-storage` stores the key in a 0600 file instead")
            }
            _ => None,
        };
        let error = CliError::new(code, e);
        match hint {
            Some(h) => error.with_hint(h),
            None => error,
        }
    }
}
