//! `/device`: where a person types the code a CLI shows (RFC 8628) and approves or denies it.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use latchkey_core::{oauth::device::DeviceEntry, store::User};
use serde::Deserialize;

use super::{Decision, PageError, account::SignedInOrRedirect, account::message, page};
use crate::{
    AppState,
    error::AppError,
    extract::{Csrf, Form},
};

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    csrf: &'a str,
    here: &'a str,
    email: &'a str,
    verified: bool,
    entry: Option<DeviceEntry>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    csrf: String,
    user_code: String,
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    csrf: String,
    user_code: String,
    decision: Decision,
}

/// The entry form, or the confirmation for a code that was typed or came in the link.
async fn render(state: &AppState, csrf: &Csrf, user: &User, typed: Option<&str>) -> Response {
    let (entry, error, status) = match typed {
        None => (None, None, StatusCode::OK),
        Some(code) => match state.service.device_entry(user, code).await {
            Ok(entry) => (Some(entry), None, StatusCode::OK),
            Err(e) => {
                let message = e.to_string();
                (None, Some(message), AppError::from(e).status())
            }
        },
    };
    let mut response = page(
        &DevicePage {
            csrf: &csrf.token,
            here: "/device",
            email: &user.email,
            verified: user.email_verified,
            entry,
            error,
        },
        Some(csrf),
    );
    *response.status_mut() = status;
    response
}

pub async fn device_page(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Query(q): Query<DeviceQuery>,
) -> Response {
    render(&state, &csrf, &user, q.user_code.as_deref()).await
}

pub async fn enter_code(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    Ok(render(&state, &csrf, &user, Some(&form.user_code)).await)
}

pub async fn decide(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let approve = form.decision == Decision::Approve;
    state
        .service
        .decide_device_code(&user, &form.user_code, approve)
        .await?;
    Ok(if approve {
        message(
            "Device connected",
            "Approved. Return to your terminal: it continues on its own.",
            "ok",
            None,
        )
    } else {
        message("Denied", "The device was not connected.", "notice", None)
    }
    .into_response())
}
