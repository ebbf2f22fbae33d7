//! The token flow (Modal/Memori): a CLI creates a flow, a signed-in person approves it in the
//! browser, and the CLI's long-poll wait receives a new API key.
//!
//! States: pending → approved (key sealed to the wait secret) → delivered (re-deliverable for
//! the redelivery window, then deleted); pending → denied; pending → expired. An unknown flow and
//! a wrong wait secret look the same to the caller, so flow ids cannot be probed.

use std::time::Duration;

use latchkey_proto::{
    LocalPath, PairingCode, WaitSecret,
    wire::{TokenFlowCreateRequest, TokenFlowWaitResponse},
};
use rand::rngs::OsRng;
use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    GaugeHold, Service, Stats,
    account::percent_encode,
    new_id, seal,
    store::{FlowApproval, FlowStatus, StoreError, TokenFlowRecord, User},
};

/// What the name of a key a token flow hands over starts with; the client's name follows
/// (the console lists such keys by that name).
pub(crate) const LOGIN_KEY_PREFIX: &str = "CLI login: ";

/// The longest a single wait call may hold the connection.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum TokenFlowError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("no such token flow, or the wait secret does not match")]
    NotFound,
    #[error("this login request has expired; run the login command again")]
    Expired,
    #[error("this login request was denied in the browser")]
    Denied,
    #[error("this login request was already approved or denied")]
    AlreadyDecided,
    #[error("verify your email address before approving a login")]
    EmailNotVerified,
    #[error("the sealed key could not be opened")]
    Seal(#[from] seal::SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A newly created flow, as the CLI receives it.
#[derive(Debug)]
pub struct CreatedFlow {
    pub id: String,
    pub web_url: String,
    pub pairing_code: PairingCode,
    pub wait_secret: WaitSecret,
}

/// What the approval page shows about a flow.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub id: String,
    pub pairing_code: String,
    pub client_name: String,
    pub utm_source: Option<String>,
    pub next_url: Option<String>,
    pub localhost_port: Option<u16>,
    pub state: FlowViewState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowViewState {
    Pending,
    Approved,
    Denied,
    Expired,
}

/// What a wait does with the flow as stored at `now` (pure, so every branch is unit-tested).
#[derive(Debug, PartialEq, Eq)]
enum WaitStep<'a> {
    Deliver(&'a FlowApproval, &'a [u8]),
    KeepWaiting { until: OffsetDateTime },
    Fail(WaitFailure),
}

#[derive(Debug, PartialEq, Eq)]
enum WaitFailure {
    Denied,
    Expired,
    /// Delivered, and the redelivery window has passed: the flow is deleted.
    Spent,
}

fn wait_step(flow: &TokenFlowRecord, now: OffsetDateTime, redelivery: Duration) -> WaitStep<'_> {
    match &flow.status {
        FlowStatus::Pending if now >= flow.expires_at => WaitStep::Fail(WaitFailure::Expired),
        FlowStatus::Pending => WaitStep::KeepWaiting {
            until: flow.expires_at,
        },
        FlowStatus::Denied => WaitStep::Fail(WaitFailure::Denied),
        FlowStatus::Approved(approval) => match (&approval.sealed_key, approval.delivered_at) {
            (Some(sealed), None) => WaitStep::Deliver(approval, sealed),
            (Some(sealed), Some(at)) if now < at + redelivery => {
                WaitStep::Deliver(approval, sealed)
            }
            _ => WaitStep::Fail(WaitFailure::Spent),
        },
    }
}

fn check_text(
    value: Option<String>,
    max: usize,
    what: &'static str,
) -> Result<Option<String>, TokenFlowError> {
    match value {
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(TokenFlowError::InvalidRequest(what))
        }
        other => Ok(other.filter(|v| !v.is_empty())),
    }
}

