//! The OAuth 2.1 authorization server: clients, the authorization-code grant with PKCE, and
//! rotating refresh tokens with reuse detection. Errors carry RFC 6749 codes; the HTTP layer
//! only chooses the status and the body shape.

pub mod authorize;
pub mod device;
pub mod introspect;
pub mod token;

use latchkey_proto::{ClientSecret, SecretHash, oauth::OAuthErrorCode, redirect_uri};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{Service, SigningError, StoreError, new_id, store::OAuthClientRecord};

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

/// A client as its creator asks for it.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Confidential clients get a secret; public ones (CLIs, native apps) do not.
    pub confidential: bool,
}

impl Service {
    /// Registers a client; returns it and, for a confidential client, its secret (shown once).
    pub async fn create_oauth_client(
        &self,
        new: NewClient,
    ) -> Result<(OAuthClientRecord, Option<ClientSecret>), OAuthError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidClientMetadata,
                "the client name must be 1 to 100 characters",
            ));
        }
        if new.redirect_uris.is_empty() && !new.confidential {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRedirectUri,
                "a public client needs at least one loopback redirect URI",
            ));
        }
        for uri in &new.redirect_uris {
            redirect_uri::check_registration(uri, !new.confidential).map_err(|e| {
                OAuthError::new(OAuthErrorCode::InvalidRedirectUri, format!("{uri}: {e}"))
            })?;
        }
        let secret = new.confidential.then(|| ClientSecret::generate(&mut OsRng));
        let record = OAuthClientRecord {
            id: new_id("cl"),
            name: name.to_owned(),
            secret_hash: secret.as_ref().map(ClientSecret::hash),
            redirect_uris: new.redirect_uris,
            created_at: self.now(),
        };
        self.inner.store.upsert_oauth_client(&record).await?;
        Ok((record, secret))
    }

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

    /// Authenticates the client of a token, introspection or revocation request, from HTTP
    /// Basic credentials or the body (`client_secret_post`), never both with different ids.
    pub async fn authenticate_client_request(
        &self,
        basic: Option<(String, String)>,
        body_client_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<OAuthClientRecord, OAuthError> {
        match (&basic, body_client_id) {
            (Some((id, _)), Some(body_id)) if id != body_id => Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "client_id in the body differs from the one in the Authorization header",
            )),
            (Some((id, secret)), _) => self.authenticate_client(Some(id), Some(secret)).await,
            (None, id) => self.authenticate_client(id, body_secret).await,
        }
    }

    /// Public clients present no secret, confidential ones must present theirs.
    async fn authenticate_client(
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
