//! The token-flow approval page: shows the pairing code and who asks, then Approve or Deny.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use latchkey_core::token_flow::FlowViewState;
use latchkey_proto::PairingCode;
use serde::Deserialize;

use super::{
    PageError,
    account::{SignedInOrRedirect, message},
    page,
};
use crate::{
    AppState,
    error::AppError,
    extract::{Csrf, Form},
};

#[derive(Debug, Deserialize)]
pub struct ApprovalQuery {
    token_flow_id: Option<String>,
    code: Option<String>,
}

#[derive(Template)]
#[template(path = "approve.html")]
struct ApprovePage<'a> {
    csrf: &'a str,
    here: &'a str,
    flow_id: &'a str,
    pairing_code: &'a str,
    client_name: &'a str,
    utm_source: Option<&'a str>,
    email: &'a str,
    verified: bool,
    code_mismatch: bool,
    localhost_port: Option<u16>,
}

pub async fn approval_page(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    uri: axum::http::Uri,
    Query(q): Query<ApprovalQuery>,
) -> Result<Response, PageError> {
    let flow_id = q.token_flow_id.ok_or_else(|| {
        AppError::bad_request(
            "This link is missing its token_flow_id: copy the whole URL the CLI printed.",
        )
    })?;
    let flow = state.service.token_flow_view(&flow_id).await.map_err(|_| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "This login link is not valid. Run the login command again.",
        )
    })?;
    match flow.state {
        FlowViewState::Pending => {}
        FlowViewState::Approved => {
            return Ok(message(
                "Already approved",
                "This login was already approved. You can close this tab.",
                "ok",
                None,
            ));
        }
        FlowViewState::Denied => {
            return Ok(message("Denied", "This login was denied.", "notice", None));
        }
        FlowViewState::Expired => {
            return Err(AppError::new(
                StatusCode::GONE,
                "expired",
                "This login request has expired. Run the login command again.",
            )
            .into());
        }
    }
    let code_mismatch = q
        .code
        .as_deref()
        .is_some_and(|c| PairingCode::parse(c).is_none_or(|c| c.as_str() != flow.pairing_code));
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(page(
        &ApprovePage {
            csrf: &csrf.token,
            here,
            flow_id: &flow.id,
            pairing_code: &flow.pairing_code,
            client_name: &flow.client_name,
            utm_source: flow.utm_source.as_deref(),
            email: &user.email,
            verified: user.email_verified,
            code_mismatch,
            localhost_port: flow.localhost_port,
        },
        Some(&csrf),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    csrf: String,
    token_flow_id: String,
}

pub async fn approve(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state
        .service
        .approve_token_flow(&form.token_flow_id, &user)
        .await?;
    let next = state
        .service
        .token_flow_view(&form.token_flow_id)
        .await
        .ok()
        .and_then(|f| f.next_url);
    let link = next.as_deref().map(|n| (n, "Continue"));
    Ok(message(
        "Approved",
        "You are logged in on the command line. Return to your terminal; you can close this tab.",
        "ok",
        link,
    ))
}

pub async fn deny(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(_user): SignedInOrRedirect,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state.service.deny_token_flow(&form.token_flow_id).await?;
    Ok(message(
        "Denied",
        "The login was denied; the command line was told so. You can close this tab.",
        "notice",
        None,
    )
    .into_response())
}
