//! The one place domain errors become HTTP responses: a stable `error` code and a message for
//! the client; the detail of internal failures goes to the log only.

use axum::{
    extract::rejection::{FormRejection, JsonRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use latchkey_core::{
    AccessTokenError, AccountError, ApiKeyError, OAuthError, StoreError, TokenFlowError,
    oauth::device::DeviceEntryError, throttle::Throttled,
};
use latchkey_proto::{
    ErrorBody,
    oauth::{OAuthErrorBody, OAuthErrorCode},
};

#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: sentence(message.into()),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Gives `response` (a page showing this error) its status and `Retry-After`.
    pub fn apply_status(&self, response: &mut Response) {
        *response.status_mut() = self.status;
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }

    pub(crate) fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(error), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle this request; it has been logged.",
        )
    }

    /// 429 with the `Retry-After` the throttle computed.
    fn throttled(refused: Throttled, message: String) -> Self {
        Self {
            retry_after: Some(refused.retry_after_secs()),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message)
        }
    }

    fn unavailable(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(error), "storage unavailable");
        Self {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is temporarily unavailable; retry shortly.",
            )
        }
    }
}

/// Domain errors read like `Display` ("no such …"); people get a sentence ("No such …").
fn sentence(mut message: String) -> String {
    if let Some(first) = message.get(..1) {
        let upper = first.to_uppercase();
        message.replace_range(..1, &upper);
    }
    message
}

pub use latchkey_proto::error::error_chain;

/// What a 503 asks clients to wait: about how long a database restart or failover takes.
const RETRY_AFTER_SECS: u64 = 5;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message.clone(),
            subscribe_url: None,
        };
        let mut response = axum::Json(body).into_response();
        self.apply_status(&mut response);
        response
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::unavailable(&e),
            StoreError::Conflict(what) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            StoreError::Corrupt(_) => Self::internal(&e),
        }
    }
}

