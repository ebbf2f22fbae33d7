//! The storage interface the service is written against, and the records it exchanges.
//!
//! Implementations (SQLite, PostgreSQL) live in `latchkey-store`; handlers never see them. Every
//! method that changes several rows does so atomically.

use async_trait::async_trait;
use latchkey_proto::{SecretHash, jws::Algorithm, oauth::AccessTokenClaims};
use thiserror::Error;
use time::OffsetDateTime;

use crate::org::Role;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (for example an email already registered).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The database could not be reached or failed; the request may be retried later.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored row could not be read back into a record.
    #[error("a stored {0} row is corrupt")]
    Corrupt(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    /// The name the person gave at sign-up, if any (OIDC's `name` claim).
    pub name: Option<String>,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    /// Set while an operator has the account disabled: no sign-in, its API keys refused.
    pub disabled_at: Option<OffsetDateTime>,
    /// The user's personal org, created with the account.
    pub org: Org,
}

/// A sign-in with an upstream identity provider, between the redirect there and the callback.
#[derive(Clone, Debug)]
pub struct UpstreamLoginRecord {
    pub state_hash: SecretHash,
    pub provider_id: String,
    /// The hash of the cookie that ties the sign-in to the browser that started it.
    pub browser_hash: SecretHash,
    pub pkce_verifier: String,
    pub nonce: String,
    pub next_path: Option<String>,
    /// Set when a signed-in person links the provider to this account from the account page.
    pub link_user_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An account's identity at an upstream provider.
#[derive(Clone, Debug)]
pub struct IdentityRecord {
    pub provider_id: String,
    pub subject: String,
    pub user_id: String,
    /// The email the provider vouched for when the identity was linked.
    pub email: String,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub name: String,
    pub key_prefix: String,
    pub hash: SecretHash,
    /// What the key may do, space-separated; `None`: everything its account may.
    pub scope: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub usage_count: u64,
    /// `token_flow` or `handoff` for the key a CLI login was given; `None` for one made on
    /// purpose.
    pub origin: Option<String>,
}

/// A revocation a gate must learn of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessRevocation {
    Token {
        jti: String,
        expires_at: OffsetDateTime,
    },
    Login {
        family_id: String,
        revoked_at: OffsetDateTime,
    },
    /// `user_id` left the org (`None`: the org was deleted): its tokens issued by then.
    Departure {
        org_id: String,
        user_id: Option<String>,
        departed_at: OffsetDateTime,
    },
}

/// A live email-verification link.
#[derive(Clone, Debug)]
pub struct PendingVerification {
    pub user_id: String,
    /// The sign-up receipt hash of the browser that may use it without the password.
    pub browser: Option<SecretHash>,
}

