//! OpenID Connect providers: discovery (kept for an hour; the signing keys fetched again when
//! an ID token names a key not seen, at most every 10 s), the authorization URL, the code
//! exchange and the ID token's checks (signature on the provider's JWKS with an algorithm it
//! advertises, `iss`, `aud`, `azp`, `exp`, `nonce`, `at_hash`), all by `openidconnect`. Google's
//! hosted domain travels as the `hd` parameter and comes back as the `hd` claim.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use latchkey_core::upstream::{StartedUpstreamLogin, UpstreamIdentity};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdToken, IdTokenClaims, IdTokenFields, IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse, UserInfoClaims,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
        CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
        CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
    reqwest,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Exchange, ProviderError, config::UpstreamProvider};

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(60 * 60);
/// The least time between two fetches of a provider's keys, so tokens naming unknown keys
/// cannot make latchkey hammer the provider.
const KEYS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// The claims beyond the standard ones latchkey reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderClaims {
    /// Google Workspace's hosted domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hd: Option<String>,
}

impl AdditionalClaims for ProviderClaims {}

type ProviderIdTokenFields = IdTokenFields<
    ProviderClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type ProviderTokenResponse = StandardTokenResponse<ProviderIdTokenFields, CoreTokenType>;
type ProviderIdToken = IdToken<
    ProviderClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A client of one provider, made from its discovery document.
type ProviderClient = openidconnect::Client<
    ProviderClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    ProviderTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A provider's discovery document, with its keys; when it was fetched, and when an unknown
/// key last made latchkey fetch the keys again.
#[derive(Debug, Clone)]
struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
    keys_refetched: Option<Instant>,
}

/// The discovery documents of the providers, by provider id.
#[derive(Debug, Default)]
pub(super) struct Discoveries(Mutex<HashMap<String, Discovered>>);

impl Discoveries {
    fn cached(&self, id: &str) -> Option<CoreProviderMetadata> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(id)
            .filter(|d| d.fetched.elapsed() < DISCOVERY_TTL)
            .map(|d| d.metadata.clone())
    }

    /// `p`'s discovery document, from the cache while it is fresh.
    pub(super) async fn get(
        &self,
        http: &reqwest::Client,
        p: &UpstreamProvider,
        issuer: &str,
    ) -> Result<CoreProviderMetadata, ProviderError> {
        if let Some(metadata) = self.cached(&p.provider.id) {
            return Ok(metadata);
        }
        let metadata = discover(http, p, issuer).await?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            p.provider.id.clone(),
            Discovered {
                metadata: metadata.clone(),
                fetched: Instant::now(),
                keys_refetched: None,
            },
        );
        Ok(metadata)
    }

    /// `p`'s keys fetched again for a key not seen, unless that was done less than
    /// [`KEYS_REFETCH_INTERVAL`] ago (`None`).
    async fn refetch_keys(
        &self,
        http: &reqwest::Client,
        p: &UpstreamProvider,
    ) -> Result<Option<CoreProviderMetadata>, ProviderError> {
        let jwks_uri = {
            let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = cache.get_mut(&p.provider.id) else {
                return Ok(None);
            };
            if entry
                .keys_refetched
                .is_some_and(|at| at.elapsed() < KEYS_REFETCH_INTERVAL)
            {
                return Ok(None);
            }
            // Claimed before fetching: concurrent callbacks do not fetch twice.
            entry.keys_refetched = Some(Instant::now());
            entry.metadata.jwks_uri().clone()
        };
        let keys = JsonWebKeySet::fetch_async(&jwks_uri, http)
            .await
            .map_err(|e| ProviderError::unavailable(p, format!("its keys: {e}")))?;
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache
            .get_mut(&p.provider.id)
            .ok_or_else(|| ProviderError::unavailable(p, "its discovery was forgotten"))?;
        entry.metadata = entry.metadata.clone().set_jwks(keys);
        Ok(Some(entry.metadata.clone()))
    }
}

/// Fetches `p`'s discovery document and keys; the document must name `issuer` exactly.
pub(super) async fn discover(
    http: &reqwest::Client,
    p: &UpstreamProvider,
    issuer: &str,
) -> Result<CoreProviderMetadata, ProviderError> {
    let issuer = IssuerUrl::new(issuer.to_owned())
        .map_err(|e| ProviderError::unavailable(p, format!("issuer: {e}")))?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| ProviderError::unavailable(p, format!("discovery: {e}")))
}

