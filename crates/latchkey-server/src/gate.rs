//! `latchkey serve --gate-upstream`: the gate in the issuer's own process. JWTs are checked
//! against the issuer's JWKS like any gate's, and their revocation asked of the service (so a
//! revoked token is refused at once); API keys go straight to the service (its cache drops a
//! revoked key at once), which also counts their use.

use std::sync::Arc;

use latchkey_core::{ApiKeyError, Service};
use latchkey_gate::{
    IssuerAuthority, KeyIdentity, SubscriptionRequirement, VerifierConfig, proxy::ProxyConfig,
};
use latchkey_proto::oauth::AccessTokenClaims;
use url::Url;

use crate::config::InProcessGate;

#[derive(Debug)]
struct ServiceAuthority(Service);

#[async_trait::async_trait]
impl IssuerAuthority for ServiceAuthority {
    async fn authenticate(&self, key: &str) -> Result<Option<KeyIdentity>, String> {
        match self.0.verify_api_key(key).await {
            Ok(principal) => {
                let standing = self
                    .0
                    .standing_at_the_gate(&principal.org_id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(KeyIdentity {
                    user_id: principal.user_id,
                    org_id: principal.org_id,
                    scope: principal.scope,
                    subscription_tier: standing.tier,
                    entitlements: standing.entitlements,
                }))
            }
            Err(ApiKeyError::Format(_) | ApiKeyError::Unknown) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn access_token_revoked(&self, claims: &AccessTokenClaims) -> Result<bool, String> {
        self.0
            .access_revoked(claims)
            .await
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn config(service: &Service, public_url: &Url, gate: &InProcessGate) -> ProxyConfig {
    let mut verifier = VerifierConfig::new(public_url.clone(), "", "");
    verifier.key_prefix = service.policy().key_prefix.clone();
    verifier.issuer_authority = Some(Arc::new(ServiceAuthority(service.clone())));
    verifier.audiences.extend(gate.audiences.iter().cloned());
    let mut config = ProxyConfig::new(gate.listen, gate.upstream.clone(), verifier);
    config.cors_origins = gate.cors_origins.clone();
    config.public_paths = gate.public_paths.clone();
    config.require_scope = gate.require_scope.clone();
    config.rate_limit_per_credential = gate.rate_limit_per_credential;
    config.rate_limit_per_ip = gate.rate_limit_per_ip;
    config.upstream_http2 = gate.upstream_http2;
    if let Some(workers) = gate.workers {
        config.workers = workers;
    }
    config.require_subscription =
        gate.require_entitlement
            .as_ref()
            .map(|entitlement| SubscriptionRequirement {
                entitlement: Some(entitlement.clone()),
                tier: None,
                // The deployment's own subscribe link; the gate puts each caller's org in.
                subscribe_url: service.policy().plans.subscribe_url_template().map_or_else(
                    || format!("{}/account", public_url.as_str().trim_end_matches('/')),
                    str::to_owned,
                ),
            });
    config
}
