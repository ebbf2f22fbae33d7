//! OpenID Connect as a relying party sees it, checked with an independent JWT implementation
//! (jsonwebtoken): ID tokens (nonce, at_hash, auth_time, claims by scope, each algorithm),
//! userinfo, `prompt` and `max_age`, and RP-initiated logout, with the attacks on each. The
//! certified libraries (openid-client, authlib) run in `oidc_libraries.rs`.

use anyhow::{Context, Result, ensure};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use latchkey_proto::oauth::Jwks;
use latchkey_testkit::{LoopbackCallback, Page, Person, Server, unique_email};
use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use serde_json::{Value, json};

use crate::{
    PASSWORD, bin,
    gate_proxy::{answering_upstream, gate, issuer},
    oauth::param,
    oidc_libraries::verified_by_pyjwt_and_joserfc,
};

const VERIFIER: &str = "an-openid-test-verifier-of-at-least-forty-three-characters";

/// A relying party registered by RFC 7591 with `metadata` on top of a loopback redirect.
async fn relying_party(server: &Server, metadata: Value) -> Result<String> {
    let mut body = json!({
        "client_name": "Dashboard",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), metadata.as_object()) {
        body.extend(extra.clone());
    }
    let (status, registered) = crate::registration::register(server, body).await?;
    ensure!(status == 201, "registration refused: {registered}");
    Ok(registered["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned())
}

/// Where an authorization request ended: back at the client (the redirect URI and the query
/// it got), or on one of our pages.
#[derive(Debug)]
enum Outcome {
    Callback(String, Vec<(String, String)>),
    Page(Page),
}

impl Outcome {
    fn callback(self) -> Result<(String, Vec<(String, String)>)> {
        match self {
            Self::Callback(redirect_uri, query) => Ok((redirect_uri, query)),
            Self::Page(page) => anyhow::bail!("stopped at {}: {}", page.url, page.html),
        }
    }

    fn page(self) -> Result<Page> {
        match self {
            Self::Page(page) => Ok(page),
            Self::Callback(_, query) => anyhow::bail!("went back to the client with {query:?}"),
        }
    }
}

/// Opens an authorization request as `person` with `params` added; presses Approve when the
/// consent page shows and `approve` is set.
async fn authorize(
    person: &Person,
    client_id: &str,
    params: &[(&str, &str)],
    approve: bool,
) -> Result<Outcome> {
    let callback = LoopbackCallback::start().await?;
    let redirect_uri = callback.redirect_uri();
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(VERIFIER.into()));
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", person.base))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-1")
        .extend_pairs(params);
    let mut page = person.get(url.as_str()).await?;
    if approve && let Some(request) = page.input("request") {
        page = person
            .post_form(
                "/oauth/authorize",
                &[
                    ("csrf", &page.csrf()?),
                    ("request", &request),
                    ("decision", "approve"),
                ],
            )
            .await?;
    }
    if !page
        .url
        .starts_with(&format!("http://127.0.0.1:{}/", callback.port))
    {
        return Ok(Outcome::Page(page));
    }
    let target = callback.received().await?;
    let back = url::Url::parse(&format!("http://127.0.0.1{target}"))?;
    Ok(Outcome::Callback(
        redirect_uri,
        back.query_pairs().into_owned().collect(),
    ))
}

/// Exchanges the code the client got back, as the public client `client_id`.
async fn exchange(
    server: &Server,
    client_id: &str,
    (redirect_uri, query): (String, Vec<(String, String)>),
) -> Result<Value> {
    let code = param(&query, "code").with_context(|| format!("no code: {query:?}"))?;
    let response = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
            ("redirect_uri", &redirect_uri),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.is_success(), "token exchange failed: {body}");
    Ok(body)
}

/// Signs `person` in to `client_id` with `params`, approving; the token response.
async fn approved(
    server: &Server,
    person: &Person,
    client_id: &str,
    params: &[(&str, &str)],
) -> Result<Value> {
    let back = authorize(person, client_id, params, true)
        .await?
        .callback()?;
    exchange(server, client_id, back).await
}

