//! `[[identity_providers]]` in the config file, checked into an [`UpstreamProvider`]: which
//! protocol it speaks, where, and with which client credentials.

use std::path::PathBuf;

use latchkey_core::upstream::{IdentityProvider, UserinfoFields};
use serde::Deserialize;
use url::Url;

use crate::config::{ConfigError, is_loopback_host};

/// What kind of provider an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenID Connect provider, by discovery at its issuer.
    Oidc,
    /// OpenID Connect at accounts.google.com, with Workspace's hosted domain (`hd`).
    Google,
    /// GitHub (or GitHub Enterprise Server): OAuth 2.0, then `/user` and `/user/emails`.
    Github,
    /// Any OAuth 2.0 provider: its endpoints, and where its userinfo keeps the person.
    Oauth2,
}

impl ProviderKind {
    /// As written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Google => "google",
            Self::Github => "github",
            Self::Oauth2 => "oauth2",
        }
    }
}

/// `[[identity_providers]]`: a provider people may sign in (and up) with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderOption {
    /// In URLs: `/auth/login/{id}`, `/auth/callback/{id}`.
    pub id: String,
    pub kind: ProviderKind,
    /// What the sign-in page's button says: "Continue with {display_name}".
    pub display_name: String,
    pub client_id: String,
    /// A file holding the client secret (never the secret itself in the config) ...
    pub client_secret_file: Option<PathBuf>,
    /// ... or the name of the environment variable holding it.
    pub client_secret_env: Option<String>,
    /// Scopes to ask for (`oidc`, `google`: `openid email profile`; `github`: `read:user
    /// user:email`; `oauth2`: none).
    pub scopes: Option<Vec<String>>,
    /// Only addresses in these domains may sign in (empty: any).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// `oidc`: the discovery issuer (`google` has its own).
    pub issuer: Option<String>,
    /// `google`: only accounts of this Google Workspace domain (the ID token's `hd`).
    pub hosted_domain: Option<String>,
    /// `github`: GitHub Enterprise Server's address (default https://github.com) ...
    pub github_url: Option<String>,
    /// ... and its API (default https://api.github.com, or `<github_url>/api/v3`).
    pub github_api_url: Option<String>,
    /// `oauth2`: the authorization, token and userinfo endpoints.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    /// `oauth2`: the userinfo fields holding the subject (default `sub`), the email (`email`),
    /// whether the provider verified it (`email_verified`), and the name (`name`).
    pub userinfo_subject: Option<String>,
    pub userinfo_email: Option<String>,
    pub userinfo_email_verified: Option<String>,
    pub userinfo_name: Option<String>,
}

/// How latchkey learns who signed in at a provider.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// OpenID Connect: an ID token, checked on the keys discovery at `issuer` names.
    Oidc { issuer: String },
    /// OAuth 2.0: an access token, then who it belongs to from userinfo.
    OAuth2(Box<OAuth2Endpoints>),
}

/// Where a plain OAuth 2.0 provider signs people in, trades codes, and says who they are.
#[derive(Debug, Clone)]
pub struct OAuth2Endpoints {
    pub authorization_url: Url,
    pub token_url: Url,
    pub userinfo: Userinfo,
}

#[derive(Debug, Clone)]
pub enum Userinfo {
    /// GitHub's `GET /user` and `GET /user/emails` under `api`.
    GitHub { api: Url },
    /// One JSON document at `url`, read by `fields`.
    Document { url: Url, fields: UserinfoFields },
}

/// A checked `[[identity_providers]]` entry, its secret read.
#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    pub provider: IdentityProvider,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub protocol: Protocol,
}

impl UpstreamProvider {
    /// Where the provider is, as `admin providers list` shows it.
    pub fn location(&self) -> &str {
        match &self.protocol {
            Protocol::Oidc { issuer } => issuer,
            Protocol::OAuth2(endpoints) => endpoints.authorization_url.as_str(),
        }
    }
}

