//! Accounts: sign-up with email and password, email verification, sign-in and sessions.

use std::net::IpAddr;

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use latchkey_proto::{SessionToken, VerificationToken, base62};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{
    Service, Stats,
    mail::{Mail, MailError},
    new_id,
    store::{Org, StoreError, User},
    throttle::Throttled,
};

#[derive(Debug, Error)]
pub enum AccountError {
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("passwords must be 8 to 128 characters long")]
    InvalidPassword,
    #[error("an account with this email already exists; sign in instead")]
    EmailTaken,
    #[error("the email or the password is wrong")]
    WrongCredentials,
    #[error("too many sign-in attempts; try again in {} seconds", .0.retry_after.as_secs().max(1))]
    Throttled(Throttled),
    #[error("this verification link is not valid or has expired; request a new one")]
    InvalidVerificationLink,
    #[error("sending the verification email failed")]
    Mail(#[from] MailError),
    #[error("hashing the password failed")]
    Hashing,
    #[error(transparent)]
    Store(#[from] StoreError),
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
            Err(AccountError::InvalidEmail(raw.chars().take(100).collect()))
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
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.0.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
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

impl Service {
    /// A new account record with its personal org (not yet stored).
    pub(crate) fn new_user(&self, email: &Email, password_hash: String, verified: bool) -> User {
        User {
            id: new_id("usr"),
            email: email.as_str().to_owned(),
            email_verified: verified,
            password_hash,
            created_at: self.now(),
            org: Org {
                id: new_id("org"),
                slug: personal_org_slug(email),
                name: format!("{}'s org", email.local_part()),
            },
        }
    }

    /// Creates an unverified account with its personal org and mails the verification link.
    /// `next` is where the link leads after verifying (a path on this service).
    pub async fn sign_up(
        &self,
        email: Email,
        password: Password,
        next: Option<&str>,
    ) -> Result<User, AccountError> {
        let store = &self.inner.store;
        if store.user_by_email(email.as_str()).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let user = self.new_user(&email, hash_password(password).await?, false);
        match store.create_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict("account")) => return Err(AccountError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.send_verification(&user, next).await?;
        Ok(user)
    }

    pub async fn resend_verification(
        &self,
        user: &User,
        next: Option<&str>,
    ) -> Result<(), AccountError> {
        self.send_verification(user, next).await
    }

    async fn send_verification(&self, user: &User, next: Option<&str>) -> Result<(), AccountError> {
        let token = VerificationToken::generate(&mut OsRng);
        let policy = &self.inner.policy;
        let expires_at = self.now() + policy.verification_ttl;
        self.inner
            .store
            .insert_email_verification(&token.hash(), &user.id, expires_at)
            .await?;
        let mut link = format!(
            "{}/verify-email?token={}",
            policy.public_url,
            token.expose_secret()
        );
        if let Some(next) = next {
            link.push_str("&next=");
            link.push_str(&percent_encode(next));
        }
        let text = format!(
            "Welcome to {host}.\n\nConfirm your email address by opening this link within 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this message.\n",
            host = policy.public_url
        );
        self.inner
            .mailer
            .send(Mail {
                to: user.email.clone(),
                subject: "Confirm your email address".to_owned(),
                text,
            })
            .await?;
        Ok(())
    }

    /// Marks the link's account verified; the link works once.
    pub async fn verify_email(&self, token: &VerificationToken) -> Result<String, AccountError> {
        self.inner
            .store
            .consume_email_verification(&token.hash(), self.now())
            .await?
            .ok_or(AccountError::InvalidVerificationLink)
    }

    /// Checks the password (throttled per account and per IP) and opens a session.
    pub async fn sign_in(
        &self,
        email: &str,
        password: Password,
        ip: Option<IpAddr>,
    ) -> Result<(SessionToken, User), AccountError> {
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
                return Err(AccountError::WrongCredentials);
            }
        };
        let token = SessionToken::generate(&mut OsRng);
        let expires_at = self.now() + self.inner.policy.session_ttl;
        self.inner
            .store
            .insert_session(&token.hash(), &user.id, expires_at)
            .await?;
        Ok((token, user))
    }

    pub async fn session_user(&self, token: &SessionToken) -> Result<Option<User>, StoreError> {
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
