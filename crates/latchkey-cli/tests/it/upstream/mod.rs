//! Signing in with upstream identity providers: OpenID Connect (node oidc-provider), GitHub and
//! plain OAuth 2.0 (the testkit's GitHub stand-in), forged ID tokens (the testkit's OIDC
//! stand-in), and linking and unlinking providers on the account page.

mod forged_tokens;
mod github;
mod linking;
pub mod oidc_provider;

use std::path::PathBuf;

use anyhow::{Context, Result};
use latchkey_testkit::{Person, Server};

/// A file holding `secret`, as `client_secret_file` takes it; kept for the test's life.
pub fn secret_file(secret: &str) -> Result<PathBuf> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), format!("{secret}\n"))?;
    Ok(file.keep()?.1)
}

/// An HTTP client that does not follow redirects, with or without a cookie jar.
pub fn no_redirects(jar: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .cookie_store(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Follows the redirects from `start` through the provider by hand and returns the callback
/// URL the provider sends the browser back to, without opening it.
pub async fn callback_url(
    browser: &reqwest::Client,
    server: &Server,
    start: &str,
) -> Result<String> {
    let mut url = server.url(start);
    loop {
        let response = browser.get(&url).send().await?;
        let location = response
            .headers()
            .get("location")
            .with_context(|| format!("{url} did not redirect ({})", response.status()))?
            .to_str()?
            .to_owned();
        let next = url::Url::parse(&url)?.join(&location)?.to_string();
        if next.starts_with(&server.url("/auth/callback/")) {
            return Ok(next);
        }
        url = next;
    }
}

pub async fn user_id(person: &Person) -> Result<String> {
    Ok(person.me().await?["user_id"]
        .as_str()
        .context("user_id")?
        .to_owned())
}
