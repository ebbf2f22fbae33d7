//! Who a presented credential belongs to, decided the way a resource server must: JWTs locally
//! against the issuer's JWKS (cached; refetched, at most every few seconds, when a token names
//! a `kid` not seen yet), then remembered until they expire so a client's next request skips
//! the signature check; API keys by their checksum first and then by introspection at the
//! issuer, behind a short positive and negative cache.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use latchkey_proto::{
    ApiKey, KeyPrefix, SecretHash,
    jws::{self, AccessTokenError},
    oauth::{AccessTokenClaims, IntrospectionResponse, Jwks, RevocationFeed, RevokedAccess},
    scope,
    wire::{KeyUsageReport, UsageReport},
};
use quick_cache::sync::Cache;
use thiserror::Error;
use tokio::sync::Mutex;
use url::Url;

/// Whom a request acts for, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub org_id: String,
    /// The token's scopes, or the API key's when it was made with some; `None` for a key that
    /// carries its account's full rights.
    pub scopes: Option<Vec<String>>,
    /// The tier the org's subscription grants, and its entitlements (as the token states them,
    /// or as the issuer answered for an API key).
    pub subscription_tier: String,
    pub entitlements: Vec<String>,
    /// What per-credential rate limits count against: the key (by a hash prefix), or the
    /// token's subject.
    pub rate_key: String,
    /// The API key's id, for usage reports; `None` for tokens.
    pub key_id: Option<String>,
}

impl Principal {
    /// Who an API key acts for, with the scopes it was made with (or its account's full
    /// rights), rate-limited by the key itself.
    fn for_api_key(key: &str, identity: KeyIdentity, key_id: Option<String>) -> Self {
        Self {
            rate_key: format!("key:{}", &SecretHash::of(key).to_hex()[..16]),
            user_id: identity.user_id,
            org_id: identity.org_id,
            scopes: identity
                .scope
                .map(|scope| scope::scopes(&scope).map(str::to_owned).collect()),
            subscription_tier: identity.subscription_tier,
            entitlements: identity.entitlements,
            key_id,
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| s == scope))
    }
}

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("no credential was presented: send Authorization: Bearer <token> or X-API-Key")]
    Missing,
    #[error(transparent)]
    AccessToken(#[from] AccessTokenError),
    #[error("this API key is not valid: {0}")]
    ApiKeyFormat(#[from] latchkey_proto::ApiKeyFormatError),
    #[error("this API key is not valid: it was revoked, has expired or never existed")]
    ApiKeyRefused,
    /// The issuer could not be asked (its JWKS or introspection endpoint failed).
    #[error("the issuer could not be reached to check the credential")]
    IssuerUnavailable(#[source] reqwest::Error),
    #[error("the credential could not be checked: {0}")]
    AuthorityFailed(String),
}

/// Who an API key acts for, as a gate running inside the issuer learns it: straight from the
/// issuer's own key store, so a revocation is refused at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub user_id: String,
    pub org_id: String,
    /// The key's scopes, space-separated; `None` for a key with its account's full rights.
    pub scope: Option<String>,
    /// What the org's subscription grants now.
    pub subscription_tier: String,
    pub entitlements: Vec<String>,
}

/// An in-process source of API key answers (the issuer itself), instead of introspection.
#[async_trait::async_trait]
pub trait IssuerAuthority: Send + Sync + std::fmt::Debug {
    /// Who `key` acts for, counting the use; `None` when it is not (or no longer) valid.
    async fn authenticate(&self, key: &str) -> Result<Option<KeyIdentity>, String>;
    /// Whether the access token was revoked (by `jti`, its login `sid`, or its holder leaving
    /// its org), asked at every use.
    async fn access_token_revoked(&self, claims: &AccessTokenClaims) -> Result<bool, String>;
}

/// How the verifier reaches and trusts its issuer.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The issuer's URL exactly as it appears in `iss`.
    pub issuer: Url,
    /// Audiences a JWT may be for (this resource's URL, and the issuer's own).
    pub audiences: Vec<String>,
    pub key_prefix: KeyPrefix,
    /// A confidential client of the issuer, for `/oauth/introspect`.
    pub client_id: String,
    pub client_secret: String,
    /// How long a valid API key is trusted without asking again: the most a revocation waits.
    pub positive_ttl: Duration,
    /// How long a refused API key stays refused without asking again.
    pub negative_ttl: Duration,
    /// When set (a gate inside `latchkey serve`), API keys are answered by it, uncached, and
    /// the client credentials above are not used.
    pub issuer_authority: Option<Arc<dyn IssuerAuthority>>,
}

