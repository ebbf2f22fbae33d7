//! `/auth/login/{provider}` and `/auth/callback/{provider}`: signing in (and up) with an
//! upstream identity provider; `/account/link/{provider}` and
//! `/account/identities/{provider}/unlink`: linking and unlinking one on the account page. The
//! sign-in in flight is stored server-side and tied to this browser by a cookie of its own (so
//! two tabs may sign in at once); the callback opens a latchkey session, and every CLI login
//! method then works for the person as for anyone else.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::console::SessionOrigin;
use latchkey_core::{
    store::User,
    upstream::{UpstreamError, UpstreamOutcome},
};
use latchkey_proto::LocalPath;
use serde::Deserialize;

use super::{
    MessagePage, PageError,
    account::{CsrfForm, SignedInOrRedirect},
    page, query_escape, redirect_to_next,
};
use crate::{
    AppState,
    config::UpstreamProvider,
    error::AppError,
    extract::{Csrf, Form, SignedIn},
};

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

fn provider<'a>(state: &'a AppState, id: &str) -> Result<&'a UpstreamProvider, PageError> {
    state.upstream.find(id).ok_or_else(|| {
        PageError(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("There is no identity provider \"{id}\" here."),
        ))
    })
}

/// Sends the browser to the provider, remembering the sign-in (and, with `link_to`, the
/// account it links to).
async fn send_to_provider(
    state: &AppState,
    id: &str,
    next: Option<String>,
    link_to: Option<&User>,
    jar: CookieJar,
) -> Result<Response, PageError> {
    let provider = provider(state, id)?;
    let next = LocalPath::parse_opt(next.as_deref());
    let started = state
        .service
        .start_upstream_login(id, next.as_ref(), link_to)
        .await?;
    let url = match state.upstream.authorization_url(provider, &started).await {
        Ok(url) => url,
        Err(e) => return Ok(provider_failed(e, id)),
    };
    let cookie = state.site.cookie(
        state.site.upstream_cookie(&started.state),
        started.browser_secret,
        Some(std::time::Duration::from_secs(10 * 60)),
    );
    Ok((jar.add(cookie), Redirect::to(url.as_str())).into_response())
}

pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
    jar: CookieJar,
) -> Result<Response, PageError> {
    send_to_provider(&state, &id, q.next, None, jar).await
}

/// Links the provider to the signed-in account: the person signs in there, and the callback
/// adds the identity.
pub async fn link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedInOrRedirect(user): SignedInOrRedirect,
    jar: CookieJar,
) -> Result<Response, PageError> {
    send_to_provider(&state, &id, Some("/account".into()), Some(&user), jar).await
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
    signed_in: Option<SignedIn>,
    origin: SessionOrigin,
    jar: CookieJar,
) -> Result<Response, PageError> {
    let provider = provider(&state, &id)?;
    let name = &provider.provider.display_name;
    let retry = format!("/auth/login/{id}");
    if let Some(error) = &q.error {
        let said = q.error_description.as_deref().unwrap_or(error);
        let text = format!("{name} did not sign you in: {said}. Nothing was changed here.");
        return Ok(try_again(&text, &retry, StatusCode::FORBIDDEN));
    }
    let login_state = q.state.as_deref().unwrap_or_default();
    let cookie_name = state.site.upstream_cookie(login_state);
    let browser = jar.get(&cookie_name).map(Cookie::value);
    let login = state
        .service
        .upstream_login(&id, login_state, browser)
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
        Err(e) => return Ok(provider_failed(e, &id)),
    };
    let signed_in = signed_in.map(|SignedIn(user)| user);
    let outcome = state
        .service
        .finish_upstream_login(&provider.provider, &login, &identity, signed_in.as_ref())
        .await;
    let jar = jar.remove(Cookie::build(cookie_name).path("/"));
    let next = LocalPath::parse_opt(login.next_path.as_deref());
    match outcome {
        Ok(UpstreamOutcome::SignedIn(user)) => {
            let step = state
                .service
                .after_first_factor(user, &origin, next.as_ref().map(LocalPath::as_str))
                .await?;
            Ok(super::second_factor::after_first_factor(
                &state,
                jar,
                step,
                next.as_ref(),
            ))
        }
        Ok(UpstreamOutcome::Linked(_)) => {
            Ok((jar, redirect_to_next(next.as_ref())).into_response())
        }
        Err(e @ UpstreamError::AccountExists { .. }) => {
            // The owner may link the provider once signed in to the account.
            let error = AppError::from(e);
            let link = format!(
                "/signin?next={}",
                query_escape(&format!("/account/link/{id}"))
            );
            let mut response = page(
                &MessagePage {
                    title: "Sign in to link this account",
                    text: error.message(),
                    class: "error",
                    link: Some((&link, "Sign in, then link")),
                },
                None,
            );
            error.apply_status(&mut response);
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

/// The provider could not be reached or its answer failed the checks: nothing was created,
/// and the person may start again.
fn provider_failed(e: crate::upstream::ProviderError, id: &str) -> Response {
    let error = AppError::from(e);
    try_again(
        error.message(),
        &format!("/auth/login/{id}"),
        error.status(),
    )
}

/// A page that says what went wrong at the provider and offers to start again.
fn try_again(text: &str, retry: &str, status: StatusCode) -> Response {
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

pub async fn unlink(
    State(state): State<AppState>,
    Path(id): Path<String>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let provider = provider(&state, &id)?;
    state
        .service
        .unlink_identity(&user, &provider.provider)
        .await?;
    Ok(Redirect::to("/account").into_response())
}
