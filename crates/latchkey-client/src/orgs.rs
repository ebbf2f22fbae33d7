//! The logged-in person's organizations: list them, create one, invite people, see the
//! members, leave; and token exchange (RFC 8693), which trades a credential for one acting for
//! an org, or logs a CI job in with its own OIDC token.

use latchkey_proto::{
    oauth::TokenResponse,
    wire::{
        InvitationCreateRequest, InvitationInfo, MeResponse, MemberListResponse, OrgCreateRequest,
        OrgMembershipInfo,
    },
};

use crate::{
    Client, ClientError, Credential,
    login::LoginOutcome,
    oauth_login::unix_now,
    storage::{Secret, StoredAccount, TokenSet},
};

/// RFC 8693 token exchange.
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// What to ask [`Client::exchange`] for: an access token, or an API key.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const API_KEY_TOKEN_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

impl Client {
    /// Who is logged in (with the org the credential acts for), and their orgs.
    pub async fn orgs(&self) -> Result<(MeResponse, Vec<OrgMembershipInfo>), ClientError> {
        let bearer = self.bearer().await?;
        let me = self.whoami(&bearer).await?;
        let orgs = self.api.list_orgs(&bearer).await?.orgs;
        Ok((me, orgs))
    }

    /// A new org, owned by the logged-in person.
    pub async fn create_org(
        &self,
        slug: &str,
        name: Option<String>,
    ) -> Result<OrgMembershipInfo, ClientError> {
        let bearer = self.bearer().await?;
        let request = OrgCreateRequest {
            slug: slug.to_owned(),
            name,
        };
        self.api.create_org(&bearer, &request).await
    }

    /// Mails `email` an invitation to `org` with `role` (`None`: member).
    pub async fn invite(
        &self,
        org: &str,
        email: &str,
        role: Option<String>,
    ) -> Result<InvitationInfo, ClientError> {
        let bearer = self.bearer().await?;
        let request = InvitationCreateRequest {
            email: email.to_owned(),
            role,
        };
        self.api.invite(&bearer, org, &request).await
    }

    pub async fn org_members(&self, org: &str) -> Result<MemberListResponse, ClientError> {
        let bearer = self.bearer().await?;
        self.api.org_members(&bearer, org).await
    }

    /// Trades the logged-in credential (RFC 8693) for an access token that acts for `org` (its
    /// slug or id): for scripts that work in one org, without logging in again.
    pub async fn exchange_for_org(&self, org: &str) -> Result<TokenResponse, ClientError> {
        let credential = self.active_credential().await?;
        self.exchange(&credential, org, ACCESS_TOKEN_TYPE).await
    }

    /// Trades `credential` (RFC 8693) for a credential of type `requested` that acts for `org`.
    pub async fn exchange(
        &self,
        credential: &Credential,
        org: &str,
        requested: &str,
    ) -> Result<TokenResponse, ClientError> {
        self.exchange_subject(credential.secret.bearer(), Some(org), requested)
            .await
    }

    /// Trades any subject token (RFC 8693) for a credential of type `requested`: one of this
    /// server's (an access token or an API key; `org` names the org it is for), or a CI job's
    /// OIDC token that the server trusts (keyless CI; the trust names the org, so `org` may be
    /// left out). The subject's type is told by its format.
    pub async fn exchange_subject(
        &self,
        subject: &str,
        org: Option<&str>,
        requested: &str,
    ) -> Result<TokenResponse, ClientError> {
        let subject_type = if latchkey_proto::jws::looks_like_jwt(subject) {
            JWT_TOKEN_TYPE
        } else {
            API_KEY_TOKEN_TYPE
        };
        let scope = org.map(|org| format!("org:{org}"));
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", self.settings().client_id.as_str()),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
            ("requested_token_type", requested),
        ];
        if let Some(scope) = &scope {
            form.push(("scope", scope));
        }
        self.api.token(&form).await
    }

    /// Makes a credential for `org` (slug or id) the active one: the one stored for this
    /// person and org, or else one traded for the active credential (RFC 8693) and stored
    /// beside it, under the person's user id and the org: for a login, its tokens for the org
    /// (they refresh, and end with the login); for an API key, an API key in the org. `None`:
    /// the stored one was activated; otherwise the new login.
    pub async fn use_org(&self, org: &str) -> Result<Option<LoginOutcome>, ClientError> {
        let credential = self.active_credential().await?;
        let Some(account) = &credential.account else {
            return Err(ClientError::Config(
                "the credential in force comes from the environment: log in to keep credentials \
                 for several orgs"
                    .into(),
            ));
        };
        let stored: Option<StoredAccount> = self
            .accounts()?
            .into_iter()
            .find(|a| a.user_id == account.user_id && a.org == org && a.refused_at.is_none());
        if let Some(stored) = stored {
            self.storage.activate(&stored)?;
            return Ok(None);
        }
        let requested = match credential.secret {
            Secret::Oauth(_) => ACCESS_TOKEN_TYPE,
            Secret::ApiKey { .. } => API_KEY_TOKEN_TYPE,
        };
        let exchanged = self.exchange(&credential, org, requested).await?;
        self.store_exchanged(exchanged).await.map(Some)
    }

    /// Logs in by trading `subject` (RFC 8693; see [`Client::exchange_subject`]) instead of
    /// opening a browser, and stores what comes back: for an API key, an API key in `org`; for
    /// an access token, an access token (with a refresh token when the subject was a login's);
    /// for a CI job's token, the short-lived access token its trust grants.
    pub async fn login_with_subject_token(
        &self,
        subject: &str,
        org: Option<&str>,
    ) -> Result<LoginOutcome, ClientError> {
        let subject = subject.trim();
        if subject.is_empty() {
            return Err(ClientError::Config("the subject token is empty".into()));
        }
        let requested = if latchkey_proto::jws::looks_like_jwt(subject) {
            ACCESS_TOKEN_TYPE
        } else if org.is_some() {
            API_KEY_TOKEN_TYPE
        } else {
            return Err(ClientError::Config(
                "an API key is exchanged for one in another org: name it with --org (to log in \
                 with the key itself, use --with-token)"
                    .into(),
            ));
        };
        let exchanged = self.exchange_subject(subject, org, requested).await?;
        self.store_exchanged(exchanged).await
    }

    /// Checks and stores an exchange's result as the active login.
    async fn store_exchanged(&self, exchanged: TokenResponse) -> Result<LoginOutcome, ClientError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let secret = if exchanged.issued_token_type.as_deref() == Some(API_KEY_TOKEN_TYPE) {
            Secret::ApiKey {
                api_key: exchanged.access_token,
            }
        } else {
            Secret::Oauth(TokenSet::from_response(exchanged, unix_now()))
        };
        self.finish_login(secret, deadline).await
    }

    /// Leaves `org` (never the personal org; an org keeps an owner).
    pub async fn leave_org(&self, org: &str) -> Result<(), ClientError> {
        let bearer = self.bearer().await?;
        let me = self.whoami(&bearer).await?;
        self.api.remove_org_member(&bearer, org, &me.user_id).await
    }
}
