//! `POST /oauth/token`, `/oauth/introspect` and `/oauth/revoke`. Bodies are form-encoded;
//! errors are RFC 6749 §5.2 JSON.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use latchkey_core::{
    OAuthError,
    oauth::{exchange, token::TokenRequest},
    store::OAuthClientRecord,
};
use latchkey_proto::oauth::{
    DeviceAuthorizationResponse, IntrospectionResponse, OAuthErrorBody, OAuthErrorCode,
    RegistrationRequest, RegistrationResponse, RevocationFeed, TokenResponse,
};
use serde::Deserialize;

use crate::{
    AppState,
    error::OAuthErrorResponse,
    extract::{ClientIp, Json},
};

/// Client credentials from `Authorization: Basic`, each half form-decoded (RFC 6749 §2.3.1).
pub(crate) fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::Protocol {
        code: OAuthErrorCode::InvalidClient,
        description: "the Authorization header is not valid Basic client authentication".into(),
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(malformed());
    };
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(malformed)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

pub(crate) fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OAuthError> {
    serde_urlencoded::from_bytes(body).map_err(|e| OAuthError::Protocol {
        code: OAuthErrorCode::InvalidRequest,
        description: format!("the body is not a valid form-encoded request: {e}"),
    })
}

#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    security((), ("client" = [])),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (RFC 6749 §5.1); an id_token for a code granted with openid", body = TokenResponse),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "Client authentication failed", body = OAuthErrorBody),
    ))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenResponse>, OAuthErrorResponse> {
    let request: TokenRequest = form(&body)?;
    let basic = basic_credentials(&headers)?;
    no_secret_from_a_web_page(
        &state,
        &headers,
        basic.is_some() || request.client_secret.is_some(),
    )?;
    if let Some(trusted) = federated_subject(&state, &request) {
        return Ok(Json(
            federated_exchange(&state, trusted, request, basic).await?,
        ));
    }
    Ok(Json(state.service.token(request, basic).await?))
}

/// The trusted issuer of a token exchange whose subject is an external JWT (keyless CI).
fn federated_subject<'s>(
    state: &'s AppState,
    request: &TokenRequest,
) -> Option<&'s crate::federation::TrustedIssuerConfig> {
    let exchange = request.grant_type.as_deref() == Some(exchange::TOKEN_EXCHANGE_GRANT)
        && request.subject_token_type.as_deref() == Some(exchange::JWT_TOKEN_TYPE);
    if !exchange {
        return None;
    }
    state
        .federation
        .trusted_for(request.subject_token.as_deref()?)
}

/// A CI job's token, checked on its issuer's keys, exchanged for an org's access token.
async fn federated_exchange(
    state: &AppState,
    trusted: &crate::federation::TrustedIssuerConfig,
    request: TokenRequest,
    basic: Option<(String, String)>,
) -> Result<TokenResponse, OAuthError> {
    let client = state
        .service
        .authenticate_client_request(
            basic,
            request.client_id.as_deref(),
            request.client_secret.as_deref(),
        )
        .await?;
    let token = request.subject_token.as_deref().unwrap_or_default();
    let claims =
        state
            .federation
            .verify(trusted, token)
            .await
            .map_err(|e| OAuthError::Protocol {
                code: OAuthErrorCode::InvalidGrant,
                description: e.to_string(),
            })?;
    // The trust fixes the org: a request may name it (`org:<slug>`, `audience`), not another.
    let scopes = request.scope.as_deref().unwrap_or_default().split(' ');
    let named = scopes
        .clone()
        .filter_map(|s| s.strip_prefix("org:"))
        .chain(request.audience.as_deref());
    if let Some(other) = named.into_iter().find(|org| *org != trusted.trust.org) {
        return Err(OAuthError::Protocol {
            code: OAuthErrorCode::InvalidTarget,
            description: format!(
                "this CI token is trusted for the org \"{}\" only, not \"{other}\"",
                trusted.trust.org
            ),
        });
    }
    let wanted: Vec<&str> = scopes
        .filter(|s| !s.is_empty() && !s.starts_with("org:"))
        .collect();
    let wanted = (!wanted.is_empty()).then(|| wanted.join(" "));
    state
        .service
        .exchange_federated(&client, &trusted.trust, &claims, wanted.as_deref())
        .await
}