/// Usage counted in memory since the last flush, written in one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    pub key_id: String,
    pub count: u64,
    pub last_used_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct TokenFlowRecord {
    pub id: String,
    pub wait_secret_hash: SecretHash,
    /// The public half of the key pair derived from the wait secret; approval seals to it.
    pub seal_public_key: [u8; 32],
    pub pairing_code: String,
    pub client_name: String,
    pub utm_source: Option<String>,
    pub next_url: Option<String>,
    pub localhost_port: Option<u16>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub status: FlowStatus,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowStatus {
    Pending,
    Denied,
    Approved(FlowApproval),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowApproval {
    pub user_id: String,
    pub key_id: String,
    /// The API key sealed to the wait secret; `None` once purged after delivery.
    pub sealed_key: Option<Vec<u8>>,
    pub approved_at: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
}

/// A token signing key of one algorithm. Retired keys stop signing but stay published in the
/// JWKS until every token they signed has expired.
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: Algorithm,
    /// PKCS#8 DER of the private key, sealed with the master key.
    pub private_pkcs8: Vec<u8>,
    /// As `latchkey_proto::jws::VerifyingKey::to_public_bytes` writes it.
    pub public_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A registered OAuth client. Public clients (CLIs) have no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClientRecord {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<SecretHash>,
    pub redirect_uris: Vec<String>,
    pub created_at: OffsetDateTime,
    /// Self-registered clients: the hash of their RFC 7592 registration access token.
    pub registration_token: Option<SecretHash>,
    /// Where RP-initiated logout may send the browser back to (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// The algorithm of its ID tokens; `None`: RS256.
    pub id_token_alg: Option<Algorithm>,
    /// The algorithm of its access tokens; `None`: the deployment's.
    pub access_token_alg: Option<Algorithm>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    pub code_hash: SecretHash,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub resource: Option<String>,
    /// OpenID Connect: the request's `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// When the person who approved had signed in.
    pub auth_time: OffsetDateTime,
    /// The refresh family the exchange starts; revoked if the code is presented twice.
    pub family_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What presenting an authorization code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeUse {
    /// First use: the code is now spent.
    First(AuthorizationCodeRecord),
    /// Already spent: an attacker or a replay.
    Replayed(AuthorizationCodeRecord),
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: SecretHash,
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The org the login acts for through this token; `None`: the person's personal org.
    pub org_id: Option<String>,
}

/// The token a rotation adds; its family, client, user, scope and resource are the presented
/// token's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextRefresh {
    pub token_hash: SecretHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// Live: it is now spent (this is it) and the next token has been stored in its family.
    Rotated(RefreshTokenRecord),
    /// Spent before: its whole family has now been revoked.
    Replayed(RefreshTokenRecord),
    /// Unknown, expired or revoked.
    Unknown,
}

/// An RFC 8628 device authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCodeRecord {
    pub device_code_hash: SecretHash,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_polled_at: Option<OffsetDateTime>,
    pub status: DeviceCodeStatus,
    /// Who approved or denied it.
    pub user_id: Option<String>,
    /// The refresh family the tokens will start.
    pub family_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceCodeStatus {
    Pending,
    Approved,
    Denied,
    Delivered,
}

/// A committed change that every replica must act on at once. The store announces these as it
/// commits (PostgreSQL: `NOTIFY` inside the transaction); each replica follows them through
/// [`Store::watch_changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A token flow was approved or denied: wake its waits.
    TokenFlowDecided(String),
    /// An API key was revoked: forget it in every key cache.
    ApiKeyRevoked(SecretHash),
    /// An OAuth client was registered or changed: forget the cached copy.
    ClientChanged(String),
    /// An org's subscription changed: forget the cached copy.
    SubscriptionChanged(String),
    /// A signing key was added: reload the key ring.
    SigningKeysRotated,
    /// Announcements may have been missed (the listener reconnected): re-read everything.
    Missed,
}

impl Change {
    /// The announcement's text (at most ~100 bytes; `NOTIFY` payloads must stay under 8,000).
    pub fn to_payload(&self) -> String {
        match self {
            Self::TokenFlowDecided(id) => format!("flow:{id}"),
            Self::ApiKeyRevoked(hash) => format!("key:{}", hash.to_hex()),
            Self::ClientChanged(id) => format!("client:{id}"),
            Self::SubscriptionChanged(org_id) => format!("subscription:{org_id}"),
            Self::SigningKeysRotated => "signing".to_owned(),
            Self::Missed => "missed".to_owned(),
        }
    }

    /// Reads an announcement; `None` for text no version of latchkey sends.
    pub fn from_payload(payload: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once(':').unwrap_or((payload, ""));
        match (kind, rest) {
            ("flow", id) if !id.is_empty() => Some(Self::TokenFlowDecided(id.to_owned())),
            ("key", hex) => SecretHash::from_hex(hex).map(Self::ApiKeyRevoked),
            ("client", id) if !id.is_empty() => Some(Self::ClientChanged(id.to_owned())),
            ("subscription", org_id) if !org_id.is_empty() => {
                Some(Self::SubscriptionChanged(org_id.to_owned()))
            }
            ("signing", "") => Some(Self::SigningKeysRotated),
            ("missed", "") => Some(Self::Missed),
            _ => None,
        }
    }
}

/// Changes committed by every process on the database, in commit order.
pub type ChangeFeed = tokio::sync::mpsc::Receiver<Change>;

/// A person's place in an org.
#[derive(Clone, Debug)]
pub struct Membership {
    pub org: Org,
    pub role: Role,
    /// Whether this is the person's personal org, made with the account.
    pub personal: bool,
    /// Whether the org admits only members with a second factor (never a personal org).
    pub requires_second_factor: bool,
}

/// A member as an org's member list shows them.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub joined_at: OffsetDateTime,
}

