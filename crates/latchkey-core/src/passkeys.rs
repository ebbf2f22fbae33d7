//! Passkeys (WebAuthn, by `webauthn-rs`): a person registers several, names and removes them,
//! and signs in with one alone (a discoverable credential, verified by the device: both
//! factors at once) or uses one as the second factor after a password. Each ceremony's state
//! stays in the store between the options sent to the browser and its answer, and answers once.

use std::{net::IpAddr, time::Duration};

use latchkey_proto::{CeremonyToken, SecondFactorToken, SessionToken};
use rand::rngs::OsRng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::{
    Service,
    console::{AuditKind, SessionOrigin},
    new_id,
    store::{CeremonyRecord, PasskeyRecord, StoreError, User},
};

/// How long a browser has to answer a ceremony.
const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Error)]
pub enum PasskeyError {
    #[error(
        "passkeys need the service reached by a domain name (WebAuthn refuses IP addresses): \
         open it at its public URL, or at http://localhost in development"
    )]
    Unavailable,
    #[error("this passkey request has expired or was already answered; try again")]
    NoCeremony,
    #[error("the passkey was not accepted: {0}")]
    Rejected(String),
    #[error("this passkey is not registered here; sign in another way")]
    UnknownPasskey,
    #[error("a passkey's name must be 1 to 60 characters, without control characters")]
    InvalidName,
    #[error("you have no passkey {0}")]
    NotFound(String),
    #[error("{}", crate::account::DISABLED)]
    Disabled,
    #[error("this sign-in has expired or was already finished; sign in again")]
    NoChallenge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The relying party for `public_url`: its host is the RP ID. `None` when the host is an IP
/// address, which WebAuthn does not allow.
pub fn relying_party(public_url: &str, product_name: &str) -> Option<Webauthn> {
    let origin = Url::parse(public_url).ok()?;
    let host = origin.domain()?.to_owned();
    WebauthnBuilder::new(&host, &origin)
        .ok()?
        .rp_name(product_name)
        .build()
        .ok()
}

/// The WebAuthn user handle of an account: stable, and revealing nothing but itself.
pub fn user_handle(user_id: &str) -> Uuid {
    let digest = Sha256::digest(user_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// A passkey's name: trimmed, 1 to 60 characters, no control characters.
pub fn passkey_name(raw: &str) -> Result<String, PasskeyError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(PasskeyError::InvalidName);
    }
    Ok(name.to_owned())
}

