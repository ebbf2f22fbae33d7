//! The latchkey service's domain: accounts, token flows and API keys, written against the
//! [`Store`] trait. It knows nothing of HTTP or SQL; the clock is a parameter ([`Clock`]) so
//! expiry is tested without waiting.

pub mod account;
pub mod api_key;
pub mod billing;
mod changes;
pub mod console;
pub mod federation;
pub mod handoff;
pub mod machine;
pub mod mail;
pub mod master_key;
pub mod oauth;
pub mod org;
pub mod passkeys;
pub mod profile;
mod row_cache;
pub mod seal;
pub mod second_factor;
pub mod signing;
pub mod store;
pub mod throttle;
pub mod token_flow;
pub mod upstream;
pub mod wake;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use latchkey_proto::KeyPrefix;
use time::OffsetDateTime;

pub use account::{AccountError, Email, Password, VerificationStep};
pub use api_key::{ApiKeyError, KeyPrincipal};
pub use mail::{Mail, MailError, Mailer};
pub use oauth::OAuthError;
pub use signing::{AccessGrant, AccessTokenError, SigningError};
pub use store::{Store, StoreError};
pub use token_flow::TokenFlowError;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Lifetimes and limits a deployment may tune.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where people reach the service: links in emails and `web_url` are built on it.
    pub public_url: String,
    /// What the tool maker calls the service (`[brand] product_name`): the built-in CLI client
    /// is "<product> CLI".
    pub product_name: String,
    pub key_prefix: KeyPrefix,
    pub token_flow_ttl: Duration,
    /// How long after first delivery a lost wait response may be fetched again.
    pub redelivery_window: Duration,
    pub session_ttl: Duration,
    pub verification_ttl: Duration,
    /// How long an account may stay unverified before it is deleted (and its email freed).
    pub unverified_account_ttl: Duration,
    pub password_reset_ttl: Duration,
    /// How long a verified API key is served from memory before the store is asked again.
    pub key_cache_ttl: Duration,
    pub key_cache_capacity: usize,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How often a token-flow wait reads its flow again even without a wake-up: the backstop
    /// for a cross-replica notification that never arrived.
    pub wait_recheck: Duration,
    /// OAuth clients from the config file, registered at start.
    pub declared_clients: Vec<oauth::DeclaredClient>,
    /// Static machine clients that trade their secret for a short-lived API key.
    pub machine_clients: Vec<machine::MachineClient>,
    /// Admit `http://` client metadata documents on loopback addresses (development, tests).
    pub client_metadata_insecure_loopback: bool,
    /// Whether clients may register themselves as confidential (RFC 7591); public clients
    /// always may.
    pub registration_allows_confidential: bool,
    /// Whether people may sign up, sign in and reset with a password; off in deployments that
    /// sign everyone in through identity providers (SSO only).
    pub password_sign_in: bool,
    /// The resources (RFC 8707, canonical) tokens may be asked for; empty allows any.
    pub allowed_resources: Vec<String>,
    /// The algorithm access tokens are signed with, unless a client registered another.
    pub access_token_alg: latchkey_proto::jws::Algorithm,
    /// Seals the signing keys at rest. `latchkey serve` always has one; without it (tests,
    /// benchmarks) keys are stored in the clear.
    pub master_key: Option<master_key::MasterKey>,
    /// The tiers people buy and what they grant.
    pub plans: billing::Plans,
    /// Stripe's webhook secrets and price → tier map; `None`: no Stripe.
    pub stripe: Option<billing::stripe::StripeSettings>,
}

impl Policy {
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            product_name: "latchkey".to_owned(),
            key_prefix: KeyPrefix::default(),
            token_flow_ttl: Duration::from_secs(10 * 60),
            redelivery_window: Duration::from_secs(60),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            verification_ttl: Duration::from_secs(24 * 3600),
            unverified_account_ttl: Duration::from_secs(24 * 3600),
            password_reset_ttl: Duration::from_secs(30 * 60),
            key_cache_ttl: Duration::from_secs(60),
            key_cache_capacity: 100_000,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            wait_recheck: Duration::from_secs(5),
            declared_clients: Vec::new(),
            machine_clients: Vec::new(),
            client_metadata_insecure_loopback: false,
            master_key: None,
            allowed_resources: Vec::new(),
            access_token_alg: latchkey_proto::jws::Algorithm::EdDSA,
            registration_allows_confidential: false,
            password_sign_in: true,
            plans: billing::Plans::default(),
            stripe: None,
        }
    }
}

