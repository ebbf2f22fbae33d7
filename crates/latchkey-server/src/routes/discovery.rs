//! Discovery: RFC 8414 metadata (also at the OpenID path, for clients that only look there)
//! and the JWKS that resource servers and the gate verify access tokens with.

use axum::extract::State;
use latchkey_proto::oauth::{Jwks, ServerMetadata};

use crate::{AppState, extract::Json};

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata (also at /.well-known/openid-configuration)", body = ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    Json(ServerMetadata::for_issuer(
        &state.service.policy().public_url,
    ))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "The same metadata, where OpenID Connect clients look", body = ServerMetadata)))]
pub async fn openid_configuration(state: State<AppState>) -> Json<ServerMetadata> {
    metadata(state).await
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "Every key that signs or still verifies", body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(state.service.jwks())
}
