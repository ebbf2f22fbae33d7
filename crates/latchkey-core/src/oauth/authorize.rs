//! `/oauth/authorize`: checking the request, then granting (or denying) a code. Errors about the
//! client or its redirect URI are never redirected (the URI is not trusted yet); the rest go
//! back to the client with `error`, `state` and `iss` (RFC 9207).
//!
//! OpenID Connect's parameters are honoured here: `nonce` is kept with the code for the ID
//! token, `max_age` and `prompt=login` ask for a fresh sign-in, and `prompt=none` answers
//! without a page: a code when the person is signed in and already approved this client,
//! else `login_required` or `consent_required`.

use std::time::Duration;

use latchkey_proto::{
    AuthorizationCode, PairingCode,
    oauth::OAuthErrorCode,
    pkce::CodeChallenge,
    redirect_uri::{self, RedirectUriError},
};
use rand::rngs::OsRng;
use time::OffsetDateTime;
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
    /// OpenID Connect: echoed in the ID token.
    pub nonce: Option<String>,
    /// OpenID Connect: `none`, or `login` and/or `consent`.
    pub prompt: Option<String>,
    /// OpenID Connect: the oldest sign-in (seconds ago) the client accepts.
    pub max_age: Option<String>,
}

/// The longest `nonce` kept.
const MAX_NONCE_LEN: usize = 512;

/// What `prompt` asks for (OpenID Connect Core §3.1.2.1); consent is asked every time anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prompt {
    /// Show pages as needed.
    #[default]
    AsNeeded,
    /// Show no page at all: answer at once, or fail.
    None,
    /// Make the person sign in again, even with a live session.
    Login,
}

impl Prompt {
    fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        let mut prompt = Self::AsNeeded;
        let values: Vec<&str> = raw
            .unwrap_or_default()
            .split(' ')
            .filter(|v| !v.is_empty())
            .collect();
        for value in &values {
            match *value {
                "none" if values.len() == 1 => prompt = Self::None,
                "none" => return Err("prompt=none cannot be combined with other values"),
                "login" => prompt = Self::Login,
                "consent" => {}
                _ => return Err("prompt may only contain none, login and consent"),
            }
        }
        Ok(prompt)
    }
}

/// What stands between a checked request and its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// The person must sign in (again): show the sign-in page.
    SignIn,
    /// Ask the person to approve.
    Consent,
    /// `prompt=none` and the person would have to sign in: `login_required`.
    LoginRequired,
    /// `prompt=none` and the person never approved this client: `consent_required`.
    ConsentRequired,
    /// `prompt=none` and everything is in place: grant the code now.
    Grant,
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
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<std::time::Duration>,
}