/// The application layer the HTTP handlers call. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mailer: Arc<dyn Mailer>,
    policy: Policy,
    wake: wake::WakeHub,
    keys: api_key::KeyCache,
    /// Orgs' subscriptions as stored: the in-process gate asks for a caller's standing at
    /// every request.
    subscriptions: billing::SubscriptionCache,
    usage: api_key::UsageCounter,
    signing: std::sync::RwLock<Arc<signing::KeyRing>>,
    /// Registered OAuth clients by id, read through on the token path (see `Service::client`).
    clients: oauth::ClientCache,
    /// The WebAuthn relying party for the public URL; `None` when it has no domain name.
    webauthn: Option<webauthn_rs::Webauthn>,
    /// Set once at start by the HTTP layer; without it, URL client ids are unknown clients.
    client_metadata: std::sync::OnceLock<Arc<dyn oauth::client_metadata::ClientMetadataFetcher>>,
    stats: Stats,
}

/// Counters (and one gauge) the server exposes on `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Token-flow waits being held open right now (a gauge).
    pub token_flow_waits_open: AtomicU64,
    pub api_keys_verified: AtomicU64,
    pub api_keys_refused_by_format: AtomicU64,
    pub api_key_store_lookups: AtomicU64,
    pub token_flows_created: AtomicU64,
    pub token_flows_approved: AtomicU64,
    pub token_flows_delivered: AtomicU64,
    pub sign_ins_failed: AtomicU64,
    pub refresh_reuse_detected: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Holds a gauge one higher for as long as it lives, however the holder ends.
pub(crate) struct GaugeHold<'a>(&'a AtomicU64);

impl<'a> GaugeHold<'a> {
    pub(crate) fn enter(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for GaugeHold<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        mailer: Arc<dyn Mailer>,
        policy: Policy,
    ) -> Self {
        let keys = api_key::KeyCache::new(policy.key_cache_capacity, policy.key_cache_ttl);
        let subscriptions =
            billing::SubscriptionCache::new(policy.key_cache_capacity, policy.key_cache_ttl);
        let webauthn = passkeys::relying_party(&policy.public_url, &policy.product_name);
        Self {
            inner: Arc::new(Inner {
                webauthn,
                store,
                clock,
                mailer,
                wake: wake::WakeHub::default(),
                keys,
                subscriptions,
                usage: api_key::UsageCounter::default(),
                signing: std::sync::RwLock::default(),
                client_metadata: std::sync::OnceLock::new(),
                clients: oauth::ClientCache::default(),
                stats: Stats::default(),
                policy,
            }),
        }
    }

    /// Lets URL client ids (Client ID Metadata Documents) be resolved through `fetcher`.
    pub fn set_client_metadata_fetcher(
        &self,
        fetcher: Arc<dyn oauth::client_metadata::ClientMetadataFetcher>,
    ) {
        let _ = self.inner.client_metadata.set(fetcher);
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    pub async fn ready(&self) -> Result<(), StoreError> {
        self.inner.store.ping().await
    }

    /// The process is stopping: every held token-flow wait answers "not yet" now, and new ones
    /// at once, so no CLI's long-poll holds the shutdown up to its timeout.
    pub fn end_waits(&self) {
        self.inner.wake.close();
    }

    /// The store's feed of changes committed by other replicas, if it has any.
    pub async fn watch_changes(&self) -> Result<Option<store::ChangeFeed>, StoreError> {
        self.inner.store.watch_changes().await
    }

    /// Removes rows past use, one bounded batch (each a short transaction) after another until
    /// a batch comes back short, at most 100 a run: up to 100,000 rows of each kind a run,
    /// without ever holding a long transaction. Run periodically.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        const BATCH: u32 = 1000;
        let mut swept = 0;
        for _ in 0..100 {
            let now = self.now();
            let policy = &self.inner.policy;
            let delivered_before = now - policy.redelivery_window;
            let unverified_before = now - policy.unverified_account_ttl;
            let audit_before = now - console::AUDIT_RETENTION;
            let batch = self
                .inner
                .store
                .sweep_expired(
                    now,
                    delivered_before,
                    unverified_before,
                    audit_before,
                    BATCH,
                )
                .await?;
            swept += batch;
            if batch < u64::from(BATCH) {
                break;
            }
        }
        Ok(swept)
    }
}

/// A new record id: a type prefix and 20 base62 characters (119 bits), unguessable and unique
/// enough to be primary keys without coordination. Ids are not secrets: the thread-local CSPRNG
/// (seeded from the OS) spares a system call per id on the token hot path.
pub(crate) fn new_id(kind: &str) -> String {
    format!(
        "{kind}_{}",
        latchkey_proto::base62::random(&mut rand::thread_rng(), 20)
    )
}