/// Registration asks for a discoverable credential: one the device can offer with no name
/// typed, which signing in with a passkey alone needs.
fn require_discoverable(options: &mut Value) {
    if let Some(selection) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
    {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
}

fn rejected(e: impl std::fmt::Display) -> PasskeyError {
    PasskeyError::Rejected(e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(rejected)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt("webauthn ceremony").into())
}

impl Service {
    fn relying_party(&self) -> Result<&Webauthn, PasskeyError> {
        self.inner
            .webauthn
            .as_ref()
            .ok_or(PasskeyError::Unavailable)
    }

    /// Whether passkeys work here (the public URL has a domain name).
    pub fn passkeys_available(&self) -> bool {
        self.inner.webauthn.is_some()
    }

    /// Keeps a ceremony's state until the browser answers; the token names it.
    async fn begin_ceremony(
        &self,
        kind: &str,
        user_id: Option<&str>,
        state: String,
    ) -> Result<CeremonyToken, PasskeyError> {
        let token = CeremonyToken::generate(&mut OsRng);
        let record = CeremonyRecord {
            kind: kind.to_owned(),
            user_id: user_id.map(str::to_owned),
            state,
            expires_at: self.now() + CEREMONY_TTL,
        };
        self.inner
            .store
            .insert_ceremony(&token.hash(), &record)
            .await?;
        Ok(token)
    }

    /// The live ceremony `token` names, of `kind`, for `user_id`; taken, so it answers once.
    async fn take_ceremony(
        &self,
        token: &str,
        kind: &str,
        user_id: Option<&str>,
    ) -> Result<String, PasskeyError> {
        let token = CeremonyToken::from_presented(token.to_owned());
        let ceremony = self
            .inner
            .store
            .take_ceremony(&token.hash(), self.now())
            .await?
            .filter(|c| c.kind == kind && c.user_id.as_deref() == user_id)
            .ok_or(PasskeyError::NoCeremony)?;
        Ok(ceremony.state)
    }

    pub async fn passkeys_of(&self, user: &User) -> Result<Vec<PasskeyRecord>, StoreError> {
        self.inner.store.passkeys(&user.id).await
    }

    /// Starts adding a passkey to `user`'s account: the options for
    /// `navigator.credentials.create`, and the ceremony's token.
    pub async fn start_passkey_registration(
        &self,
        user: &User,
    ) -> Result<(CeremonyToken, Value), PasskeyError> {
        let webauthn = self.relying_party()?;
        let existing = self
            .passkeys_of(user)
            .await?
            .into_iter()
            .map(|p| p.credential_id.into())
            .collect::<Vec<_>>();
        let display = user.name.as_deref().unwrap_or(&user.email);
        let (options, state) = webauthn
            .start_passkey_registration(user_handle(&user.id), &user.email, display, Some(existing))
            .map_err(rejected)?;
        let mut options = serde_json::to_value(options).map_err(rejected)?;
        require_discoverable(&mut options);
        let token = self
            .begin_ceremony("registration", Some(&user.id), to_json(&state)?)
            .await?;
        Ok((token, options))
    }

    /// Finishes adding a passkey with the browser's answer; the owner is told by mail.
    pub async fn finish_passkey_registration(
        &self,
        user: &User,
        ceremony: &str,
        name: &str,
        credential: Value,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let name = passkey_name(name)?;
        let webauthn = self.relying_party()?;
        let state: PasskeyRegistration = from_json(
            &self
                .take_ceremony(ceremony, "registration", Some(&user.id))
                .await?,
        )?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(rejected)?;
        let passkey = webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(rejected)?;
        let record = PasskeyRecord {
            id: new_id("pk"),
            user_id: user.id.clone(),
            name,
            credential_id: passkey.cred_id().to_vec(),
            credential: to_json(&passkey)?,
            created_at: self.now(),
            last_used_at: None,
        };
        self.inner.store.insert_passkey(&record).await?;
        let detail = format!("\"{}\"", record.name);
        self.audit(AuditKind::PasskeyAdded, Some(&user.id), None, None, &detail)
            .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "A passkey named \"{}\" was added to your account on {host}: it signs in without a \
             password.\n\nIf it was not you, remove it and change your password: \
             {host}/account/security\n",
            record.name
        );
        if let Err(e) = self.mail(&user.email, "A passkey was added", text).await {
            tracing::warn!(error = %e, "the passkey notice could not be sent");
        }
        Ok(record)
    }

    pub async fn rename_passkey(
        &self,
        user: &User,
        id: &str,
        name: &str,
    ) -> Result<(), PasskeyError> {
        let name = passkey_name(name)?;
        if self.inner.store.rename_passkey(&user.id, id, &name).await? {
            Ok(())
        } else {
            Err(PasskeyError::NotFound(id.to_owned()))
        }
    }

    pub async fn remove_passkey(
        &self,
        user: &User,
        id: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), PasskeyError> {
        if !self.inner.store.delete_passkey(&user.id, id).await? {
            return Err(PasskeyError::NotFound(id.to_owned()));
        }
        let detail = format!("passkey {id}");
        self.audit(AuditKind::PasskeyRemoved, Some(&user.id), None, ip, &detail)
            .await?;
        Ok(())
    }

    /// Starts a sign-in with a passkey alone: the device offers one of its passkeys for this
    /// site, with no name typed.
    pub async fn start_passkey_sign_in(&self) -> Result<(CeremonyToken, Value), PasskeyError> {
        let (options, state) = self
            .relying_party()?
            .start_discoverable_authentication()
            .map_err(rejected)?;
        let options = serde_json::to_value(options).map_err(rejected)?;
        let token = self
            .begin_ceremony("sign_in", None, to_json(&state)?)
            .await?;
        Ok((token, options))
    }

    /// Checks a passkey's answer: the passkey must be `owned` as expected and its signature
    /// must `check` against its stored public key; the use is recorded (its signature counter,
    /// when).
    async fn verify_passkey(
        &self,
        credential: &PublicKeyCredential,
        owned: impl FnOnce(&PasskeyRecord) -> bool,
        check: impl FnOnce(&Webauthn, &Passkey) -> Result<AuthenticationResult, WebauthnError>,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let webauthn = self.relying_party()?;
        let store = &self.inner.store;
        let record = store
            .passkey_by_credential(credential.get_credential_id())
            .await?
            .filter(owned)
            .ok_or(PasskeyError::UnknownPasskey)?;
        let mut passkey: Passkey = from_json(&record.credential)?;
        let result = check(webauthn, &passkey).map_err(rejected)?;
        passkey.update_credential(&result);
        store
            .passkey_used(&record.id, &to_json(&passkey)?, self.now())
            .await?;
        Ok(record)
    }

    /// Finishes a sign-in with a passkey alone: the session.
    pub async fn finish_passkey_sign_in(
        &self,
        ceremony: &str,
        credential: Value,
        origin: &SessionOrigin,
    ) -> Result<(SessionToken, User), PasskeyError> {
        let state: DiscoverableAuthentication =
            from_json(&self.take_ceremony(ceremony, "sign_in", None).await?)?;
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(rejected)?;
        // The user handle the device gives must be the one of the passkey's account.
        let (handle, _) = self
            .relying_party()?
            .identify_discoverable_authentication(&credential)
            .map_err(rejected)?;
        let record = self
            .verify_passkey(
                &credential,
                |record| user_handle(&record.user_id) == handle,
                |webauthn, passkey| {
                    webauthn.finish_discoverable_authentication(
                        &credential,
                        state,
                        &[DiscoverableKey::from(passkey)],
                    )
                },
            )
            .await?;
        let user = self
            .inner
            .store
            .user_by_id(&record.user_id)
            .await?
            .ok_or(PasskeyError::UnknownPasskey)?;
        if user.disabled_at.is_some() {
            return Err(PasskeyError::Disabled);
        }
        let session = self.open_session(&user, origin).await?;
        Ok((session, user))
    }

    /// Starts using one of the account's passkeys as the second factor of a waiting sign-in.
    pub async fn start_passkey_second_factor(
        &self,
        challenge: &SecondFactorToken,
    ) -> Result<(CeremonyToken, Value), PasskeyError> {
        let (user, _) = self
            .challenged_user(challenge)
            .await?
            .ok_or(PasskeyError::NoChallenge)?;
        let passkeys = self
            .passkeys_of(&user)
            .await?
            .iter()
            .map(|p| from_json::<Passkey>(&p.credential))
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(PasskeyError::UnknownPasskey);
        }
        let (options, state) = self
            .relying_party()?
            .start_passkey_authentication(&passkeys)
            .map_err(rejected)?;
        let options = serde_json::to_value(options).map_err(rejected)?;
        let token = self
            .begin_ceremony("second_factor", Some(&user.id), to_json(&state)?)
            .await?;
        Ok((token, options))
    }

    /// Finishes a waiting sign-in with a passkey of the account: the session, and where to go
    /// on to.
    pub async fn finish_passkey_second_factor(
        &self,
        challenge: &SecondFactorToken,
        ceremony: &str,
        credential: Value,
        origin: &SessionOrigin,
    ) -> Result<(SessionToken, User, Option<String>), PasskeyError> {
        let (user, next) = self
            .challenged_user(challenge)
            .await?
            .ok_or(PasskeyError::NoChallenge)?;
        let state: PasskeyAuthentication = from_json(
            &self
                .take_ceremony(ceremony, "second_factor", Some(&user.id))
                .await?,
        )?;
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(rejected)?;
        self.verify_passkey(
            &credential,
            |record| record.user_id == user.id,
            |webauthn, _| webauthn.finish_passkey_authentication(&credential, &state),
        )
        .await?;
        let session = self
            .pass_second_factor(challenge, &user, origin)
            .await?
            .ok_or(PasskeyError::NoChallenge)?;
        Ok((session, user, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_domain_name_can_be_a_relying_party() {
        assert!(relying_party("https://auth.acme.example", "Acme").is_some());
        assert!(relying_party("http://localhost:8080", "latchkey").is_some());
        assert!(relying_party("http://127.0.0.1:8080", "latchkey").is_none());
        assert!(relying_party("http://[::1]:8080", "latchkey").is_none());
    }

    #[test]
    fn a_user_handle_is_stable_and_per_account() {
        assert_eq!(user_handle("usr_a"), user_handle("usr_a"));
        assert_ne!(user_handle("usr_a"), user_handle("usr_b"));
    }

    #[test]
    fn registration_asks_for_a_discoverable_credential() {
        let mut options = serde_json::json!({
            "publicKey": {"authenticatorSelection": {"residentKey": "discouraged", "requireResidentKey": false}}
        });
        require_discoverable(&mut options);
        assert_eq!(
            options["publicKey"]["authenticatorSelection"]["residentKey"],
            "required"
        );
        assert_eq!(
            options["publicKey"]["authenticatorSelection"]["requireResidentKey"],
            true
        );
    }

    #[test]
    fn passkey_names_are_short_and_printable() {
        assert_eq!(passkey_name("  MacBook  ").ok().as_deref(), Some("MacBook"));
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(61)] {
            assert!(passkey_name(bad).is_err(), "{bad:?}");
        }
    }
}
