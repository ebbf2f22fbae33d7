//! API keys: minting, listing, revoking, and verification on the hot path.
//!
//! Verification is parse + checksum (no I/O: garbage and typos stop here), SHA-256, then a
//! bounded in-memory cache in front of the store. Usage is counted in memory and written in
//! batches by [`Service::flush_key_usage`], never once per request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use latchkey_proto::{
    ApiKey, ApiKeyFormatError, KeyHash,
    scope::{self, ScopeError},
    wire::{ApiKeyCreateRequest, ApiKeyInfo},
};
use rand::rngs::OsRng;
use thiserror::Error;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    Service, Stats,
    console::AuditKind,
    new_id,
    row_cache::RowCache,
    store::{ApiKeyRecord, KeyUsage, StoreError, User},
};

#[derive(Debug, Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Format(#[from] ApiKeyFormatError),
    #[error("this API key is not valid: it was revoked, has expired or never existed")]
    Unknown,
    #[error("there is no API key {0} on this account")]
    NotFound(String),
    #[error("give the key a name of 1 to 100 characters (what it is for: \"laptop\", \"CI\")")]
    InvalidName,
    #[error("an expiry must be between 1 second and 3650 days")]
    InvalidExpiry,
    #[error("give expires_in (seconds) or expires_in_days, not both")]
    TwoExpiries,
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    #[error("you are not a member of the org \"{0}\"")]
    NotAMember(String),
    /// The org's rules refuse the key (it requires a second factor the person lacks).
    #[error("{0}")]
    OrgRule(String),
    #[error(
        "this API key is limited to the scopes {held:?}; it cannot manage API keys unless it has \
         the scope api_keys, nor make a key with more scopes than its own"
    )]
    BeyondCreatorScope { held: String },
    #[error("confirm your email address before creating API keys: open the link we sent you")]
    EmailNotVerified,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a verified key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub key_id: String,
    pub key_prefix: String,
    pub user_id: String,
    pub org_id: String,
    /// What the key may do, space-separated; `None`: everything its account may.
    pub scope: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// The scope a key needs to create, list or revoke keys when it is limited to scopes.
pub const MANAGE_KEYS_SCOPE: &str = "api_keys";

/// Keys by hash: `None` records that the store has no live key with that hash (negative
/// cache). Forgotten at every revocation.
pub(crate) type KeyCache = RowCache<KeyHash, Option<Arc<KeyPrincipal>>>;

#[derive(Default)]
pub(crate) struct UsageCounter {
    pending: Mutex<HashMap<String, (u64, OffsetDateTime)>>,
}

impl UsageCounter {
    fn record(&self, key_id: &str, uses: u64, at: OffsetDateTime) {
        if let Ok(mut pending) = self.pending.lock() {
            match pending.get_mut(key_id) {
                Some((count, last)) => {
                    *count = count.saturating_add(uses);
                    *last = (*last).max(at);
                }
                None => {
                    pending.insert(key_id.to_owned(), (uses, at));
                }
            }
        }
    }

