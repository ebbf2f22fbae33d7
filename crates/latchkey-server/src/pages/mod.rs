//! Server-rendered pages: accounts, CLI-login approval, API keys. Plain HTML forms with CSRF
//! tokens; they work without JavaScript.

pub mod account;
pub mod cli_login;
pub mod consent;
pub mod device;
pub mod handoff;

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use axum_extra::extract::CookieJar;

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
        let status = self.0.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut response = page(
            &MessagePage {
                title,
                text: self.0.message(),
                class: "error",
                link: None,
            },
            None,
        );
        *response.status_mut() = status;
        response
    }
}

/// `next` values are only ever paths on this site: anything else would be an open redirect.
pub(crate) fn local_path(next: Option<&str>) -> Option<&str> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
}

pub(crate) fn redirect_to_next(next: Option<&str>) -> Redirect {
    Redirect::to(local_path(next).unwrap_or("/account"))
}

pub(crate) fn query_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/login/cli?x=1")), Some("/login/cli?x=1"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
        ] {
            assert_eq!(local_path(Some(bad)), None, "{bad}");
        }
    }
}