/// Checks `token` with jsonwebtoken against the server's JWKS, for audience `aud`; its header
/// and claims.
async fn verify_jwt(server: &Server, token: &str, aud: &str) -> Result<(Value, Value)> {
    let header = jsonwebtoken::decode_header(token)?;
    let jwks: Jwks = reqwest::get(server.url("/.well-known/jwks.json"))
        .await?
        .json()
        .await?;
    let kid = header.kid.clone().context("kid")?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .context("unknown kid")?;
    let part = |value: &Option<String>| value.clone().context("a key component");
    let key = match jwk.kty.as_str() {
        "OKP" => jsonwebtoken::DecodingKey::from_ed_components(&part(&jwk.x)?)?,
        "RSA" => jsonwebtoken::DecodingKey::from_rsa_components(&part(&jwk.n)?, &part(&jwk.e)?)?,
        "EC" => jsonwebtoken::DecodingKey::from_ec_components(&part(&jwk.x)?, &part(&jwk.y)?)?,
        other => anyhow::bail!("unexpected key type {other}"),
    };
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[&server.url]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims;
    Ok((serde_json::to_value(&header)?, claims))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// OpenID Connect Core §3.2.2.9: the left half of SHA-256, computed here independently.
fn at_hash(access_token: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(access_token.as_bytes())[..16])
}

async fn userinfo(server: &Server, token: &str) -> Result<(u16, Option<String>, Value)> {
    let response = reqwest::Client::new()
        .get(server.url("/oauth/userinfo"))
        .bearer_auth(token)
        .send()
        .await?;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        response.status().as_u16(),
        challenge,
        response.json().await?,
    ))
}

#[tokio::test]
async fn an_id_token_says_who_signed_in_when_and_for_which_request() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("oidc");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let client_id = relying_party(&server, json!({})).await?;
    let requested_at = unix_now();
    let tokens = approved(
        &server,
        &person,
        &client_id,
        &[("scope", "openid email"), ("nonce", "n-0S6_WzA2Mj")],
    )
    .await?;
    let id_token = tokens["id_token"].as_str().context("no id_token")?;
    let access_token = tokens["access_token"].as_str().context("access_token")?;
    let (header, claims) = verify_jwt(&server, id_token, &client_id).await?;
    assert_eq!(header["alg"], "RS256", "OpenID Connect's default");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["azp"], client_id.as_str());
    assert_eq!(claims["at_hash"], at_hash(access_token));
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(claims["email_verified"], true);
    assert!(claims.get("name").is_none(), "no profile scope: {claims}");
    let auth_time = claims["auth_time"].as_i64().context("auth_time")?;
    let iat = claims["iat"].as_i64().context("iat")?;
    assert!(
        auth_time <= requested_at && auth_time <= iat && requested_at - auth_time < 60,
        "auth_time is when the person signed in: {claims}"
    );

    // userinfo, by GET and by POST, says the same of the person.
    let (status, _, info) = userinfo(&server, access_token).await?;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["email"], email.as_str());
    let posted: Value = reqwest::Client::new()
        .post(server.url("/oauth/userinfo"))
        .form(&[("access_token", access_token)])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(posted, info);

    // Without openid there is no ID token, and userinfo refuses the token.
    let plain = approved(&server, &person, &client_id, &[("scope", "offline_access")]).await?;
    assert!(plain.get("id_token").is_none(), "{plain}");
    let (status, challenge, body) =
        userinfo(&server, plain["access_token"].as_str().context("at")?).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer error=\"insufficient_scope\"")
    );

    // A garbled token, an ID token, and a revoked access token are all invalid_token.
    let revoked = reqwest::Client::new()
        .post(server.url("/oauth/revoke"))
        .form(&[("token", access_token), ("client_id", &client_id)])
        .send()
        .await?;
    assert_eq!(revoked.status(), 200);
    for token in ["garbage", id_token, access_token] {
        let (status, challenge, body) = userinfo(&server, token).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{token}"
        );
        assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
    }
    let missing = reqwest::get(server.url("/oauth/userinfo")).await?;
    assert_eq!(missing.status(), 401);

    // A nonce with control characters is refused before any page.
    let (_, refused) = authorize(&person, &client_id, &[("nonce", "a\nb")], false)
        .await?
        .callback()?;
    assert_eq!(param(&refused, "error"), Some("invalid_request"));
    Ok(())
}

