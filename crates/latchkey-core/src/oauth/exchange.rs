//! RFC 8693 token exchange at `/oauth/token`: a credential this issuer made (an access token or
//! an API key) is traded for one scoped to an org the person belongs to, as an access token
//! (the default) or an API key. Scopes only narrow. A refresh token is never a subject: it
//! proves nothing without its client. An access token of a login buys a refresh token too, in
//! that login's family: a branch that acts for the org and ends with the login.

use latchkey_proto::{
    RefreshToken, jws,
    oauth::{OAuthErrorCode, TokenResponse},
    scope,
};

use super::{
    OAuthError,
    token::{Issue, TokenRequest},
};
use crate::{AccessGrant, Service, api_key::ApiKeyError, store::OAuthClientRecord};

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// An API key of this issuer, as a subject or as what is asked for.
pub const API_KEY_TOKEN_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";

/// The scope that names the org a token is exchanged into: `org:<slug>`.
const ORG_SCOPE_PREFIX: &str = "org:";

/// What kind of credential a subject token is, told by its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    AccessToken,
    ApiKey,
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

/// The kind of `token`, which must agree with the `subject_token_type` the client declared.
pub fn subject_kind(token: &str, declared: &str) -> Result<SubjectKind, OAuthError> {
    let kind = if jws::looks_like_jwt(token) {
        SubjectKind::AccessToken
    } else if token.starts_with(RefreshToken::PREFIX) {
        return Err(invalid_request(
            "a refresh token cannot be exchanged: exchange an access token or an API key",
        ));
    } else {
        SubjectKind::ApiKey
    };
    let agrees = match (declared, kind) {
        (ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE, SubjectKind::AccessToken) => true,
        // An API key is the bearer credential of its holder: its type, or an access token's.
        (API_KEY_TOKEN_TYPE | ACCESS_TOKEN_TYPE, SubjectKind::ApiKey) => true,
        (REFRESH_TOKEN_TYPE, _) => {
            return Err(invalid_request(
                "a refresh token cannot be exchanged: exchange an access token or an API key",
            ));
        }
        _ => false,
    };
    if agrees {
        Ok(kind)
    } else {
        Err(invalid_request(format!(
            "subject_token_type {declared} does not match the subject token (use \
             {ACCESS_TOKEN_TYPE} for an access token, {API_KEY_TOKEN_TYPE} for an API key)"
        )))
    }
}

/// The org (its slug) the request names, by `scope=org:<slug>` or `audience=<slug>`, and the
/// rest of the scope.
pub fn target_org(
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<(String, Option<String>), OAuthError> {
    let (orgs, rest): (Vec<&str>, Vec<&str>) = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .partition(|s| s.starts_with(ORG_SCOPE_PREFIX));
    let mut named: Vec<&str> = orgs
        .iter()
        .map(|s| &s[ORG_SCOPE_PREFIX.len()..])
        .chain(audience)
        .filter(|name| !name.is_empty())
        .collect();
    named.dedup();
    let org = match named.as_slice() {
        [one] => (*one).to_owned(),
        [] => {
            return Err(invalid_request(
                "name the org to exchange into: scope=org:<slug> (or audience=<slug>)",
            ));
        }
        _ => {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "a token is exchanged into one org at a time",
            ));
        }
    };
    Ok((org, (!rest.is_empty()).then(|| rest.join(" "))))
}

/// Who presented the subject, and what it may do.
struct Subject {
    user_id: String,
    /// Its scopes; `None`: everything its account may (an API key made without scopes).
    scope: Option<String>,
    /// The login an access token belongs to: the exchanged token dies with it.
    login: Option<String>,
}

