//! Who the embedding tool is ([`AppIdentity`]) and the settings resolved from its environment.

use std::{path::PathBuf, time::Duration};

use latchkey_proto::{KeyPrefix, api_key::InvalidKeyPrefix};
use url::Url;

use crate::ClientError;

/// How an embedding tool names itself. `latchkey` is one; `acme` another.
#[derive(Debug, Clone)]
pub struct AppIdentity {
    /// Lowercase name: config subdirectory, keychain service prefix, User-Agent.
    pub name: String,
    /// Prefix of env var names: `ACME` gives `ACME_API_KEY`, `ACME_ISSUER`, …
    pub env_prefix: String,
    /// The issuer used when neither flag nor env var names one.
    pub default_issuer: String,
    /// The prefix of the keys this tool's issuer mints (for offline format checks).
    pub key_prefix: KeyPrefix,
    /// The public OAuth client the tool logs in as: register your own (`[[oauth_clients]]`
    /// or `latchkey admin clients create --public`) so the consent page shows its name.
    pub client_id: String,
    pub version: String,
    /// An entitlement the org's subscription must grant for `login` to succeed (the tool is
    /// paid); `None`: any login will do.
    pub required_entitlement: Option<String>,
}

impl AppIdentity {
    pub fn new(name: &str, default_issuer: &str) -> Self {
        Self {
            name: name.to_owned(),
            env_prefix: name.to_uppercase().replace('-', "_"),
            default_issuer: default_issuer.to_owned(),
            key_prefix: KeyPrefix::default(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            required_entitlement: None,
        }
    }

    /// `login` fails (exit 6, with where to subscribe) unless the org's subscription grants
    /// `entitlement`; the credential stays stored, so subscribing is all that is left to do.
    pub fn requiring_entitlement(mut self, entitlement: &str) -> Self {
        self.required_entitlement = Some(entitlement.to_owned());
        self
    }

    /// The public OAuth client this tool logs in as.
    pub fn with_client_id(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_owned();
        self
    }

    /// The prefix of the keys the tool's server mints (its `--key-prefix`).
    pub fn with_key_prefix(mut self, prefix: &str) -> Result<Self, InvalidKeyPrefix> {
        self.key_prefix = KeyPrefix::parse(prefix)?;
        Ok(self)
    }

    pub fn env(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.env_prefix)
    }

    pub fn api_key_env(&self) -> String {
        self.env("API_KEY")
    }
}

/// The public OAuth client every latchkey deployment registers for CLIs.
pub const DEFAULT_CLIENT_ID: &str = "latchkey-cli";

/// URL flags given on the command line; each wins over its env var.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlFlags<'a> {
    pub issuer: Option<&'a str>,
    pub login_url: Option<&'a str>,
    pub auth_url: Option<&'a str>,
}

/// Where credentials may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoragePolicy {
    /// The OS keychain; a 0600 file where none answers.
    #[default]
    Auto,
    /// The keychain or fail (`--secure-storage`).
    KeychainOnly,
    /// The file, never the keychain (`--insecure-storage`).
    FileOnly,
}

/// What chose the issuer a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerSource {
    /// `--issuer`.
    Flag,
    /// This environment variable.
    Env(String),
    /// The default the first login remembered.
    Remembered,
    /// The tool's built-in default: nothing was logged in to yet.
    BuiltIn,
    /// A project file (`.<tool>.toml`) in the working directory or above it.
    Project(PathBuf),
}

