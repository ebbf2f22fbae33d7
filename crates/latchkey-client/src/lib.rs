//! Embeddable CLI login for tools built on latchkey.
//!
//! A tool names itself with an [`AppIdentity`] (its name, env-var prefix, issuer, key prefix),
//! resolves [`Settings`] from an environment it passes in, and calls [`Client`] to log in, read
//! the current credential, or log out. The library never touches the terminal or the home
//! directory itself: the caller passes the config directory, a browser opener and an event sink.
//!
//! With the `cli` feature, [`cli`] is the whole command set (`login`, `status`, `logout`,
//! `token`, `switch`) for a tool's own binary: a clap subcommand and its runner.

pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod keys;
pub mod login;
pub mod loopback;
pub mod oauth_login;
pub mod orgs;
pub mod pending;
pub mod settings;
pub mod storage;
pub mod token_flow;

pub use error::{ClientError, ErrorKind};
pub use latchkey_proto::api_key::InvalidKeyPrefix;
pub use login::{LoginEvent, LoginMethod, LoginOptions, LoginOutcome, NoBrowser, why_no_browser};
pub use settings::{AppIdentity, IssuerSource, ProjectFile, Settings, StoragePolicy, UrlFlags};
pub use storage::{Credential, CredentialSource, Secret, StoredAccount};

use latchkey_proto::wire::MeResponse;

/// The entry point: one tool, one issuer, one credential store.
#[derive(Debug)]
pub struct Client {
    settings: Settings,
    api: api::ApiClient,
    storage: storage::CredentialStorage,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self, ClientError> {
        let api = api::ApiClient::new(&settings)?;
        let storage = storage::CredentialStorage::new(&settings);
        Ok(Self {
            settings,
            api,
            storage,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The credential in force: the env var wins over anything stored. A key in the env var
    /// that is not this tool's (wrong prefix, mistyped) is refused here, before any request.
    pub fn credential(&self) -> Result<Option<Credential>, ClientError> {
        if let Some(key) = &self.settings.env_api_key {
            let app = &self.settings.app;
            latchkey_proto::ApiKey::parse(key, &app.key_prefix).map_err(|e| {
                ClientError::Config(format!(
                    "{} does not hold a valid API key for {}: {e}",
                    app.api_key_env(),
                    app.name
                ))
            })?;
            return Ok(Some(Credential {
                secret: Secret::ApiKey {
                    api_key: key.clone(),
                },
                source: CredentialSource::Env(self.settings.app.api_key_env()),
                account: None,
            }));
        }
        let chosen = self
            .settings
            .project
            .as_ref()
            .and_then(|p| p.account.as_deref().map(|who| (who, &p.path)));
        let Some((who, file)) = chosen else {
            return self.storage.active(&self.settings.issuer_id());
        };
        let account = self.account_named(who, None).map_err(|_| {
            ClientError::Config(format!(
                "{} asks for the account {who}, which is not logged in to {}; log in with it",
                file.display(),
                self.settings.issuer_id()
            ))
        })?;
        self.stored_credential(&account)
    }

    /// The credential stored for `account`.
    fn stored_credential(
        &self,
        account: &StoredAccount,
    ) -> Result<Option<Credential>, ClientError> {
        self.storage.credential_of(&storage::AccountName {
            issuer: &account.issuer,
            user_id: &account.user_id,
            email: &account.email,
            org: &account.org,
            key_expires_at: account.key_expires_at,
        })
    }

    /// Asks the issuer who a credential belongs to (`GET /v1/me`).
    pub async fn whoami(&self, bearer: &str) -> Result<MeResponse, ClientError> {
        self.api.me(bearer).await
    }

    /// Asks the issuer who `credential` belongs to; a stored credential it refuses is marked
    /// dead, so later commands say so without asking again (a new login replaces it).
    pub async fn check(&self, credential: &Credential) -> Result<MeResponse, ClientError> {
        let answer = self.whoami(credential.secret.bearer()).await;
        if let (Err(ClientError::KeyRejected), Some(account)) = (&answer, &credential.account) {
            self.storage
                .mark_refused(account, oauth_login::unix_now())?;
        }
        answer
    }

    /// Every account logged in to this issuer on this machine.
    pub fn accounts(&self) -> Result<Vec<StoredAccount>, ClientError> {
        self.storage.accounts(&self.settings.issuer_id())
    }

    /// Every account on every issuer this machine is logged in to.
    pub fn all_accounts(&self) -> Result<Vec<StoredAccount>, ClientError> {
        self.storage.all_accounts()
    }

    /// The account of this issuer whose email (in any case), user id or org is `who`, and
    /// when `org` is given, that acts for it (slug or id).
    fn account_named(&self, who: &str, org: Option<&str>) -> Result<StoredAccount, ClientError> {
        let accounts = self.accounts()?;
        let matching: Vec<_> = accounts
            .iter()
            .filter(|a| a.email.eq_ignore_ascii_case(who) || a.user_id == who || a.org == who)
            .filter(|a| org.is_none_or(|org| a.org == org))
            .collect();
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ClientError::Config(format!(
                "no account {who:?}{} is logged in to {}; `switch` lists the accounts here",
                org.map(|org| format!(" acting for {org}"))
                    .unwrap_or_default(),
                self.settings.issuer_id()
            ))),
            several => Err(ClientError::Config(format!(
                "{who:?} matches several accounts ({}); name the person and the org: `switch \
                 <email or user id> --org <org>`",
                several
                    .iter()
                    .map(|a| format!("{} in {}", a.email, a.org))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Makes the account whose email, user id or org is `who` (acting for `org`, when given)
    /// the active one.
    pub fn switch(&self, who: &str, org: Option<&str>) -> Result<StoredAccount, ClientError> {
        let account = self.account_named(who, org)?;
        self.storage.activate(&account)?;
        Ok(account)
    }

    /// Deletes a stored credential (the active one, or the account named `who`) and revokes
    /// it at the issuer. Returns what was removed and whether the server-side revocation
    /// succeeded (its error otherwise); another account of this issuer becomes active.
    pub async fn logout(
        &self,
        who: Option<&str>,
    ) -> Result<Option<(StoredAccount, Result<(), ClientError>)>, ClientError> {
        let credential = match who {
            None => self.storage.active(&self.settings.issuer_id())?,
            Some(who) => self.stored_credential(&self.account_named(who, None)?)?,
        };
        let Some(credential) = credential else {
            return Ok(None);
        };
        let revoked = self.revoke_secret(&credential.secret).await;
        let account = credential
            .account
            .ok_or_else(|| ClientError::Internal("a stored credential has no account".into()))?;
        self.storage.remove(&account)?;
        Ok(Some((account, revoked)))
    }
}