    fn drain(&self) -> Vec<KeyUsage> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        pending
            .drain()
            .map(|(key_id, (count, last_used_at))| KeyUsage {
                key_id,
                count,
                last_used_at,
            })
            .collect()
    }

    fn restore(&self, usage: Vec<KeyUsage>) {
        if let Ok(mut pending) = self.pending.lock() {
            for u in usage {
                let entry = pending.entry(u.key_id).or_insert((0, u.last_used_at));
                entry.0 += u.count;
                entry.1 = entry.1.max(u.last_used_at);
            }
        }
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A key as listings show it, at `now` (which decides whether it has expired).
pub fn key_info(k: &ApiKeyRecord, now: OffsetDateTime) -> ApiKeyInfo {
    ApiKeyInfo {
        id: k.id.clone(),
        name: k.name.clone(),
        key_prefix: k.key_prefix.clone(),
        org_id: k.org_id.clone(),
        scopes: k
            .scope
            .as_deref()
            .map(|s| scope::scopes(s).map(str::to_owned).collect()),
        created_at: rfc3339(k.created_at),
        expires_at: k.expires_at.map(rfc3339),
        expired: k.expires_at.is_some_and(|at| at <= now),
        last_used_at: k.last_used_at.map(rfc3339),
        usage_count: k.usage_count,
    }
}

/// The lifetime `request` asks for, checked: at least a second, at most ten years.
fn requested_lifetime(request: &ApiKeyCreateRequest) -> Result<Option<Duration>, ApiKeyError> {
    const MAX_SECS: u64 = 3650 * 86_400;
    let secs = match (request.expires_in, request.expires_in_days) {
        (Some(_), Some(_)) => return Err(ApiKeyError::TwoExpiries),
        (Some(secs), None) => secs,
        (None, Some(days)) => u64::from(days).saturating_mul(86_400),
        (None, None) => return Ok(None),
    };
    if (1..=MAX_SECS).contains(&secs) {
        Ok(Some(Duration::from_secs(secs)))
    } else {
        Err(ApiKeyError::InvalidExpiry)
    }
}

/// Whether a caller limited to `held` (`None`: not limited) may manage keys at all.
pub fn may_manage_keys(held: Option<&str>) -> Result<(), ApiKeyError> {
    match held {
        Some(held) if !scope::allows(Some(held), MANAGE_KEYS_SCOPE) => {
            Err(ApiKeyError::BeyondCreatorScope {
                held: held.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

impl Service {
    /// A new key record for `user` (not yet stored) and the key itself.
    pub(crate) fn new_api_key(
        &self,
        user: &User,
        name: String,
        scope: Option<String>,
        expires_at: Option<OffsetDateTime>,
    ) -> (ApiKey, ApiKeyRecord) {
        let key = ApiKey::generate(&self.inner.policy.key_prefix, &mut OsRng);
        let record = ApiKeyRecord {
            id: new_id("key"),
            user_id: user.id.clone(),
            org_id: user.org.id.clone(),
            name,
            key_prefix: key.display_prefix().to_owned(),
            hash: key.hash(),
            scope,
            created_at: self.now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
            usage_count: 0,
            origin: None,
        };
        (key, record)
    }

    /// A new key for `user`, as `request` asks. `creator_scope` is the scope of the key making
    /// it, when that key is limited: the new key can have no scope its creator lacks (and
    /// inherits the creator's when it asks for none).
    pub async fn create_api_key(
        &self,
        user: &User,
        request: &ApiKeyCreateRequest,
        creator_scope: Option<&str>,
    ) -> Result<(ApiKey, ApiKeyRecord), ApiKeyError> {
        // Until the email is proven, the account may belong to someone squatting on it.
        if !user.email_verified {
            return Err(ApiKeyError::EmailNotVerified);
        }
        may_manage_keys(creator_scope)?;
        let name = request
            .name
            .as_deref()
            .unwrap_or("API key")
            .trim()
            .to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiKeyError::InvalidName);
        }
        let lifetime = requested_lifetime(request)?;
        // A key belongs to one org: the personal one, or any the person is a member of.
        let org_id = match &request.org {
            Some(org) if *org != user.org.id && *org != user.org.slug => {
                let membership = self
                    .inner
                    .store
                    .membership(&user.id, org)
                    .await?
                    .ok_or_else(|| ApiKeyError::NotAMember(org.clone()))?;
                self.second_factor_rule(user, &membership)
                    .await
                    .map_err(|e| match e {
                        crate::org::OrgError::Store(e) => ApiKeyError::Store(e),
                        other => ApiKeyError::OrgRule(other.to_string()),
                    })?;
                membership.org.id
            }
            _ => user.org.id.clone(),
        };
        let scope = match &request.scopes {
            Some(scopes) => Some(scope::join_scopes(scopes)?),
            None => creator_scope.map(str::to_owned),
        };
        if !scope::within(scope.as_deref(), creator_scope) {
            return Err(ApiKeyError::BeyondCreatorScope {
                held: creator_scope.unwrap_or_default().to_owned(),
            });
        }
        let expires_at = lifetime.map(|lifetime| self.now() + lifetime);
        let (key, mut record) = self.new_api_key(user, name, scope, expires_at);
        record.org_id = org_id;
        self.inner.store.insert_api_key(&record).await?;
        let detail = format!("\"{}\" ({})", record.name, record.key_prefix);
        let org = Some(record.org_id.as_str());
        self.audit(AuditKind::ApiKeyCreated, Some(&user.id), org, None, &detail)
            .await?;
        Ok((key, record))
    }

    pub async fn list_api_keys(&self, user: &User) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        Ok(self.inner.store.list_api_keys(&user.id).await?)
    }

    /// Revokes one of the user's keys; from this replica's next request on it is refused.
    pub async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<(), ApiKeyError> {
        let hash = self
            .inner
            .store
            .revoke_api_key(user_id, key_id, self.now())
            .await?
            .ok_or_else(|| ApiKeyError::NotFound(key_id.to_owned()))?;
        self.inner.keys.forget(&hash);
        let detail = format!("key {key_id}");
        self.audit(AuditKind::ApiKeyRevoked, Some(user_id), None, None, &detail)
            .await?;
        Ok(())
    }

    /// The hot path: who does this presented key act for? The use is counted.
    pub async fn verify_api_key(&self, presented: &str) -> Result<KeyPrincipal, ApiKeyError> {
        let principal = self.look_up_api_key(presented).await?;
        self.inner.usage.record(&principal.key_id, 1, self.now());
        Ok(principal)
    }

    /// Who a key acts for, without counting a use: for introspection, whose caller (a gate)
    /// counts the uses it serves and reports them with [`Service::add_key_usage`].
    pub async fn look_up_api_key(&self, presented: &str) -> Result<KeyPrincipal, ApiKeyError> {
        let stats = &self.inner.stats;
        let key = ApiKey::parse(presented, &self.inner.policy.key_prefix).inspect_err(|_| {
            Stats::bump(&stats.api_keys_refused_by_format);
        })?;
        let hash = key.hash();
        let now = self.now();
        let principal = self
            .inner
            .keys
            .read_through(&hash, now, || self.fetch_principal(hash))
            .await?
            .ok_or(ApiKeyError::Unknown)?;
        if principal.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiKeyError::Unknown);
        }
        Stats::bump(&stats.api_keys_verified);
        Ok(KeyPrincipal::clone(&principal))
    }

    async fn fetch_principal(
        &self,
        hash: KeyHash,
    ) -> Result<Option<Arc<KeyPrincipal>>, ApiKeyError> {
        Stats::bump(&self.inner.stats.api_key_store_lookups);
        let record = self.inner.store.api_key_by_hash(&hash).await?;
        Ok(record.filter(|r| r.revoked_at.is_none()).map(|r| {
            Arc::new(KeyPrincipal {
                key_id: r.id,
                key_prefix: r.key_prefix,
                user_id: r.user_id,
                org_id: r.org_id,
                scope: r.scope,
                expires_at: r.expires_at,
            })
        }))
    }

    /// Adds uses a gate counted (`POST /v1/gate/usage`) to the next flush. A time in the future
    /// is taken as now; counts are capped so a broken reporter cannot overflow anything.
    pub fn add_key_usage(&self, reports: &[KeyUsage]) {
        let now = self.now();
        for report in reports {
            let uses = report.count.min(1_000_000_000);
            if uses > 0 {
                self.inner
                    .usage
                    .record(&report.key_id, uses, report.last_used_at.min(now));
            }
        }
    }

    /// Writes the usage counted since the last flush in one batch. On failure the counts are
    /// kept for the next flush.
    pub async fn flush_key_usage(&self) -> Result<usize, StoreError> {
        let usage = self.inner.usage.drain();
        if usage.is_empty() {
            return Ok(0);
        }
        let n = usage.len();
        if let Err(e) = self.inner.store.record_api_key_usage(&usage).await {
            self.inner.usage.restore(usage);
            return Err(e);
        }
        Ok(n)
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.inner.store.user_by_id(user_id).await
    }
}