/// An invitation to an org, pending until it is accepted, revoked, replaced or expired.
#[derive(Clone, Debug)]
pub struct InvitationRecord {
    pub id: String,
    pub org_id: String,
    /// Only a verified account with this address may accept it.
    pub email: String,
    pub role: Role,
    pub token_hash: SecretHash,
    /// The user id of who sent it.
    pub invited_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// One exchange of an external issuer's token (keyless CI), as the audit keeps it.
#[derive(Clone, Debug)]
pub struct FederatedExchangeRecord {
    /// The `[[trusted_issuers]]` id it went through.
    pub trusted_issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// Every claim of the token, as JSON.
    pub claims: String,
    pub org_id: String,
    pub at: OffsetDateTime,
}

/// A browser session, as the account console lists it (its token hash stays in the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The public handle the console signs it out by.
    pub id: String,
    pub user_id: String,
    pub user_agent: Option<String>,
    /// Where it was last seen from.
    pub ip: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A login: one refresh family, from the grant that started it to its latest refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRecord {
    /// The refresh family's id; for a CLI login that was given an API key, the key's id.
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    /// The client's registered name (read only: joined in when listed).
    pub client_name: String,
    /// `browser`, `device`, `token_flow` or `handoff` (`oauth` for logins older than the
    /// console).
    pub method: String,
    /// The device name the client reported, if any.
    pub device_name: Option<String>,
    pub scope: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
}

/// How a refresh family began, stored with its first token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginStart {
    pub method: &'static str,
    pub device_name: Option<String>,
}

/// A security event of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Increasing; 0 before it is stored.
    pub id: i64,
    /// One of `console::AuditKind`'s names.
    pub kind: String,
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
    pub at: OffsetDateTime,
}

/// Which audit events to read: an account's or an org's, of some kinds, older than `before`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    /// Empty: every kind.
    pub kinds: Vec<String>,
    /// Only events with a smaller id (the cursor of the previous page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// What deleting an account did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountDeletion {
    /// Deleted; the hashes of the keys revoked with it.
    Deleted(Vec<SecretHash>),
    /// Refused: it is the only owner of these orgs (slugs).
    SoleOwner(Vec<String>),
}

/// How changing or ending a membership went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Done,
    NotAMember,
    /// Refused: it would leave the org without an owner.
    LastOwner,
}

/// What applying a billing update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingOutcome {
    /// The subscription is now this.
    Applied(crate::billing::Subscription),
    /// The update is older than the stored state: nothing changed.
    Stale,
    /// The event was applied before: nothing changed.
    Replayed,
}

/// Subscriptions, per org.
#[async_trait]
pub trait BillingStore: Send + Sync {
    async fn subscription(
        &self,
        org_id: &str,
    ) -> Result<Option<crate::billing::Subscription>, StoreError>;
    /// The org whose subscription is `subscription_id` (or, failing that, whose billing
    /// customer is `customer_id`).
    async fn billing_org(
        &self,
        subscription_id: Option<&str>,
        customer_id: Option<&str>,
    ) -> Result<Option<String>, StoreError>;
    /// Applies `update` to the org's subscription in one transaction, under the ordering
    /// rule (`billing::stripe::resolve`), and records `event_id` so a replay changes nothing.
    async fn apply_billing_update(
        &self,
        event_id: Option<&str>,
        org_id: &str,
        update: &crate::billing::stripe::SubscriptionUpdate,
        default_tier: &str,
        now: OffsetDateTime,
    ) -> Result<BillingOutcome, StoreError>;
}

