//! Logging in, by any of the methods of DESIGN.md section 3, and what every method shares: the
//! events shown to the person, and checking the credential with `/v1/me` before storing it.

use std::time::Duration;

use latchkey_proto::wire::{CredentialInfo, MeResponse};

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

/// Why no browser can be opened on this machine, which makes `auto` use the device code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBrowser {
    Ssh,
    Container,
    WslWithoutBrowser,
    NoDisplay,
}

impl NoBrowser {
    pub fn describe(self) -> &'static str {
        match self {
            NoBrowser::Ssh => "this is an SSH session",
            NoBrowser::Container => "this is a container",
            NoBrowser::WslWithoutBrowser => "this is WSL with no BROWSER set",
            NoBrowser::NoDisplay => "there is no display",
        }
    }
}

/// Decides from the environment (`env` reads a variable; `in_container` is whether a container
/// marker such as `/.dockerenv` exists; `linux` whether this is Linux) whether a browser can
/// open here, and if not, why.
pub fn why_no_browser(
    env: &dyn Fn(&str) -> Option<String>,
    in_container: bool,
    linux: bool,
) -> Option<NoBrowser> {
    let has = |v: &str| env(v).is_some_and(|x| !x.is_empty());
    if has("SSH_CONNECTION") || has("SSH_TTY") || has("SSH_CLIENT") {
        Some(NoBrowser::Ssh)
    } else if in_container || has("container") {
        Some(NoBrowser::Container)
    } else if linux && has("WSL_DISTRO_NAME") && !has("BROWSER") {
        Some(NoBrowser::WslWithoutBrowser)
    } else if linux && !has("WSL_DISTRO_NAME") && !has("DISPLAY") && !has("WAYLAND_DISPLAY") {
        Some(NoBrowser::NoDisplay)
    } else {
        None
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
        // Stored under the org the credential acts for (its personal org, or the org a key was
        // made in), so one person's credentials for several orgs live side by side.
        let (_, org) = me.acting_org();
        let who = AccountName {
            issuer: &issuer,
            user_id: &me.user_id,
            email: me.name(),
            org,
            key_expires_at: match me.credential {
                CredentialInfo::ApiKey { expires_at, .. } => expires_at,
                _ => None,
            },
        };
        // A second login to the same account replaces the first: revoke the first at the
        // issuer, or it would stay alive with nothing on this machine to use or revoke it.
        let replaced = self
            .storage
            .credential_of(&who)?
            .filter(|old| old.secret != secret);
        let stored = self.storage.save(&who, &secret)?;
        if let Some(old) = replaced {
            // Best effort: the new login stands either way, and a dead credential is harmless.
            let _ = self.revoke_secret(&old.secret).await;
        }
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
                "that is not an API key for {} ({e}); copy the whole key, {}_…",
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

    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_browser_opens_only_at_a_local_desktop() {
        let desktop = [("DISPLAY", ":0")];
        assert_eq!(why_no_browser(&env(&desktop), false, true), None);
        assert_eq!(
            why_no_browser(&env(&[("WAYLAND_DISPLAY", "wayland-0")]), false, true),
            None
        );
        assert_eq!(
            why_no_browser(&env(&[]), false, false),
            None,
            "macOS, Windows"
        );
        let cases: [(Vars<'_>, bool, NoBrowser); 6] = [
            (
                &[("DISPLAY", ":0"), ("SSH_CONNECTION", "a b c d")],
                false,
                NoBrowser::Ssh,
            ),
            (
                &[("DISPLAY", ":0"), ("SSH_TTY", "/dev/pts/1")],
                false,
                NoBrowser::Ssh,
            ),
            (&[("DISPLAY", ":0")], true, NoBrowser::Container),
            (
                &[("DISPLAY", ":0"), ("container", "podman")],
                false,
                NoBrowser::Container,
            ),
            (
                &[("WSL_DISTRO_NAME", "Debian")],
                false,
                NoBrowser::WslWithoutBrowser,
            ),
            (&[], false, NoBrowser::NoDisplay),
        ];
        for (vars, in_container, expected) in cases {
            assert_eq!(
                why_no_browser(&env(vars), in_container, true),
                Some(expected),
                "{vars:?}"
            );
        }
        let wsl_with_browser = [("WSL_DISTRO_NAME", "Debian"), ("BROWSER", "wslview")];
        assert_eq!(why_no_browser(&env(&wsl_with_browser), false, true), None);
    }

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
