//! The OAuth 2.1 authorization server: clients, the authorization-code grant with PKCE, and
//! rotating refresh tokens with reuse detection. Errors carry RFC 6749 codes; the HTTP layer
//! only chooses the status and the body shape.

pub mod authorize;
pub mod token;

use latchkey_proto::{SecretHash, oauth::OAuthErrorCode};
use thiserror::Error;

use crate::{Service, SigningError, StoreError, store::OAuthClientRecord};

/// The public client the `latchkey` CLI (and tools embedding the client library) log in as.
pub const CLI_CLIENT_ID: &str = "latchkey-cli";

/// Scopes this issuer knows; anything else is `invalid_scope`.
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

#[derive(Debug, Error)]
pub enum OAuthError {
    #[error("{description}")]
    Protocol {
        code: OAuthErrorCode,
        description: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl OAuthError {
    pub(crate) fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self::Protocol {
            code,
            description: description.into(),
        }
    }
}

impl Service {
    /// Registers the built-in CLI client (loopback redirects on any port, no secret).
    pub async fn ensure_builtin_clients(&self) -> Result<(), StoreError> {
        let existing = self.inner.store.oauth_client(CLI_CLIENT_ID).await?;
        let client = OAuthClientRecord {
            id: CLI_CLIENT_ID.into(),
            name: "latchkey CLI".into(),
            secret_hash: None,
            redirect_uris: vec![
                "http://127.0.0.1/callback".into(),
                "http://[::1]/callback".into(),
            ],
            created_at: existing
                .as_ref()
                .map_or_else(|| self.now(), |c| c.created_at),
        };
        if existing.as_ref() != Some(&client) {
            self.inner.store.upsert_oauth_client(&client).await?;
        }
        Ok(())
    }

    /// Authenticates the client of a token request: public clients present no secret,
    /// confidential ones must present theirs.
    pub(crate) async fn authenticate_client(
        &self,
        client_id: Option<&str>,
        secret: Option<&str>,
    ) -> Result<OAuthClientRecord, OAuthError> {
        let invalid = || {
            OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "client authentication failed",
            )
        };
        let client_id = client_id.ok_or_else(|| {
            OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
        })?;
        let client = self
            .inner
            .store
            .oauth_client(client_id)
            .await?
            .ok_or_else(invalid)?;
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (Some(expected), Some(presented)) if expected.matches(&SecretHash::of(presented)) => {
                Ok(client)
            }
            _ => Err(invalid()),
        }
    }
}
