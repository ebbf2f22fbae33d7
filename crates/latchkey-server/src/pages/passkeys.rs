//! Passkeys on the pages: adding one from the security page, signing in with one alone, or
//! giving one as the second factor. The ceremony's two steps are JSON calls from
//! `assets/passkeys.js` (WebAuthn needs JavaScript); naming and removing are plain forms.

use axum::{
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::{console::SessionOrigin, passkeys::PasskeyError};
use latchkey_proto::{CeremonyToken, LocalPath};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PageError, account::session_cookie, profile::signed_in, second_factor::challenge};
use crate::{
    AppState,
    error::AppError,
    extract::{ClientIp, Csrf, Form, Json, Session},
};

/// `GET /assets/passkeys.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/passkeys.js"),
    )
}

#[derive(Deserialize)]
pub struct Start {
    csrf: String,
}

/// A ceremony begun: its token, and the options for the browser's authenticator.
#[derive(Serialize)]
pub struct Started {
    ceremony: String,
    options: Value,
}

impl Started {
    fn new((token, options): (CeremonyToken, Value)) -> Json<Self> {
        Json(Self {
            ceremony: token.expose_secret().to_owned(),
            options,
        })
    }
}

#[derive(Deserialize)]
pub struct Finish {
    csrf: String,
    ceremony: String,
    credential: Value,
    /// Registration: what to call the passkey.
    #[serde(default)]
    name: Option<String>,
    /// Sign-in: where to go on to.
    #[serde(default)]
    next: Option<String>,
}

/// Where the page goes once the ceremony is done.
#[derive(Serialize)]
pub struct Done {
    redirect: String,
}

fn done(next: Option<&LocalPath>) -> Json<Done> {
    Json(Done {
        redirect: next.map_or("/account", LocalPath::as_str).to_owned(),
    })
}

pub async fn start_registration(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Json(form): Json<Start>,
) -> Result<Json<Started>, AppError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session).map_err(|e| e.0)?;
    Ok(Started::new(
        state.service.start_passkey_registration(&user).await?,
    ))
}

pub async fn finish_registration(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Json(form): Json<Finish>,
) -> Result<Json<Done>, AppError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session).map_err(|e| e.0)?;
    let name = form.name.as_deref().unwrap_or("Passkey");
    state
        .service
        .finish_passkey_registration(&user, &form.ceremony, name, form.credential)
        .await?;
    Ok(Json(Done {
        redirect: "/account/security".into(),
    }))
}

pub async fn start_sign_in(
    State(state): State<AppState>,
    csrf: Csrf,
    Json(form): Json<Start>,
) -> Result<Json<Started>, AppError> {
    csrf.verify(&form.csrf)?;
    Ok(Started::new(state.service.start_passkey_sign_in().await?))
}

pub async fn finish_sign_in(
    State(state): State<AppState>,
    csrf: Csrf,
    jar: CookieJar,
    origin: SessionOrigin,
    Json(form): Json<Finish>,
) -> Result<(CookieJar, Json<Done>), AppError> {
    csrf.verify(&form.csrf)?;
    let (session, _) = state
        .service
        .finish_passkey_sign_in(&form.ceremony, form.credential, &origin)
        .await?;
    let next = LocalPath::parse_opt(form.next.as_deref());
    Ok((
        jar.add(session_cookie(&state, &session)),
        done(next.as_ref()),
    ))
}

pub async fn start_second_factor(
    State(state): State<AppState>,
    csrf: Csrf,
    jar: CookieJar,
    Json(form): Json<Start>,
) -> Result<Json<Started>, AppError> {
    csrf.verify(&form.csrf)?;
    let challenge = challenge(&state, &jar).ok_or(PasskeyError::NoChallenge)?;
    Ok(Started::new(
        state
            .service
            .start_passkey_second_factor(&challenge)
            .await?,
    ))
}

pub async fn finish_second_factor(
    State(state): State<AppState>,
    csrf: Csrf,
    jar: CookieJar,
    origin: SessionOrigin,
    Json(form): Json<Finish>,
) -> Result<(CookieJar, Json<Done>), AppError> {
    csrf.verify(&form.csrf)?;
    let challenge = challenge(&state, &jar).ok_or(PasskeyError::NoChallenge)?;
    let (session, _, next) = state
        .service
        .finish_passkey_second_factor(&challenge, &form.ceremony, form.credential, &origin)
        .await?;
    let next = LocalPath::parse_opt(next.as_deref());
    let jar = jar
        .remove(Cookie::build(state.site.second_factor_cookie).path("/"))
        .add(session_cookie(&state, &session));
    Ok((jar, done(next.as_ref())))
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf: String,
    name: String,
}

pub async fn rename(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RenameForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session)?;
    state.service.rename_passkey(&user, &id, &form.name).await?;
    Ok(Redirect::to("/account/security").into_response())
}

#[derive(Deserialize)]
pub struct RemoveForm {
    csrf: String,
}

pub async fn remove(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (user, _) = signed_in(session)?;
    state.service.remove_passkey(&user, &id, Some(ip)).await?;
    Ok(Redirect::to("/account/security").into_response())
}
