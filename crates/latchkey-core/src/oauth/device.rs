//! The device authorization grant (RFC 8628): a CLI with no browser gets a user code, the person
//! types it on `/device` in any browser and approves; the CLI's polls then receive tokens once.

use std::time::Duration;

use latchkey_proto::{
    DeviceCode, PairingCode, SecretHash,
    oauth::{DeviceAuthorizationResponse, OAuthErrorCode, TokenResponse},
};
use rand::rngs::OsRng;
use thiserror::Error;
use time::OffsetDateTime;

use super::{OAuthError, SCOPES, token::TokenRequest};
use crate::{
    Service,
    console::{LoginMethod, reported_device_name},
    new_id,
    store::{DeviceCodeRecord, DeviceCodeStatus, LoginStart, OAuthClientRecord, StoreError, User},
    throttle::{self, Throttled},
};

const DEVICE_CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// The least time between two polls; polling faster earns `slow_down`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DeviceEntryError {
    #[error("that is not a code we issued, or it has expired; check the code your terminal shows")]
    UnknownCode,
    #[error("this code was already used")]
    AlreadyDecided,
    #[error("too many codes tried; wait a little and try again")]
    Throttled(Throttled),
    #[error("verify your email address before approving a device")]
    EmailNotVerified,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the device page shows about a code before the person decides.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub user_code: String,
    pub client_name: String,
    pub scope: String,
}

/// What a poll finds (pure, so every branch is unit-tested).
#[derive(Debug, PartialEq, Eq)]
enum PollStep<'a> {
    Pending,
    SlowDown,
    Expired,
    Denied,
    Approved(&'a str),
    Spent,
}

fn poll_step(record: &DeviceCodeRecord, now: OffsetDateTime) -> PollStep<'_> {
    match (record.status, record.user_id.as_deref()) {
        (DeviceCodeStatus::Delivered, _) => PollStep::Spent,
        _ if now >= record.expires_at => PollStep::Expired,
        (DeviceCodeStatus::Denied, _) => PollStep::Denied,
        (DeviceCodeStatus::Approved, Some(user_id)) => PollStep::Approved(user_id),
        _ if record
            .last_polled_at
            .is_some_and(|last| now < last + POLL_INTERVAL) =>
        {
            PollStep::SlowDown
        }
        _ => PollStep::Pending,
    }
}

