//! `/v1/sessions` and `/v1/audit`: where the caller is signed in, ending one of those, and
//! their (or their org's) audit log.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use latchkey_core::{
    api_key::may_manage_keys,
    console::{AuditParams, login_info, session_info},
};
use latchkey_proto::{
    ErrorBody,
    wire::{AuditResponse, SessionsResponse},
};

use crate::{
    AppState,
    error::AppError,
    extract::{Caller, CallerCredential, ClientIp, Json, Session},
};

#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's browser sessions, and the OAuth apps and CLIs holding tokens for them", body = SessionsResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    session: Session,
) -> Result<Json<SessionsResponse>, AppError> {
    may_manage_keys(caller.key_scope())?;
    let this_session = match caller.credential {
        CallerCredential::Session => session.id.as_deref(),
        _ => None,
    };
    let this_login = match &caller.credential {
        CallerCredential::AccessToken(claims) => claims.sid.as_deref(),
        CallerCredential::ApiKey(key) => Some(key.key_id.as_str()),
        CallerCredential::Session => None,
    };
    let sessions = state
        .service
        .sessions_of(&caller.user, this_session)
        .await?;
    let logins = state.service.logins_of(&caller.user).await?;
    Ok(Json(SessionsResponse {
        sessions: sessions.iter().map(session_info).collect(),
        logins: logins.iter().map(|l| login_info(l, this_login)).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", operation_id = "end_session", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("id" = String, Path, description = "A browser session (`ses_…`) or a login (`rf_…`) from `GET /v1/sessions`")),
    responses(
        (status = 204, description = "Signed out: the session ends, or the login's refresh tokens and access tokens stop working"),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys, or a session request from another site", body = ErrorBody),
        (status = 404, description = "No such live session or login of the caller's", body = ErrorBody),
    ))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    may_manage_keys(caller.key_scope())?;
    state
        .service
        .end_session_or_login(&caller.user, &id, Some(ip))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/audit", operation_id = "audit_log", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(
        ("type" = Option<String>, Query, description = "Only these event types, comma-separated (`sign_in,password_changed`)"),
        ("before" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "Events per page, 1 to 200 (50)"),
        ("org" = Option<String>, Query, description = "Read this org's log instead (admins and owners)"),
    ),
    responses(
        (status = 200, description = "Security events of the last 90 days, newest first", body = AuditResponse),
        (status = 400, description = "An unknown type, a cursor we did not issue, or a limit out of range", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys, or not an admin of the org", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditResponse>, AppError> {
    may_manage_keys(caller.key_scope())?;
    let Query(params) = params.map_err(|e| AppError::bad_request(e.body_text()))?;
    Ok(Json(state.service.audit_page(&caller.user, &params).await?))
}