fn provider_client(
    p: &UpstreamProvider,
    metadata: CoreProviderMetadata,
    callback: &str,
) -> Result<ProviderClient, ProviderError> {
    let redirect = RedirectUrl::new(callback.to_owned())
        .map_err(|e| ProviderError::unavailable(p, format!("callback URL: {e}")))?;
    Ok(ProviderClient::from_provider_metadata(
        metadata,
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(p.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

pub(super) fn authorization_url(
    p: &UpstreamProvider,
    metadata: CoreProviderMetadata,
    callback: &str,
    started: &StartedUpstreamLogin,
) -> Result<Url, ProviderError> {
    let client = provider_client(p, metadata, callback)?;
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        started.pkce_verifier.clone(),
    ));
    let (state, nonce) = (started.state.clone(), started.nonce.clone());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(challenge);
    for scope in p.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(domain) = &p.provider.hosted_domain {
        // Google then offers only accounts of the domain; the `hd` claim is still checked.
        request = request.add_extra_param("hd", domain.clone());
    }
    let (url, _, _) = request.url();
    Ok(url)
}

pub(super) async fn identity(
    http: &reqwest::Client,
    discoveries: &Discoveries,
    p: &UpstreamProvider,
    issuer: &str,
    exchange: Exchange<'_>,
) -> Result<UpstreamIdentity, ProviderError> {
    let metadata = discoveries.get(http, p, issuer).await?;
    let client = provider_client(p, metadata, exchange.callback)?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(exchange.code.to_owned()))
        .map_err(|e| ProviderError::unavailable(p, e))?
        .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| ProviderError::rejected(p, format!("the code exchange: {e}")))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| ProviderError::rejected(p, "no ID token came with the tokens"))?;
    let nonce = Nonce::new(exchange.nonce.to_owned());
    let (client, claims) = match checked_claims(&client, id_token, &nonce, tokens.access_token()) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => match discoveries.refetch_keys(http, p).await? {
            // The provider may have rotated its keys since they were fetched.
            Some(metadata) => {
                let client = provider_client(p, metadata, exchange.callback)?;
                let claims = checked_claims(&client, id_token, &nonce, tokens.access_token());
                (client, claims)
            }
            None => (
                client,
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )),
            ),
        },
        claims => (client, claims),
    };
    let claims = claims.map_err(|e| ProviderError::rejected(p, format!("the ID token: {e}")))?;
    let mut identity = UpstreamIdentity {
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string()),
        hosted_domain: claims.additional_claims().hd.clone(),
    };
    if identity.email.is_none()
        && let Ok(request) = client.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
    {
        let info: UserInfoClaims<ProviderClaims, CoreGenderClaim> = request
            .request_async(http)
            .await
            .map_err(|e| ProviderError::unavailable(p, format!("userinfo: {e}")))?;
        identity.email = info.email().map(|e| e.to_string());
        identity.email_verified = info.email_verified().unwrap_or(false);
        if identity.name.is_none() {
            identity.name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
        }
        if identity.hosted_domain.is_none() {
            identity.hosted_domain = info.additional_claims().hd.clone();
        }
    }
    Ok(identity)
}

/// The ID token's claims once its signature, `iss`, `aud`, `azp`, `exp`, `nonce` and, when
/// present, `at_hash` (binding it to the access token) are checked.
fn checked_claims<'t>(
    client: &ProviderClient,
    id_token: &'t ProviderIdToken,
    nonce: &Nonce,
    access_token: &openidconnect::AccessToken,
) -> Result<&'t IdTokenClaims<ProviderClaims, CoreGenderClaim>, ClaimsVerificationError> {
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, nonce)?;
    if let Some(expected) = claims.access_token_hash() {
        let invalid = |e: &dyn std::fmt::Display| ClaimsVerificationError::Other(e.to_string());
        let algorithm = id_token.signing_alg().map_err(|e| invalid(&e))?;
        let key = id_token.signing_key(&verifier).map_err(|e| invalid(&e))?;
        let actual =
            AccessTokenHash::from_token(access_token, algorithm, key).map_err(|e| invalid(&e))?;
        if actual != *expected {
            return Err(ClaimsVerificationError::Other(
                "at_hash does not match the access token".into(),
            ));
        }
    }
    Ok(claims)
}