impl Service {
    pub async fn start_device_authorization(
        &self,
        client: &OAuthClientRecord,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        let scope = scope.unwrap_or("openid").trim();
        if scope.split(' ').any(|s| !SCOPES.contains(&s)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "unknown scope",
            ));
        }
        let resource = self.check_resource(resource)?;
        let device_code = DeviceCode::generate(&mut OsRng);
        let user_code = PairingCode::generate(&mut OsRng);
        let now = self.now();
        self.inner
            .store
            .insert_device_code(&DeviceCodeRecord {
                device_code_hash: device_code.hash(),
                user_code: user_code.as_str().to_owned(),
                client_id: client.id.clone(),
                scope: scope.to_owned(),
                resource,
                created_at: now,
                expires_at: now + DEVICE_CODE_TTL,
                last_polled_at: None,
                status: DeviceCodeStatus::Pending,
                user_id: None,
                family_id: new_id("rf"),
            })
            .await?;
        let verification_uri = format!("{}/device", self.inner.policy.public_url);
        Ok(DeviceAuthorizationResponse {
            verification_uri_complete: format!(
                "{verification_uri}?user_code={}",
                user_code.as_str()
            ),
            verification_uri,
            device_code: device_code.expose_secret().to_owned(),
            user_code: user_code.as_str().to_owned(),
            expires_in: DEVICE_CODE_TTL.as_secs(),
            interval: POLL_INTERVAL.as_secs(),
        })
    }

    /// Looks up a code a signed-in person typed (throttled per account).
    pub async fn device_entry(
        &self,
        user: &User,
        typed: &str,
    ) -> Result<DeviceEntry, DeviceEntryError> {
        self.throttle(
            &format!("device-entry:{}", user.id),
            throttle::CODE_ENTRY_PER_ACCOUNT,
        )
        .await?
        .map_err(DeviceEntryError::Throttled)?;
        let code = PairingCode::parse(typed).ok_or(DeviceEntryError::UnknownCode)?;
        let record = self
            .inner
            .store
            .device_code_by_user_code(code.as_str())
            .await?
            .filter(|r| self.now() < r.expires_at)
            .ok_or(DeviceEntryError::UnknownCode)?;
        if record.status != DeviceCodeStatus::Pending {
            return Err(DeviceEntryError::AlreadyDecided);
        }
        let client_name = match self.client(&record.client_id).await {
            Ok(Some(client)) => client.name,
            Ok(None) | Err(super::ClientLookupError::Metadata(_)) => record.client_id.clone(),
            Err(super::ClientLookupError::Store(e)) => return Err(e.into()),
        };
        Ok(DeviceEntry {
            user_code: record.user_code,
            client_name,
            scope: record.scope,
        })
    }

    pub async fn decide_device_code(
        &self,
        user: &User,
        user_code: &str,
        approve: bool,
    ) -> Result<(), DeviceEntryError> {
        if approve && !user.email_verified {
            return Err(DeviceEntryError::EmailNotVerified);
        }
        let code = PairingCode::parse(user_code).ok_or(DeviceEntryError::UnknownCode)?;
        if self
            .inner
            .store
            .decide_device_code(code.as_str(), &user.id, approve, self.now())
            .await?
        {
            if approve {
                let detail = format!("device login {}", code.as_str());
                self.login_approved(user, &detail).await?;
            }
            Ok(())
        } else {
            Err(DeviceEntryError::AlreadyDecided)
        }
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code`.
    pub(crate) async fn device_token(
        &self,
        client: &OAuthClientRecord,
        request: &TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        let device_code = request.device_code.as_deref().ok_or_else(|| {
            OAuthError::new(OAuthErrorCode::InvalidRequest, "device_code is required")
        })?;
        let hash = SecretHash::of(device_code);
        let now = self.now();
        let record = self
            .inner
            .store
            .poll_device_code(&hash, now)
            .await?
            .filter(|r| r.client_id == client.id)
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidGrant, "unknown device_code"))?;
        let (code, description) = match poll_step(&record, now) {
            PollStep::Approved(user_id) => {
                if !self.inner.store.mark_device_code_delivered(&hash).await? {
                    return Err(OAuthError::new(
                        OAuthErrorCode::InvalidGrant,
                        "the tokens for this device_code were already delivered",
                    ));
                }
                return self
                    .issue_tokens(super::token::Issue {
                        client,
                        user_id,
                        scope: &record.scope,
                        resource: record.resource.as_deref(),
                        family_id: &record.family_id,
                        org_id: None,
                        sign_in: None,
                        start: Some(LoginStart {
                            method: LoginMethod::Device.as_str(),
                            device_name: reported_device_name(request.device_name.as_deref()),
                        }),
                    })
                    .await;
            }
            PollStep::Pending => (
                OAuthErrorCode::AuthorizationPending,
                "the person has not approved yet",
            ),
            PollStep::SlowDown => (
                OAuthErrorCode::SlowDown,
                "polling too fast: wait 5 more seconds between polls",
            ),
            PollStep::Expired => (OAuthErrorCode::ExpiredToken, "the device_code has expired"),
            PollStep::Denied => (
                OAuthErrorCode::AccessDenied,
                "the person denied the request",
            ),
            PollStep::Spent => (
                OAuthErrorCode::InvalidGrant,
                "the tokens for this device_code were already delivered",
            ),
        };
        Err(OAuthError::new(code, description))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    fn record(status: DeviceCodeStatus, last_polled: Option<OffsetDateTime>) -> DeviceCodeRecord {
        DeviceCodeRecord {
            device_code_hash: SecretHash::of("d"),
            user_code: "BCDF-GHJK".into(),
            client_id: "latchkey-cli".into(),
            scope: "openid".into(),
            resource: None,
            created_at: T0,
            expires_at: T0 + DEVICE_CODE_TTL,
            last_polled_at: last_polled,
            status,
            user_id: (status != DeviceCodeStatus::Pending).then(|| "usr_1".to_owned()),
            family_id: "rf_1".into(),
        }
    }

    #[test]
    fn a_pending_code_asks_the_client_to_keep_polling_but_not_faster_than_the_interval() {
        let now = T0 + Duration::from_secs(60);
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Pending, None), now),
            PollStep::Pending
        );
        let recent = Some(now - Duration::from_secs(2));
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Pending, recent), now),
            PollStep::SlowDown
        );
        let earlier = Some(now - POLL_INTERVAL);
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Pending, earlier), now),
            PollStep::Pending
        );
    }

    #[test]
    fn decisions_expiry_and_delivery_end_the_polling() {
        let now = T0 + Duration::from_secs(60);
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Approved, None), now),
            PollStep::Approved("usr_1")
        );
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Denied, None), now),
            PollStep::Denied
        );
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Delivered, None), now),
            PollStep::Spent
        );
        let late = T0 + DEVICE_CODE_TTL;
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Pending, None), late),
            PollStep::Expired
        );
        assert_eq!(
            poll_step(&record(DeviceCodeStatus::Approved, None), late),
            PollStep::Expired,
            "an approval not collected in time is lost"
        );
    }
}
