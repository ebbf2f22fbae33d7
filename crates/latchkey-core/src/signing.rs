//! Tokens: access tokens (JWTs, `typ: at+jwt`, EdDSA unless the deployment or the client chose
//! RS256 or ES256) and OpenID Connect ID tokens (RS256 unless the client registered another),
//! signed with keys kept in the store: one active key per algorithm, the newest; retired keys
//! stay in the JWKS for as long as a token they signed may live. Expiry is checked against the
//! service clock, never the system clock.
//!
//! The JWS itself is built and checked by `latchkey_proto::jws` (shared with the gate) on keys
//! parsed once per load: through jsonwebtoken every token re-parsed the private key (a scalar
//! multiplication) or decompressed the public one, which doubled the token endpoint's cost.

use std::{collections::HashMap, sync::Arc, time::Duration};

use latchkey_proto::{
    jws::{self, Algorithm, SigningKey, VerifyingKey},
    oauth::{AccessTokenClaims, IdTokenClaims, Jwks, ProfileClaims, UserInfo},
};
use rand::rngs::OsRng;
use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    Service,
    master_key::{MasterKey, is_sealed},
    new_id,
    store::{SigningKeyRecord, StoreError, User},
};

/// Tolerated clock difference between this issuer and whoever checks its tokens.
const LEEWAY: Duration = Duration::from_secs(jws::LEEWAY_SECS.unsigned_abs());

/// How long an ID token is valid: it is read once, at sign-in.
const ID_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Error)]
pub enum SigningError {
    #[error("no {0} signing key is loaded")]
    NoKey(Algorithm),
    #[error("the signing key {0} is damaged")]
    Corrupt(String),
    #[error(
        "the signing key {0} is sealed with another master key, or no master key was given: \
         start with the master key it was sealed with (--master-key-file or LATCHKEY_MASTER_KEY)"
    )]
    Sealed(String),
    #[error("could not encode the token's claims")]
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
    /// The algorithm the client registered for its access tokens; `None`: the deployment's.
    pub alg: Option<Algorithm>,
    /// Shorter than the deployment's access-token lifetime (a federated CI token's).
    pub lifetime: Option<Duration>,
    /// What the org's subscription grants, read when the token is issued.
    pub standing: crate::billing::Standing,
}

#[derive(Debug)]
pub struct IssuedAccessToken {
    pub token: String,
    pub expires_in: Duration,
    pub claims: AccessTokenClaims,
}

/// What an ID token says: who signed in, to which client, when, and in answer to which
/// request (`nonce`); `access_token` is the one issued with it (`at_hash`).
pub struct IdTokenGrant<'a> {
    pub user: &'a User,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub auth_time: OffsetDateTime,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub alg: Algorithm,
}

/// A key that signs, parsed once, with its JWS headers (the same for every token it signs).
struct ActiveSigningKey {
    key: SigningKey,
    access_token_header: String,
    id_token_header: String,
}

/// The loaded keys: the one that signs for each algorithm, every one that verifies (parsed
/// once, not per token), and the published set.
#[derive(Default)]
pub(crate) struct KeyRing {
    signing: HashMap<Algorithm, ActiveSigningKey>,
    verifying: HashMap<String, VerifyingKey>,
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
            key: SigningKey::from_pkcs8_der(record.alg, &der)
                .map_err(|_| SigningError::Corrupt(record.kid.clone()))?,
            access_token_header: jws::encoded_header(
                record.alg,
                &record.kid,
                jws::ACCESS_TOKEN_TYPE,
            ),
            id_token_header: jws::encoded_header(record.alg, &record.kid, jws::ID_TOKEN_TYPE),
        })
    }
}

impl KeyRing {
    /// Only the active keys' private halves are opened: retired keys only verify.
    fn from_records(
        records: &[SigningKeyRecord],
        master: Option<&MasterKey>,
    ) -> Result<Self, SigningError> {
        let mut ring = Self::default();
        for record in records {
            if let Ok(key) = VerifyingKey::from_public_bytes(record.alg, &record.public_key) {
                ring.jwks.keys.push(key.to_jwk(&record.kid));
                ring.verifying.insert(record.kid.clone(), key);
            }
            if record.retired_at.is_none() {
                ring.signing
                    .insert(record.alg, ActiveSigningKey::from_record(record, master)?);
            }
        }
        Ok(ring)
    }

