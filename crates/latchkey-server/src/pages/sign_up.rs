//! Sign-up, "check your email", the verification link and resending it.
//!
//! Sign-up gives the browser a receipt cookie instead of a session, whatever became of the
//! request (new account, replaced unverified account, or an address that already has an
//! account, whose owner is mailed): the answer is the same, so it cannot tell which addresses
//! have accounts. The verification link signs the person in when opened in that browser;
//! anywhere else it asks for the account's password first.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::console::SessionOrigin;
use latchkey_core::{AccountError, Email, Password, VerificationStep};
use latchkey_proto::{LocalPath, SignUpReceipt, VerificationToken};
use serde::Deserialize;

use super::{
    PageError,
    account::{
        CredentialsForm, CredentialsPage, CsrfForm, NextQuery, credentials_form, session_cookie,
    },
    page, query_escape, redirect_to_next, refused_form,
};
use crate::{
    AppState,
    extract::{ClientIp, Csrf, Form, Session},
};

#[derive(Template)]
#[template(path = "check_email.html")]
struct CheckEmailPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "verify_password.html")]
struct VerifyPasswordPage<'a> {
    csrf: &'a str,
    token: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<String>,
}

fn receipt_cookie(state: &AppState, receipt: &SignUpReceipt) -> Cookie<'static> {
    state.site.cookie(
        state.site.signup_cookie,
        receipt.expose_secret().to_owned(),
        Some(state.service.policy().verification_ttl),
    )
}

fn receipt(state: &AppState, jar: &CookieJar) -> Option<SignUpReceipt> {
    jar.get(state.site.signup_cookie)
        .map(|c| SignUpReceipt::from_presented(c.value().to_owned()))
}

pub async fn signup_page(
    State(state): State<AppState>,
    csrf: Csrf,
    Query(q): Query<NextQuery>,
) -> Response {
    credentials_form(
        &state,
        CredentialsPage::SignUp,
        &csrf,
        LocalPath::parse_opt(q.next.as_deref()).as_ref(),
        "",
        None,
    )
}

pub async fn signup(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    jar: CookieJar,
    csrf: Csrf,
    Form(form): Form<CredentialsForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let next = LocalPath::parse_opt(form.next.as_deref());
    let result = async {
        let email = Email::parse(&form.email)?;
        let password = Password::parse(form.password.clone())?;
        state
            .service
            .sign_up(
                email,
                form.name.as_deref(),
                password,
                next.as_ref(),
                Some(client_ip),
            )
            .await
    }
    .await;
    match result {
        Ok(receipt) => Ok((
            jar.add(receipt_cookie(&state, &receipt)),
            Redirect::to(&check_email_target(next.as_ref())),
        )
            .into_response()),
        Err(
            e @ (AccountError::InvalidEmail(_)
            | AccountError::InvalidName
            | AccountError::InvalidPassword
            | AccountError::MailThrottled(_)),
        ) => Ok(credentials_form(
            &state,
            CredentialsPage::SignUp,
            &csrf,
            next.as_ref(),
            &form.email,
            Some(e.into()),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The "check your email" page, keeping where the person was going.
fn check_email_target(next: Option<&LocalPath>) -> String {
    format!(
        "/check-email?next={}",
        query_escape(next.map_or("", LocalPath::as_str))
    )
}

/// Names the address only to a signed-in person: after a sign-up it is the one they typed.
pub async fn check_email(csrf: Csrf, session: Session, Query(q): Query<NextQuery>) -> Response {
    let next = LocalPath::parse_opt(q.next.as_deref());
    page(
        &CheckEmailPage {
            csrf: &csrf.token,
            next: next.as_ref().map_or("", LocalPath::as_str),
            email: session.user.as_ref().map(|u| u.email.as_str()),
        },
        Some(&csrf),
    )
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    token: Option<String>,
    next: Option<String>,
}

pub async fn verify_email(
    State(state): State<AppState>,
    origin: SessionOrigin,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    Query(q): Query<VerifyQuery>,
) -> Result<Response, PageError> {
    let raw = q.token.unwrap_or_default();
    let token = VerificationToken::from_presented(raw.clone());
    let next = LocalPath::parse_opt(q.next.as_deref());
    let receipt = receipt(&state, &jar);
    let step = state
        .service
        .open_verification_link(&token, session.user.as_ref(), receipt.as_ref())
        .await?;
    match step {
        VerificationStep::Verified(user) => {
            let jar = jar.remove(Cookie::build(state.site.signup_cookie).path("/"));
            let jar = if session.user.as_ref().is_some_and(|u| u.id == user.id) {
                jar
            } else {
                jar.add(session_cookie(
                    &state,
                    &state.service.open_session(&user, &origin).await?,
                ))
            };
            Ok((jar, redirect_to_next(next.as_ref())).into_response())
        }
        VerificationStep::PasswordNeeded { email } => Ok(page(
            &VerifyPasswordPage {
                csrf: &csrf.token,
                token: &raw,
                next: next.as_ref().map_or("", LocalPath::as_str),
                email: &email,
                error: None,
            },
            Some(&csrf),
        )),
    }
}

#[derive(Deserialize)]
pub struct VerifyPasswordForm {
    csrf: String,
    token: String,
    password: String,
    /// Only shown back on the form after a wrong password.
    email: String,
    next: Option<String>,
}

/// The verification link opened in another browser, with the account's password.
pub async fn verify_email_with_password(
    State(state): State<AppState>,
    origin: SessionOrigin,
    jar: CookieJar,
    csrf: Csrf,
    Form(form): Form<VerifyPasswordForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let next = LocalPath::parse_opt(form.next.as_deref());
    let token = VerificationToken::from_presented(form.token.clone());
    let result = match Password::parse(form.password) {
        Ok(password) => {
            state
                .service
                .verify_email_with_password(&token, password, &origin)
                .await
        }
        Err(_) => Err(AccountError::WrongCredentials),
    };
    match result {
        Ok(step) => Ok(super::second_factor::after_first_factor(
            &state,
            jar,
            step,
            next.as_ref(),
        )),
        Err(e @ (AccountError::WrongCredentials | AccountError::Throttled(_))) => {
            let error = crate::error::AppError::from(e);
            Ok(refused_form(
                &VerifyPasswordPage {
                    csrf: &csrf.token,
                    token: &form.token,
                    next: next.as_ref().map_or("", LocalPath::as_str),
                    email: &form.email,
                    error: Some(error.message().to_owned()),
                },
                &csrf,
                &error,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn resend_verification(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let next = LocalPath::parse_opt(form.next.as_deref());
    state
        .service
        .resend_verification(
            session.user.as_ref(),
            receipt(&state, &jar).as_ref(),
            next.as_ref(),
            Some(client_ip),
        )
        .await?;
    Ok(Redirect::to(&check_email_target(next.as_ref())).into_response())
}
