//! OAuth logins: the browser (authorization code + PKCE to the loopback `/callback`, RFC 8252,
//! which also takes the mgrep direct hand-off), the device grant (RFC 8628), refreshing tokens
//! before they expire, and revoking them at logout.

use std::time::Duration;

use crate::{
    Client, ClientError, Credential,
    login::{LOGIN_DEADLINE, LoginEvent, LoginOptions, LoginOutcome},
    loopback::{CallbackResult, LoopbackServer},
    storage::{Secret, TokenSet},
};
use latchkey_proto::{
    PairingCode,
    oauth::{DEVICE_CODE_GRANT, TokenResponse},
    pkce::{CodeChallenge, generate_verifier},
};
use rand::rngs::OsRng;

/// Access tokens this close to expiry are refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;
/// What a CLI login asks for: who the person is, and a refresh token.
const CLI_SCOPE: &str = "openid offline_access";

/// The name this machine goes by, sent with a login so the account console can show where it
/// was made ("build-box"); the system's kind ("linux") when it will not say.
pub(crate) fn device_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| std::env::consts::OS.to_owned())
}

/// Seconds since the Unix epoch, as stored expiries count them.
#[allow(
    clippy::disallowed_methods,
    reason = "the server takes time from its Clock; a CLI has only the wall clock"
)]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn saturating_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl TokenSet {
    pub(crate) fn from_response(response: TokenResponse, now: i64) -> Self {
        Self {
            expires_at: now.saturating_add(saturating_i64(response.expires_in)),
            refresh_expires_at: response
                .refresh_token_expires_in
                .map(|s| now.saturating_add(saturating_i64(s))),
            access_token: response.access_token,
            refresh_token: response.refresh_token,
        }
    }
}

/// Whether a stored secret must be refreshed before use at `now`.
pub fn needs_refresh(secret: &Secret, now: i64) -> bool {
    secret
        .expires_at()
        .is_some_and(|at| at - now < REFRESH_MARGIN_SECS)
}

/// The URL the browser opens, and what the login then expects back.
struct BrowserRequest {
    url: String,
    pairing_code: Option<PairingCode>,
    verifier: Option<String>,
}

impl Client {
    fn authorize_request(
        &self,
        redirect_uri: &str,
        state: &str,
    ) -> Result<BrowserRequest, ClientError> {
        let settings = &self.settings;
        if let Some(auth_url) = &settings.auth_url {
            // The mgrep hand-off page: the key comes back directly, no code to exchange.
            let mut url = auth_url.clone();
            url.query_pairs_mut()
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state)
                .append_pair("store", &settings.app.name)
                .append_pair("env", &settings.app.api_key_env());
            return Ok(BrowserRequest {
                url: url.into(),
                pairing_code: None,
                verifier: None,
            });
        }
        let verifier = generate_verifier(&mut OsRng);
        let pairing_code = PairingCode::generate(&mut OsRng);
        let mut url = settings
            .issuer
            .join("/oauth/authorize")
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", CLI_SCOPE)
            .append_pair("code_challenge", CodeChallenge::s256(&verifier).as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("pairing_code", pairing_code.as_str());
        Ok(BrowserRequest {
            url: url.into(),
            pairing_code: Some(pairing_code),
            verifier: Some(verifier),
        })
    }

