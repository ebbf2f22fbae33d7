//! Stand-ins for upstream identity providers, on 127.0.0.1 ports of their own, with the shapes
//! of the real ones: [`GitHubStandIn`] (GitHub's documented OAuth and REST endpoints) and
//! [`OidcStandIn`] (an OpenID Connect provider whose ID tokens a test may forge, to attack the
//! checks). Each signs in whoever the test chose, as if that person had typed their password
//! there, and counts what was asked of it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::{Context, Result};
use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use latchkey_proto::{
    base62,
    jws::{self, Algorithm, SigningKey},
    oauth::Jwks,
    pkce::CodeChallenge,
};
use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};

async fn serve(app: Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /authorize` (GitHub: `/login/oauth/authorize`): what a client sends.
#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    scope: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    hd: Option<String>,
}

/// A code handed out at the authorization endpoint, until the token endpoint takes it.
#[derive(Debug, Clone)]
struct IssuedCode {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    nonce: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    code: String,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A redirect back to the client with `params` added to its URI.
fn back_to_client(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response(),
    };
    url.query_pairs_mut().extend_pairs(params);
    Redirect::to(url.as_str()).into_response()
}

/// Checks the authorization request's client and PKCE, and issues a code for it.
fn issue_code(
    codes: &Mutex<HashMap<String, IssuedCode>>,
    client_id: &str,
    q: &AuthorizeQuery,
) -> Response {
    if q.client_id != client_id || !q.redirect_uri.starts_with("http://127.0.0.1:") {
        return (StatusCode::BAD_REQUEST, "unknown client or redirect_uri").into_response();
    }
    if q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256") {
        return (StatusCode::BAD_REQUEST, "only S256").into_response();
    }
    let code = base62::random(&mut OsRng, 20);
    lock(codes).insert(
        code.clone(),
        IssuedCode {
            redirect_uri: q.redirect_uri.clone(),
            challenge: q.code_challenge.clone(),
            scope: q.scope.clone().unwrap_or_default(),
            nonce: q.nonce.clone(),
        },
    );
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &q.state {
        params.push(("state", state));
    }
    back_to_client(&q.redirect_uri, &params)
}

/// Takes `form.code` once, if its redirect URI and PKCE verifier match.
fn redeem_code(codes: &Mutex<HashMap<String, IssuedCode>>, form: &TokenForm) -> Option<IssuedCode> {
    let issued = lock(codes).remove(&form.code)?;
    let redirect_ok = form.redirect_uri.as_deref() == Some(issued.redirect_uri.as_str());
    let pkce_ok = match (&issued.challenge, &form.code_verifier) {
        (Some(challenge), Some(verifier)) => CodeChallenge::s256(verifier).as_str() == challenge,
        (None, None) => true,
        _ => false,
    };
    (redirect_ok && pkce_ok).then_some(issued)
}

/// A GitHub account as `/user` and `/user/emails` describe it.
#[derive(Debug, Clone)]
pub struct GitHubUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// The profile's public email (often none).
    pub public_email: Option<String>,
    /// (address, primary, verified)
    pub emails: Vec<(String, bool, bool)>,
}

impl GitHubUser {
    /// A user whose primary address is `email`, verified or not, with no public email.
    pub fn new(id: u64, email: &str, verified: bool) -> Self {
        Self {
            id,
            login: format!("user{id}"),
            name: None,
            public_email: None,
            emails: vec![(email.to_owned(), true, verified)],
        }
    }
}

#[derive(Debug)]
struct GitHubState {
    client_id: String,
    client_secret: String,
    user: Mutex<GitHubUser>,
    /// Whether the next authorization is denied (`error=access_denied`).
    deny: Mutex<bool>,
    /// A status the token endpoint answers with instead, for outage tests.
    token_failure: Mutex<Option<StatusCode>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    /// access token → (user, granted scope)
    tokens: Mutex<HashMap<String, (GitHubUser, String)>>,
}

/// GitHub, as a GitHub Enterprise Server at `url` lays it out: `/login/oauth/authorize`,
/// `/login/oauth/access_token` (client credentials in the form, JSON when asked, errors as 200
/// with an `error` field, as GitHub does), and the REST API under `/api/v3`: `/user` and
/// `/user/emails` (404 without the `user:email` scope), which refuse requests without a
/// `User-Agent`, as GitHub does.
#[derive(Debug, Clone)]
pub struct GitHubStandIn {
    pub url: String,
    state: Arc<GitHubState>,
}

impl GitHubStandIn {
    pub async fn start(client_id: &str, client_secret: &str) -> Result<Self> {
        let state = Arc::new(GitHubState {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            user: Mutex::new(GitHubUser::new(1, "octo@example.com", true)),
            deny: Mutex::new(false),
            token_failure: Mutex::new(None),
            codes: Mutex::default(),
            tokens: Mutex::default(),
        });
        let app = Router::new()
            .route("/login/oauth/authorize", get(github_authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/api/v3/user", get(github_user))
            .route("/api/v3/user/emails", get(github_emails))
            .with_state(state.clone());
        Ok(Self {
            url: serve(app).await?,
            state,
        })
    }

    /// Who signs in next.
    pub fn sign_in_as(&self, user: GitHubUser) {
        *lock(&self.state.user) = user;
    }

    /// The next authorization is denied by the person.
    pub fn deny_next(&self) {
        *lock(&self.state.deny) = true;
    }

    /// The token endpoint answers `status` (or works again with `None`).
    pub fn fail_token_endpoint(&self, status: Option<StatusCode>) {
        *lock(&self.state.token_failure) = status;
    }
}

async fn github_authorize(
    State(s): State<Arc<GitHubState>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if std::mem::take(&mut *lock(&s.deny)) {
        let state = q.state.clone().unwrap_or_default();
        return back_to_client(
            &q.redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("state", &state),
            ],
        );
    }
    issue_code(&s.codes, &s.client_id, &q)
}

async fn github_token(
    State(s): State<Arc<GitHubState>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(status) = *lock(&s.token_failure) {
        return (status, "unavailable").into_response();
    }
    let wants_json = headers
        .get(header::ACCEPT)
        .is_some_and(|a| a.as_bytes().starts_with(b"application/json"));
    if !wants_json {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "this stand-in answers JSON only",
        )
            .into_response();
    }
    // Client credentials in the form (as GitHub documents), or by HTTP Basic.
    let client = match (&form.client_id, &form.client_secret) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => basic_client(&headers),
    };
    let client_ok = client == Some((s.client_id.clone(), s.client_secret.clone()));
    if !client_ok {
        return Json(json!({"error": "incorrect_client_credentials",
            "error_description": "The client_id and/or client_secret passed are incorrect."}))
        .into_response();
    }
    let Some(issued) = redeem_code(&s.codes, &form) else {
        return Json(json!({"error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired."}))
        .into_response();
    };
    let token = format!("gho_{}", base62::random(&mut OsRng, 36));
    let user = lock(&s.user).clone();
    lock(&s.tokens).insert(token.clone(), (user, issued.scope.clone()));
    Json(json!({"access_token": token, "token_type": "bearer", "scope": issued.scope.replace(' ', ",")}))
        .into_response()
}

/// GitHub's refusal of a REST call.
type Refusal = (StatusCode, Json<Value>);

/// The user and granted scope of the request's token, or GitHub's refusal.
fn github_caller(s: &GitHubState, headers: &HeaderMap) -> Result<(GitHubUser, String), Refusal> {
    if !headers.contains_key(header::USER_AGENT) {
        let message = "Request forbidden by administrative rules. \
                       Please make sure your request has a User-Agent header";
        return Err((StatusCode::FORBIDDEN, Json(json!({ "message": message }))));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or_default();
    lock(&s.tokens).get(token).cloned().ok_or((
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Bad credentials"})),
    ))
}

async fn github_user(State(s): State<Arc<GitHubState>>, headers: HeaderMap) -> Response {
    match github_caller(&s, &headers) {
        Ok((user, _)) => Json(json!({
            "login": user.login, "id": user.id, "name": user.name, "email": user.public_email,
            "type": "User",
        }))
        .into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn github_emails(State(s): State<Arc<GitHubState>>, headers: HeaderMap) -> Response {
    match github_caller(&s, &headers) {
        Ok((_, scope)) if !scope.split([' ', ',']).any(|s| s == "user:email" || s == "user") => {
            (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
        }
        Ok((user, _)) => Json(
            user.emails
                .iter()
                .map(|(email, primary, verified)| {
                    json!({"email": email, "primary": primary, "verified": verified, "visibility": null})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// How the next ID token of an [`OidcStandIn`] is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenForgery {
    /// A correct ID token.
    None,
    WrongAudience,
    WrongIssuer,
    WrongNonce,
    Expired,
    /// `alg: none`, no signature.
    Unsigned,
    /// Signed by a key the provider's JWKS does not hold.
    OtherKey,
}

/// The person an [`OidcStandIn`] signs in next: their ID-token claims.
#[derive(Debug, Clone)]
pub struct OidcPerson {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// Google's hosted domain claim.
    pub hd: Option<String>,
}

struct OidcState {
    issuer: String,
    client_id: String,
    client_secret: String,
    /// (kid, key) of the keys the JWKS lists; the last signs.
    keys: Mutex<Vec<(String, Arc<SigningKey>)>>,
    person: Mutex<OidcPerson>,
    forgery: Mutex<IdTokenForgery>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    /// The `hd` parameter of the last authorization request.
    last_hd: Mutex<Option<String>>,
    jwks_fetches: Mutex<u32>,
}

/// An OpenID Connect provider (discovery, JWKS, authorization and token endpoints; RS256 ID
/// tokens with the email in them) that signs in whoever the test chose, and forges the next
/// ID token when told to.
#[derive(Clone)]
pub struct OidcStandIn {
    pub issuer: String,
    state: Arc<OidcState>,
}

fn rsa_key() -> Result<Arc<SigningKey>> {
    Ok(Arc::new(
        SigningKey::generate(Algorithm::RS256, &mut OsRng)
            .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?,
    ))
}

impl OidcStandIn {
    pub async fn start(client_id: &str, client_secret: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(OidcState {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            keys: Mutex::new(vec![("key-1".to_owned(), rsa_key()?)]),
            person: Mutex::new(OidcPerson {
                sub: "person-1".into(),
                email: "person@example.com".into(),
                email_verified: true,
                hd: None,
            }),
            forgery: Mutex::new(IdTokenForgery::None),
            codes: Mutex::default(),
            last_hd: Mutex::default(),
            jwks_fetches: Mutex::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(oidc_discovery))
            .route("/jwks", get(oidc_jwks))
            .route("/authorize", get(oidc_authorize))
            .route("/token", post(oidc_token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { issuer, state })
    }

    pub fn sign_in_as(&self, person: OidcPerson) {
        *lock(&self.state.person) = person;
    }

    /// How the next ID token is made (and every one after, until changed).
    pub fn forge(&self, forgery: IdTokenForgery) {
        *lock(&self.state.forgery) = forgery;
    }

    /// A new signing key (a new `kid`), listed in the JWKS beside the old one.
    pub fn rotate_key(&self) -> Result<()> {
        let mut keys = lock(&self.state.keys);
        let kid = format!("key-{}", keys.len() + 1);
        keys.push((kid, rsa_key()?));
        Ok(())
    }

    /// `claims` signed with the provider's current key, as any token it issues (CI jobs'
    /// tokens, for federation tests).
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let (kid, key) = lock(&self.state.keys)
            .last()
            .cloned()
            .context("the stand-in has no key")?;
        let header = jws::encoded_header(Algorithm::RS256, &kid, "JWT");
        Ok(jws::sign(&header, &key, claims)?)
    }

    /// `claims` signed by a key the provider does not list, under a `kid` it does not know.
    pub fn sign_with_unknown_key(&self, claims: &Value) -> Result<String> {
        let header = jws::encoded_header(Algorithm::RS256, "unknown-key", "JWT");
        Ok(jws::sign(&header, &*rsa_key()?, claims)?)
    }

    /// `claims` with `alg: none` and no signature.
    pub fn unsigned(claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            part(&json!({"alg": "none", "typ": "JWT"})),
            part(claims)
        )
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> u32 {
        *lock(&self.state.jwks_fetches)
    }

    /// The `hd` parameter the last authorization request carried.
    pub fn last_hd(&self) -> Option<String> {
        lock(&self.state.last_hd).clone()
    }
}

async fn oidc_discovery(State(s): State<Arc<OidcState>>) -> Json<Value> {
    let i = &s.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn oidc_jwks(State(s): State<Arc<OidcState>>) -> Json<Jwks> {
    *lock(&s.jwks_fetches) += 1;
    let keys = lock(&s.keys)
        .iter()
        .map(|(kid, key)| key.verifying_key().to_jwk(kid))
        .collect();
    Json(Jwks { keys })
}

async fn oidc_authorize(
    State(s): State<Arc<OidcState>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    *lock(&s.last_hd) = q.hd.clone();
    issue_code(&s.codes, &s.client_id, &q)
}

/// The client's credentials from HTTP Basic (what discovery advertises).
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?,
    )
    .ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

async fn oidc_token(
    State(s): State<Arc<OidcState>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let refuse =
        |error: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response();
    if basic_client(&headers) != Some((s.client_id.clone(), s.client_secret.clone())) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(issued) = redeem_code(&s.codes, &form) else {
        return refuse("invalid_grant");
    };
    let forgery = *lock(&s.forgery);
    let person = lock(&s.person).clone();
    // The provider is another party, on the wall clock.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut claims = json!({
        "iss": if forgery == IdTokenForgery::WrongIssuer { "https://evil.example" } else { &s.issuer },
        "aud": if forgery == IdTokenForgery::WrongAudience { "someone-else" } else { &s.client_id },
        "sub": person.sub,
        "email": person.email,
        "email_verified": person.email_verified,
        "iat": now,
        "exp": if forgery == IdTokenForgery::Expired { now - 600 } else { now + 300 },
        "nonce": if forgery == IdTokenForgery::WrongNonce { Some("not-the-nonce".to_owned()) } else { issued.nonce },
    });
    if let Some(hd) = person.hd {
        claims["hd"] = json!(hd);
    }
    let id_token = match forgery {
        IdTokenForgery::Unsigned => {
            let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
            format!(
                "{}.{}.",
                part(json!({"alg": "none", "typ": "JWT"})),
                part(claims)
            )
        }
        _ => {
            let (kid, key) = if forgery == IdTokenForgery::OtherKey {
                match rsa_key() {
                    Ok(key) => ("key-1".to_owned(), key),
                    Err(_) => return refuse("server_error"),
                }
            } else {
                match lock(&s.keys).last() {
                    Some((kid, key)) => (kid.clone(), key.clone()),
                    None => return refuse("server_error"),
                }
            };
            let header = jws::encoded_header(Algorithm::RS256, &kid, "JWT");
            match jws::sign(&header, &key, &claims) {
                Ok(token) => token,
                Err(_) => return refuse("server_error"),
            }
        }
    };
    Json(json!({
        "access_token": base62::random(&mut OsRng, 32),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}
