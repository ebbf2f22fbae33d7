//! OpenID Connect beyond the token endpoint: the userinfo endpoint (Core §5.3) and
//! RP-initiated logout (RP-Initiated Logout 1.0). ID tokens are signed in `signing`; the
//! `openid` parameters of the authorization request are read in `authorize`.

use latchkey_proto::oauth::{OAuthErrorCode, UserInfo};
use url::Url;

use super::{ClientLookupError, OAuthError};
use crate::{Service, signing::user_info};

/// An RP-initiated logout request, as received (query or form).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// A logout request that passed every check.
#[derive(Clone, Debug)]
pub struct ValidLogout {
    /// Where to send the browser afterwards (with `state`), if the client asked and registered
    /// it; else the issuer shows its own page.
    pub redirect: Option<Url>,
    /// The person the `id_token_hint` names: when it is the session's, the client proved it
    /// signed that person in, and logout needs no confirmation.
    pub hinted_user: Option<String>,
    /// The client's name, for the confirmation page.
    pub client_name: Option<String>,
}

impl Service {
    /// OpenID Connect userinfo: who the access token's person is, as far as its scope
    /// reveals. The token must be live, not revoked, and carry `openid`.
    pub async fn userinfo(&self, access_token: &str) -> Result<UserInfo, OAuthError> {
        let invalid =
            |description: &str| OAuthError::new(OAuthErrorCode::InvalidToken, description);
        let claims = self
            .verify_access_token_for_any_audience(access_token)
            .map_err(|e| invalid(&e.to_string()))?;
        if self.access_revoked(&claims).await? {
            return Err(invalid("the access token was revoked"));
        }
        if !claims.scope.split(' ').any(|s| s == "openid") {
            return Err(OAuthError::new(
                OAuthErrorCode::InsufficientScope,
                "the access token was not granted the openid scope",
            ));
        }
        let user = self
            .inner
            .store
            .user_by_id(&claims.sub)
            .await?
            .ok_or_else(|| invalid("the account no longer exists"))?;
        Ok(user_info(&user, &claims.scope))
    }

    /// Checks an RP-initiated logout request. Refused (shown on a page, never redirected)
    /// when the hint is not an ID token of this issuer, names another client, or the
    /// `post_logout_redirect_uri` is not one the client registered, exactly.
    pub async fn check_logout(&self, request: &LogoutRequest) -> Result<ValidLogout, OAuthError> {
        let refuse =
            |description: &str| OAuthError::new(OAuthErrorCode::InvalidRequest, description);
        let hint = match request.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            Some(token) => Some(self.id_token_hint(token).ok_or_else(|| {
                refuse("the id_token_hint is not an ID token this server issued")
            })?),
            None => None,
        };
        let client_id = match (request.client_id.as_deref(), &hint) {
            (Some(id), Some(hint)) if id != hint.aud => {
                return Err(refuse(
                    "client_id is not the client the id_token_hint was issued to",
                ));
            }
            (Some(id), _) => Some(id),
            (None, hint) => hint.as_ref().map(|h| h.aud.as_str()),
        };
        let client = match client_id {
            Some(id) => Some(
                self.client(id)
                    .await
                    .map_err(|e| match e {
                        ClientLookupError::Store(e) => OAuthError::Store(e),
                        ClientLookupError::Metadata(e) => refuse(&e.to_string()),
                    })?
                    .ok_or_else(|| refuse("there is no such client"))?,
            ),
            None => None,
        };
        let redirect = match request.post_logout_redirect_uri.as_deref() {
            None => None,
            Some(presented) => {
                let registered = client.as_ref().is_some_and(|c| {
                    c.post_logout_redirect_uris
                        .iter()
                        .any(|uri| uri == presented)
                });
                if !registered {
                    return Err(refuse(
                        "post_logout_redirect_uri is not registered for this client; a logout \
                         request naming one must identify its client (client_id or \
                         id_token_hint)",
                    ));
                }
                let mut url = Url::parse(presented)
                    .map_err(|_| refuse("post_logout_redirect_uri is not a URL"))?;
                if let Some(state) = &request.state {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(url)
            }
        };
        Ok(ValidLogout {
            redirect,
            hinted_user: hint.map(|h| h.sub),
            client_name: client.map(|c| c.name),
        })
    }
}
