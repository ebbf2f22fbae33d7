//! Dynamic client registration (RFC 7591) for public clients: MCP clients and CLIs that
//! register themselves with loopback redirect URIs. Confidential clients are created by an
//! operator (`latchkey admin clients create` or the config file), never anonymously.

use std::net::IpAddr;

use latchkey_proto::oauth::{OAuthErrorCode, RegistrationRequest, RegistrationResponse};

use super::{ClientOrigin, NewClient, OAuthError};
use crate::{Service, throttle};

/// Grant types a self-registered public client may use.
const PUBLIC_GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
];

fn invalid_metadata(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClientMetadata, description)
}

impl Service {
    /// Registers a public client for whoever asks, at most [`throttle::REGISTRATION_PER_IP`]
    /// from one address.
    pub async fn register_client(
        &self,
        request: RegistrationRequest,
        from: IpAddr,
    ) -> Result<RegistrationResponse, OAuthError> {
        match request.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(invalid_metadata(format!(
                    "token_endpoint_auth_method {other} is not offered: only public clients \
                     (\"none\") may register themselves"
                )));
            }
        }
        let grant_types = request
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
        if let Some(grant) = grant_types
            .iter()
            .find(|g| !PUBLIC_GRANTS.contains(&g.as_str()))
        {
            return Err(invalid_metadata(format!(
                "grant type {grant} is not available to a public client"
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
        self.throttle(
            &format!("register:ip:{from}"),
            throttle::REGISTRATION_PER_IP,
        )
        .await?
        .map_err(OAuthError::Throttled)?;
        let (client, _) = self
            .create_oauth_client(NewClient {
                name,
                redirect_uris: request.redirect_uris,
                confidential: false,
                origin: ClientOrigin::SelfRegistered,
            })
            .await?;
        Ok(RegistrationResponse {
            client_id: client.id,
            client_id_issued_at: client.created_at.unix_timestamp(),
            client_name: client.name,
            redirect_uris: client.redirect_uris,
            token_endpoint_auth_method: "none".into(),
            grant_types,
            response_types,
        })
    }
}