impl From<TokenFlowError> for AppError {
    fn from(e: TokenFlowError) -> Self {
        use TokenFlowError as E;
        let message = e.to_string();
        match e {
            E::InvalidRequest(_) => Self::bad_request(message),
            E::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Expired => Self::new(StatusCode::GONE, "expired", message),
            E::Denied => Self::forbidden("access_denied", message),
            E::AlreadyDecided => Self::new(StatusCode::CONFLICT, "already_decided", message),
            E::EmailNotVerified => Self::forbidden("email_not_verified", message),
            E::Seal(ref inner) => Self::internal(inner),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<latchkey_core::upstream::UpstreamError> for AppError {
    fn from(e: latchkey_core::upstream::UpstreamError) -> Self {
        use latchkey_core::upstream::UpstreamError as E;
        let message = e.to_string();
        match e {
            E::UnknownState | E::OtherBrowser | E::LinkNotYours => Self::bad_request(message),
            E::Disabled => Self::forbidden("account_disabled", message),
            E::NoEmail { .. }
            | E::EmailNotVerified { .. }
            | E::DomainNotAllowed { .. }
            | E::HostedDomain { .. } => Self::forbidden("upstream_identity_refused", message),
            E::NotSignedIn { .. } => Self::unauthorized(message),
            E::NotLinked { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::AccountExists { .. } => Self::new(StatusCode::CONFLICT, "account_exists", message),
            E::LinkedElsewhere { .. } | E::ProviderAlreadyLinked { .. } => {
                Self::new(StatusCode::CONFLICT, "identity_linked", message)
            }
            E::LastSignInMethod { .. } => {
                Self::new(StatusCode::CONFLICT, "last_sign_in_method", message)
            }
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::upstream::ProviderError> for AppError {
    fn from(e: crate::upstream::ProviderError) -> Self {
        use crate::upstream::ProviderError as E;
        let message = e.to_string();
        match e {
            E::Unavailable { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "provider_unavailable", message)
            }
            E::Rejected { .. } => Self::new(StatusCode::BAD_GATEWAY, "provider_rejected", message),
        }
    }
}

impl From<latchkey_core::billing::BillingError> for AppError {
    fn from(e: latchkey_core::billing::BillingError) -> Self {
        use latchkey_core::billing::BillingError as E;
        let message = e.to_string();
        match e {
            E::StripeNotConfigured | E::UnknownOrg(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            E::Signature(_) => Self::new(StatusCode::UNAUTHORIZED, "invalid_signature", message),
            E::BadEvent(_) | E::UnknownTier(..) | E::Status(_) => Self::bad_request(message),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<latchkey_core::second_factor::SecondFactorError> for AppError {
    fn from(e: latchkey_core::second_factor::SecondFactorError) -> Self {
        use latchkey_core::second_factor::SecondFactorError as E;
        let message = e.to_string();
        match e {
            E::WrongCode => Self::unauthorized(message),
            E::Throttled(t) => Self::throttled(t, message),
            E::NoChallenge | E::NotSettingUp => {
                Self::new(StatusCode::BAD_REQUEST, "no_sign_in", message)
            }
            E::AlreadyOn | E::NotOn => Self::new(StatusCode::CONFLICT, "second_factor", message),
            E::Sealed => Self::internal(&e),
            E::Account(inner) => inner.into(),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<latchkey_core::passkeys::PasskeyError> for AppError {
    fn from(e: latchkey_core::passkeys::PasskeyError) -> Self {
        use latchkey_core::passkeys::PasskeyError as E;
        let message = e.to_string();
        match e {
            E::Unavailable => Self::new(StatusCode::NOT_FOUND, "passkeys_unavailable", message),
            E::NoCeremony | E::NoChallenge | E::InvalidName => Self::bad_request(message),
            E::Rejected(_) | E::UnknownPasskey => Self::unauthorized(message),
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Disabled => Self::forbidden("account_disabled", message),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<latchkey_core::console::ConsoleError> for AppError {
    fn from(e: latchkey_core::console::ConsoleError) -> Self {
        use latchkey_core::console::ConsoleError as E;
        let message = e.to_string();
        match e {
            E::UnknownKind(_) | E::BadCursor | E::BadLimit => Self::bad_request(message),
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Org(inner) => inner.into(),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<latchkey_core::org::OrgError> for AppError {
    fn from(e: latchkey_core::org::OrgError) -> Self {
        use latchkey_core::org::OrgError as E;
        let message = e.to_string();
        match e {
            E::InvalidRole(_) | E::InvalidSlug | E::InvalidName | E::InvalidEmail(_) => {
                Self::bad_request(message)
            }
            E::NotFound(_) | E::NotAMember(_) | E::NoSuchInvitation(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            E::AlreadyAMember(_) => Self::new(StatusCode::CONFLICT, "already_a_member", message),
            E::InvalidInvitation => Self::new(StatusCode::BAD_REQUEST, "invalid_link", message),
            E::InvitationForSomeoneElse { .. } => {
                Self::forbidden("invitation_for_someone_else", message)
            }
            E::Throttled(t) => Self::throttled(t, message),
            E::Mail(ref inner) => Self::internal(inner),
            E::SlugTaken(_) => Self::new(StatusCode::CONFLICT, "org_exists", message),
            E::Forbidden { .. } => Self::forbidden("insufficient_role", message),
            E::Personal { .. } => Self::forbidden("personal_org", message),
            E::LastOwner { .. } => Self::forbidden("last_owner", message),
            E::SecondFactorRequired { .. } => Self::forbidden("second_factor_required", message),
            E::EmailNotVerified => Self::forbidden("email_not_verified", message),
            E::BeyondKeyScope { .. } => Self::forbidden("insufficient_scope", message),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        use AccountError as E;
        let message = e.to_string();
        match e {
            E::InvalidEmail(_) | E::InvalidName | E::InvalidPassword => Self::bad_request(message),
            E::WrongCredentials => Self::unauthorized(message),
            E::WrongCurrentPassword => Self::forbidden("wrong_password", message),
            E::InvalidVerificationLink | E::InvalidResetLink => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_link", message)
            }
            E::Throttled(t) | E::MailThrottled(t) => Self::throttled(t, message),
            E::PasswordsOff => Self::forbidden("password_sign_in_disabled", message),
            E::Disabled => Self::forbidden("account_disabled", message),
            E::SameEmail | E::DeletionNotConfirmed => Self::bad_request(message),
            E::EmailTaken => Self::new(StatusCode::CONFLICT, "email_taken", message),
            E::InvalidEmailChangeLink => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_link", message)
            }
            E::SignInAgain => Self::forbidden("sign_in_again", message),
            E::SoleOwner(_) => Self::forbidden("sole_owner", message),
            E::Mail(ref inner) => Self::internal(inner),
            E::Hashing => Self::internal(&e),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<ApiKeyError> for AppError {
    fn from(e: ApiKeyError) -> Self {
        use ApiKeyError as E;
        let message = e.to_string();
        match e {
            E::Format(_) | E::Unknown => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
            }
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::InvalidName | E::InvalidExpiry | E::TwoExpiries | E::InvalidScope(_) => {
                Self::bad_request(message)
            }
            E::OrgRule(_) => Self::forbidden("second_factor_required", message),
            E::NotAMember(_) | E::BeyondCreatorScope { .. } => {
                Self::forbidden("insufficient_scope", message)
            }
            E::EmailNotVerified => Self::forbidden("email_not_verified", message),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<AccessTokenError> for AppError {
    fn from(e: AccessTokenError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
    }
}

impl From<DeviceEntryError> for AppError {
    fn from(e: DeviceEntryError) -> Self {
        use DeviceEntryError as E;
        let message = e.to_string();
        match e {
            E::UnknownCode => Self::new(StatusCode::NOT_FOUND, "unknown_code", message),
            E::AlreadyDecided => Self::new(StatusCode::CONFLICT, "already_decided", message),
            E::EmailNotVerified => Self::forbidden("email_not_verified", message),
            E::Throttled(t) => Self::throttled(t, message),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, "invalid_request", rejection.body_text())
    }
}

impl From<FormRejection> for AppError {
    fn from(rejection: FormRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<OAuthError> for AppError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Protocol { code, description } => Self::new(
                match code {
                    // On a page (consent, device), a refusal is the person's, not the request's.
                    OAuthErrorCode::AccessDenied => StatusCode::FORBIDDEN,
                    other => oauth_status(other),
                },
                code.as_str(),
                description,
            ),
            OAuthError::Throttled(t) => Self::throttled(t, e.to_string()),
            OAuthError::Store(inner) => inner.into(),
            OAuthError::Signing(ref inner) => Self::internal(inner),
        }
    }
}

/// The status of an OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1): 401 for a client or token
/// that failed, 403 for a token without the scope, 400 for everything else.
fn oauth_status(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidClient | OAuthErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An error from an OAuth endpoint: RFC 6749 §5.2 JSON (`error`, `error_description`).
#[derive(Debug)]
pub struct OAuthErrorResponse(OAuthError);

impl From<OAuthError> for OAuthErrorResponse {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let (status, code, description, retry_after) = match self.0 {
            OAuthError::Protocol { code, description } => {
                (oauth_status(code), code, description, None)
            }
            other => {
                // Reuse the API mapping for logging, the status (429, 500 or 503) and
                // `Retry-After`.
                let app = AppError::from(other);
                let code = match app.status {
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                        OAuthErrorCode::TemporarilyUnavailable
                    }
                    _ => OAuthErrorCode::ServerError,
                };
                (app.status, code, app.message, app.retry_after)
            }
        };
        let mut response = (
            status,
            axum::Json(OAuthErrorBody {
                error: code,
                error_description: Some(description),
            }),
        )
            .into_response();
        // A client authenticates with Basic; a bearer token (userinfo, RFC 7592) is
        // challenged as RFC 6750 §3 says.
        let challenge = match code {
            OAuthErrorCode::InvalidClient => Some("Basic realm=\"latchkey\""),
            OAuthErrorCode::InvalidToken => Some("Bearer error=\"invalid_token\""),
            OAuthErrorCode::InsufficientScope => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(challenge) = challenge.filter(|_| status.is_client_error()) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
