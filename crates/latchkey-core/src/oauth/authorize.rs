//! `/oauth/authorize`: checking the request, then granting (or denying) a code. Errors about the
//! client or its redirect URI are never redirected (the URI is not trusted yet); the rest go
//! back to the client with `error`, `state` and `iss` (RFC 9207).

use std::time::Duration;

use latchkey_proto::{
    AuthorizationCode, PairingCode,
    oauth::OAuthErrorCode,
    pkce::CodeChallenge,
    redirect_uri::{self, RedirectUriError},
};
use rand::rngs::OsRng;
use url::Url;

use super::{ClientLookupError, OAuthError, SCOPES};
use crate::{
    Service, new_id,
    store::{AuthorizationCodeRecord, OAuthClientRecord, User},
};

/// How long a code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(60);

/// The query of an authorization request, as received.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    /// The code the CLI printed, shown on the consent page so the person can compare.
    pub pairing_code: Option<String>,
}

/// A request that passed every check.
#[derive(Clone, Debug)]
pub struct ValidAuthorization {
    pub client: OAuthClientRecord,
    pub redirect_uri: Url,
    pub state: Option<String>,
    pub scope: String,
    pub challenge: CodeChallenge,
    pub resource: Option<String>,
    pub pairing_code: Option<PairingCode>,
}

#[derive(Debug)]
pub enum AuthorizeRejection {
    /// Not safe to redirect: show this on a page.
    Page(String),
    /// Send the browser back to the client with this error.
    Redirect(Url),
    Internal(OAuthError),
}

impl Service {
    pub async fn check_authorization_request(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<ValidAuthorization, AuthorizeRejection> {
        let client_id = request
            .client_id
            .as_deref()
            .ok_or_else(|| AuthorizeRejection::Page("The request has no client_id.".into()))?;
        let client = self
            .client(client_id)
            .await
            .map_err(|e| match e {
                ClientLookupError::Store(e) => AuthorizeRejection::Internal(e.into()),
                ClientLookupError::Metadata(e) => AuthorizeRejection::Page(format!("{e}.")),
            })?
            .ok_or_else(|| {
                AuthorizeRejection::Page(format!("There is no client called \"{client_id}\"."))
            })?;
        let presented = request
            .redirect_uri
            .as_deref()
            .ok_or_else(|| AuthorizeRejection::Page("The request has no redirect_uri.".into()))?;
        let redirect = redirect_uri::match_registered(
            client.redirect_uris.iter().map(String::as_str),
            presented,
        )
        .map_err(|e| {
            AuthorizeRejection::Page(match e {
                RedirectUriError::NotRegistered => format!(
                    "The redirect_uri {presented} is not registered for {}.",
                    client.name
                ),
                other => format!("The redirect_uri is not acceptable: {other}."),
            })
        })?;

        let state = request.state.clone();
        let reject = |code: OAuthErrorCode, description: &str| {
            AuthorizeRejection::Redirect(self.error_redirect(&redirect, code, description, &state))
        };
        if request.response_type.as_deref() != Some("code") {
            return Err(reject(
                OAuthErrorCode::UnsupportedResponseType,
                "response_type must be code",
            ));
        }
        let challenge = CodeChallenge::parse(
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        )
        .map_err(|e| reject(OAuthErrorCode::InvalidRequest, &e.to_string()))?;
        let scope = request.scope.as_deref().unwrap_or("openid").trim();
        if scope.split(' ').any(|s| !SCOPES.contains(&s)) {
            return Err(reject(
                OAuthErrorCode::InvalidScope,
                "scope may only contain openid, profile, email and offline_access",
            ));
        }
        let resource = self
            .check_resource(request.resource.as_deref())
            .map_err(|e| match e {
                OAuthError::Protocol { code, description } => reject(code, &description),
                other => AuthorizeRejection::Internal(other),
            })?;
        let pairing_code = match request.pairing_code.as_deref() {
            None => None,
            Some(c) => Some(PairingCode::parse(c).ok_or_else(|| {
                reject(
                    OAuthErrorCode::InvalidRequest,
                    "pairing_code is not a valid code",
                )
            })?),
        };
        Ok(ValidAuthorization {
            client,
            redirect_uri: redirect,
            state,
            scope: scope.to_owned(),
            challenge,
            resource,
            pairing_code,
        })
    }

    /// The person approved: stores a single-use code and returns where to send the browser.
    pub async fn grant_authorization_code(
        &self,
        valid: &ValidAuthorization,
        user: &User,
    ) -> Result<Url, OAuthError> {
        if !user.email_verified {
            return Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "verify your email address before authorizing an application",
            ));
        }
        let code = AuthorizationCode::generate(&mut OsRng);
        let now = self.now();
        self.inner
            .store
            .insert_authorization_code(&AuthorizationCodeRecord {
                code_hash: code.hash(),
                client_id: valid.client.id.clone(),
                user_id: user.id.clone(),
                redirect_uri: valid.redirect_uri.to_string(),
                code_challenge: valid.challenge.as_str().to_owned(),
                scope: valid.scope.clone(),
                resource: valid.resource.clone(),
                family_id: new_id("rf"),
                created_at: now,
                expires_at: now + CODE_TTL,
            })
            .await?;
        let mut url = valid.redirect_uri.clone();
        url.query_pairs_mut()
            .append_pair("code", code.expose_secret());
        self.append_state_and_issuer(&mut url, &valid.state);
        Ok(url)
    }

    /// The person pressed Deny.
    pub fn deny_authorization(&self, valid: &ValidAuthorization) -> Url {
        self.error_redirect(
            &valid.redirect_uri,
            OAuthErrorCode::AccessDenied,
            "the person denied the request",
            &valid.state,
        )
    }

    fn error_redirect(
        &self,
        redirect: &Url,
        code: OAuthErrorCode,
        description: &str,
        state: &Option<String>,
    ) -> Url {
        let mut url = redirect.clone();
        url.query_pairs_mut()
            .append_pair("error", code.as_str())
            .append_pair("error_description", description);
        self.append_state_and_issuer(&mut url, state);
        url
    }

    fn append_state_and_issuer(&self, url: &mut Url, state: &Option<String>) {
        let mut pairs = url.query_pairs_mut();
        if let Some(state) = state {
            pairs.append_pair("state", state);
        }
        pairs.append_pair("iss", &self.inner.policy.public_url);
    }
}
