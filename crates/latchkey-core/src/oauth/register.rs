//! Dynamic client registration (RFC 7591) and its management (RFC 7592).
//!
//! Anyone may register a public client (MCP clients and CLIs with loopback redirect URIs): it
//! is the safe default. A deployment may also let clients register as confidential
//! (`client_secret_basic` / `client_secret_post`), which then get a secret. Every registration
//! comes with a registration access token, with which the client reads, updates and deletes
//! its own registration at its `registration_client_uri`.

use std::net::IpAddr;

use latchkey_proto::{
    RegistrationAccessToken, SecretHash,
    jws::Algorithm,
    oauth::{OAuthErrorCode, RegistrationRequest, RegistrationResponse},
};
use rand::rngs::OsRng;

use super::{ClientOrigin, NewClient, OAuthError};
use crate::{Service, store::OAuthClientRecord, throttle};

/// Grant types a self-registered public client may use.
const PUBLIC_GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
];

fn invalid_metadata(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClientMetadata, description)
}

/// What a registration request asks for, checked.
struct Registration {
    name: String,
    redirect_uris: Vec<String>,
    auth_method: String,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    id_token_alg: Option<Algorithm>,
    access_token_alg: Option<Algorithm>,
}

/// A registered signing algorithm: one this issuer signs with.
fn algorithm(field: &str, requested: Option<String>) -> Result<Option<Algorithm>, OAuthError> {
    requested
        .map(|name| {
            Algorithm::parse(&name).ok_or_else(|| {
                invalid_metadata(format!("{field} must be RS256, ES256 or EdDSA, not {name}"))
            })
        })
        .transpose()
}

/// Checks a registration request against what this deployment offers.
fn check_registration(
    request: RegistrationRequest,
    allows_confidential: bool,
) -> Result<Registration, OAuthError> {
    let auth_method = request
        .token_endpoint_auth_method
        .unwrap_or_else(|| "none".to_owned());
    let confidential = match auth_method.as_str() {
        "none" => false,
        "client_secret_basic" | "client_secret_post" if allows_confidential => true,
        other => {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method {other} is not offered: clients may register \
                     themselves as public clients (\"none\") only"
            )));
        }
    };
    let grant_types = request
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    let allowed = |grant: &str| {
        PUBLIC_GRANTS.contains(&grant) || (confidential && grant == "client_credentials")
    };
    if let Some(grant) = grant_types.iter().find(|g| !allowed(g)) {
        return Err(invalid_metadata(format!(
            "grant type {grant} is not available to this client"
        )));
    }
    let response_types = request
        .response_types
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(invalid_metadata("response_types may only contain code"));
    }
    let name = request
        .client_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "Unnamed application".to_owned());
    let post_logout_redirect_uris = request.post_logout_redirect_uris.unwrap_or_default();
    for uri in &post_logout_redirect_uris {
        latchkey_proto::redirect_uri::check_registration(uri, !confidential)
            .map_err(|e| invalid_metadata(format!("post_logout_redirect_uri {uri}: {e}")))?;
    }
    Ok(Registration {
        name,
        redirect_uris: request.redirect_uris,
        auth_method,
        grant_types,
        response_types,
        post_logout_redirect_uris,
        id_token_alg: algorithm(
            "id_token_signed_response_alg",
            request.id_token_signed_response_alg,
        )?,
        access_token_alg: algorithm(
            "access_token_signed_response_alg",
            request.access_token_signed_response_alg,
        )?,
    })
}

impl Service {
    fn check_registration(&self, request: RegistrationRequest) -> Result<Registration, OAuthError> {
        check_registration(request, self.inner.policy.registration_allows_confidential)
    }

