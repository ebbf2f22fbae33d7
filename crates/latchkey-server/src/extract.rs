//! Request extractors: JSON bodies with our error shape, the authenticated caller, sessions and
//! CSRF tokens for the web pages.

use std::net::IpAddr;

use axum::{
    extract::{FromRequest, FromRequestParts, OptionalFromRequestParts},
    http::{HeaderMap, Method, header, request::Parts},
};
use axum_extra::extract::{
    CookieJar,
    cookie::{Cookie, SameSite},
};
use latchkey_core::{KeyPrincipal, store::User};
use latchkey_proto::{SessionToken, base62, oauth::AccessTokenClaims};
use subtle::ConstantTimeEq;

use crate::{AppState, error::AppError};

pub const SESSION_COOKIE: &str = "lk_session";
pub const CSRF_COOKIE: &str = "lk_csrf";

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

/// A JWT is three base64url parts and starts with an encoded `{"`; API keys have no dots.
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The credential a request presents: `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
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
            Some(token) if looks_like_jwt(token) => {
                let claims = state
                    .service
                    .verify_access_token(token, &state.service.policy().public_url)?;
                let user = state.service.user(&claims.sub).await?.ok_or_else(|| {
                    AppError::unauthorized("The account behind this access token no longer exists.")
                })?;
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

/// The browser session, if any: the token from the cookie and its user when it is still valid.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: Option<SessionToken>,
    pub user: Option<User>,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar
            .get(SESSION_COOKIE)
            .map(|c| SessionToken::from_presented(c.value().to_owned()))
        else {
            return Ok(Session {
                token: None,
                user: None,
            });
        };
        let user = state.service.session_user(&token).await?;
        Ok(Session {
            token: Some(token),
            user,
        })
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
            .get::<latchkey_gate::ClientAddr>()
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

/// Double-submit CSRF protection: a random token in a cookie, echoed in every
/// form; a POST whose field does not match the cookie is refused.
#[derive(Debug, Clone)]
pub struct Csrf {
    pub token: String,
    /// Set when the cookie had to be created: the page response must carry it.
    pub new_cookie: Option<Cookie<'static>>,
}

impl Csrf {
    pub fn verify(jar: &CookieJar, submitted: &str) -> Result<(), AppError> {
        let cookie = jar.get(CSRF_COOKIE).map(|c| c.value()).unwrap_or_default();
        let ok = !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()));
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
        let jar = CookieJar::from_headers(&parts.headers);
        if let Some(existing) = jar.get(CSRF_COOKIE).filter(|c| c.value().len() == 43) {
            return Ok(Csrf {
                token: existing.value().to_owned(),
                new_cookie: None,
            });
        }
        let token = base62::random(&mut rand::rngs::OsRng, 43);
        let cookie = Cookie::build((CSRF_COOKIE, token.clone()))
            .http_only(true)
            .secure(state.site.secure_cookies)
            .same_site(SameSite::Lax)
            .path("/")
            .build();
        Ok(Csrf {
            token,
            new_cookie: Some(cookie),
        })
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
