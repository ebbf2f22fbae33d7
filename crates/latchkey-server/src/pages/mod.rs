//! Server-rendered pages: accounts, CLI-login approval, API keys. Plain HTML forms with CSRF
//! tokens; they work without JavaScript.

pub mod account;
pub mod brand;
pub mod cli_login;
pub mod consent;
pub mod device;
pub mod handoff;
pub mod invitations;
pub mod logout;
pub mod passkeys;
pub mod password_reset;
pub mod profile;
pub mod second_factor;
pub mod security;
pub mod sign_up;
pub mod upstream;

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use axum_extra::extract::CookieJar;

use latchkey_proto::LocalPath;

use crate::{error::AppError, extract::Csrf};

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub class: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

/// The button a person pressed on a consent form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Decision {
    Approve,
    Deny,
}

/// Renders a template, adding the CSRF cookie when the page just created it.
pub(crate) fn page(template: &impl Template, csrf: Option<&Csrf>) -> Response {
    match template.render() {
        Ok(html) => {
            let cookie = csrf.and_then(|c| c.new_cookie.clone());
            let jar = cookie.into_iter().fold(CookieJar::new(), CookieJar::add);
            (jar, Html(html)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A form shown again after a refused submission, with the refusal's status (and
/// `Retry-After`); the template carries its message.
pub(crate) fn refused_form(template: &impl Template, csrf: &Csrf, error: &AppError) -> Response {
    let mut response = page(template, Some(csrf));
    error.apply_status(&mut response);
    response
}

/// A failure shown to a person: the same status and message as the API, as a page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.0.status().canonical_reason().unwrap_or("Error");
        let mut response = page(
            &MessagePage {
                title,
                text: self.0.message(),
                class: "error",
                link: None,
            },
            None,
        );
        self.0.apply_status(&mut response);
        response
    }
}

/// Continues to `next` (only ever a path on this site, see [`LocalPath`]), or the account page.
pub(crate) fn redirect_to_next(next: Option<&LocalPath>) -> Redirect {
    Redirect::to(next.map_or("/account", LocalPath::as_str))
}

pub(crate) fn query_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
