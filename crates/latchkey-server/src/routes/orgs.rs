//! `/v1/orgs`: the caller's organizations, their members and roles. Every rule (who may do
//! what, the last owner, the personal org) is the core's; these handlers parse, call it and
//! answer.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use latchkey_core::{
    org::{OrgAction, Role, may_manage_orgs},
    store::{InvitationRecord, MemberRecord, Membership},
};
use latchkey_proto::{
    ErrorBody,
    wire::{
        InvitationCreateRequest, InvitationInfo, InvitationListResponse, MemberInfo,
        MemberListResponse, MemberUpdateRequest, OrgCreateRequest, OrgListResponse,
        OrgMembershipInfo, OrgUpdateRequest,
    },
};

use crate::{
    AppState,
    error::AppError,
    extract::{Caller, Json},
};

pub(crate) fn org_info(m: Membership) -> OrgMembershipInfo {
    OrgMembershipInfo {
        id: m.org.id,
        slug: m.org.slug,
        name: m.org.name,
        role: m.role.as_str().to_owned(),
        personal: m.personal,
    }
}

fn member_info(m: MemberRecord) -> MemberInfo {
    MemberInfo {
        user_id: m.user_id,
        email: m.email,
        name: m.name,
        role: m.role.as_str().to_owned(),
        joined_at: m.joined_at.unix_timestamp(),
    }
}

fn invitation_info(i: InvitationRecord) -> InvitationInfo {
    InvitationInfo {
        id: i.id,
        email: i.email,
        role: i.role.as_str().to_owned(),
        invited_by: i.invited_by,
        created_at: i.created_at.unix_timestamp(),
        expires_at: i.expires_at.unix_timestamp(),
    }
}

#[utoipa::path(get, path = "/v1/orgs", operation_id = "list_orgs", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's orgs, the personal one first", body = OrgListResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key limited to scopes without orgs", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<OrgListResponse>, AppError> {
    may_manage_orgs(caller.key_scope())?;
    let orgs = state.service.orgs(&caller.user).await?;
    Ok(Json(OrgListResponse {
        orgs: orgs.into_iter().map(org_info).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/orgs", operation_id = "create_org", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    request_body = OrgCreateRequest,
    responses(
        (status = 201, description = "The new org; the caller is its owner", body = OrgMembershipInfo),
        (status = 400, description = "A bad slug or name", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "An unverified email, or a key without the orgs scope", body = ErrorBody),
        (status = 409, description = "The slug is taken", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<OrgCreateRequest>,
) -> Result<(StatusCode, Json<OrgMembershipInfo>), AppError> {
    may_manage_orgs(caller.key_scope())?;
    let created = state
        .service
        .create_org(&caller.user, &request.slug, request.name.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(org_info(created))))
}

#[utoipa::path(get, path = "/v1/orgs/{org}", operation_id = "get_org", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    responses(
        (status = 200, description = "The org and the caller's role in it", body = OrgMembershipInfo),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<OrgMembershipInfo>, AppError> {
    may_manage_orgs(caller.key_scope())?;
    let membership = state
        .service
        .org_for(&caller.user, &org, OrgAction::View)
        .await?;
    Ok(Json(org_info(membership)))
}

#[utoipa::path(patch, path = "/v1/orgs/{org}", operation_id = "rename_org", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    request_body = OrgUpdateRequest,
    responses(
        (status = 200, description = "Renamed, or its two-factor rule changed", body = OrgMembershipInfo),
        (status = 400, description = "A bad name, or nothing to change", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an owner, a key without the orgs scope, a personal org's two-factor rule, or requiring a second factor without one", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Json(request): Json<OrgUpdateRequest>,
) -> Result<Json<OrgMembershipInfo>, AppError> {
    may_manage_orgs(caller.key_scope())?;
    if request.name.is_none() && request.require_second_factor.is_none() {
        return Err(AppError::bad_request(
            "Send the org's new name, require_second_factor, or both.",
        ));
    }
    let mut changed = None;
    if let Some(required) = request.require_second_factor {
        changed = Some(
            state
                .service
                .require_second_factor(&caller.user, &org, required)
                .await?,
        );
    }
    if let Some(name) = &request.name {
        changed = Some(state.service.rename_org(&caller.user, &org, name).await?);
    }
    changed
        .map(|membership| Json(org_info(membership)))
        .ok_or_else(|| AppError::bad_request("Nothing to change."))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}", operation_id = "delete_org", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    responses(
        (status = 204, description = "Deleted, with every API key in it revoked"),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "Not an owner, the personal org, or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<StatusCode, AppError> {
    may_manage_orgs(caller.key_scope())?;
    state.service.delete_org(&caller.user, &org).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/members", operation_id = "list_org_members", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    responses(
        (status = 200, description = "The members, owners first", body = MemberListResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
    ))]
pub async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<MemberListResponse>, AppError> {
    may_manage_orgs(caller.key_scope())?;
    let (membership, members) = state.service.org_members(&caller.user, &org).await?;
    Ok(Json(MemberListResponse {
        org: org_info(membership),
        members: members.into_iter().map(member_info).collect(),
    }))
}

#[utoipa::path(patch, path = "/v1/orgs/{org}/members/{user_id}", operation_id = "change_org_member_role", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(
        ("org" = String, Path, description = "The org's slug or id"),
        ("user_id" = String, Path, description = "The member's user id"),
    ),
    request_body = MemberUpdateRequest,
    responses(
        (status = 204, description = "The role is changed"),
        (status = 400, description = "Not a role", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "The caller's role does not allow it, it would leave no owner, or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's, or no such member", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, user_id)): Path<(String, String)>,
    Json(request): Json<MemberUpdateRequest>,
) -> Result<StatusCode, AppError> {
    may_manage_orgs(caller.key_scope())?;
    let role = Role::parse(&request.role)?;
    state
        .service
        .change_member_role(&caller.user, &org, &user_id, role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user_id}", operation_id = "remove_org_member", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(
        ("org" = String, Path, description = "The org's slug or id"),
        ("user_id" = String, Path, description = "The member's user id; the caller's own to leave"),
    ),
    responses(
        (status = 204, description = "Removed (or left); their API keys in the org are revoked"),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "The caller's role does not allow it, the last owner, the personal org, or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's, or no such member", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, user_id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    may_manage_orgs(caller.key_scope())?;
    state
        .service
        .remove_member(&caller.user, &org, &user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/invitations", operation_id = "list_org_invitations", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    responses(
        (status = 200, description = "The pending invitations, newest first", body = InvitationListResponse),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A member (invitations are for admins and owners), or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
    ))]
