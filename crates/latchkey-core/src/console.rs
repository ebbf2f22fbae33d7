//! The account console: where a person is signed in (browser sessions), what holds tokens for
//! them (logins: one refresh family each, from an OAuth app or a CLI), and what happened to
//! their account (the audit log). The rules here are pure; the service methods below apply them.

use std::net::IpAddr;

use latchkey_proto::{
    SessionToken, scope,
    wire::{AuditEventInfo, AuditResponse, BrowserSessionInfo, LoginInfo},
};
use rand::rngs::OsRng;
use thiserror::Error;
use time::OffsetDateTime;

use crate::{
    Service,
    api_key::rfc3339,
    new_id,
    org::{OrgAction, OrgError},
    store::{AuditEvent, AuditQuery, LoginRecord, SessionRecord, StoreError, User},
};

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error(
        "\u{201c}{0}\u{201d} is not an audit event type; use one or more of: {known}",
        known = AuditKind::names()
    )]
    UnknownKind(String),
    #[error("`before` must be the next_cursor of a previous page")]
    BadCursor,
    #[error("`limit` must be between 1 and 200")]
    BadLimit,
    #[error("you have no session or login \u{201c}{0}\u{201d}; list them with GET /v1/sessions")]
    NotFound(String),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The query of `GET /v1/audit`, as received.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct AuditParams {
    /// Comma-separated event types.
    #[serde(rename = "type")]
    pub kinds: Option<String>,
    pub before: Option<String>,
    pub limit: Option<u32>,
    /// An org (id or slug) whose log to read instead of the caller's own; admins only.
    pub org: Option<String>,
}

/// How long the audit log keeps an event.
pub const AUDIT_RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
/// A session's "last seen" is written at most this often, so browsing is not a write per page.
pub const LAST_SEEN_GRANULARITY: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// The most audit events one page of `/v1/audit` returns.
pub const AUDIT_PAGE_MAX: u32 = 200;

/// Where a browser session is opened from, as the request said.
#[derive(Clone, Debug, Default)]
pub struct SessionOrigin {
    pub user_agent: Option<String>,
    pub ip: Option<IpAddr>,
}

/// A readable name for the browser behind a `User-Agent`: "Firefox on Linux".
pub fn device_name(user_agent: Option<&str>) -> String {
    let Some(parsed) = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua)) else {
        return "Unknown browser".to_owned();
    };
    let browser = match parsed.name {
        "UNKNOWN" | "" => "Unknown browser",
        name => name,
    };
    match parsed.os {
        "UNKNOWN" | "" => browser.to_owned(),
        os => format!("{browser} on {}", os.replace("Mac OSX", "macOS")),
    }
}

/// The device name a client reported for a login: trimmed, one line of at most 64 printable
/// characters, or nothing. It is the client's word, shown as such.
pub fn reported_device_name(raw: Option<&str>) -> Option<String> {
    let name: String = raw?
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// How a login began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMethod {
    /// Authorization code with PKCE: a browser redirect, to an app or a CLI's loopback port.
    Browser,
    /// The device authorization grant (RFC 8628).
    Device,
    /// The token flow: the CLI was given an API key.
    TokenFlow,
    /// The hand-off page posted an API key to the CLI.
    Handoff,
}

impl LoginMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Device => "device",
            Self::TokenFlow => "token_flow",
            Self::Handoff => "handoff",
        }
    }
}

/// The security events the audit log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    SignIn,
    /// An address failed often enough on an account to be locked out of it for a while.
    SignInFailures,
    SignedOut,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    ApiKeyCreated,
    ApiKeyRevoked,
    LoginApproved,
    LoginRevoked,
    RefreshTokenReused,
    AuthorizationCodeReplayed,
    MemberAdded,
    MemberRemoved,
    SubscriptionChanged,
    AccountDisabled,
    AccountEnabled,
    AccountDeleted,
    SecondFactorEnabled,
    SecondFactorDisabled,
    RecoveryCodeUsed,
    OrgSecondFactorRequired,
    PasskeyAdded,
    PasskeyRemoved,
}

