//! The OAuth authorization server driven by an independent client, the `oauth2` crate: code +
//! PKCE to a loopback redirect, refresh with rotation; and the attacks on those grants.

use anyhow::{Context, Result};
use latchkey_testkit::{LoopbackCallback, Person, Server, unique_email};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse, TokenUrl, basic::BasicClient,
};
use serde_json::Value;

use crate::{PASSWORD, bin};

/// The `oauth2` crate configured as the latchkey CLI's public client.
pub type CliClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn cli_client(server: &Server, callback: &LoopbackCallback) -> Result<CliClient> {
    public_client(server, "latchkey-cli", callback)
}

/// The `oauth2` crate as any public client of this server, redirecting to `callback`.
pub fn public_client(
    server: &Server,
    client_id: &str,
    callback: &LoopbackCallback,
) -> Result<CliClient> {
    Ok(BasicClient::new(ClientId::new(client_id.into()))
        .set_auth_uri(AuthUrl::new(server.url("/oauth/authorize"))?)
        .set_token_uri(TokenUrl::new(server.url("/oauth/token"))?)
        .set_redirect_uri(RedirectUrl::new(callback.redirect_uri())?)
        .set_auth_type(AuthType::RequestBody))
}

/// An access token for `person`, by authorization code + PKCE with the `oauth2` crate.
pub async fn access_token(server: &Server, person: &Person) -> Result<String> {
    Ok(token_pair(server, person).await?.0)
}

/// An access token and a refresh token for `person`, through the consent page.
pub async fn token_pair(server: &Server, person: &Person) -> Result<(String, String)> {
    token_pair_for(server, person, None).await
}

/// [`token_pair`], for the RFC 8707 `resource` given, spelled as given.
pub async fn token_pair_for(
    server: &Server,
    person: &Person,
    resource: Option<&str>,
) -> Result<(String, String)> {
    let callback = latchkey_testkit::LoopbackCallback::start().await?;
    let client = public_client(server, "latchkey-cli", &callback)?;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(oauth2::CsrfToken::new_random)
        .set_pkce_challenge(challenge);
    if let Some(resource) = resource {
        request = request.add_extra_param("resource", resource);
    }
    let (url, _) = request.url();
    let query = consent(person, url.as_str(), callback, "approve").await?;
    let code = param(&query, "code").context("code")?;
    let tokens = client
        .exchange_code(oauth2::AuthorizationCode::new(code.into()))
        .set_pkce_verifier(verifier)
        .request_async(&http()?)
        .await?;
    let refresh = tokens
        .refresh_token()
        .context("no refresh token")?
        .secret()
        .clone();
    Ok((tokens.access_token().secret().clone(), refresh))
}

pub fn http() -> Result<oauth2::reqwest::Client> {
    // OAuth clients must not follow redirects from the token endpoint.
    Ok(oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()?)
}

/// Opens the consent page at `url` as `person`, presses `decision`, and returns the query the
/// browser was sent back with.
pub async fn consent(
    person: &Person,
    url: &str,
    callback: LoopbackCallback,
    decision: &str,
) -> Result<Vec<(String, String)>> {
    let page = person.get(url).await?;
    let request = page
        .input("request")
        .with_context(|| format!("no consent form: {}", page.html))?;
    let sent_back = person
        .post_form(
            "/oauth/authorize",
            &[
                ("csrf", &page.csrf()?),
                ("request", &request),
                ("decision", decision),
            ],
        )
        .await?;
    assert!(
        sent_back.url.starts_with("http://127.0.0.1:") && sent_back.html == "ok",
        "the decision did not redirect to the callback: {} {}",
        sent_back.url,
        sent_back.html
    );
    let target = callback.received().await?;
    let url = url::Url::parse(&format!("http://127.0.0.1{target}"))?;
    Ok(url.query_pairs().into_owned().collect())
}

/// A verified person approved the CLI client; the code is ready to exchange.
pub struct Approved {
    pub server: Server,
    pub client: CliClient,
    pub code: AuthorizationCode,
    pub verifier: PkceCodeVerifier,
}

pub async fn approved_code(tag: &str) -> Result<Approved> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email(tag), PASSWORD).await?;
    let callback = LoopbackCallback::start().await?;
    let client = cli_client(&server, &callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let query = consent(&person, url.as_str(), callback, "approve").await?;
    let code = param(&query, "code").context("no code")?.to_owned();
    Ok(Approved {
        server,
        client,
        code: AuthorizationCode::new(code),
        verifier,
    })
}

