//! Wire types and credential formats shared by the latchkey server, the client library and the gate.
//!
//! Everything here is pure: no I/O, no clock, no global randomness (generators take an RNG).

pub mod api_key;
pub mod base62;
pub mod code;
pub mod error;
pub mod jws;
pub mod local_path;
pub mod oauth;
pub mod origin;
pub mod pkce;
pub mod redirect_uri;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod wire;

pub use api_key::{ApiKey, ApiKeyFormatError, KeyHash, KeyPrefix};
pub use code::PairingCode;
pub use error::ErrorBody;
pub use local_path::LocalPath;
pub use secret::{
    AuthorizationCode, CeremonyToken, ClientSecret, DeviceCode, EmailChangeToken, InvitationToken,
    PasswordResetToken, RefreshToken, RegistrationAccessToken, SecondFactorToken, SecretHash,
    SessionToken, SignUpReceipt, VerificationToken, WaitSecret,
};