/// What a project directory asks for, from `.<tool>.toml` there or in a parent: which server
/// and which of your accounts to use when working in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Where the file is.
    #[serde(skip)]
    pub path: PathBuf,
    pub issuer: Option<String>,
    /// An account's email, user id or org: used instead of the active one.
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app: AppIdentity,
    pub issuer: Url,
    pub issuer_source: IssuerSource,
    /// The project file in force, if any (see [`Settings::apply_project_file`]).
    pub project: Option<ProjectFile>,
    /// Where the browser is sent instead of the server's `web_url` (Memori's `--login-url`).
    pub login_url: Option<Url>,
    /// The mgrep hand-off page the browser login opens instead of the OAuth consent page
    /// (`--auth-url`); it hands a key straight to the loopback callback.
    pub auth_url: Option<Url>,
    /// The OAuth client this tool logs in as (a public client with loopback redirects).
    pub client_id: String,
    /// Extra trusted CA certificates (PEM), for corporate TLS inspection (`SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
    /// The loopback port to try first (54321); a random one when it is busy.
    pub login_port: u16,
    /// How long one wait call may be held open by the server.
    pub wait_timeout: Duration,
    pub next_url: Option<String>,
    /// A key from the environment: it wins over stored credentials.
    pub env_api_key: Option<String>,
    /// `<config dir>/<app name>`: where the credential file lives.
    pub config_dir: PathBuf,
    pub storage: StoragePolicy,
    pub keychain_timeout: Duration,
}

