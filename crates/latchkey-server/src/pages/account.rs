//! Sign-up, email verification, sign-in, sign-out and the account page with API keys.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::console::SessionOrigin;
use latchkey_core::{
    AccountError, Password, Service, api_key::key_info, upstream::IdentityProvider,
};
use latchkey_proto::{
    LocalPath, SessionToken,
    wire::{ApiKeyCreateRequest, ApiKeyInfo},
};
use serde::Deserialize;

use super::{MessagePage, PageError, page, query_escape, redirect_to_next};
use crate::{
    AppState,
    error::AppError,
    extract::{ClientIp, Csrf, Form, Session, SignedIn},
};

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    pub(crate) next: Option<String>,
    /// Show the form even to a signed-in person: the page they come from needs a fresh
    /// sign-in (OpenID Connect `prompt=login`, `max_age`).
    #[serde(default)]
    pub(crate) again: bool,
}

#[derive(Deserialize)]
pub struct CredentialsForm {
    pub(crate) csrf: String,
    pub(crate) email: String,
    pub(crate) password: String,
    pub(crate) next: Option<String>,
    /// Sign-up only, optional: the name OpenID Connect's `profile` scope shares.
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub(crate) csrf: String,
    pub(crate) next: Option<String>,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage<'a> {
    csrf: &'a str,
    next: &'a str,
    next_query: String,
    email: &'a str,
    error: Option<String>,
    providers: &'a [IdentityProvider],
    /// Whether password sign-in is on (off: SSO only, the providers alone are offered).
    passwords: bool,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    next_query: String,
    email: &'a str,
    error: Option<String>,
    providers: &'a [IdentityProvider],
    /// Whether password sign-in is on (off: SSO only, the providers alone are offered).
    passwords: bool,
    /// Which tool's login the sign-in leads on to, with its code.
    asking: Option<String>,
    /// Whether passkeys work here (offered beside the password).
    passkeys: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    csrf: &'a str,
    email: &'a str,
    verified: bool,
    org: &'a str,
    keys: Vec<ApiKeyInfo>,
    new_key: Option<String>,
    identities: Vec<LinkedIdentity>,
    /// Configured providers not linked yet.
    linkable: Vec<IdentityProvider>,
    orgs: Vec<latchkey_core::store::Membership>,
    /// Whether the account has a password to change (and passwords are on here).
    password: bool,
}

/// A provider linked to the account, as the account page lists it.
struct LinkedIdentity {
    provider_id: String,
    display_name: String,
    email: String,
    linked_at: String,
    /// False when it is the account's only way to sign in (or no longer configured).
    unlinkable: bool,
}

pub(crate) fn session_cookie(state: &AppState, token: &SessionToken) -> Cookie<'static> {
    state.site.cookie(
        state.site.session_cookie,
        token.expose_secret().to_owned(),
        Some(state.service.policy().session_ttl),
    )
}

#[derive(Debug, Clone)]
pub(crate) enum CredentialsPage {
    SignUp,
    /// With, when the sign-in leads on to approving a CLI login, which tool asks and its code.
    SignIn {
        asking: Option<String>,
    },
}

/// When `next` is a CLI login's approval page: "Sign in to approve the login from <tool> —
/// code <code>", from the server's own record of the flow (never from the link, which anyone
/// can write), while it waits for approval.
pub(crate) async fn login_request(state: &AppState, next: Option<&LocalPath>) -> Option<String> {
    let url = url::Url::parse(&format!("http://latchkey.invalid{}", next?.as_str())).ok()?;
    if url.path() != "/login/cli" {
        return None;
    }
    let id = url
        .query_pairs()
        .find(|(name, _)| name == "token_flow_id")?
        .1
        .into_owned();
    let flow = state.service.token_flow_view(&id).await.ok()?;
    matches!(
        flow.state,
        latchkey_core::token_flow::FlowViewState::Pending
    )
    .then(|| {
        format!(
            "Sign in to approve the login from {} \u{2014} code {}",
            flow.client_name, flow.pairing_code
        )
    })
}

/// The sign-up or sign-in form, refilled with the email and showing the error (with its status)
/// after a failed attempt.
pub(crate) fn credentials_form(
    state: &AppState,
    which: CredentialsPage,
    csrf: &Csrf,
    next: Option<&LocalPath>,
    email: &str,
    error: Option<AppError>,
) -> Response {
    let providers = state.upstream.listed();
    let passwords = state.service.policy().password_sign_in;
    let next = next.map_or("", LocalPath::as_str);
    let next_query = query_escape(next);
    let message = error.as_ref().map(|e| e.message().to_owned());
    let mut response = match which {
        CredentialsPage::SignUp => page(
            &SignUpPage {
                csrf: &csrf.token,
                next,
                next_query,
                email,
                error: message,
                providers: &providers,
                passwords,
            },
            Some(csrf),
        ),
        CredentialsPage::SignIn { asking } => page(
            &SignInPage {
                csrf: &csrf.token,
                next,
                next_query,
                email,
                error: message,
                providers: &providers,
                passwords,
                asking,
                passkeys: state.service.passkeys_available(),
            },
            Some(csrf),
        ),
    };
    if let Some(error) = error {
        error.apply_status(&mut response);
    }
    response
}

pub async fn signin_page(
    State(state): State<AppState>,
    csrf: Csrf,
    signed_in: Option<SignedIn>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = LocalPath::parse_opt(q.next.as_deref());
    if signed_in.is_some() && !q.again {
        return redirect_to_next(next.as_ref()).into_response();
    }
    let asking = login_request(&state, next.as_ref()).await;
    credentials_form(
        &state,
        CredentialsPage::SignIn { asking },
        &csrf,
        next.as_ref(),
        "",
        None,
    )
}

