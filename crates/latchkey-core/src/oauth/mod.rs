//! The OAuth 2.1 authorization server: clients, the authorization-code grant with PKCE, and
//! rotating refresh tokens with reuse detection. Errors carry RFC 6749 codes; the HTTP layer
//! only chooses the status and the body shape.

pub mod authorize;
pub mod client_metadata;
pub mod device;
pub mod exchange;
pub mod introspect;
pub mod openid;
pub mod register;
pub mod token;

use latchkey_proto::{
    ClientSecret, SecretHash, jws::Algorithm, oauth::OAuthErrorCode, redirect_uri,
};
use rand::rngs::OsRng;
use thiserror::Error;

use time::OffsetDateTime;

use crate::{
    Service, SigningError, StoreError, new_id, store::OAuthClientRecord, throttle::Throttled,
};

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
    #[error("too many requests from this address: try again in {}", .0.retry_after_in_words())]
    Throttled(Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// What a `resource` (RFC 8707) must be.
const RESOURCE_RULE: &str =
    "resource must be an absolute http(s) URI with a host and no fragment or userinfo";

impl Service {
    /// The request's `resource` in its canonical form (the `aud` of the tokens it leads to).
    /// `invalid_target` when it cannot name a resource, or when the deployment lists the
    /// resources it serves and this is not one of them (nor the issuer itself).
    pub(crate) fn check_resource(&self, raw: Option<&str>) -> Result<Option<String>, OAuthError> {
        let Some(raw) = raw else { return Ok(None) };
        let resource = latchkey_proto::resource::canonical_resource(raw)
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidTarget, RESOURCE_RULE))?;
        let policy = &self.inner.policy;
        let known = policy.allowed_resources.is_empty()
            || resource == policy.public_url
            || policy.allowed_resources.contains(&resource);
        if !known {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                format!("{resource} is not a resource this issuer grants tokens for"),
            ));
        }
        Ok(Some(resource))
    }
}

impl OAuthError {
    pub(crate) fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self::Protocol {
            code,
            description: description.into(),
        }
    }
}

/// How long a registered client is served from memory: a change made by another process
/// (`latchkey admin`, another replica) takes effect within this; this process's own changes at
/// once.
const CLIENT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Registered clients kept in memory, so the token endpoint does not read the store for every
/// token (bounded; unknown ids are never cached).
pub(crate) struct ClientCache(
    quick_cache::sync::Cache<String, (OffsetDateTime, OAuthClientRecord)>,
);

impl Default for ClientCache {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(10_000))
    }
}

impl ClientCache {
    pub(crate) fn forget(&self, client_id: &str) {
        self.0.remove(client_id);
    }

    pub(crate) fn clear(&self) {
        self.0.clear();
    }
}

/// Why a client could not be looked up.
#[derive(Debug, Error)]
pub enum ClientLookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metadata(#[from] client_metadata::ClientMetadataError),
}

/// A client as its creator asks for it.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Confidential clients get a secret; public ones (CLIs, native apps) do not.
    pub confidential: bool,
    pub origin: ClientOrigin,
    /// Self-registered clients: the hash of their RFC 7592 registration access token.
    pub registration_token: Option<SecretHash>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_alg: Option<Algorithm>,
    pub access_token_alg: Option<Algorithm>,
}

/// A client declared in the config file (`[[oauth_clients]]`): public when it has no secret.
#[derive(Debug, Clone)]
pub struct DeclaredClient {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub secret_hash: Option<SecretHash>,
    pub post_logout_redirect_uris: Vec<String>,
}

/// Who registered a client, which decides what its id looks like and how far its name is
/// trusted on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOrigin {
    /// An operator: `latchkey admin clients create`.
    Operator,
    /// The client itself, through `/oauth/register`: its name is unverified.
    SelfRegistered,
    /// A Client ID Metadata Document at the URL that is its id: vouched for by that host.
    MetadataDocument,
}

impl ClientOrigin {
    const SELF_REGISTERED_PREFIX: &str = "dcr";

