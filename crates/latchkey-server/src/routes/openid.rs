//! OpenID Connect's userinfo endpoint (`GET` and `POST /oauth/userinfo`, Bearer).

use axum::{body::Bytes, extract::State, http::HeaderMap};
use latchkey_core::OAuthError;
use latchkey_proto::oauth::{OAuthErrorBody, OAuthErrorCode, UserInfo};

use crate::{AppState, error::OAuthErrorResponse, extract::Json};

/// The access token: `Authorization: Bearer`, or (POST) the form's `access_token` (RFC 6750
/// §2.2).
fn access_token(headers: &HeaderMap, form: UserInfoForm) -> Result<String, OAuthError> {
    super::oauth::bearer_token(headers)
        .map(str::to_owned)
        .or(form.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidToken,
            description: "send the access token as `Authorization: Bearer <token>`".into(),
        })
}

#[utoipa::path(get, path = "/oauth/userinfo", tag = "openid connect",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The person, as far as the token's scopes reveal", body = UserInfo),
        (status = 401, description = "No valid access token", body = OAuthErrorBody),
        (status = 403, description = "The token lacks the openid scope", body = OAuthErrorBody),
    ))]
pub async fn userinfo(
    state: State<AppState>,
    headers: HeaderMap,
) -> Result<Json<UserInfo>, OAuthErrorResponse> {
    answer(state, &headers, UserInfoForm::default()).await
}

#[utoipa::path(post, path = "/oauth/userinfo", tag = "openid connect", operation_id = "userinfo_by_post",
    security(("bearer" = []), ()),
    request_body(content = Option<UserInfoForm>, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The person, as far as the token's scopes reveal", body = UserInfo),
        (status = 401, description = "No valid access token", body = OAuthErrorBody),
        (status = 403, description = "The token lacks the openid scope", body = OAuthErrorBody),
    ))]
pub async fn userinfo_by_post(
    state: State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UserInfo>, OAuthErrorResponse> {
    answer(state, &headers, super::oauth::form(&body)?).await
}

/// The form a POST may carry the token in instead of the header (RFC 6750 §2.2).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct UserInfoForm {
    access_token: Option<String>,
}

async fn answer(
    State(state): State<AppState>,
    headers: &HeaderMap,
    form: UserInfoForm,
) -> Result<Json<UserInfo>, OAuthErrorResponse> {
    let token = access_token(headers, form)?;
    Ok(Json(state.service.userinfo(&token).await?))
}