impl Approved {
    /// Exchanges the code, then refreshes once: the spent refresh token and the live one.
    pub async fn rotate_once(
        &mut self,
        http: &oauth2::reqwest::Client,
    ) -> Result<(RefreshToken, RefreshToken)> {
        let code = std::mem::replace(&mut self.code, AuthorizationCode::new(String::new()));
        let verifier = std::mem::replace(&mut self.verifier, PkceCodeVerifier::new(String::new()));
        let tokens = self
            .client
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(http)
            .await?;
        let spent = tokens.refresh_token().context("refresh token")?.clone();
        let rotated = self
            .client
            .exchange_refresh_token(&spent)
            .request_async(http)
            .await?;
        let live = rotated
            .refresh_token()
            .context("a new refresh token")?
            .clone();
        Ok((spent, live))
    }
}

pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_oauth2_crate_logs_in_with_pkce_and_refreshes_with_rotation() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("oauth"), PASSWORD).await?;
    let callback = LoopbackCallback::start().await?;
    let client = cli_client(&server, &callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let page = person.get(url.as_str()).await?;
    assert!(
        page.contains("latchkey CLI"),
        "the consent page names the client"
    );
    assert!(
        page.contains("127.0.0.1"),
        "and where it sends the person back"
    );
    let query = consent(&person, url.as_str(), callback, "approve").await?;
    assert_eq!(param(&query, "state"), Some(state.secret().as_str()));
    assert_eq!(param(&query, "iss"), Some(server.url.as_str()), "RFC 9207");
    let code = param(&query, "code").context("no code")?.to_owned();

    let http = http()?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&http)
        .await?;
    let access = tokens.access_token().secret().clone();
    let me: Value = http
        .get(server.url("/v1/me"))
        .bearer_auth(&access)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["credential"]["kind"], "access_token");
    assert_eq!(me["credential"]["client_id"], "latchkey-cli");

    // The code is single use: a second exchange fails and revokes what the first issued.
    let replay = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await;
    assert_invalid_grant(replay);
    let first_refresh = tokens.refresh_token().context("no refresh token")?.clone();
    assert_invalid_grant(
        client
            .exchange_refresh_token(&first_refresh)
            .request_async(&http)
            .await,
    );
    Ok(())
}

#[tokio::test]
async fn a_refresh_token_rotates_and_its_reuse_revokes_the_whole_family() -> Result<()> {
    let mut approved = approved_code("refresh").await?;
    let http = http()?;
    let (first, second) = approved.rotate_once(&http).await?;
    let (server, client) = (&approved.server, &approved.client);
    assert_ne!(second.secret(), first.secret(), "rotated on use");

    // The spent token presented again (a thief replaying it): refused, and the family is gone.
    assert_invalid_grant(
        client
            .exchange_refresh_token(&first)
            .request_async(&http)
            .await,
    );
    assert_invalid_grant(
        client
            .exchange_refresh_token(&second)
            .request_async(&http)
            .await,
    );
    assert_eq!(
        server.metric("latchkey_refresh_token_reuse_total").await?,
        1
    );
    Ok(())
}

pub fn assert_invalid_grant<T: std::fmt::Debug, E: std::error::Error + 'static>(
    result: Result<T, RequestTokenError<E, oauth2::basic::BasicErrorResponse>>,
) {
    let code = match &result {
        Err(RequestTokenError::ServerResponse(e)) => Some(e.error().clone()),
        _ => None,
    };
    assert_eq!(
        code,
        Some(oauth2::basic::BasicErrorResponseType::InvalidGrant),
        "expected invalid_grant, got {result:?}"
    );
}

