//! Where credentials live: the OS keychain when one answers, else a 0600 file in a 0700
//! directory, written atomically. An index file (`credentials.json`, also 0600) records which
//! accounts exist and where each secret is; for file storage it holds the secret too.
//!
//! Keychain entries are scoped by issuer and immutable user id (service
//! `<app>:<issuer-host>:<user-id>`, account `<org>`), so two users or two orgs on one machine
//! never collide. Every keychain call runs under a timeout: a locked keychain that would prompt
//! forever becomes a clear error instead.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{ClientError, Settings, StoragePolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    Keychain,
    File,
}

/// OAuth tokens as a login stores them. Times are Unix seconds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_at: i64,
    /// When the refresh token lapses and the person must log in again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
}

/// What a login left on this machine: an API key, or OAuth tokens that refresh themselves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Secret {
    ApiKey { api_key: String },
    Oauth(TokenSet),
}

impl Secret {
    /// What goes in `Authorization: Bearer`.
    pub fn bearer(&self) -> &str {
        match self {
            Secret::ApiKey { api_key } => api_key,
            Secret::Oauth(tokens) => &tokens.access_token,
        }
    }

    /// When the access token expires (API keys: never, as far as the client knows).
    pub fn expires_at(&self) -> Option<i64> {
        match self {
            Secret::ApiKey { .. } => None,
            Secret::Oauth(tokens) => Some(tokens.expires_at),
        }
    }

    /// When the login itself lapses: the refresh token's end, or the access token's when
    /// there is no refresh token.
    pub fn login_expires_at(&self) -> Option<i64> {
        match self {
            Secret::ApiKey { .. } => None,
            Secret::Oauth(tokens) => match &tokens.refresh_token {
                Some(_) => tokens.refresh_expires_at,
                None => Some(tokens.expires_at),
            },
        }
    }

    /// The keychain form: an API key as itself (readable with the OS's own tools), OAuth
    /// tokens as JSON.
    fn encode(&self) -> Result<String, ClientError> {
        match self {
            Secret::ApiKey { api_key } => Ok(api_key.clone()),
            Secret::Oauth(_) => {
                serde_json::to_string(self).map_err(|e| ClientError::Internal(e.to_string()))
            }
        }
    }

    /// Reads the keychain form back.
    fn decode(stored: String) -> Secret {
        serde_json::from_str(&stored).unwrap_or(Secret::ApiKey { api_key: stored })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::ApiKey { .. } => f.write_str("Secret::ApiKey([redacted])"),
            Secret::Oauth(t) => f
                .debug_struct("Secret::Oauth")
                .field("expires_at", &t.expires_at)
                .field("refresh_expires_at", &t.refresh_expires_at)
                .finish_non_exhaustive(),
        }
    }
}

/// One logged-in account, as the index records it (no secret unless stored in the file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    pub issuer: String,
    pub user_id: String,
    pub email: String,
    pub org: String,
    pub storage: StorageKind,
    #[serde(default)]
    pub active: bool,
    /// When an API key expires (Unix seconds), as the server said at login: commands warn
    /// ahead of it. OAuth logins carry their own expiry in their tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_expires_at: Option<i64>,
    /// When the server last refused this credential (Unix seconds): it is dead, and commands
    /// say so instead of handing it out. A new login replaces the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<Secret>,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("issuer", &self.issuer)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("org", &self.org)
            .field("storage", &self.storage)
            .field("active", &self.active)
            .field("refused_at", &self.refused_at)
            .finish_non_exhaustive()
    }
}

impl StoredAccount {
    fn same_account(&self, other: &StoredAccount) -> bool {
        self.issuer == other.issuer && self.user_id == other.user_id && self.org == other.org
    }
}

/// Who a credential is for, as a login learns it from `/v1/me`.
#[derive(Debug, Clone, Copy)]
pub struct AccountName<'a> {
    pub issuer: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub org: &'a str,
    /// For an API key, when it expires (Unix seconds).
    pub key_expires_at: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// The issuer commands use when no flag or env var names one: the first logged in to,
    /// until its last account logs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_issuer: Option<String>,
    accounts: Vec<StoredAccount>,
}

