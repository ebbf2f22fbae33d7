//! Access tokens: JWTs (`typ: at+jwt`, EdDSA) signed with Ed25519 keys kept in the store. The
//! newest key signs; retired keys stay in the JWKS for as long as a token they signed may live.
//! Expiry is checked against the service clock, never the system clock.
//!
//! The JWS itself is built and checked by `latchkey_proto::jws` (shared with the gate) on keys
//! parsed once per load: through jsonwebtoken every token re-parsed the private key (a scalar
//! multiplication) or decompressed the public one, which doubled the token endpoint's cost.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use latchkey_proto::{
    jws,
    oauth::{AccessTokenClaims, Jwk, Jwks},
};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{
    Service,
    master_key::{MasterKey, is_sealed},
    new_id,
    store::{SigningKeyRecord, StoreError},
};

/// Tolerated clock difference between this issuer and whoever checks its tokens.
const LEEWAY: Duration = Duration::from_secs(jws::LEEWAY_SECS.unsigned_abs());

#[derive(Debug, Error)]
pub enum SigningError {
    #[error("no signing key is loaded")]
    NoKey,
    #[error("the signing key {0} is damaged")]
    Corrupt(String),
    #[error(
        "the signing key {0} is sealed with another master key, or no master key was given: \
         start with the master key it was sealed with (--master-key-file or LATCHKEY_MASTER_KEY)"
    )]
    Sealed(String),
    #[error("could not encode the access token's claims")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use latchkey_proto::jws::AccessTokenError;

/// What a token is issued for; the claims are built from it.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub user_id: String,
    pub org_id: String,
    pub client_id: String,
    pub scope: String,
    /// The RFC 8707 resource; `None` means this issuer's own API.
    pub resource: Option<String>,
    /// The refresh family (login) it belongs to, if any (`sid`): revoking it revokes the token.
    pub login: Option<String>,
}

#[derive(Debug)]
pub struct IssuedAccessToken {
    pub token: String,
    pub expires_in: Duration,
    pub claims: AccessTokenClaims,
}

/// The key that signs, parsed once: jsonwebtoken would re-read the PKCS#8 document and derive
/// the public key (a scalar multiplication) on every token.
struct ActiveSigningKey {
    key: ed25519_dalek::SigningKey,
    /// The JWS header, base64url-encoded, the same for every token this key signs.
    encoded_header: String,
}

/// The loaded keys: the one that signs, every one that verifies (decompressed once, not per
/// token), and the published set.
#[derive(Default)]
pub(crate) struct KeyRing {
    signing: Option<ActiveSigningKey>,
    verifying: HashMap<String, ed25519_dalek::VerifyingKey>,
    jwks: Jwks,
}

impl ActiveSigningKey {
    /// Opens the record's private key (sealed with `master`, or in the clear from before keys
    /// were sealed). Refused when it is sealed and `master` cannot open it.
    fn from_record(
        record: &SigningKeyRecord,
        master: Option<&MasterKey>,
    ) -> Result<Self, SigningError> {
        let sealed = || SigningError::Sealed(record.kid.clone());
        let der = if is_sealed(&record.private_pkcs8) {
            master
                .ok_or_else(sealed)?
                .open(&record.kid, &record.private_pkcs8)
                .map_err(|_| sealed())?
        } else {
            record.private_pkcs8.clone()
        };
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                .map_err(|_| SigningError::Corrupt(record.kid.clone()))?,
            encoded_header: jws::encoded_header(&record.kid),
        })
    }
}

impl KeyRing {
    /// Only the active key's private half is opened: retired keys only verify.
    fn from_records(
        records: &[SigningKeyRecord],
        master: Option<&MasterKey>,
    ) -> Result<Self, SigningError> {
        let mut ring = Self::default();
        for record in records {
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&record.public_key) {
                ring.verifying.insert(record.kid.clone(), key);
            }
            ring.jwks
                .keys
                .push(Jwk::ed25519(&record.kid, &record.public_key));
            if record.retired_at.is_none() {
                ring.signing = Some(ActiveSigningKey::from_record(record, master)?);
            }
        }
        Ok(ring)
    }
}

