//! Sign-in with upstream OpenID Connect providers, the HTTP half: discovery, the authorization
//! URL (state, PKCE S256, nonce), the code exchange and the ID token's checks (signature on the
//! provider's JWKS, `iss`, `aud`, `azp`, `exp`, `nonce`, `at_hash`), all by `openidconnect`.
//! What the answer means is `latchkey_core::upstream`'s.
//!
//! Each step discovers the provider afresh, so its signing keys are always current.

use std::time::Duration;

use latchkey_core::upstream::{IdentityProvider, StartedUpstreamLogin, UpstreamIdentity};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims},
};
use thiserror::Error;
use url::Url;

use crate::config::UpstreamProvider;

#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("{provider} could not be reached, or answered in a way that cannot be used ({detail})")]
    Unavailable { provider: String, detail: String },
    #[error("{provider}'s answer failed the checks ({detail})")]
    Rejected { provider: String, detail: String },
}

/// The configured providers, and the HTTP client that talks to them.
#[derive(Debug)]
pub struct Upstream {
    providers: Vec<UpstreamProvider>,
    http: openidconnect::reqwest::Client,
    public_url: Url,
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
            .build()?;
        Ok(Self {
            providers,
            http,
            public_url,
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

    async fn client(
        &self,
        p: &UpstreamProvider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ProviderError,
    > {
        let unavailable = |detail: String| ProviderError::Unavailable {
            provider: p.provider.display_name.clone(),
            detail,
        };
        let issuer =
            IssuerUrl::new(p.issuer.clone()).map_err(|e| unavailable(format!("issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| unavailable(format!("discovery: {e}")))?;
        let redirect = RedirectUrl::new(self.callback_url(&p.provider.id))
            .map_err(|e| unavailable(format!("callback URL: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            Some(ClientSecret::new(p.client_secret.clone())),
        )
        .set_redirect_uri(redirect);
        Ok(client)
    }

    /// Whether `p`'s discovery document answers, names the configured issuer and its keys load.
    pub async fn check(&self, p: &UpstreamProvider) -> Result<(), ProviderError> {
        self.client(p).await.map(drop)
    }

    /// Where to send the browser to sign in at `p`, for the sign-in `started`.
    pub async fn authorization_url(
        &self,
        p: &UpstreamProvider,
        started: &StartedUpstreamLogin,
    ) -> Result<Url, ProviderError> {
        let client = self.client(p).await?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            started.pkce_verifier.clone(),
        ));
        let (state, nonce) = (started.state.clone(), started.nonce.clone());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in p.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok(url)
    }

    /// Exchanges `code` (with the sign-in's PKCE verifier) and checks the ID token (with its
    /// nonce): who the provider says signed in. The email comes from the ID token, or, when
    /// the provider keeps it there, from userinfo for the same subject.
    pub async fn identity(
        &self,
        p: &UpstreamProvider,
        pkce_verifier: &str,
        nonce: &str,
        code: &str,
    ) -> Result<UpstreamIdentity, ProviderError> {
        let provider = || p.provider.display_name.clone();
        let unavailable = |detail: String| ProviderError::Unavailable {
            provider: provider(),
            detail,
        };
        let rejected = |detail: String| ProviderError::Rejected {
            provider: provider(),
            detail,
        };
        let client = self.client(p).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| rejected(format!("the code exchange: {e}")))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| rejected("no ID token came with the tokens".into()))?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| rejected(format!("the ID token: {e}")))?;
        if let Some(expected) = claims.access_token_hash() {
            let algorithm = id_token
                .signing_alg()
                .map_err(|e| rejected(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| rejected(e.to_string()))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), algorithm, key)
                .map_err(|e| rejected(e.to_string()))?;
            if actual != *expected {
                return Err(rejected("at_hash does not match the access token".into()));
            }
        }
        let mut identity = UpstreamIdentity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
        };
        if identity.email.is_none()
            && let Ok(request) = client.user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            )
        {
            let info: CoreUserInfoClaims = request
                .request_async(&self.http)
                .await
                .map_err(|e| unavailable(format!("userinfo: {e}")))?;
            identity.email = info.email().map(|e| e.to_string());
            identity.email_verified = info.email_verified().unwrap_or(false);
            if identity.name.is_none() {
                identity.name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
            }
        }
        Ok(identity)
    }
}
