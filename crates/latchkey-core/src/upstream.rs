//! Sign-in with an upstream identity provider (OpenID Connect): the sign-in in flight, bound to
//! the browser that started it and used once, and who the person the provider vouches for is
//! here. The HTTP side (discovery, the code exchange, ID-token checks) is the server's; this
//! module decides.
//!
//! The linking rule: an identity (provider, subject) already linked signs in to its account. A
//! new one needs an email the provider says is verified, in an allowed domain; it creates a
//! verified account, unless a verified account already has that email: then it is refused, never
//! linked silently, because taking over accounts through a provider that vouches for an address
//! is the classic attack.

use std::time::Duration;

use latchkey_proto::{LocalPath, SecretHash, base62};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{
    Service,
    account::Email,
    store::{IdentityRecord, StoreError, UpstreamLoginRecord, User},
};

/// How long a sign-in may take at the provider.
const UPSTREAM_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// The `password_hash` of an account made by a provider: no password verifies against it.
const NO_PASSWORD: &str = "!upstream";

/// What the domain needs to know of a configured provider.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    /// Its id in URLs (`/auth/login/{id}`) and in `identities`.
    pub id: String,
    /// How pages name it ("Continue with …").
    pub display_name: String,
    /// Lower-case domains whose addresses may sign in; empty: any.
    pub allowed_email_domains: Vec<String>,
}

