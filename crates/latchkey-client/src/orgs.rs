//! The logged-in person's organizations: list them, create one, invite people, see the
//! members, leave.

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
    storage::{Secret, StoredAccount},
};

/// RFC 8693 token exchange.
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const API_KEY_TOKEN_TYPE: &str = "urn:latchkey:params:oauth:token-type:api_key";

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
        let subject_type = match &credential.secret {
            Secret::ApiKey { .. } => API_KEY_TOKEN_TYPE,
            Secret::Oauth(_) => ACCESS_TOKEN_TYPE,
        };
        let scope = format!("org:{org}");
        self.api
            .token(&[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("client_id", &self.settings().client_id),
                ("subject_token", credential.secret.bearer()),
                ("subject_token_type", subject_type),
                ("requested_token_type", requested),
                ("scope", &scope),
            ])
            .await
    }

    /// Makes a credential for `org` (slug or id) the active one: the one stored for this
    /// person and org, or else an API key in that org traded for the active credential (RFC
    /// 8693) and stored beside it, under the person's user id and the org. `None`: the stored
    /// one was activated; otherwise the new login.
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
        let key = self.exchange(&credential, org, API_KEY_TOKEN_TYPE).await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let secret = Secret::ApiKey {
            api_key: key.access_token,
        };
        self.finish_login(secret, deadline).await.map(Some)
    }

    /// Leaves `org` (never the personal org; an org keeps an owner).
    pub async fn leave_org(&self, org: &str) -> Result<(), ClientError> {
        let bearer = self.bearer().await?;
        let me = self.whoami(&bearer).await?;
        self.api.remove_org_member(&bearer, org, &me.user_id).await
    }
}