#[tokio::test]
async fn authorization_requests_that_break_the_rules_are_refused() -> Result<()> {
    let server = Server::start(bin()).await?;
    let http = http()?;
    let challenge = PkceCodeChallenge::new_random_sha256().0;
    let authorize = |redirect: &str, pkce: Option<(&str, &str)>| {
        let mut url = url::Url::parse(&server.url("/oauth/authorize")).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "latchkey-cli")
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "s1");
        if let Some((challenge, method)) = pkce {
            url.query_pairs_mut()
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", method);
        }
        http.get(url.as_str()).send()
    };
    let good_pkce = Some((challenge.as_str(), "S256"));

    // A redirect URI that is not registered is explained on a page, never followed.
    for redirect in [
        "http://evil.example/callback",
        "http://127.0.0.1:4000/other",
        "https://127.0.0.1:4000/callback",
        "http://localhost:4000/callback",
        "http://user@127.0.0.1:4000/callback",
        "http://127.0.0.1:4000/callback#frag",
    ] {
        let response = authorize(redirect, good_pkce).await?;
        assert_eq!(response.status(), 400, "{redirect}");
        assert!(response.headers().get("location").is_none(), "{redirect}");
    }

    // Missing or plain PKCE goes back to the (valid) redirect URI with the error and state.
    for pkce in [None, Some((challenge.as_str(), "plain"))] {
        let response = authorize("http://127.0.0.1:4000/callback", pkce).await?;
        assert_eq!(response.status(), 303);
        let location = url::Url::parse(response.headers()["location"].to_str()?)?;
        let query: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert_eq!(param(&query, "error"), Some("invalid_request"));
        assert_eq!(param(&query, "state"), Some("s1"));
        assert_eq!(param(&query, "iss"), Some(server.url.as_str()));
        assert!(param(&query, "code").is_none());
    }

    // The token endpoint: unknown client, unknown grant, garbage body.
    let token = |body: &'static str| {
        http.post(server.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = token("grant_type=authorization_code&client_id=nobody&code=x").await?;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(response.json::<Value>().await?["error"], "invalid_client");
    let response = token("grant_type=password&client_id=latchkey-cli").await?;
    assert_eq!(
        response.json::<Value>().await?["error"],
        "unsupported_grant_type"
    );
    let response = token("grant_type=authorization_code&client_id=latchkey-cli&code=lkc_nope&code_verifier=x&redirect_uri=http://127.0.0.1/callback").await?;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_grant");
    let response = token("%%%").await?;
    assert_eq!(response.json::<Value>().await?["error"], "invalid_request");
    Ok(())
}

#[tokio::test]
async fn a_wrong_pkce_verifier_burns_the_code() -> Result<()> {
    // `_server` keeps the server running to the end of the test.
    let Approved {
        server: _server,
        client,
        code,
        verifier,
    } = approved_code("pkce").await?;
    let http = http()?;
    let stolen = PkceCodeChallenge::new_random_sha256().1;
    assert_invalid_grant(
        client
            .exchange_code(code.clone())
            .set_pkce_verifier(stolen)
            .request_async(&http)
            .await,
    );
    assert_invalid_grant(
        client
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await,
    );
    Ok(())
}

#[tokio::test]
async fn denying_sends_access_denied_back_and_no_code() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("deny"), PASSWORD).await?;
    let callback = LoopbackCallback::start().await?;
    let client = cli_client(&server, &callback)?;
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    let query = consent(&person, url.as_str(), callback, "deny").await?;
    assert_eq!(param(&query, "error"), Some("access_denied"));
    assert_eq!(param(&query, "state"), Some(state.secret().as_str()));
    assert!(param(&query, "code").is_none());
    Ok(())
}

#[tokio::test]
async fn the_oauth2_crate_revokes_a_refresh_token_and_its_family_stops_working() -> Result<()> {
    let mut approved = approved_code("revoke").await?;
    let http = http()?;
    let (_, current) = approved.rotate_once(&http).await?;
    // The oauth2 crate revokes over https only (RFC 7009 §2): reach the server through a
    // TLS-terminating proxy whose CA this client trusts.
    let proxy = latchkey_testkit::InspectingProxy::start("auth.test", approved.server.addr).await?;
    let tls = oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .proxy(oauth2::reqwest::Proxy::https(&proxy.url)?)
        .add_root_certificate(oauth2::reqwest::Certificate::from_pem(
            proxy.ca_pem.as_bytes(),
        )?)
        .build()?;
    let client = approved
        .client
        .clone()
        .set_revocation_url(oauth2::RevocationUrl::new(
            "https://auth.test/oauth/revoke".into(),
        )?);
    client
        .revoke_token(oauth2::StandardRevocableToken::RefreshToken(
            current.clone(),
        ))?
        .request_async(&tls)
        .await?;
    assert_eq!(proxy.connects(), ["auth.test:443"]);
    let refused = approved
        .client
        .exchange_refresh_token(&current)
        .request_async(&http)
        .await;
    assert_invalid_grant(refused);
    // Revoking something unknown is still a 200 (RFC 7009 §2.2).
    client
        .revoke_token(oauth2::StandardRevocableToken::RefreshToken(
            RefreshToken::new("lkr_unknown".into()),
        ))?
        .request_async(&tls)
        .await?;
    Ok(())
}
