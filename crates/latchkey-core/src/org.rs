//! Organizations: who may do what in one (the role model), and what makes a valid org. Pure:
//! the service asks these rules before it touches the store, so every door (the JSON API, the
//! pages, the CLI) refuses the same things with the same words.
//!
//! Roles: an `owner` may do everything, including deleting the org and making owners; an
//! `admin` manages the people (invites, removes and re-roles members and admins, never owners);
//! a `member` uses the org's credentials and sees who else is in it. An org always keeps an
//! owner, and a person's personal org (made with the account) is theirs alone: it cannot be
//! left, shared away or deleted.

use std::{fmt, time::Duration};

use latchkey_proto::{InvitationToken, scope};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::{
    Mail, MailError, Service,
    account::Email,
    console::AuditKind,
    new_id,
    store::{InvitationRecord, MemberRecord, Membership, MembershipChange, Org, StoreError, User},
    throttle::Throttled,
};

/// How long an invitation link works.
const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The scope a key limited to scopes needs to manage orgs.
pub const MANAGE_ORGS_SCOPE: &str = "orgs";

/// A person's role in an org, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, OrgError> {
        match raw {
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            other => Err(OrgError::InvalidRole(other.to_owned())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds an access token, in the org it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHolder {
    /// A client acting for itself: no person, no role.
    Client,
    Member(Role),
    /// The person has left the org since the token was issued.
    Left,
}

/// Something a member asks to do in an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// See the org, its members and its invitations.
    View,
    Rename,
    Delete,
    /// Invite someone with this role (or resend, revoke invitations).
    Invite(Role),
    /// Change the role of a member holding `from` to `to`.
    ChangeRole {
        from: Role,
        to: Role,
    },
    /// Remove a member holding this role.
    Remove(Role),
    /// Read the org's audit log.
    ReadAudit,
    /// Require (or stop requiring) a second factor of the members.
    RequireSecondFactor,
}

#[derive(Debug, Error)]
pub enum OrgError {
    #[error("\u{201c}{0}\u{201d} is not a role: use owner, admin or member")]
    InvalidRole(String),
    #[error(
        "an org's slug is 3 to 39 lowercase letters, digits and single hyphens, starting with a \
         letter (like acme-tools)"
    )]
    InvalidSlug,
    #[error("an org's name is 1 to 100 characters, without control characters")]
    InvalidName,
    #[error("there is no org \u{201c}{0}\u{201d} that you belong to")]
    NotFound(String),
    #[error("the slug \u{201c}{0}\u{201d} is taken; choose another")]
    SlugTaken(String),
    #[error("as {held} of {org} you cannot {what}; ask an {needed}")]
    Forbidden {
        org: String,
        held: Role,
        needed: Role,
        what: &'static str,
    },
    #[error("{org} is your personal org: it cannot be {what}")]
    Personal { org: String, what: &'static str },
    #[error("{org} needs an owner: make someone else owner first")]
    LastOwner { org: String },
    #[error(
        "{org} requires two-factor authentication: turn it on on your account's security page \
         (/account/security), then try again"
    )]
    SecondFactorRequired { org: String },
    #[error("{0} is not a member of this org")]
    NotAMember(String),
    #[error("confirm your email address first")]
    EmailNotVerified,
    #[error("\u{201c}{0}\u{201d} is not an email address")]
    InvalidEmail(String),
    #[error("{0} is already a member of this org")]
    AlreadyAMember(String),
    #[error("there is no invitation {0} pending in this org")]
    NoSuchInvitation(String),
    #[error(
        "this invitation is not valid: it was already used, revoked, replaced by a newer one, or \
         has expired; ask for a new one"
    )]
    InvalidInvitation,
    #[error(
        "this invitation is for {email}; sign in with that address to accept it (you are \
         signed in as {signed_in})"
    )]
    InvitationForSomeoneElse { email: String, signed_in: String },
    #[error("too many emails were sent to this address; try again in {}", .0.retry_after_in_words())]
    Throttled(Throttled),
    #[error("sending the invitation failed")]
    Mail(#[from] MailError),
    #[error("this key is limited to \u{201c}{held}\u{201d}; managing orgs needs the orgs scope")]
    BeyondKeyScope { held: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OrgAction {
    /// What the action is, in the words of a refusal ("you cannot …").
    fn described(self) -> &'static str {
        match self {
            Self::View => "see it",
            Self::Rename => "rename it",
            Self::Delete => "delete it",
            Self::Invite(Role::Owner) => "invite owners",
            Self::Invite(_) => "invite people",
            Self::ChangeRole { .. } => "change that role",
            Self::Remove(_) => "remove that member",
            Self::ReadAudit => "read its audit log",
            Self::RequireSecondFactor => "change its two-factor rule",
        }
    }

    /// The weakest role allowed to do this.
    fn needs(self) -> Role {
        match self {
            Self::View => Role::Member,
            Self::Rename | Self::Delete | Self::RequireSecondFactor => Role::Owner,
            // Only owners touch owners: making one, unmaking one, removing one.
            Self::Invite(Role::Owner)
            | Self::ChangeRole {
                from: Role::Owner, ..
            }
            | Self::ChangeRole {
                to: Role::Owner, ..
            }
            | Self::Remove(Role::Owner) => Role::Owner,
            Self::Invite(_) | Self::ChangeRole { .. } | Self::Remove(_) | Self::ReadAudit => {
                Role::Admin
            }
        }
    }
}

/// Whether `held` may do `action` in `org` (its slug, for the message).
pub fn authorize(org: &str, held: Role, action: OrgAction) -> Result<(), OrgError> {
    let needed = action.needs();
    if held >= needed {
        Ok(())
    } else {
        Err(OrgError::Forbidden {
            org: org.to_owned(),
            held,
            needed,
            what: action.described(),
        })
    }
}

/// A slug as people type it, checked: lowercase, 3 to 39 characters, letters, digits and single
/// hyphens, starting with a letter, not ending with a hyphen (it goes into URLs and scopes,
/// `org:<slug>`).
pub fn parse_slug(raw: &str) -> Result<String, OrgError> {
    let slug = raw.trim();
    let ok = (3..=39).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && !slug.ends_with('-')
        && !slug.contains("--")
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(slug.to_owned())
    } else {
        Err(OrgError::InvalidSlug)
    }
}

