//! `/invitations/accept`: a person opens the link an invitation mailed them, signs in (or up)
//! with the invited address, and joins the org.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use latchkey_proto::InvitationToken;
use serde::Deserialize;

use super::{PageError, account::SignedInOrRedirect, page};
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
