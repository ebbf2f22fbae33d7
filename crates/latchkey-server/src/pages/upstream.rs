//! `/auth/login/{provider}` and `/auth/callback/{provider}`: signing in (and up) with an
//! upstream identity provider. The sign-in in flight is stored server-side and tied to this
//! browser by a cookie; the callback opens a latchkey session, and every CLI login method then
//! works for the person as for anyone else.

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_proto::LocalPath;
use serde::Deserialize;

use super::{MessagePage, PageError, account::session_cookie, page, redirect_to_next};
use crate::{AppState, config::UpstreamProvider, error::AppError};

/// The cookie that ties a sign-in in flight to the browser that started it.
const BROWSER_COOKIE: &str = "lk_upstream";

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

fn provider<'a>(state: &'a AppState, id: &str) -> Result<&'a UpstreamProvider, PageError> {
    state.upstream.find(id).ok_or_else(|| {
        PageError(AppError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("There is no identity provider \"{id}\" here."),
        ))
    })
}

pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
    jar: CookieJar,
) -> Result<Response, PageError> {
    let provider = provider(&state, &id)?;
    let next = LocalPath::parse_opt(q.next.as_deref());
    let started = state
        .service
        .start_upstream_login(&id, next.as_ref())
        .await?;
    let url = state.upstream.authorization_url(provider, &started).await?;
    let cookie = state.site.cookie(
        BROWSER_COOKIE,
        started.browser_secret,
        Some(std::time::Duration::from_secs(10 * 60)),
    );
    Ok((jar.add(cookie), Redirect::to(url.as_str())).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<CallbackQuery>,
    jar: CookieJar,
) -> Result<Response, PageError> {
    let provider = provider(&state, &id)?;
    let name = &provider.provider.display_name;
    let retry = format!("/auth/login/{id}");
    if let Some(error) = &q.error {
        let said = q.error_description.as_deref().unwrap_or(error);
        let text = format!("{name} did not sign you in: {said}. Nothing was changed here.");
        return Ok(try_again(&text, &retry, axum::http::StatusCode::FORBIDDEN));
    }
    let browser = jar.get(BROWSER_COOKIE).map(Cookie::value);
    let login = state
        .service
        .upstream_login(&id, q.state.as_deref().unwrap_or_default(), browser)
        .await?;
    let code = q.code.as_deref().ok_or_else(|| {
        PageError(AppError::bad_request(format!(
            "{name} sent you back without a code."
        )))
    })?;
    let identity = match state
        .upstream
        .identity(provider, &login.pkce_verifier, &login.nonce, code)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            let error = AppError::from(e);
            return Ok(try_again(error.message(), &retry, error.status()));
        }
    };
    let user = state
        .service
        .finish_upstream_login(&provider.provider, &login, &identity)
        .await?;
    let token = state.service.open_session(&user).await?;
    let next = LocalPath::parse_opt(login.next_path.as_deref());
    let jar = jar
        .remove(Cookie::build(BROWSER_COOKIE).path("/"))
        .add(session_cookie(&state, &token));
    Ok((jar, redirect_to_next(next.as_ref())).into_response())
}

/// A page that says what went wrong at the provider and offers to start again.
fn try_again(text: &str, retry: &str, status: axum::http::StatusCode) -> Response {
    let mut response = page(
        &MessagePage {
            title: "Sign-in did not finish",
            text,
            class: "error",
            link: Some((retry, "Try again")),
        },
        None,
    );
    *response.status_mut() = status;
    response
}