#[tokio::test]
async fn the_profile_scope_shares_the_name_given_at_sign_up() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("named");
    let person = Person::new(&server)?;
    let form = person.get("/signup").await?;
    let signed_up = person
        .post_form(
            "/signup",
            &[
                ("csrf", &form.csrf()?),
                ("name", "  Ada Lovelace "),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await?;
    assert_eq!(signed_up.status, 200, "{}", signed_up.html);
    person.open_verification_link(&server, &email).await?;
    person.sign_in(&email, PASSWORD).await?;
    let client_id = relying_party(&server, json!({})).await?;
    let tokens = approved(&server, &person, &client_id, &[("scope", "openid profile")]).await?;
    let (_, claims) = verify_jwt(
        &server,
        tokens["id_token"].as_str().context("id")?,
        &client_id,
    )
    .await?;
    assert_eq!(claims["name"], "Ada Lovelace");
    assert!(claims.get("email").is_none(), "no email scope: {claims}");

    // A name that is not one is refused, and no account is made.
    let other = Person::new(&server)?;
    let form = other.get("/signup").await?;
    let refused = other
        .post_form(
            "/signup",
            &[
                ("csrf", &form.csrf()?),
                ("name", "bad\u{7}name"),
                ("email", &unique_email("badname")),
                ("password", PASSWORD),
            ],
        )
        .await?;
    assert_eq!(refused.status, 400);
    assert!(
        refused.contains("at most 100 characters"),
        "{}",
        refused.html
    );
    Ok(())
}

#[tokio::test]
async fn prompt_and_max_age_decide_whether_the_person_signs_in_again() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("prompt");
    let client_id = relying_party(&server, json!({})).await?;

    // Nobody signed in: prompt=none answers login_required, with state and iss.
    let stranger = Person::new(&server)?;
    let (_, query) = authorize(&stranger, &client_id, &[("prompt", "none")], false)
        .await?
        .callback()?;
    assert_eq!(param(&query, "error"), Some("login_required"));
    assert_eq!(param(&query, "state"), Some("st-1"));
    assert_eq!(param(&query, "iss"), Some(server.url.as_str()));

    // Signed in, never approved: consent_required. Approved once: a code with no page.
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let (_, query) = authorize(&person, &client_id, &[("prompt", "none")], false)
        .await?
        .callback()?;
    assert_eq!(param(&query, "error"), Some("consent_required"));
    let first = approved(&server, &person, &client_id, &[("scope", "openid")]).await?;
    let silent = authorize(
        &person,
        &client_id,
        &[("prompt", "none"), ("scope", "openid")],
        false,
    )
    .await?
    .callback()?;
    let again = exchange(&server, &client_id, silent).await?;
    let (_, first_claims) = verify_jwt(
        &server,
        first["id_token"].as_str().context("id")?,
        &client_id,
    )
    .await?;
    let (_, silent_claims) = verify_jwt(
        &server,
        again["id_token"].as_str().context("id")?,
        &client_id,
    )
    .await?;
    assert_eq!(
        silent_claims["auth_time"], first_claims["auth_time"],
        "the same sign-in"
    );
    // A wider scope than approved is not silent.
    let (_, query) = authorize(
        &person,
        &client_id,
        &[("prompt", "none"), ("scope", "openid email")],
        false,
    )
    .await?
    .callback()?;
    assert_eq!(param(&query, "error"), Some("consent_required"));

    // prompt=login shows the sign-in form even to a signed-in person; once signed in again,
    // consent follows and the ID token's auth_time is the new sign-in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let page = authorize(
        &person,
        &client_id,
        &[("prompt", "login"), ("scope", "openid")],
        false,
    )
    .await?
    .page()?;
    assert!(
        page.url.contains("/signin?") && page.url.contains("again=true"),
        "{}",
        page.url
    );
    let next = page.input("next").context("next")?;
    assert!(
        !next.contains("prompt"),
        "the sign-in's way back drops prompt: {next}"
    );
    let before_sign_in = unix_now();
    let consent_page = person
        .post_form(
            "/signin",
            &[
                ("csrf", &page.csrf()?),
                ("email", &email),
                ("password", PASSWORD),
                ("next", &next),
            ],
        )
        .await?;
    assert!(
        consent_page.input("request").is_some(),
        "{}",
        consent_page.html
    );
    let (_, claims) = {
        let tokens = approved(&server, &person, &client_id, &[("scope", "openid")]).await?;
        verify_jwt(
            &server,
            tokens["id_token"].as_str().context("id")?,
            &client_id,
        )
        .await?
    };
    assert!(
        claims["auth_time"].as_i64().context("auth_time")? >= before_sign_in,
        "{claims}"
    );

    // A sign-in older than max_age must be repeated; with prompt=none it is login_required.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let page = authorize(&person, &client_id, &[("max_age", "1")], false)
        .await?
        .page()?;
    assert!(page.url.contains("/signin?"), "{}", page.url);
    let (_, query) = authorize(
        &person,
        &client_id,
        &[("prompt", "none"), ("max_age", "1")],
        false,
    )
    .await?
    .callback()?;
    assert_eq!(param(&query, "error"), Some("login_required"));

    // Nonsense is invalid_request, sent back to the client.
    for bad in [
        [("prompt", "none login")],
        [("prompt", "select_account")],
        [("max_age", "soon")],
    ] {
        let (_, query) = authorize(&person, &client_id, &bad, false)
            .await?
            .callback()?;
        assert_eq!(param(&query, "error"), Some("invalid_request"), "{bad:?}");
    }
    Ok(())
}

