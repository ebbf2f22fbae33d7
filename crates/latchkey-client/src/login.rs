//! Logging in, by any of the methods of DESIGN.md section 3, and what every method shares: the
//! events shown to the person, and checking the credential with `/v1/me` before storing it.

use std::time::Duration;

use latchkey_proto::wire::MeResponse;

use crate::{
    Client, ClientError,
    api::retrying,
    storage::{AccountName, Secret, Stored},
};

/// How to log in (`--method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// Browser where one can open, device code otherwise.
    Auto,
    /// OAuth authorization code + PKCE to a loopback redirect (RFC 8252).
    Browser,
    /// RFC 8628: a code typed on another device.
    Device,
    /// The Memori/Modal token flow.
    TokenFlow,
    /// A key read from stdin.
    Paste,
}

impl LoginMethod {
    /// What `auto` means here: `can_open_browser` is false over SSH, without a display, in a
    /// container.
    pub fn resolve(self, can_open_browser: bool) -> LoginMethod {
        match self {
            LoginMethod::Auto if can_open_browser => LoginMethod::Browser,
            LoginMethod::Auto => LoginMethod::Device,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Auto => "auto",
            LoginMethod::Browser => "browser",
            LoginMethod::Device => "device",
            LoginMethod::TokenFlow => "token-flow",
            LoginMethod::Paste => "paste",
        }
    }
}

/// A login gives up after this long: flows, device codes and consent all expire by then.
pub(crate) const LOGIN_DEADLINE: Duration = Duration::from_secs(11 * 60);

#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// Try to open a browser (false: only report the URL).
    pub open_browser: bool,
    pub utm_source: Option<String>,
}

/// What the login reports as it goes, for the caller to show.
#[derive(Debug)]
pub enum LoginEvent<'a> {
    /// The person should open `url` and check that it shows `code` (device: type it there).
    Started {
        url: &'a str,
        code: Option<&'a str>,
        browser_opened: bool,
    },
    /// The server could not be reached; the login keeps trying.
    Retrying { error: &'a ClientError },
    /// The credential arrived and is being checked and stored.
    Approved,
}

#[derive(Debug)]
pub struct LoginOutcome {
    pub me: MeResponse,
    pub stored: Stored,
}

impl Client {
    /// Checks a new credential with `/v1/me` and stores it as the active account.
    pub(crate) async fn finish_login(
        &self,
        secret: Secret,
        deadline: tokio::time::Instant,
    ) -> Result<LoginOutcome, ClientError> {
        let me = retrying(deadline, || self.api.me(secret.bearer())).await?;
        let issuer = self.settings.issuer_id();
        let stored = self.storage.save(
            &AccountName {
                issuer: &issuer,
                user_id: &me.user_id,
                email: &me.email,
                org: &me.org.slug,
            },
            &secret,
        )?;
        Ok(LoginOutcome { me, stored })
    }

    /// Logs in by `method` (`auto` resolved by `options.open_browser`). `Paste` needs the key:
    /// use [`Client::login_with_key`].
    pub async fn login(
        &self,
        method: LoginMethod,
        options: LoginOptions,
        open_browser: &dyn Fn(&str) -> bool,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        match method.resolve(options.open_browser) {
            LoginMethod::Device => self.login_device(on_event).await,
            LoginMethod::TokenFlow => self.login_token_flow(options, open_browser, on_event).await,
            LoginMethod::Browser | LoginMethod::Auto => {
                self.login_browser(options, open_browser, on_event).await
            }
            LoginMethod::Paste => Err(ClientError::Config(
                "a pasted key is passed to login_with_key".into(),
            )),
        }
    }

    /// `--with-token` / `--method paste`: a key from the person (or CI), checked and stored.
    /// A key that is not in this tool's format is refused before any request.
    pub async fn login_with_key(&self, key: &str) -> Result<LoginOutcome, ClientError> {
        let key = key.trim();
        latchkey_proto::ApiKey::parse(key, &self.settings.app.key_prefix).map_err(|e| {
            ClientError::Config(format!(
                "that is not a {} API key ({e}); copy the whole key, {}_…",
                self.settings.app.name,
                self.settings.app.key_prefix.as_str()
            ))
        })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        self.finish_login(
            Secret::ApiKey {
                api_key: key.to_owned(),
            },
            deadline,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_device_flow_where_no_browser_can_open() {
        assert_eq!(LoginMethod::Auto.resolve(true), LoginMethod::Browser);
        assert_eq!(LoginMethod::Auto.resolve(false), LoginMethod::Device);
        assert_eq!(
            LoginMethod::TokenFlow.resolve(false),
            LoginMethod::TokenFlow
        );
    }
}
