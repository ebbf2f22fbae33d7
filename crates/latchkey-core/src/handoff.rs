//! The mgrep hand-off: a signed-in person sends a fresh API key straight to the CLI waiting on
//! a loopback `redirect_uri`. Only loopback URIs are accepted, so the key can only ever reach a
//! program on the person's own machine.

use latchkey_proto::{ApiKey, redirect_uri};
use thiserror::Error;
use url::Url;

use crate::{
    Service,
    api_key::ApiKeyError,
    store::{ApiKeyRecord, User},
};

const MAX_STATE: usize = 512;
const MAX_STORE: usize = 100;

/// The query of `/cli/auth`, as received.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct HandoffRequest {
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub store: Option<String>,
    /// The env var the CLI reads its key from, for the copyable `export` line.
    pub env: Option<String>,
}

/// A request that passed every check.
#[derive(Clone, Debug)]
pub struct ValidHandoff {
    pub redirect_uri: Url,
    pub state: String,
    pub store: Option<String>,
    pub env_var: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandoffError {
    #[error("The request has no redirect_uri: start again from your terminal.")]
    MissingRedirect,
    #[error("The redirect_uri {0} is refused: {1}.")]
    Redirect(String, redirect_uri::RedirectUriError),
    #[error(
        "The request has no state (or one longer than 512 characters): start again from your terminal."
    )]
    State,
    #[error("The store name must be at most 100 printable characters.")]
    Store,
    #[error("The env name must be an environment variable name such as LATCHKEY_API_KEY.")]
    EnvVar,
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl HandoffRequest {
    pub fn check(&self) -> Result<ValidHandoff, HandoffError> {
        let raw = self
            .redirect_uri
            .as_deref()
            .ok_or(HandoffError::MissingRedirect)?;
        // A public client's rule: loopback only, no userinfo, no fragment.
        let redirect_uri = redirect_uri::check_registration(raw, true)
            .map_err(|e| HandoffError::Redirect(raw.chars().take(200).collect(), e))?;
        let state = self
            .state
            .clone()
            .filter(|s| !s.is_empty() && s.len() <= MAX_STATE && printable(s))
            .ok_or(HandoffError::State)?;
        let store = match self.store.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) if s.chars().count() <= MAX_STORE && printable(s) => Some(s.to_owned()),
            Some(_) => return Err(HandoffError::Store),
        };
        let env_var = match self.env.as_deref() {
            None => "LATCHKEY_API_KEY".to_owned(),
            Some(e)
                if !e.is_empty()
                    && e.len() <= 64
                    && !e.starts_with(|c: char| c.is_ascii_digit())
                    && e.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
            {
                e.to_owned()
            }
            Some(_) => return Err(HandoffError::EnvVar),
        };
        Ok(ValidHandoff {
            redirect_uri,
            state,
            store,
            env_var,
        })
    }
}

impl Service {
    /// Mints the key the hand-off page sends to the CLI.
    pub async fn mint_handoff_key(
        &self,
        user: &User,
        handoff: &ValidHandoff,
    ) -> Result<(ApiKey, ApiKeyRecord), ApiKeyError> {
        let name = match &handoff.store {
            Some(store) => format!(
                "CLI hand-off ({})",
                store.chars().take(60).collect::<String>()
            ),
            None => "CLI hand-off".to_owned(),
        };
        let (key, mut record) = self.new_api_key(user, name, None, None);
        record.origin = Some(crate::console::LoginMethod::Handoff.as_str().to_owned());
        self.inner.store.insert_api_key(&record).await?;
        Ok((key, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(redirect: &str) -> HandoffRequest {
        HandoffRequest {
            redirect_uri: Some(redirect.into()),
            state: Some("s1".into()),
            store: Some("my-store".into()),
            env: None,
        }
    }

    #[test]
    fn only_loopback_redirects_are_accepted() {
        for ok in [
            "http://127.0.0.1:5123/callback",
            "http://localhost:9/callback",
            "http://[::1]:80/cb",
        ] {
            assert!(request(ok).check().is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://user@127.0.0.1:5/callback",
            "http://127.0.0.1:5/callback#x",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(request(bad).check(), Err(HandoffError::Redirect(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn state_is_required_and_names_are_bounded() {
        let mut r = request("http://127.0.0.1:1/callback");
        r.state = None;
        assert_eq!(r.check().err(), Some(HandoffError::State));
        r.state = Some("x".repeat(513));
        assert_eq!(r.check().err(), Some(HandoffError::State));
        let mut r = request("http://127.0.0.1:1/callback");
        r.store = Some("a\nb".into());
        assert_eq!(r.check().err(), Some(HandoffError::Store));
        r.store = None;
        r.env = Some("ACME_API_KEY".into());
        assert_eq!(
            r.check().map(|v| v.env_var).ok(),
            Some("ACME_API_KEY".into())
        );
        r.env = Some("x; rm -rf /".into());
        assert_eq!(r.check().err(), Some(HandoffError::EnvVar));
    }
}
