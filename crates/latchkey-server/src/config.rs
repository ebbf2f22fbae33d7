//! `latchkey serve` configuration, in two stages: raw options ([`ServeOptions`], the same
//! shape from flags, `LATCHKEY_*` env vars and a TOML file, in that order of precedence), then a
//! ready [`ServeConfig`] with every default applied and every value checked.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use latchkey_core::{
    machine::{MachineClient, check_machine_client_id},
    master_key::MasterKey,
    oauth::DeclaredClient,
};
use latchkey_proto::{KeyPrefix, SecretHash, jws::Algorithm};
use serde::Deserialize;
use thiserror::Error;

use crate::upstream::config::identity_provider;
pub use crate::upstream::config::{IdentityProviderOption, UpstreamProvider};

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
    /// Database URL: `postgres://…` for several replicas on one database, `sqlite:…`, or by
    /// default SQLite in the data directory.
    #[arg(long, env = "LATCHKEY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connections this replica may open (default 16; one more listens for changes).
    #[arg(long, env = "LATCHKEY_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,
    /// Prefix of the API keys this deployment issues (`lk` gives `lk_…`).
    #[arg(long, env = "LATCHKEY_KEY_PREFIX", value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// File holding the master key (32 random bytes in base64) that seals the token-signing
    /// keys at rest. Required outside --dev, where <data dir>/master.key is made if missing.
    #[arg(long, env = "LATCHKEY_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, instead of a file (prefer the environment variable to the flag,
    /// which other local users can read in the process list).
    #[arg(
        long,
        env = "LATCHKEY_MASTER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    #[serde(skip)]
    pub master_key: Option<String>,
    /// Stripe's webhook signing secrets (`whsec_…`, comma-separated while rotating), instead
    /// of `[stripe] webhook_secrets` in the file (keep secrets out of config files).
    #[arg(
        long = "stripe-webhook-secret",
        env = "LATCHKEY_STRIPE_WEBHOOK_SECRETS",
        value_name = "SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(skip)]
    pub stripe_webhook_secrets: Vec<String>,
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
    /// Fetch Client ID Metadata Documents over plain http from loopback addresses. For local
    /// development and tests only: never in production.
    #[arg(long, env = "LATCHKEY_CLIENT_METADATA_INSECURE_LOOPBACK")]
    #[serde(default)]
    pub client_metadata_insecure_loopback: bool,
    /// Also run the gate in this process, in front of this upstream: API keys are checked
    /// against the store directly, so a revoked key is refused at once.
    #[arg(long, env = "LATCHKEY_GATE_UPSTREAM", value_name = "URL")]
    pub gate_upstream: Option<String>,
    /// Where the in-process gate listens.
    #[arg(long, env = "LATCHKEY_GATE_LISTEN", value_name = "ADDR")]
    pub gate_listen: Option<SocketAddr>,
    /// A web origin whose pages may call through the in-process gate (CORS), as
    /// scheme://host[:port] (repeat, or comma-separated).
    #[arg(
        long = "gate-cors-origin",
        env = "LATCHKEY_GATE_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub gate_cors_origins: Vec<String>,
    /// The in-process gate admits only callers whose org's subscription grants this
    /// entitlement; others get 403 `subscription_required` with the org's subscribe URL.
    #[arg(long, env = "LATCHKEY_GATE_REQUIRE_ENTITLEMENT", value_name = "NAME")]
    pub gate_require_entitlement: Option<String>,
    /// A path prefix the in-process gate passes without a credential (repeat, or
    /// comma-separated), as `latchkey gate --public`.
    #[arg(
        long = "gate-public",
        env = "LATCHKEY_GATE_PUBLIC",
        value_name = "PATH",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub gate_public: Vec<String>,
    /// The in-process gate admits only credentials with this scope (403 `insufficient_scope`
    /// otherwise), as `latchkey gate --require-scope`.
    #[arg(long, env = "LATCHKEY_GATE_REQUIRE_SCOPE", value_name = "SCOPE")]
    pub gate_require_scope: Option<String>,
    /// Requests a second per credential through the in-process gate (default 50; 0:
    /// unlimited), as `latchkey gate --rate-limit-per-key`.
    #[arg(long, env = "LATCHKEY_GATE_RATE_LIMIT_PER_KEY", value_name = "N")]
    pub gate_rate_limit_per_key: Option<u32>,
    /// Requests a second per client address through the in-process gate (default 100; 0:
    /// unlimited), as `latchkey gate --rate-limit-per-ip`.
    #[arg(long, env = "LATCHKEY_GATE_RATE_LIMIT_PER_IP", value_name = "N")]
    pub gate_rate_limit_per_ip: Option<u32>,
    /// Threads serving the in-process gate, each with its own listening socket, runtime and
    /// upstream connections, apart from the issuer's (default: one for each core), as
    /// `latchkey gate --workers`.
    #[arg(long, env = "LATCHKEY_GATE_WORKERS", value_name = "N")]
    pub gate_workers: Option<usize>,
    /// The in-process gate forwards over HTTP/2 (h2c) instead of HTTP/1.1, so that streams
    /// share upstream connections, as `latchkey gate --upstream-http2`.
    #[arg(long, env = "LATCHKEY_GATE_UPSTREAM_HTTP2")]
    #[serde(default)]
    pub gate_upstream_http2: bool,
    /// Streams on one of that gate's HTTP/2 upstream connections before another is opened
    /// (default 100), as `latchkey gate --upstream-http2-streams`.
    #[arg(long, env = "LATCHKEY_GATE_UPSTREAM_HTTP2_STREAMS", value_name = "N")]
    pub gate_upstream_http2_streams: Option<usize>,
    /// Another audience whose JWTs the in-process gate accepts (repeat, or comma-separated;
    /// the issuer and the gate's own URL always are), as `latchkey gate --audience`.
    #[arg(
        long = "gate-audience",
        env = "LATCHKEY_GATE_AUDIENCES",
        value_name = "URI",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub gate_audiences: Vec<String>,
    /// Serve `/metrics` (Prometheus) on this address, apart from the public one; without it,
    /// metrics are not served.
    #[arg(long, env = "LATCHKEY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Addresses of the reverse proxies in front of this service (comma-separated): from
    /// them, the client's address is read from `X-Forwarded-For`, for per-IP throttles.
    #[arg(
        long,
        env = "LATCHKEY_TRUSTED_PROXIES",
        value_name = "IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Resources (RFC 8707: your APIs and MCP servers, as their gates advertise them) tokens
    /// may be asked for (repeat, or comma-separated); unset, any resource is accepted.
    #[arg(
        long = "allowed-resource",
        env = "LATCHKEY_ALLOWED_RESOURCES",
        value_name = "URI",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_resources: Vec<String>,
    /// Let clients register themselves as confidential (RFC 7591 `client_secret_basic` or
    /// `client_secret_post`); public clients always may. In the file: `[registration]
    /// allow_confidential = true`.
    #[arg(long, env = "LATCHKEY_REGISTRATION_ALLOW_CONFIDENTIAL")]
    #[serde(skip)]
    pub registration_allow_confidential: bool,
    /// The algorithm access tokens are signed with: EdDSA (the default), RS256 or ES256 (for
    /// gateways and JWT libraries without EdDSA). A client may register its own
    /// (`access_token_signed_response_alg`).
    #[arg(long, env = "LATCHKEY_ACCESS_TOKEN_ALG", value_name = "ALG")]
    pub access_token_alg: Option<String>,
    /// `[registration]` in the TOML file.
    #[arg(skip)]
    #[serde(default)]
    pub registration: RegistrationOptions,
    /// OAuth clients (`[[oauth_clients]]` in the TOML file only), registered at every start.
    #[arg(skip)]
    #[serde(default)]
    pub oauth_clients: Vec<OAuthClientOption>,
    /// Static machine clients for `POST /auth/client` (`[[machine_clients]]`, TOML only).
    #[arg(skip)]
    #[serde(default)]
    pub machine_clients: Vec<MachineClientOption>,
    /// Upstream identity providers people may sign in with (`[[identity_providers]]`, TOML
    /// only).
    #[arg(skip)]
    #[serde(default)]
    pub identity_providers: Vec<IdentityProviderOption>,
    /// `password_sign_in = false` (TOML only): people sign up and in only through the
    /// identity providers (SSO only); password sign-in, sign-up and resets are refused.
    #[arg(skip)]
    pub password_sign_in: Option<bool>,
    /// External OIDC issuers whose tokens CI jobs exchange for org tokens
    /// (`[[trusted_issuers]]`, TOML only).
    #[arg(skip)]
    #[serde(default)]
    pub trusted_issuers: Vec<crate::federation::TrustedIssuerOption>,
    /// What each tier grants (`[tiers.<name>] entitlements = […]`, TOML only).
    #[arg(skip)]
    #[serde(default)]
    pub tiers: std::collections::BTreeMap<String, TierOption>,
    /// `[billing]` (TOML only).
    #[arg(skip)]
    #[serde(default)]
    pub billing: BillingOptions,
    /// `[stripe]` (TOML only): webhook secrets and which tier each price sells.
    #[arg(skip)]
    pub stripe: Option<StripeOptions>,
    /// `[brand]` (TOML only): the product name, logo, colour, support link and footer pages
    /// and mails show.
    #[arg(skip)]
    #[serde(default)]
    pub brand: crate::pages::brand::BrandOptions,
}

