//! Sign-in with upstream identity providers, the HTTP half: the authorization URL (state, PKCE
//! S256, and for OpenID Connect a nonce), the code exchange, and reading who signed in, by
//! `openidconnect` (ID tokens) or `oauth2` and the provider's userinfo (GitHub, plain OAuth
//! 2.0). What the answer means is `latchkey_core::upstream`'s.

pub mod config;
mod oidc;
mod plain_oauth;

use std::time::Duration;

use latchkey_core::upstream::{IdentityProvider, StartedUpstreamLogin, UpstreamIdentity};
use thiserror::Error;
use url::Url;

use self::{
    config::{Protocol, UpstreamProvider},
    oidc::Discoveries,
};

#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("{provider} could not be reached, or answered in a way that cannot be used ({detail})")]
    Unavailable { provider: String, detail: String },
    #[error("{provider}'s answer failed the checks ({detail})")]
    Rejected { provider: String, detail: String },
}

impl ProviderError {
    fn unavailable(p: &UpstreamProvider, detail: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            provider: p.provider.display_name.clone(),
            detail: detail.to_string(),
        }
    }

    fn rejected(p: &UpstreamProvider, detail: impl std::fmt::Display) -> Self {
        Self::Rejected {
            provider: p.provider.display_name.clone(),
            detail: detail.to_string(),
        }
    }
}

/// What the callback brought, and what the sign-in kept for it.
struct Exchange<'a> {
    callback: &'a str,
    pkce_verifier: &'a str,
    /// OpenID Connect only.
    nonce: &'a str,
    code: &'a str,
}

/// The configured providers, the HTTP client that talks to them, and what their discovery
/// documents said.
#[derive(Debug)]
pub struct Upstream {
    providers: Vec<UpstreamProvider>,
    http: openidconnect::reqwest::Client,
    public_url: Url,
    discoveries: Discoveries,
}

impl Upstream {
    pub fn new(
        providers: Vec<UpstreamProvider>,
        public_url: Url,
    ) -> Result<Self, openidconnect::reqwest::Error> {
        let http = openidconnect::reqwest::Client::builder()
            // A provider's endpoints answer directly; following redirects invites SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            providers,
            http,
            public_url,
            discoveries: Discoveries::default(),
        })
    }

    pub fn find(&self, id: &str) -> Option<&UpstreamProvider> {
        self.providers.iter().find(|p| p.provider.id == id)
    }

    /// The providers as the sign-in page lists them.
    pub fn listed(&self) -> Vec<IdentityProvider> {
        self.providers.iter().map(|p| p.provider.clone()).collect()
    }

    /// Where the provider sends the browser back: `<public url>/auth/callback/<id>`.
    pub fn callback_url(&self, id: &str) -> String {
        format!(
            "{}/auth/callback/{id}",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// Whether `p` can be used: an OpenID Connect provider's discovery answers, names the
    /// configured issuer and its keys load (`Ok(true)`); a plain OAuth 2.0 provider has nothing
    /// to discover (`Ok(false)`).
    pub async fn check(&self, p: &UpstreamProvider) -> Result<bool, ProviderError> {
        match &p.protocol {
            Protocol::Oidc { issuer } => {
                oidc::discover(&self.http, p, issuer).await?;
                Ok(true)
            }
            Protocol::OAuth2(_) => Ok(false),
        }
    }

    /// Where to send the browser to sign in at `p`, for the sign-in `started`.
    pub async fn authorization_url(
        &self,
        p: &UpstreamProvider,
        started: &StartedUpstreamLogin,
    ) -> Result<Url, ProviderError> {
        let callback = self.callback_url(&p.provider.id);
        match &p.protocol {
            Protocol::Oidc { issuer } => {
                let metadata = self.discoveries.get(&self.http, p, issuer).await?;
                oidc::authorization_url(p, metadata, &callback, started)
            }
            Protocol::OAuth2(endpoints) => {
                plain_oauth::authorization_url(p, endpoints, &callback, started)
            }
        }
    }

    /// Exchanges `code` (with the sign-in's PKCE verifier) and reads who signed in: from the
    /// checked ID token (with the sign-in's nonce) and userinfo, or from the provider's
    /// userinfo.
    pub async fn identity(
        &self,
        p: &UpstreamProvider,
        pkce_verifier: &str,
        nonce: &str,
        code: &str,
    ) -> Result<UpstreamIdentity, ProviderError> {
        let callback = self.callback_url(&p.provider.id);
        let exchange = Exchange {
            callback: &callback,
            pkce_verifier,
            nonce,
            code,
        };
        match &p.protocol {
            Protocol::Oidc { issuer } => {
                oidc::identity(&self.http, &self.discoveries, p, issuer, exchange).await
            }
            Protocol::OAuth2(endpoints) => {
                plain_oauth::identity(&self.http, p, endpoints, exchange).await
            }
        }
    }
}