/// `next_url` must be a path on this service: anything else would make the flow an open redirect.
/// It is kept in its canonical form, which is what the browser will be sent to.
fn check_next_url(value: Option<String>) -> Result<Option<String>, TokenFlowError> {
    let value = check_text(
        value,
        512,
        "a next_url must be at most 512 characters, without control characters (tabs, newlines)",
    )?;
    value
        .map(|v| {
            LocalPath::parse(&v)
                .map(|path| path.as_str().to_owned())
                .ok_or(TokenFlowError::InvalidRequest(
                    "next_url must be a path on this server, starting with a single /",
                ))
        })
        .transpose()
}

impl Service {
    pub async fn create_token_flow(
        &self,
        request: TokenFlowCreateRequest,
        user_agent: Option<&str>,
    ) -> Result<CreatedFlow, TokenFlowError> {
        let utm_source = check_text(
            request.utm_source,
            64,
            "a utm_source must be at most 64 characters, without control characters",
        )?;
        let next_url = check_next_url(request.next_url)?;
        let client_name = check_text(
            request.client_name,
            100,
            "a client_name must be at most 100 characters, without control characters",
        )?
        .or_else(|| user_agent.map(|ua| ua.chars().filter(|c| !c.is_control()).take(100).collect()))
        .unwrap_or_else(|| "a command-line client".to_owned());
        if request.localhost_port == Some(0) {
            return Err(TokenFlowError::InvalidRequest(
                "localhost_port must be between 1 and 65535",
            ));
        }

        let id = new_id("tf");
        let wait_secret = WaitSecret::generate(&mut OsRng);
        let pairing_code = PairingCode::generate(&mut OsRng);
        let now = self.now();
        let record = TokenFlowRecord {
            seal_public_key: seal::seal_public_key(&wait_secret, &id),
            wait_secret_hash: wait_secret.hash(),
            id: id.clone(),
            pairing_code: pairing_code.as_str().to_owned(),
            client_name,
            utm_source,
            next_url,
            localhost_port: request.localhost_port,
            created_at: now,
            expires_at: now + self.inner.policy.token_flow_ttl,
            status: FlowStatus::Pending,
        };
        self.inner.store.insert_token_flow(&record).await?;
        Stats::bump(&self.inner.stats.token_flows_created);
        let web_url = format!(
            "{}/login/cli?token_flow_id={}&code={}",
            self.inner.policy.public_url,
            id,
            percent_encode(pairing_code.as_str())
        );
        Ok(CreatedFlow {
            id,
            web_url,
            pairing_code,
            wait_secret,
        })
    }

    pub async fn token_flow_view(&self, id: &str) -> Result<FlowView, TokenFlowError> {
        let flow = self
            .inner
            .store
            .token_flow(id)
            .await?
            .ok_or(TokenFlowError::NotFound)?;
        let state = match &flow.status {
            FlowStatus::Pending if self.now() >= flow.expires_at => FlowViewState::Expired,
            FlowStatus::Pending => FlowViewState::Pending,
            FlowStatus::Denied => FlowViewState::Denied,
            FlowStatus::Approved(_) => FlowViewState::Approved,
        };
        Ok(FlowView {
            id: flow.id,
            pairing_code: flow.pairing_code,
            client_name: flow.client_name,
            utm_source: flow.utm_source,
            next_url: flow.next_url,
            localhost_port: flow.localhost_port,
            state,
        })
    }

