//! Sign-in with an upstream identity provider (OpenID Connect, GitHub, plain OAuth 2.0): the
//! sign-in in flight, bound to the browser that started it and used once, who the person the
//! provider vouches for is here, and linking and unlinking providers on an account. The HTTP
//! side (discovery, the code exchange, ID-token checks, userinfo) is the server's; this module
//! decides, and reads a provider's userinfo documents.
//!
//! The linking rule: an identity (provider, subject) already linked signs in to its account. A
//! new one needs an email the provider says is verified; it creates a verified account, unless
//! a verified account already has that email: then it is refused, never linked silently,
//! because taking over accounts through a provider that vouches for an address is the classic
//! attack. The owner links it by signing in to that account first and linking from there.
//! Whenever a provider restricts who may sign in (`allowed_email_domains`, Google's hosted
//! domain), every sign-in and link through it is held to the restriction.

use std::time::Duration;

use latchkey_proto::{LocalPath, SecretHash, base62};
use rand::rngs::OsRng;
use serde_json::Value;
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
    /// Google Workspace: only accounts of this hosted domain (the ID token's `hd`) may sign in.
    pub hosted_domain: Option<String>,
}

impl IdentityProvider {
    fn restricted(&self) -> bool {
        !self.allowed_email_domains.is_empty() || self.hosted_domain.is_some()
    }
}

/// Who the provider says the person is, from a verified ID token (and userinfo), or from a
/// plain OAuth 2.0 provider's userinfo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamIdentity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Google's `hd` claim: the Workspace domain of the account.
    pub hosted_domain: Option<String>,
}

/// Where a plain OAuth 2.0 provider's userinfo document keeps each part of the person: the
/// names of its top-level fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserinfoFields {
    pub subject: String,
    pub email: String,
    /// A field that is `true` when the provider verified the address; a provider without one
    /// vouches for no address, so its people link it from their account page.
    pub email_verified: String,
    pub name: String,
}

impl Default for UserinfoFields {
    /// OpenID Connect's names, which most OAuth 2.0 providers' userinfo use too.
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            name: "name".into(),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserinfoError {
    #[error("the provider's answer has no \"{0}\" to tell who the person is")]
    NoSubject(String),
}

/// A subject as a string: providers give numbers (GitHub's ids) or strings.
fn subject_of(doc: &Value, field: &str) -> Result<String, UserinfoError> {
    match doc.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(UserinfoError::NoSubject(field.to_owned())),
    }
}

fn text_of(doc: &Value, field: &str) -> Option<String> {
    doc.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The person in a plain OAuth 2.0 provider's userinfo document.
pub fn identity_from_userinfo(
    doc: &Value,
    fields: &UserinfoFields,
) -> Result<UpstreamIdentity, UserinfoError> {
    Ok(UpstreamIdentity {
        subject: subject_of(doc, &fields.subject)?,
        email: text_of(doc, &fields.email),
        email_verified: doc.get(&fields.email_verified) == Some(&Value::Bool(true)),
        name: text_of(doc, &fields.name),
        hosted_domain: None,
    })
}

/// The person GitHub's `GET /user` and `GET /user/emails` describe: the numeric id (a login
/// can be renamed and reused), and only the primary address, with whether GitHub verified it.
/// The profile's public email is never used: it says nothing of verification.
pub fn github_identity(user: &Value, emails: &Value) -> Result<UpstreamIdentity, UserinfoError> {
    let primary = emails
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)));
    Ok(UpstreamIdentity {
        subject: subject_of(user, "id")?,
        email: primary.and_then(|e| text_of(e, "email")),
        email_verified: primary.is_some_and(|e| e.get("verified") == Some(&Value::Bool(true))),
        name: text_of(user, "name").or_else(|| text_of(user, "login")),
        hosted_domain: None,
    })
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