/// Whether `person` still has a session.
async fn signed_in(person: &Person) -> Result<bool> {
    Ok(person.me().await.is_ok())
}

#[tokio::test]
async fn logout_signs_out_only_on_proof_and_returns_only_where_registered() -> Result<()> {
    let server = Server::start(bin()).await?;
    let back = LoopbackCallback::start().await?;
    let client_id = relying_party(
        &server,
        json!({ "post_logout_redirect_uris": [back.redirect_uri()] }),
    )
    .await?;
    let email = unique_email("logout");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let tokens = approved(&server, &person, &client_id, &[("scope", "openid")]).await?;
    let hint = tokens["id_token"].as_str().context("id_token")?.to_owned();
    let logout = |params: &[(&str, &str)]| {
        let mut url = url::Url::parse(&server.url("/oauth/logout")).expect("url");
        url.query_pairs_mut().extend_pairs(params);
        url.to_string()
    };

    // Somewhere not registered, exactly: refused on a page, still signed in.
    for elsewhere in [
        "https://evil.example/".to_owned(),
        format!("{}/", back.redirect_uri()),
        back.redirect_uri().replace("127.0.0.1", "localhost"),
    ] {
        let page = person
            .get(&logout(&[
                ("id_token_hint", &hint),
                ("post_logout_redirect_uri", &elsewhere),
            ]))
            .await?;
        assert_eq!(page.status, 400, "{elsewhere}: {}", page.html);
        assert!(page.contains("not registered"), "{}", page.html);
    }
    // A registered URI with no way to tell the client is refused too.
    let page = person
        .get(&logout(&[(
            "post_logout_redirect_uri",
            &back.redirect_uri(),
        )]))
        .await?;
    assert_eq!(page.status, 400);
    assert!(signed_in(&person).await?);

    // A hint from another issuer, or a tampered one, is refused.
    let elsewhere = Server::start(bin()).await?;
    let other_person =
        Person::verified_account(&elsewhere, &unique_email("else"), PASSWORD).await?;
    let other_client = relying_party(&elsewhere, json!({})).await?;
    let foreign = approved(
        &elsewhere,
        &other_person,
        &other_client,
        &[("scope", "openid")],
    )
    .await?;
    let mut parts: Vec<String> = hint.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(r#"{"sub":"usr_someone_else"}"#);
    for bad in [
        foreign["id_token"].as_str().context("id")?.to_owned(),
        parts.join("."),
    ] {
        let page = person.get(&logout(&[("id_token_hint", &bad)])).await?;
        assert_eq!(page.status, 400, "{}", page.html);
    }
    assert!(signed_in(&person).await?);

    // No proof (no hint, or the hint of someone else): the person is asked, not signed out.
    let someone = Person::verified_account(&server, &unique_email("someone"), PASSWORD).await?;
    let theirs = approved(&server, &someone, &client_id, &[("scope", "openid")]).await?;
    for params in [
        vec![("client_id", client_id.as_str())],
        vec![("id_token_hint", theirs["id_token"].as_str().context("id")?)],
    ] {
        let page = person.get(&logout(&params)).await?;
        assert!(page.contains("Sign out?"), "{}", page.html);
        assert!(page.contains("Dashboard"));
    }
    assert!(signed_in(&person).await?);

    // The confirmation cannot be pressed from another site.
    let page = person.get(&logout(&[("client_id", &client_id)])).await?;
    let cross_site = person
        .http
        .post(server.url("/oauth/logout/confirm"))
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf", page.csrf()?.as_str()),
            ("request", &page.input("request").context("request")?),
            ("decision", "approve"),
        ])
        .send()
        .await?;
    assert_eq!(cross_site.status(), 403);
    assert!(signed_in(&person).await?);

    // The person's own ID token: signed out at once, back where registered, with state.
    let done = person
        .get(&logout(&[
            ("id_token_hint", &hint),
            ("post_logout_redirect_uri", &back.redirect_uri()),
            ("state", "bye-1"),
        ]))
        .await?;
    assert_eq!(done.html, "ok", "{}", done.url);
    assert_eq!(back.received().await?, "/callback?state=bye-1");
    assert!(!signed_in(&person).await?);

    // Confirmed by the person, without a hint: signed out, on the issuer's own page.
    person.sign_in(&email, PASSWORD).await?;
    let page = person.get(&logout(&[])).await?;
    let done = person
        .post_form(
            "/oauth/logout/confirm",
            &[
                ("csrf", &page.csrf()?),
                ("request", &page.input("request").context("request")?),
                ("decision", "approve"),
            ],
        )
        .await?;
    assert!(done.contains("You are signed out"), "{}", done.html);
    assert!(!signed_in(&person).await?);
    Ok(())
}