/// `[tiers.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierOption {
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Where this tier is bought (`{org_id}` becomes the org's id).
    pub subscribe_url: Option<String>,
}

/// `[billing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingOptions {
    /// The tier of an org that has bought nothing (default `free`).
    pub default_tier: Option<String>,
    /// How long a `past_due` subscription keeps its entitlements past its period (default 7).
    pub past_due_grace_days: Option<u64>,
    /// Where orgs subscribe (`{org_id}` becomes the org's id).
    pub subscribe_url: Option<String>,
    /// Where subscribed orgs manage billing (Stripe's customer portal link).
    pub manage_url: Option<String>,
}

/// `[stripe]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeOptions {
    /// The webhook endpoint's signing secrets (`whsec_…`); two while rotating.
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// Stripe price id → tier.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, String>,
}

/// `[registration]`: what dynamic client registration (RFC 7591) offers.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationOptions {
    #[serde(default)]
    pub allow_confidential: bool,
}

/// `[[oauth_clients]]`: a client with no `secret_sha256` is public (loopback redirects only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientOption {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// SHA-256 of the client secret in hex (`printf %s "$SECRET" | sha256sum`): the secret
    /// itself is never written in the config.
    pub secret_sha256: Option<String>,
    /// Where OpenID Connect RP-initiated logout may send the browser back to.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// `[[machine_clients]]`: trades `client_id` + its secret for an API key at `/auth/client`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineClientOption {
    pub client_id: String,
    /// SHA-256 of the client secret in hex.
    pub secret_sha256: String,
    /// Lifetime of each key it gets, in seconds (default one day).
    pub key_ttl_secs: Option<u64>,
}

