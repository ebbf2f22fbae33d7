//! OAuth 2.1 wire types: RFC 6749 §5.2 error bodies, token responses, access-token claims (the
//! Basic Memory row of DESIGN.md) and RFC 8414 server metadata.

use serde::{Deserialize, Serialize};

/// The `error` codes of RFC 6749 §5.2, RFC 8628 §3.5 and RFC 7591 §3.2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// RFC 6750 §3.1, for RFC 7592's registration access token and userinfo.
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks a scope the request needs (userinfo without `openid`).
    InsufficientScope,
    /// OpenID Connect `prompt=none`: the person would have to sign in.
    LoginRequired,
    /// OpenID Connect `prompt=none`: the person would have to approve.
    ConsentRequired,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    /// The code as it appears on the wire (the same spelling serde uses).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// The RFC 8628 grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// An OAuth error response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthErrorBody {
    pub error: OAuthErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// A successful `/oauth/token` response (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds the refresh token stays usable (GitHub's extension), so a CLI can warn before
    /// the login lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
    pub scope: String,
    /// OpenID Connect: for a code granted with the `openid` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693: what a token exchange issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// The claims of an OpenID Connect ID token (Core §2), with the person's `email` and `name`
/// as the `email` and `profile` scopes allow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token was issued to.
    pub aud: String,
    /// The authorized party: the same client.
    pub azp: String,
    pub exp: i64,
    pub iat: i64,
    /// When the person last signed in (Unix seconds).
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub at_hash: String,
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// What OpenID Connect's userinfo endpoint answers: who (`sub`), and what the scopes reveal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub sub: String,
    #[serde(flatten)]
    pub profile: ProfileClaims,
}

/// What the `email` and `profile` scopes reveal of a person, in userinfo and ID tokens alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An RFC 7591 client registration request, as far as this issuer reads it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    /// OpenID Connect RP-initiated logout: where the issuer may send the browser afterwards.
    #[serde(default)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `RS256` (the default), `ES256` or `EdDSA`.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// The algorithm of this client's access tokens, when not the deployment's.
    #[serde(default)]
    pub access_token_signed_response_alg: Option<String>,
}

/// An RFC 7591 §3.2.1 registration response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationResponse {
    pub client_id: String,
    pub client_id_issued_at: i64,
    /// Confidential clients only, at registration only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// 0: the secret does not expire (present whenever `client_secret` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    /// RFC 7592, at registration only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_client_uri: Option<String>,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_signed_response_alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_signed_response_alg: Option<String>,
}

/// `GET /oauth/revocations?since=<ms>`: the access tokens revoked since then, for gates, which
/// verify JWTs offline and follow this feed to refuse revoked ones within a poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationFeed {
    /// The issuer's time (Unix milliseconds): the `since` of the next poll.
    pub now: i64,
    pub revoked: Vec<RevokedAccess>,
}

/// One revocation, refused until `exp` (Unix seconds), when such tokens have expired anyway:
/// a single token (`jti`), every token of a login (`sid`), or every token for the org
/// `org_id` issued (`iat`) at or before `issued_until` to `sub` (who left the org), or to
/// anyone when `sub` is absent (the org was deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokedAccess {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_until: Option<i64>,
    pub exp: i64,
}

/// An RFC 7662 introspection response; only `active` when the token is not valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntrospectionResponse {
    pub active: bool,
    /// `access_token`, `refresh_token` or `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// For an API key, its id (what usage reports name it by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The holder's role in `org_id` (`owner`, `admin`, `member`), when a person holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    /// What `org_id`'s subscription grants now (the live record, not what a token was
    /// issued with): its status, the tier in force and its entitlements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

