//! Request extractors: JSON bodies with our error shape, the authenticated caller, sessions and
//! CSRF tokens for the web pages.

use latchkey_core::{console::SessionOrigin, org::TokenHolder};
use std::net::IpAddr;

use axum::{
    extract::{FromRequest, FromRequestParts, OptionalFromRequestParts},
    http::{HeaderMap, Method, header, request::Parts},
};
use axum_extra::extract::{CookieJar, cookie::Cookie};
use latchkey_core::{KeyPrincipal, store::User};
use latchkey_proto::{SessionToken, base62, oauth::AccessTokenClaims};
use subtle::ConstantTimeEq;

use crate::{AppState, error::AppError};

/// `axum::Json`, but a malformed body answers `{error, message}` like every other failure.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::Form` with our error shape.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Form), rejection(AppError))]
pub struct Form<T>(pub T);

/// Who is calling the JSON API, and with what.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: CallerCredential,
}

#[derive(Debug, Clone)]
pub enum CallerCredential {
    Session,
    ApiKey(KeyPrincipal),
    AccessToken(Box<AccessTokenClaims>),
}

impl Caller {
    /// The scopes the caller is limited to, when it is an API key made with scopes.
    pub fn key_scope(&self) -> Option<&str> {
        match &self.credential {
            CallerCredential::ApiKey(key) => key.scope.as_deref(),
            _ => None,
        }
    }
}

/// The credential a request presents: `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AppError::unauthorized("The Authorization header is not valid text."))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AppError::unauthorized(
                "Send the API key as `Authorization: Bearer <key>`.",
            ));
        }
        return Ok(Some(token.trim()));
    }
    match headers.get("x-api-key") {
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| AppError::unauthorized("The X-API-Key header is not valid text.")),
        None => Ok(None),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match presented_key(&parts.headers)? {
            Some(token) if latchkey_proto::jws::looks_like_jwt(token) => {
                let claims = state
                    .service
                    .verify_access_token(token, &state.service.policy().public_url)?;
                let revoked = state.service.access_revoked(&claims).await?;
                if revoked {
                    return Err(latchkey_core::AccessTokenError::Revoked.into());
                }
                let user = state.service.user(&claims.sub).await?.ok_or_else(|| {
                    AppError::unauthorized("The account behind this access token no longer exists.")
                })?;
                refuse_disabled(&user)?;
                if state.service.token_holder(&claims, Some(&user)).await? == TokenHolder::Left {
                    return Err(AppError::unauthorized(
                        "This access token acts for an org you no longer belong to.",
                    ));
                }
                return Ok(Caller {
                    user,
                    credential: CallerCredential::AccessToken(Box::new(claims)),
                });
            }
            Some(key) => {
                let principal = state.service.verify_api_key(key).await?;
                let user = state
                    .service
                    .user(&principal.user_id)
                    .await?
                    .ok_or_else(|| {
                        AppError::unauthorized("The account behind this API key no longer exists.")
                    })?;
                refuse_disabled(&user)?;
                return Ok(Caller {
                    user,
                    credential: CallerCredential::ApiKey(principal),
                });
            }
            None => {}
        }
        let session = Session::from_request_parts(parts, state).await?;
        if let Some(user) = session.user {
            // A cookie rides along on cross-site requests: changes need proof of our own origin.
            if !matches!(parts.method, Method::GET | Method::HEAD)
                && !state.site.same_origin(&parts.headers)
            {
                return Err(AppError::forbidden(
                    "cross_origin",
                    "Requests authenticated by a browser session must come from this site.",
                ));
            }
            return Ok(Caller {
                user,
                credential: CallerCredential::Session,
            });
        }
        Err(AppError::unauthorized(
            "Sign in, or send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
        ))
    }
}

/// A disabled account's credentials are refused at once, whatever a cache still holds.
fn refuse_disabled(user: &User) -> Result<(), AppError> {
    match user.disabled_at {
        Some(_) => Err(AppError::unauthorized(
            "This account is disabled; ask the service's support to enable it again.",
        )),
        None => Ok(()),
    }
}

/// The browser session, if any: the token from the cookie and its user when it is still valid.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: Option<SessionToken>,
    pub user: Option<User>,
    /// When the person signed in to this session.
    pub signed_in_at: Option<time::OffsetDateTime>,
    /// The session's public handle, as the account console lists it.
    pub id: Option<String>,
}

impl Session {
    fn signed_out(token: Option<SessionToken>) -> Self {
        Session {
            token,
            user: None,
            signed_in_at: None,
            id: None,
        }
    }

    /// Reads the session cookie's session, and marks it seen when due.
    async fn read(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar
            .get(state.site.session_cookie)
            .map(|c| SessionToken::from_presented(c.value().to_owned()))
        else {
            return Ok(Self::signed_out(None));
        };
        let Some((user, session)) = state.service.session_user(&token).await? else {
            return Ok(Self::signed_out(Some(token)));
        };
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        state
            .service
            .touch_session(&token, session.last_seen_at, Some(ip))
            .await?;
        Ok(Session {
            token: Some(token),
            user: Some(user),
            signed_in_at: Some(session.created_at),
            id: Some(session.id),
        })
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    /// Read once a request: a handler taking the caller and the session (or a page taking
    /// the signed-in user and the session) costs one lookup, not two.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(session) = parts.extensions.get::<Session>() {
            return Ok(session.clone());
        }
        let session = Self::read(parts, state).await?;
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// A signed-in user, for pages that need one (absent: the page redirects to sign-in).
#[derive(Debug, Clone)]
pub struct SignedIn(pub User);

impl OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, AppError> {
        let session =
            <Session as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        Ok(session.user.map(SignedIn))
    }
}