/// How a callback ended.
#[derive(Debug)]
pub enum UpstreamOutcome {
    /// The person signed in to (or signed up as) this account.
    SignedIn(User),
    /// The provider was linked to the signed-in account that asked for it.
    Linked(User),
}

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("this sign-in was already used, has expired, or was never started here")]
    UnknownState,
    #[error("this sign-in was started in another browser; start it again in this one")]
    OtherBrowser,
    #[error("{}", crate::account::DISABLED)]
    Disabled,
    #[error("{provider} gave no email address for this account")]
    NoEmail { provider: String },
    #[error("{provider} has not confirmed {email} belongs to this account")]
    EmailNotVerified { provider: String, email: String },
    #[error("{email} is not an address allowed to sign in here")]
    DomainNotAllowed { email: String },
    #[error("only accounts of the {domain} organization may sign in with {provider} here")]
    HostedDomain { provider: String, domain: String },
    #[error(
        "an account with {email} already exists here; sign in to it first, then link \
         {provider} to it (signing in with {provider} never takes over an existing account)"
    )]
    AccountExists { email: String, provider: String },
    #[error("sign in first: only a signed-in person can link {provider} to their account")]
    NotSignedIn { provider: String },
    #[error("this link was started by another account than the one signed in now; start it again")]
    LinkNotYours,
    #[error("this {provider} account is already linked to another account here")]
    LinkedElsewhere { provider: String },
    #[error("your account is already linked to another {provider} account; unlink that one first")]
    ProviderAlreadyLinked { provider: String },
    #[error("{provider} is not linked to your account")]
    NotLinked { provider: String },
    #[error(
        "{provider} is the only way to sign in to your account; link another provider or set a \
         password (\"Forgot your password?\" on the sign-in page) before unlinking it"
    )]
    LastSignInMethod { provider: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The email a new account may be made with: present, verified by the provider, in an allowed
/// domain.
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

/// Whether `identity` may use `provider` at all: a restricted provider (allowed domains, a
/// hosted domain) admits only people it vouches for inside the restriction, on every sign-in.
fn admit(provider: &IdentityProvider, identity: &UpstreamIdentity) -> Result<(), UpstreamError> {
    if let Some(domain) = &provider.hosted_domain
        && identity.hosted_domain.as_deref() != Some(domain.as_str())
    {
        return Err(UpstreamError::HostedDomain {
            provider: provider.display_name.clone(),
            domain: domain.clone(),
        });
    }
    if provider.restricted() {
        email_for_new_account(provider, identity)?;
    }
    Ok(())
}

impl Service {
    /// Starts a sign-in with `provider_id`; `next` is where the person goes afterwards. With
    /// `link_to`, the signed-in account that is linking the provider.
    pub async fn start_upstream_login(
        &self,
        provider_id: &str,
        next: Option<&LocalPath>,
        link_to: Option<&User>,
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
                link_user_id: link_to.map(|u| u.id.clone()),
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

    /// What `identity` does here, once the provider's answer was checked: signs in to its
    /// account (creating one for a new, verified email), or, when the sign-in was started to
    /// link, is linked to the account `signed_in` (which must be the one that started it).
    /// Uses up the sign-in: a second callback with its state finds nothing.
    pub async fn finish_upstream_login(
        &self,
        provider: &IdentityProvider,
        login: &UpstreamLoginRecord,
        identity: &UpstreamIdentity,
        signed_in: Option<&User>,
    ) -> Result<UpstreamOutcome, UpstreamError> {
        admit(provider, identity)?;
        let store = &self.inner.store;
        let linked_to = store.identity_user(&provider.id, &identity.subject).await?;
        let outcome = match (&login.link_user_id, linked_to) {
            (Some(linking), _) if signed_in.is_none_or(|u| &u.id != linking) => {
                return Err(UpstreamError::LinkNotYours);
            }
            (Some(linking), Some(owner)) if &owner != linking => {
                return Err(UpstreamError::LinkedElsewhere {
                    provider: provider.display_name.clone(),
                });
            }
            (Some(_), owner) => {
                let user = signed_in.ok_or(UpstreamError::LinkNotYours)?.clone();
                if owner.is_none() {
                    self.link(provider, identity, &user).await?;
                }
                UpstreamOutcome::Linked(user)
            }
            (None, Some(owner)) => {
                let user = store
                    .user_by_id(&owner)
                    .await?
                    .ok_or(UpstreamError::UnknownState)?;
                if user.disabled_at.is_some() {
                    return Err(UpstreamError::Disabled);
                }
                UpstreamOutcome::SignedIn(user)
            }
            (None, None) => {
                UpstreamOutcome::SignedIn(self.account_for_new_identity(provider, identity).await?)
            }
        };
        if !store.claim_upstream_login(&login.state_hash).await? {
            return Err(UpstreamError::UnknownState);
        }
        Ok(outcome)
    }

    async fn link(
        &self,
        provider: &IdentityProvider,
        identity: &UpstreamIdentity,
        user: &User,
    ) -> Result<(), UpstreamError> {
        let link = IdentityRecord {
            provider_id: provider.id.clone(),
            subject: identity.subject.clone(),
            user_id: user.id.clone(),
            email: identity.email.clone().unwrap_or_default(),
            created_at: self.now(),
        };
        match self.inner.store.insert_identity(&link).await {
            // The (account, provider) pair is unique: this account has another identity there.
            Err(StoreError::Conflict(_)) => Err(UpstreamError::ProviderAlreadyLinked {
                provider: provider.display_name.clone(),
            }),
            other => Ok(other?),
        }
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

    /// The providers linked to `user`'s account, oldest first.
    pub async fn linked_identities(&self, user: &User) -> Result<Vec<IdentityRecord>, StoreError> {
        self.inner.store.identities_of(&user.id).await
    }

    /// Whether `user` can sign in with a password: accounts made by a provider (or for a
    /// machine client) hold a `!` marker instead of a hash until the person sets one through a
    /// password reset.
    pub fn has_password(user: &User) -> bool {
        !user.password_hash.starts_with('!')
    }

    /// Unlinks `provider` from `user`'s account, unless it is the last way to sign in.
    pub async fn unlink_identity(
        &self,
        user: &User,
        provider: &IdentityProvider,
    ) -> Result<(), UpstreamError> {
        let store = &self.inner.store;
        let linked = store.identities_of(&user.id).await?;
        if !linked.iter().any(|i| i.provider_id == provider.id) {
            return Err(UpstreamError::NotLinked {
                provider: provider.display_name.clone(),
            });
        }
        if store
            .delete_identity(&user.id, &provider.id, Self::has_password(user))
            .await?
        {
            Ok(())
        } else {
            Err(UpstreamError::LastSignInMethod {
                provider: provider.display_name.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn provider(domains: &[&str]) -> IdentityProvider {
        IdentityProvider {
            id: "corp".into(),
            display_name: "Corp SSO".into(),
            allowed_email_domains: domains.iter().map(|d| d.to_string()).collect(),
            hosted_domain: None,
        }
    }

    fn identity(email: Option<&str>, verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            subject: "sub-1".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            ..UpstreamIdentity::default()
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

    #[test]
    fn a_restricted_provider_holds_every_sign_in_to_its_restriction() {
        // Unrestricted: a linked identity signs in even without an email.
        assert!(admit(&provider(&[]), &identity(None, false)).is_ok());
        let corp = provider(&["corp.example"]);
        assert!(admit(&corp, &identity(Some("ann@corp.example"), true)).is_ok());
        assert!(admit(&corp, &identity(Some("ann@corp.example"), false)).is_err());
        assert!(admit(&corp, &identity(Some("ann@gmail.example"), true)).is_err());
        assert!(admit(&corp, &identity(None, false)).is_err());

        let google = IdentityProvider {
            hosted_domain: Some("corp.example".into()),
            ..provider(&[])
        };
        let member = UpstreamIdentity {
            hosted_domain: Some("corp.example".into()),
            ..identity(Some("ann@corp.example"), true)
        };
        assert!(admit(&google, &member).is_ok());
        for hd in [None, Some("other.example"), Some("CORP.example")] {
            let outsider = UpstreamIdentity {
                hosted_domain: hd.map(str::to_owned),
                ..member.clone()
            };
            assert!(
                matches!(
                    admit(&google, &outsider),
                    Err(UpstreamError::HostedDomain { .. })
                ),
                "{hd:?}"
            );
        }
    }

    #[test]
    fn userinfo_fields_are_read_by_their_configured_names() {
        let fields = UserinfoFields {
            subject: "id".into(),
            email: "mail".into(),
            email_verified: "mail_confirmed".into(),
            name: "display".into(),
        };
        let doc =
            json!({"id": 42, "mail": "ann@example.com", "mail_confirmed": true, "display": "Ann"});
        assert_eq!(
            identity_from_userinfo(&doc, &fields),
            Ok(UpstreamIdentity {
                subject: "42".into(),
                email: Some("ann@example.com".into()),
                email_verified: true,
                name: Some("Ann".into()),
                hosted_domain: None,
            })
        );
        // Only a JSON `true` verifies: a string, or no field at all, does not.
        for confirmed in [json!("true"), json!(1), Value::Null] {
            let doc = json!({"id": "u-1", "mail": "ann@example.com", "mail_confirmed": confirmed});
            let who = identity_from_userinfo(&doc, &fields).expect("an identity");
            assert!(!who.email_verified, "{confirmed}");
        }
        for no_subject in [
            json!({}),
            json!({"id": ""}),
            json!({"id": null}),
            json!({"id": [1]}),
        ] {
            assert_eq!(
                identity_from_userinfo(&no_subject, &fields),
                Err(UserinfoError::NoSubject("id".into()))
            );
        }
    }

    #[test]
    fn github_vouches_only_for_the_primary_verified_address() {
        let user =
            json!({"id": 583231, "login": "octocat", "name": null, "email": "public@example.com"});
        let emails = json!([
            {"email": "other@example.com", "primary": false, "verified": true},
            {"email": "octo@example.com", "primary": true, "verified": true},
        ]);
        let who = github_identity(&user, &emails).expect("an identity");
        assert_eq!(who.subject, "583231");
        assert_eq!(who.email.as_deref(), Some("octo@example.com"));
        assert!(who.email_verified);
        assert_eq!(
            who.name.as_deref(),
            Some("octocat"),
            "the login when no name"
        );

        let unverified = json!([{"email": "octo@example.com", "primary": true, "verified": false}]);
        let who = github_identity(&user, &unverified).expect("an identity");
        assert_eq!(who.email.as_deref(), Some("octo@example.com"));
        assert!(!who.email_verified);

        // No list (the scope was not granted): the public profile email is not used.
        for nothing in [json!([]), json!({"message": "Not Found"})] {
            let who = github_identity(&user, &nothing).expect("an identity");
            assert_eq!(who.email, None);
            assert!(!who.email_verified);
        }
        assert_eq!(
            github_identity(&json!({"login": "octocat"}), &emails),
            Err(UserinfoError::NoSubject("id".into()))
        );
    }
}