impl IdentityProviderOption {
    /// The fields given that belong to other kinds than this entry's.
    fn foreign_fields(&self) -> Vec<&'static str> {
        use ProviderKind as K;
        let fields: [(&str, bool, &[ProviderKind]); 10] = [
            ("issuer", self.issuer.is_some(), &[K::Oidc, K::Google]),
            ("hosted_domain", self.hosted_domain.is_some(), &[K::Google]),
            ("github_url", self.github_url.is_some(), &[K::Github]),
            (
                "github_api_url",
                self.github_api_url.is_some(),
                &[K::Github],
            ),
            (
                "authorization_url",
                self.authorization_url.is_some(),
                &[K::Oauth2],
            ),
            ("token_url", self.token_url.is_some(), &[K::Oauth2]),
            ("userinfo_url", self.userinfo_url.is_some(), &[K::Oauth2]),
            (
                "userinfo_subject",
                self.userinfo_subject.is_some(),
                &[K::Oauth2],
            ),
            (
                "userinfo_email",
                self.userinfo_email.is_some(),
                &[K::Oauth2],
            ),
            (
                "userinfo_email_verified or userinfo_name",
                self.userinfo_email_verified.is_some() || self.userinfo_name.is_some(),
                &[K::Oauth2],
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, given, kinds)| *given && !kinds.contains(&self.kind))
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// A provider's endpoint: https, or http on a loopback address (development, tests).
fn endpoint(name: &str, raw: &str) -> Result<Url, String> {
    Url::parse(raw)
        .ok()
        .filter(|u| u.scheme() == "https" || (u.scheme() == "http" && is_loopback_host(u)))
        .ok_or_else(|| format!("{name} {raw:?} must be an https URL"))
}

fn protocol(o: &IdentityProviderOption) -> Result<Protocol, String> {
    let given = |name: &str, value: &Option<String>| {
        value
            .clone()
            .ok_or_else(|| format!("a provider of kind {} needs {name}", o.kind.name()))
    };
    let required = |name: &str, value: &Option<String>| endpoint(name, &given(name, value)?);
    Ok(match o.kind {
        ProviderKind::Oidc | ProviderKind::Google => {
            let issuer = match o.kind {
                ProviderKind::Google => o
                    .issuer
                    .clone()
                    .unwrap_or_else(|| "https://accounts.google.com".into()),
                _ => given("issuer", &o.issuer)?,
            };
            endpoint("issuer", &issuer)?;
            // Discovery compares the issuer byte for byte: kept as written.
            Protocol::Oidc { issuer }
        }
        ProviderKind::Github => {
            let site = endpoint(
                "github_url",
                o.github_url.as_deref().unwrap_or("https://github.com"),
            )?;
            let api = match (&o.github_api_url, &o.github_url) {
                (Some(api), _) => endpoint("github_api_url", api)?,
                (None, None) => endpoint("github_api_url", "https://api.github.com")?,
                (None, Some(_)) => site.join("api/v3").map_err(|e| e.to_string())?,
            };
            let on_site = |path: &str| site.join(path).map_err(|e| e.to_string());
            Protocol::OAuth2(Box::new(OAuth2Endpoints {
                authorization_url: on_site("login/oauth/authorize")?,
                token_url: on_site("login/oauth/access_token")?,
                userinfo: Userinfo::GitHub { api },
            }))
        }
        ProviderKind::Oauth2 => {
            let defaults = UserinfoFields::default();
            let field = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
            Protocol::OAuth2(Box::new(OAuth2Endpoints {
                authorization_url: required("authorization_url", &o.authorization_url)?,
                token_url: required("token_url", &o.token_url)?,
                userinfo: Userinfo::Document {
                    url: required("userinfo_url", &o.userinfo_url)?,
                    fields: UserinfoFields {
                        subject: field(&o.userinfo_subject, defaults.subject),
                        email: field(&o.userinfo_email, defaults.email),
                        email_verified: field(&o.userinfo_email_verified, defaults.email_verified),
                        name: field(&o.userinfo_name, defaults.name),
                    },
                },
            }))
        }
    })
}

fn default_scopes(kind: ProviderKind) -> Vec<String> {
    let scopes: &[&str] = match kind {
        ProviderKind::Oidc | ProviderKind::Google => &["openid", "email", "profile"],
        ProviderKind::Github => &["read:user", "user:email"],
        ProviderKind::Oauth2 => &[],
    };
    scopes.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn identity_provider(
    o: IdentityProviderOption,
) -> Result<UpstreamProvider, ConfigError> {
    let bad = |why: String| ConfigError::IdentityProvider {
        id: o.id.clone(),
        why,
    };
    let id_ok = (1..=32).contains(&o.id.len())
        && o.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(bad(
            "id must be 1 to 32 lowercase letters, digits or -".into()
        ));
    }
    if let Some(field) = o.foreign_fields().first() {
        return Err(bad(format!(
            "{field} does not apply to a provider of kind {}",
            o.kind.name()
        )));
    }
    let protocol = protocol(&o).map_err(bad)?;
    let secret = match (&o.client_secret_file, &o.client_secret_env) {
        (Some(file), None) => std::fs::read_to_string(file).map_err(|e| {
            bad(format!(
                "reading client_secret_file {}: {e}",
                file.display()
            ))
        })?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| bad(format!("the environment variable {var} is not set")))?,
        _ => {
            return Err(bad(
                "give the client secret as client_secret_file or client_secret_env".into(),
            ));
        }
    };
    let lower = |d: &str| d.trim().to_lowercase();
    Ok(UpstreamProvider {
        provider: IdentityProvider {
            id: o.id.clone(),
            display_name: o.display_name.clone(),
            allowed_email_domains: o.allowed_email_domains.iter().map(|d| lower(d)).collect(),
            hosted_domain: o.hosted_domain.as_deref().map(lower),
        },
        client_id: o.client_id.clone(),
        client_secret: secret.trim().to_owned(),
        scopes: o.scopes.clone().unwrap_or_else(|| default_scopes(o.kind)),
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry in `toml` (one `[[identity_providers]]` table's keys), its secret from the
    /// environment.
    fn entry(toml: &str) -> Result<UpstreamProvider, String> {
        let option: IdentityProviderOption = toml::from_str(&format!(
            "id = \"p\"\ndisplay_name = \"P\"\nclient_id = \"c\"\nclient_secret_env = \"PATH\"\n{toml}"
        ))
        .map_err(|e| e.to_string())?;
        identity_provider(option).map_err(|e| e.to_string())
    }

    #[test]
    fn github_defaults_to_github_com_and_enterprise_servers_to_their_api_v3() {
        let github = entry("kind = \"github\"").expect("valid");
        let Protocol::OAuth2(endpoints) = &github.protocol else {
            panic!("github is OAuth 2.0");
        };
        assert_eq!(
            endpoints.authorization_url.as_str(),
            "https://github.com/login/oauth/authorize"
        );
        assert_eq!(
            endpoints.token_url.as_str(),
            "https://github.com/login/oauth/access_token"
        );
        assert!(
            matches!(&endpoints.userinfo, Userinfo::GitHub { api } if api.as_str() == "https://api.github.com/")
        );
        assert_eq!(github.scopes, ["read:user", "user:email"]);

        let enterprise =
            entry("kind = \"github\"\ngithub_url = \"https://git.corp.example\"").expect("valid");
        let Protocol::OAuth2(endpoints) = &enterprise.protocol else {
            panic!("github is OAuth 2.0");
        };
        assert_eq!(
            endpoints.token_url.as_str(),
            "https://git.corp.example/login/oauth/access_token"
        );
        assert!(
            matches!(&endpoints.userinfo, Userinfo::GitHub { api } if api.as_str() == "https://git.corp.example/api/v3")
        );
    }

    #[test]
    fn google_keeps_its_issuer_as_written_and_its_hosted_domain_lower_case() {
        let google = entry("kind = \"google\"\nhosted_domain = \"Corp.Example\"").expect("valid");
        assert!(
            matches!(&google.protocol, Protocol::Oidc { issuer } if issuer == "https://accounts.google.com")
        );
        assert_eq!(
            google.provider.hosted_domain.as_deref(),
            Some("corp.example")
        );
        assert_eq!(google.scopes, ["openid", "email", "profile"]);
    }

    #[test]
    fn an_entry_with_fields_of_another_kind_or_missing_endpoints_is_refused() {
        for (toml, says) in [
            (
                "kind = \"github\"\nissuer = \"https://idp.example\"",
                "issuer does not apply",
            ),
            (
                "kind = \"oidc\"\nhosted_domain = \"corp.example\"",
                "hosted_domain does not apply",
            ),
            (
                "kind = \"oidc\"\ngithub_url = \"https://g.example\"",
                "github_url does not apply",
            ),
            ("kind = \"oidc\"", "needs issuer"),
            (
                "kind = \"oauth2\"\nauthorization_url = \"https://a.example/authorize\"\n\
                 userinfo_url = \"https://a.example/me\"",
                "needs token_url",
            ),
            (
                "kind = \"oidc\"\nissuer = \"http://idp.example\"",
                "must be an https URL",
            ),
            ("kind = \"saml\"", "unknown variant"),
            (
                "kind = \"oidc\"\nissuer = \"https://idp.example\"\nisuer = \"x\"",
                "unknown field",
            ),
        ] {
            let refused = entry(toml).expect_err(toml);
            assert!(refused.contains(says), "{toml}: {refused}");
        }
        let oauth2 = entry(
            "kind = \"oauth2\"\nauthorization_url = \"https://a.example/authorize\"\n\
             token_url = \"https://a.example/token\"\nuserinfo_url = \"https://a.example/me\"\n\
             userinfo_subject = \"id\"",
        )
        .expect("valid");
        let Protocol::OAuth2(endpoints) = &oauth2.protocol else {
            panic!("oauth2 is OAuth 2.0");
        };
        assert!(matches!(
            &endpoints.userinfo,
            Userinfo::Document { fields, .. } if fields.subject == "id" && fields.email == "email"
        ));
    }
}