impl AuditKind {
    pub const ALL: [Self; 24] = [
        Self::SignIn,
        Self::SignInFailures,
        Self::SignedOut,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::EmailChanged,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::LoginApproved,
        Self::LoginRevoked,
        Self::RefreshTokenReused,
        Self::AuthorizationCodeReplayed,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::SubscriptionChanged,
        Self::AccountDisabled,
        Self::AccountEnabled,
        Self::AccountDeleted,
        Self::SecondFactorEnabled,
        Self::SecondFactorDisabled,
        Self::RecoveryCodeUsed,
        Self::OrgSecondFactorRequired,
        Self::PasskeyAdded,
        Self::PasskeyRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInFailures => "sign_in_failures",
            Self::SignedOut => "signed_out",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::EmailChanged => "email_changed",
            Self::ApiKeyCreated => "api_key_created",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::LoginApproved => "login_approved",
            Self::LoginRevoked => "login_revoked",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::AuthorizationCodeReplayed => "authorization_code_replayed",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::SubscriptionChanged => "subscription_changed",
            Self::AccountDisabled => "account_disabled",
            Self::AccountEnabled => "account_enabled",
            Self::AccountDeleted => "account_deleted",
            Self::SecondFactorEnabled => "second_factor_enabled",
            Self::SecondFactorDisabled => "second_factor_disabled",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::OrgSecondFactorRequired => "org_second_factor_required",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRemoved => "passkey_removed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Every type's name, comma-separated, for the message that refuses an unknown one.
    fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// A `type` filter of `/v1/audit`: comma-separated kinds, each one the log knows.
pub fn parse_kinds(raw: &str) -> Result<Vec<AuditKind>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| AuditKind::parse(k).ok_or_else(|| k.to_owned()))
        .collect()
}

/// Whether a sign-in from `device` deserves a "new sign-in" mail: the account has signed in
/// before, never from this device.
pub fn is_new_device(signed_in_before: bool, seen_this_device: bool) -> bool {
    signed_in_before && !seen_this_device
}

/// Whether a session last seen at `last_seen` should be marked seen again at `now`.
pub fn due_for_touch(last_seen: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - last_seen >= LAST_SEEN_GRANULARITY
}

/// A CLI login that was given an API key, as the console lists it among the logins (the
/// key's id stands for the family's); `None` for a key made on purpose, or one expired.
fn key_login(key: crate::store::ApiKeyRecord, now: OffsetDateTime) -> Option<LoginRecord> {
    let method = key.origin?;
    if key.expires_at.is_some_and(|at| at <= now) {
        return None;
    }
    Some(LoginRecord {
        client_name: key
            .name
            .strip_prefix(crate::token_flow::LOGIN_KEY_PREFIX)
            .unwrap_or(&key.name)
            .to_owned(),
        family_id: key.id,
        user_id: key.user_id,
        client_id: String::new(),
        method,
        device_name: None,
        scope: key.scope.unwrap_or_default(),
        created_at: key.created_at,
        last_used_at: key.last_used_at.unwrap_or(key.created_at),
    })
}

/// A browser session as the console shows it.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub record: SessionRecord,
    /// "Firefox on Linux".
    pub device: String,
    /// The session this page was opened with.
    pub current: bool,
}

pub fn session_info(view: &SessionView) -> BrowserSessionInfo {
    let record = &view.record;
    BrowserSessionInfo {
        id: record.id.clone(),
        device: view.device.clone(),
        user_agent: record.user_agent.clone(),
        ip: record.ip.clone(),
        created_at: rfc3339(record.created_at),
        last_seen_at: rfc3339(record.last_seen_at),
        current: view.current,
    }
}

