//! Keyless CI, the HTTP half: `[[trusted_issuers]]` in the config, and the signature check of
//! a CI job's OIDC token on its issuer's keys (found by discovery, or at `jwks_uri`; kept, and
//! fetched again when a token names a key not seen, at most every 10 s). What the claims allow
//! is `latchkey_core::federation`'s.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{Jwk, JwkSet},
};
use latchkey_core::federation::TrustedIssuer;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use url::Url;

use crate::config::{ConfigError, is_loopback_host};

/// The least time between two fetches of an issuer's keys for tokens naming unknown keys.
const KEYS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long fetched keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(60 * 60);

/// `[[trusted_issuers]]`: an external OIDC issuer whose tokens a CI job exchanges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerOption {
    /// Names it in the audit record and in the tokens it gets.
    pub id: String,
    /// The tokens' `iss`, exactly (for GitHub Actions `https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// A value the tokens' `aud` must hold (GitHub Actions: the `audience` the job asks for).
    pub audience: String,
    /// Where its keys are; default: its discovery document's `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// The org (slug) its tokens act for.
    pub org: String,
    /// The scopes they may have.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The longest a token it gets lives, in seconds (default 900, at most 3600).
    pub max_lifetime_secs: Option<u64>,
    /// Claims the job's token must carry, each matching a glob (`*`, `?`).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// A trusted issuer, checked, with where its keys are.
#[derive(Debug, Clone)]
pub struct TrustedIssuerConfig {
    pub trust: TrustedIssuer,
    /// `None`: found by discovery.
    pub jwks_uri: Option<Url>,
}

fn https_or_loopback(raw: &str) -> Option<Url> {
    Url::parse(raw)
        .ok()
        .filter(|u| u.scheme() == "https" || (u.scheme() == "http" && is_loopback_host(u)))
}

pub(crate) fn trusted_issuer(o: TrustedIssuerOption) -> Result<TrustedIssuerConfig, ConfigError> {
    let bad = |why: String| ConfigError::TrustedIssuer {
        id: o.id.clone(),
        why,
    };
    if https_or_loopback(&o.issuer).is_none() {
        return Err(bad(format!("issuer {:?} must be an https URL", o.issuer)));
    }
    let jwks_uri = match &o.jwks_uri {
        Some(raw) => Some(
            https_or_loopback(raw)
                .ok_or_else(|| bad(format!("jwks_uri {raw:?} must be an https URL")))?,
        ),
        None => None,
    };
    if o.audience.trim().is_empty() {
        return Err(bad(
            "audience must not be empty: it is what binds a token to this service".into(),
        ));
    }
    let lifetime = o.max_lifetime_secs.unwrap_or(900);
    if !(60..=3600).contains(&lifetime) {
        return Err(bad("max_lifetime_secs must be 60 to 3600".into()));
    }
    let scope = (!o.scopes.is_empty()).then(|| o.scopes.join(" "));
    Ok(TrustedIssuerConfig {
        trust: TrustedIssuer {
            id: o.id.clone(),
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            conditions: o.claims.clone().into_iter().collect(),
            org: o.org.clone(),
            scope,
            max_lifetime: Duration::from_secs(lifetime),
        },
        jwks_uri,
    })
}

#[derive(Debug, Error)]
pub enum FederationError {
    #[error("the subject token is not a JWT")]
    Malformed,
    #[error("the trusted issuer's keys could not be fetched ({0})")]
    Keys(String),
    #[error("the subject token was signed by a key its issuer does not list")]
    UnknownKey,
    #[error("the subject token's signature is not valid ({0})")]
    Signature(String),
}

#[derive(Debug, Clone)]
struct Keys {
    set: JwkSet,
    fetched: Instant,
    refetched: Option<Instant>,
}

/// The trusted issuers and their keys.
#[derive(Debug)]
pub struct Federation {
    trusted: Vec<TrustedIssuerConfig>,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, Keys>>,
}

/// The claims of a JWT, unverified: only to find which trusted issuer to check it with.
fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