pub async fn invitations(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<InvitationListResponse>, AppError> {
    may_manage_orgs(caller.key_scope())?;
    let invitations = state.service.org_invitations(&caller.user, &org).await?;
    Ok(Json(InvitationListResponse {
        invitations: invitations.into_iter().map(invitation_info).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/orgs/{org}/invitations", operation_id = "invite_to_org", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(("org" = String, Path, description = "The org's slug or id")),
    request_body = InvitationCreateRequest,
    responses(
        (status = 201, description = "Invited: the link is mailed, never returned", body = InvitationInfo),
        (status = 400, description = "Not an email address, or not a role", body = ErrorBody),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "The caller's role does not allow it, the personal org, or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 429, description = "Too many mails to that address", body = ErrorBody),
        (status = 415, description = "The body is not sent as Content-Type: application/json", body = ErrorBody),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Json(request): Json<InvitationCreateRequest>,
) -> Result<(StatusCode, Json<InvitationInfo>), AppError> {
    may_manage_orgs(caller.key_scope())?;
    let role = Role::parse(request.role.as_deref().unwrap_or("member"))?;
    let invitation = state
        .service
        .invite(&caller.user, &org, &request.email, role)
        .await?;
    Ok((StatusCode::CREATED, Json(invitation_info(invitation))))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/invitations/{id}", operation_id = "revoke_org_invitation", tag = "orgs",
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    params(
        ("org" = String, Path, description = "The org's slug or id"),
        ("id" = String, Path, description = "The invitation's id"),
    ),
    responses(
        (status = 204, description = "Revoked: its link no longer works"),
        (status = 401, description = "No valid credential", body = ErrorBody),
        (status = 403, description = "A member, or a key without the orgs scope", body = ErrorBody),
        (status = 404, description = "No such org of the caller's, or no such invitation", body = ErrorBody),
    ))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    may_manage_orgs(caller.key_scope())?;
    state
        .service
        .revoke_invitation(&caller.user, &org, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