    /// Mints a key for `user`, seals it to the flow's wait secret and wakes the waiting CLI.
    pub async fn approve_token_flow(
        &self,
        flow_id: &str,
        user: &User,
    ) -> Result<(), TokenFlowError> {
        if !user.email_verified {
            return Err(TokenFlowError::EmailNotVerified);
        }
        let flow = self
            .inner
            .store
            .token_flow(flow_id)
            .await?
            .ok_or(TokenFlowError::NotFound)?;
        let now = self.now();
        match flow.status {
            FlowStatus::Pending if now >= flow.expires_at => return Err(TokenFlowError::Expired),
            FlowStatus::Pending => {}
            _ => return Err(TokenFlowError::AlreadyDecided),
        }
        let (key, mut record) = self.new_api_key(
            user,
            format!("{LOGIN_KEY_PREFIX}{}", flow.client_name),
            None,
            None,
        );
        record.origin = Some(crate::console::LoginMethod::TokenFlow.as_str().to_owned());
        let sealed = seal::seal(
            &flow.seal_public_key,
            key.expose_secret().as_bytes(),
            &mut OsRng,
        )?;
        let approval = FlowApproval {
            user_id: user.id.clone(),
            key_id: record.id.clone(),
            sealed_key: Some(sealed),
            approved_at: now,
            delivered_at: None,
        };
        if !self
            .inner
            .store
            .approve_token_flow(flow_id, &approval, &record, now)
            .await?
        {
            return Err(TokenFlowError::AlreadyDecided);
        }
        Stats::bump(&self.inner.stats.token_flows_approved);
        self.inner.wake.wake(flow_id);
        let detail = format!("{} (token flow), key {}", record.name, record.key_prefix);
        self.login_approved(user, &detail).await?;
        Ok(())
    }

    pub async fn deny_token_flow(&self, flow_id: &str) -> Result<(), TokenFlowError> {
        let flow = self
            .inner
            .store
            .token_flow(flow_id)
            .await?
            .ok_or(TokenFlowError::NotFound)?;
        if !matches!(flow.status, FlowStatus::Pending) {
            return Err(TokenFlowError::AlreadyDecided);
        }
        if !self
            .inner
            .store
            .deny_token_flow(flow_id, self.now())
            .await?
        {
            return Err(TokenFlowError::Expired);
        }
        self.inner.wake.wake(flow_id);
        Ok(())
    }

    /// Long-polls for at most `timeout`: `{timeout: true}` if the flow is still pending then.
    pub async fn wait_token_flow(
        &self,
        flow_id: &str,
        wait_secret: &WaitSecret,
        timeout: Duration,
    ) -> Result<TokenFlowWaitResponse, TokenFlowError> {
        let _open = GaugeHold::enter(&self.inner.stats.token_flow_waits_open);
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let presented = wait_secret.hash();
        loop {
            let subscription = self.inner.wake.subscribe(flow_id);
            let woken = subscription.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            let flow = self.inner.store.token_flow(flow_id).await?;
            let flow = flow
                .filter(|f| f.wait_secret_hash.matches(&presented))
                .ok_or(TokenFlowError::NotFound)?;
            let now = self.now();
            match wait_step(&flow, now, self.inner.policy.redelivery_window) {
                WaitStep::Deliver(approval, sealed) => {
                    return self
                        .deliver(&flow, approval, sealed, wait_secret, now)
                        .await;
                }
                WaitStep::Fail(WaitFailure::Denied) => return Err(TokenFlowError::Denied),
                WaitStep::Fail(WaitFailure::Expired) => return Err(TokenFlowError::Expired),
                WaitStep::Fail(WaitFailure::Spent) => {
                    self.inner.store.delete_token_flow(flow_id).await?;
                    return Err(TokenFlowError::NotFound);
                }
                WaitStep::KeepWaiting { until } => {
                    let to_expiry = (until - now).try_into().unwrap_or(Duration::ZERO);
                    let recheck = to_expiry.min(self.inner.policy.wait_recheck);
                    let wake_by = deadline.min(tokio::time::Instant::now() + recheck);
                    // A stopping process answers instead of holding the wait: the CLI asks
                    // again, of another replica or of this one restarted.
                    if tokio::time::Instant::now() >= deadline || self.inner.wake.is_closing() {
                        return Ok(timed_out());
                    }
                    // Woken by a decision, at the re-check, at expiry or at the deadline: look
                    // again.
                    let _ = tokio::time::timeout_at(wake_by, woken).await;
                }
            }
        }
    }

