//! OpenID Connect's userinfo endpoint (`GET` and `POST /oauth/userinfo`, Bearer).

use axum::{body::Bytes, extract::State, http::HeaderMap};
use latchkey_core::OAuthError;
use latchkey_proto::oauth::{OAuthErrorCode, UserInfo};

use crate::{AppState, error::OAuthErrorResponse, extract::Json};

/// The access token: `Authorization: Bearer`, or (POST) the form's `access_token` (RFC 6750
/// §2.2).
fn access_token(headers: &HeaderMap, body: &[u8]) -> Result<String, OAuthError> {
    let from_header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let from_body = || {
        url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "access_token")
            .map(|(_, token)| token.into_owned())
    };
    from_header
        .or_else(from_body)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidToken,
            description: "send the access token as `Authorization: Bearer <token>`".into(),
        })
}

pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UserInfo>, OAuthErrorResponse> {
    let token = access_token(&headers, &body)?;
    Ok(Json(state.service.userinfo(&token).await?))
}
