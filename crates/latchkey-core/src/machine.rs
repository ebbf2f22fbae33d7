//! Static machine clients (MemoryGate's `POST /auth/client`): a CI job or a service declared in
//! the config file trades its secret for a short-lived API key. Each client acts as its own
//! account, created at start, which has no password and so can never sign in on a page.

use std::time::Duration;

use latchkey_proto::{ApiKey, SecretHash};
use thiserror::Error;

use crate::{
    Service,
    account::Email,
    store::{ApiKeyRecord, StoreError, User},
};

/// Not a valid Argon2 hash: sign-in against it always fails.
const NO_PASSWORD: &str = "!machine-client";
/// The domain of machine clients' account emails (`.invalid` is reserved: no mail goes out).
const ACCOUNT_DOMAIN: &str = "machine-clients.invalid";

#[derive(Debug, Clone)]
pub struct MachineClient {
    /// Letters, digits, `-`, `_` and `.`; at most 64.
    pub id: String,
    pub secret_hash: SecretHash,
    /// How long each minted key lives.
    pub key_ttl: Duration,
}

#[derive(Debug, Error)]
pub enum MachineClientError {
    /// Unknown client and wrong secret look the same, so client ids cannot be probed.
    #[error("client authentication failed: unknown client_id or wrong client_secret")]
    InvalidCredentials,
    #[error("machine client id {0:?} may only use letters, digits, '-', '_' and '.' (at most 64)")]
    InvalidId(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a machine client id from the config file.
pub fn check_machine_client_id(id: &str) -> Result<(), MachineClientError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(MachineClientError::InvalidId(id.to_owned()))
    }
}

fn account_email(client_id: &str) -> Result<Email, MachineClientError> {
    check_machine_client_id(client_id)?;
    Email::parse(&format!("{}@{ACCOUNT_DOMAIN}", client_id.to_lowercase()))
        .map_err(|_| MachineClientError::InvalidId(client_id.to_owned()))
}

impl Service {
    /// Creates the account of every declared machine client that does not have one yet.
    pub async fn ensure_machine_clients(&self) -> Result<(), MachineClientError> {
        for client in &self.inner.policy.machine_clients {
            self.machine_account(&client.id).await?;
        }
        Ok(())
    }

    async fn machine_account(&self, client_id: &str) -> Result<User, MachineClientError> {
        let email = account_email(client_id)?;
        let store = &self.inner.store;
        if let Some(user) = store.user_by_email(email.as_str()).await? {
            return Ok(user);
        }
        let user = self.new_user(&email, None, NO_PASSWORD.to_owned(), true);
        match store.create_user(&user).await {
            Ok(()) => Ok(user),
            // Another replica created it first.
            Err(StoreError::Conflict(_)) => store
                .user_by_email(email.as_str())
                .await?
                .ok_or(MachineClientError::Store(StoreError::Corrupt("user"))),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /auth/client`: a fresh key for a declared client presenting its secret.
    pub async fn authenticate_machine_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<(ApiKey, ApiKeyRecord), MachineClientError> {
        let presented = SecretHash::of(secret);
        let client = self
            .inner
            .policy
            .machine_clients
            .iter()
            .find(|c| c.id == client_id && c.secret_hash.matches(&presented))
            .ok_or(MachineClientError::InvalidCredentials)?;
        let user = self.machine_account(&client.id).await?;
        let expires_at = self.now() + client.key_ttl;
        let (key, record) = self.new_api_key(
            &user,
            format!("machine client {}", client.id),
            None,
            Some(expires_at),
        );
        self.inner.store.insert_api_key(&record).await?;
        Ok((key, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_client_ids_are_plain_names() {
        for ok in ["ci-bot", "svc.indexer", "A_1"] {
            assert!(check_machine_client_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a@b", "ci/bot", &"x".repeat(65)] {
            assert!(check_machine_client_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            account_email("CI-Bot").map(|e| e.as_str().to_owned()).ok(),
            Some("ci-bot@machine-clients.invalid".to_owned())
        );
    }
}
