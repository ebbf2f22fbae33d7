//! Orgs in the browser: `/invitations/accept` (a person opens the link an invitation mailed
//! them, signs in or up with the invited address, and joins), and `/orgs/{org}`, the org page
//! (members; for admins and owners the invitations and an invite form; leaving). Every rule is
//! the core's, as for the JSON API.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use latchkey_core::org::{OrgAction, Role, authorize};
use latchkey_proto::InvitationToken;
use serde::Deserialize;

use super::{
    PageError,
    account::{CsrfForm, SignedInOrRedirect},
    page,
};
use crate::{
    AppState,
    extract::{Csrf, Form},
};

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage<'a> {
    csrf: &'a str,
    token: &'a str,
    org_name: &'a str,
    org_slug: &'a str,
    role: &'a str,
    email: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct InvitationQuery {
    token: String,
}

pub async fn invitation_page(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Query(q): Query<InvitationQuery>,
) -> Result<Response, PageError> {
    let token = InvitationToken::from_presented(q.token);
    let (invitation, org) = state.service.invitation(&token).await?;
    if invitation.email != user.email {
        // Said now, not after the click: the person must sign in with the invited address.
        return Err(latchkey_core::org::OrgError::InvitationForSomeoneElse {
            email: invitation.email,
            signed_in: user.email,
        }
        .into());
    }
    Ok(page(
        &InvitationPage {
            csrf: &csrf.token,
            token: token.expose_secret(),
            org_name: &org.name,
            org_slug: &org.slug,
            role: invitation.role.as_str(),
            email: &invitation.email,
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct AcceptForm {
    csrf: String,
    token: String,
}

pub async fn accept(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<AcceptForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let token = InvitationToken::from_presented(form.token);
    state.service.accept_invitation(&user, &token).await?;
    Ok(Redirect::to("/account").into_response())
}

/// A member as the org page lists them.
struct MemberRow {
    user_id: String,
    email: String,
    role: &'static str,
    joined: String,
    /// Whether the viewer may remove them (never themselves here: that is "Leave").
    manageable: bool,
}

struct InvitationRow {
    id: String,
    email: String,
    role: &'static str,
    expires: String,
}

#[derive(Template)]
#[template(path = "org.html")]
struct OrgPage<'a> {
    csrf: &'a str,
    user_id: &'a str,
    slug: &'a str,
    org_name: &'a str,
    role: &'a str,
    personal: bool,
    may_invite: bool,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    /// "pro (active, renews 2027-01-31)".
    plan: String,
    /// Where to subscribe, while the subscription grants nothing.
    subscribe_url: Option<String>,
    /// Each tier with a link of its own: (tier, link).
    tier_links: Vec<(String, String)>,
    /// Where owners and admins manage billing, once the org has a subscription.
    manage_url: Option<String>,
}

/// `/orgs/{org}`: the members, and for admins and owners the invitations and an invite form.
pub async fn org_page(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path(org): Path<String>,
) -> Result<Response, PageError> {
    let (membership, members) = state.service.org_members(&user, &org).await?;
    let may = |action| authorize(&membership.org.slug, membership.role, action).is_ok();
    let may_invite = !membership.personal && may(OrgAction::Invite(Role::Member));
    let invitations = if may_invite {
        state.service.org_invitations(&user, &org).await?
    } else {
        Vec::new()
    };
    let members = members
        .into_iter()
        .map(|m| MemberRow {
            manageable: m.user_id != user.id && may(OrgAction::Remove(m.role)),
            user_id: m.user_id,
            email: m.email,
            role: m.role.as_str(),
            joined: m.joined_at.date().to_string(),
        })
        .collect();
    let subscription = state
        .service
        .subscription_info(&membership.org.id)
        .await
        .map_err(latchkey_core::org::OrgError::from)?;
    let renewal = subscription
        .current_period_end
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|t| format!(", until {}", t.date()))
        .unwrap_or_default();
    let plan = format!(
        "{} ({}{renewal})",
        subscription.tier,
        subscription.status.replace('_', " ")
    );
    let manage_url = state
        .service
        .policy()
        .plans
        .manage_url
        .clone()
        .filter(|_| subscription.status != "none" && may(OrgAction::Invite(Role::Member)));
    let tier_links = state
        .service
        .policy()
        .plans
        .tier_subscribe_urls(&membership.org.id)
        .into_iter()
        .filter(|(tier, _)| *tier != subscription.tier)
        .collect();
    let subscribe_url = subscription
        .subscribe_url
        .filter(|_| subscription.entitlements.is_empty());
    let invitations = invitations
        .into_iter()
        .map(|i| InvitationRow {
            id: i.id,
            email: i.email,
            role: i.role.as_str(),
            expires: i.expires_at.date().to_string(),
        })
        .collect();
    Ok(page(
        &OrgPage {
            csrf: &csrf.token,
            user_id: &user.id,
            slug: &membership.org.slug,
            org_name: &membership.org.name,
            role: membership.role.as_str(),
            personal: membership.personal,
            may_invite,
            members,
            invitations,
            plan,
            subscribe_url,
            tier_links,
            manage_url,
        },
        Some(&csrf),
    ))
}

#[derive(Deserialize)]
pub struct NewOrgForm {
    csrf: String,
    slug: String,
    name: Option<String>,
}

/// `POST /orgs` from the account page: a new org, then its page.
pub async fn create_org(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<NewOrgForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let name = form.name.as_deref().filter(|n| !n.trim().is_empty());
    let created = state.service.create_org(&user, &form.slug, name).await?;
    Ok(Redirect::to(&format!("/orgs/{}", created.org.slug)).into_response())
}

#[derive(Deserialize)]
pub struct InviteForm {
    csrf: String,
    email: String,
    role: String,
}

pub async fn invite(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path(org): Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let role = Role::parse(&form.role)?;
    state.service.invite(&user, &org, &form.email, role).await?;
    Ok(Redirect::to(&format!("/orgs/{org}")).into_response())
}

pub async fn revoke_invitation(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path((org, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state.service.revoke_invitation(&user, &org, &id).await?;
    Ok(Redirect::to(&format!("/orgs/{org}")).into_response())
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path((org, member_id)): Path<(String, String)>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let role = Role::parse(&form.role)?;
    state
        .service
        .change_member_role(&user, &org, &member_id, role)
        .await?;
    Ok(Redirect::to(&format!("/orgs/{org}")).into_response())
}

/// Removes a member, or (one's own id) leaves the org.
pub async fn remove_member(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path((org, member_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state.service.remove_member(&user, &org, &member_id).await?;
    let next = if member_id == user.id {
        "/account".to_owned()
    } else {
        format!("/orgs/{org}")
    };
    Ok(Redirect::to(&next).into_response())
}