#[tokio::test]
async fn clients_choose_their_algorithms_and_the_gate_verifies_all_three() -> Result<()> {
    let server = issuer().await?;
    let upstream = answering_upstream().await?;
    let (_gate, gate_url) = gate(&server, &upstream, &[]).await?;
    let person = Person::verified_account(&server, &unique_email("algs"), PASSWORD).await?;
    let mut issued = Vec::new();
    for alg in ["EdDSA", "RS256", "ES256"] {
        let client_id = relying_party(
            &server,
            json!({
                "id_token_signed_response_alg": alg,
                "access_token_signed_response_alg": alg,
            }),
        )
        .await?;
        let tokens = approved(
            &server,
            &person,
            &client_id,
            &[("scope", "openid"), ("resource", &gate_url)],
        )
        .await?;
        let access_token = tokens["access_token"].as_str().context("access_token")?;
        let (header, _) = verify_jwt(&server, access_token, &gate_url).await?;
        assert_eq!(
            (header["alg"].as_str(), header["typ"].as_str()),
            (Some(alg), Some("at+jwt"))
        );
        let (header, _) = verify_jwt(
            &server,
            tokens["id_token"].as_str().context("id")?,
            &client_id,
        )
        .await?;
        assert_eq!(header["alg"], alg);
        let through = reqwest::Client::new()
            .get(format!("{gate_url}/anything"))
            .bearer_auth(access_token)
            .send()
            .await?;
        assert_eq!(through.status(), 200, "the gate accepts {alg}");

        // The same token with its header claiming another algorithm is refused.
        let other = if alg == "RS256" { "ES256" } else { "RS256" };
        let (_, rest) = access_token.split_once('.').context("jwt")?;
        let kid = header["kid"].as_str().context("kid")?;
        let swapped =
            URL_SAFE_NO_PAD.encode(json!({"alg": other, "typ": "at+jwt", "kid": kid}).to_string());
        let refused = reqwest::Client::new()
            .get(format!("{gate_url}/anything"))
            .bearer_auth(format!("{swapped}.{rest}"))
            .send()
            .await?;
        assert_eq!(refused.status(), 401, "{alg} relabelled {other}");
        issued.push((access_token.to_owned(), gate_url.clone(), alg));
        let id_token = tokens["id_token"].as_str().context("id")?;
        issued.push((id_token.to_owned(), client_id, alg));
    }
    // Two more independent implementations read every one of them.
    let verified = verified_by_pyjwt_and_joserfc(&server, &issued).await?;
    let read = verified["verified"].as_array().context("verified")?;
    assert_eq!(read.len(), 6, "{verified}");
    let (_, claims) = verify_jwt(&server, &issued[0].0, &gate_url).await?;
    for entry in read {
        assert_eq!(
            (&entry[1], &entry[2]),
            (&claims["sub"], &claims["sub"]),
            "{entry}"
        );
    }

    // An algorithm this issuer does not sign with cannot be registered.
    let refused = reqwest::Client::new()
        .post(server.url("/oauth/register"))
        .json(&json!({
            "redirect_uris": ["http://127.0.0.1/callback"],
            "id_token_signed_response_alg": "none",
        }))
        .send()
        .await?;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "invalid_client_metadata");
    Ok(())
}

#[tokio::test]
async fn a_deployment_chooses_the_access_token_algorithm() -> Result<()> {
    let server = Server::start_with_config(bin(), "", &["--access-token-alg", "ES256"]).await?;
    let person = Person::verified_account(&server, &unique_email("deploy"), PASSWORD).await?;
    let client_id = relying_party(&server, json!({})).await?;
    let tokens = approved(&server, &person, &client_id, &[("scope", "openid")]).await?;
    let (header, _) = verify_jwt(
        &server,
        tokens["access_token"].as_str().context("at")?,
        &server.url,
    )
    .await?;
    assert_eq!(header["alg"], "ES256");
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(tokens["access_token"].as_str().context("at")?)
        .send()
        .await?;
    assert_eq!(me.status(), 200, "the issuer's own API takes ES256 tokens");

    let data = tempfile::tempdir()?;
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--access-token-alg",
                "HS256",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    ensure!(!refused.status.success(), "serve started with HS256");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not EdDSA, RS256 or ES256"), "{stderr}");
    Ok(())
}
