//! A person's own account: changing its email (confirmed by a link to the new address, the old
//! one told), deleting it (after signing in again; org ownership handed over first), and a copy
//! of everything the service holds about them.

use std::{net::IpAddr, time::Duration};

use latchkey_proto::{
    EmailChangeToken,
    wire::{AccountExport, LinkedIdentityInfo, OrgMembershipInfo},
};
use rand::rngs::OsRng;
use time::OffsetDateTime;

use crate::{
    AccountError, Email, Password, Service,
    api_key::{key_info, rfc3339},
    console::{AUDIT_PAGE_MAX, AuditKind, audit_info, login_info, session_info},
    store::{AccountDeletion, AuditQuery, StoreError, User},
};

/// How long the link confirming a new address works.
const EMAIL_CHANGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// An account without a password proves it is its owner by a sign-in this recent.
const RECENT_SIGN_IN: Duration = Duration::from_secs(10 * 60);

/// Whether the person asking is the account's owner, as a bank asks before a transfer: the
/// password when the account has one, or else a sign-in within the last minutes.
pub fn recently_signed_in(signed_in_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - signed_in_at <= RECENT_SIGN_IN
}

/// The typed confirmation of a deletion names the account's address (in any case).
pub fn confirms(typed: &str, email: &str) -> bool {
    typed.trim().eq_ignore_ascii_case(email)
}

impl Service {
    /// The owner proves it is them: the password (throttled like a sign-in) or, for an account
    /// without one, a recent sign-in.
    pub(crate) async fn reauthenticate(
        &self,
        user: &User,
        password: Option<Password>,
        signed_in_at: OffsetDateTime,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        if !Self::has_password(user) {
            return if recently_signed_in(signed_in_at, self.now()) {
                Ok(())
            } else {
                Err(AccountError::SignInAgain)
            };
        }
        let password = password.ok_or(AccountError::WrongCurrentPassword)?;
        self.check_current_password(user, password, ip).await
    }

    /// Asks to change `user`'s email to `new_email`: a link to confirm it goes to the new
    /// address, and a notice to the current one. Nothing changes until the link is opened.
    pub async fn request_email_change(
        &self,
        user: &User,
        new_email: &str,
        password: Option<Password>,
        signed_in_at: OffsetDateTime,
        ip: Option<IpAddr>,
    ) -> Result<String, AccountError> {
        let new_email = Email::parse(new_email)?;
        if new_email.as_str() == user.email {
            return Err(AccountError::SameEmail);
        }
        self.reauthenticate(user, password, signed_in_at, ip)
            .await?;
        let store = &self.inner.store;
        if store.user_by_email(new_email.as_str()).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        self.throttle_mail(new_email.as_str(), ip)
            .await?
            .map_err(AccountError::MailThrottled)?;
        let token = EmailChangeToken::generate(&mut OsRng);
        let expires_at = self.now() + EMAIL_CHANGE_TTL;
        store
            .insert_email_change(&token.hash(), &user.id, new_email.as_str(), expires_at)
            .await?;
        let host = &self.inner.policy.public_url;
        let link = format!(
            "{host}/account/email/confirm?token={}",
            token.expose_secret()
        );
        let text = format!(
            "Someone (we hope you) asked to make {new} the email address of their account on \
             {host}. Confirm it within 24 hours by opening this link:\n\n{link}\n\nIf it was \
             not you, ignore this mail: nothing changes.\n",
            new = new_email.as_str()
        );
        self.mail(new_email.as_str(), "Confirm your new email address", text)
            .await?;
        let notice = format!(
            "A change of your account's email address on {host} to {new} was just asked from \
             your account page. It takes effect once the new address confirms it.\n\nIf it was \
             not you, change your password now and sign out the other sessions: \
             {host}/account/security\n",
            new = new_email.as_str()
        );
        self.mail(&user.email, "Your email address is about to change", notice)
            .await?;
        Ok(new_email.as_str().to_owned())
    }

