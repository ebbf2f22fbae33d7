//! Accounts: sign-up with email and password, email verification, sign-in, sessions and
//! password reset.
//!
//! An email address belongs to whoever can read its inbox, so nothing done before that is
//! proven may stand in the owner's way: a sign-up for an address whose account is still
//! unverified replaces that account (its password and sessions void), a verification link
//! works without the password only in the browser that signed up, unverified accounts expire,
//! and sign-up answers the same whether or not the address already has an account.

use std::net::IpAddr;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use latchkey_proto::{
    LocalPath, PasswordResetToken, SessionToken, SignUpReceipt, VerificationToken, base62,
};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{
    Service, Stats,
    console::{AuditKind, SessionOrigin},
    mail::{Mail, MailError},
    new_id,
    second_factor::SignInStep,
    store::{Org, SessionRecord, StoreError, User},
    throttle::Throttled,
};

#[derive(Debug, Error)]
pub enum AccountError {
    #[error("“{0}” is not an email address: an address looks like name@example.com")]
    InvalidEmail(String),
    #[error("passwords must be 8 to 128 characters long")]
    InvalidPassword,
    #[error("a name must be at most 100 characters, without control characters")]
    InvalidName,
    #[error("the email or the password is wrong")]
    WrongCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("too many sign-in attempts; try again in {}", .0.retry_after_in_words())]
    Throttled(Throttled),
    #[error(
        "too many emails were asked for this address or from your network; try again in {}",
        .0.retry_after_in_words()
    )]
    MailThrottled(Throttled),
    #[error("this verification link is not valid or has expired; request a new one")]
    InvalidVerificationLink,
    #[error(
        "this password reset link is not valid, was already used or has expired; ask for a new one"
    )]
    InvalidResetLink,
    #[error(
        "passwords are turned off here: sign in with one of the identity providers on the \
         sign-in page"
    )]
    PasswordsOff,
    #[error("{}", DISABLED)]
    Disabled,
    #[error("that is already your email address")]
    SameEmail,
    #[error("another account uses that email address")]
    EmailTaken,
    #[error(
        "this link to confirm a new email address is not valid, was already used or has expired; \
         ask for the change again on your account page"
    )]
    InvalidEmailChangeLink,
    #[error("sign in again (less than 10 minutes ago) to do this")]
    SignInAgain,
    #[error("type your account's email address to confirm the deletion")]
    DeletionNotConfirmed,
    #[error(
        "you are the only owner of {0}: make someone else an owner there, or delete it, before \
         deleting your account"
    )]
    SoleOwner(String),
    #[error("sending the email failed")]
    Mail(#[from] MailError),
    #[error("hashing the password failed")]
    Hashing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a disabled account's owner is told when they try to sign in.
pub(crate) const DISABLED: &str =
    "this account is disabled; ask the service's support to enable it again";

/// The name a person gives at sign-up, trimmed: `None` when they gave none.
fn person_name(raw: Option<&str>) -> Result<Option<String>, AccountError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidName);
    }
    Ok(Some(name.to_owned()))
}

/// A syntactically plausible email address, trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AccountError> {
        let value = raw.trim().to_lowercase();
        let valid = value.len() <= 254
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && match value.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if valid {
            Ok(Self(value))
        } else {
            Err(AccountError::InvalidEmail(
                raw.chars().filter(|c| !c.is_control()).take(100).collect(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

/// A password as typed; `Debug` hides it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, AccountError> {
        if (8..=128).contains(&raw.chars().count()) {
            Ok(Self(raw))
        } else {
            Err(AccountError::InvalidPassword)
        }
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes): OWASP's recommended minimum.
async fn hash_password(password: Password) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| AccountError::Hashing)
    })
    .await
    .map_err(|_| AccountError::Hashing)?
}

