//! `/oauth/introspect` (RFC 7662) and `/oauth/revoke` (RFC 7009). Introspection answers for
//! access tokens (JWTs), refresh tokens and API keys alike, to authenticated confidential
//! clients only (resource servers); anything unknown is simply `{active: false}`.

use latchkey_proto::{
    SecretHash, jws,
    oauth::{IntrospectionResponse, OAuthErrorCode, RevocationFeed, RevokedAccess},
};

use super::OAuthError;
use crate::{
    Service,
    org::TokenHolder,
    store::{AccessRevocation, OAuthClientRecord},
};

impl Service {
    pub async fn introspect(
        &self,
        client: &OAuthClientRecord,
        token: &str,
    ) -> Result<IntrospectionResponse, OAuthError> {
        if client.secret_hash.is_none() {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "only confidential clients (resource servers) may introspect tokens",
            ));
        }
        let issuer = &self.inner.policy.public_url;
        if let Ok(claims) = self.verify_access_token_for_any_audience(token)
            && !self.access_revoked(&claims).await?
            && let holder = self.token_holder(&claims, None).await?
            && holder != TokenHolder::Left
        {
            let standing = self.standing(&claims.org_id).await?;
            return Ok(IntrospectionResponse {
                subscription_status: Some(standing.status.as_str().to_owned()),
                subscription_tier: Some(standing.tier),
                entitlements: Some(standing.entitlements),
                org_role: match holder {
                    TokenHolder::Member(role) => Some(role.as_str().to_owned()),
                    TokenHolder::Client | TokenHolder::Left => None,
                },
                active: true,
                token_type: Some("access_token".into()),
                jti: Some(claims.jti),
                sub: Some(claims.sub),
                client_id: Some(claims.client_id),
                scope: Some(claims.scope),
                org_id: Some(claims.org_id),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
            });
        }
        if let Ok(key) = self.look_up_api_key(token).await {
            let org_role = self.member_role(&key.user_id, &key.org_id).await?;
            let standing = self.standing(&key.org_id).await?;
            return Ok(IntrospectionResponse {
                subscription_status: Some(standing.status.as_str().to_owned()),
                subscription_tier: Some(standing.tier),
                entitlements: Some(standing.entitlements),
                org_role: org_role.map(|r| r.as_str().to_owned()),
                active: true,
                token_type: Some("api_key".into()),
                jti: Some(key.key_id),
                sub: Some(key.user_id),
                org_id: Some(key.org_id),
                scope: key.scope,
                iss: Some(issuer.clone()),
                exp: key.expires_at.map(|at| at.unix_timestamp()),
                ..IntrospectionResponse::inactive()
            });
        }
        let now = self.now();
        if let Some(refresh) = self
            .inner
            .store
            .live_refresh_token(&SecretHash::of(token), now)
            .await?
        {
            return Ok(IntrospectionResponse {
                active: true,
                token_type: Some("refresh_token".into()),
                sub: Some(refresh.user_id),
                client_id: Some(refresh.client_id),
                scope: Some(refresh.scope),
                iss: Some(issuer.clone()),
                exp: Some(refresh.expires_at.unix_timestamp()),
                iat: Some(refresh.created_at.unix_timestamp()),
                ..IntrospectionResponse::inactive()
            });
        }
        Ok(IntrospectionResponse::inactive())
    }

    /// Revokes a refresh token's family if it belongs to `client`. Unknown tokens, other
    /// clients' tokens and access tokens (which expire on their own) answer the same: done.
    pub async fn revoke_token(
        &self,
        client: &OAuthClientRecord,
        token: &str,
    ) -> Result<(), OAuthError> {
        // An access token of this client: refused by the issuer from now until it expires.
        if let Ok(claims) = self.verify_access_token_for_any_audience(token) {
            if claims.client_id == client.id {
                let expires_at = time::OffsetDateTime::from_unix_timestamp(claims.exp)
                    .unwrap_or_else(|_| self.now() + self.inner.policy.access_token_ttl);
                self.inner
                    .store
                    .revoke_access_token(&claims.jti, expires_at, self.now())
                    .await?;
            }
            return Ok(());
        }
        let hash = SecretHash::of(token);
        if let Some(refresh) = self.inner.store.refresh_token(&hash).await?
            && refresh.client_id == client.id
        {
            self.inner
                .store
                .revoke_refresh_family(&refresh.family_id, self.now())
                .await?;
        }
        Ok(())
    }

    /// The revocations a gate must apply since `since_ms` (Unix milliseconds; a gate that
    /// has just started asks for none and gets every one still relevant). Read with a few
    /// seconds' overlap, so a revocation committed late by a slow transaction is not missed.
    pub async fn revocation_feed(
        &self,
        client: &OAuthClientRecord,
        since_ms: Option<i64>,
    ) -> Result<RevocationFeed, OAuthError> {
        if client.secret_hash.is_none() {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "only confidential clients (resource servers) may follow revocations",
            ));
        }
        const OVERLAP: std::time::Duration = std::time::Duration::from_secs(5);
        let now = self.now();
        let ttl = self.inner.policy.access_token_ttl;
        let oldest = now - ttl - OVERLAP;
        let since = since_ms
            .and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .map_or(oldest, |since| (since - OVERLAP).max(oldest));
        let revoked = self
            .inner
            .store
            .access_revocations_since(since)
            .await?
            .into_iter()
            .map(|revocation| match revocation {
                AccessRevocation::Token { jti, expires_at } => RevokedAccess {
                    jti: Some(jti),
                    exp: expires_at.unix_timestamp(),
                    ..RevokedAccess::default()
                },
                // Tokens of the login issued before its revocation expire within a TTL.
                AccessRevocation::Login {
                    family_id,
                    revoked_at,
                } => RevokedAccess {
                    sid: Some(family_id),
                    exp: (revoked_at + ttl).unix_timestamp() + jws::LEEWAY_SECS,
                    ..RevokedAccess::default()
                },
                // `iat` counts whole seconds: the second of the departure is refused too.
                AccessRevocation::Departure {
                    org_id,
                    user_id,
                    departed_at,
                } => RevokedAccess {
                    org_id: Some(org_id),
                    sub: user_id,
                    issued_until: Some(departed_at.unix_timestamp()),
                    exp: (departed_at + ttl).unix_timestamp() + jws::LEEWAY_SECS,
                    ..RevokedAccess::default()
                },
            })
            .collect();
        Ok(RevocationFeed {
            now: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
            revoked,
        })
    }
}
