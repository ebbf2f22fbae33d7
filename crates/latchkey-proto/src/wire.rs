//! Request and response bodies of the JSON API.

use serde::{Deserialize, Serialize};

use crate::secret::WaitSecret;

/// `POST /v1/token-flow/create`. Every field is optional (Modal/Memori contract).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenFlowCreateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    /// What the approval page calls the client ("acme CLI on build-box"); defaults to the
    /// User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenFlowCreateResponse {
    pub token_flow_id: String,
    pub web_url: String,
    /// The pairing code, shown in the terminal and on the approval page.
    pub code: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wait_secret: WaitSecret,
}

/// `POST /v1/token-flow/wait`: long-polls for at most `timeout` seconds (0 to 60).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenFlowWaitRequest {
    pub token_flow_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wait_secret: WaitSecret,
    pub timeout: f64,
}

/// `{timeout: true}` while pending; the key and who it belongs to once approved. `api_key` and
/// `token_secret` carry the same key, for both client generations.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenFlowWaitResponse {
    pub timeout: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

impl std::fmt::Debug for TokenFlowWaitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFlowWaitResponse")
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("email", &self.email)
            .field("user_id", &self.user_id)
            .field("org", &self.org)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgInfo {
    pub id: String,
    pub slug: String,
    pub name: String,
}

/// An org the caller belongs to, with the caller's role there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgMembershipInfo {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// `owner`, `admin` or `member`; in `/v1/me`, `machine` for a token a client holds for
    /// itself (keyless CI).
    pub role: String,
    /// The caller's personal org, made with the account: it cannot be left or deleted.
    pub personal: bool,
}

/// `GET /v1/orgs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgListResponse {
    pub orgs: Vec<OrgMembershipInfo>,
}

/// `POST /v1/orgs`: a new org, owned by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrgCreateRequest {
    /// 3 to 39 lowercase letters, digits and single hyphens, starting with a letter.
    pub slug: String,
    /// Shown to people (default: the slug).
    #[serde(default)]
    pub name: Option<String>,
}

/// `PATCH /v1/orgs/{org}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrgUpdateRequest {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// Require every member to have a second factor to act in the org (owners only, and only
    /// once they have one themselves).
    #[serde(default)]
    pub require_second_factor: Option<bool>,
}

/// A member of an org.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInfo {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// Unix seconds.
    pub joined_at: i64,
}

/// `GET /v1/orgs/{org}/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberListResponse {
    pub org: OrgMembershipInfo,
    pub members: Vec<MemberInfo>,
}

/// `PATCH /v1/orgs/{org}/members/{user_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberUpdateRequest {
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// A pending invitation to an org.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationInfo {
    pub id: String,
    pub email: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// The user id of who sent it.
    pub invited_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `GET /v1/orgs/{org}/invitations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationListResponse {
    pub invitations: Vec<InvitationInfo>,
}

/// `POST /v1/orgs/{org}/invitations`: mails the address a link to join (inviting it again
/// replaces the pending invitation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InvitationCreateRequest {
    pub email: String,
    /// `owner`, `admin` or `member` (the default).
    #[serde(default)]
    pub role: Option<String>,
}

/// How the caller of `/v1/me` authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialInfo {
    ApiKey {
        key_id: String,
        key_prefix: String,
        /// When the key expires (Unix seconds); absent for a key that does not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
        /// What the key may do, space-separated; absent for a key that may do everything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// An OAuth access token (JWT); `expires_at` is Unix seconds.
    AccessToken {
        client_id: String,
        scope: String,
        expires_at: i64,
    },
    Session,
}

/// `GET /v1/me`: who the credential belongs to (Modal's ClientHello).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeResponse {
    /// The person's id; for a token a client holds for itself (keyless CI), the client's
    /// (`federated:<trust>`), with `email` empty and `org` the org it acts for.
    pub user_id: String,
    pub email: String,
    pub email_verified: bool,
    /// The account's personal org.
    pub org: OrgInfo,
    pub credential: CredentialInfo,
    /// The org this credential acts for (an API key's org; an access token's `org_id`; a
    /// session: the personal org), with the caller's role there. Absent from servers older
    /// than organizations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_org: Option<OrgMembershipInfo>,
    /// What the acting org's subscription grants now. Absent from servers older than
    /// subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionInfo>,
}

/// Whether `me`'s acting org's subscription grants `entitlement`; if not, where to subscribe
/// (or where to look, when the server does not say).
pub fn check_entitlement(me: &MeResponse, entitlement: &str) -> Result<(), String> {
    match &me.subscription {
        Some(s) if s.entitlements.iter().any(|e| e == entitlement) => Ok(()),
        subscription => Err(subscription
            .as_ref()
            .and_then(|s| s.subscribe_url.clone())
            .unwrap_or_else(|| "your account page".to_owned())),
    }
}

/// An org's subscription as `/v1/me` tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionInfo {
    /// `none`, `trialing`, `active`, `past_due`, `canceled` or `unpaid`.
    pub status: String,
    /// The tier in force (the default tier when nothing is bought or it lapsed).
    pub tier: String,
    pub entitlements: Vec<String>,
    /// When the period paid for ends (Unix seconds); absent when open-ended or never bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<i64>,
    /// Where the org subscribes, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
}

impl MeResponse {
    /// Who to say is logged in: the email, or for a client's own token its id.
    pub fn name(&self) -> &str {
        if self.email.is_empty() {
            &self.user_id
        } else {
            &self.email
        }
    }

    /// The id and slug of the org the credential acts for: `acting_org`, or the personal org
    /// from a server older than organizations.
    pub fn acting_org(&self) -> (&str, &str) {
        self.acting_org
            .as_ref()
            .map_or((&self.org.id, &self.org.slug), |o| (&o.id, &o.slug))
    }
}

/// `POST /v1/api-keys`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreateRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// The key's lifetime in days (1 to 3650); none: it never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// The key's lifetime in seconds (1 to ten years), instead of `expires_in_days`.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// What the key may do (at a gate's `--require-scope`, and `api_keys` to manage keys);
    /// none: everything the account may.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The org the key acts for, by id or slug: the caller's own.
    #[serde(default)]
    pub org: Option<String>,
}

/// One API key as listings show it: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    /// The org the key acts for.
    pub org_id: String,
    /// What the key may do; `null`: everything its account may.
    pub scopes: Option<Vec<String>>,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Past its expiry: refused like a revoked key, listed until it is revoked.
    pub expired: bool,
    pub last_used_at: Option<String>,
    pub usage_count: u64,
}

/// The one response that carries a new key in full.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyCreateResponse {
    pub api_key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

impl std::fmt::Debug for ApiKeyCreateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCreateResponse")
            .field("api_key", &"[redacted]")
            .field("info", &self.info)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyListResponse {
    pub api_keys: Vec<ApiKeyInfo>,
}

/// `POST /auth/client` (MemoryGate): a static machine client's credentials.
#[derive(Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MachineClientRequest {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for MachineClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineClientRequest")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The short-lived API key a machine client gets.
#[derive(Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineClientResponse {
    pub api_key: String,
    pub key_prefix: String,
    pub user_id: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl std::fmt::Debug for MachineClientResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineClientResponse")
            .field("key_prefix", &self.key_prefix)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/gate/usage`: API key uses a gate counted since its last report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    pub keys: Vec<KeyUsageReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyUsageReport {
    pub key_id: String,
    pub count: u64,
    /// Unix seconds.
    pub last_used_at: i64,
}

