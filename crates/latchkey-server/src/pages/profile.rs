//! `/account/email` and `/account/delete`: changing the account's email (confirmed by the link
//! mailed to the new address) and deleting the account; `GET /v1/account/export` is the
//! account's data as JSON.

use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::{AccountError, Password};
use latchkey_proto::{EmailChangeToken, ErrorBody, wire::AccountExport};
use serde::Deserialize;

use super::{PageError, account::message};
use crate::{
    AppState,
    error::AppError,
    extract::{Caller, CallerCredential, ClientIp, Csrf, Form, Json, Session},
};

/// The password, when the form had one (accounts made by an identity provider have none).
pub(crate) fn password_given(raw: Option<String>) -> Result<Option<Password>, AccountError> {
    raw.filter(|p| !p.is_empty())
        .map(|p| Password::parse(p).map_err(|_| AccountError::WrongCurrentPassword))
        .transpose()
}

/// The signed-in person behind `session`, with when they signed in, or a page saying to.
pub(crate) fn signed_in(
    session: Session,
) -> Result<(latchkey_core::store::User, time::OffsetDateTime), PageError> {
    match (session.user, session.signed_in_at) {
        (Some(user), Some(at)) => Ok((user, at)),
        _ => Err(PageError(AppError::unauthorized(
            "Sign in first: your session has ended.",
        ))),
    }
}

#[derive(Deserialize)]
pub struct EmailChangeForm {
    csrf: String,
    email: String,
    password: Option<String>,
}

pub async fn request_email_change(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(form): Form<EmailChangeForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, signed_in_at) = signed_in(session)?;
    let password = password_given(form.password)?;
    let new = state
        .service
        .request_email_change(&user, &form.email, password, signed_in_at, Some(ip))
        .await?;
    let text = format!(
        "We sent a link to {new}. Your address changes when you open it (within 24 hours); \
         until then you keep signing in with {}.",
        user.email
    );
    Ok(message(
        "Check your new inbox",
        &text,
        "ok",
        Some(("/account", "Back to your account")),
    ))
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The link in the mail to the new address: it alone proves the address is theirs.
pub async fn confirm_email_change(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, PageError> {
    let token = EmailChangeToken::from_presented(q.token.unwrap_or_default());
    let user = state.service.confirm_email_change(&token).await?;
    let text = format!("Your account's email address is now {}.", user.email);
    Ok(message(
        "Email address changed",
        &text,
        "ok",
        Some(("/account", "Your account")),
    ))
}

#[derive(Deserialize)]
pub struct DeletionForm {
    csrf: String,
    /// The account's email address, typed to confirm.
    confirm: String,
    password: Option<String>,
}

pub async fn delete_account(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Form(form): Form<DeletionForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, signed_in_at) = signed_in(session)?;
    let password = password_given(form.password)?;
    state
        .service
        .delete_account(&user, &form.confirm, password, signed_in_at, Some(ip))
        .await?;
    let jar = jar.remove(Cookie::build(state.site.session_cookie).path("/"));
    let page = message(
        "Account deleted",
        "Your account, its API keys and its logins are gone; every credential it had stopped \
         working. The address can be used to sign up again.",
        "ok",
        None,
    );
    Ok((jar, page).into_response())
}

#[utoipa::path(get, path = "/v1/account/export", operation_id = "export_account", tag = "account",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "Everything the service holds about the caller: the account, orgs, linked identities, API keys (never the keys), sessions, logins and 90 days of audit log", body = AccountExport),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without api_keys", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    session: Session,
) -> Result<Response, AppError> {
    latchkey_core::api_key::may_manage_keys(caller.key_scope())?;
    let current = match caller.credential {
        CallerCredential::Session => session.id.as_deref(),
        _ => None,
    };
    let export = state.service.export_account(&caller.user, current).await?;
    let disposition = "attachment; filename=\"account.json\"";
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(export)).into_response())
}
