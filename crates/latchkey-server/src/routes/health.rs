//! Liveness, readiness and Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};

use latchkey_proto::ErrorBody;

use crate::{AppState, error::AppError};

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.service.ready().await?;
    Ok("ready")
}

const GAUGE: &str = "latchkey_token_flow_waits_open";

/// The Prometheus text exposition format, version 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.service.stats();
    let counters: [(&str, &str, &AtomicU64); 8] = [
        (
            "latchkey_api_keys_verified_total",
            "API keys accepted",
            &stats.api_keys_verified,
        ),
        (
            "latchkey_api_keys_refused_by_format_total",
            "Presented API keys refused by prefix, shape or checksum, without a database lookup",
            &stats.api_keys_refused_by_format,
        ),
        (
            "latchkey_api_key_store_lookups_total",
            "API key lookups that reached the database (cache misses)",
            &stats.api_key_store_lookups,
        ),
        (
            "latchkey_token_flows_created_total",
            "Token flows created",
            &stats.token_flows_created,
        ),
        (
            "latchkey_token_flows_approved_total",
            "Token flows approved",
            &stats.token_flows_approved,
        ),
        (
            "latchkey_token_flows_delivered_total",
            "Token flows whose key reached the CLI",
            &stats.token_flows_delivered,
        ),
        (
            "latchkey_sign_ins_failed_total",
            "Sign-in attempts with wrong credentials",
            &stats.sign_ins_failed,
        ),
        (
            "latchkey_refresh_token_reuse_total",
            "Spent refresh tokens presented again (each revoked its family)",
            &stats.refresh_reuse_detected,
        ),
    ];
    let mut body = format!(
        "# HELP {GAUGE} Token-flow waits held open now\n# TYPE {GAUGE} gauge\n{GAUGE} {}\n",
        stats.token_flow_waits_open.load(Ordering::Relaxed)
    );
    for (name, help, value) in counters {
        body.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value.load(Ordering::Relaxed)
        ));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}
