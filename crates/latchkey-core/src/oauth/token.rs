//! `/oauth/token`: the authorization-code and refresh-token grants. A code is spent on first
//! use; presenting it again revokes the refresh family it started. A refresh token is rotated
//! on every use; presenting a spent one revokes its whole family and writes an audit event.

use latchkey_proto::{
    RefreshToken, SecretHash,
    jws::Algorithm,
    oauth::{OAuthErrorCode, TokenResponse},
    pkce::CodeChallenge,
};
use rand::rngs::OsRng;
use time::OffsetDateTime;

use super::OAuthError;
use crate::{
    AccessGrant, Service, Stats,
    console::{AuditKind, LoginMethod, reported_device_name},
    signing::IdTokenGrant,
    store::{
        AuthorizationCodeRecord, CodeUse, LoginStart, NextRefresh, OAuthClientRecord,
        RefreshTokenRecord, RefreshUse,
    },
};

pub use latchkey_proto::oauth::DEVICE_CODE_GRANT;

/// The form of a token request, as received (client credentials may also come by Basic auth).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub device_code: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// RFC 8693 token exchange.
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub audience: Option<String>,
    pub actor_token: Option<String>,
    /// A name for the device the login is made on (a CLI's host name), shown in the account
    /// console; authorization-code and device-code grants only.
    pub device_name: Option<String>,
}

/// What an issued token pair is for.
pub(crate) struct Issue<'a> {
    pub client: &'a OAuthClientRecord,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub resource: Option<&'a str>,
    pub family_id: &'a str,
    /// The org the tokens act for; `None`: the person's personal org.
    pub org_id: Option<&'a str>,
    /// For a code granted with the `openid` scope: what its ID token says.
    pub sign_in: Option<SignIn<'a>>,
    /// How the family began, when this is its first token (a branch into an org has none).
    pub start: Option<LoginStart>,
}

/// The sign-in an ID token reports: when, and the authorization request's `nonce`.
pub(crate) struct SignIn<'a> {
    pub auth_time: OffsetDateTime,
    pub nonce: Option<&'a str>,
}

/// What a spent authorization code must match to buy tokens (RFC 6749 §4.1.3, RFC 7636 §4.6):
/// the client it was issued to, its lifetime, the redirect URI of the authorization request,
/// and the PKCE verifier of its challenge.
fn check_code_exchange(
    record: &AuthorizationCodeRecord,
    client_id: &str,
    redirect_uri: &str,
    verifier: &str,
    now: OffsetDateTime,
) -> Result<(), OAuthError> {
    if record.client_id != client_id {
        return Err(invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if now >= record.expires_at {
        return Err(invalid_grant("the authorization code has expired"));
    }
    if record.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri differs from the one in the authorization request",
        ));
    }
    CodeChallenge::parse(Some(&record.code_challenge), Some("S256"))
        .and_then(|challenge| challenge.verify(verifier))
        .map_err(|e| invalid_grant(&e.to_string()))
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| {
        OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            format!("{name} is required"),
        )
    })
}

