//! The latchkey gate: authentication in front of an API or an MCP server. [`Verifier`] decides
//! who a credential belongs to (JWTs locally against the issuer's JWKS, API keys by checksum and
//! cached introspection); [`GateLayer`] puts it in front of any axum service in one line.

pub mod layer;
pub mod proxy;
mod upstream;
pub mod verifier;

pub use layer::{
    GateLayer, GateStats, ORG_HEADER, SCOPES_HEADER, SubscriptionRequirement, USER_HEADER,
};
pub use verifier::{
    IssuerAuthority, KeyIdentity, Principal, Verifier, VerifierConfig, VerifyError,
};

/// `error` and the errors that caused it, outermost first.
pub(crate) fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}
