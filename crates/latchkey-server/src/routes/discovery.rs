//! Discovery: RFC 8414 metadata (also at the OpenID path, for clients that only look there)
//! and the JWKS that resource servers and the gate verify access tokens with.

use axum::extract::State;
use latchkey_proto::oauth::{Jwks, ServerMetadata};

use crate::{AppState, extract::Json};

pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    Json(ServerMetadata::for_issuer(
        &state.service.policy().public_url,
    ))
}

pub async fn jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(state.service.jwks())
}