/// An org's display name, trimmed.
pub fn parse_name(raw: &str) -> Result<String, OrgError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        Err(OrgError::InvalidName)
    } else {
        Ok(name.to_owned())
    }
}

/// Whether a caller limited to `held` (`None`: not limited) may use the org API.
pub fn may_manage_orgs(held: Option<&str>) -> Result<(), OrgError> {
    match held {
        Some(held) if !scope::allows(Some(held), MANAGE_ORGS_SCOPE) => {
            Err(OrgError::BeyondKeyScope {
                held: held.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

impl Service {
    /// Who holds an access token, as the org it acts for sees them. A token a client got for
    /// itself (`client_credentials`, keyless CI) has no person; a person who has left the org
    /// is refused by the issuer at once (a gate verifying the token alone keeps it to its
    /// expiry). `holder` is the token's person when the caller has already loaded them: their
    /// personal org needs no lookup, since it cannot be left.
    pub async fn token_holder(
        &self,
        claims: &latchkey_proto::oauth::AccessTokenClaims,
        holder: Option<&User>,
    ) -> Result<TokenHolder, StoreError> {
        if claims.sub == claims.client_id {
            return Ok(TokenHolder::Client);
        }
        if holder.is_some_and(|u| u.id == claims.sub && u.org.id == claims.org_id) {
            return Ok(TokenHolder::Member(Role::Owner));
        }
        Ok(self
            .member_role(&claims.sub, &claims.org_id)
            .await?
            .map_or(TokenHolder::Left, TokenHolder::Member))
    }

    /// `user_id`'s role in the org `org_id`, if a member.
    pub async fn member_role(
        &self,
        user_id: &str,
        org_id: &str,
    ) -> Result<Option<Role>, StoreError> {
        Ok(self
            .inner
            .store
            .membership(user_id, org_id)
            .await?
            .map(|m| m.role))
    }

    /// The orgs `user` belongs to, the personal org first.
    pub async fn orgs(&self, user: &User) -> Result<Vec<Membership>, OrgError> {
        Ok(self.inner.store.memberships(&user.id).await?)
    }

    /// A new org (`slug`, and `name`, the slug when none), owned by `user`.
    pub async fn create_org(
        &self,
        user: &User,
        slug: &str,
        name: Option<&str>,
    ) -> Result<Membership, OrgError> {
        let slug = parse_slug(slug)?;
        let name = parse_name(name.unwrap_or(&slug))?;
        if !user.email_verified {
            return Err(OrgError::EmailNotVerified);
        }
        let org = Org {
            id: new_id("org"),
            slug,
            name,
        };
        match self
            .inner
            .store
            .create_org(&org, &user.id, self.now())
            .await
        {
            Err(StoreError::Conflict(_)) => return Err(OrgError::SlugTaken(org.slug)),
            other => other?,
        }
        Ok(Membership {
            org,
            role: Role::Owner,
            personal: false,
            requires_second_factor: false,
        })
    }

    /// `user`'s membership in `org` (its id or slug), if `user` may do `action` there. An org
    /// the person is not in is "not found", never "forbidden": which orgs exist is not said.
    pub async fn org_for(
        &self,
        user: &User,
        org: &str,
        action: OrgAction,
    ) -> Result<Membership, OrgError> {
        let membership = self
            .inner
            .store
            .membership(&user.id, org)
            .await?
            .ok_or_else(|| OrgError::NotFound(org.to_owned()))?;
        authorize(&membership.org.slug, membership.role, action)?;
        self.second_factor_rule(user, &membership).await?;
        Ok(membership)
    }

    /// An org that requires a second factor admits only members who have one, whatever they
    /// do in it (its pages and API, keys and tokens for it).
    pub(crate) async fn second_factor_rule(
        &self,
        user: &User,
        membership: &Membership,
    ) -> Result<(), OrgError> {
        if !membership.requires_second_factor || self.has_second_factor(user).await? {
            return Ok(());
        }
        Err(OrgError::SecondFactorRequired {
            org: membership.org.slug.clone(),
        })
    }

    /// Makes the org require a second factor of its members, or stop (owners; never a personal
    /// org). An owner without one cannot require it: they would lock themselves out.
    pub async fn require_second_factor(
        &self,
        user: &User,
        org: &str,
        required: bool,
    ) -> Result<Membership, OrgError> {
        let membership = self
            .org_for(user, org, OrgAction::RequireSecondFactor)
            .await?;
        if membership.personal {
            return Err(OrgError::Personal {
                org: membership.org.slug,
                what: "given a two-factor rule",
            });
        }
        if required && !self.has_second_factor(user).await? {
            return Err(OrgError::SecondFactorRequired {
                org: membership.org.slug,
            });
        }
        self.inner
            .store
            .set_org_requires_second_factor(&membership.org.id, required)
            .await?;
        let detail = format!(
            "{} {} a second factor of its members",
            membership.org.slug,
            if required {
                "requires"
            } else {
                "no longer requires"
            }
        );
        let org_id = Some(membership.org.id.as_str());
        self.audit(
            AuditKind::OrgSecondFactorRequired,
            Some(&user.id),
            org_id,
            None,
            &detail,
        )
        .await?;
        Ok(membership)
    }

    pub async fn rename_org(
        &self,
        user: &User,
        org: &str,
        name: &str,
    ) -> Result<Membership, OrgError> {
        let name = parse_name(name)?;
        let mut membership = self.org_for(user, org, OrgAction::Rename).await?;
        self.inner
            .store
            .rename_org(&membership.org.id, &name)
            .await?;
        membership.org.name = name;
        Ok(membership)
    }

    /// Deletes the org with every API key in it (owners only; never a personal org).
    pub async fn delete_org(&self, user: &User, org: &str) -> Result<(), OrgError> {
        let membership = self.org_for(user, org, OrgAction::Delete).await?;
        if membership.personal {
            return Err(OrgError::Personal {
                org: membership.org.slug,
                what: "deleted",
            });
        }
        let revoked = self
            .inner
            .store
            .delete_org(&membership.org.id, self.now())
            .await?;
        revoked.iter().for_each(|h| self.inner.keys.forget(h));
        Ok(())
    }

    pub async fn org_members(
        &self,
        user: &User,
        org: &str,
    ) -> Result<(Membership, Vec<MemberRecord>), OrgError> {
        let membership = self.org_for(user, org, OrgAction::View).await?;
        let members = self.inner.store.org_members(&membership.org.id).await?;
        Ok((membership, members))
    }

    /// The role of `member_id` in `org`, as `user` sees it (both must be members).
    async fn role_in(&self, membership: &Membership, member_id: &str) -> Result<Role, OrgError> {
        self.inner
            .store
            .membership(member_id, &membership.org.id)
            .await?
            .map(|m| m.role)
            .ok_or_else(|| OrgError::NotAMember(member_id.to_owned()))
    }

    /// Gives `member_id` the role `role` (ownership is handed over by making someone owner,
    /// then stepping down).
    pub async fn change_member_role(
        &self,
        user: &User,
        org: &str,
        member_id: &str,
        role: Role,
    ) -> Result<(), OrgError> {
        let membership = self.org_for(user, org, OrgAction::View).await?;
        let from = self.role_in(&membership, member_id).await?;
        authorize(
            &membership.org.slug,
            membership.role,
            OrgAction::ChangeRole { from, to: role },
        )?;
        let changed = self
            .inner
            .store
            .set_member_role(&membership.org.id, member_id, role)
            .await?;
        self.membership_changed(&membership, member_id, changed)
    }

    /// Removes `member_id` from `org`, or, when it is `user`, leaves it. Their API keys in the
    /// org stop working at once.
    pub async fn remove_member(
        &self,
        user: &User,
        org: &str,
        member_id: &str,
    ) -> Result<(), OrgError> {
        let membership = self.org_for(user, org, OrgAction::View).await?;
        if membership.personal {
            return Err(OrgError::Personal {
                org: membership.org.slug,
                what: "left or shared",
            });
        }
        if member_id != user.id {
            let role = self.role_in(&membership, member_id).await?;
            authorize(
                &membership.org.slug,
                membership.role,
                OrgAction::Remove(role),
            )?;
        }
        let (changed, revoked) = self
            .inner
            .store
            .remove_member(&membership.org.id, member_id, self.now())
            .await?;
        revoked.iter().for_each(|h| self.inner.keys.forget(h));
        if changed == MembershipChange::Done {
            let detail = format!("{member_id} left {} (by {})", membership.org.slug, user.id);
            let org = Some(membership.org.id.as_str());
            self.audit(
                AuditKind::MemberRemoved,
                Some(member_id),
                org,
                None,
                &detail,
            )
            .await?;
        }
        self.membership_changed(&membership, member_id, changed)
    }

    /// Invites `email` to `org` with `role` (admins and owners; owners only for owners): a
    /// link, mailed, that a verified account with that address accepts within 7 days.
    /// Inviting the address again replaces the pending invitation (a resend).
    pub async fn invite(
        &self,
        user: &User,
        org: &str,
        email: &str,
        role: Role,
    ) -> Result<InvitationRecord, OrgError> {
        let membership = self.org_for(user, org, OrgAction::Invite(role)).await?;
        if membership.personal {
            return Err(OrgError::Personal {
                org: membership.org.slug,
                what: "left or shared",
            });
        }
        let email = Email::parse(email).map_err(|_| OrgError::InvalidEmail(email.to_owned()))?;
        let members = self.inner.store.org_members(&membership.org.id).await?;
        if members.iter().any(|m| m.email == email.as_str()) {
            return Err(OrgError::AlreadyAMember(email.as_str().to_owned()));
        }
        self.throttle_mail(email.as_str(), None)
            .await?
            .map_err(OrgError::Throttled)?;
        let token = InvitationToken::generate(&mut OsRng);
        let now = self.now();
        let invitation = InvitationRecord {
            id: new_id("inv"),
            org_id: membership.org.id.clone(),
            email: email.as_str().to_owned(),
            role,
            token_hash: token.hash(),
            invited_by: user.id.clone(),
            created_at: now,
            expires_at: now + INVITATION_TTL,
        };
        self.inner.store.replace_invitation(&invitation).await?;
        let host = &self.inner.policy.public_url;
        let text = format!(
            "{} invites you to join the org {} ({}) on {host} as {role}.\n\nAccept within 7 days: \
             {host}/invitations/accept?token={}\n\nSign in (or sign up) with this address, {}, \
             to accept. If you did not expect this, ignore this mail.\n",
            user.email,
            membership.org.name,
            membership.org.slug,
            token.expose_secret(),
            email.as_str(),
        );
        self.inner
            .mailer
            .send(Mail {
                to: email.as_str().to_owned(),
                subject: format!("Join {} on latchkey", membership.org.name),
                text,
            })
            .await?;
        Ok(invitation)
    }

    /// The org's pending invitations (admins and owners).
    pub async fn org_invitations(
        &self,
        user: &User,
        org: &str,
    ) -> Result<Vec<InvitationRecord>, OrgError> {
        let membership = self
            .org_for(user, org, OrgAction::Invite(Role::Member))
            .await?;
        Ok(self
            .inner
            .store
            .invitations(&membership.org.id, self.now())
            .await?)
    }

    /// Revokes a pending invitation (admins and owners; owners only for an owner's): its link
    /// stops working.
    pub async fn revoke_invitation(
        &self,
        user: &User,
        org: &str,
        invitation_id: &str,
    ) -> Result<(), OrgError> {
        let invitations = self.org_invitations(user, org).await?;
        let invitation = invitations
            .iter()
            .find(|i| i.id == invitation_id)
            .ok_or_else(|| OrgError::NoSuchInvitation(invitation_id.to_owned()))?;
        let membership = self
            .org_for(user, org, OrgAction::Invite(invitation.role))
            .await?;
        if self
            .inner
            .store
            .delete_invitation(&membership.org.id, invitation_id)
            .await?
        {
            Ok(())
        } else {
            Err(OrgError::NoSuchInvitation(invitation_id.to_owned()))
        }
    }

    /// The invitation a link's token names, and its org, while it can be accepted.
    pub async fn invitation(
        &self,
        token: &InvitationToken,
    ) -> Result<(InvitationRecord, Org), OrgError> {
        self.inner
            .store
            .invitation(&token.hash(), self.now())
            .await?
            .ok_or(OrgError::InvalidInvitation)
    }

    /// `user` accepts the invitation: only a verified account with the invited address may.
    /// The link is spent.
    pub async fn accept_invitation(
        &self,
        user: &User,
        token: &InvitationToken,
    ) -> Result<Org, OrgError> {
        let (invitation, org) = self.invitation(token).await?;
        if !user.email_verified {
            return Err(OrgError::EmailNotVerified);
        }
        if user.email != invitation.email {
            return Err(OrgError::InvitationForSomeoneElse {
                email: invitation.email,
                signed_in: user.email.clone(),
            });
        }
        if !self
            .inner
            .store
            .accept_invitation(&invitation, &user.id, self.now())
            .await?
        {
            return Err(OrgError::InvalidInvitation);
        }
        let detail = format!(
            "{} joined {} as {} (invited by {})",
            user.email, org.slug, invitation.role, invitation.invited_by
        );
        self.audit(
            AuditKind::MemberAdded,
            Some(&user.id),
            Some(&org.id),
            None,
            &detail,
        )
        .await?;
        Ok(org)
    }

    fn membership_changed(
        &self,
        membership: &Membership,
        member_id: &str,
        changed: MembershipChange,
    ) -> Result<(), OrgError> {
        match changed {
            MembershipChange::Done => Ok(()),
            MembershipChange::NotAMember => Err(OrgError::NotAMember(member_id.to_owned())),
            MembershipChange::LastOwner => Err(OrgError::LastOwner {
                org: membership.org.slug.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_do_everything_admins_manage_people_below_owner_members_look() {
        use OrgAction as A;
        use Role::{Admin, Member, Owner};
        let every = [
            A::View,
            A::Rename,
            A::Delete,
            A::Invite(Member),
            A::Invite(Admin),
            A::Invite(Owner),
            A::ChangeRole {
                from: Member,
                to: Admin,
            },
            A::ChangeRole {
                from: Admin,
                to: Member,
            },
            A::ChangeRole {
                from: Member,
                to: Owner,
            },
            A::ChangeRole {
                from: Owner,
                to: Admin,
            },
            A::Remove(Member),
            A::Remove(Admin),
            A::Remove(Owner),
        ];
        for action in every {
            assert!(authorize("acme", Owner, action).is_ok(), "{action:?}");
        }
        let admin_may = [
            A::View,
            A::Invite(Member),
            A::Invite(Admin),
            A::ChangeRole {
                from: Member,
                to: Admin,
            },
            A::ChangeRole {
                from: Admin,
                to: Member,
            },
            A::Remove(Member),
            A::Remove(Admin),
        ];
        for action in every {
            assert_eq!(
                authorize("acme", Admin, action).is_ok(),
                admin_may.contains(&action),
                "{action:?}"
            );
            assert_eq!(
                authorize("acme", Member, action).is_ok(),
                action == A::View,
                "{action:?}"
            );
        }
        assert_eq!(
            authorize("acme", Admin, A::Delete)
                .expect_err("refused")
                .to_string(),
            "as admin of acme you cannot delete it; ask an owner"
        );
    }

    #[test]
    fn slugs_are_lowercase_words_with_single_hyphens() {
        for good in ["acme", "acme-tools", "a1b", "team-42-x"] {
            assert_eq!(parse_slug(good).ok().as_deref(), Some(good));
        }
        assert_eq!(parse_slug("  acme ").ok().as_deref(), Some("acme"));
        for bad in [
            "",
            "ab",
            "Acme",
            "1acme",
            "-acme",
            "acme-",
            "ac--me",
            "acme_tools",
            "acmé",
            "ac me",
            "a/b",
            &"a".repeat(40),
        ] {
            assert!(
                matches!(parse_slug(bad), Err(OrgError::InvalidSlug)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roles_and_names_are_checked() {
        assert_eq!(Role::parse("admin").ok(), Some(Role::Admin));
        assert!(matches!(
            Role::parse("Admin"),
            Err(OrgError::InvalidRole(_))
        ));
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Member);
        assert_eq!(
            parse_name("  Acme Tools ").ok().as_deref(),
            Some("Acme Tools")
        );
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(101)] {
            assert!(
                matches!(parse_name(bad), Err(OrgError::InvalidName)),
                "{bad:?}"
            );
        }
    }
}