/// Plain HTTP is only for the local machine: anything else would send keys in the clear.
pub fn check_issuer(raw: &str) -> Result<Url, ClientError> {
    let url =
        Url::parse(raw).map_err(|_| ClientError::Config(format!("{raw:?} is not a valid URL")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(ClientError::Config(format!(
            "the issuer {raw} uses plain http on a host that is not this machine; use https"
        ))),
        _ => Err(ClientError::Config(format!(
            "the issuer {raw} must be an http(s) URL"
        ))),
    }
}

impl Settings {
    /// Resolves settings from the environment (`env` is `std::env::var` in a real CLI).
    /// `issuer` and `login_url` are flag values, which win over env vars.
    pub fn resolve(
        app: AppIdentity,
        env: impl Fn(&str) -> Option<String>,
        config_dir: PathBuf,
        issuer: Option<&str>,
        login_url: Option<&str>,
    ) -> Result<Self, ClientError> {
        Self::resolve_with(
            app,
            env,
            config_dir,
            &UrlFlags {
                issuer,
                login_url,
                auth_url: None,
            },
        )
    }

    /// [`Settings::resolve`] with every URL flag.
    pub fn resolve_with(
        app: AppIdentity,
        env: impl Fn(&str) -> Option<String>,
        config_dir: PathBuf,
        flags: &UrlFlags<'_>,
    ) -> Result<Self, ClientError> {
        let UrlFlags {
            issuer,
            login_url,
            auth_url,
        } = *flags;
        let get = |suffix: &str| env(&app.env(suffix)).filter(|v| !v.trim().is_empty());
        let config_dir = config_dir.join(&app.name);
        let from_env = |suffix: &str| get(suffix).map(|v| (v, IssuerSource::Env(app.env(suffix))));
        let (issuer_raw, issuer_source) = issuer
            .map(|flag| (flag.to_owned(), IssuerSource::Flag))
            .or_else(|| from_env("ISSUER"))
            .or_else(|| from_env("AUTH_BASE"))
            .or_else(|| {
                crate::storage::remembered_issuer(&config_dir)
                    .map(|remembered| (remembered, IssuerSource::Remembered))
            })
            .unwrap_or_else(|| (app.default_issuer.clone(), IssuerSource::BuiltIn));
        let issuer = check_issuer(&issuer_raw)?;
        let login_url = login_url
            .map(str::to_owned)
            .or_else(|| get("LOGIN_URL"))
            .map(|u| check_issuer(&u))
            .transpose()?;
        let auth_url = auth_url
            .map(str::to_owned)
            .or_else(|| get("AUTH_URL"))
            .map(|u| check_issuer(&u))
            .transpose()?;
        let login_port = match get("LOGIN_PORT") {
            Some(p) => p.parse::<u16>().map_err(|_| {
                ClientError::Config(format!(
                    "{} must be a port number, not {p:?}",
                    app.env("LOGIN_PORT")
                ))
            })?,
            None => 54321,
        };
        let wait_timeout = match get("LOGIN_WAIT_TIMEOUT") {
            Some(t) => match t.parse::<u64>() {
                Ok(secs @ 1..=60) => Duration::from_secs(secs),
                _ => {
                    return Err(ClientError::Config(format!(
                        "{} must be a number of seconds from 1 to 60, not {t:?}",
                        app.env("LOGIN_WAIT_TIMEOUT")
                    )));
                }
            },
            None => Duration::from_secs(40),
        };
        Ok(Self {
            next_url: get("LOGIN_NEXT_URL"),
            env_api_key: get("API_KEY").map(|k| k.trim().to_owned()),
            config_dir,
            issuer,
            issuer_source,
            project: None,
            login_url,
            auth_url,
            client_id: get("CLIENT_ID").unwrap_or_else(|| app.client_id.clone()),
            ca_bundle: env("SSL_CERT_FILE")
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from),
            login_port,
            wait_timeout,
            storage: StoragePolicy::Auto,
            keychain_timeout: Duration::from_secs(5),
            app,
        })
    }

    /// The issuer as credentials are keyed: its origin without a trailing slash.
    pub fn issuer_id(&self) -> String {
        self.issuer.origin().ascii_serialization()
    }

    /// Applies the nearest `.<tool>.toml` in `dir` or a parent: its issuer, unless a flag or an
    /// env var named one, and the account to use there. The file may only choose among servers
    /// this machine has logged in to: a file in a cloned repository or a shared directory must
    /// not send this machine's credentials (an env var's key, say) to a server of its choosing.
    pub fn apply_project_file(&mut self, dir: &std::path::Path) -> Result<(), ClientError> {
        let name = format!(".{}.toml", self.app.name);
        let Some(path) = dir.ancestors().map(|d| d.join(&name)).find(|p| p.is_file()) else {
            return Ok(());
        };
        let bad = |why: String| ClientError::Config(format!("{}: {why}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let mut project: ProjectFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let named = matches!(
            self.issuer_source,
            IssuerSource::Flag | IssuerSource::Env(_)
        );
        if let Some(issuer) = project.issuer.as_deref().filter(|_| !named) {
            let issuer = check_issuer(issuer).map_err(|e| bad(e.to_string()))?;
            let id = issuer.origin().ascii_serialization();
            if !crate::storage::knows_issuer(&self.config_dir, &id) {
                return Err(bad(format!(
                    "it names the server {id}, which you have not logged in to from this \
                     machine; if you trust it, log in with `{} login --issuer {id}`",
                    self.app.name
                )));
            }
            self.issuer = issuer;
            self.issuer_source = IssuerSource::Project(path.clone());
        }
        project.path = path;
        self.project = Some(project);
        Ok(())
    }

    /// `host[:port]` of the issuer, for keychain service names.
    pub fn issuer_host(&self) -> String {
        match (self.issuer.host_str(), self.issuer.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => self.issuer_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<Settings, ClientError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(
            AppIdentity::new("acme", "https://auth.acme.dev"),
            |k| vars.get(k).cloned(),
            PathBuf::from("/cfg"),
            None,
            None,
        )
    }

    #[test]
    fn defaults_follow_the_memori_contract() {
        let s = resolve(&[]).expect("valid");
        assert_eq!(s.issuer.as_str(), "https://auth.acme.dev/");
        assert_eq!(s.login_port, 54321);
        assert_eq!(s.wait_timeout, Duration::from_secs(40));
        assert_eq!(s.config_dir, PathBuf::from("/cfg/acme"));
        assert_eq!(s.env_api_key, None);
        assert_eq!(s.client_id, DEFAULT_CLIENT_ID);
    }

    #[test]
    fn the_remembered_issuer_comes_after_the_flag_and_the_env_var() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("acme")).expect("dir");
        std::fs::write(
            dir.path().join("acme/credentials.json"),
            r#"{"version":1,"default_issuer":"https://auth.example.com","accounts":[]}"#,
        )
        .expect("index");
        let with = |env: Option<&str>, flag: Option<&str>| {
            Settings::resolve(
                AppIdentity::new("acme", "https://auth.acme.dev"),
                |k| {
                    (k == "ACME_ISSUER")
                        .then(|| env.map(str::to_owned))
                        .flatten()
                },
                dir.path().to_owned(),
                flag,
                None,
            )
            .expect("valid")
        };
        let remembered = with(None, None);
        assert_eq!(remembered.issuer_id(), "https://auth.example.com");
        assert_eq!(remembered.issuer_source, IssuerSource::Remembered);
        let env = with(Some("https://env.example.com"), None);
        assert_eq!(env.issuer_source, IssuerSource::Env("ACME_ISSUER".into()));
        let flag = with(
            Some("https://env.example.com"),
            Some("https://flag.example.com"),
        );
        assert_eq!(flag.issuer_id(), "https://flag.example.com");
        assert_eq!(flag.issuer_source, IssuerSource::Flag);
        assert_eq!(
            resolve(&[]).expect("valid").issuer_source,
            IssuerSource::BuiltIn
        );
    }

    #[test]
    fn a_project_file_chooses_only_a_server_logged_in_to() {
        let config = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(config.path().join("acme")).expect("dir");
        std::fs::write(
            config.path().join("acme/credentials.json"),
            r#"{"version":1,"accounts":[{"issuer":"https://known.example.com","user_id":"usr_1",
                "email":"a@example.com","org":"a","storage":"file","active":true}]}"#,
        )
        .expect("index");
        let project = tempfile::tempdir().expect("tempdir");
        let settings = || {
            Settings::resolve(
                AppIdentity::new("acme", "https://auth.acme.example"),
                |_| None,
                config.path().to_owned(),
                None,
                None,
            )
            .expect("valid")
        };
        let choose = |issuer: &str| {
            std::fs::write(
                project.path().join(".acme.toml"),
                format!("issuer = \"{issuer}\"\n"),
            )
            .expect("project file");
            let mut chosen = settings();
            chosen.apply_project_file(project.path()).map(|()| chosen)
        };
        let known = choose("https://known.example.com").expect("a known server");
        assert_eq!(known.issuer_id(), "https://known.example.com");
        assert!(matches!(known.issuer_source, IssuerSource::Project(_)));
        let stranger = choose("https://stranger.example.com").expect_err("an unknown server");
        assert!(
            stranger
                .to_string()
                .contains("acme login --issuer https://stranger.example.com"),
            "{stranger}"
        );
    }

    #[test]
    fn env_vars_use_the_apps_own_prefix() {
        let s = resolve(&[
            ("ACME_ISSUER", "http://127.0.0.1:9000"),
            ("ACME_LOGIN_PORT", "1234"),
            ("ACME_LOGIN_WAIT_TIMEOUT", "5"),
            ("ACME_API_KEY", "acme_x"),
            ("ACME_AUTH_URL", "http://127.0.0.1:9000/cli/auth"),
            ("ACME_CLIENT_ID", "acme-cli"),
            ("SSL_CERT_FILE", "/etc/corp-ca.pem"),
            ("LATCHKEY_API_KEY", "ignored"),
        ])
        .expect("valid");
        assert_eq!(s.issuer_id(), "http://127.0.0.1:9000");
        assert_eq!(s.issuer_host(), "127.0.0.1:9000");
        assert_eq!(s.login_port, 1234);
        assert_eq!(s.wait_timeout, Duration::from_secs(5));
        assert_eq!(s.env_api_key.as_deref(), Some("acme_x"));
        assert_eq!(
            s.auth_url.map(String::from).as_deref(),
            Some("http://127.0.0.1:9000/cli/auth")
        );
        assert_eq!(s.client_id, "acme-cli");
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/etc/corp-ca.pem")));
    }

    #[test]
    fn plain_http_to_a_remote_issuer_is_refused() {
        let e = resolve(&[("ACME_ISSUER", "http://auth.acme.dev")]).expect_err("refused");
        assert!(e.to_string().contains("use https"), "{e}");
        assert!(resolve(&[("ACME_LOGIN_WAIT_TIMEOUT", "600")]).is_err());
        assert!(resolve(&[("ACME_LOGIN_PORT", "http")]).is_err());
    }
}