    fn signer(&self, alg: Algorithm) -> Result<&ActiveSigningKey, SigningError> {
        self.signing.get(&alg).ok_or(SigningError::NoKey(alg))
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

    /// Loads the signing keys from the store, creating the first key of each algorithm on a
    /// new database (or one from before that algorithm was supported), and seals any private
    /// key an older version stored in the clear. Run at start and periodically, so a rotation
    /// by `latchkey admin` or another replica is seen; a failed load keeps the keys already
    /// loaded.
    pub async fn load_signing_keys(&self) -> Result<(), SigningError> {
        let store = &self.inner.store;
        let mut records = store.signing_keys().await?;
        let mut changed = false;
        for alg in Algorithm::ALL {
            if !records
                .iter()
                .any(|r| r.alg == alg && r.retired_at.is_none())
            {
                self.add_signing_key(alg).await?;
                changed = true;
            }
        }
        let master = self.inner.policy.master_key.as_ref();
        if let Some(master) = master {
            for record in records.iter().filter(|r| !is_sealed(&r.private_pkcs8)) {
                let sealed = master.seal(&mut OsRng, &record.kid, &record.private_pkcs8);
                store.reseal_signing_key(&record.kid, &sealed).await?;
                changed = true;
            }
        }
        if changed {
            records = store.signing_keys().await?;
        }
        self.set_key_ring(KeyRing::from_records(&records, master)?);
        Ok(())
    }

    /// Adds a new signing key of every algorithm (sealed with the master key); the previous
    /// ones keep verifying until their tokens have expired. Returns the new keys' ids.
    pub async fn rotate_signing_key(&self) -> Result<Vec<String>, SigningError> {
        let mut kids = Vec::new();
        for alg in Algorithm::ALL {
            kids.push(self.add_signing_key(alg).await?);
        }
        let records = self.inner.store.signing_keys().await?;
        let master = self.inner.policy.master_key.as_ref();
        self.set_key_ring(KeyRing::from_records(&records, master)?);
        Ok(kids)
    }

    /// Stores a new active key of `alg`, retiring the one before.
    async fn add_signing_key(&self, alg: Algorithm) -> Result<String, SigningError> {
        let kid = new_id("sk");
        let damaged = |_| SigningError::Corrupt(kid.clone());
        let key = SigningKey::generate(alg, &mut OsRng).map_err(damaged)?;
        let der = key.to_pkcs8_der().map_err(damaged)?;
        let public_key = key.verifying_key().to_public_bytes().map_err(damaged)?;
        let private_pkcs8 = match self.inner.policy.master_key.as_ref() {
            Some(master) => master.seal(&mut OsRng, &kid, &der),
            None => der,
        };
        let now = self.now();
        let record = SigningKeyRecord {
            kid: kid.clone(),
            alg,
            private_pkcs8,
            public_key,
            created_at: now,
            retired_at: None,
        };
        let forget_before = now - self.inner.policy.access_token_ttl - LEEWAY;
        self.inner
            .store
            .rotate_signing_key(&record, forget_before)
            .await?;
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
        let policy = &self.inner.policy;
        let signer = ring.signer(grant.alg.unwrap_or(policy.access_token_alg))?;
        let now = self.now().unix_timestamp();
        let ttl = grant
            .lifetime
            .map_or(policy.access_token_ttl, |l| l.min(policy.access_token_ttl));
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
            subscription_status: grant.standing.status.as_str().to_owned(),
            subscription_tier: grant.standing.tier.clone(),
            entitlements: grant.standing.entitlements.clone(),
            sid: grant.login.clone(),
        };
        let token = jws::sign(&signer.access_token_header, &signer.key, &claims)
            .map_err(SigningError::Encode)?;
        Ok(IssuedAccessToken {
            token,
            expires_in: ttl,
            claims,
        })
    }

    /// An OpenID Connect ID token: `sub`, the client as `aud` and `azp`, `auth_time`, the
    /// request's `nonce`, `at_hash`, and `email` / `name` as the scope allows.
    pub fn issue_id_token(&self, grant: &IdTokenGrant<'_>) -> Result<String, SigningError> {
        let ring = self.key_ring();
        let signer = ring.signer(grant.alg)?;
        let now = self.now().unix_timestamp();
        let claims = IdTokenClaims {
            iss: self.inner.policy.public_url.clone(),
            sub: grant.user.id.clone(),
            aud: grant.client_id.to_owned(),
            azp: grant.client_id.to_owned(),
            exp: now + i64::try_from(ID_TOKEN_TTL.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            auth_time: grant.auth_time.unix_timestamp(),
            nonce: grant.nonce.map(str::to_owned),
            at_hash: grant.alg.at_hash(grant.access_token),
            profile: user_info(grant.user, grant.scope).profile,
        };
        jws::sign(&signer.id_token_header, &signer.key, &claims).map_err(SigningError::Encode)
    }

    /// The ID token this issuer signed, whatever its age (an `id_token_hint`): `None` when it
    /// is not one.
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenClaims> {
        let claims: IdTokenClaims =
            jws::verify_signature(token, &self.key_ring().verifying, jws::ID_TOKEN_TYPE).ok()?;
        (claims.iss == self.inner.policy.public_url).then_some(claims)
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

    /// Whether the access token was revoked since it was issued: on its own (RFC 7009), with
    /// its login `sid` (signed out, a replayed code or refresh token, a password reset), or by
    /// its holder leaving its org (or the org's deletion).
    pub async fn access_revoked(&self, claims: &AccessTokenClaims) -> Result<bool, StoreError> {
        self.inner.store.access_revoked(claims).await
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

/// What the `email` and `profile` scopes reveal of `user`, with `sub`.
pub fn user_info(user: &User, scope: &str) -> UserInfo {
    let has = |wanted: &str| scope.split(' ').any(|s| s == wanted);
    let email = has("email");
    UserInfo {
        sub: user.id.clone(),
        profile: ProfileClaims {
            email: email.then(|| user.email.clone()),
            email_verified: email.then_some(user.email_verified),
            name: has("profile").then(|| user.name.clone()).flatten(),
        },
    }
}
