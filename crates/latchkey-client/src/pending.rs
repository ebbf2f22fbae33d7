//! Logins for agents and scripts: `login --json` starts one, prints what the person must do and
//! exits; `login --complete <id>` finishes it later. Between the two, what is needed to finish
//! (the device code or the flow's wait secret) waits in a 0600 file under the config dir.

use std::{path::PathBuf, time::Duration};

use latchkey_proto::WaitSecret;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::{
    Client, ClientError, LoginEvent, LoginMethod, LoginOptions, LoginOutcome,
    oauth_login::unix_now,
    storage::{Secret, write_private},
};

/// How long the server keeps a token flow (its create response does not say).
const TOKEN_FLOW_LIFETIME_SECS: u64 = 600;

/// What `login --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StartedLogin {
    pub id: String,
    pub method: &'static str,
    pub url: String,
    pub code: String,
    pub expires_in: u64,
    pub next_step: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
enum PendingLogin {
    Device {
        device_code: String,
        interval: u64,
        expires_at: i64,
    },
    TokenFlow {
        token_flow_id: String,
        wait_secret: WaitSecret,
        expires_at: i64,
    },
}

impl Client {
    fn pending_path(&self, id: &str) -> Result<PathBuf, ClientError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ClientError::Config(format!(
                "{id:?} is not a login id; use the id `login --json` printed"
            )));
        }
        Ok(self
            .settings
            .config_dir
            .join("pending")
            .join(format!("{id}.json")))
    }

    /// Starts a device or token-flow login without waiting for it. `auto` means device: a
    /// browser callback cannot outlive this process.
    pub async fn start_login(
        &self,
        method: LoginMethod,
        options: &LoginOptions,
        command: &str,
    ) -> Result<StartedLogin, ClientError> {
        let id = latchkey_proto::base62::random(&mut OsRng, 16);
        let now = unix_now();
        let (started, pending) = match method {
            LoginMethod::Auto | LoginMethod::Device => {
                let auth = self.start_device().await?;
                let expires_at = now + i64::try_from(auth.expires_in).unwrap_or(600);
                (
                    (
                        LoginMethod::Device,
                        auth.verification_uri_complete,
                        auth.user_code,
                        auth.expires_in,
                    ),
                    PendingLogin::Device {
                        device_code: auth.device_code,
                        interval: auth.interval,
                        expires_at,
                    },
                )
            }
            LoginMethod::TokenFlow => {
                let (flow, url) = self.create_token_flow(options, None).await?;
                (
                    (
                        LoginMethod::TokenFlow,
                        url,
                        flow.code,
                        TOKEN_FLOW_LIFETIME_SECS,
                    ),
                    PendingLogin::TokenFlow {
                        token_flow_id: flow.token_flow_id,
                        wait_secret: flow.wait_secret,
                        expires_at: now + TOKEN_FLOW_LIFETIME_SECS as i64,
                    },
                )
            }
            other => {
                return Err(ClientError::Config(format!(
                    "--json works with --method device or token-flow, not {}",
                    other.as_str()
                )));
            }
        };
        let path = self.pending_path(&id)?;
        let bytes =
            serde_json::to_vec(&pending).map_err(|e| ClientError::Internal(e.to_string()))?;
        write_private(&path, &bytes).map_err(|source| ClientError::File {
            path: path.display().to_string(),
            source,
        })?;
        let (method, url, code, expires_in) = started;
        Ok(StartedLogin {
            next_step: format!(
                "open {url}, check the code {code}, approve, then run `{command} login --complete {id}`"
            ),
            id,
            method: method.as_str(),
            url,
            code,
            expires_in,
        })
    }

    /// Finishes a login `start_login` began, waiting for the person's decision if needed.
    pub async fn complete_login(
        &self,
        id: &str,
        on_event: &mut (dyn FnMut(LoginEvent<'_>) + Send),
    ) -> Result<LoginOutcome, ClientError> {
        let path = self.pending_path(id)?;
        let bytes = std::fs::read(&path).map_err(|_| {
            ClientError::Config(format!(
                "there is no pending login {id}: it finished already, or was started on another machine"
            ))
        })?;
        let pending: PendingLogin =
            serde_json::from_slice(&bytes).map_err(|_| ClientError::CorruptFile {
                path: path.display().to_string(),
            })?;
        let until = |expires_at: i64| {
            let left = u64::try_from(expires_at - unix_now()).unwrap_or(0);
            tokio::time::Instant::now() + Duration::from_secs(left)
        };
        let result = match &pending {
            PendingLogin::Device {
                device_code,
                interval,
                expires_at,
            } => {
                self.poll_device(
                    device_code,
                    Duration::from_secs(*interval),
                    Duration::ZERO,
                    until(*expires_at),
                )
                .await
            }
            PendingLogin::TokenFlow {
                token_flow_id,
                wait_secret,
                expires_at,
            } => self
                .wait_token_flow(token_flow_id, wait_secret, until(*expires_at), on_event)
                .await
                .map(|api_key| Secret::ApiKey { api_key }),
        };
        if !matches!(&result, Err(e) if e.is_transient()) {
            let _ = std::fs::remove_file(&path);
        }
        on_event(LoginEvent::Approved);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        self.finish_login(result?, deadline).await
    }
}