impl IntrospectionResponse {
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// An RFC 8628 device authorization response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceAuthorizationResponse {
    pub device_code: String,
    /// Shown as XXXX-XXXX: 8 letters from an alphabet without look-alikes.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// Claims of a latchkey access token (`typ: at+jwt`; EdDSA unless configured otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The resource (RFC 8707) the token is for; the issuer itself when none was asked for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    pub org_id: String,
    pub tenant_id: String,
    pub subscription_status: String,
    pub subscription_tier: String,
    /// What the org's subscription grants (`cloud_sync`, …), as configured for its tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    /// The login (refresh family) the token was issued under: revoking the login (sign-out,
    /// a replayed code or refresh token, a password reset) revokes the token at the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A JSON Web Key Set (RFC 7517): every key that signs or still verifies, of every algorithm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public key: `OKP`/`Ed25519` (`x`), `EC`/`P-256` (`x`, `y`) or `RSA` (`n`, `e`);
/// see [`crate::jws::VerifyingKey::to_jwk`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: String,
}

/// RFC 8414 authorization server metadata (also served as OpenID discovery).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: String,
    pub end_session_endpoint: String,
    pub registration_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub device_authorization_endpoint: String,
    pub response_types_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    pub prompt_values_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub authorization_response_iss_parameter_supported: bool,
    pub client_id_metadata_document_supported: bool,
}

impl ServerMetadata {
    /// The metadata of an issuer at `issuer` (no trailing slash).
    pub fn for_issuer(issuer: &str) -> Self {
        let at = |path: &str| format!("{issuer}{path}");
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            issuer: issuer.to_owned(),
            authorization_endpoint: at("/oauth/authorize"),
            token_endpoint: at("/oauth/token"),
            jwks_uri: at("/.well-known/jwks.json"),
            userinfo_endpoint: at("/oauth/userinfo"),
            end_session_endpoint: at("/oauth/logout"),
            registration_endpoint: at("/oauth/register"),
            revocation_endpoint: at("/oauth/revoke"),
            introspection_endpoint: at("/oauth/introspect"),
            device_authorization_endpoint: at("/oauth/device_authorization"),
            response_types_supported: strings(&["code"]),
            grant_types_supported: strings(&[
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ]),
            code_challenge_methods_supported: strings(&["S256"]),
            token_endpoint_auth_methods_supported: strings(&[
                "none",
                "client_secret_basic",
                "client_secret_post",
            ]),
            scopes_supported: strings(&["openid", "profile", "email", "offline_access"]),
            id_token_signing_alg_values_supported: strings(&["RS256", "ES256", "EdDSA"]),
            subject_types_supported: strings(&["public"]),
            claims_supported: strings(&[
                "iss",
                "sub",
                "aud",
                "azp",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "email",
                "email_verified",
                "name",
            ]),
            prompt_values_supported: strings(&["none", "login", "consent"]),
            response_modes_supported: strings(&["query"]),
            claims_parameter_supported: false,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            authorization_response_iss_parameter_supported: true,
            client_id_metadata_document_supported: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_rfc_6749_spells_them() {
        let body = OAuthErrorBody {
            error: OAuthErrorCode::AuthorizationPending,
            error_description: None,
        };
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"error":"authorization_pending"}"#
        );
    }

    #[test]
    fn as_str_spells_every_code_as_serde_does() {
        use OAuthErrorCode::*;
        for code in [
            InvalidRequest,
            InvalidClient,
            InvalidGrant,
            UnauthorizedClient,
            UnsupportedGrantType,
            UnsupportedResponseType,
            InvalidScope,
            InvalidTarget,
            AccessDenied,
            AuthorizationPending,
            SlowDown,
            ExpiredToken,
            InvalidRedirectUri,
            InvalidClientMetadata,
            InvalidToken,
            InsufficientScope,
            LoginRequired,
            ConsentRequired,
            ServerError,
            TemporarilyUnavailable,
        ] {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                serde_json::Value::from(code.as_str())
            );
        }
    }

    #[test]
    fn metadata_points_every_endpoint_at_the_issuer() {
        let m = ServerMetadata::for_issuer("https://auth.example.com");
        assert_eq!(m.jwks_uri, "https://auth.example.com/.well-known/jwks.json");
        assert_eq!(m.code_challenge_methods_supported, ["S256"]);
    }
}