impl Federation {
    pub fn new(trusted: Vec<TrustedIssuerConfig>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            trusted,
            http,
            keys: Mutex::default(),
        })
    }

    /// The trusted issuer a token says it comes from, if any.
    pub fn trusted_for(&self, token: &str) -> Option<&TrustedIssuerConfig> {
        let claims = unverified_claims(token)?;
        let iss = claims.get("iss")?.as_str()?;
        self.trusted.iter().find(|t| t.trust.issuer == iss)
    }

    /// The JSON document at `url`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<T, FederationError> {
        let failed = |e: reqwest::Error| FederationError::Keys(e.to_string());
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)
    }

    async fn fetch_keys(&self, trusted: &TrustedIssuerConfig) -> Result<JwkSet, FederationError> {
        let jwks_uri = match &trusted.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    trusted.trust.issuer.trim_end_matches('/')
                );
                let discovery =
                    Url::parse(&discovery).map_err(|e| FederationError::Keys(e.to_string()))?;
                let document: Value = self.get_json(discovery).await?;
                document
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .and_then(https_or_loopback)
                    .ok_or_else(|| {
                        FederationError::Keys("discovery names no https jwks_uri".into())
                    })?
            }
        };
        self.get_json(jwks_uri).await
    }

    /// The key `kid` of `trusted`, fetching the keys when none are kept (or they are old), or
    /// once more when the key is unknown and they were not fetched for that in the last 10 s.
    async fn key(
        &self,
        trusted: &TrustedIssuerConfig,
        kid: Option<&str>,
    ) -> Result<Jwk, FederationError> {
        let id = &trusted.trust.id;
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let kept = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        let stale = kept.as_ref().is_none_or(|k| k.fetched.elapsed() > KEYS_TTL);
        if !stale && let Some(key) = kept.as_ref().and_then(|k| find(&k.set)) {
            return Ok(key);
        }
        let may_refetch = stale
            || kept
                .as_ref()
                .and_then(|k| k.refetched)
                .is_none_or(|at| at.elapsed() >= KEYS_REFETCH_INTERVAL);
        if !may_refetch {
            return Err(FederationError::UnknownKey);
        }
        // Claimed before fetching, so concurrent exchanges fetch once.
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            k.refetched = Some(Instant::now());
        }
        let set = self.fetch_keys(trusted).await?;
        let key = find(&set);
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Keys {
                set,
                fetched: Instant::now(),
                refetched: if stale { None } else { Some(Instant::now()) },
            },
        );
        key.ok_or(FederationError::UnknownKey)
    }

    /// The token's claims once its signature is checked on `trusted`'s keys (RS256, ES256 or
    /// EdDSA; `alg: none` and HMAC are refused). Issuer, audience, lifetime and conditions are
    /// the core's to check.
    pub async fn verify(
        &self,
        trusted: &TrustedIssuerConfig,
        token: &str,
    ) -> Result<Value, FederationError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| FederationError::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(FederationError::Signature(format!(
                "{:?} is not accepted",
                header.alg
            )));
        }
        let jwk = self.key(trusted, header.kid.as_deref()).await?;
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|e| FederationError::Signature(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| FederationError::Signature(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml: &str) -> Result<TrustedIssuerConfig, String> {
        let option: TrustedIssuerOption =
            toml::from_str(&format!("id = \"ci\"\norg = \"acme\"\n{toml}"))
                .map_err(|e| e.to_string())?;
        trusted_issuer(option).map_err(|e| e.to_string())
    }

    #[test]
    fn a_trust_needs_an_https_issuer_an_audience_and_a_bounded_lifetime() {
        let good = entry(
            "issuer = \"https://token.actions.githubusercontent.com\"\naudience = \"latchkey\"\n\
             scopes = [\"deploy\", \"read\"]\n[claims]\nrepository = \"acme/*\"\n",
        )
        .expect("valid");
        assert_eq!(good.trust.scope.as_deref(), Some("deploy read"));
        assert_eq!(good.trust.max_lifetime, Duration::from_secs(900));
        assert_eq!(
            good.trust.conditions,
            [("repository".into(), "acme/*".into())]
        );
        assert!(good.jwks_uri.is_none(), "found by discovery");
        for (toml, says) in [
            ("issuer = \"http://ci.example\"\naudience = \"x\"", "https"),
            (
                "issuer = \"https://ci.example\"\naudience = \" \"",
                "audience",
            ),
            (
                "issuer = \"https://ci.example\"\naudience = \"x\"\nmax_lifetime_secs = 7200",
                "3600",
            ),
            (
                "issuer = \"https://ci.example\"\naudience = \"x\"\njwks_uri = \"ftp://x\"",
                "jwks_uri",
            ),
            (
                "issuer = \"https://ci.example\"\naudience = \"x\"\naudiences = [\"y\"]",
                "unknown field",
            ),
        ] {
            let refused = entry(toml).expect_err(toml);
            assert!(refused.contains(says), "{toml}: {refused}");
        }
    }

    #[test]
    fn the_issuer_is_read_from_the_token_before_its_keys_are_sought() {
        let federation = Federation::new(vec![
            entry("issuer = \"https://ci.example\"\naudience = \"x\"").expect("valid"),
        ])
        .expect("a client");
        let token =
            |claims: Value| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert!(
            federation
                .trusted_for(&token(serde_json::json!({"iss": "https://ci.example"})))
                .is_some()
        );
        assert!(
            federation
                .trusted_for(&token(serde_json::json!({"iss": "https://other.example"})))
                .is_none()
        );
        assert!(federation.trusted_for("not.a-jwt").is_none());
    }
}