pub async fn signin(
    State(state): State<AppState>,
    origin: SessionOrigin,
    jar: CookieJar,
    csrf: Csrf,
    Form(form): Form<CredentialsForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let next = LocalPath::parse_opt(form.next.as_deref());
    let password =
        Password::parse(form.password.clone()).map_err(|_| AccountError::WrongCredentials);
    let result = match password {
        Ok(password) => {
            let next = next.as_ref().map(LocalPath::as_str);
            state
                .service
                .sign_in(&form.email, password, &origin, next)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(step) => Ok(super::second_factor::after_first_factor(
            &state,
            jar,
            step,
            next.as_ref(),
        )),
        Err(e @ (AccountError::WrongCredentials | AccountError::Throttled(_))) => {
            Ok(credentials_form(
                &state,
                CredentialsPage::SignIn {
                    asking: login_request(&state, next.as_ref()).await,
                },
                &csrf,
                next.as_ref(),
                &form.email,
                Some(e.into()),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn signout(
    State(state): State<AppState>,
    jar: CookieJar,
    csrf: Csrf,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let jar = super::logout::end_session(&state, jar, &session).await?;
    Ok((jar, Redirect::to("/signin")).into_response())
}

/// Pages that need a signed-in user redirect to sign-in and come back afterwards.
#[derive(Debug)]
pub struct SignedInOrRedirect(pub latchkey_core::store::User);

impl axum::extract::FromRequestParts<AppState> for SignedInOrRedirect {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|e| PageError(e).into_response())?;
        match session.user {
            Some(user) => Ok(Self(user)),
            None => {
                let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let target = if parts.method == axum::http::Method::GET {
                    format!("/signin?next={}", query_escape(here))
                } else {
                    "/signin".to_owned()
                };
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

async fn account_page(
    state: &AppState,
    csrf: &Csrf,
    user: &latchkey_core::store::User,
    new_key: Option<String>,
) -> Result<Response, PageError> {
    let keys = state.service.list_api_keys(user).await?;
    let linked = state.service.linked_identities(user).await?;
    let orgs = state.service.orgs(user).await?;
    let other_ways = usize::from(Service::has_password(user)) + linked.len();
    let identities = linked
        .iter()
        .map(|identity| {
            let configured = state.upstream.find(&identity.provider_id);
            LinkedIdentity {
                provider_id: identity.provider_id.clone(),
                display_name: configured.map_or(identity.provider_id.clone(), |p| {
                    p.provider.display_name.clone()
                }),
                email: identity.email.clone(),
                linked_at: identity.created_at.date().to_string(),
                unlinkable: configured.is_some() && other_ways > 1,
            }
        })
        .collect();
    let linkable = state
        .upstream
        .listed()
        .into_iter()
        .filter(|p| !linked.iter().any(|i| i.provider_id == p.id))
        .collect();
    Ok(page(
        &AccountPage {
            csrf: &csrf.token,
            email: &user.email,
            verified: user.email_verified,
            org: &user.org.slug,
            keys: keys
                .iter()
                .map(|key| key_info(key, state.service.now()))
                .collect(),
            new_key,
            identities,
            linkable,
            orgs,
            password: Service::has_password(user) && state.service.policy().password_sign_in,
        },
        Some(csrf),
    ))
}

pub async fn account(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
) -> Result<Response, PageError> {
    account_page(&state, &csrf, &user, None).await
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    csrf: String,
    name: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Form(form): Form<NewKeyForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (key, _) = state
        .service
        .create_api_key(
            &user,
            &ApiKeyCreateRequest {
                name: Some(form.name),
                ..ApiKeyCreateRequest::default()
            },
            None,
        )
        .await?;
    account_page(&state, &csrf, &user, Some(key.expose_secret().to_owned())).await
}

pub async fn revoke_key(
    State(state): State<AppState>,
    csrf: Csrf,
    SignedInOrRedirect(user): SignedInOrRedirect,
    Path(key_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    state.service.revoke_api_key(&user.id, &key_id).await?;
    Ok(Redirect::to("/account").into_response())
}

#[derive(Deserialize)]
pub struct PasswordChangeForm {
    csrf: String,
    current: String,
    new: String,
}

/// `POST /account/password`: a new password; every other session and OAuth login ends.
pub async fn change_password(
    State(state): State<AppState>,
    csrf: Csrf,
    session: Session,
    ClientIp(client_ip): ClientIp,
    Form(form): Form<PasswordChangeForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let (Some(user), Some(token)) = (session.user, session.token) else {
        return Ok(Redirect::to("/signin?next=/account").into_response());
    };
    let current = Password::parse(form.current).map_err(|_| AccountError::WrongCurrentPassword)?;
    let new = Password::parse(form.new)?;
    state
        .service
        .change_password(&user, &token, current, new, Some(client_ip))
        .await?;
    Ok(message(
        "Password changed",
        "Your password was changed. Every other browser session and every OAuth login was \
         signed out; API keys keep working.",
        "ok",
        Some(("/account", "Back to your account")),
    ))
}

pub async fn home(signed_in: Option<SignedIn>) -> Redirect {
    Redirect::to(if signed_in.is_some() {
        "/account"
    } else {
        "/signin"
    })
}

pub(crate) fn message(
    title: &str,
    text: &str,
    class: &str,
    link: Option<(&str, &str)>,
) -> Response {
    page(
        &MessagePage {
            title,
            text,
            class,
            link,
        },
        None,
    )
}