    async fn deliver(
        &self,
        flow: &TokenFlowRecord,
        approval: &FlowApproval,
        sealed: &[u8],
        wait_secret: &WaitSecret,
        now: OffsetDateTime,
    ) -> Result<TokenFlowWaitResponse, TokenFlowError> {
        let key = seal::open(wait_secret, &flow.id, sealed)?;
        let key = String::from_utf8(key).map_err(|_| StoreError::Corrupt("token flow"))?;
        let user = self
            .inner
            .store
            .user_by_id(&approval.user_id)
            .await?
            .ok_or(StoreError::Corrupt("token flow"))?;
        if approval.delivered_at.is_none() {
            self.inner
                .store
                .mark_token_flow_delivered(&flow.id, now)
                .await?;
            Stats::bump(&self.inner.stats.token_flows_delivered);
        }
        Ok(TokenFlowWaitResponse {
            timeout: false,
            api_key: Some(key.clone()),
            token_secret: Some(key),
            email: Some(user.email),
            user_id: Some(user.id),
            org: Some(user.org.slug),
        })
    }
}

fn timed_out() -> TokenFlowWaitResponse {
    TokenFlowWaitResponse {
        timeout: true,
        api_key: None,
        token_secret: None,
        email: None,
        user_id: None,
        org: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_proto::SecretHash;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
    const WINDOW: Duration = Duration::from_secs(60);

    fn flow(status: FlowStatus) -> TokenFlowRecord {
        TokenFlowRecord {
            id: "tf_1".into(),
            wait_secret_hash: SecretHash::of("s"),
            seal_public_key: [0; 32],
            pairing_code: "BCDF-GHJK".into(),
            client_name: "test".into(),
            utm_source: None,
            next_url: None,
            localhost_port: None,
            created_at: T0,
            expires_at: T0 + Duration::from_secs(600),
            status,
        }
    }

    fn approved(delivered_at: Option<OffsetDateTime>, sealed: Option<Vec<u8>>) -> FlowStatus {
        FlowStatus::Approved(FlowApproval {
            user_id: "usr_1".into(),
            key_id: "key_1".into(),
            sealed_key: sealed,
            approved_at: T0,
            delivered_at,
        })
    }

    #[test]
    fn pending_flows_wait_until_they_expire() {
        let f = flow(FlowStatus::Pending);
        assert_eq!(
            wait_step(&f, T0, WINDOW),
            WaitStep::KeepWaiting {
                until: f.expires_at
            }
        );
        assert_eq!(
            wait_step(&f, f.expires_at, WINDOW),
            WaitStep::Fail(WaitFailure::Expired)
        );
    }

    #[test]
    fn denied_flows_fail() {
        assert_eq!(
            wait_step(&flow(FlowStatus::Denied), T0, WINDOW),
            WaitStep::Fail(WaitFailure::Denied)
        );
    }

    #[test]
    fn approved_flows_deliver_again_only_within_the_redelivery_window() {
        let first = flow(approved(None, Some(vec![1])));
        assert!(matches!(
            wait_step(&first, T0, WINDOW),
            WaitStep::Deliver(..)
        ));

        let delivered = flow(approved(Some(T0), Some(vec![1])));
        assert!(matches!(
            wait_step(&delivered, T0 + Duration::from_secs(59), WINDOW),
            WaitStep::Deliver(..)
        ));
        assert_eq!(
            wait_step(&delivered, T0 + WINDOW, WINDOW),
            WaitStep::Fail(WaitFailure::Spent)
        );
        let purged = flow(approved(Some(T0), None));
        assert_eq!(
            wait_step(&purged, T0, WINDOW),
            WaitStep::Fail(WaitFailure::Spent)
        );
    }

    #[test]
    fn next_url_must_stay_on_this_server() {
        assert!(check_next_url(Some("/home".into())).is_ok());
        assert!(check_next_url(None).is_ok());
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/..//evil.example",
            "/\t/evil.example",
            "home",
        ] {
            assert!(check_next_url(Some(bad.into())).is_err(), "{bad} accepted");
        }
    }
}
