//! `POST /oauth/token`. Bodies are form-encoded; errors are RFC 6749 §5.2 JSON.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, header},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use latchkey_core::{OAuthError, oauth::token::TokenRequest};
use latchkey_proto::oauth::{OAuthErrorCode, TokenResponse};

use crate::{AppState, error::OAuthErrorResponse, extract::Json};

/// Client credentials from `Authorization: Basic`, each half form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
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

pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenResponse>, OAuthErrorResponse> {
    let request: TokenRequest =
        serde_urlencoded::from_bytes(&body).map_err(|e| OAuthError::Protocol {
            code: OAuthErrorCode::InvalidRequest,
            description: format!("the body is not a valid form-encoded token request: {e}"),
        })?;
    let basic = basic_credentials(&headers)?;
    Ok(Json(state.service.token(request, basic).await?))
}
