//! `GET /v1/me` and `/v1/api-keys` (create, list, revoke), for a key or a browser session.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use latchkey_core::{
    api_key::{key_info, may_manage_keys},
    org::OrgAction,
};
use latchkey_proto::wire::{
    ApiKeyCreateRequest, ApiKeyCreateResponse, ApiKeyListResponse, CredentialInfo, MeResponse,
    OrgInfo, OrgMembershipInfo,
};

use latchkey_proto::ErrorBody;

use crate::{
    AppState,
    error::AppError,
    extract::{Caller, CallerCredential, Json, presented_key},
};

/// `/v1/me` for a token a client holds for itself in an org (keyless CI): no person, so the
/// user id is the client's, the email empty, and the role in the org `machine`.
async fn machine_me(state: &AppState, headers: &HeaderMap) -> Result<Option<MeResponse>, AppError> {
    let Some(token) = presented_key(headers)? else {
        return Ok(None);
    };
    let Some((claims, org)) = state.service.client_token(token).await? else {
        return Ok(None);
    };
    let subscription = state.service.subscription_info(&org.id).await?;
    Ok(Some(MeResponse {
        subscription: Some(subscription),
        user_id: claims.sub,
        email: String::new(),
        email_verified: false,
        acting_org: Some(OrgMembershipInfo {
            id: org.id.clone(),
            slug: org.slug.clone(),
            name: org.name.clone(),
            role: "machine".into(),
            personal: false,
        }),
        org: OrgInfo {
            id: org.id,
            slug: org.slug,
            name: org.name,
        },
        credential: CredentialInfo::AccessToken {
            client_id: claims.client_id,
            scope: claims.scope,
            expires_at: claims.exp,
        },
    }))
}

#[utoipa::path(get, path = "/v1/me", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Who the credential belongs to, and the org it acts for", body = MeResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 404, description = "The credential's org no longer counts the caller as a member", body = ErrorBody),
    ))]
pub async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<Caller, AppError>,
) -> Result<Json<MeResponse>, AppError> {
    let caller = match caller {
        Ok(caller) => caller,
        Err(refused) => return machine_me(&state, &headers).await?.ok_or(refused).map(Json),
    };
    let acting_org = match &caller.credential {
        CallerCredential::ApiKey(key) => key.org_id.clone(),
        CallerCredential::AccessToken(claims) => claims.org_id.clone(),
        CallerCredential::Session => caller.user.org.id.clone(),
    };
    let acting_org = state
        .service
        .org_for(&caller.user, &acting_org, OrgAction::View)
        .await?;
    let subscription = state.service.subscription_info(&acting_org.org.id).await?;
    let user = caller.user;
    Ok(Json(MeResponse {
        subscription: Some(subscription),
        user_id: user.id,
        email: user.email,
        email_verified: user.email_verified,
        org: OrgInfo {
            id: user.org.id,
            slug: user.org.slug,
            name: user.org.name,
        },
        acting_org: Some(super::orgs::org_info(acting_org)),
        credential: match caller.credential {
            CallerCredential::ApiKey(key) => CredentialInfo::ApiKey {
                expires_at: key.expires_at.map(time::OffsetDateTime::unix_timestamp),
                scope: key.scope,
                key_id: key.key_id,
                key_prefix: key.key_prefix,
            },
            CallerCredential::AccessToken(claims) => CredentialInfo::AccessToken {
                client_id: claims.client_id,
                scope: claims.scope,
                expires_at: claims.exp,
            },
            CallerCredential::Session => CredentialInfo::Session,
        },
    }))
}

#[utoipa::path(get, path = "/v1/api-keys", operation_id = "list_api_keys", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's live and expired API keys, never the keys themselves", body = ApiKeyListResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ApiKeyListResponse>, AppError> {
    may_manage_keys(caller.key_scope())?;
    let keys = state.service.list_api_keys(&caller.user).await?;
    let now = state.service.now();
    Ok(Json(ApiKeyListResponse {
        api_keys: keys.iter().map(|key| key_info(key, now)).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/api-keys", operation_id = "create_api_key", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    request_body = ApiKeyCreateRequest,
    responses(
        (status = 201, description = "The new key, shown this once", body = ApiKeyCreateResponse),
        (status = 400, description = "A bad name, lifetime or scope", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "The email address is not verified, a session request from another site, another org, or a key limited to scopes asking beyond them", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<ApiKeyCreateRequest>,
) -> Result<(StatusCode, Json<ApiKeyCreateResponse>), AppError> {
    let (key, record) = state
        .service
        .create_api_key(&caller.user, &request, caller.key_scope())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreateResponse {
            api_key: key.expose_secret().to_owned(),
            info: key_info(&record, state.service.now()),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", operation_id = "revoke_api_key", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys", body = ErrorBody),
        (status = 404, description = "No such key of the caller's", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<StatusCode, AppError> {
    may_manage_keys(caller.key_scope())?;
    state
        .service
        .revoke_api_key(&caller.user.id, &key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