/// A client secret must never come from a web page: anyone who loads the page can read it. A
/// browser app is a public client (`token_endpoint_auth_method` `none`) and proves itself with
/// PKCE; the endpoints it calls answer CORS, so this check is what keeps secrets out of them.
fn no_secret_from_a_web_page(
    state: &AppState,
    headers: &HeaderMap,
    sends_secret: bool,
) -> Result<(), OAuthError> {
    match state.site.foreign_origin(headers) {
        Some(origin) if sends_secret => Err(OAuthError::Protocol {
            code: OAuthErrorCode::InvalidClient,
            description: format!(
                "a client secret was sent from a web page ({origin}); a browser app must be \
                 a public client (token_endpoint_auth_method none) that uses PKCE"
            ),
        }),
        _ => Ok(()),
    }
}

/// The body of introspection and revocation requests.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenReference {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl TokenReference {
    async fn client(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<OAuthClientRecord, OAuthError> {
        state
            .service
            .authenticate_client_request(
                basic_credentials(headers)?,
                self.client_id.as_deref(),
                self.client_secret.as_deref(),
            )
            .await
    }

    fn token(&self) -> Result<&str, OAuthError> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::Protocol {
                code: OAuthErrorCode::InvalidRequest,
                description: "token is required".into(),
            })
    }
}

#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth",
    security(("client" = [])),
    request_body(content = TokenReference, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 7662: active and its claims, or only active: false", body = IntrospectionResponse),
        (status = 400, description = "A malformed request", body = OAuthErrorBody),
        (status = 401, description = "Not an authenticated confidential client", body = OAuthErrorBody),
    ))]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<IntrospectionResponse>, OAuthErrorResponse> {
    let request: TokenReference = form(&body)?;
    let client = request.client(&state, &headers).await?;
    Ok(Json(
        state.service.introspect(&client, request.token()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationQuery {
    since: Option<String>,
}

/// `GET /oauth/revocations?since=<ms>`: what gates must refuse (confidential clients only).
#[utoipa::path(get, path = "/oauth/revocations", tag = "oauth",
    security(("client" = [])),
    params(RevocationQuery),
    responses(
        (status = 200, description = "Access tokens revoked since then, for gates", body = RevocationFeed),
        (status = 400, description = "A malformed since", body = OAuthErrorBody),
        (status = 401, description = "Not an authenticated confidential client", body = OAuthErrorBody),
    ))]
pub async fn revocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<RevocationQuery>,
) -> Result<Json<RevocationFeed>, OAuthErrorResponse> {
    let since = query
        .since
        .map(|s| s.parse::<i64>())
        .transpose()
        .map_err(|_| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidRequest,
            description: "since must be a time in Unix milliseconds".into(),
        })?;
    let client = state
        .service
        .authenticate_client_request(basic_credentials(&headers)?, None, None)
        .await?;
    Ok(Json(state.service.revocation_feed(&client, since).await?))
}