/// A login as listings show it; `current` is the family of the token asking, if any.
pub fn login_info(login: &LoginRecord, current: Option<&str>) -> LoginInfo {
    LoginInfo {
        id: login.family_id.clone(),
        client_id: login.client_id.clone(),
        client_name: login.client_name.clone(),
        method: login.method.clone(),
        device_name: login.device_name.clone(),
        scopes: scope::scopes(&login.scope).map(str::to_owned).collect(),
        created_at: rfc3339(login.created_at),
        last_used_at: rfc3339(login.last_used_at),
        current: current == Some(login.family_id.as_str()),
    }
}

pub fn audit_info(event: &AuditEvent) -> AuditEventInfo {
    AuditEventInfo {
        id: event.id.to_string(),
        kind: event.kind.clone(),
        at: rfc3339(event.at),
        user_id: event.user_id.clone(),
        org_id: event.org_id.clone(),
        ip: event.ip.clone(),
        detail: event.detail.clone(),
    }
}

/// The page `params` ask for, checked: known types, a cursor we issued, a sane limit.
fn audit_query(params: &AuditParams) -> Result<AuditQuery, ConsoleError> {
    let kinds =
        parse_kinds(params.kinds.as_deref().unwrap_or("")).map_err(ConsoleError::UnknownKind)?;
    let before = params
        .before
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or(ConsoleError::BadCursor)
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=AUDIT_PAGE_MAX).contains(&limit) {
        return Err(ConsoleError::BadLimit);
    }
    Ok(AuditQuery {
        user_id: None,
        org_id: None,
        kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        before,
        limit,
    })
}

impl Service {
    /// A page of `user`'s audit log (or, with `org`, that org's, for its admins), newest first.
    pub async fn audit_page(
        &self,
        user: &User,
        params: &AuditParams,
    ) -> Result<AuditResponse, ConsoleError> {
        let mut query = audit_query(params)?;
        match &params.org {
            Some(org) => {
                let membership = self.org_for(user, org, OrgAction::ReadAudit).await?;
                query.org_id = Some(membership.org.id);
            }
            None => query.user_id = Some(user.id.clone()),
        }
        let events = self.audit_events(&query).await?;
        let full = events.len() == query.limit as usize;
        Ok(AuditResponse {
            next_cursor: events.last().filter(|_| full).map(|e| e.id.to_string()),
            events: events.iter().map(audit_info).collect(),
        })
    }

    /// Signs out one of `user`'s browser sessions (`ses_…`) or revokes one of their logins.
    pub async fn end_session_or_login(
        &self,
        user: &User,
        id: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), ConsoleError> {
        let ended = if id.starts_with("ses_") {
            self.end_session(user, id, ip).await?
        } else {
            self.revoke_login(user, id, ip).await?
        };
        if ended {
            Ok(())
        } else {
            Err(ConsoleError::NotFound(id.to_owned()))
        }
    }