/// The address of the person's client: the peer, or, when the peer is a trusted reverse proxy,
/// the nearest address in `X-Forwarded-For` that is not one of ours.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<latchkey_listener::ClientAddr>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(
            peer,
            forwarded,
            &state.site.trusted_proxies,
        )))
    }
}

/// Walks the proxy chain from the nearest hop: every hop we trust may name the one before it;
/// the first hop we do not trust is the client. Entries a client wrote itself sit further
/// left and are never reached.
fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpAddr],
) -> IpAddr {
    let mut client = peer;
    let hops = forwarded_for
        .rev()
        .flat_map(|header| header.rsplit(',').map(str::trim).collect::<Vec<_>>());
    for hop in hops {
        if !trusted.contains(&client) {
            break;
        }
        match hop.parse() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    client
}

impl FromRequestParts<AppState> for SessionOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(SessionOrigin {
            user_agent,
            ip: Some(ip),
        })
    }
}

/// CSRF protection bound to the browser: every form carries a token derived from the
/// session cookie (or, before sign-in, from a random pre-session cookie), so a token is good
/// only with the cookie it was made for. A token planted together with a cookie of the
/// attacker's choosing is worthless once the victim has a session: the expected token is then
/// derived from the victim's own session, which the attacker cannot read (`HttpOnly`).
#[derive(Debug, Clone)]
pub struct Csrf {
    pub token: String,
    /// Set when the pre-session cookie had to be created: the page response must carry it.
    pub new_cookie: Option<Cookie<'static>>,
}

/// The token for a form shown to the holder of `binding` (a cookie value): HMAC-SHA256 keyed
/// with that secret, so only someone who knows the cookie can make it.
fn csrf_token(binding: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(binding.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"latchkey form token v1");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

impl Csrf {
    /// Accepts the form only if `submitted` is the token for this request's own cookies.
    pub fn verify(&self, submitted: &str) -> Result<(), AppError> {
        let ok = self.new_cookie.is_none()
            && bool::from(self.token.as_bytes().ct_eq(submitted.as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "csrf",
                "This form has expired or did not come from this site. Reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Csrf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let site = &state.site;
        let jar = CookieJar::from_headers(&parts.headers);
        let binding = jar
            .get(site.session_cookie)
            .or_else(|| jar.get(site.csrf_cookie))
            .map(|c| c.value())
            .filter(|v| !v.is_empty());
        if let Some(binding) = binding {
            return Ok(Csrf {
                token: csrf_token(binding),
                new_cookie: None,
            });
        }
        let binding = base62::random(&mut rand::rngs::OsRng, 43);
        let cookie = site.cookie(site.csrf_cookie, binding.clone(), None);
        Ok(Csrf {
            token: csrf_token(&binding),
            new_cookie: Some(cookie),
        })
    }
}

/// Refuses state-changing requests to the web pages that a browser says come from another
/// site (`Sec-Fetch-Site`) or another origin (`Origin`). Clients that send neither (not a
/// browser, or a very old one) still need the form token.
pub async fn same_site_writes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let fetch_site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|v| v == "same-origin" || v == "none");
    let origin_ok = headers
        .get(header::ORIGIN)
        .is_none_or(|o| o.as_bytes() == state.site.origin.as_bytes());
    if fetch_site_ok && origin_ok {
        next.run(request).await
    } else {
        AppError::forbidden(
            "cross_origin",
            "This form was sent from another site. Open the page on this site and try again.",
        )
        .into_response()
    }
}

#[cfg(test)]
mod client_ip_tests {
    use super::*;

    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const BALANCER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_direct_client_is_its_peer_address_whatever_it_claims() {
        let claimed = ["203.0.113.9"];
        assert_eq!(
            client_ip(ip("198.51.100.7"), claimed.into_iter(), &[PROXY]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_is_the_client() {
        let headers = ["203.0.113.9, 198.51.100.7, 10.0.0.1"];
        assert_eq!(
            client_ip(PROXY, headers.into_iter(), &[PROXY, BALANCER]),
            ip("198.51.100.7"),
            "the spoofed left-most entry is not believed"
        );
        let split = ["198.51.100.7", "10.0.0.1"];
        assert_eq!(
            client_ip(PROXY, split.into_iter(), &[PROXY, BALANCER]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_garbled_or_missing_header_leaves_the_last_trusted_hop() {
        assert_eq!(client_ip(PROXY, ["not-an-ip"].into_iter(), &[PROXY]), PROXY);
        assert_eq!(client_ip(PROXY, std::iter::empty(), &[PROXY]), PROXY);
    }
}

#[cfg(test)]
mod csrf_tests {
    use super::*;

    #[test]
    fn a_form_token_belongs_to_one_cookie() {
        let token = csrf_token("lks_session-of-the-victim");
        assert_eq!(token.len(), 43);
        assert_eq!(token, csrf_token("lks_session-of-the-victim"));
        assert_ne!(token, csrf_token("lks_session-of-the-attacker"));
        assert_ne!(token, "lks_session-of-the-victim");
    }

    #[test]
    fn a_new_pre_session_cookie_verifies_nothing() {
        let fresh = Csrf {
            token: csrf_token("new"),
            new_cookie: Some(Cookie::new("lk_csrf", "new")),
        };
        assert!(fresh.verify(&csrf_token("new")).is_err());
        let kept = Csrf {
            token: csrf_token("kept"),
            new_cookie: None,
        };
        assert!(kept.verify(&csrf_token("kept")).is_ok());
        assert!(kept.verify("").is_err());
    }
}