impl ServeOptions {
    /// Flags and env win; the file fills what they left unset.
    pub fn or(self, file: ServeOptions) -> ServeOptions {
        ServeOptions {
            listen: self.listen.or(file.listen),
            public_url: self.public_url.or(file.public_url),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            database_max_connections: self
                .database_max_connections
                .or(file.database_max_connections),
            key_prefix: self.key_prefix.or(file.key_prefix),
            master_key_file: self.master_key_file.or(file.master_key_file),
            master_key: self.master_key,
            stripe_webhook_secrets: self.stripe_webhook_secrets,
            dev: self.dev || file.dev,
            smtp_url: self.smtp_url.or(file.smtp_url),
            mail_from: self.mail_from.or(file.mail_from),
            usage_flush_secs: self.usage_flush_secs.or(file.usage_flush_secs),
            client_metadata_insecure_loopback: self.client_metadata_insecure_loopback
                || file.client_metadata_insecure_loopback,
            gate_upstream: self.gate_upstream.or(file.gate_upstream),
            gate_listen: self.gate_listen.or(file.gate_listen),
            admin_listen: self.admin_listen.or(file.admin_listen),
            trusted_proxies: if self.trusted_proxies.is_empty() {
                file.trusted_proxies
            } else {
                self.trusted_proxies
            },
            allowed_resources: if self.allowed_resources.is_empty() {
                file.allowed_resources
            } else {
                self.allowed_resources
            },
            gate_require_entitlement: self
                .gate_require_entitlement
                .or(file.gate_require_entitlement),
            gate_public: if self.gate_public.is_empty() {
                file.gate_public
            } else {
                self.gate_public
            },
            gate_require_scope: self.gate_require_scope.or(file.gate_require_scope),
            gate_rate_limit_per_key: self
                .gate_rate_limit_per_key
                .or(file.gate_rate_limit_per_key),
            gate_rate_limit_per_ip: self.gate_rate_limit_per_ip.or(file.gate_rate_limit_per_ip),
            gate_workers: self.gate_workers.or(file.gate_workers),
            gate_upstream_http2: self.gate_upstream_http2 || file.gate_upstream_http2,
            gate_upstream_http2_streams: self
                .gate_upstream_http2_streams
                .or(file.gate_upstream_http2_streams),
            gate_audiences: if self.gate_audiences.is_empty() {
                file.gate_audiences
            } else {
                self.gate_audiences
            },
            gate_cors_origins: if self.gate_cors_origins.is_empty() {
                file.gate_cors_origins
            } else {
                self.gate_cors_origins
            },
            registration_allow_confidential: self.registration_allow_confidential
                || file.registration_allow_confidential,
            access_token_alg: self.access_token_alg.or(file.access_token_alg),
            registration: RegistrationOptions {
                allow_confidential: self.registration.allow_confidential
                    || file.registration.allow_confidential,
            },
            oauth_clients: [self.oauth_clients, file.oauth_clients].concat(),
            machine_clients: [self.machine_clients, file.machine_clients].concat(),
            identity_providers: [self.identity_providers, file.identity_providers].concat(),
            password_sign_in: self.password_sign_in.or(file.password_sign_in),
            trusted_issuers: [self.trusted_issuers, file.trusted_issuers].concat(),
            tiers: if self.tiers.is_empty() {
                file.tiers
            } else {
                self.tiers
            },
            billing: BillingOptions {
                default_tier: self.billing.default_tier.or(file.billing.default_tier),
                past_due_grace_days: self
                    .billing
                    .past_due_grace_days
                    .or(file.billing.past_due_grace_days),
                subscribe_url: self.billing.subscribe_url.or(file.billing.subscribe_url),
                manage_url: self.billing.manage_url.or(file.billing.manage_url),
            },
            stripe: self.stripe.or(file.stripe),
            brand: file.brand,
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
    #[error(transparent)]
    Brand(#[from] crate::pages::brand::BrandError),
    #[error(
        "the tier \u{201c}{0}\u{201d} is named in [billing] or [stripe.prices] but has no \
         [tiers.{0}] section"
    )]
    UnknownTier(String),
    #[error(
        "[stripe] needs the endpoint's signing secret (whsec_…): LATCHKEY_STRIPE_WEBHOOK_SECRETS \
         or webhook_secrets"
    )]
    NoStripeSecret,
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
    #[error(
        "listening on {0}, where other machines reach it, needs the URL they use: pass \
         --public-url https://<host> (the https address of this server, or of the TLS proxy in \
         front of it)"
    )]
    NoPublicUrl(SocketAddr),
    #[error("database_url must start with postgres://, postgresql:// or sqlite:")]
    DatabaseUrl,
    #[error(
        "database_max_connections must be between 1 and 1000, and needs a postgres:// database_url"
    )]
    DatabaseMaxConnections,
    #[error("no SMTP server is configured: set smtp_url and mail_from, or run with --dev")]
    NoMail,
    #[error("usage_flush_secs must be between 1 and 3600")]
    UsageFlush,
    #[error("{kind} {id:?}: secret_sha256 must be the 64 hex digits of a SHA-256")]
    SecretHash { kind: &'static str, id: String },
    #[error(
        "OAuth client id {0:?} is reserved or malformed: use letters, digits, '-', '_' and '.', \
         not \"latchkey-cli\" and not starting with \"dcr_\""
    )]
    OAuthClientId(String),
    #[error(transparent)]
    MachineClient(#[from] latchkey_core::machine::MachineClientError),
    #[error("machine client {0:?}: key_ttl_secs must be between 60 and 31536000")]
    MachineKeyTtl(String),
    #[error("gate_cors_origins: {0:?} is not an origin; name each site as scheme://host[:port]")]
    GateCorsOrigin(String),
    #[error("identity provider {id:?}: {why}")]
    IdentityProvider { id: String, why: String },
    #[error("trusted issuer {id:?}: {why}")]
    TrustedIssuer { id: String, why: String },
    #[error(
        "password_sign_in = false needs at least one [[identity_providers]]: otherwise nobody \
         could sign in"
    )]
    NoWayToSignIn,
    #[error("gate_upstream {0:?} is not a URL")]
    GateUpstream(String),
    #[error("gate_workers (--gate-workers) must be at least 1; leave it out for one per core")]
    GateWorkers,
    #[error(
        "gate_upstream_http2_streams (--gate-upstream-http2-streams) must be between 1 and \
         10000, and needs gate_upstream_http2 (--gate-upstream-http2)"
    )]
    GateUpstreamHttp2Streams,
    #[error(
        "no master key: set master_key_file (or LATCHKEY_MASTER_KEY) to a file holding 32 random \
         bytes in base64, made with `head -c 32 /dev/urandom | base64 > master.key`; it seals \
         the token-signing keys at rest"
    )]
    NoMasterKey,
    #[error("access_token_alg: {0:?} is not EdDSA, RS256 or ES256")]
    AccessTokenAlg(String),
    #[error("allowed_resources: {0:?} is not an absolute http(s) URI with a host")]
    AllowedResource(String),
    #[error("LATCHKEY_MASTER_KEY is not valid")]
    MasterKey(#[source] latchkey_core::master_key::MasterKeyError),
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// Given directly (`LATCHKEY_MASTER_KEY`).
    Value(MasterKey),
    /// Read from a file at start.
    File(PathBuf),
    /// `--dev`: read from the data directory, made there (0600) on first start.
    DevFile(PathBuf),
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

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// One process on a SQLite file: the data directory's `latchkey.db` by default.
    SqliteFile(PathBuf),
    /// One process on any `sqlite:` URL.
    SqliteUrl(String),
    /// Any number of replicas on one PostgreSQL database.
    Postgres { url: String, max_connections: u32 },
}

