//! OpenID Connect RP-initiated logout: `GET`/`POST /oauth/logout` from a relying party, and
//! the confirmation (`POST /oauth/logout/confirm`). A request whose `id_token_hint` names the
//! signed-in person signs them out at once; any other asks them first, so a link on another
//! site cannot sign anyone out. The browser goes back only to a `post_logout_redirect_uri`
//! the client registered, exactly.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::oauth::openid::{LogoutRequest, ValidLogout};
use serde::Deserialize;

use super::{Decision, MessagePage, PageError, page};
use crate::{
    AppState,
    error::AppError,
    extract::{Csrf, Form, Session},
};

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    csrf: &'a str,
    request: &'a str,
    client_name: Option<&'a str>,
    email: &'a str,
}

async fn check(state: &AppState, raw: &str) -> Result<ValidLogout, PageError> {
    let request: LogoutRequest = serde_urlencoded::from_str(raw)
        .map_err(|e| AppError::bad_request(format!("This logout request is malformed: {e}.")))?;
    Ok(state.service.check_logout(&request).await?)
}

/// Ends the browser session and drops its cookie.
pub(crate) async fn end_session(
    state: &AppState,
    jar: CookieJar,
    session: &Session,
) -> Result<CookieJar, PageError> {
    if let Some(token) = &session.token {
        state.service.sign_out(token).await?;
    }
    Ok(jar.remove(Cookie::build(state.site.session_cookie).path("/")))
}

/// Back to the client, or this issuer's own page.
fn signed_out(valid: &ValidLogout) -> Response {
    match &valid.redirect {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => page(
            &MessagePage {
                title: "Signed out",
                text: "You are signed out of latchkey.",
                class: "notice",
                link: Some(("/signin", "Sign in again")),
            },
            None,
        ),
    }
}

async fn logout(
    state: AppState,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    raw: &str,
) -> Result<Response, PageError> {
    let valid = check(&state, raw).await?;
    let Some(user) = &session.user else {
        return Ok(signed_out(&valid));
    };
    if valid.hinted_user.as_deref() == Some(user.id.as_str()) {
        let jar = end_session(&state, jar, &session).await?;
        return Ok((jar, signed_out(&valid)).into_response());
    }
    Ok(page(
        &LogoutPage {
            csrf: &csrf.token,
            request: raw,
            client_name: valid.client_name.as_deref(),
            email: &user.email,
        },
        Some(&csrf),
    ))
}

pub async fn logout_by_query(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    logout(state, jar, csrf, session, &raw.unwrap_or_default()).await
}

pub async fn logout_by_form(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    body: Bytes,
) -> Result<Response, PageError> {
    let raw = std::str::from_utf8(&body)
        .map_err(|_| AppError::bad_request("This logout request is not valid UTF-8."))?;
    logout(state, jar, csrf, session, raw).await
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    request: String,
    decision: Decision,
}

pub async fn confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let valid = check(&state, &form.request).await?;
    if form.decision == Decision::Deny {
        return Ok(page(
            &MessagePage {
                title: "Still signed in",
                text: "You stay signed in to latchkey.",
                class: "notice",
                link: Some(("/account", "Your account")),
            },
            None,
        ));
    }
    let jar = end_session(&state, jar, &session).await?;
    Ok((jar, signed_out(&valid)).into_response())
}