impl ValidAuthorization {
    /// Where the request goes next, given when the browser's person signed in (`None`: not
    /// signed in) and whether they approved this client before with at least this scope.
    pub fn next_step(
        &self,
        signed_in_at: Option<OffsetDateTime>,
        approved_before: bool,
        now: OffsetDateTime,
    ) -> NextStep {
        let fresh = signed_in_at.is_some_and(|at| self.max_age.is_none_or(|max| now - at <= max));
        match self.prompt {
            Prompt::None if !fresh => NextStep::LoginRequired,
            Prompt::None if !approved_before => NextStep::ConsentRequired,
            Prompt::None => NextStep::Grant,
            Prompt::Login => NextStep::SignIn,
            Prompt::AsNeeded if fresh => NextStep::Consent,
            Prompt::AsNeeded => NextStep::SignIn,
        }
    }
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
        let nonce = request.nonce.clone().filter(|n| !n.is_empty());
        if nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NONCE_LEN || n.chars().any(char::is_control))
        {
            return Err(reject(
                OAuthErrorCode::InvalidRequest,
                "nonce must be at most 512 characters, without control characters",
            ));
        }
        let prompt = Prompt::parse(request.prompt.as_deref())
            .map_err(|e| reject(OAuthErrorCode::InvalidRequest, e))?;
        let max_age = match request.max_age.as_deref() {
            None => None,
            Some(raw) => Some(std::time::Duration::from_secs(raw.parse().map_err(
                |_| {
                    reject(
                        OAuthErrorCode::InvalidRequest,
                        "max_age must be a number of seconds",
                    )
                },
            )?)),
        };
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
            nonce,
            prompt,
            max_age,
        })
    }

    /// Whether `user` approved this client before, for at least this scope and resource,
    /// and has not revoked it since (a live refresh family): what lets `prompt=none` pass.
    pub async fn approved_before(
        &self,
        valid: &ValidAuthorization,
        user: &User,
    ) -> Result<bool, OAuthError> {
        let grants = self
            .inner
            .store
            .live_grants(&user.id, &valid.client.id, self.now())
            .await?;
        Ok(grants.iter().any(|(scope, resource)| {
            *resource == valid.resource
                && valid
                    .scope
                    .split(' ')
                    .all(|wanted| scope.split(' ').any(|s| s == wanted))
        }))
    }

    /// The error `prompt=none` answers with, back at the client.
    pub fn prompt_none_refused(&self, valid: &ValidAuthorization, step: NextStep) -> Url {
        let (code, description) = match step {
            NextStep::ConsentRequired => (
                OAuthErrorCode::ConsentRequired,
                "the person has not approved this application",
            ),
            _ => (OAuthErrorCode::LoginRequired, "the person must sign in"),
        };
        self.error_redirect(&valid.redirect_uri, code, description, &valid.state)
    }

    /// The person approved: stores a single-use code and returns where to send the browser.
    pub async fn grant_authorization_code(
        &self,
        valid: &ValidAuthorization,
        user: &User,
        signed_in_at: OffsetDateTime,
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
                nonce: valid.nonce.clone(),
                auth_time: signed_in_at,
                family_id: new_id("rf"),
                created_at: now,
                expires_at: now + CODE_TTL,
            })
            .await?;
        let detail = format!(
            "{} ({}), scope \"{}\"",
            valid.client.name, valid.client.id, valid.scope
        );
        self.login_approved(user, &detail).await?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn valid(prompt: Prompt, max_age: Option<u64>) -> ValidAuthorization {
        ValidAuthorization {
            client: OAuthClientRecord {
                id: "dcr_1".into(),
                name: "App".into(),
                secret_hash: None,
                redirect_uris: vec!["http://127.0.0.1/callback".into()],
                created_at: T0,
                registration_token: None,
                post_logout_redirect_uris: Vec::new(),
                id_token_alg: None,
                access_token_alg: None,
            },
            redirect_uri: Url::parse("http://127.0.0.1/callback").expect("url"),
            state: None,
            scope: "openid".into(),
            challenge: CodeChallenge::s256("a-verifier-of-at-least-forty-three-characters-0123"),
            resource: None,
            pairing_code: None,
            nonce: None,
            prompt,
            max_age: max_age.map(Duration::from_secs),
        }
    }

    #[test]
    fn prompt_parses_as_openid_connect_defines_it() {
        assert_eq!(Prompt::parse(None), Ok(Prompt::AsNeeded));
        assert_eq!(Prompt::parse(Some("consent")), Ok(Prompt::AsNeeded));
        assert_eq!(Prompt::parse(Some("none")), Ok(Prompt::None));
        assert_eq!(Prompt::parse(Some("login consent")), Ok(Prompt::Login));
        assert!(Prompt::parse(Some("none login")).is_err());
        assert!(Prompt::parse(Some("select_account")).is_err());
    }

    #[test]
    fn the_next_step_follows_the_session_max_age_and_prompt() {
        let now = T0 + Duration::from_secs(1000);
        let signed_in = Some(T0 + Duration::from_secs(900));
        let as_needed = valid(Prompt::AsNeeded, None);
        assert_eq!(as_needed.next_step(None, false, now), NextStep::SignIn);
        assert_eq!(
            as_needed.next_step(signed_in, false, now),
            NextStep::Consent
        );
        assert_eq!(
            valid(Prompt::AsNeeded, Some(100)).next_step(signed_in, true, now),
            NextStep::Consent
        );
        assert_eq!(
            valid(Prompt::AsNeeded, Some(99)).next_step(signed_in, true, now),
            NextStep::SignIn,
            "a sign-in older than max_age must be repeated"
        );
        assert_eq!(
            valid(Prompt::Login, None).next_step(signed_in, true, now),
            NextStep::SignIn
        );
        let silent = valid(Prompt::None, None);
        assert_eq!(silent.next_step(None, true, now), NextStep::LoginRequired);
        assert_eq!(
            silent.next_step(signed_in, false, now),
            NextStep::ConsentRequired
        );
        assert_eq!(silent.next_step(signed_in, true, now), NextStep::Grant);
        assert_eq!(
            valid(Prompt::None, Some(10)).next_step(signed_in, true, now),
            NextStep::LoginRequired
        );
    }
}