fn database(
    url: Option<String>,
    max_connections: Option<u32>,
    data_dir: &std::path::Path,
) -> Result<Database, ConfigError> {
    let Some(url) = url else {
        return match max_connections {
            Some(_) => Err(ConfigError::DatabaseMaxConnections),
            None => Ok(Database::SqliteFile(data_dir.join("latchkey.db"))),
        };
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match max_connections.unwrap_or(16) {
            n @ 1..=1000 => Ok(Database::Postgres {
                url,
                max_connections: n,
            }),
            _ => Err(ConfigError::DatabaseMaxConnections),
        };
    }
    if !url.starts_with("sqlite:") {
        return Err(ConfigError::DatabaseUrl);
    }
    if max_connections.is_some() {
        return Err(ConfigError::DatabaseMaxConnections);
    }
    Ok(Database::SqliteUrl(url))
}

/// The gate `serve --gate-upstream` runs beside the service.
#[derive(Debug, Clone)]
pub struct InProcessGate {
    pub upstream: url::Url,
    pub listen: SocketAddr,
    /// Origins, checked, whose pages may call through it (CORS).
    pub cors_origins: Vec<String>,
    /// An entitlement callers' subscriptions must grant.
    pub require_entitlement: Option<String>,
    /// Path prefixes that pass without a credential.
    pub public_paths: Vec<String>,
    /// A scope every credential must have.
    pub require_scope: Option<String>,
    /// Requests a second per credential and per client address (0: unlimited).
    pub rate_limit_per_credential: u32,
    pub rate_limit_per_ip: u32,
    /// Threads serving it, apart from the issuer's runtime (none given: one per core).
    pub workers: Option<usize>,
    /// HTTP/2 (h2c) to the upstream instead of HTTP/1.1, this many streams a connection.
    pub upstream_http2: Option<usize>,
    /// Audiences accepted besides the issuer and the gate's own URL.
    pub audiences: Vec<String>,
}

