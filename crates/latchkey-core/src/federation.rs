//! Keyless CI (workload identity federation): a CI job's OIDC token from an issuer the
//! deployment trusts (GitHub Actions, GitLab CI, a Kubernetes service-account issuer) is
//! exchanged (RFC 8693) for a short-lived access token of one org, with no secret stored
//! anywhere. The server checks the token's signature on the issuer's keys; this module decides
//! what its claims allow, and records every exchange.

use std::time::Duration;

use latchkey_proto::{
    oauth::{AccessTokenClaims, OAuthErrorCode, TokenResponse},
    scope,
};
use serde_json::Value;
use thiserror::Error;

use crate::{
    AccessGrant, Service,
    oauth::OAuthError,
    store::{FederatedExchangeRecord, OAuthClientRecord, Org, StoreError},
};

/// The longest a federated access token may live, whatever the configuration says.
pub const MAX_FEDERATED_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Tolerated clock difference with the trusting issuer, for `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;

/// `[[trusted_issuers]]`: whose tokens are accepted, on what conditions, and what they get.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Names it in the audit record and in the tokens it gets (`client_id`, `sub`).
    pub id: String,
    /// The token's `iss`, exactly.
    pub issuer: String,
    /// A value the token's `aud` must hold.
    pub audience: String,
    /// Claims the token must carry, each matching its glob (`*` any run, `?` one character).
    pub conditions: Vec<(String, String)>,
    /// The org's slug the token acts for.
    pub org: String,
    /// The scopes it may have (space-separated); `None`: none.
    pub scope: Option<String>,
    pub max_lifetime: Duration,
}

impl TrustedIssuer {
    /// The `client_id` and `sub` of the tokens it gets: no person holds them.
    pub fn principal(&self) -> String {
        format!("federated:{}", self.id)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FederationError {
    #[error("the token was issued by {0}, not by the trusted issuer")]
    Issuer(String),
    #[error("the token is not for this audience ({0})")]
    Audience(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's {claim} is {found}, which does not match {pattern}")]
    Condition {
        claim: String,
        pattern: String,
        found: String,
    },
    #[error("the token has no {0} claim, which the trust requires")]
    MissingClaim(String),
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters and `?` for
/// one; everything else matches itself.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // Classic two-pointer matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < v.len() {
        if i < p.len() && (p[i] == '?' || p[i] == v[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// A claim as text, for matching: strings as they are, numbers and booleans written out.
fn claim_text(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a token whose signature the server checked on `trusted`'s keys meets the trust:
/// its issuer, audience, lifetime (`now` in Unix seconds) and every condition.
pub fn check_claims(
    trusted: &TrustedIssuer,
    claims: &Value,
    now: i64,
) -> Result<(), FederationError> {
    let iss = claim_text(claims, "iss").unwrap_or_default();
    if iss != trusted.issuer {
        return Err(FederationError::Issuer(iss));
    }
    let audience_held = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == trusted.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&trusted.audience)),
        _ => false,
    };
    if !audience_held {
        return Err(FederationError::Audience(trusted.audience.clone()));
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        _ => return Err(FederationError::Expired),
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| nbf - LEEWAY_SECS > now)
    {
        return Err(FederationError::NotYetValid);
    }
    for (claim, pattern) in &trusted.conditions {
        let found = claim_text(claims, claim)
            .ok_or_else(|| FederationError::MissingClaim(claim.clone()))?;
        if !glob_match(pattern, &found) {
            return Err(FederationError::Condition {
                claim: claim.clone(),
                pattern: pattern.clone(),
                found,
            });
        }
    }
    Ok(())
}

impl Service {
    /// A live access token a client holds for itself in an org (keyless CI), with that org:
    /// who it is when it asks. `None` for any other credential, or a revoked one.
    pub async fn client_token(
        &self,
        token: &str,
    ) -> Result<Option<(AccessTokenClaims, Org)>, StoreError> {
        let Ok(claims) = self.verify_access_token(token, &self.inner.policy.public_url) else {
            return Ok(None);
        };
        if claims.sub != claims.client_id || self.access_revoked(&claims).await? {
            return Ok(None);
        }
        let org = self.inner.store.find_org(&claims.org_id).await?;
        Ok(org.map(|org| (claims, org)))
    }

    /// Exchanges a CI job's token, whose signature the server verified on `trusted`'s keys,
    /// for an access token of `trusted.org`: no longer-lived than the trust allows nor than the
    /// job's own token, with at most the trust's scopes. Recorded either way it ends well.
    pub async fn exchange_federated(
        &self,
        client: &OAuthClientRecord,
        trusted: &TrustedIssuer,
        claims: &Value,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        check_claims(trusted, claims, now.unix_timestamp())
            .map_err(|e| OAuthError::new(OAuthErrorCode::InvalidGrant, e.to_string()))?;
        let org = self
            .inner
            .store
            .find_org(&trusted.org)
            .await?
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidTarget,
                    format!(
                        "the trusted issuer's org \"{}\" does not exist",
                        trusted.org
                    ),
                )
            })?;
        let scope = match requested_scope {
            Some(wanted) if !scope::within(Some(wanted), trusted.scope.as_deref()) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    "the trust does not grant these scopes",
                ));
            }
            Some(wanted) => wanted.to_owned(),
            None => trusted.scope.clone().unwrap_or_default(),
        };
        let job_left = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map_or(0, |exp| (exp - now.unix_timestamp()).max(1));
        let lifetime = trusted
            .max_lifetime
            .min(MAX_FEDERATED_LIFETIME)
            .min(Duration::from_secs(job_left.unsigned_abs()));
        let principal = trusted.principal();
        let mut response = self.bearer_response(AccessGrant {
            standing: self.standing(&org.id).await?,
            user_id: principal.clone(),
            org_id: org.id.clone(),
            client_id: principal,
            scope,
            resource: None,
            login: None,
            alg: client.access_token_alg,
            lifetime: Some(lifetime),
        })?;
        response.issued_token_type = Some(crate::oauth::exchange::ACCESS_TOKEN_TYPE.to_owned());
        self.inner
            .store
            .record_federated_exchange(&FederatedExchangeRecord {
                trusted_issuer: trusted.id.clone(),
                subject: claim_text(claims, "sub").unwrap_or_default(),
                claims: claims.to_string(),
                org_id: org.id,
                at: now,
            })
            .await?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trusted() -> TrustedIssuer {
        TrustedIssuer {
            id: "gha".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "https://auth.example.com".into(),
            conditions: vec![
                ("repository".into(), "acme/app".into()),
                ("ref".into(), "refs/heads/*".into()),
            ],
            org: "acme".into(),
            scope: Some("deploy".into()),
            max_lifetime: Duration::from_secs(900),
        }
    }

    fn job(changes: Value) -> Value {
        let mut claims = json!({
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "https://auth.example.com",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository": "acme/app",
            "ref": "refs/heads/main",
            "exp": 1_000_300,
            "nbf": 999_990,
        });
        for (k, v) in changes.as_object().into_iter().flatten() {
            claims[k] = v.clone();
        }
        claims
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        for (pattern, value) in [
            ("refs/heads/*", "refs/heads/main"),
            ("refs/heads/*", "refs/heads/"),
            ("acme/*-svc", "acme/pay-svc"),
            ("v?.*", "v1.2"),
            ("*", ""),
            ("exact", "exact"),
        ] {
            assert!(glob_match(pattern, value), "{pattern} {value}");
        }
        for (pattern, value) in [
            ("refs/heads/*", "refs/tags/v1"),
            ("acme/app", "acme/app2"),
            ("acme/app", "acme/ap"),
            ("v?.*", "v10.2"),
            ("exact", "Exact"),
        ] {
            assert!(!glob_match(pattern, value), "{pattern} {value}");
        }
    }

    #[test]
    fn a_job_token_must_meet_every_term_of_the_trust() {
        let now = 1_000_000;
        assert_eq!(check_claims(&trusted(), &job(json!({})), now), Ok(()));
        assert_eq!(
            check_claims(
                &trusted(),
                &job(json!({"aud": ["other", "https://auth.example.com"]})),
                now
            ),
            Ok(())
        );
        let refusals = [
            (json!({"iss": "https://evil.example"}), "issued by"),
            (json!({"aud": "https://other.example"}), "audience"),
            (json!({"aud": ["a", "b"]}), "audience"),
            (json!({"exp": now - 61}), "expired"),
            (json!({"exp": null}), "expired"),
            (json!({"nbf": now + 120}), "not valid yet"),
            (
                json!({"repository": "acme/other"}),
                "repository is acme/other",
            ),
            (json!({"ref": "refs/tags/v1"}), "ref is refs/tags/v1"),
            (json!({"ref": null}), "no ref claim"),
        ];
        for (change, says) in refusals {
            let refused =
                check_claims(&trusted(), &job(change.clone()), now).expect_err(&change.to_string());
            assert!(refused.to_string().contains(says), "{change}: {refused}");
        }
    }
}