async fn verify_password(password: Password, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        // An account without a password (made by an identity provider) costs the same hashing
        // as any other, so timing does not tell which accounts have one; it never matches.
        let (parsed, has_password) = match PasswordHash::new(&stored) {
            Ok(parsed) => (parsed, true),
            Err(_) => match PasswordHash::new(DUMMY_HASH) {
                Ok(dummy) => (dummy, false),
                Err(_) => return false,
            },
        };
        let matches = Argon2::default()
            .verify_password(password.0.as_bytes(), &parsed)
            .is_ok();
        matches && has_password
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so that timing does not tell
/// which emails have accounts.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2kCyqrn5bNnoN9kGTY8RqO5yBb2rHO2j6Nsxb0gVh0g";

/// A URL-safe org slug from the email's local part, with a random suffix so it is unique.
fn personal_org_slug(email: &Email) -> String {
    let base: String = email
        .local_part()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    let base = base.trim_matches('-');
    let suffix = base62::random(&mut OsRng, 6).to_lowercase();
    if base.is_empty() {
        format!("org-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// What opening a verification link leads to.
#[derive(Debug)]
pub enum VerificationStep {
    /// The link was spent and the account is verified.
    Verified(User),
    /// Opened in a browser that did not sign up: whoever holds the link must also know the
    /// account's password (`email` is the account's, to show on the form).
    PasswordNeeded { email: String },
}

impl Service {
    /// A new account record with its personal org (not yet stored).
    pub(crate) fn new_user(
        &self,
        email: &Email,
        name: Option<String>,
        password_hash: String,
        verified: bool,
    ) -> User {
        User {
            id: new_id("usr"),
            email: email.as_str().to_owned(),
            email_verified: verified,
            name,
            password_hash,
            created_at: self.now(),
            disabled_at: None,
            org: Org {
                id: new_id("org"),
                slug: personal_org_slug(email),
                name: format!("{}'s org", email.local_part()),
            },
        }
    }

    /// Signs `email` up and mails the verification link, or, when the address already has a
    /// verified account, tells its owner someone tried. The answer is a receipt for the
    /// browser either way, so it says nothing about which addresses have accounts. An
    /// unverified account for the address is replaced, its password and sessions void.
    /// Refused by the mail throttles before anything is stored or sent.
    pub async fn sign_up(
        &self,
        email: Email,
        name: Option<&str>,
        password: Password,
        next: Option<&LocalPath>,
        ip: Option<IpAddr>,
    ) -> Result<SignUpReceipt, AccountError> {
        self.passwords_on()?;
        let name = person_name(name)?;
        self.throttle_mail(email.as_str(), ip)
            .await?
            .map_err(AccountError::MailThrottled)?;
        let receipt = SignUpReceipt::generate(&mut OsRng);
        let user = self.new_user(&email, name, hash_password(password).await?, false);
        let store = &self.inner.store;
        let stored = match store.user_by_email(email.as_str()).await? {
            Some(existing) if existing.email_verified => {
                self.send_sign_up_attempt_notice(&existing).await?;
                return Ok(receipt);
            }
            Some(unverified) => store
                .replace_unverified_user(&unverified, &user, self.now())
                .await
                .map(|revoked| revoked.iter().for_each(|h| self.inner.keys.forget(h))),
            None => store.create_user(&user).await,
        };
        match stored {
            Ok(()) => {}
            // Verified or taken by a concurrent sign-up meanwhile: its owner has the inbox.
            Err(StoreError::Conflict("account")) => return Ok(receipt),
            Err(e) => return Err(e.into()),
        }
        self.send_verification(&user, Some(&receipt), next).await?;
        Ok(receipt)
    }

    /// Sends the verification link again: to the signed-in unverified `user`, or else to the
    /// account the browser holding `receipt` signed up. Answers the same when there is none.
    pub async fn resend_verification(
        &self,
        user: Option<&User>,
        receipt: Option<&SignUpReceipt>,
        next: Option<&LocalPath>,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let user = match (user, receipt) {
            (Some(user), _) => Some(user.clone()),
            (None, Some(receipt)) => {
                let store = &self.inner.store;
                match store
                    .email_verification_by_browser(&receipt.hash(), self.now())
                    .await?
                {
                    Some(id) => store.user_by_id(&id).await?,
                    None => None,
                }
            }
            (None, None) => None,
        };
        let Some(user) = user.filter(|u| !u.email_verified) else {
            return Ok(());
        };
        self.throttle_mail(&user.email, ip)
            .await?
            .map_err(AccountError::MailThrottled)?;
        self.send_verification(&user, receipt, next).await
    }

    async fn send_verification(
        &self,
        user: &User,
        browser: Option<&SignUpReceipt>,
        next: Option<&LocalPath>,
    ) -> Result<(), AccountError> {
        let token = VerificationToken::generate(&mut OsRng);
        let policy = &self.inner.policy;
        let expires_at = self.now() + policy.verification_ttl;
        self.inner
            .store
            .insert_email_verification(
                &token.hash(),
                &user.id,
                browser.map(SignUpReceipt::hash).as_ref(),
                expires_at,
            )
            .await?;
        let mut link = format!(
            "{}/verify-email?token={}",
            policy.public_url,
            token.expose_secret()
        );
        if let Some(next) = next {
            link.push_str("&next=");
            link.push_str(&percent_encode(next.as_str()));
        }
        let text = format!(
            "Welcome to {host}.\n\nConfirm your email address by opening this link within 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this message: the account is deleted in a day.\n",
            host = policy.public_url
        );
        self.mail(&user.email, "Confirm your email address", text)
            .await
    }

    async fn send_sign_up_attempt_notice(&self, user: &User) -> Result<(), AccountError> {
        let host = &self.inner.policy.public_url;
        let text = format!(
            "Someone tried to create an account on {host} with this email address, which already has one.\n\nIf it was you, sign in instead: {host}/signin\nForgot your password? {host}/forgot-password\n\nIf it was not you, you can ignore this message: nothing changed.\n"
        );
        self.mail(
            &user.email,
            "Someone tried to sign up with your email",
            text,
        )
        .await
    }

    pub(crate) async fn mail(
        &self,
        to: &str,
        subject: &str,
        text: String,
    ) -> Result<(), AccountError> {
        self.inner
            .mailer
            .send(Mail {
                to: to.to_owned(),
                subject: subject.to_owned(),
                text,
            })
            .await?;
        Ok(())
    }

    /// Opens a verification link. It is spent at once when the browser proves it signed the
    /// account up (its session is the account's, or it holds the sign-up's receipt);
    /// otherwise the password is needed ([`Service::verify_email_with_password`]).
    pub async fn open_verification_link(
        &self,
        token: &VerificationToken,
        session_user: Option<&User>,
        receipt: Option<&SignUpReceipt>,
    ) -> Result<VerificationStep, AccountError> {
        let store = &self.inner.store;
        let pending = store
            .email_verification(&token.hash(), self.now())
            .await?
            .ok_or(AccountError::InvalidVerificationLink)?;
        let same_browser = session_user.is_some_and(|u| u.id == pending.user_id)
            || receipt
                .zip(pending.browser)
                .is_some_and(|(receipt, browser)| receipt.hash().matches(&browser));
        if same_browser {
            return Ok(VerificationStep::Verified(
                self.spend_verification(token).await?,
            ));
        }
        let user = store
            .user_by_id(&pending.user_id)
            .await?
            .ok_or(AccountError::InvalidVerificationLink)?;
        Ok(VerificationStep::PasswordNeeded { email: user.email })
    }

    /// Spends a verification link opened elsewhere, once its account's password is given
    /// (throttled like any sign-in); the person is then signed in (or asked for their second
    /// factor).
    pub async fn verify_email_with_password(
        &self,
        token: &VerificationToken,
        password: Password,
        origin: &SessionOrigin,
    ) -> Result<SignInStep, AccountError> {
        let store = &self.inner.store;
        let pending = store
            .email_verification(&token.hash(), self.now())
            .await?
            .ok_or(AccountError::InvalidVerificationLink)?;
        let user = store
            .user_by_id(&pending.user_id)
            .await?
            .ok_or(AccountError::InvalidVerificationLink)?;
        let step = self.sign_in(&user.email, password, origin, None).await?;
        self.spend_verification(token).await?;
        Ok(step)
    }

    async fn spend_verification(&self, token: &VerificationToken) -> Result<User, AccountError> {
        let store = &self.inner.store;
        let user_id = store
            .consume_email_verification(&token.hash(), self.now())
            .await?
            .ok_or(AccountError::InvalidVerificationLink)?;
        store
            .user_by_id(&user_id)
            .await?
            .ok_or(AccountError::InvalidVerificationLink)
    }

    /// Mails a password-reset link if `email` has an account. The answer is the same either
    /// way, and the mail leaves in the background so that timing does not tell either.
    pub async fn request_password_reset(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        self.passwords_on()?;
        let email = Email::parse(email)?;
        self.throttle_mail(email.as_str(), ip)
            .await?
            .map_err(AccountError::MailThrottled)?;
        let Some(user) = self.inner.store.user_by_email(email.as_str()).await? else {
            return Ok(());
        };
        let token = PasswordResetToken::generate(&mut OsRng);
        let policy = &self.inner.policy;
        self.inner
            .store
            .insert_password_reset(
                &token.hash(),
                &user.id,
                self.now() + policy.password_reset_ttl,
            )
            .await?;
        let host = &policy.public_url;
        let text = format!(
            "Someone asked to reset the password of your account on {host}.\n\nChoose a new password within 30 minutes:\n\n{host}/reset-password?token={token}\n\nIf it was not you, ignore this message: your password stays as it is.\n",
            token = token.expose_secret()
        );
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.mail(&user.email, "Reset your password", text).await {
                tracing::error!(error = %e, "sending a password reset link failed");
            }
        });
        Ok(())
    }

    /// Whether a reset link is live (the page asks for the new password only then).
    pub async fn check_password_reset(
        &self,
        token: &PasswordResetToken,
    ) -> Result<(), AccountError> {
        self.inner
            .store
            .password_reset_user(&token.hash(), self.now())
            .await?
            .map(|_| ())
            .ok_or(AccountError::InvalidResetLink)
    }

    /// Sets a new password with a reset link: the link is spent, the email counts as
    /// verified, every session ends and every refresh family is revoked; the owner is told.
    pub async fn reset_password(
        &self,
        token: &PasswordResetToken,
        password: Password,
    ) -> Result<User, AccountError> {
        self.passwords_on()?;
        let hash = hash_password(password).await?;
        let store = &self.inner.store;
        let user_id = store
            .reset_password(&token.hash(), &hash, self.now())
            .await?
            .ok_or(AccountError::InvalidResetLink)?;
        let user = store
            .user_by_id(&user_id)
            .await?
            .ok_or(AccountError::InvalidResetLink)?;
        self.audit(
            AuditKind::PasswordReset,
            Some(&user.id),
            None,
            None,
            "with a reset link",
        )
        .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "The password of your account on {host} was just changed with a reset link, and every browser session and OAuth login was signed out (API keys keep working).\n\nIf it was not you, reset it again now: {host}/forgot-password\n"
        );
        self.mail(&user.email, "Your password was changed", text)
            .await?;
        Ok(user)
    }

    /// A signed-in person changes their password: the current one must be right (a wrong one
    /// counts as a failed sign-in, throttled as those are). Every other session ends and every
    /// refresh family is revoked; this session stays; the person is told by mail.
    pub async fn change_password(
        &self,
        user: &User,
        session: &SessionToken,
        current: Password,
        new: Password,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        self.check_current_password(user, current, ip).await?;
        let hash = hash_password(new).await?;
        self.inner
            .store
            .change_password(&user.id, &hash, &session.hash(), self.now())
            .await?;
        self.audit(
            AuditKind::PasswordChanged,
            Some(&user.id),
            None,
            ip,
            "on the account page",
        )
        .await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "The password of your account on {host} was just changed from your account page. \
             Every other browser session and every OAuth login was signed out (API keys keep \
             working).\n\nIf it was not you, reset it now: {host}/forgot-password\n"
        );
        self.mail(&user.email, "Your password was changed", text)
            .await
    }

    /// A signed-in person's password, asked again before a change to the account: checked
    /// under the sign-in throttle, and a wrong one counts as a failed sign-in.
    pub(crate) async fn check_current_password(
        &self,
        user: &User,
        current: Password,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        self.passwords_on()?;
        self.throttle_sign_in(&user.email, ip)
            .await?
            .map_err(AccountError::Throttled)?;
        if verify_password(current, user.password_hash.clone()).await {
            Ok(())
        } else {
            self.sign_in_failed(&user.email, ip).await?;
            Err(AccountError::WrongCurrentPassword)
        }
    }

    /// The account whose email or id is `who`, for operators.
    pub async fn find_user(&self, who: &str) -> Result<Option<User>, StoreError> {
        match Email::parse(who) {
            Ok(email) => self.inner.store.user_by_email(email.as_str()).await,
            Err(_) => self.inner.store.user_by_id(who).await,
        }
    }

    /// Accounts, newest first, for operators.
    pub async fn users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        self.inner.store.users(limit, offset).await
    }

    /// Disables the account (`true`: no sign-in, every session and OAuth login ended, its API
    /// keys refused until it is enabled again) or enables it; for operators. `false` when the
    /// account no longer exists.
    pub async fn set_disabled(&self, user: &User, disabled: bool) -> Result<bool, StoreError> {
        let at = disabled.then(|| self.now());
        let Some(keys) = self.inner.store.set_user_disabled(&user.id, at).await? else {
            return Ok(false);
        };
        keys.iter().for_each(|hash| self.inner.keys.forget(hash));
        let (kind, detail) = if disabled {
            (
                AuditKind::AccountDisabled,
                "by an operator; every session and login ended",
            )
        } else {
            (AuditKind::AccountEnabled, "by an operator")
        };
        self.audit(kind, Some(&user.id), None, None, detail).await?;
        Ok(true)
    }

    /// Signs `user` out everywhere (every session, every OAuth login), for an operator
    /// handling a compromised account; API keys are revoked separately. Returns how many
    /// sessions ended.
    pub async fn sign_out_everywhere(&self, user: &User) -> Result<u64, StoreError> {
        self.inner
            .store
            .sign_out_everywhere(&user.id, self.now())
            .await
    }

    /// Refuses every password path when the deployment signs people in only through identity
    /// providers.
    fn passwords_on(&self) -> Result<(), AccountError> {
        if self.inner.policy.password_sign_in {
            Ok(())
        } else {
            Err(AccountError::PasswordsOff)
        }
    }

    /// Checks the password (throttled per address, per account and per account+address) and
    /// opens a session, or, when the account has a second factor, a sign-in waiting for it
    /// that goes on to `next`.
    pub async fn sign_in(
        &self,
        email: &str,
        password: Password,
        origin: &SessionOrigin,
        next: Option<&str>,
    ) -> Result<SignInStep, AccountError> {
        let ip = origin.ip;
        self.passwords_on()?;
        let email = Email::parse(email).map_err(|_| AccountError::WrongCredentials)?;
        self.throttle_sign_in(email.as_str(), ip)
            .await?
            .map_err(AccountError::Throttled)?;
        let user = self.inner.store.user_by_email(email.as_str()).await?;
        let stored = user
            .as_ref()
            .map_or(DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
        let password_ok = verify_password(password, stored).await;
        let user = match user {
            Some(user) if password_ok => user,
            _ => {
                Stats::bump(&self.inner.stats.sign_ins_failed);
                self.sign_in_failed(email.as_str(), ip).await?;
                return Err(AccountError::WrongCredentials);
            }
        };
        self.sign_in_succeeded(email.as_str(), ip).await?;
        if user.disabled_at.is_some() {
            return Err(AccountError::Disabled);
        }
        Ok(self.after_first_factor(user, origin, next).await?)
    }

    /// The user of a live session, and the session.
    pub async fn session_user(
        &self,
        token: &SessionToken,
    ) -> Result<Option<(User, SessionRecord)>, StoreError> {
        self.inner
            .store
            .session_user(&token.hash(), self.now())
            .await
    }

    pub async fn sign_out(&self, token: &SessionToken) -> Result<(), StoreError> {
        self.inner.store.delete_session(&token.hash()).await
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn percent_encode(value: &str) -> String {
    const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_nonsense_refused() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").map(|e| e.0).ok(),
            Some("alice@example.com".to_owned())
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "a@.com",
            "a@b.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::parse("correct horse".into()).is_ok());
        assert_eq!(
            format!("{:?}", Password::parse("correct horse".into()).ok()),
            "Some(Password([redacted]))"
        );
    }

    #[test]
    fn org_slugs_are_url_safe_and_unique() {
        let email = Email::parse("j.doe+cli@example.com").expect("valid");
        let a = personal_org_slug(&email);
        let b = personal_org_slug(&email);
        assert!(a.starts_with("j-doe-cli-"), "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn password_hashes_verify_only_the_right_password() {
        let hash = hash_password(Password("correct horse".into()))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Password("correct horse".into()), hash.clone()).await);
        assert!(!verify_password(Password("wrong horse!".into()), hash).await);
        assert!(!verify_password(Password("anything at all".into()), DUMMY_HASH.into()).await);
    }

    #[test]
    fn percent_encoding_keeps_paths_intact_once_decoded() {
        assert_eq!(
            percent_encode("/login/cli?a=b&c"),
            "%2Flogin%2Fcli%3Fa%3Db%26c"
        );
    }
}
