//! The mgrep hand-off page (`/cli/auth`): the signed-in person confirms, a key is minted, and the
//! page `fetch`es it to the CLI's loopback `redirect_uri`, with retry, a manual link and a
//! copyable `export` line when the CLI cannot be reached.

use askama::Template;
use axum::{
    extract::{RawQuery, State},
    response::Response,
};
use latchkey_core::handoff::{HandoffRequest, ValidHandoff};
use serde::Deserialize;

use super::{PageError, account::SignedInOrRedirect, page};
use crate::{
    AppState,
    error::AppError,
    extract::{Csrf, Form},
};

#[derive(Template)]
#[template(path = "handoff.html")]
struct ConfirmPage<'a> {
    csrf: &'a str,
    here: &'a str,
    request: &'a str,
    store: Option<&'a str>,
    redirect_origin: &'a str,
    email: &'a str,
    verified: bool,
}

#[derive(Template)]
#[template(path = "handoff_send.html")]
struct SendPage<'a> {
    redirect_uri: &'a str,
    manual_url: &'a str,
    api_key: &'a str,
    state: &'a str,
    store: &'a str,
    env_var: &'a str,
}

fn check(raw: &str) -> Result<ValidHandoff, PageError> {
    let request: HandoffRequest = serde_urlencoded::from_str(raw)
        .map_err(|e| AppError::bad_request(format!("This hand-off link is malformed: {e}.")))?;
    request
        .check()
        .map_err(|e| PageError(AppError::bad_request(e.to_string())))
}

pub async fn confirm_page(
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let raw = raw.unwrap_or_default();
    let handoff = check(&raw)?;
    let here = format!("/cli/auth?{raw}");
    Ok(page(
        &ConfirmPage {
            csrf: &csrf.token,
            here: &here,
            request: &raw,
            store: handoff.store.as_deref(),
            redirect_origin: &handoff.redirect_uri.origin().ascii_serialization(),
            email: &user.email,
            verified: user.email_verified,
        },
        Some(&csrf),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    request: String,
}

pub async fn send(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let handoff = check(&form.request)?;
    if !user.email_verified {
        return Err(AppError::forbidden(
            "email_not_verified",
            "Confirm your email address first: open the link we sent you.",
        )
        .into());
    }
    let (key, _) = state.service.mint_handoff_key(&user, &handoff).await?;
    let store = handoff.store.clone().unwrap_or_default();
    let mut manual = handoff.redirect_uri.clone();
    manual
        .query_pairs_mut()
        .append_pair("apiKey", key.expose_secret())
        .append_pair("state", &handoff.state)
        .append_pair("store", &store);
    Ok(page(
        &SendPage {
            redirect_uri: handoff.redirect_uri.as_str(),
            manual_url: manual.as_str(),
            api_key: key.expose_secret(),
            state: &handoff.state,
            store: &store,
            env_var: &handoff.env_var,
        },
        None,
    ))
}
