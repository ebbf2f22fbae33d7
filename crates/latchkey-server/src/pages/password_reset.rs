//! "Forgot your password?": a reset link by email (the same answer whether or not the address
//! has an account), then a new password, which ends every session and OAuth login.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Response,
};
use latchkey_core::{AccountError, Password};
use latchkey_proto::PasswordResetToken;
use serde::Deserialize;

use super::{PageError, account::message, page, refused_form};
use crate::{
    AppState,
    error::AppError,
    extract::{ClientIp, Csrf, Form},
};

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct ForgotPasswordPage<'a> {
    csrf: &'a str,
    email: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset_password.html")]
struct ResetPasswordPage<'a> {
    csrf: &'a str,
    token: &'a str,
    error: Option<String>,
}

pub async fn forgot_password_page(csrf: Csrf) -> Response {
    page(
        &ForgotPasswordPage {
            csrf: &csrf.token,
            email: "",
            error: None,
        },
        Some(&csrf),
    )
}

#[derive(Deserialize)]
pub struct ForgotPasswordForm {
    csrf: String,
    email: String,
}

pub async fn forgot_password(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    csrf: Csrf,
    Form(form): Form<ForgotPasswordForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    match state
        .service
        .request_password_reset(&form.email, Some(client_ip))
        .await
    {
        Ok(()) => Ok(message(
            "Check your email",
            "If an account uses this address, we sent it a link to choose a new password. It works for 30 minutes.",
            "ok",
            None,
        )),
        Err(e @ (AccountError::InvalidEmail(_) | AccountError::MailThrottled(_))) => {
            let error = AppError::from(e);
            Ok(refused_form(
                &ForgotPasswordPage {
                    csrf: &csrf.token,
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

#[derive(Deserialize)]
pub struct ResetQuery {
    token: Option<String>,
}

pub async fn reset_password_page(
    State(state): State<AppState>,
    csrf: Csrf,
    Query(q): Query<ResetQuery>,
) -> Result<Response, PageError> {
    let raw = q.token.unwrap_or_default();
    let token = PasswordResetToken::from_presented(raw.clone());
    state.service.check_password_reset(&token).await?;
    Ok(page(
        &ResetPasswordPage {
            csrf: &csrf.token,
            token: &raw,
            error: None,
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct ResetPasswordForm {
    csrf: String,
    token: String,
    password: String,
}

pub async fn reset_password(
    State(state): State<AppState>,
    csrf: Csrf,
    Form(form): Form<ResetPasswordForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let token = PasswordResetToken::from_presented(form.token.clone());
    let result = match Password::parse(form.password) {
        Ok(password) => state.service.reset_password(&token, password).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(message(
            "Password changed",
            "Your new password is set, and every browser session and OAuth login of this account was signed out. API keys keep working: revoke any that may be exposed on the account page. Sign in with the new password.",
            "ok",
            Some(("/signin", "Sign in")),
        )),
        Err(e @ AccountError::InvalidPassword) => {
            let error = AppError::from(e);
            Ok(refused_form(
                &ResetPasswordPage {
                    csrf: &csrf.token,
                    token: &form.token,
                    error: Some(error.message().to_owned()),
                },
                &csrf,
                &error,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
