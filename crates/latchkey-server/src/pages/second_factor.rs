//! The second factor's pages: the code asked for at sign-in (`/signin/second-factor`), and
//! setting up or turning off an authenticator app from the security page.

use askama::Template;
use axum::{
    extract::State,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::{
    console::SessionOrigin,
    second_factor::{SecondFactorError, SignInStep},
};
use latchkey_proto::{LocalPath, SecondFactorToken};
use serde::Deserialize;

use super::{
    PageError,
    account::session_cookie,
    page,
    profile::{password_given, signed_in},
    redirect_to_next, refused_form,
};
use crate::{
    AppState,
    error::AppError,
    extract::{ClientIp, Csrf, Form, Session},
};

/// Where a first factor leads: a session cookie and on to `next`, or the code prompt (the
/// waiting sign-in's token in a cookie of its own, never in a URL).
pub(crate) fn after_first_factor(
    state: &AppState,
    jar: CookieJar,
    step: SignInStep,
    next: Option<&LocalPath>,
) -> Response {
    match step {
        SignInStep::SignedIn(token, _) => (
            jar.add(session_cookie(state, &token)),
            redirect_to_next(next),
        )
            .into_response(),
        SignInStep::SecondFactor(token) => {
            let cookie = state.site.cookie(
                state.site.second_factor_cookie,
                token.expose_secret().to_owned(),
                Some(std::time::Duration::from_secs(10 * 60)),
            );
            (jar.add(cookie), Redirect::to("/signin/second-factor")).into_response()
        }
    }
}

/// The waiting sign-in this browser holds, if any.
pub(crate) fn challenge(state: &AppState, jar: &CookieJar) -> Option<SecondFactorToken> {
    jar.get(state.site.second_factor_cookie)
        .map(|c| SecondFactorToken::from_presented(c.value().to_owned()))
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct CodePage<'a> {
    csrf: &'a str,
    error: Option<String>,
    /// The account has an authenticator app: its code (or a recovery code) is asked.
    app: bool,
    /// The account has passkeys: one may be used instead.
    passkey: bool,
}

pub async fn code_page(
    State(state): State<AppState>,
    csrf: Csrf,
    jar: CookieJar,
) -> Result<Response, PageError> {
    let methods = match challenge(&state, &jar) {
        Some(token) => state.service.challenge_methods(&token).await?,
        None => None,
    };
    let Some((app, passkey)) = methods else {
        return Ok(Redirect::to("/signin").into_response());
    };
    Ok(page(
        &CodePage {
            csrf: &csrf.token,
            error: None,
            app,
            passkey,
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

pub async fn submit_code(
    State(state): State<AppState>,
    csrf: Csrf,
    jar: CookieJar,
    origin: SessionOrigin,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let token = challenge(&state, &jar).ok_or(SecondFactorError::NoChallenge)?;
    match state
        .service
        .finish_second_factor(&token, &form.code, &origin)
        .await
    {
        Ok((session, _, next)) => {
            let next = LocalPath::parse_opt(next.as_deref());
            let jar = jar
                .remove(Cookie::build(state.site.second_factor_cookie).path("/"))
                .add(session_cookie(&state, &session));
            Ok((jar, redirect_to_next(next.as_ref())).into_response())
        }
        Err(e @ (SecondFactorError::WrongCode | SecondFactorError::Throttled(_))) => {
            let error = AppError::from(e);
            let (app, passkey) = state
                .service
                .challenge_methods(&token)
                .await?
                .unwrap_or((true, false));
            Ok(refused_form(
                &CodePage {
                    csrf: &csrf.token,
                    error: Some(error.message().to_owned()),
                    app,
                    passkey,
                },
                &csrf,
                &error,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct SetupPage<'a> {
    csrf: &'a str,
    /// The otpauth:// URL as an inline SVG QR code (made here, from our own data).
    qr_svg: String,
    secret: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage {
    codes: Vec<String>,
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

fn qr_svg(url: &str) -> Result<String, PageError> {
    let code =
        qrcode::QrCode::new(url.as_bytes()).map_err(|e| PageError(AppError::internal(&e)))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// `POST /account/second-factor/setup`: a new secret, shown as a QR code and as text, and a
/// form for the first code from the app.
pub async fn start_setup(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session)?;
    let setup = state.service.start_totp_setup(&user).await?;
    Ok(page(
        &SetupPage {
            csrf: &csrf.token,
            qr_svg: qr_svg(&setup.otpauth_url)?,
            secret: &setup.secret_base32,
            error: None,
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    code: String,
}

/// `POST /account/second-factor/confirm`: the app's first code turns it on; the recovery
/// codes are shown this once.
pub async fn confirm_setup(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session)?;
    let codes = state.service.confirm_totp_setup(&user, &form.code).await?;
    Ok(page(&RecoveryCodesPage { codes }, None))
}

#[derive(Deserialize)]
pub struct DisableForm {
    csrf: String,
    password: Option<String>,
}

/// `POST /account/second-factor/disable`, with the password again.
pub async fn disable(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(form): Form<DisableForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, signed_in_at) = signed_in(session)?;
    let password = password_given(form.password)?;
    state
        .service
        .disable_totp(&user, password, signed_in_at, Some(ip))
        .await?;
    Ok(Redirect::to("/account/security").into_response())
}