/// The answer to a billing webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookReceipt {
    pub received: bool,
    /// `applied`, `unchanged` (older than what is known, or already applied) or `ignored`
    /// (an event that concerns no subscription here).
    pub outcome: String,
}

/// A browser session, as the account console lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrowserSessionInfo {
    /// `ses_…`: what `DELETE /v1/sessions/{id}` signs out.
    pub id: String,
    /// The browser, read from its User-Agent: "Firefox on Linux".
    pub device: String,
    pub user_agent: Option<String>,
    /// The address it was last seen from.
    pub ip: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub last_seen_at: String,
    /// The session making this request.
    pub current: bool,
}

/// A login holding tokens for the person: an OAuth app's or a CLI's refresh family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginInfo {
    /// `rf_…`: what `DELETE /v1/sessions/{id}` revokes.
    pub id: String,
    pub client_id: String,
    pub client_name: String,
    /// `browser` (authorization code), `device` (device code), `token_flow` or `handoff` (a CLI
    /// given an API key: `id` is the key's, `client_id` empty), or `oauth` (from before the
    /// console recorded it).
    pub method: String,
    /// The device name the client reported (a CLI sends its host name).
    pub device_name: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 3339: when it was approved, and when it last refreshed.
    pub created_at: String,
    pub last_used_at: String,
    /// The login whose access token makes this request.
    pub current: bool,
}

/// `GET /v1/sessions`: where the person is signed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsResponse {
    pub sessions: Vec<BrowserSessionInfo>,
    pub logins: Vec<LoginInfo>,
}

/// One security event of the audit log. Nothing secret is ever in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEventInfo {
    pub id: String,
    /// `sign_in`, `password_changed`, `api_key_created`, `login_revoked`, ….
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339.
    pub at: String,
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

/// `GET /v1/audit`: a page of events, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditResponse {
    pub events: Vec<AuditEventInfo>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/account/export`: what the service holds about the caller, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountExport {
    /// RFC 3339.
    pub exported_at: String,
    pub user_id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub created_at: String,
    pub orgs: Vec<OrgMembershipInfo>,
    /// Identity providers linked to the account: `{provider, email, linked_at}`.
    pub identities: Vec<LinkedIdentityInfo>,
    pub api_keys: Vec<ApiKeyInfo>,
    pub sessions: Vec<BrowserSessionInfo>,
    pub logins: Vec<LoginInfo>,
    /// The audit log of the last 90 days, newest first.
    pub audit_events: Vec<AuditEventInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkedIdentityInfo {
    pub provider: String,
    pub email: String,
    pub linked_at: String,
}
