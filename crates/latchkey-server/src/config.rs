//! `latchkey serve` configuration, in two stages: raw options ([`ServeOptions`], the same
//! shape from flags, `LATCHKEY_*` env vars and a TOML file, in that order of precedence), then a
//! ready [`ServeConfig`] with every default applied and every value checked.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use latchkey_proto::KeyPrefix;
use serde::Deserialize;
use thiserror::Error;

/// Options as given. Each field comes from its flag, else its env var (clap reads both), else
/// the TOML file.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "LATCHKEY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The URL people and CLIs reach the service at (default: http://<listen address>).
    #[arg(long, env = "LATCHKEY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory for the SQLite database and the dev outbox.
    #[arg(long, env = "LATCHKEY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL; default: sqlite in the data directory.
    #[arg(long, env = "LATCHKEY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Prefix of the API keys this deployment issues (`lk` gives `lk_…`).
    #[arg(long, env = "LATCHKEY_KEY_PREFIX", value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Development mode: emails go to the log and to <data dir>/outbox.jsonl instead of SMTP.
    #[arg(long, env = "LATCHKEY_DEV")]
    #[serde(default)]
    pub dev: bool,
    /// SMTP server for outgoing mail, e.g. smtps://user:pass@smtp.example.com:465
    #[arg(long, env = "LATCHKEY_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,
    /// Sender address for outgoing mail.
    #[arg(long, env = "LATCHKEY_MAIL_FROM", value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// How often API key usage counts are written to the database, in seconds.
    #[arg(long, env = "LATCHKEY_USAGE_FLUSH_SECS", value_name = "SECS")]
    pub usage_flush_secs: Option<u64>,
}

impl ServeOptions {
    /// Flags and env win; the file fills what they left unset.
    pub fn or(self, file: ServeOptions) -> ServeOptions {
        ServeOptions {
            listen: self.listen.or(file.listen),
            public_url: self.public_url.or(file.public_url),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            key_prefix: self.key_prefix.or(file.key_prefix),
            dev: self.dev || file.dev,
            smtp_url: self.smtp_url.or(file.smtp_url),
            mail_from: self.mail_from.or(file.mail_from),
            usage_flush_secs: self.usage_flush_secs.or(file.usage_flush_secs),
        }
    }

    pub fn from_toml_file(path: &Path) -> Result<ServeOptions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("could not read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error(transparent)]
    KeyPrefix(#[from] latchkey_proto::api_key::InvalidKeyPrefix),
    #[error("public_url {0:?} must be an absolute http(s) URL with no query or fragment")]
    PublicUrl(String),
    #[error("public_url {0} uses plain http on a host that is not loopback; use https")]
    InsecurePublicUrl(String),
    #[error("database_url {0:?} is not supported yet: use a sqlite: URL")]
    DatabaseUrl(String),
    #[error("no SMTP server is configured: set smtp_url and mail_from, or run with --dev")]
    NoMail,
    #[error("usage_flush_secs must be between 1 and 3600")]
    UsageFlush,
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// The log and `<data dir>/outbox.jsonl`.
    DevOutbox(PathBuf),
    Smtp {
        url: String,
        from: String,
    },
}

/// Everything `serve` needs, checked. `public_url` is `None` until the listener is bound when
/// it derives from the listen address.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub public_url: Option<url::Url>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub key_prefix: KeyPrefix,
    pub dev: bool,
    pub mail: MailConfig,
    pub usage_flush: Duration,
}

pub(crate) fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(crate) fn check_public_url(raw: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw).map_err(|_| ConfigError::PublicUrl(raw.to_owned()))?;
    let shaped = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.query().is_none()
        && url.fragment().is_none();
    if !shaped {
        return Err(ConfigError::PublicUrl(raw.to_owned()));
    }
    if url.scheme() == "http" && !is_loopback_host(&url) {
        return Err(ConfigError::InsecurePublicUrl(raw.to_owned()));
    }
    Ok(url)
}

impl TryFrom<ServeOptions> for ServeConfig {
    type Error = ConfigError;

    fn try_from(o: ServeOptions) -> Result<Self, Self::Error> {
        let data_dir = o.data_dir.unwrap_or_else(|| PathBuf::from("latchkey-data"));
        let mail = match (o.smtp_url, o.mail_from) {
            (Some(url), Some(from)) => MailConfig::Smtp { url, from },
            _ if o.dev => MailConfig::DevOutbox(data_dir.join("outbox.jsonl")),
            _ => return Err(ConfigError::NoMail),
        };
        if let Some(url) = o
            .database_url
            .as_ref()
            .filter(|u| !u.starts_with("sqlite:"))
        {
            return Err(ConfigError::DatabaseUrl(url.clone()));
        }
        let usage_flush = match o.usage_flush_secs.unwrap_or(10) {
            secs @ 1..=3600 => Duration::from_secs(secs),
            _ => return Err(ConfigError::UsageFlush),
        };
        Ok(ServeConfig {
            listen: o.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url: o.public_url.as_deref().map(check_public_url).transpose()?,
            data_dir,
            database_url: o.database_url,
            key_prefix: o
                .key_prefix
                .as_deref()
                .map(KeyPrefix::parse)
                .transpose()?
                .unwrap_or_default(),
            dev: o.dev,
            mail,
            usage_flush,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_fills_gaps() {
        let flags = ServeOptions {
            key_prefix: Some("acme".into()),
            dev: true,
            ..Default::default()
        };
        let file: ServeOptions = toml::from_str(
            "key_prefix = \"lk\"\npublic_url = \"https://auth.example.com\"\nusage_flush_secs = 5\n",
        )
        .expect("valid toml");
        let config = ServeConfig::try_from(flags.or(file)).expect("valid");
        assert_eq!(config.key_prefix.as_str(), "acme");
        assert_eq!(
            config.public_url.map(|u| u.to_string()),
            Some("https://auth.example.com/".into())
        );
        assert_eq!(config.usage_flush, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<ServeOptions>("listne = \"x\"").is_err());
    }

    #[test]
    fn plain_http_is_only_allowed_on_loopback() {
        assert!(check_public_url("http://127.0.0.1:8080").is_ok());
        assert!(check_public_url("http://localhost:8080").is_ok());
        assert!(matches!(
            check_public_url("http://auth.example.com"),
            Err(ConfigError::InsecurePublicUrl(_))
        ));
        assert!(check_public_url("ftp://x").is_err());
    }

    #[test]
    fn production_without_mail_is_refused() {
        assert!(matches!(
            ServeConfig::try_from(ServeOptions::default()),
            Err(ConfigError::NoMail)
        ));
    }
}