impl Service {
    fn key_ring(&self) -> Arc<KeyRing> {
        match self.inner.signing.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_key_ring(&self, ring: KeyRing) {
        let mut slot = match self.inner.signing.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(ring);
    }

    /// Loads the signing keys from the store, creating the first one on a new database, and
    /// seals any private key an older version stored in the clear. Run at start and
    /// periodically, so a rotation by `latchkey admin` or another replica is seen; a failed
    /// load keeps the keys already loaded.
    pub async fn load_signing_keys(&self) -> Result<(), SigningError> {
        let store = &self.inner.store;
        let mut records = store.signing_keys().await?;
        if records.iter().all(|r| r.retired_at.is_some()) {
            self.rotate_signing_key().await?;
            return Ok(());
        }
        let master = self.inner.policy.master_key.as_ref();
        if let Some(master) = master {
            let mut resealed = false;
            for record in records.iter().filter(|r| !is_sealed(&r.private_pkcs8)) {
                let sealed = master.seal(&mut OsRng, &record.kid, &record.private_pkcs8);
                store.reseal_signing_key(&record.kid, &sealed).await?;
                resealed = true;
            }
            if resealed {
                records = store.signing_keys().await?;
            }
        }
        self.set_key_ring(KeyRing::from_records(&records, master)?);
        Ok(())
    }

    /// Adds a new signing key (sealed with the master key); the previous one keeps verifying
    /// until its tokens have expired. Returns the new key's id.
    pub async fn rotate_signing_key(&self) -> Result<String, SigningError> {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let kid = new_id("sk");
        let der = key
            .to_pkcs8_der()
            .map_err(|_| SigningError::Corrupt(kid.clone()))?;
        let master = self.inner.policy.master_key.as_ref();
        let private_pkcs8 = match master {
            Some(master) => master.seal(&mut OsRng, &kid, der.as_bytes()),
            None => der.as_bytes().to_vec(),
        };
        let now = self.now();
        let record = SigningKeyRecord {
            kid: kid.clone(),
            private_pkcs8,
            public_key: key.verifying_key().to_bytes(),
            created_at: now,
            retired_at: None,
        };
        let forget_before = now - self.inner.policy.access_token_ttl - LEEWAY;
        self.inner
            .store
            .rotate_signing_key(&record, forget_before)
            .await?;
        let records = self.inner.store.signing_keys().await?;
        self.set_key_ring(KeyRing::from_records(&records, master)?);
        Ok(kid)
    }

    /// The public keys, as `/.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> Jwks {
        self.key_ring().jwks.clone()
    }

    pub fn issue_access_token(
        &self,
        grant: &AccessGrant,
    ) -> Result<IssuedAccessToken, SigningError> {
        let ring = self.key_ring();
        let signer = ring.signing.as_ref().ok_or(SigningError::NoKey)?;
        let policy = &self.inner.policy;
        let now = self.now().unix_timestamp();
        let ttl = policy.access_token_ttl;
        let claims = AccessTokenClaims {
            iss: policy.public_url.clone(),
            sub: grant.user_id.clone(),
            aud: grant
                .resource
                .clone()
                .unwrap_or_else(|| policy.public_url.clone()),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: new_id("at"),
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            org_id: grant.org_id.clone(),
            tenant_id: grant.org_id.clone(),
            subscription_status: "none".into(),
            subscription_tier: "free".into(),
            sid: grant.login.clone(),
        };
        let token = jws::sign(&signer.encoded_header, &signer.key, &claims)
            .map_err(SigningError::Encode)?;
        Ok(IssuedAccessToken {
            token,
            expires_in: ttl,
            claims,
        })
    }

    /// Verifies a token this issuer signed for `audience`: header, key, signature, issuer,
    /// audience, then `exp`/`nbf` against the service clock.
    pub fn verify_access_token(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        self.verify_for(token, Some(audience))
    }

    /// Whether the access token `jti` was revoked since it was issued: on its own (RFC 7009),
    /// or with its login `sid` (signed out, a replayed code or refresh token, a password reset).
    pub async fn access_revoked(&self, jti: &str, sid: Option<&str>) -> Result<bool, StoreError> {
        self.inner.store.access_revoked(jti, sid).await
    }

    /// The same checks except the audience, for introspection on behalf of any resource.
    pub fn verify_access_token_for_any_audience(
        &self,
        token: &str,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        self.verify_for(token, None)
    }

    fn verify_for(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        jws::verify(
            token,
            &self.key_ring().verifying,
            jws::Expectations {
                issuer: &self.inner.policy.public_url,
                audience,
                now: self.now().unix_timestamp(),
            },
        )
    }
}