/// Everything `serve` needs, checked. `public_url` is `None` until the listener is bound when
/// it derives from the listen address.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub public_url: Option<url::Url>,
    pub data_dir: PathBuf,
    pub database: Database,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub key_prefix: KeyPrefix,
    pub master_key: MasterKeySource,
    pub dev: bool,
    pub mail: MailConfig,
    pub usage_flush: Duration,
    pub declared_clients: Vec<DeclaredClient>,
    pub machine_clients: Vec<MachineClient>,
    pub identity_providers: Vec<UpstreamProvider>,
    /// Whether passwords sign people up and in (off: SSO only).
    pub password_sign_in: bool,
    pub trusted_issuers: Vec<crate::federation::TrustedIssuerConfig>,
    pub client_metadata_insecure_loopback: bool,
    /// The in-process gate, if one runs.
    pub gate: Option<InProcessGate>,
    /// Where `/metrics` is served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// The resources tokens may be asked for, canonical (empty: any).
    pub allowed_resources: Vec<String>,
    /// Whether clients may register themselves as confidential.
    pub registration_allows_confidential: bool,
    /// What access tokens are signed with, unless their client registered another.
    pub access_token_alg: Algorithm,
    pub plans: latchkey_core::billing::Plans,
    pub stripe: Option<latchkey_core::billing::stripe::StripeSettings>,
    pub brand: crate::pages::brand::Brand,
}

/// The tiers, the billing rules and Stripe's settings, checked: the default tier and every
/// price's tier must be tiers.
fn billing_plans(
    tiers: std::collections::BTreeMap<String, TierOption>,
    billing: BillingOptions,
    stripe: Option<StripeOptions>,
) -> Result<
    (
        latchkey_core::billing::Plans,
        Option<latchkey_core::billing::stripe::StripeSettings>,
    ),
    ConfigError,