    /// A new browser session for `user` (after a password, an identity provider, or a
    /// verification link opened in the browser that signed up), recorded in the audit log;
    /// a sign-in from a device the account never signed in from is mailed to its owner.
    pub async fn open_session(
        &self,
        user: &User,
        origin: &SessionOrigin,
    ) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate(&mut OsRng);
        let now = self.now();
        let record = SessionRecord {
            id: new_id("ses"),
            user_id: user.id.clone(),
            user_agent: origin
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(512).collect()),
            ip: origin.ip.map(|ip| ip.to_string()),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.inner.policy.session_ttl,
        };
        let store = &self.inner.store;
        store.insert_session(&token.hash(), &record).await?;
        let device = device_name(record.user_agent.as_deref());
        let (before, seen) = store.sign_in_history(&user.id, &device).await?;
        self.audit(AuditKind::SignIn, Some(&user.id), None, origin.ip, &device)
            .await?;
        if is_new_device(before, seen) {
            let host = &self.inner.policy.public_url;
            let from = origin.ip.map_or(String::new(), |ip| format!(" from {ip}"));
            let text = format!(
                "Your account on {host} was just signed in to with {device}{from}, a browser \
                 it was never signed in with before.\n\nIf it was you, there is nothing to do. \
                 If not, sign it out and change your password: {host}/account\n"
            );
            if let Err(e) = self
                .mail(&user.email, "New sign-in to your account", text)
                .await
            {
                tracing::warn!(error = %e, "the new sign-in notice could not be sent");
            }
        }
        Ok(token)
    }

    /// Marks the session seen now (and from `ip`), unless it was within the last minutes.
    pub async fn touch_session(
        &self,
        token: &SessionToken,
        last_seen: OffsetDateTime,
        ip: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        if !due_for_touch(last_seen, now) {
            return Ok(());
        }
        let ip = ip.map(|ip| ip.to_string());
        self.inner
            .store
            .touch_session(&token.hash(), ip.as_deref(), now)
            .await
    }

    /// `user`'s live browser sessions, most recently seen first; `current` is this one's id.
    pub async fn sessions_of(
        &self,
        user: &User,
        current: Option<&str>,
    ) -> Result<Vec<SessionView>, StoreError> {
        let records = self.inner.store.sessions(&user.id, self.now()).await?;
        Ok(records
            .into_iter()
            .map(|record| SessionView {
                device: device_name(record.user_agent.as_deref()),
                current: Some(record.id.as_str()) == current,
                record,
            })
            .collect())
    }

    /// Signs one of `user`'s sessions out; `false` when they have no such session.
    pub async fn end_session(
        &self,
        user: &User,
        session_id: &str,
        ip: Option<IpAddr>,
    ) -> Result<bool, StoreError> {
        let ended = self.inner.store.end_session(&user.id, session_id).await?;
        if ended {
            let detail = format!("session {session_id}");
            self.audit(AuditKind::SignedOut, Some(&user.id), None, ip, &detail)
                .await?;
        }
        Ok(ended)
    }

    /// Signs every session of `user` out but `keep` (the one asking); returns how many ended.
    pub async fn end_other_sessions(
        &self,
        user: &User,
        keep: &str,
        ip: Option<IpAddr>,
    ) -> Result<u64, StoreError> {
        let ended = self.inner.store.end_other_sessions(&user.id, keep).await?;
        if ended > 0 {
            let detail = format!("{ended} other session(s)");
            self.audit(AuditKind::SignedOut, Some(&user.id), None, ip, &detail)
                .await?;
        }
        Ok(ended)
    }

    /// `user`'s live logins, last used first: OAuth apps and CLIs holding refresh tokens, and
    /// CLI logins that were given an API key (token flow, hand-off page).
    pub async fn logins_of(&self, user: &User) -> Result<Vec<LoginRecord>, StoreError> {
        let now = self.now();
        let mut logins = self.inner.store.logins(&user.id, now).await?;
        let keys = self.inner.store.list_api_keys(&user.id).await?;
        logins.extend(keys.into_iter().filter_map(|key| key_login(key, now)));
        logins.sort_by_key(|login| std::cmp::Reverse(login.last_used_at));
        Ok(logins)
    }

    /// Revokes one of `user`'s logins: its refresh family, and with it every access token it
    /// issued (they carry the family as `sid`). `false` when they have no such live login.
    pub async fn revoke_login(
        &self,
        user: &User,
        login_id: &str,
        ip: Option<IpAddr>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let Some(login) = self
            .logins_of(user)
            .await?
            .into_iter()
            .find(|l| l.family_id == login_id)
        else {
            return Ok(false);
        };
        if login.client_id.is_empty() {
            // A CLI login given an API key ends with the key, at every cache.
            let Some(hash) = self
                .inner
                .store
                .revoke_api_key(&user.id, &login.family_id, now)
                .await?
            else {
                return Ok(false);
            };
            self.inner.keys.forget(&hash);
        } else {
            self.inner
                .store
                .revoke_refresh_family(&login.family_id, now)
                .await?;
        }
        let detail = format!(
            "{} ({}), login {}",
            login.client_name, login.method, login_id
        );
        self.audit(AuditKind::LoginRevoked, Some(&user.id), None, ip, &detail)
            .await?;
        Ok(true)
    }

    /// Records that `user` approved a login (consent, device code or token flow).
    pub(crate) async fn login_approved(&self, user: &User, detail: &str) -> Result<(), StoreError> {
        self.audit(AuditKind::LoginApproved, Some(&user.id), None, None, detail)
            .await
    }

    /// Records a security event. `detail` is for people and never holds a secret.
    pub async fn audit(
        &self,
        kind: AuditKind,
        user_id: Option<&str>,
        org_id: Option<&str>,
        ip: Option<IpAddr>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.inner
            .store
            .insert_audit_event(&AuditEvent {
                id: 0,
                kind: kind.as_str().to_owned(),
                user_id: user_id.map(str::to_owned),
                org_id: org_id.map(str::to_owned),
                ip: ip.map(|ip| ip.to_string()),
                detail: detail.to_owned(),
                at: self.now(),
            })
            .await
    }

    /// A page of the audit log, newest first.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner
            .store
            .audit_events(query, self.now() - AUDIT_RETENTION)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn user_agents_read_as_a_browser_on_a_system() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            ("curl/8.11.0", "HTTP Library"),
        ];
        for (ua, name) in cases {
            assert_eq!(device_name(Some(ua)), name, "{ua}");
        }
        assert_eq!(device_name(None), "Unknown browser");
        assert_eq!(device_name(Some("\u{0}garbage")), "Unknown browser");
    }

    #[test]
    fn a_reported_device_name_is_one_short_printable_line() {
        assert_eq!(
            reported_device_name(Some("  dev-laptop\n")).as_deref(),
            Some("dev-laptop")
        );
        assert_eq!(
            reported_device_name(Some("a\u{1b}[31mred")).as_deref(),
            Some("a[31mred")
        );
        assert_eq!(
            reported_device_name(Some(&"x".repeat(300))).map(|n| n.len()),
            Some(64)
        );
        assert_eq!(reported_device_name(Some(" \t ")), None);
        assert_eq!(reported_device_name(None), None);
    }

    #[test]
    fn audit_kinds_read_back_and_filters_refuse_unknown_ones() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(
            parse_kinds("sign_in, password_changed,"),
            Ok(vec![AuditKind::SignIn, AuditKind::PasswordChanged])
        );
        assert_eq!(
            parse_kinds("sign_in,drop_tables"),
            Err("drop_tables".into())
        );
    }

    #[test]
    fn audit_pages_take_known_types_our_cursors_and_sane_limits() {
        let params = |kinds: &str, before: Option<&str>, limit: Option<u32>| AuditParams {
            kinds: Some(kinds.into()),
            before: before.map(str::to_owned),
            limit,
            org: None,
        };
        let query = audit_query(&params("sign_in", Some("42"), None)).expect("valid");
        assert_eq!(query.kinds, ["sign_in"]);
        assert_eq!(query.before, Some(42));
        assert_eq!(query.limit, 50);
        assert!(matches!(
            audit_query(&params("sign_in,nope", None, None)),
            Err(ConsoleError::UnknownKind(k)) if k == "nope"
        ));
        for cursor in ["-1", "0", "abc", "1 OR 1=1"] {
            assert!(
                matches!(
                    audit_query(&params("", Some(cursor), None)),
                    Err(ConsoleError::BadCursor)
                ),
                "{cursor}"
            );
        }
        for limit in [0, 201] {
            assert!(matches!(
                audit_query(&params("", None, Some(limit))),
                Err(ConsoleError::BadLimit)
            ));
        }
    }

    #[test]
    fn only_a_known_account_on_an_unknown_device_is_a_new_device() {
        assert!(is_new_device(true, false));
        assert!(!is_new_device(true, true));
        assert!(
            !is_new_device(false, false),
            "the first sign-in is not news"
        );
    }

    #[test]
    fn last_seen_is_written_at_most_every_five_minutes() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(!due_for_touch(t0, t0 + Duration::from_secs(299)));
        assert!(due_for_touch(t0, t0 + Duration::from_secs(300)));
    }
}
