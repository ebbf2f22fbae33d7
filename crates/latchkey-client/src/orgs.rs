//! The logged-in person's organizations: list them, create one, invite people, see the
//! members, leave.

use latchkey_proto::wire::{
    InvitationCreateRequest, InvitationInfo, MeResponse, MemberListResponse, OrgCreateRequest,
    OrgMembershipInfo,
};

use crate::{Client, ClientError};

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

    /// Leaves `org` (never the personal org; an org keeps an owner).
    pub async fn leave_org(&self, org: &str) -> Result<(), ClientError> {
        let bearer = self.bearer().await?;
        let me = self.whoami(&bearer).await?;
        self.api.remove_org_member(&bearer, org, &me.user_id).await
    }
}