impl Service {
    /// Answers a token request. `basic` is the client id and secret from HTTP Basic auth.
    pub async fn token(
        &self,
        request: TokenRequest,
        basic: Option<(String, String)>,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = required(&request.grant_type, "grant_type")?;
        let client = self
            .authenticate_client_request(
                basic,
                request.client_id.as_deref(),
                request.client_secret.as_deref(),
            )
            .await?;
        match grant_type {
            "authorization_code" => self.exchange_code(&client, &request).await,
            "refresh_token" => self.refresh(&client, &request).await,
            "client_credentials" => self.client_credentials(&client, &request).await,
            DEVICE_CODE_GRANT => self.device_token(&client, &request).await,
            super::exchange::TOKEN_EXCHANGE_GRANT => self.exchange_token(&client, &request).await,
            _ => Err(OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code, refresh_token, client_credentials or \
                 urn:ietf:params:oauth:grant-type:device_code",
            )),
        }
    }

    async fn exchange_code(
        &self,
        client: &OAuthClientRecord,
        request: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let code = required(&request.code, "code")?;
        let verifier = required(&request.code_verifier, "code_verifier")?;
        let redirect_uri = required(&request.redirect_uri, "redirect_uri")?;
        let now = self.now();
        let record = match self
            .inner
            .store
            .use_authorization_code(&SecretHash::of(code), now)
            .await?
        {
            CodeUse::First(record) => record,
            CodeUse::Replayed(record) => {
                let revoked = self
                    .inner
                    .store
                    .revoke_refresh_family(&record.family_id, now)
                    .await?;
                let detail = format!(
                    "client {}; {revoked} refresh token(s) of login {} revoked",
                    record.client_id, record.family_id
                );
                let kind = AuditKind::AuthorizationCodeReplayed;
                self.audit(kind, Some(&record.user_id), None, None, &detail)
                    .await?;
                return Err(invalid_grant("the authorization code was already used"));
            }
            CodeUse::Unknown => return Err(invalid_grant("the authorization code is not valid")),
        };
        check_code_exchange(&record, &client.id, redirect_uri, verifier, now)?;
        self.issue_tokens(Issue {
            client,
            user_id: &record.user_id,
            scope: &record.scope,
            resource: record.resource.as_deref(),
            family_id: &record.family_id,
            org_id: None,
            sign_in: Some(SignIn {
                auth_time: record.auth_time,
                nonce: record.nonce.as_deref(),
            }),
            start: Some(LoginStart {
                method: LoginMethod::Browser.as_str(),
                device_name: reported_device_name(request.device_name.as_deref()),
            }),
        })
        .await
    }

    /// A spent refresh token came back: its family is revoked already; the log keeps it and
    /// the person is told, since someone else may hold a copy of their login.
    async fn refresh_reuse_detected(&self, record: &RefreshTokenRecord) -> Result<(), OAuthError> {
        let detail = format!(
            "client {}; every token of login {} revoked",
            record.client_id, record.family_id
        );
        let kind = AuditKind::RefreshTokenReused;
        self.audit(kind, Some(&record.user_id), None, None, &detail)
            .await?;
        let Some(user) = self.inner.store.user_by_id(&record.user_id).await? else {
            return Ok(());
        };
        let host = &self.inner.policy.public_url;
        let text = format!(
            "A refresh token of a login of yours on {host} (client {}) was presented after it had              been used. Either the client retried, or someone copied it. That login is now signed              out; sign in again where you use it.\n\nIf you do not recognise this, change your              password: {host}/account\n",
            record.client_id
        );
        if let Err(e) = self
            .mail(&user.email, "A login of yours was signed out", text)
            .await
        {
            tracing::warn!(error = %e, "the refresh-reuse notice could not be sent");
        }
        Ok(())
    }

    /// A machine client acting as itself: it is its own subject and tenant; no refresh token.
    async fn client_credentials(
        &self,
        client: &OAuthClientRecord,
        request: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        if client.secret_hash.is_none() {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "client_credentials is for confidential clients; a public client has no secret",
            ));
        }
        let scope = request.scope.as_deref().unwrap_or("").trim();
        if !scope.is_empty() && scope.split(' ').any(|s| !super::SCOPES.contains(&s)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "unknown scope",
            ));
        }
        self.bearer_response(AccessGrant {
            user_id: client.id.clone(),
            org_id: client.id.clone(),
            client_id: client.id.clone(),
            scope: scope.to_owned(),
            resource: self.check_resource(request.resource.as_deref())?,
            login: None,
            alg: client.access_token_alg,
            lifetime: None,
            // A client acting for itself is in no org: nothing bought.
            standing: self.inner.policy.plans.standing(None, self.now()),
        })
    }

    async fn refresh(
        &self,
        client: &OAuthClientRecord,
        request: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = SecretHash::of(required(&request.refresh_token, "refresh_token")?);
        let now = self.now();
        let next = RefreshToken::generate(&mut OsRng);
        let next_in_family = NextRefresh {
            token_hash: next.hash(),
            created_at: now,
            expires_at: now + self.inner.policy.refresh_token_ttl,
        };
        let current = match self
            .inner
            .store
            .rotate_refresh_token(&presented, &client.id, &next_in_family, now)
            .await?
        {
            RefreshUse::Rotated(current) => current,
            RefreshUse::Replayed(record) => {
                Stats::bump(&self.inner.stats.refresh_reuse_detected);
                self.refresh_reuse_detected(&record).await?;
                return Err(invalid_grant(
                    "the refresh token was already used; every token of this login is now revoked",
                ));
            }
            RefreshUse::Unknown => return Err(invalid_grant("the refresh token is not valid")),
        };
        // Leaving the org deletes its refresh tokens; this holds should one be in flight.
        if let Some(org_id) = &current.org_id
            && self.member_role(&current.user_id, org_id).await?.is_none()
        {
            return Err(invalid_grant(
                "you are no longer a member of the org this login acted for",
            ));
        }
        let access = self
            .access_token_for(&Issue {
                client,
                user_id: &current.user_id,
                scope: &current.scope,
                resource: current.resource.as_deref(),
                family_id: &current.family_id,
                org_id: current.org_id.as_deref(),
                sign_in: None,
                start: None,
            })
            .await?;
        Ok(TokenResponse {
            refresh_token: Some(next.expose_secret().to_owned()),
            refresh_token_expires_in: Some(self.inner.policy.refresh_token_ttl.as_secs()),
            ..access
        })
    }

    /// An access token and a refresh token of the family: its first, or a branch of it acting
    /// for another org.
    pub(crate) async fn issue_tokens(&self, issue: Issue<'_>) -> Result<TokenResponse, OAuthError> {
        let access = self.access_token_for(&issue).await?;
        let refresh = RefreshToken::generate(&mut OsRng);
        let now = self.now();
        self.inner
            .store
            .insert_refresh_token(
                &RefreshTokenRecord {
                    token_hash: refresh.hash(),
                    family_id: issue.family_id.to_owned(),
                    client_id: issue.client.id.clone(),
                    user_id: issue.user_id.to_owned(),
                    scope: issue.scope.to_owned(),
                    resource: issue.resource.map(str::to_owned),
                    created_at: now,
                    expires_at: now + self.inner.policy.refresh_token_ttl,
                    org_id: issue.org_id.map(str::to_owned),
                },
                issue.start.as_ref(),
            )
            .await?;
        Ok(TokenResponse {
            refresh_token: Some(refresh.expose_secret().to_owned()),
            refresh_token_expires_in: Some(self.inner.policy.refresh_token_ttl.as_secs()),
            ..access
        })
    }

    async fn access_token_for(&self, issue: &Issue<'_>) -> Result<TokenResponse, OAuthError> {
        let user = self
            .inner
            .store
            .user_by_id(issue.user_id)
            .await?
            .ok_or_else(|| invalid_grant("the account no longer exists"))?;
        let org_id = issue.org_id.unwrap_or(&user.org.id).to_owned();
        let mut response = self.bearer_response(AccessGrant {
            user_id: user.id.clone(),
            standing: self.standing(&org_id).await?,
            org_id,
            client_id: issue.client.id.clone(),
            scope: issue.scope.to_owned(),
            resource: issue.resource.map(str::to_owned),
            login: Some(issue.family_id.to_owned()),
            alg: issue.client.access_token_alg,
            lifetime: None,
        })?;
        let openid = issue.scope.split(' ').any(|s| s == "openid");
        if let Some(sign_in) = issue.sign_in.as_ref().filter(|_| openid) {
            response.id_token = Some(self.issue_id_token(&IdTokenGrant {
                user: &user,
                client_id: &issue.client.id,
                scope: issue.scope,
                auth_time: sign_in.auth_time,
                nonce: sign_in.nonce,
                access_token: &response.access_token,
                alg: issue.client.id_token_alg.unwrap_or(Algorithm::RS256),
            })?);
        }
        Ok(response)
    }

    /// A token response carrying a new access token for `grant` (no refresh token yet).
    pub(crate) fn bearer_response(&self, grant: AccessGrant) -> Result<TokenResponse, OAuthError> {
        let issued = self.issue_access_token(&grant)?;
        Ok(TokenResponse {
            access_token: issued.token,
            token_type: "Bearer".into(),
            expires_in: issued.expires_in.as_secs(),
            refresh_token: None,
            refresh_token_expires_in: None,
            scope: grant.scope,
            id_token: None,
            issued_token_type: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
    const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

    fn code() -> AuthorizationCodeRecord {
        AuthorizationCodeRecord {
            code_hash: SecretHash::of("lkc_code"),
            client_id: "latchkey-cli".into(),
            user_id: "usr_1".into(),
            redirect_uri: "http://127.0.0.1:5000/callback".into(),
            code_challenge: CodeChallenge::s256(VERIFIER).as_str().to_owned(),
            scope: "openid".into(),
            resource: None,
            nonce: None,
            auth_time: T0,
            family_id: "fam_1".into(),
            created_at: T0,
            expires_at: T0 + Duration::from_secs(60),
        }
    }

    fn refused(result: Result<(), OAuthError>) -> String {
        match result {
            Err(OAuthError::Protocol {
                code: OAuthErrorCode::InvalidGrant,
                description,
            }) => description,
            other => panic!("expected invalid_grant, got {other:?}"),
        }
    }

    #[test]
    fn a_code_buys_tokens_only_for_its_client_redirect_and_verifier_within_a_minute() {
        let record = code();
        let redirect = record.redirect_uri.clone();
        let at = T0 + Duration::from_secs(59);
        assert!(check_code_exchange(&record, "latchkey-cli", &redirect, VERIFIER, at).is_ok());

        let other_client = check_code_exchange(&record, "dcr_other", &redirect, VERIFIER, at);
        assert!(refused(other_client).contains("another client"));
        let expired = T0 + Duration::from_secs(60);
        let late = check_code_exchange(&record, "latchkey-cli", &redirect, VERIFIER, expired);
        assert!(refused(late).contains("expired"));
        let moved = "http://127.0.0.1:5001/callback";
        let elsewhere = check_code_exchange(&record, "latchkey-cli", moved, VERIFIER, at);
        assert!(refused(elsewhere).contains("redirect_uri"));
        let guessed = check_code_exchange(&record, "latchkey-cli", &redirect, "guessed", at);
        refused(guessed);
    }
}