> {
    let defaults = latchkey_core::billing::Plans::default();
    let default_tier = billing.default_tier.unwrap_or(defaults.default_tier);
    let tier_subscribe_urls = tiers
        .iter()
        .filter_map(|(name, tier)| Some((name.clone(), tier.subscribe_url.clone()?)))
        .collect();
    let mut tiers: std::collections::BTreeMap<String, Vec<String>> = tiers
        .into_iter()
        .map(|(name, tier)| (name, tier.entitlements))
        .collect();
    tiers.entry(default_tier.clone()).or_default();
    let known = |tier: &str| {
        tiers
            .contains_key(tier)
            .then_some(())
            .ok_or_else(|| ConfigError::UnknownTier(tier.to_owned()))
    };
    let stripe = match stripe {
        Some(stripe) => {
            if stripe.webhook_secrets.iter().all(|s| s.trim().is_empty()) {
                return Err(ConfigError::NoStripeSecret);
            }
            for tier in stripe.prices.values() {
                known(tier)?;
            }
            Some(latchkey_core::billing::stripe::StripeSettings {
                webhook_secrets: stripe.webhook_secrets,
                prices: stripe.prices.into_iter().collect(),
            })
        }
        None => None,
    };
    let grace = billing.past_due_grace_days.map_or(defaults.grace, |days| {
        Duration::from_secs(days * 24 * 60 * 60)
    });
    Ok((
        latchkey_core::billing::Plans {
            tiers,
            default_tier,
            grace,
            subscribe_url: billing.subscribe_url,
            tier_subscribe_urls,
            manage_url: billing.manage_url,
        },
        stripe,
    ))
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

fn secret_hash(kind: &'static str, id: &str, hex: &str) -> Result<SecretHash, ConfigError> {
    SecretHash::from_hex(hex).ok_or_else(|| ConfigError::SecretHash {
        kind,
        id: id.to_owned(),
    })
}

fn declared_client(o: OAuthClientOption) -> Result<DeclaredClient, ConfigError> {
    let reserved = o.id == latchkey_core::oauth::CLI_CLIENT_ID || o.id.starts_with("dcr_");
    if reserved || check_machine_client_id(&o.id).is_err() {
        return Err(ConfigError::OAuthClientId(o.id));
    }
    let secret_hash = o
        .secret_sha256
        .as_deref()
        .map(|hex| secret_hash("OAuth client", &o.id, hex))
        .transpose()?;
    Ok(DeclaredClient {
        id: o.id,
        name: o.name,
        redirect_uris: o.redirect_uris,
        secret_hash,
        post_logout_redirect_uris: o.post_logout_redirect_uris,
    })
}

fn machine_client(o: MachineClientOption) -> Result<MachineClient, ConfigError> {
    check_machine_client_id(&o.client_id)?;
    let key_ttl = match o.key_ttl_secs.unwrap_or(86_400) {
        secs @ 60..=31_536_000 => Duration::from_secs(secs),
        _ => return Err(ConfigError::MachineKeyTtl(o.client_id)),
    };
    Ok(MachineClient {
        secret_hash: secret_hash("machine client", &o.client_id, &o.secret_sha256)?,
        id: o.client_id,
        key_ttl,
    })
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
        let database = database(o.database_url, o.database_max_connections, &data_dir)?;
        let master_key = match (o.master_key, o.master_key_file) {
            (Some(value), _) => {
                MasterKeySource::Value(MasterKey::parse(&value).map_err(ConfigError::MasterKey)?)
            }
            (None, Some(path)) => MasterKeySource::File(path),
            (None, None) if o.dev => MasterKeySource::DevFile(data_dir.join("master.key")),
            (None, None) => return Err(ConfigError::NoMasterKey),
        };
        let usage_flush = match o.usage_flush_secs.unwrap_or(10) {
            secs @ 1..=3600 => Duration::from_secs(secs),
            _ => return Err(ConfigError::UsageFlush),
        };
        let declared_clients = o
            .oauth_clients
            .into_iter()
            .map(declared_client)
            .collect::<Result<_, _>>()?;
        let machine_clients = o
            .machine_clients
            .into_iter()
            .map(machine_client)
            .collect::<Result<_, _>>()?;
        let identity_providers = o
            .identity_providers
            .into_iter()
            .map(identity_provider)
            .collect::<Result<Vec<_>, _>>()?;
        let trusted_issuers = o
            .trusted_issuers
            .into_iter()
            .map(crate::federation::trusted_issuer)
            .collect::<Result<_, _>>()?;
        let password_sign_in = o.password_sign_in.unwrap_or(true);
        if !password_sign_in && identity_providers.is_empty() {
            return Err(ConfigError::NoWayToSignIn);
        }
        let gate = match o.gate_upstream {
            Some(raw) => Some(InProcessGate {
                upstream: url::Url::parse(&raw)
                    .map_err(|_| ConfigError::GateUpstream(raw.clone()))?,
                listen: o
                    .gate_listen
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081))),
                require_entitlement: o.gate_require_entitlement,
                public_paths: o.gate_public,
                require_scope: o.gate_require_scope,
                rate_limit_per_credential: o.gate_rate_limit_per_key.unwrap_or(50),
                rate_limit_per_ip: o.gate_rate_limit_per_ip.unwrap_or(100),
                workers: match o.gate_workers {
                    Some(0) => return Err(ConfigError::GateWorkers),
                    workers => workers,
                },
                upstream_http2: latchkey_gate::proxy::upstream_http2(
                    o.gate_upstream_http2,
                    o.gate_upstream_http2_streams,
                )
                .map_err(|_| ConfigError::GateUpstreamHttp2Streams)?,
                audiences: o.gate_audiences,
                cors_origins: o
                    .gate_cors_origins
                    .into_iter()
                    .map(|raw| {
                        latchkey_proto::origin::web_origin(&raw)
                            .ok_or(ConfigError::GateCorsOrigin(raw))
                    })
                    .collect::<Result<_, _>>()?,
            }),
            None => None,
        };
        let allowed_resources = o
            .allowed_resources
            .into_iter()
            .map(|raw| {
                latchkey_proto::resource::canonical_resource(&raw)
                    .ok_or(ConfigError::AllowedResource(raw))
            })
            .collect::<Result<_, _>>()?;
        let access_token_alg = match o.access_token_alg {
            None => Algorithm::EdDSA,
            Some(name) => Algorithm::parse(&name).ok_or(ConfigError::AccessTokenAlg(name))?,
        };
        let stripe = match (o.stripe, o.stripe_webhook_secrets) {
            (stripe, secrets) if secrets.is_empty() => stripe,
            (stripe, webhook_secrets) => Some(StripeOptions {
                webhook_secrets,
                ..stripe.unwrap_or_default()
            }),
        };
        let (plans, stripe) = billing_plans(o.tiers, o.billing, stripe)?;
        Ok(ServeConfig {
            brand: crate::pages::brand::Brand::from_options(o.brand)?,
            plans,
            stripe,
            access_token_alg,
            registration_allows_confidential: o.registration_allow_confidential
                || o.registration.allow_confidential,
            allowed_resources,
            gate,
            admin_listen: o.admin_listen,
            client_metadata_insecure_loopback: o.client_metadata_insecure_loopback,
            declared_clients,
            machine_clients,
            identity_providers,
            password_sign_in,
            trusted_issuers,
            listen: o.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url: o.public_url.as_deref().map(check_public_url).transpose()?,
            data_dir,
            database,
            trusted_proxies: o.trusted_proxies,
            key_prefix: o
                .key_prefix
                .as_deref()
                .map(KeyPrefix::parse)
                .transpose()?
                .unwrap_or_default(),
            master_key,
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
    fn passwords_can_be_turned_off_only_where_a_provider_signs_people_in() {
        let file: ServeOptions =
            toml::from_str("dev = true\npassword_sign_in = false\n").expect("valid toml");
        assert!(matches!(
            ServeConfig::try_from(ServeOptions::default().or(file)),
            Err(ConfigError::NoWayToSignIn)
        ));
        let file: ServeOptions = toml::from_str(
            "dev = true\npassword_sign_in = false\n[[identity_providers]]\nid = \"corp\"\n\
             kind = \"oidc\"\ndisplay_name = \"Corp\"\nissuer = \"https://idp.example\"\n\
             client_id = \"c\"\nclient_secret_env = \"PATH\"\n",
        )
        .expect("valid toml");
        let config = ServeConfig::try_from(ServeOptions::default().or(file)).expect("valid");
        assert!(!config.password_sign_in);
    }

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
    fn the_in_process_gate_refuses_non_origins_zero_workers_and_stray_stream_caps() {
        let file: ServeOptions = toml::from_str(
            "dev = true\ngate_upstream = \"http://127.0.0.1:9000\"\n\
             gate_cors_origins = [\"https://App.example.com:443\"]\n",
        )
        .expect("valid toml");
        let config = ServeConfig::try_from(ServeOptions::default().or(file)).expect("valid");
        assert_eq!(
            config.gate.map(|g| g.cors_origins),
            Some(vec!["https://app.example.com".to_owned()])
        );
        let wildcard: ServeOptions = toml::from_str(
            "dev = true\ngate_upstream = \"http://127.0.0.1:9000\"\ngate_cors_origins = [\"*\"]\n",
        )
        .expect("valid toml");
        assert!(matches!(
            ServeConfig::try_from(wildcard),
            Err(ConfigError::GateCorsOrigin(_))
        ));
        let no_workers: ServeOptions = toml::from_str(
            "dev = true\ngate_upstream = \"http://127.0.0.1:9000\"\ngate_workers = 0\n",
        )
        .expect("valid toml");
        assert!(matches!(
            ServeConfig::try_from(no_workers),
            Err(ConfigError::GateWorkers)
        ));
        let gate_with = |keys: &str| {
            let file: ServeOptions = toml::from_str(&format!(
                "dev = true\ngate_upstream = \"http://127.0.0.1:9000\"\n{keys}"
            ))
            .expect("valid toml");
            ServeConfig::try_from(file).map(|config| config.gate.map(|g| g.upstream_http2))
        };
        assert_eq!(
            gate_with("").expect("valid"),
            Some(None),
            "HTTP/1.1 unless asked"
        );
        assert_eq!(
            gate_with("gate_upstream_http2 = true\n").expect("valid"),
            Some(Some(100))
        );
        assert_eq!(
            gate_with("gate_upstream_http2 = true\ngate_upstream_http2_streams = 50\n")
                .expect("valid"),
            Some(Some(50))
        );
        for refused in [
            "gate_upstream_http2 = true\ngate_upstream_http2_streams = 0\n",
            "gate_upstream_http2_streams = 50\n",
        ] {
            assert!(
                matches!(
                    gate_with(refused),
                    Err(ConfigError::GateUpstreamHttp2Streams)
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn clients_are_declared_in_the_file_with_hashed_secrets() {
        let hash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
        let file: ServeOptions = toml::from_str(&format!(
            "dev = true\n\
             [[oauth_clients]]\nid = \"dashboard\"\nname = \"Dashboard\"\n\
             redirect_uris = [\"https://app.example.com/cb\"]\nsecret_sha256 = \"{hash}\"\n\
             [[machine_clients]]\nclient_id = \"ci-bot\"\nsecret_sha256 = \"{hash}\"\n"
        ))
        .expect("valid toml");
        let config = ServeConfig::try_from(ServeOptions::default().or(file)).expect("valid");
        assert_eq!(config.declared_clients.len(), 1);
        assert!(config.declared_clients[0].secret_hash.is_some());
        assert_eq!(
            config.machine_clients[0].key_ttl,
            Duration::from_secs(86_400)
        );

        let bad_hash: ServeOptions = toml::from_str(
            "dev = true\n[[machine_clients]]\nclient_id = \"ci\"\nsecret_sha256 = \"secret\"\n",
        )
        .expect("valid toml");
        assert!(matches!(
            ServeConfig::try_from(bad_hash),
            Err(ConfigError::SecretHash { .. })
        ));
        let reserved: ServeOptions =
            toml::from_str("dev = true\n[[oauth_clients]]\nid = \"latchkey-cli\"\nname = \"x\"\n")
                .expect("valid toml");
        assert!(matches!(
            ServeConfig::try_from(reserved),
            Err(ConfigError::OAuthClientId(_))
        ));
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

    #[test]
    fn production_needs_a_master_key_and_dev_keeps_one_in_the_data_dir() {
        let smtp = || ServeOptions {
            smtp_url: Some("smtp://localhost".into()),
            mail_from: Some("auth@example.com".into()),
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::try_from(smtp()),
            Err(ConfigError::NoMasterKey)
        ));
        let given = ServeOptions {
            master_key: Some("not a key".into()),
            ..smtp()
        };
        assert!(matches!(
            ServeConfig::try_from(given),
            Err(ConfigError::MasterKey(_))
        ));
        let file = ServeOptions {
            master_key_file: Some("/run/secrets/master.key".into()),
            ..smtp()
        };
        assert!(matches!(
            ServeConfig::try_from(file).map(|c| c.master_key),
            Ok(MasterKeySource::File(_))
        ));
        let dev = ServeOptions {
            dev: true,
            data_dir: Some("data".into()),
            ..Default::default()
        };
        let source = ServeConfig::try_from(dev).map(|c| c.master_key);
        assert!(
            matches!(&source, Ok(MasterKeySource::DevFile(p)) if p.ends_with("data/master.key")),
            "{source:?}"
        );
    }
}