    fn id_prefix(self) -> &'static str {
        match self {
            Self::Operator | Self::MetadataDocument => "cl",
            Self::SelfRegistered => Self::SELF_REGISTERED_PREFIX,
        }
    }

    pub fn of(client: &OAuthClientRecord) -> Self {
        if client_metadata::is_metadata_url(&client.id) {
            Self::MetadataDocument
        } else if client
            .id
            .strip_prefix(Self::SELF_REGISTERED_PREFIX)
            .is_some_and(|rest| rest.starts_with('_'))
        {
            Self::SelfRegistered
        } else {
            Self::Operator
        }
    }
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
            id: new_id(new.origin.id_prefix()),
            name: name.to_owned(),
            secret_hash: secret.as_ref().map(ClientSecret::hash),
            redirect_uris: new.redirect_uris,
            created_at: self.now(),
            registration_token: new.registration_token,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            id_token_alg: new.id_token_alg,
            access_token_alg: new.access_token_alg,
        };
        self.save_client(&record).await?;
        Ok((record, secret))
    }

    /// Registers the built-in CLI client and the clients declared in the config file, as
    /// declared: a changed name, secret or redirect URI takes effect at the next start.
    pub async fn ensure_declared_clients(&self) -> Result<(), OAuthError> {
        let builtin = DeclaredClient {
            id: CLI_CLIENT_ID.into(),
            name: format!("{} CLI", self.inner.policy.product_name),
            redirect_uris: vec![
                "http://127.0.0.1/callback".into(),
                "http://[::1]/callback".into(),
            ],
            secret_hash: None,
            post_logout_redirect_uris: Vec::new(),
        };
        for declared in std::iter::once(&builtin).chain(&self.inner.policy.declared_clients) {
            for uri in &declared.redirect_uris {
                redirect_uri::check_registration(uri, declared.secret_hash.is_none()).map_err(
                    |e| {
                        OAuthError::new(
                            OAuthErrorCode::InvalidRedirectUri,
                            format!("client {}: {uri}: {e}", declared.id),
                        )
                    },
                )?;
            }
            let existing = self.inner.store.oauth_client(&declared.id).await?;
            let client = OAuthClientRecord {
                id: declared.id.clone(),
                name: declared.name.clone(),
                secret_hash: declared.secret_hash,
                redirect_uris: declared.redirect_uris.clone(),
                created_at: existing
                    .as_ref()
                    .map_or_else(|| self.now(), |c| c.created_at),
                registration_token: None,
                post_logout_redirect_uris: declared.post_logout_redirect_uris.clone(),
                id_token_alg: None,
                access_token_alg: None,
            };
            if existing.as_ref() != Some(&client) {
                self.save_client(&client).await?;
            }
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

    /// Deletes a client and drops any copy of it held in memory.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.store.delete_oauth_client(id).await?;
        self.inner.clients.forget(id);
        Ok(deleted)
    }

    /// Stores a client and drops any copy of it held in memory.
    async fn save_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError> {
        self.inner.store.upsert_oauth_client(client).await?;
        self.inner.clients.forget(&client.id);
        Ok(())
    }

    /// A client by id: registered in the store, or, for a URL, described by the metadata
    /// document served there.
    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<OAuthClientRecord>, ClientLookupError> {
        if !client_metadata::is_metadata_url(client_id) {
            let now = self.now();
            if let Some((cached_at, client)) = self.inner.clients.0.get(client_id)
                && now - cached_at < CLIENT_CACHE_TTL
            {
                return Ok(Some(client));
            }
            let client = self.inner.store.oauth_client(client_id).await?;
            if let Some(client) = &client {
                self.inner
                    .clients
                    .0
                    .insert(client_id.to_owned(), (now, client.clone()));
            }
            return Ok(client);
        }
        let Some(fetcher) = self.inner.client_metadata.get() else {
            return Ok(None);
        };
        let url = client_metadata::check_client_id_url(
            client_id,
            self.inner.policy.client_metadata_insecure_loopback,
        )?;
        let body = fetcher.fetch(&url).await?;
        let mut client = client_metadata::client_from_document(&url, &body, self.now())?;
        // Codes and refresh tokens refer to their client: keep a row for it, as documented
        // now. The document stays the authority: it is read again on every lookup.
        let stored = self.inner.store.oauth_client(client_id).await?;
        if let Some(stored) = &stored {
            client.created_at = stored.created_at;
        }
        if stored.as_ref() != Some(&client) {
            self.save_client(&client).await?;
        }
        Ok(Some(client))
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
        let client = match self.client(client_id).await {
            Ok(Some(client)) => client,
            Ok(None) => return Err(invalid()),
            Err(ClientLookupError::Store(e)) => return Err(e.into()),
            Err(ClientLookupError::Metadata(e)) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    e.to_string(),
                ));
            }
        };
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (Some(expected), Some(presented)) if expected.matches(&SecretHash::of(presented)) => {
                Ok(client)
            }
            _ => Err(invalid()),
        }
    }
}