    /// `--method browser`: sends the browser to the consent page (or the `--auth-url` hand-off
    /// page) and waits for the loopback callback.
    pub async fn login_browser(
        &self,
        options: LoginOptions,
        open_browser: &dyn Fn(&str) -> bool,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        let settings = &self.settings;
        let loopback = LoopbackServer::start(settings.login_port, settings.issuer_id()).await?;
        let state = latchkey_proto::base62::random(&mut OsRng, 32);
        let callback = loopback.expect_callback(&state);
        let redirect_uri = loopback.callback_uri();
        let request = self.authorize_request(&redirect_uri, &state)?;
        let browser_opened = options.open_browser && open_browser(&request.url);
        on_event(LoginEvent::Started {
            url: &request.url,
            code: request.pairing_code.as_ref().map(PairingCode::as_str),
            browser_opened,
        });
        let deadline = tokio::time::Instant::now() + LOGIN_DEADLINE;
        let result = tokio::time::timeout_at(deadline, callback)
            .await
            .map_err(|_| ClientError::LoginTimedOut {
                minutes: LOGIN_DEADLINE.as_secs() / 60,
            })?
            .map_err(|_| ClientError::Internal("the loopback receiver stopped".into()))?;
        drop(loopback);
        on_event(LoginEvent::Approved);
        let secret = match result {
            CallbackResult::Code(code) => {
                let verifier = request.verifier.ok_or_else(|| {
                    ClientError::Config(
                        "the --auth-url page sent an OAuth code instead of a key".into(),
                    )
                })?;
                let response = self
                    .api
                    .token(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", &redirect_uri),
                        ("client_id", &settings.client_id),
                        ("code_verifier", &verifier),
                        ("device_name", &device_name()),
                    ])
                    .await?;
                Secret::Oauth(TokenSet::from_response(response, unix_now()))
            }
            CallbackResult::ApiKey { api_key, .. } => {
                latchkey_proto::ApiKey::parse(&api_key, &settings.app.key_prefix).map_err(|e| {
                    ClientError::Config(format!("the browser handed over an invalid key: {e}"))
                })?;
                Secret::ApiKey { api_key }
            }
            CallbackResult::Error { error, .. } if error == "access_denied" => {
                return Err(ClientError::FlowDenied);
            }
            CallbackResult::Error { error, description } => {
                return Err(ClientError::Authorization { error, description });
            }
        };
        self.finish_login(secret, deadline).await
    }

    /// Starts a device authorization: what to show, and the device code to poll with.
    pub(crate) async fn start_device(
        &self,
    ) -> Result<latchkey_proto::oauth::DeviceAuthorizationResponse, ClientError> {
        self.api
            .device_authorization(&self.settings.client_id, CLI_SCOPE)
            .await
    }

    /// Polls the token endpoint at the server's pace until the person decides.
    /// Polls for the device login's tokens every `interval`, the first time after
    /// `first_wait` (nothing for a login resumed later, which may be approved already).
    pub(crate) async fn poll_device(
        &self,
        device_code: &str,
        mut interval: Duration,
        first_wait: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<Secret, ClientError> {
        let mut wait = first_wait;
        loop {
            tokio::time::sleep(wait).await;
            wait = interval;
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::FlowExpired);
            }
            let polled = self
                .api
                .token(&[
                    ("grant_type", DEVICE_CODE_GRANT),
                    ("device_code", device_code),
                    ("client_id", &self.settings.client_id),
                    ("device_name", &device_name()),
                ])
                .await;
            match polled {
                Ok(response) => {
                    return Ok(Secret::Oauth(TokenSet::from_response(response, unix_now())));
                }
                Err(ClientError::OAuth { code, .. }) => match code.as_str() {
                    "authorization_pending" => {}
                    // RFC 8628 §3.5: every slow_down adds five seconds, for good.
                    "slow_down" => {
                        interval += Duration::from_secs(5);
                        wait = interval;
                    }
                    "expired_token" => return Err(ClientError::FlowExpired),
                    "access_denied" => return Err(ClientError::FlowDenied),
                    _ => {
                        return Err(ClientError::OAuth {
                            code,
                            description: "the device login failed".into(),
                        });
                    }
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// `--method device`: prints a code to enter on any device; never opens a browser.
    pub async fn login_device(
        &self,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        let auth = self.start_device().await?;
        on_event(LoginEvent::Started {
            url: &auth.verification_uri_complete,
            code: Some(&auth.user_code),
            browser_opened: false,
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(auth.expires_in);
        let secret = self
            .poll_device(
                &auth.device_code,
                Duration::from_secs(auth.interval),
                Duration::from_secs(auth.interval),
                deadline,
            )
            .await?;
        on_event(LoginEvent::Approved);
        self.finish_login(secret, deadline + Duration::from_secs(30))
            .await
    }

    /// The credential in force, with its access token refreshed first when it expires within
    /// a minute. Concurrent callers (several processes) refresh once: the second waits on the
    /// lock, then finds the token already fresh.
    pub async fn fresh_credential(&self) -> Result<Option<Credential>, ClientError> {
        let Some(credential) = self.credential()? else {
            return Ok(None);
        };
        if credential
            .account
            .as_ref()
            .is_some_and(|a| a.refused_at.is_some())
        {
            return Err(match credential.secret {
                Secret::ApiKey { .. } => ClientError::KeyRejected,
                Secret::Oauth(_) => ClientError::SessionExpired,
            });
        }
        if !needs_refresh(&credential.secret, unix_now()) {
            return Ok(Some(credential));
        }
        let storage = self.storage.clone();
        let _lock = tokio::task::spawn_blocking(move || storage.lock())
            .await
            .map_err(|e| ClientError::Internal(e.to_string()))??;
        let Some(credential) = self.storage.active(&self.settings.issuer_id())? else {
            return Ok(None);
        };
        let (Secret::Oauth(tokens), Some(account)) = (&credential.secret, &credential.account)
        else {
            return Ok(Some(credential));
        };
        if !needs_refresh(&credential.secret, unix_now()) {
            return Ok(Some(credential));
        }
        let refresh_token = tokens
            .refresh_token
            .as_deref()
            .ok_or(ClientError::SessionExpired)?;
        let response = self
            .api
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", &self.settings.client_id),
            ])
            .await
            .map_err(|e| match e {
                ClientError::OAuth { code, .. } if code == "invalid_grant" => {
                    ClientError::SessionExpired
                }
                other => other,
            })?;
        let secret = Secret::Oauth(TokenSet::from_response(response, unix_now()));
        self.storage.replace_secret(account, &secret)?;
        Ok(Some(Credential {
            secret,
            ..credential
        }))
    }

    /// Revokes what a stored secret can do at the issuer: the refresh token's whole family for
    /// OAuth logins, the key itself for API keys.
    pub(crate) async fn revoke_secret(&self, secret: &Secret) -> Result<(), ClientError> {
        match secret {
            Secret::ApiKey { api_key } => self.api.revoke_own_key(api_key).await,
            Secret::Oauth(tokens) => match &tokens.refresh_token {
                Some(refresh) => {
                    self.api
                        .revoke_token(&self.settings.client_id, refresh)
                        .await
                }
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_within_a_minute_of_expiry() {
        let tokens = |expires_at| {
            Secret::Oauth(TokenSet {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                expires_at,
                refresh_expires_at: None,
            })
        };
        assert!(!needs_refresh(&tokens(1_000), 900));
        assert!(needs_refresh(&tokens(1_000), 941));
        assert!(needs_refresh(&tokens(1_000), 2_000));
        let key = Secret::ApiKey {
            api_key: "lk_x".into(),
        };
        assert!(!needs_refresh(&key, i64::MAX));
    }

    #[test]
    fn expiries_are_computed_from_the_token_response() {
        let set = TokenSet::from_response(
            TokenResponse {
                access_token: "a".into(),
                token_type: "Bearer".into(),
                expires_in: 3600,
                refresh_token: Some("r".into()),
                refresh_token_expires_in: Some(86_400),
                scope: CLI_SCOPE.into(),
                id_token: None,
                issued_token_type: None,
            },
            1_000,
        );
        assert_eq!(set.expires_at, 4_600);
        assert_eq!(set.refresh_expires_at, Some(87_400));
    }
}