impl VerifierConfig {
    pub fn new(issuer: Url, client_id: &str, client_secret: &str) -> Self {
        let issuer_str = issuer.as_str().trim_end_matches('/').to_owned();
        Self {
            audiences: vec![issuer_str],
            issuer,
            key_prefix: KeyPrefix::default(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            positive_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            issuer_authority: None,
        }
    }
}

/// JWKS refetches on an unknown `kid` are at most this frequent, so garbage `kid`s cannot turn
/// the gate into a load generator against the issuer.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

type KeySet = HashMap<String, jws::VerifyingKey>;

pub struct Verifier {
    config: VerifierConfig,
    issuer: String,
    /// `config.audiences` in canonical resource form, computed once.
    audiences: Vec<String>,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last fetched; held while fetching, so concurrent misses fetch once.
    last_fetch: Mutex<Option<Instant>>,
    api_keys: Cache<String, (Instant, Option<Arc<Principal>>)>,
    /// JWTs already verified, with their expiry and what a revocation would name: a token's
    /// bytes cannot change, so checking its signature once is enough.
    verified_tokens: Cache<String, VerifiedToken>,
    /// Revocations learnt from the issuer's feed, until they expire.
    revoked: std::sync::RwLock<Revoked>,
    /// API key uses served since the last report: key id → (count, last use, Unix seconds).
    usage: std::sync::Mutex<HashMap<String, (u64, i64)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Sends a request to the issuer and reads its JSON answer; any failure is the issuer's.
async fn issuer_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, VerifyError> {
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(VerifyError::IssuerUnavailable)?
        .json()
        .await
        .map_err(VerifyError::IssuerUnavailable)
}

/// Revoked single tokens (by `jti`) and logins (by `sid`), each with when it stops mattering,
/// and departures from orgs.
#[derive(Default)]
struct Revoked {
    tokens: HashMap<String, i64>,
    logins: HashMap<String, i64>,
    /// By org id: who left (`None`: everyone, the org was deleted), the last `iat` refused,
    /// and when the entry stops mattering.
    departures: HashMap<String, Vec<Departure>>,
}

struct Departure {
    user_id: Option<String>,
    issued_until: i64,
    exp: i64,
}

impl Revoked {
    fn refuses(&self, claims: &AccessTokenClaims) -> bool {
        self.tokens.contains_key(&claims.jti)
            || claims
                .sid
                .as_ref()
                .is_some_and(|sid| self.logins.contains_key(sid))
            || self.departures.get(&claims.org_id).is_some_and(|left| {
                left.iter().any(|d| {
                    d.user_id.as_ref().is_none_or(|u| *u == claims.sub)
                        && claims.iat <= d.issued_until
                })
            })
    }
}

/// A JWT that passed every check once.
#[derive(Clone)]
struct VerifiedToken {
    principal: Arc<Principal>,
    claims: Arc<AccessTokenClaims>,
}

/// An audience as a resource in canonical form (or as given, when it is not a URI), so that
/// a trailing slash or an upper-case host still matches.
fn canonical_audience(audience: &str) -> String {
    latchkey_proto::resource::canonical_resource(audience).unwrap_or_else(|| audience.to_owned())
}

fn unix_now() -> i64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "the gate has no injected clock: token expiry is checked against the wall clock"
    )]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            issuer: config.issuer.as_str().trim_end_matches('/').to_owned(),
            audiences: config
                .audiences
                .iter()
                .map(|a| canonical_audience(a))
                .collect(),
            http,
            keys: RwLock::new(Arc::default()),
            last_fetch: Mutex::new(None),
            api_keys: Cache::new(100_000),
            verified_tokens: Cache::new(10_000),
            revoked: std::sync::RwLock::default(),
            usage: std::sync::Mutex::default(),
            config,
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn current_keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches the JWKS unless another caller just did; returns the keys in force after.
    async fn refresh_keys(&self) -> Result<Arc<KeySet>, VerifyError> {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return Ok(self.current_keys());
        }
        let jwks: Jwks =
            issuer_json(self.http.get(self.endpoint("/.well-known/jwks.json"))).await?;
        let keys: KeySet = jwks
            .keys
            .iter()
            .filter_map(|k| Some((k.kid.clone(), jws::VerifyingKey::from_jwk(k)?)))
            .collect();
        *last_fetch = Some(Instant::now());
        let keys = Arc::new(keys);
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys.clone();
        }
        Ok(keys)
    }

    async fn verify_jwt(&self, token: &str) -> Result<Arc<Principal>, VerifyError> {
        if let Some(verified) = self.verified_tokens.get(token) {
            if unix_now() >= verified.claims.exp {
                return Err(AccessTokenError::Expired.into());
            }
            self.refuse_revoked(&verified.claims).await?;
            return Ok(verified.principal);
        }
        let mut keys = self.current_keys();
        let kid = jws::key_id(token)?;
        if kid.as_ref().is_some_and(|kid| !keys.contains_key(kid)) {
            keys = self.refresh_keys().await?;
        }
        // One signature check, then the audience against every accepted one.
        let expect = jws::Expectations {
            issuer: &self.issuer,
            audience: None,
            now: unix_now(),
        };
        let claims = jws::verify(token, &keys, expect)?;
        if !self.audiences.contains(&canonical_audience(&claims.aud)) {
            return Err(AccessTokenError::WrongAudience.into());
        }
        self.refuse_revoked(&claims).await?;
        let scopes = claims.scope.split(' ').filter(|s| !s.is_empty());
        let principal = Arc::new(Principal {
            rate_key: format!("sub:{}", claims.sub),
            user_id: claims.sub.clone(),
            org_id: claims.org_id.clone(),
            scopes: Some(scopes.map(str::to_owned).collect()),
            subscription_tier: claims.subscription_tier.clone(),
            entitlements: claims.entitlements.clone(),
            key_id: None,
        });
        self.verified_tokens.insert(
            token.to_owned(),
            VerifiedToken {
                principal: principal.clone(),
                claims: Arc::new(claims),
            },
        );
        Ok(principal)
    }

    /// Refuses a revoked token: asked of the issuer in its own process, else looked up in
    /// what its revocation feed said (see [`Verifier::follow_revocations`]).
    async fn refuse_revoked(&self, claims: &AccessTokenClaims) -> Result<(), VerifyError> {
        let revoked = match &self.config.issuer_authority {
            Some(authority) => authority
                .access_token_revoked(claims)
                .await
                .map_err(VerifyError::AuthorityFailed)?,
            None => self
                .revoked
                .read()
                .is_ok_and(|revoked| revoked.refuses(claims)),
        };
        if revoked {
            return Err(AccessTokenError::Revoked.into());
        }
        Ok(())
    }

    /// Whether this verifier learns of revocations by polling the issuer's feed (a standalone
    /// gate with client credentials; a gate inside the server asks the service instead).
    pub fn follows_revocation_feed(&self) -> bool {
        self.config.issuer_authority.is_none() && !self.config.client_id.is_empty()
    }

    /// One poll of `/oauth/revocations` since `since` (the issuer's time of the last poll);
    /// returns the `since` of the next. Entries past their expiry are forgotten.
    pub async fn follow_revocations(&self, since: Option<i64>) -> Result<i64, VerifyError> {
        let mut request = self
            .http
            .get(self.endpoint("/oauth/revocations"))
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret));
        if let Some(since) = since {
            request = request.query(&[("since", since)]);
        }
        let feed: RevocationFeed = issuer_json(request).await?;
        let now = unix_now();
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.tokens.retain(|_, expires_at| *expires_at > now);
            revoked.logins.retain(|_, expires_at| *expires_at > now);
            revoked.departures.retain(|_, left| {
                left.retain(|d| d.exp > now);
                !left.is_empty()
            });
            for entry in feed.revoked {
                match entry {
                    RevokedAccess { jti: Some(jti), .. } => {
                        revoked.tokens.insert(jti, entry.exp);
                    }
                    RevokedAccess { sid: Some(sid), .. } => {
                        revoked.logins.insert(sid, entry.exp);
                    }
                    RevokedAccess {
                        org_id: Some(org_id),
                        issued_until: Some(issued_until),
                        sub,
                        exp,
                        ..
                    } => revoked
                        .departures
                        .entry(org_id)
                        .or_default()
                        .push(Departure {
                            user_id: sub,
                            issued_until,
                            exp,
                        }),
                    _ => {}
                }
            }
        }
        Ok(feed.now)
    }

    async fn verify_api_key(&self, presented: &str) -> Result<Arc<Principal>, VerifyError> {
        ApiKey::parse(presented, &self.config.key_prefix)?;
        if let Some(authority) = &self.config.issuer_authority {
            let identity = authority
                .authenticate(presented)
                .await
                .map_err(VerifyError::AuthorityFailed)?
                .ok_or(VerifyError::ApiKeyRefused)?;
            // The authority counted the use itself: no key id, so nothing is reported twice.
            return Ok(Arc::new(Principal::for_api_key(presented, identity, None)));
        }
        if let Some((at, cached)) = self.api_keys.get(presented) {
            let ttl = if cached.is_some() {
                self.config.positive_ttl
            } else {
                self.config.negative_ttl
            };
            if at.elapsed() < ttl {
                return cached.ok_or(VerifyError::ApiKeyRefused);
            }
        }
        let answer: IntrospectionResponse = issuer_json(
            self.http
                .post(self.endpoint("/oauth/introspect"))
                .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
                .form(&[("token", presented), ("token_type_hint", "api_key")]),
        )
        .await?;
        let principal = match answer {
            IntrospectionResponse {
                active: true,
                token_type: Some(kind),
                jti: key_id,
                sub: Some(user_id),
                org_id: Some(org_id),
                scope,
                subscription_tier,
                entitlements,
                ..
            } if kind == "api_key" => Some(Arc::new(Principal::for_api_key(
                presented,
                KeyIdentity {
                    user_id,
                    org_id,
                    scope,
                    // An issuer older than subscriptions answers without them: nothing bought.
                    subscription_tier: subscription_tier.unwrap_or_else(|| "free".into()),
                    entitlements: entitlements.unwrap_or_default(),
                },
                key_id,
            ))),
            _ => None,
        };
        self.api_keys
            .insert(presented.to_owned(), (Instant::now(), principal.clone()));
        principal.ok_or(VerifyError::ApiKeyRefused)
    }

    /// Counts one use of an API key, for the next [`Verifier::report_usage`].
    pub fn record_use(&self, principal: &Principal) {
        let (Some(key_id), Ok(mut usage)) = (&principal.key_id, self.usage.lock()) else {
            return;
        };
        let entry = usage.entry(key_id.clone()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = unix_now();
    }

    /// Sends the uses counted since the last report to the issuer in one request; on failure
    /// they are kept for the next one. Returns how many keys were reported.
    pub async fn report_usage(&self) -> Result<usize, VerifyError> {
        let pending: Vec<KeyUsageReport> = match self.usage.lock() {
            Ok(mut usage) => usage
                .drain()
                .map(|(key_id, (count, last_used_at))| KeyUsageReport {
                    key_id,
                    count,
                    last_used_at,
                })
                .collect(),
            Err(_) => return Ok(0),
        };
        if pending.is_empty() {
            return Ok(0);
        }
        let sent = self
            .http
            .post(self.endpoint("/v1/gate/usage"))
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .json(&UsageReport {
                keys: pending.clone(),
            })
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => Ok(pending.len()),
            Err(e) => {
                if let Ok(mut usage) = self.usage.lock() {
                    for report in pending {
                        let entry = usage.entry(report.key_id).or_insert((0, 0));
                        entry.0 += report.count;
                        entry.1 = entry.1.max(report.last_used_at);
                    }
                }
                Err(VerifyError::IssuerUnavailable(e))
            }
        }
    }

    /// Verifies a bearer value: a JWT (three dot-separated parts) or an API key.
    pub async fn verify(&self, credential: &str) -> Result<Arc<Principal>, VerifyError> {
        if credential.matches('.').count() == 2 {
            self.verify_jwt(credential).await
        } else {
            self.verify_api_key(credential).await
        }
    }
}
