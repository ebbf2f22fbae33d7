//! `POST /v1/billing/stripe/webhook`: Stripe's events about subscriptions. The body is read
//! raw: the signature covers its exact bytes.

use axum::{body::Bytes, extract::State, http::HeaderMap};
use latchkey_core::billing::WebhookOutcome;
use latchkey_proto::{ErrorBody, wire::WebhookReceipt};

use crate::{AppState, error::AppError, extract::Json};

#[utoipa::path(post, path = "/v1/billing/stripe/webhook", tag = "billing",
    request_body(content = String, description = "A Stripe event, as Stripe sends it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<HMAC-SHA256 hex>")),
    responses(
        (status = 200, description = "Received: applied, unchanged (older or replayed) or ignored", body = WebhookReceipt),
        (status = 400, description = "A signed body that is not a Stripe event", body = ErrorBody),
        (status = 401, description = "No valid signature: nothing is read or stored", body = ErrorBody),
        (status = 404, description = "This server takes no Stripe webhooks", body = ErrorBody),
    ))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, AppError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = state.service.stripe_webhook(signature, &body).await?;
    Ok(Json(WebhookReceipt {
        received: true,
        outcome: match outcome {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Unchanged => "unchanged",
            WebhookOutcome::Ignored => "ignored",
        }
        .into(),
    }))
}
