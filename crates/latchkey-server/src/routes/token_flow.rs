//! `POST /v1/token-flow/create` and `POST /v1/token-flow/wait` (the Modal/Memori contract).

use std::time::Duration;

use axum::{body::Bytes, extract::State, http::HeaderMap};
use latchkey_core::token_flow::MAX_WAIT;
use latchkey_proto::wire::{
    TokenFlowCreateRequest, TokenFlowCreateResponse, TokenFlowWaitRequest, TokenFlowWaitResponse,
};

use latchkey_proto::ErrorBody;

use crate::{AppState, error::AppError, extract::Json};

#[utoipa::path(post, path = "/v1/token-flow/create", operation_id = "create_token_flow", tag = "token flow",
    request_body(content = Option<TokenFlowCreateRequest>, description = "Optional: an empty body is an empty request"),
    responses(
        (status = 200, description = "A pending login: open web_url, then wait", body = TokenFlowCreateResponse),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 429, description = "Too many flows from this address", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenFlowCreateResponse>, AppError> {
    // Every field is optional, so an empty body is a valid request.
    let request: TokenFlowCreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenFlowCreateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AppError::bad_request(format!(
                "The request body is not a valid token flow request: {e}"
            ))
        })?
    };
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let flow = state.service.create_token_flow(request, user_agent).await?;
    Ok(Json(TokenFlowCreateResponse {
        token_flow_id: flow.id,
        web_url: flow.web_url,
        code: flow.pairing_code.as_str().to_owned(),
        wait_secret: flow.wait_secret,
    }))
}

#[utoipa::path(post, path = "/v1/token-flow/wait", operation_id = "wait_for_token_flow", tag = "token flow",
    request_body = TokenFlowWaitRequest,
    responses(
        (status = 200, description = "Still pending (timeout: true), or the approved key", body = TokenFlowWaitResponse),
        (status = 400, description = "A malformed request or timeout", body = ErrorBody),
        (status = 403, description = "The person denied the login", body = ErrorBody),
        (status = 404, description = "No such flow, or a wrong wait secret", body = ErrorBody),
        (status = 410, description = "The flow expired or was already delivered", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn wait(
    State(state): State<AppState>,
    Json(request): Json<TokenFlowWaitRequest>,
) -> Result<Json<TokenFlowWaitResponse>, AppError> {
    if !request.timeout.is_finite()
        || request.timeout < 0.0
        || request.timeout > MAX_WAIT.as_secs_f64()
    {
        return Err(AppError::bad_request(format!(
            "timeout must be a number of seconds from 0 to {}",
            MAX_WAIT.as_secs()
        )));
    }
    let response = state
        .service
        .wait_token_flow(
            &request.token_flow_id,
            &request.wait_secret,
            Duration::from_secs_f64(request.timeout),
        )
        .await?;
    Ok(Json(response))
}