/// Always 200 for a token that is unknown or not this client's (RFC 7009 §2.2).
#[utoipa::path(post, path = "/oauth/revoke", operation_id = "revoke_token", tag = "oauth",
    security((), ("client" = [])),
    request_body(content = TokenReference, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or it was not a token of this client (RFC 7009)"),
        (status = 400, description = "A malformed request", body = OAuthErrorBody),
        (status = 401, description = "Client authentication failed", body = OAuthErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, OAuthErrorResponse> {
    let request: TokenReference = form(&body)?;
    no_secret_from_a_web_page(
        &state,
        &headers,
        basic_credentials(&headers)?.is_some() || request.client_secret.is_some(),
    )?;
    let client = request.client(&state, &headers).await?;
    state
        .service
        .revoke_token(&client, request.token()?)
        .await?;
    Ok(StatusCode::OK)
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

#[utoipa::path(post, path = "/oauth/device_authorization", tag = "oauth",
    security((), ("client" = [])),
    request_body(content = DeviceAuthorizationRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 8628 device and user codes", body = DeviceAuthorizationResponse),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "Client authentication failed", body = OAuthErrorBody),
    ))]
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeviceAuthorizationResponse>, OAuthErrorResponse> {
    let request: DeviceAuthorizationRequest = form(&body)?;
    let client = state
        .service
        .authenticate_client_request(
            basic_credentials(&headers)?,
            request.client_id.as_deref(),
            request.client_secret.as_deref(),
        )
        .await?;
    Ok(Json(
        state
            .service
            .start_device_authorization(
                &client,
                request.scope.as_deref(),
                request.resource.as_deref(),
            )
            .await?,
    ))
}

/// `POST /oauth/register` (RFC 7591): public clients register themselves; 201 on success.
#[utoipa::path(post, path = "/oauth/register", tag = "oauth",
    request_body = RegistrationRequest,
    responses(
        (status = 201, description = "RFC 7591: the client, its secret if confidential, and its registration access token", body = RegistrationResponse),
        (status = 400, description = "invalid_client_metadata or invalid_redirect_uri", body = OAuthErrorBody),
        (status = 429, description = "Too many registrations from this address", body = OAuthErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(from): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<RegistrationResponse>), OAuthErrorResponse> {
    let request: RegistrationRequest =
        serde_json::from_slice(&body).map_err(|e| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidClientMetadata,
            description: format!("the body is not a valid JSON client registration: {e}"),
        })?;
    let confidential = request
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|method| method != "none");
    if let (true, Some(origin)) = (confidential, state.site.foreign_origin(&headers)) {
        return Err(OAuthError::Protocol {
            code: OAuthErrorCode::InvalidClientMetadata,
            description: format!(
                "a web page ({origin}) cannot register a client with a secret: register a \
                 public client (token_endpoint_auth_method none)"
            ),
        }
        .into());
    }
    let registered = state.service.register_client(request, from).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1), if one is sent.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER x` is a bearer token too.
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The registration access token (RFC 7592 §3), as `Authorization: Bearer`.
fn registration_token(headers: &HeaderMap) -> Result<&str, OAuthError> {
    bearer_token(headers).ok_or_else(|| OAuthError::Protocol {
        code: OAuthErrorCode::InvalidToken,
        description: "send the registration access token as `Authorization: Bearer <token>`".into(),
    })
}

/// `GET /oauth/register/{client_id}` (RFC 7592 §2.1).
#[utoipa::path(get, path = "/oauth/register/{client_id}", tag = "oauth",
    security(("registration" = [])),
    params(("client_id" = String, Path)),
    responses(
        (status = 200, description = "RFC 7592: the registration", body = RegistrationResponse),
        (status = 401, description = "Not this client's registration access token", body = OAuthErrorBody),
    ))]
pub async fn read_registration(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(client_id): axum::extract::Path<String>,
) -> Result<Json<RegistrationResponse>, OAuthErrorResponse> {
    let token = registration_token(&headers)?;
    Ok(Json(
        state.service.read_registration(&client_id, token).await?,
    ))
}

/// `PUT /oauth/register/{client_id}` (RFC 7592 §2.2).
#[utoipa::path(put, path = "/oauth/register/{client_id}", tag = "oauth",
    security(("registration" = [])),
    params(("client_id" = String, Path)),
    request_body = RegistrationRequest,
    responses(
        (status = 200, description = "RFC 7592: the updated registration", body = RegistrationResponse),
        (status = 400, description = "invalid_client_metadata or invalid_redirect_uri", body = OAuthErrorBody),
        (status = 401, description = "Not this client's registration access token", body = OAuthErrorBody),
    ))]
pub async fn update_registration(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(client_id): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Json<RegistrationResponse>, OAuthErrorResponse> {
    let token = registration_token(&headers)?;
    let request: RegistrationRequest =
        serde_json::from_slice(&body).map_err(|e| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidClientMetadata,
            description: format!("the body is not a valid JSON client registration: {e}"),
        })?;
    Ok(Json(
        state
            .service
            .update_registration(&client_id, token, request)
            .await?,
    ))
}

/// `DELETE /oauth/register/{client_id}` (RFC 7592 §2.3).
#[utoipa::path(delete, path = "/oauth/register/{client_id}", tag = "oauth",
    security(("registration" = [])),
    params(("client_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted, with every code and token of the client"),
        (status = 401, description = "Not this client's registration access token", body = OAuthErrorBody),
    ))]
pub async fn delete_registration(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(client_id): axum::extract::Path<String>,
) -> Result<StatusCode, OAuthErrorResponse> {
    let token = registration_token(&headers)?;
    state.service.delete_registration(&client_id, token).await?;
    Ok(StatusCode::NO_CONTENT)
}
