//! `/account/security`: where the person is signed in, the apps and CLIs holding logins for
//! them, and their recent activity; each session or login can be ended from here.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use latchkey_core::console::AuditParams;
use serde::Deserialize;

use super::{PageError, account::SignedInOrRedirect, page};
use crate::{
    AppState,
    extract::{ClientIp, Csrf, Form, Session},
};

struct SessionRow {
    id: String,
    device: String,
    ip: String,
    created_at: String,
    last_seen_at: String,
    current: bool,
}

struct LoginRow {
    id: String,
    client_name: String,
    method: String,
    device_name: Option<String>,
    scope: String,
    created_at: String,
    last_used_at: String,
}

struct PasskeyRow {
    id: String,
    name: String,
    created_at: String,
    last_used_at: String,
}

struct EventRow {
    at: String,
    kind: String,
    ip: Option<String>,
    detail: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage<'a> {
    csrf: &'a str,
    email: &'a str,
    sessions: Vec<SessionRow>,
    logins: Vec<LoginRow>,
    events: Vec<EventRow>,
    /// The cursor of the next (older) page of activity.
    older: Option<String>,
    /// Whether signing in asks for an authenticator app's code, and the recovery codes left.
    second_factor: bool,
    recovery_codes_left: u64,
    /// Whether turning it off asks for the password (the account has one).
    password: bool,
    passkeys: Vec<PasskeyRow>,
    /// Whether passkeys work here (the public URL has a domain name).
    passkeys_available: bool,
}

/// A time as the page shows it: to the minute, in UTC.
fn when(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&format).unwrap_or_default()
}

/// An RFC 3339 time in UTC (as the audit API gives it) to the minute, like [`when`].
fn to_the_minute(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ActivityQuery {
    before: Option<String>,
}

pub async fn security_page(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Query(q): Query<ActivityQuery>,
) -> Result<Response, PageError> {
    let sessions = state
        .service
        .sessions_of(&user, session.id.as_deref())
        .await?;
    let logins = state.service.logins_of(&user).await?;
    let (second_factor, recovery_codes_left) = state.service.second_factor_status(&user).await?;
    let passkeys = state.service.passkeys_of(&user).await?;
    let activity = state
        .service
        .audit_page(
            &user,
            &AuditParams {
                before: q.before,
                ..AuditParams::default()
            },
        )
        .await?;
    Ok(page(
        &SecurityPage {
            csrf: &csrf.token,
            email: &user.email,
            sessions: sessions
                .into_iter()
                .map(|s| SessionRow {
                    id: s.record.id,
                    device: s.device,
                    ip: s.record.ip.unwrap_or_default(),
                    created_at: when(s.record.created_at),
                    last_seen_at: when(s.record.last_seen_at),
                    current: s.current,
                })
                .collect(),
            logins: logins
                .into_iter()
                .map(|l| LoginRow {
                    id: l.family_id,
                    client_name: l.client_name,
                    method: l.method,
                    device_name: l.device_name,
                    scope: l.scope,
                    created_at: when(l.created_at),
                    last_used_at: when(l.last_used_at),
                })
                .collect(),
            events: activity
                .events
                .into_iter()
                .map(|e| EventRow {
                    at: to_the_minute(&e.at),
                    kind: e.kind.replace('_', " "),
                    ip: e.ip,
                    detail: e.detail,
                })
                .collect(),
            older: activity.next_cursor,
            second_factor,
            recovery_codes_left,
            password: latchkey_core::Service::has_password(&user),
            passkeys: passkeys
                .into_iter()
                .map(|p| PasskeyRow {
                    id: p.id,
                    name: p.name,
                    created_at: when(p.created_at),
                    last_used_at: p.last_used_at.map_or_else(|| "never".to_owned(), when),
                })
                .collect(),
            passkeys_available: state.service.passkeys_available(),
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// Signs out one browser session, or revokes one login.
pub async fn end(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state
        .service
        .end_session_or_login(&user, &id, Some(ip))
        .await?;
    Ok(Redirect::to("/account/security").into_response())
}

pub async fn sign_out_others(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (Some(user), Some(id)) = (session.user, session.id) else {
        return Ok(Redirect::to("/signin?next=/account/security").into_response());
    };
    state
        .service
        .end_other_sessions(&user, &id, Some(ip))
        .await?;
    Ok(Redirect::to("/account/security").into_response())
}