    /// Opens the link sent to the new address: the email changes (verified), the old address
    /// is told. Returns the account as it is now.
    pub async fn confirm_email_change(
        &self,
        token: &EmailChangeToken,
    ) -> Result<User, AccountError> {
        let store = &self.inner.store;
        let changed = match store.apply_email_change(&token.hash(), self.now()).await {
            Err(StoreError::Conflict(_)) => return Err(AccountError::EmailTaken),
            other => other?,
        };
        let (user_id, old, new) = changed.ok_or(AccountError::InvalidEmailChangeLink)?;
        let detail = format!("from {old} to {new}");
        self.audit(AuditKind::EmailChanged, Some(&user_id), None, None, &detail)
            .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "The email address of your account on {host} is now {new}; mail about the account \
             goes there from now on.\n\nIf it was not you, reply to the service's support at once.\n"
        );
        self.mail(&old, "Your email address was changed", text)
            .await?;
        store
            .user_by_id(&user_id)
            .await?
            .ok_or(AccountError::InvalidEmailChangeLink)
    }

    /// Deletes `user`'s account for good, once its owner has typed its address and signed in
    /// again: every credential stops working at once, and the address is free again. Refused
    /// while they are the only owner of an org others are in.
    pub async fn delete_account(
        &self,
        user: &User,
        typed_email: &str,
        password: Option<Password>,
        signed_in_at: OffsetDateTime,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        if !confirms(typed_email, &user.email) {
            return Err(AccountError::DeletionNotConfirmed);
        }
        self.reauthenticate(user, password, signed_in_at, ip)
            .await?;
        match self.inner.store.delete_account(user, self.now()).await? {
            AccountDeletion::SoleOwner(orgs) => Err(AccountError::SoleOwner(orgs.join(", "))),
            AccountDeletion::Deleted(keys) => {
                keys.iter().for_each(|hash| self.inner.keys.forget(hash));
                let detail = format!("{} deleted the account", user.email);
                self.audit(AuditKind::AccountDeleted, Some(&user.id), None, ip, &detail)
                    .await?;
                let host = &self.inner.policy.public_url;
                let text = format!(
                    "Your account on {host} was deleted, with its API keys and logins. This \
                     address can be used to sign up again.\n"
                );
                self.mail(&user.email, "Your account was deleted", text)
                    .await
            }
        }
    }

    /// Everything the service holds about `user`, for "download my data".
    pub async fn export_account(
        &self,
        user: &User,
        current_session: Option<&str>,
    ) -> Result<AccountExport, StoreError> {
        let store = &self.inner.store;
        let now = self.now();
        let orgs = store.memberships(&user.id).await?;
        let identities = store.identities_of(&user.id).await?;
        let keys = store.list_api_keys(&user.id).await?;
        let sessions = self.sessions_of(user, current_session).await?;
        let logins = store.logins(&user.id, now).await?;
        let mut events = Vec::new();
        let mut before = None;
        loop {
            let query = AuditQuery {
                user_id: Some(user.id.clone()),
                before,
                limit: AUDIT_PAGE_MAX,
                ..AuditQuery::default()
            };
            let page = self.audit_events(&query).await?;
            before = page.last().map(|e| e.id);
            let full = page.len() == AUDIT_PAGE_MAX as usize;
            events.extend(page.iter().map(audit_info));
            if !full {
                break;
            }
        }
        Ok(AccountExport {
            exported_at: rfc3339(now),
            user_id: user.id.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            name: user.name.clone(),
            created_at: rfc3339(user.created_at),
            orgs: orgs
                .into_iter()
                .map(|m| OrgMembershipInfo {
                    id: m.org.id,
                    slug: m.org.slug,
                    name: m.org.name,
                    role: m.role.to_string(),
                    personal: m.personal,
                })
                .collect(),
            identities: identities
                .into_iter()
                .map(|i| LinkedIdentityInfo {
                    provider: i.provider_id,
                    email: i.email,
                    linked_at: rfc3339(i.created_at),
                })
                .collect(),
            api_keys: keys.iter().map(|k| key_info(k, now)).collect(),
            sessions: sessions.iter().map(session_info).collect(),
            logins: logins.iter().map(|l| login_info(l, None)).collect(),
            audit_events: events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_without_a_password_needs_a_sign_in_of_the_last_ten_minutes() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(recently_signed_in(t0, t0 + Duration::from_secs(600)));
        assert!(!recently_signed_in(t0, t0 + Duration::from_secs(601)));
    }

    #[test]
    fn a_deletion_is_confirmed_only_by_the_account_s_own_address() {
        assert!(confirms(" Ann@Example.com ", "ann@example.com"));
        assert!(!confirms("ann@example.co", "ann@example.com"));
        assert!(!confirms("", "ann@example.com"));
        assert!(!confirms("delete", "ann@example.com"));
    }
}