    /// Registers a client for whoever asks, at most [`throttle::REGISTRATION_PER_IP`] from one
    /// address. The answer holds the client's secret (if confidential) and its registration
    /// access token, both shown this once.
    pub async fn register_client(
        &self,
        request: RegistrationRequest,
        from: IpAddr,
    ) -> Result<RegistrationResponse, OAuthError> {
        let registration = self.check_registration(request)?;
        self.throttle(
            &format!("register:ip:{from}"),
            throttle::REGISTRATION_PER_IP,
        )
        .await?
        .map_err(OAuthError::Throttled)?;
        let token = RegistrationAccessToken::generate(&mut OsRng);
        let (client, secret) = self
            .create_oauth_client(NewClient {
                name: registration.name.clone(),
                redirect_uris: registration.redirect_uris.clone(),
                confidential: registration.auth_method != "none",
                origin: ClientOrigin::SelfRegistered,
                registration_token: Some(token.hash()),
                post_logout_redirect_uris: registration.post_logout_redirect_uris.clone(),
                id_token_alg: registration.id_token_alg,
                access_token_alg: registration.access_token_alg,
            })
            .await?;
        Ok(RegistrationResponse {
            client_secret: secret.map(|s| s.expose_secret().to_owned()),
            client_secret_expires_at: (registration.auth_method != "none").then_some(0),
            registration_access_token: Some(token.expose_secret().to_owned()),
            registration_client_uri: Some(self.registration_client_uri(&client.id)),
            ..self.registration_response(&client, registration)
        })
    }

    /// RFC 7592 §2.1: the client's registration as it stands.
    pub async fn read_registration(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<RegistrationResponse, OAuthError> {
        let client = self.registered_client(client_id, token).await?;
        let registration = Registration {
            name: client.name.clone(),
            redirect_uris: client.redirect_uris.clone(),
            auth_method: auth_method_of(&client).to_owned(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            post_logout_redirect_uris: client.post_logout_redirect_uris.clone(),
            id_token_alg: client.id_token_alg,
            access_token_alg: client.access_token_alg,
        };
        Ok(self.registration_response(&client, registration))
    }

    /// RFC 7592 §2.2: replaces the client's metadata; its id, secret and authentication
    /// method stay as registered.
    pub async fn update_registration(
        &self,
        client_id: &str,
        token: &str,
        request: RegistrationRequest,
    ) -> Result<RegistrationResponse, OAuthError> {
        let mut client = self.registered_client(client_id, token).await?;
        let registration = self.check_registration(request)?;
        if (registration.auth_method == "none") != client.secret_hash.is_none() {
            return Err(invalid_metadata(
                "token_endpoint_auth_method cannot change: register a new client instead",
            ));
        }
        for uri in &registration.redirect_uris {
            latchkey_proto::redirect_uri::check_registration(uri, client.secret_hash.is_none())
                .map_err(|e| {
                    OAuthError::new(OAuthErrorCode::InvalidRedirectUri, format!("{uri}: {e}"))
                })?;
        }
        if registration.redirect_uris.is_empty() {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRedirectUri,
                "a client needs at least one redirect URI",
            ));
        }
        client.name = registration.name.clone();
        client.redirect_uris = registration.redirect_uris.clone();
        client.post_logout_redirect_uris = registration.post_logout_redirect_uris.clone();
        client.id_token_alg = registration.id_token_alg;
        client.access_token_alg = registration.access_token_alg;
        self.save_client(&client).await?;
        Ok(self.registration_response(&client, registration))
    }

    /// RFC 7592 §2.3: deletes the client, and with it every code and token issued to it.
    pub async fn delete_registration(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<(), OAuthError> {
        self.registered_client(client_id, token).await?;
        self.delete_client(client_id).await?;
        Ok(())
    }

    /// The self-registered client `client_id`, if `token` is its registration access token;
    /// any other answer is the same `invalid_token`, so client ids cannot be probed.
    async fn registered_client(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<OAuthClientRecord, OAuthError> {
        let presented = SecretHash::of(token);
        self.inner
            .store
            .oauth_client(client_id)
            .await?
            .filter(|c| c.registration_token.is_some_and(|t| t.matches(&presented)))
            .ok_or_else(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidToken,
                    "the registration access token is not valid for this client",
                )
            })
    }