impl Service {
    pub(crate) async fn exchange_token(
        &self,
        client: &OAuthClientRecord,
        request: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let token = request
            .subject_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid_request("subject_token is required"))?;
        let declared = request
            .subject_token_type
            .as_deref()
            .ok_or_else(|| invalid_request("subject_token_type is required"))?;
        if request.actor_token.is_some() {
            return Err(invalid_request("delegation (actor_token) is not supported"));
        }
        let kind = subject_kind(token, declared)?;
        // The subject first: whoever presents a bad one learns nothing more of the request.
        let subject = self.exchange_subject(client, kind, token).await?;
        let (org, wanted) = target_org(request.scope.as_deref(), request.audience.as_deref())?;
        if let Some(wanted) = &wanted
            && !scope::within(Some(wanted), subject.scope.as_deref())
        {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "a token exchange can only narrow the subject's scopes",
            ));
        }
        let user = self
            .inner
            .store
            .user_by_id(&subject.user_id)
            .await?
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidGrant,
                    "the subject's account is gone",
                )
            })?;
        let membership = self
            .inner
            .store
            .membership(&user.id, &org)
            .await?
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidTarget,
                    format!("the subject is not a member of the org \"{org}\""),
                )
            })?;
        if let Err(refused) = self.second_factor_rule(&user, &membership).await {
            return Err(match refused {
                crate::org::OrgError::Store(e) => e.into(),
                other => OAuthError::new(OAuthErrorCode::AccessDenied, other.to_string()),
            });
        }
        match request.requested_token_type.as_deref() {
            None | Some(ACCESS_TOKEN_TYPE) => {
                let scope = wanted.or(subject.scope).unwrap_or_default();
                let resource = self.check_resource(request.resource.as_deref())?;
                // A login's token opens a branch of that login acting for the org: it
                // refreshes there, and signing out (or a replay) ends it with the login.
                let mut response = match &subject.login {
                    Some(family_id) => {
                        self.issue_tokens(Issue {
                            client,
                            user_id: &user.id,
                            scope: &scope,
                            resource: resource.as_deref(),
                            family_id,
                            org_id: Some(&membership.org.id),
                            sign_in: None,
                            start: None,
                        })
                        .await?
                    }
                    None => self.bearer_response(AccessGrant {
                        user_id: user.id.clone(),
                        standing: self.standing(&membership.org.id).await?,
                        org_id: membership.org.id,
                        client_id: client.id.clone(),
                        scope,
                        resource,
                        login: None,
                        alg: client.access_token_alg,
                        lifetime: None,
                    })?,
                };
                response.issued_token_type = Some(ACCESS_TOKEN_TYPE.to_owned());
                Ok(response)
            }
            Some(API_KEY_TOKEN_TYPE) => {
                let (key, record) = self
                    .create_api_key(
                        &user,
                        &latchkey_proto::wire::ApiKeyCreateRequest {
                            name: Some(format!("Token exchange: {}", client.name)),
                            // An access token's OAuth scopes are not key scopes: a key made
                            // from one is limited only when scopes are asked for, as a key
                            // made with that token at /v1/api-keys would be.
                            scopes: match (wanted, kind) {
                                (Some(wanted), _) => Some(wanted),
                                (None, SubjectKind::ApiKey) => subject.scope,
                                (None, SubjectKind::AccessToken) => None,
                            }
                            .map(|s| s.split(' ').map(str::to_owned).collect()),
                            org: Some(membership.org.id),
                            ..Default::default()
                        },
                        None,
                    )
                    .await
                    .map_err(|e| match e {
                        ApiKeyError::Store(e) => e.into(),
                        other => invalid_request(other.to_string()),
                    })?;
                Ok(TokenResponse {
                    access_token: key.expose_secret().to_owned(),
                    token_type: "Bearer".into(),
                    expires_in: record
                        .expires_at
                        .map_or(0, |at| (at - self.now()).whole_seconds().max(0) as u64),
                    refresh_token: None,
                    refresh_token_expires_in: None,
                    scope: record.scope.unwrap_or_default(),
                    id_token: None,
                    issued_token_type: Some(API_KEY_TOKEN_TYPE.to_owned()),
                })
            }
            Some(other) => Err(invalid_request(format!(
                "requested_token_type {other} is not offered: ask for {ACCESS_TOKEN_TYPE} or \
                 {API_KEY_TOKEN_TYPE}"
            ))),
        }
    }

    /// The subject, verified as any request bearing it would be. An access token is traded
    /// only by the client it was issued to: another app the person let in (with its consent
    /// for that app alone) cannot turn it into tokens of its own.
    async fn exchange_subject(
        &self,
        client: &OAuthClientRecord,
        kind: SubjectKind,
        token: &str,
    ) -> Result<Subject, OAuthError> {
        let refused = |why: &str| OAuthError::new(OAuthErrorCode::InvalidGrant, why);
        match kind {
            SubjectKind::AccessToken => {
                let claims = self
                    .verify_access_token_for_any_audience(token)
                    .map_err(|_| {
                        refused("the subject token is not a valid access token of this issuer")
                    })?;
                if self.access_revoked(&claims).await? {
                    return Err(refused("the subject token was revoked"));
                }
                if claims.client_id != client.id {
                    return Err(refused(
                        "the subject token was issued to another client: only that client may \
                         exchange it",
                    ));
                }
                Ok(Subject {
                    user_id: claims.sub,
                    scope: Some(claims.scope),
                    login: claims.sid,
                })
            }
            SubjectKind::ApiKey => {
                let key = self
                    .verify_api_key(token)
                    .await
                    .map_err(|_| refused("the subject API key is unknown, revoked or expired"))?;
                Ok(Subject {
                    user_id: key.user_id,
                    scope: key.scope,
                    login: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: OAuthError) -> Option<OAuthErrorCode> {
        match e {
            OAuthError::Protocol { code, .. } => Some(code),
            _ => None,
        }
    }

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn subjects_are_told_apart_by_format_and_must_match_their_declared_type() {
        assert_eq!(
            subject_kind(JWT, ACCESS_TOKEN_TYPE).ok(),
            Some(SubjectKind::AccessToken)
        );
        assert_eq!(
            subject_kind(JWT, JWT_TOKEN_TYPE).ok(),
            Some(SubjectKind::AccessToken)
        );
        assert_eq!(
            subject_kind("lk_abc", API_KEY_TOKEN_TYPE).ok(),
            Some(SubjectKind::ApiKey)
        );
        assert_eq!(
            subject_kind("lk_abc", ACCESS_TOKEN_TYPE).ok(),
            Some(SubjectKind::ApiKey)
        );
        for (token, declared) in [
            (JWT, API_KEY_TOKEN_TYPE),
            ("lk_abc", JWT_TOKEN_TYPE),
            ("lkr_refresh", ACCESS_TOKEN_TYPE),
            (JWT, REFRESH_TOKEN_TYPE),
            ("lk_abc", "urn:ietf:params:oauth:token-type:saml2"),
        ] {
            let refused = subject_kind(token, declared).expect_err(declared);
            assert_eq!(
                code(refused),
                Some(OAuthErrorCode::InvalidRequest),
                "{token} {declared}"
            );
        }
    }

    #[test]
    fn the_target_org_is_named_once_by_scope_or_audience() {
        let target =
            |scope: Option<&str>, audience: Option<&str>| target_org(scope, audience).map_err(code);
        assert_eq!(target(Some("org:acme"), None), Ok(("acme".into(), None)));
        assert_eq!(
            target(Some("read org:acme write"), None),
            Ok(("acme".into(), Some("read write".into())))
        );
        assert_eq!(target(None, Some("acme")), Ok(("acme".into(), None)));
        assert_eq!(
            target(Some("org:acme"), Some("acme")),
            Ok(("acme".into(), None))
        );
        assert_eq!(
            target(Some("read"), None),
            Err(Some(OAuthErrorCode::InvalidRequest))
        );
        assert_eq!(
            target(Some("org:"), None),
            Err(Some(OAuthErrorCode::InvalidRequest))
        );
        assert_eq!(
            target(Some("org:acme org:other"), None),
            Err(Some(OAuthErrorCode::InvalidTarget))
        );
        assert_eq!(
            target(Some("org:acme"), Some("other")),
            Err(Some(OAuthErrorCode::InvalidTarget))
        );
    }
}
