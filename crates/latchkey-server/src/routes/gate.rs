//! `POST /v1/gate/usage`: a gate (a confidential client) reports the API key uses it served,
//! in batches, so usage counts stay right without the issuer seeing every request.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use latchkey_core::store::KeyUsage;
use latchkey_proto::wire::UsageReport;
use time::OffsetDateTime;

use super::oauth::basic_credentials;
use latchkey_proto::ErrorBody;

use crate::{AppState, error::AppError, extract::Json};

/// More entries than this in one report is not a gate flushing a few seconds of traffic.
const MAX_ENTRIES: usize = 10_000;

#[utoipa::path(post, path = "/v1/gate/usage", tag = "gate",
    security(("client" = [])),
    request_body = UsageReport,
    responses(
        (status = 204, description = "Counted"),
        (status = 400, description = "A malformed report", body = ErrorBody),
        (status = 401, description = "Not a confidential client", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(report): Json<UsageReport>,
) -> Result<StatusCode, AppError> {
    let client = state
        .service
        .authenticate_client_request(basic_credentials(&headers)?, None, None)
        .await?;
    if client.secret_hash.is_none() {
        return Err(AppError::unauthorized(
            "usage is reported by a confidential client (a gate with its own secret)",
        ));
    }
    if report.keys.len() > MAX_ENTRIES {
        return Err(AppError::bad_request(format!(
            "a report holds at most {MAX_ENTRIES} keys; send several"
        )));
    }
    let usage = report
        .keys
        .into_iter()
        .map(|entry| {
            let last_used_at = OffsetDateTime::from_unix_timestamp(entry.last_used_at)
                .map_err(|_| AppError::bad_request("last_used_at is not a valid Unix time"))?;
            Ok(KeyUsage {
                key_id: entry.key_id,
                count: entry.count,
                last_used_at,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    state.service.add_key_usage(&usage);
    Ok(StatusCode::NO_CONTENT)
}