    fn registration_client_uri(&self, client_id: &str) -> String {
        format!(
            "{}/oauth/register/{client_id}",
            self.inner.policy.public_url
        )
    }

    fn registration_response(
        &self,
        client: &OAuthClientRecord,
        registration: Registration,
    ) -> RegistrationResponse {
        RegistrationResponse {
            client_id: client.id.clone(),
            client_id_issued_at: client.created_at.unix_timestamp(),
            client_secret: None,
            client_secret_expires_at: None,
            registration_access_token: None,
            registration_client_uri: None,
            client_name: client.name.clone(),
            redirect_uris: client.redirect_uris.clone(),
            token_endpoint_auth_method: registration.auth_method,
            grant_types: registration.grant_types,
            response_types: registration.response_types,
            post_logout_redirect_uris: registration.post_logout_redirect_uris,
            id_token_signed_response_alg: registration
                .id_token_alg
                .unwrap_or(Algorithm::RS256)
                .as_str()
                .to_owned(),
            access_token_signed_response_alg: registration
                .access_token_alg
                .map(|alg| alg.as_str().to_owned()),
        }
    }
}

/// How a registered client authenticates at the token endpoint.
fn auth_method_of(client: &OAuthClientRecord) -> &'static str {
    if client.secret_hash.is_some() {
        "client_secret_basic"
    } else {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Option<&str>, grants: Option<&[&str]>) -> RegistrationRequest {
        RegistrationRequest {
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            client_name: None,
            token_endpoint_auth_method: method.map(str::to_owned),
            grant_types: grants.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
            ..RegistrationRequest::default()
        }
    }

    #[test]
    fn anyone_may_register_a_public_client_and_only_a_deployment_allows_confidential_ones() {
        let public = check_registration(request(None, None), false).expect("public");
        assert_eq!(public.auth_method, "none");
        assert_eq!(public.name, "Unnamed application");
        assert_eq!(public.grant_types, ["authorization_code", "refresh_token"]);
        for method in ["client_secret_basic", "client_secret_post"] {
            assert!(check_registration(request(Some(method), None), false).is_err());
            assert!(check_registration(request(Some(method), None), true).is_ok());
        }
        assert!(check_registration(request(Some("private_key_jwt"), None), true).is_err());
    }

    #[test]
    fn client_credentials_are_for_confidential_clients_and_only_code_is_a_response_type() {
        let machine = Some(&["client_credentials"][..]);
        assert!(check_registration(request(None, machine), true).is_err());
        assert!(check_registration(request(Some("client_secret_basic"), machine), true).is_ok());
        let implicit = RegistrationRequest {
            response_types: Some(vec!["token".into()]),
            ..request(None, None)
        };
        assert!(check_registration(implicit, true).is_err());
    }

    #[test]
    fn signing_algorithms_and_logout_uris_are_checked_at_registration() {
        let chosen = RegistrationRequest {
            id_token_signed_response_alg: Some("ES256".into()),
            access_token_signed_response_alg: Some("RS256".into()),
            post_logout_redirect_uris: Some(vec!["http://127.0.0.1:8000/signed-out".into()]),
            ..request(None, None)
        };
        let registration = check_registration(chosen, false).expect("valid");
        assert_eq!(registration.id_token_alg, Some(Algorithm::ES256));
        assert_eq!(registration.access_token_alg, Some(Algorithm::RS256));
        for (field, bad) in [
            ("id_token_signed_response_alg", "none"),
            ("id_token_signed_response_alg", "HS256"),
            ("access_token_signed_response_alg", "RS512"),
        ] {
            let mut request = request(None, None);
            if field == "id_token_signed_response_alg" {
                request.id_token_signed_response_alg = Some(bad.into());
            } else {
                request.access_token_signed_response_alg = Some(bad.into());
            }
            assert!(check_registration(request, false).is_err(), "{field}={bad}");
        }
        let fragment = RegistrationRequest {
            post_logout_redirect_uris: Some(vec!["https://evil.example/#x".into()]),
            ..request(None, None)
        };
        assert!(check_registration(fragment, false).is_err());
    }
}
