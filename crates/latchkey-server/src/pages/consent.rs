//! The OAuth consent page (`GET /oauth/authorize`) and its decision (`POST /oauth/authorize`).
//! A request whose client or redirect URI is not valid is explained on a page, never redirected.
//! OpenID Connect's `prompt` and `max_age` decide whether the person signs in (again) first,
//! and `prompt=none` answers without any page.

use askama::Template;
use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use latchkey_core::oauth::{
    ClientOrigin,
    authorize::{AuthorizationRequest, AuthorizeRejection, NextStep, Prompt, ValidAuthorization},
};
use serde::Deserialize;

use super::{Decision, PageError, page, query_escape};
use crate::{
    AppState,
    error::AppError,
    extract::{Csrf, Form, Session},
};

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    csrf: &'a str,
    here: &'a str,
    request: &'a str,
    client_name: &'a str,
    /// The client registered itself: its name is its own claim.
    self_registered: bool,
    /// The host serving the client's metadata document (its `client_id` URL).
    client_host: Option<&'a str>,
    redirect_host: &'a str,
    pairing_code: Option<&'a str>,
    scope: &'a str,
    resource: Option<&'a str>,
    email: &'a str,
    verified: bool,
}

async fn check(state: &AppState, raw: &str) -> Result<ValidAuthorization, Response> {
    let request: AuthorizationRequest = serde_urlencoded::from_str(raw).map_err(|e| {
        PageError(AppError::bad_request(format!(
            "This authorization request is malformed: {e}."
        )))
        .into_response()
    })?;
    state
        .service
        .check_authorization_request(&request)
        .await
        .map_err(|rejection| match rejection {
            AuthorizeRejection::Page(message) => {
                PageError(AppError::bad_request(message)).into_response()
            }
            AuthorizeRejection::Redirect(url) => Redirect::to(url.as_str()).into_response(),
            AuthorizeRejection::Internal(e) => PageError(e.into()).into_response(),
        })
}

/// The sign-in page, coming back to this request afterwards without its `prompt` and
/// `max_age` (the sign-in about to happen satisfies both); `again` when a session exists and
/// must be replaced by a fresh sign-in.
fn sign_in_first(raw: &str, again: bool) -> Response {
    let kept: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(raw.as_bytes())
                .filter(|(name, _)| name != "prompt" && name != "max_age"),
        )
        .finish();
    let next = query_escape(&format!("/oauth/authorize?{kept}"));
    let again = if again { "&again=true" } else { "" };
    Redirect::to(&format!("/signin?next={next}{again}")).into_response()
}

pub async fn consent_page(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let raw = raw.unwrap_or_default();
    let valid = match check(&state, &raw).await {
        Ok(valid) => valid,
        Err(response) => return Ok(response),
    };
    let approved_before = match (&session.user, valid.prompt) {
        (Some(user), Prompt::None) => state.service.approved_before(&valid, user).await?,
        _ => false,
    };
    let step = valid.next_step(session.signed_in_at, approved_before, state.service.now());
    let user = match (step, session.user, session.signed_in_at) {
        (NextStep::Consent, Some(user), _) => user,
        (NextStep::Grant, Some(user), Some(signed_in_at)) => {
            let target = state
                .service
                .grant_authorization_code(&valid, &user, signed_in_at)
                .await?;
            return Ok(Redirect::to(target.as_str()).into_response());
        }
        (NextStep::LoginRequired | NextStep::ConsentRequired, _, _) => {
            let target = state.service.prompt_none_refused(&valid, step);
            return Ok(Redirect::to(target.as_str()).into_response());
        }
        (_, user, _) => return Ok(sign_in_first(&raw, user.is_some())),
    };
    let here = format!("/oauth/authorize?{raw}");
    let origin = ClientOrigin::of(&valid.client);
    let client_host = (origin == ClientOrigin::MetadataDocument)
        .then(|| url::Url::parse(&valid.client.id).ok())
        .flatten();
    Ok(page(
        &ConsentPage {
            csrf: &csrf.token,
            here: &here,
            request: &raw,
            client_name: &valid.client.name,
            self_registered: origin == ClientOrigin::SelfRegistered,
            client_host: client_host.as_ref().and_then(url::Url::host_str),
            redirect_host: valid.redirect_uri.host_str().unwrap_or_default(),
            pairing_code: valid.pairing_code.as_ref().map(|c| c.as_str()),
            scope: &valid.scope,
            resource: valid.resource.as_deref(),
            email: &user.email,
            verified: user.email_verified,
        },
        Some(&csrf),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    csrf: String,
    request: String,
    decision: Decision,
}

pub async fn decide(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let user = session.user.ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Your session has ended. Sign in and start again.",
        )
    })?;
    let valid = match check(&state, &form.request).await {
        Ok(valid) => valid,
        Err(response) => return Ok(response),
    };
    // The page may have waited past the request's max_age.
    let signed_in_at = match session.signed_in_at {
        Some(at) if valid.next_step(Some(at), false, state.service.now()) == NextStep::Consent => {
            at
        }
        _ => return Ok(sign_in_first(&form.request, true)),
    };
    let target = match form.decision {
        Decision::Approve => {
            state
                .service
                .grant_authorization_code(&valid, &user, signed_in_at)
                .await?
        }
        Decision::Deny => state.service.deny_authorization(&valid),
    };
    Ok(Redirect::to(target.as_str()).into_response())
}