/// Organizations and who is in them. Every change that could leave an org without an owner
/// checks the owners in the same transaction, with the org's row locked.
#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates `org` with `owner_id` as its owner. `Conflict("org")` when the slug is taken.
    async fn create_org(
        &self,
        org: &Org,
        owner_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The org with this id or slug (they never collide: ids have an underscore).
    async fn find_org(&self, org: &str) -> Result<Option<Org>, StoreError>;
    /// Keeps the audit record of a federated exchange.
    async fn record_federated_exchange(
        &self,
        record: &FederatedExchangeRecord,
    ) -> Result<(), StoreError>;
    /// The orgs `user_id` belongs to, the personal org first, then by slug.
    async fn memberships(&self, user_id: &str) -> Result<Vec<Membership>, StoreError>;
    /// `user_id`'s membership in the org whose id or slug is `org`.
    async fn membership(&self, user_id: &str, org: &str) -> Result<Option<Membership>, StoreError>;
    /// The org's members, owners first, then by email.
    async fn org_members(&self, org_id: &str) -> Result<Vec<MemberRecord>, StoreError>;
    async fn rename_org(&self, org_id: &str, name: &str) -> Result<(), StoreError>;
    /// Gives `user_id` the role `role` in the org, unless that leaves it without an owner.
    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<MembershipChange, StoreError>;
    /// Ends `user_id`'s membership, unless they are the last owner; their API keys in the org
    /// are revoked with it (their hashes returned, for the key caches).
    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<(MembershipChange, Vec<SecretHash>), StoreError>;
    /// Stores `invitation`, replacing any pending one for the same address and org.
    async fn replace_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError>;
    /// The org's pending, unexpired invitations, newest first.
    async fn invitations(
        &self,
        org_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError>;
    /// Revokes one of the org's invitations; `false` when there was none.
    async fn delete_invitation(&self, org_id: &str, id: &str) -> Result<bool, StoreError>;
    /// The unexpired invitation whose link token hashes to `token_hash`, and its org.
    async fn invitation(
        &self,
        token_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(InvitationRecord, Org)>, StoreError>;
    /// Spends the invitation and makes `user_id` a member with its role (a member already
    /// keeps their role); `false` when the invitation was already gone.
    async fn accept_invitation(
        &self,
        invitation: &InvitationRecord,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Deletes the org, its memberships and its API keys (revoked first, their hashes
    /// returned).
    async fn delete_org(
        &self,
        org_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretHash>, StoreError>;
}

/// What the account console reads and ends: browser sessions, logins, the audit log.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Records that the session `token` was seen at `now` from `ip`.
    async fn touch_session(
        &self,
        token: &SecretHash,
        ip: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// `user_id`'s live sessions, most recently seen first.
    async fn sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends `user_id`'s session `session_id`; `false` when they have none such.
    async fn end_session(&self, user_id: &str, session_id: &str) -> Result<bool, StoreError>;
    /// Ends every session of `user_id` but `keep`; returns how many.
    async fn end_other_sessions(&self, user_id: &str, keep: &str) -> Result<u64, StoreError>;
    /// `user_id`'s logins that hold a live refresh token, last used first.
    async fn logins(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<LoginRecord>, StoreError>;
    async fn insert_audit_event(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The events `query` asks for, newest first, none older than `since`.
    async fn audit_events(
        &self,
        query: &AuditQuery,
        since: OffsetDateTime,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Stores a pending change of `user_id`'s email to `new_email`, replacing any other.
    async fn insert_email_change(
        &self,
        token: &SecretHash,
        user_id: &str,
        new_email: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Spends a live email-change link and sets the account's email (verified: the link
    /// proved it) in one transaction: the account's id, old and new address; `None` if the
    /// link is not live; `Conflict("account")` when the new address was taken meanwhile.
    async fn apply_email_change(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(String, String, String)>, StoreError>;
    /// Deletes the account in one transaction, unless it is the only owner of an org it
    /// shares: every access token it holds is refused from now (a departure from each of its
    /// orgs), its keys revoked (their hashes returned), its personal org deleted and its
    /// memberships, sessions and logins with it.
    async fn delete_account(
        &self,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<AccountDeletion, StoreError>;
    /// Whether `user_id` has signed in before (as far as the audit log remembers), and whether
    /// ever from `device`.
    async fn sign_in_history(
        &self,
        user_id: &str,
        device: &str,
    ) -> Result<(bool, bool), StoreError>;
}

/// An authenticator app's secret as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpRecord {
    /// Sealed with the master key when the deployment has one.
    pub secret: Vec<u8>,
    /// `None` while being set up: not yet asked for at sign-in.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The last time step a code was accepted for.
    pub last_step: u64,
}

/// Second factors: TOTP, recovery codes, sign-ins waiting for a code, orgs requiring one.
#[async_trait]
pub trait SecondFactorStore: Send + Sync {
    /// Stores a secret being set up, replacing another being set up; `false` (nothing
    /// stored) when the account already has a confirmed one.
    async fn start_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError>;
    /// Confirms the secret being set up, accepting `step`, and replaces the recovery codes
    /// with `recovery_codes`, in one transaction; `false` when none was being set up.
    async fn confirm_totp(
        &self,
        user_id: &str,
        step: u64,
        recovery_codes: &[SecretHash],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Accepts a code of time step `step` once: `false` when that step (or a later one) was
    /// accepted before.
    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool, StoreError>;
    /// Spends an unused recovery code; `false` when it is not one of theirs or was used.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Removes the account's TOTP secret and recovery codes; `false` when it had none.
    async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError>;
    async fn insert_sign_in_challenge(
        &self,
        token: &SecretHash,
        user_id: &str,
        next_path: Option<&str>,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The account and `next` of a live sign-in waiting for its second factor.
    async fn sign_in_challenge(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(String, Option<String>)>, StoreError>;
    /// Ends a waiting sign-in; `false` when it was already gone (finished by a concurrent one).
    async fn delete_sign_in_challenge(&self, token: &SecretHash) -> Result<bool, StoreError>;
    async fn set_org_requires_second_factor(
        &self,
        org_id: &str,
        required: bool,
    ) -> Result<(), StoreError>;
}

/// A passkey of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub credential_id: Vec<u8>,
    /// webauthn-rs's `Passkey` as JSON: the public key and the signature counter.
    pub credential: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A WebAuthn ceremony between the options sent to a browser and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    /// `registration`, `sign_in` or `second_factor`.
    pub kind: String,
    /// Whose ceremony it is; `None` for a sign-in with a passkey alone.
    pub user_id: Option<String>,
    /// webauthn-rs's ceremony state as JSON.
    pub state: String,
    pub expires_at: OffsetDateTime,
}

/// Passkeys and the WebAuthn ceremonies in flight.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError>;
    /// The account's passkeys, oldest first.
    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError>;
    async fn passkey_by_credential(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError>;
    /// Records a sign-in with the passkey: its new counter state and when.
    async fn passkey_used(
        &self,
        id: &str,
        credential: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Renames one of the account's passkeys; `false` when it has none such.
    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str)
    -> Result<bool, StoreError>;
    /// Removes one of the account's passkeys; `false` when it has none such.
    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, StoreError>;
    async fn insert_ceremony(
        &self,
        token: &SecretHash,
        ceremony: &CeremonyRecord,
    ) -> Result<(), StoreError>;
    /// Takes a live ceremony (each answers once): `None` when it is gone or expired.
    async fn take_ceremony(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<CeremonyRecord>, StoreError>;
}

#[async_trait]
pub trait Store:
    OrgStore + BillingStore + ConsoleStore + SecondFactorStore + PasskeyStore + Send + Sync + 'static
{
    async fn ping(&self) -> Result<(), StoreError>;

    /// Follows the changes committed on this database by any process. `None` when only one
    /// process can open the database (SQLite): the service's own notes are then complete.
    async fn watch_changes(&self) -> Result<Option<ChangeFeed>, StoreError>;

    /// A throttle's state: when its bucket is next full (GCRA's theoretical arrival time).
    async fn throttle_state(&self, key: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Moves a throttle from `seen` to `next`, unless another request moved it first (then
    /// false: read it again).
    async fn swap_throttle_state(
        &self,
        key: &str,
        seen: Option<OffsetDateTime>,
        next: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Creates the user and their personal org together. `Conflict("account")` when the email
    /// is taken, `Conflict("org")` when the slug is.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// Creates `user` with its first upstream identity, in one transaction.
    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &IdentityRecord,
    ) -> Result<(), StoreError>;
    /// Links an upstream identity to an existing account.
    async fn insert_identity(&self, identity: &IdentityRecord) -> Result<(), StoreError>;
    /// The identities linked to an account, oldest first.
    async fn identities_of(&self, user_id: &str) -> Result<Vec<IdentityRecord>, StoreError>;
    /// Unlinks `user_id`'s identity at `provider_id`, unless it is the account's last way to
    /// sign in (`has_password` false and no other identity): `false` when nothing was removed.
    async fn delete_identity(
        &self,
        user_id: &str,
        provider_id: &str,
        has_password: bool,
    ) -> Result<bool, StoreError>;
    /// The account an upstream identity belongs to.
    async fn identity_user(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn insert_upstream_login(&self, login: &UpstreamLoginRecord) -> Result<(), StoreError>;
    async fn upstream_login(
        &self,
        state_hash: &SecretHash,
    ) -> Result<Option<UpstreamLoginRecord>, StoreError>;
    /// Removes a sign-in in flight; `false` when it was already gone (used, or never there).
    async fn claim_upstream_login(&self, state_hash: &SecretHash) -> Result<bool, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Accounts, newest first, `limit` of them after skipping `offset`.
    async fn users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError>;
    /// Disables (`Some(now)`) or enables (`None`) the account; disabling also ends every session
    /// and revokes every refresh family, in one transaction. Returns the hashes of the account's
    /// live API keys, which every cache must forget (refused while disabled, accepted again once
    /// enabled), or `None` when there is no such account.
    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> Result<Option<Vec<SecretHash>>, StoreError>;
    /// Ends every session of `user_id` and revokes every refresh family of theirs (an
    /// operator's answer to a compromised account); returns how many sessions ended.
    async fn sign_out_everywhere(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Replaces an unverified account with `new` (same email) in one transaction: the old
    /// account, its org, sessions, verification links and tokens are deleted and its keys
    /// revoked (their hashes returned, for the caches). `Conflict("account")` when the old
    /// account was verified or removed meanwhile.
    async fn replace_unverified_user(
        &self,
        old: &User,
        new: &User,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretHash>, StoreError>;

    /// Stores a verification link for `user_id`; `browser` is the hash of the sign-up receipt
    /// of the browser that may use it without the password.
    async fn insert_email_verification(
        &self,
        token: &SecretHash,
        user_id: &str,
        browser: Option<&SecretHash>,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The live verification link `token`, without spending it.
    async fn email_verification(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<PendingVerification>, StoreError>;
    /// The account a live verification link was sent for from the browser holding `browser`.
    async fn email_verification_by_browser(
        &self,
        browser: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;
    /// Deletes the verification and marks its user verified, if it exists and has not expired.
    async fn consume_email_verification(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;

    async fn insert_password_reset(
        &self,
        token: &SecretHash,
        user_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The user a live reset link is for, without spending it.
    async fn password_reset_user(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;
    /// Spends a live reset link, in one transaction: sets the password, marks the email
    /// verified (the link proved it), deletes every session and reset link of the user and
    /// revokes every refresh family. Returns the user id; `None` if the link is not live.
    async fn reset_password(
        &self,
        token: &SecretHash,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;

    /// Sets a signed-in person's new password, in one transaction: every other session and
    /// every reset link of theirs is deleted and every refresh family revoked; the session
    /// `keep` (the one changing it) stays.
    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    async fn insert_session(
        &self,
        token: &SecretHash,
        session: &SessionRecord,
    ) -> Result<(), StoreError>;
    /// The user of a live session, and the session.
    async fn session_user(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(User, SessionRecord)>, StoreError>;
    async fn delete_session(&self, token: &SecretHash) -> Result<(), StoreError>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn api_key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// The user's keys that are not revoked, newest first.
    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes the user's key; returns its hash so caches can drop it, `None` if there is no such
    /// live key of that user.
    async fn revoke_api_key(
        &self,
        user_id: &str,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SecretHash>, StoreError>;
    async fn record_api_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError>;

    async fn insert_token_flow(&self, flow: &TokenFlowRecord) -> Result<(), StoreError>;
    async fn token_flow(&self, id: &str) -> Result<Option<TokenFlowRecord>, StoreError>;
    /// Inserts the key and approves the flow in one transaction, only if the flow is still
    /// pending and unexpired at `now`. Returns whether it did.
    async fn approve_token_flow(
        &self,
        flow_id: &str,
        approval: &FlowApproval,
        key: &ApiKeyRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Denies the flow if it is still pending and unexpired. Returns whether it did.
    async fn deny_token_flow(&self, flow_id: &str, now: OffsetDateTime)
    -> Result<bool, StoreError>;
    /// Records the first delivery time (later calls keep the first).
    async fn mark_token_flow_delivered(
        &self,
        flow_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    async fn delete_token_flow(&self, flow_id: &str) -> Result<(), StoreError>;

    async fn oauth_client(&self, id: &str) -> Result<Option<OAuthClientRecord>, StoreError>;
    /// Inserts the client, or replaces its name, secret, redirect URIs and registration token.
    async fn upsert_oauth_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError>;
    /// Deletes the client with everything issued to it (codes, refresh tokens); false if there
    /// was no such client.
    async fn delete_oauth_client(&self, id: &str) -> Result<bool, StoreError>;

    async fn insert_authorization_code(
        &self,
        code: &AuthorizationCodeRecord,
    ) -> Result<(), StoreError>;
    /// Spends the code (atomically: of two concurrent uses, one is `First`).
    async fn use_authorization_code(
        &self,
        code_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CodeUse, StoreError>;

    /// Stores a refresh token, and, when it is its family's first, the login it starts.
    async fn insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
        login: Option<&LoginStart>,
    ) -> Result<(), StoreError>;
    /// Spends `presented` and stores `next` in its family in one transaction (the login is
    /// then last used now), if `presented` is live, unexpired and `client_id`'s; if it was
    /// spent before, revokes its whole family instead. Another client's token is `Unknown`.
    async fn rotate_refresh_token(
        &self,
        presented: &SecretHash,
        client_id: &str,
        next: &NextRefresh,
        now: OffsetDateTime,
    ) -> Result<RefreshUse, StoreError>;
    /// Revokes every live token of the family; returns how many.
    /// Revokes one access token by its `jti` until it would have expired anyway.
    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Revocations made at or after `since`: single access tokens (`jti`, until they expire)
    /// and logins (refresh families, with when they were revoked).
    async fn access_revocations_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<AccessRevocation>, StoreError>;
    /// Whether the access token was revoked: on its own (`jti`), with its refresh family
    /// (`sid`; any token of the family revoked revokes the family), or by its holder leaving
    /// its org (or the org's deletion) since it was issued; in one lookup.
    async fn access_revoked(&self, claims: &AccessTokenClaims) -> Result<bool, StoreError>;
    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// The family of a refresh token (live or not), for revocation.
    async fn refresh_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// A refresh token that is neither spent, revoked nor expired at `now`.
    async fn live_refresh_token(
        &self,
        token_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    async fn insert_device_code(&self, code: &DeviceCodeRecord) -> Result<(), StoreError>;
    async fn device_code_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceCodeRecord>, StoreError>;
    /// Approves (with `user_id`) or denies a pending, unexpired code. Returns whether it did.
    async fn decide_device_code(
        &self,
        user_code: &str,
        user_id: &str,
        approve: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Reads the code for a poll and records the poll time; the record has the previous one.
    async fn poll_device_code(
        &self,
        device_code_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<DeviceCodeRecord>, StoreError>;
    /// Moves an approved code to delivered; false if another poll got there first.
    async fn mark_device_code_delivered(
        &self,
        device_code_hash: &SecretHash,
    ) -> Result<bool, StoreError>;

    /// The scope and resource of every live refresh family `user_id` holds for `client_id`:
    /// the approvals they have not revoked.
    async fn live_grants(
        &self,
        user_id: &str,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, Option<String>)>, StoreError>;

    /// Every signing key not yet deleted, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Replaces a signing key's stored private half (to seal one kept in the clear).
    async fn reseal_signing_key(&self, kid: &str, private: &[u8]) -> Result<(), StoreError>;
    /// Adds `key` as the signing key of its algorithm and retires the others of that
    /// algorithm at `key.created_at`, in one transaction; deletes keys retired before
    /// `forget_retired_before`.
    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        forget_retired_before: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Deletes at most `batch` rows of each kind that are past use: flows expired or delivered
    /// before `delivered_before`; sessions, verifications, reset links, codes, refresh tokens
    /// and throttles past expiry (revoked access tokens past theirs); logins without refresh
    /// tokens; audit events past `audit_before`; accounts still unverified that were created
    /// before `unverified_before`. Returns how many.
    async fn sweep_expired(
        &self,
        now: OffsetDateTime,
        delivered_before: OffsetDateTime,
        unverified_before: OffsetDateTime,
        audit_before: OffsetDateTime,
        batch: u32,
    ) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_reads_back_from_its_payload() {
        for change in [
            Change::TokenFlowDecided("tf_abc".into()),
            Change::ApiKeyRevoked(SecretHash::of("lk_key")),
            Change::ClientChanged("https://app.example/client.json".into()),
            Change::SubscriptionChanged("org_abc".into()),
            Change::SigningKeysRotated,
            Change::Missed,
        ] {
            assert_eq!(Change::from_payload(&change.to_payload()), Some(change));
        }
    }

    #[test]
    fn unknown_or_damaged_payloads_are_ignored() {
        for payload in ["", "flow:", "key:zz", "signing:x", "vacuum:now"] {
            assert_eq!(Change::from_payload(payload), None, "{payload}");
        }
    }
}