/// Who the provider says the person is, from a verified ID token (and userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// What starting a sign-in hands the HTTP layer: the values for the provider, and the secret
/// for the browser's cookie. Only their hashes (and the verifier, useless without the code)
/// are stored.
#[derive(Debug)]
pub struct StartedUpstreamLogin {
    pub state: String,
    pub browser_secret: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("this sign-in was already used, has expired, or was never started here")]
    UnknownState,
    #[error("this sign-in was started in another browser; start it again in this one")]
    OtherBrowser,
    #[error("{provider} gave no email address for this account")]
    NoEmail { provider: String },
    #[error("{provider} has not confirmed {email} belongs to this account")]
    EmailNotVerified { provider: String, email: String },
    #[error("{email} is not an address allowed to sign in here")]
    DomainNotAllowed { email: String },
    #[error(
        "an account with {email} already exists here; sign in to it with its password (signing \
         in with {provider} does not take over an existing account)"
    )]
    AccountExists { email: String, provider: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The email a new identity may create an account with: present, verified by the provider, in
/// an allowed domain.
fn email_for_new_account(
    provider: &IdentityProvider,
    identity: &UpstreamIdentity,
) -> Result<Email, UpstreamError> {
    let raw = identity
        .email
        .as_deref()
        .ok_or_else(|| UpstreamError::NoEmail {
            provider: provider.display_name.clone(),
        })?;
    let email = Email::parse(raw).map_err(|_| UpstreamError::NoEmail {
        provider: provider.display_name.clone(),
    })?;
    if !identity.email_verified {
        return Err(UpstreamError::EmailNotVerified {
            provider: provider.display_name.clone(),
            email: email.as_str().to_owned(),
        });
    }
    let domain = email.as_str().rsplit('@').next().unwrap_or_default();
    let allowed = provider.allowed_email_domains.is_empty()
        || provider.allowed_email_domains.iter().any(|d| d == domain);
    if !allowed {
        return Err(UpstreamError::DomainNotAllowed {
            email: email.as_str().to_owned(),
        });
    }
    Ok(email)
}

impl Service {
    /// Starts a sign-in with `provider_id`; `next` is where the person goes afterwards.
    pub async fn start_upstream_login(
        &self,
        provider_id: &str,
        next: Option<&LocalPath>,
    ) -> Result<StartedUpstreamLogin, StoreError> {
        let random = |len| base62::random(&mut OsRng, len);
        let started = StartedUpstreamLogin {
            state: random(32),
            browser_secret: random(32),
            pkce_verifier: random(64),
            nonce: random(32),
        };
        let now = self.now();
        self.inner
            .store
            .insert_upstream_login(&UpstreamLoginRecord {
                state_hash: SecretHash::of(&started.state),
                provider_id: provider_id.to_owned(),
                browser_hash: SecretHash::of(&started.browser_secret),
                pkce_verifier: started.pkce_verifier.clone(),
                nonce: started.nonce.clone(),
                next_path: next.map(|n| n.as_str().to_owned()),
                created_at: now,
                expires_at: now + UPSTREAM_LOGIN_TTL,
            })
            .await?;
        Ok(started)
    }

    /// The sign-in `state` names, if it was started for `provider_id` in the browser holding
    /// `browser_secret` and has not expired. It stays until [`Service::finish_upstream_login`],
    /// so a failed code exchange can be retried.
    pub async fn upstream_login(
        &self,
        provider_id: &str,
        state: &str,
        browser_secret: Option<&str>,
    ) -> Result<UpstreamLoginRecord, UpstreamError> {
        let login = self
            .inner
            .store
            .upstream_login(&SecretHash::of(state))
            .await?
            .filter(|l| l.provider_id == provider_id && l.expires_at > self.now())
            .ok_or(UpstreamError::UnknownState)?;
        match browser_secret {
            Some(secret) if SecretHash::of(secret) == login.browser_hash => Ok(login),
            _ => Err(UpstreamError::OtherBrowser),
        }
    }

    /// The account `identity` signs in to (creating one for a new, verified email), once the
    /// provider's answer was checked. Uses up the sign-in: a second callback with its state
    /// finds nothing.
    pub async fn finish_upstream_login(
        &self,
        provider: &IdentityProvider,
        login: &UpstreamLoginRecord,
        identity: &UpstreamIdentity,
    ) -> Result<User, UpstreamError> {
        let store = &self.inner.store;
        let user = match store.identity_user(&provider.id, &identity.subject).await? {
            Some(user_id) => store
                .user_by_id(&user_id)
                .await?
                .ok_or(UpstreamError::UnknownState)?,
            None => self.account_for_new_identity(provider, identity).await?,
        };
        if !store.claim_upstream_login(&login.state_hash).await? {
            return Err(UpstreamError::UnknownState);
        }
        Ok(user)
    }

    async fn account_for_new_identity(
        &self,
        provider: &IdentityProvider,
        identity: &UpstreamIdentity,
    ) -> Result<User, UpstreamError> {
        let email = email_for_new_account(provider, identity)?;
        let store = &self.inner.store;
        let user = self.new_user(&email, identity.name.clone(), NO_PASSWORD.to_owned(), true);
        let link = IdentityRecord {
            provider_id: provider.id.clone(),
            subject: identity.subject.clone(),
            user_id: user.id.clone(),
            email: email.as_str().to_owned(),
            created_at: self.now(),
        };
        let taken = || UpstreamError::AccountExists {
            email: email.as_str().to_owned(),
            provider: provider.display_name.clone(),
        };
        match store.user_by_email(email.as_str()).await? {
            Some(existing) if existing.email_verified => return Err(taken()),
            // An unconfirmed sign-up proves nothing: the provider's verified address wins.
            Some(unverified) => {
                let revoked = store
                    .replace_unverified_user(&unverified, &user, self.now())
                    .await?;
                revoked.iter().for_each(|h| self.inner.keys.forget(h));
                store.insert_identity(&link).await?;
            }
            None => match store.create_user_with_identity(&user, &link).await {
                Err(StoreError::Conflict(_)) => return Err(taken()),
                other => other?,
            },
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(domains: &[&str]) -> IdentityProvider {
        IdentityProvider {
            id: "corp".into(),
            display_name: "Corp SSO".into(),
            allowed_email_domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn identity(email: Option<&str>, verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            subject: "sub-1".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            name: None,
        }
    }

    #[test]
    fn a_new_identity_needs_a_verified_email_in_an_allowed_domain() {
        let any = provider(&[]);
        let email = email_for_new_account(&any, &identity(Some("Ann@Corp.example"), true));
        assert_eq!(
            email.map(|e| e.as_str().to_owned()).ok().as_deref(),
            Some("ann@corp.example")
        );
        assert!(matches!(
            email_for_new_account(&any, &identity(Some("ann@corp.example"), false)),
            Err(UpstreamError::EmailNotVerified { .. })
        ));
        assert!(matches!(
            email_for_new_account(&any, &identity(None, true)),
            Err(UpstreamError::NoEmail { .. })
        ));
        let corp = provider(&["corp.example"]);
        assert!(email_for_new_account(&corp, &identity(Some("ann@corp.example"), true)).is_ok());
        for outside in [
            "ann@other.example",
            "ann@sub.corp.example",
            "ann@corp.example.evil",
        ] {
            assert!(
                matches!(
                    email_for_new_account(&corp, &identity(Some(outside), true)),
                    Err(UpstreamError::DomainNotAllowed { .. })
                ),
                "{outside}"
            );
        }
    }
}
