//! `POST /auth/client` (MemoryGate): a static machine client from the config trades its secret
//! for a short-lived API key.

use axum::extract::State;
use latchkey_core::machine::MachineClientError;
use latchkey_proto::wire::{MachineClientRequest, MachineClientResponse};

use latchkey_proto::ErrorBody;

use crate::{AppState, error::AppError, extract::Json};

#[utoipa::path(post, path = "/auth/client", tag = "machine clients",
    request_body = MachineClientRequest,
    responses(
        (status = 200, description = "A short-lived API key", body = MachineClientResponse),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 401, description = "Unknown client or wrong secret", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn exchange(
    State(state): State<AppState>,
    Json(request): Json<MachineClientRequest>,
) -> Result<Json<MachineClientResponse>, AppError> {
    let (key, record) = state
        .service
        .authenticate_machine_client(&request.client_id, &request.client_secret)
        .await?;
    let info = latchkey_core::api_key::key_info(&record, state.service.now());
    Ok(Json(MachineClientResponse {
        api_key: key.expose_secret().to_owned(),
        key_prefix: record.key_prefix,
        user_id: record.user_id,
        expires_at: info.expires_at.unwrap_or_default(),
    }))
}

impl From<MachineClientError> for AppError {
    fn from(e: MachineClientError) -> Self {
        match e {
            MachineClientError::InvalidCredentials | MachineClientError::InvalidId(_) => {
                AppError::unauthorized(MachineClientError::InvalidCredentials.to_string())
            }
            MachineClientError::Store(e) => e.into(),
        }
    }
}