impl Index {
    /// Keeps the default issuer one with accounts: the first remaining, or none.
    fn settle_default(&mut self) {
        let has_accounts = |issuer: &str| self.accounts.iter().any(|a| a.issuer == issuer);
        if !self.default_issuer.as_deref().is_some_and(has_accounts) {
            self.default_issuer = self.accounts.first().map(|a| a.issuer.clone());
        }
    }

    /// Keeps one account of `issuer` active when it has any: the first, if none is.
    fn settle_active(&mut self, issuer: &str) {
        if self.accounts.iter().any(|a| a.issuer == issuer && a.active) {
            return;
        }
        if let Some(first) = self.accounts.iter_mut().find(|a| a.issuer == issuer) {
            first.active = true;
        }
    }
}

/// The issuer remembered as the default in the credential index under `dir`, if any.
pub(crate) fn remembered_issuer(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("credentials.json")).ok()?;
    serde_json::from_slice::<Index>(&bytes).ok()?.default_issuer
}

/// Whether an account on this machine is logged in to `issuer` (an issuer id).
pub(crate) fn knows_issuer(dir: &Path, issuer: &str) -> bool {
    std::fs::read(dir.join("credentials.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Index>(&bytes).ok())
        .is_some_and(|index| index.accounts.iter().any(|a| a.issuer == issuer))
}

/// Where the credential in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The named environment variable.
    Env(String),
    Keychain,
    /// The credential file at this path.
    File(PathBuf),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(var) => write!(f, "the environment variable {var}"),
            Self::Keychain => f.write_str("the system keychain"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Credential {
    pub secret: Secret,
    pub source: CredentialSource,
    pub account: Option<StoredAccount>,
}

/// What a login stored, and whether it had to fall back to the file.
#[derive(Debug, Clone)]
pub struct Stored {
    pub kind: StorageKind,
    pub path: PathBuf,
    /// Why the keychain was not used, when the policy allowed falling back.
    pub fallback_reason: Option<String>,
}

type KeychainHandle = Arc<keyring_core::CredentialStore>;

#[derive(Debug, Clone)]
pub struct CredentialStorage {
    dir: PathBuf,
    app: String,
    issuer_host: String,
    policy: StoragePolicy,
    timeout: Duration,
}

impl CredentialStorage {
    pub fn new(settings: &Settings) -> Self {
        Self {
            dir: settings.config_dir.clone(),
            app: settings.app.name.clone(),
            issuer_host: settings.issuer_host(),
            policy: settings.storage,
            timeout: settings.keychain_timeout,
        }
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    fn keychain_service(&self, user_id: &str) -> String {
        format!("{}:{}:{}", self.app, self.issuer_host, user_id)
    }

    /// Runs a keychain operation on its own thread, giving up after the timeout.
    fn keychain<T: Send + 'static>(
        &self,
        op: impl FnOnce(KeychainHandle) -> Result<T, keyring_core::Error> + Send + 'static,
    ) -> Result<T, ClientError> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = native_keychain()
                .map_err(|e| ClientError::KeychainUnavailable {
                    reason: e.to_string(),
                })
                .and_then(|store| op(store).map_err(ClientError::Keychain));
            let _ = tx.send(result);
        });
        rx.recv_timeout(self.timeout)
            .unwrap_or(Err(ClientError::KeychainTimeout {
                secs: self.timeout.as_secs(),
            }))
    }

    fn read_index(&self) -> Result<Index, ClientError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| ClientError::CorruptFile {
                path: path.display().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index {
                version: 1,
                ..Index::default()
            }),
            Err(source) => Err(ClientError::File {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ClientError> {
        let bytes =
            serde_json::to_vec_pretty(index).map_err(|e| ClientError::Internal(e.to_string()))?;
        write_private(&self.index_path(), &bytes).map_err(|source| ClientError::File {
            path: self.index_path().display().to_string(),
            source,
        })
    }

    fn keychain_set(&self, user_id: &str, org: &str, secret: &Secret) -> Result<(), ClientError> {
        let (service, account, secret) = (
            self.keychain_service(user_id),
            org.to_owned(),
            secret.encode()?,
        );
        self.keychain(move |store| store.build(&service, &account, None)?.set_password(&secret))
    }

    /// Stores the secret for this account and makes it the active one for its issuer.
    pub fn save(&self, who: &AccountName<'_>, secret: &Secret) -> Result<Stored, ClientError> {
        let AccountName {
            issuer,
            user_id,
            email,
            org,
            key_expires_at,
        } = *who;
        let mut fallback_reason = None;
        let kind = match self.policy {
            StoragePolicy::FileOnly => StorageKind::File,
            StoragePolicy::KeychainOnly | StoragePolicy::Auto => {
                match self.keychain_set(user_id, org, secret) {
                    Ok(()) => StorageKind::Keychain,
                    Err(e) if self.policy == StoragePolicy::KeychainOnly => return Err(e),
                    Err(e) => {
                        fallback_reason = Some(fallback_reason_for(&e));
                        StorageKind::File
                    }
                }
            }
        };
        let mut index = self.read_index()?;
        index.version = 1;
        index
            .accounts
            .retain(|a| !(a.issuer == issuer && a.user_id == user_id && a.org == org));
        for a in index.accounts.iter_mut().filter(|a| a.issuer == issuer) {
            a.active = false;
        }
        index.accounts.push(StoredAccount {
            issuer: issuer.to_owned(),
            user_id: user_id.to_owned(),
            email: email.to_owned(),
            org: org.to_owned(),
            storage: kind,
            active: true,
            key_expires_at,
            refused_at: None,
            secret: (kind == StorageKind::File).then(|| secret.clone()),
        });
        index.settle_default();
        self.write_index(&index)?;
        Ok(Stored {
            kind,
            path: self.index_path(),
            fallback_reason,
        })
    }

    /// Replaces an account's secret where it already lives (after a refresh).
    pub fn replace_secret(
        &self,
        account: &StoredAccount,
        secret: &Secret,
    ) -> Result<(), ClientError> {
        if account.storage == StorageKind::Keychain {
            return self.keychain_set(&account.user_id, &account.org, secret);
        }
        let mut index = self.read_index()?;
        for a in index
            .accounts
            .iter_mut()
            .filter(|a| a.same_account(account))
        {
            a.secret = Some(secret.clone());
        }
        self.write_index(&index)
    }

    /// Every account logged in to `issuer`.
    pub fn accounts(&self, issuer: &str) -> Result<Vec<StoredAccount>, ClientError> {
        let mut accounts = self.all_accounts()?;
        accounts.retain(|a| a.issuer == issuer);
        Ok(accounts)
    }

    /// Every account on every issuer, in the order they logged in.
    pub fn all_accounts(&self) -> Result<Vec<StoredAccount>, ClientError> {
        Ok(self.read_index()?.accounts)
    }

    /// Records that the server refused `account`'s credential at `at` (Unix seconds).
    pub fn mark_refused(&self, account: &StoredAccount, at: i64) -> Result<(), ClientError> {
        let mut index = self.read_index()?;
        for a in index
            .accounts
            .iter_mut()
            .filter(|a| a.same_account(account))
        {
            a.refused_at = Some(at);
        }
        self.write_index(&index)
    }

    /// Makes `account` the active one for its issuer.
    pub fn activate(&self, account: &StoredAccount) -> Result<(), ClientError> {
        let mut index = self.read_index()?;
        for a in index
            .accounts
            .iter_mut()
            .filter(|a| a.issuer == account.issuer)
        {
            a.active = a.same_account(account);
        }
        self.write_index(&index)
    }

    /// Holds an exclusive lock on the credential directory until dropped, so that two
    /// processes refreshing the same token do it once, one after the other.
    pub fn lock(&self) -> Result<std::fs::File, ClientError> {
        let path = self.dir.join("credentials.lock");
        let io_error = |source| ClientError::File {
            path: path.display().to_string(),
            source,
        };
        create_private_dir(&self.dir).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error)?;
        file.lock().map_err(io_error)?;
        Ok(file)
    }

    /// The active account for `issuer`, with its secret.
    pub fn active(&self, issuer: &str) -> Result<Option<crate::Credential>, ClientError> {
        self.stored(|a| a.issuer == issuer && a.active)
    }

    /// The credential stored for this account, if any, active or not.
    pub fn credential_of(
        &self,
        who: &AccountName<'_>,
    ) -> Result<Option<crate::Credential>, ClientError> {
        self.stored(|a| a.issuer == who.issuer && a.user_id == who.user_id && a.org == who.org)
    }

    /// The first account `pick` chooses, with its secret.
    fn stored(
        &self,
        pick: impl Fn(&StoredAccount) -> bool,
    ) -> Result<Option<crate::Credential>, ClientError> {
        let index = self.read_index()?;
        let Some(account) = index.accounts.into_iter().find(|a| pick(a)) else {
            return Ok(None);
        };
        let (secret, source) = match account.storage {
            StorageKind::File => match &account.secret {
                Some(k) => (k.clone(), CredentialSource::File(self.index_path())),
                None => {
                    return Err(ClientError::CorruptFile {
                        path: self.index_path().display().to_string(),
                    });
                }
            },
            StorageKind::Keychain => {
                let (service, org) = (self.keychain_service(&account.user_id), account.org.clone());
                let secret = self.keychain(move |store| {
                    match store.build(&service, &org, None)?.get_password() {
                        Ok(secret) => Ok(Some(secret)),
                        Err(keyring_core::Error::NoEntry) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?;
                match secret {
                    Some(secret) => (Secret::decode(secret), CredentialSource::Keychain),
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(crate::Credential {
            secret,
            source,
            account: Some(account),
        }))
    }

    /// Deletes the account's secret and its index entry. Another account of its issuer becomes
    /// active if it was; the default issuer moves on when this was its last account.
    pub fn remove(&self, account: &StoredAccount) -> Result<(), ClientError> {
        if account.storage == StorageKind::Keychain {
            let (service, org) = (self.keychain_service(&account.user_id), account.org.clone());
            self.keychain(move |store| {
                match store.build(&service, &org, None)?.delete_credential() {
                    Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                    Err(e) => Err(e),
                }
            })?;
        }
        let mut index = self.read_index()?;
        index.accounts.retain(|a| !a.same_account(account));
        index.settle_active(&account.issuer);
        index.settle_default();
        self.write_index(&index)
    }
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn native_keychain() -> Result<KeychainHandle, keyring_core::Error> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(target_os = "macos")]
fn native_keychain() -> Result<KeychainHandle, keyring_core::Error> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(target_os = "windows")]
fn native_keychain() -> Result<KeychainHandle, keyring_core::Error> {
    Ok(windows_native_keyring_store::Store::new()?)
}

#[cfg(not(any(unix, target_os = "windows")))]
fn native_keychain() -> Result<KeychainHandle, keyring_core::Error> {
    Err(keyring_core::Error::NotSupportedByStore(
        "no OS keychain on this platform".into(),
    ))
}

/// Writes `bytes` to `path` atomically (temp file + rename in the same directory), the file
/// mode 0600 and its directory 0700 from the start: never readable by others, never half-written.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no directory")
    })?;
    create_private_dir(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Why the keychain was passed over, without the advice meant for `--secure-storage` users.
fn fallback_reason_for(error: &ClientError) -> String {
    match error {
        ClientError::KeychainUnavailable { reason } => reason.clone(),
        ClientError::KeychainTimeout { secs } => format!("it did not answer within {secs} seconds"),
        other => other.to_string(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppIdentity;

    fn storage(dir: &Path) -> CredentialStorage {
        let mut settings = Settings::resolve(
            AppIdentity::new("acme", "http://127.0.0.1:9"),
            |_| None,
            dir.to_owned(),
            None,
            None,
        )
        .expect("valid");
        settings.storage = StoragePolicy::FileOnly;
        CredentialStorage::new(&settings)
    }

    fn key(k: &str) -> Secret {
        Secret::ApiKey { api_key: k.into() }
    }

    fn save(s: &CredentialStorage, issuer: &str, user: &str, secret: &Secret) -> Stored {
        let email = format!("{user}@example.com");
        s.save(
            &AccountName {
                issuer,
                user_id: user,
                email: &email,
                org: user,
                key_expires_at: None,
            },
            secret,
        )
        .expect("saved")
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = storage(tmp.path());
        let stored = save(&s, "http://127.0.0.1:9", "usr_1", &key("acme_secret"));
        assert_eq!(stored.kind, StorageKind::File);
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&stored.path), 0o600);
        assert_eq!(mode(stored.path.parent().expect("dir")), 0o700);

        let credential = s
            .active("http://127.0.0.1:9")
            .expect("read")
            .expect("present");
        assert_eq!(credential.secret.bearer(), "acme_secret");
        assert_eq!(
            credential.source,
            CredentialSource::File(stored.path.clone())
        );
        assert!(!format!("{credential:?}").contains("acme_secret"));

        s.remove(credential.account.as_ref().expect("account"))
            .expect("removed");
        assert!(s.active("http://127.0.0.1:9").expect("read").is_none());
    }

    #[test]
    fn a_new_login_on_the_same_issuer_becomes_the_active_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = storage(tmp.path());
        save(&s, "http://127.0.0.1:9", "usr_1", &key("k1"));
        save(&s, "http://127.0.0.1:9", "usr_2", &key("k2"));
        save(&s, "https://other.example", "usr_3", &key("k3"));
        let active = |issuer| {
            s.active(issuer)
                .expect("read")
                .map(|c| c.secret.bearer().to_owned())
        };
        assert_eq!(active("http://127.0.0.1:9").as_deref(), Some("k2"));
        assert_eq!(active("https://other.example").as_deref(), Some("k3"));

        let accounts = s.accounts("http://127.0.0.1:9").expect("read");
        assert_eq!(accounts.len(), 2);
        let first = accounts
            .iter()
            .find(|a| a.user_id == "usr_1")
            .expect("usr_1");
        s.activate(first).expect("switched");
        assert_eq!(active("http://127.0.0.1:9").as_deref(), Some("k1"));
        assert_eq!(active("https://other.example").as_deref(), Some("k3"));
    }

    #[test]
    fn refreshed_tokens_replace_the_old_ones_in_place() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = storage(tmp.path());
        let tokens = |access: &str| {
            Secret::Oauth(TokenSet {
                access_token: access.into(),
                refresh_token: Some(format!("r-{access}")),
                expires_at: 100,
                refresh_expires_at: Some(1_000),
            })
        };
        save(&s, "http://127.0.0.1:9", "usr_1", &tokens("a1"));
        let account = s
            .active("http://127.0.0.1:9")
            .expect("read")
            .and_then(|c| c.account)
            .expect("present");
        let _lock = s.lock().expect("locked");
        s.replace_secret(&account, &tokens("a2")).expect("replaced");
        let credential = s
            .active("http://127.0.0.1:9")
            .expect("read")
            .expect("present");
        assert_eq!(credential.secret, tokens("a2"));
        assert_eq!(credential.secret.login_expires_at(), Some(1_000));
        assert!(!format!("{credential:?}").contains("a2"));
        assert_eq!(
            Secret::decode("lk_bare".into()),
            key("lk_bare"),
            "a keychain entry holding a bare key is read as an API key"
        );
    }

    #[test]
    fn a_damaged_file_is_reported_not_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = storage(tmp.path());
        write_private(&s.index_path(), b"{not json").expect("written");
        assert!(matches!(
            s.active("http://127.0.0.1:9"),
            Err(ClientError::CorruptFile { .. })
        ));
    }
}
