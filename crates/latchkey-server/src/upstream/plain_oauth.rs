//! OAuth 2.0 providers without OpenID Connect (GitHub, and any configured by its endpoints):
//! the authorization URL with state and PKCE S256 and the code exchange by `oauth2`, then who
//! the access token belongs to from the provider's userinfo, read by `latchkey_core::upstream`.

use latchkey_core::upstream::{
    StartedUpstreamLogin, UpstreamIdentity, github_identity, identity_from_userinfo,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
    basic::BasicClient,
};
use openidconnect::reqwest::{self, StatusCode, header};
use serde_json::Value;
use url::Url;

use super::{
    Exchange, ProviderError,
    config::{OAuth2Endpoints, UpstreamProvider, Userinfo},
};

/// What GitHub's REST API asks clients to accept.
const GITHUB_JSON: &str = "application/vnd.github+json";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(
    p: &UpstreamProvider,
    endpoints: &OAuth2Endpoints,
    callback: &str,
) -> Result<Client, ProviderError> {
    let redirect = RedirectUrl::new(callback.to_owned())
        .map_err(|e| ProviderError::unavailable(p, format!("callback URL: {e}")))?;
    Ok(BasicClient::new(ClientId::new(p.client_id.clone()))
        .set_client_secret(ClientSecret::new(p.client_secret.clone()))
        .set_auth_uri(AuthUrl::from_url(endpoints.authorization_url.clone()))
        .set_token_uri(TokenUrl::from_url(endpoints.token_url.clone()))
        .set_redirect_uri(redirect))
}

pub(super) fn authorization_url(
    p: &UpstreamProvider,
    endpoints: &OAuth2Endpoints,
    callback: &str,
    started: &StartedUpstreamLogin,
) -> Result<Url, ProviderError> {
    let client = client(p, endpoints, callback)?;
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        started.pkce_verifier.clone(),
    ));
    let state = started.state.clone();
    let (url, _) = client
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(p.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    Ok(url)
}

pub(super) async fn identity(
    http: &reqwest::Client,
    p: &UpstreamProvider,
    endpoints: &OAuth2Endpoints,
    exchange: Exchange<'_>,
) -> Result<UpstreamIdentity, ProviderError> {
    let mut client = client(p, endpoints, exchange.callback)?;
    if let Userinfo::GitHub { .. } = endpoints.userinfo {
        // GitHub documents the client credentials as form parameters.
        client = client.set_auth_type(AuthType::RequestBody);
    }
    let tokens = client
        .exchange_code(AuthorizationCode::new(exchange.code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| ProviderError::rejected(p, format!("the code exchange: {e}")))?;
    let token = tokens.access_token().secret();
    match &endpoints.userinfo {
        Userinfo::GitHub { api } => {
            let api = api.as_str().trim_end_matches('/');
            let user = fetch(http, p, &format!("{api}/user"), token, GITHUB_JSON).await?;
            // Without the user:email scope GitHub refuses the list: then no address is known.
            let emails =
                match fetch(http, p, &format!("{api}/user/emails"), token, GITHUB_JSON).await {
                    Err(Fetch::Refused(_)) => Value::Null,
                    other => other?,
                };
            github_identity(&user, &emails).map_err(|e| ProviderError::rejected(p, e))
        }
        Userinfo::Document { url, fields } => {
            let doc = fetch(http, p, url.as_str(), token, "application/json").await?;
            identity_from_userinfo(&doc, fields).map_err(|e| ProviderError::rejected(p, e))
        }
    }
}

/// How reading a userinfo document failed.
enum Fetch {
    /// The provider refused the token for it (401, 403, 404).
    Refused(ProviderError),
    Failed(ProviderError),
}

impl From<Fetch> for ProviderError {
    fn from(f: Fetch) -> Self {
        match f {
            Fetch::Refused(e) | Fetch::Failed(e) => e,
        }
    }
}

/// The JSON document at `url`, read with the access token.
async fn fetch(
    http: &reqwest::Client,
    p: &UpstreamProvider,
    url: &str,
    token: &str,
    accept: &str,
) -> Result<Value, Fetch> {
    let unavailable =
        |e: reqwest::Error| Fetch::Failed(ProviderError::unavailable(p, format!("{url}: {e}")));
    let response = http
        .get(url)
        .bearer_auth(token)
        .header(header::ACCEPT, accept)
        .send()
        .await
        .map_err(unavailable)?;
    let status = response.status();
    if matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) {
        return Err(Fetch::Refused(ProviderError::rejected(
            p,
            format!("{url} answered {status}"),
        )));
    }
    response
        .error_for_status()
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)
}
