//! The authorization-code and refresh-token grants at the service, on the test clock: a code
//! buys tokens once, before it expires, for its own client, redirect URI and PKCE verifier; a
//! refresh token rotates on every use, and a spent one presented again ends its whole family.

use std::time::Duration;

use latchkey_core::{
    OAuthError,
    oauth::{CLI_CLIENT_ID, authorize::AuthorizationRequest, token::TokenRequest},
};
use latchkey_proto::{
    oauth::{OAuthErrorCode, TokenResponse},
    pkce::CodeChallenge,
};

use crate::Harness;

pub(crate) const VERIFIER: &str = "a-verifier-of-more-than-forty-three-characters-0123456789";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:54321/callback";

/// A harness with signing keys and the built-in CLI client.
pub(crate) async fn harness() -> Harness {
    let h = Harness::new().await;
    h.service.load_signing_keys().await.expect("keys");
    h.service.ensure_declared_clients().await.expect("clients");
    h
}

/// A code the person approved for the CLI client, with `VERIFIER`'s challenge.
pub(crate) async fn approved_code(h: &Harness, email: &str) -> String {
    let user = h.verified_user(email).await;
    let valid = h
        .service
        .check_authorization_request(&AuthorizationRequest {
            response_type: Some("code".into()),
            client_id: Some(CLI_CLIENT_ID.into()),
            redirect_uri: Some(REDIRECT.into()),
            state: Some("state-1".into()),
            scope: Some("openid offline_access".into()),
            code_challenge: Some(CodeChallenge::s256(VERIFIER).as_str().to_owned()),
            code_challenge_method: Some("S256".into()),
            ..AuthorizationRequest::default()
        })
        .await
        .unwrap_or_else(|_| panic!("a valid authorization request"));
    let back = h
        .service
        .grant_authorization_code(&valid, &user, h.service.now())
        .await
        .expect("granted");
    back.query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code.into_owned())
        .expect("a code in the redirect")
}

pub(crate) fn exchange(code: &str, verifier: &str, redirect_uri: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code.into()),
        code_verifier: Some(verifier.into()),
        redirect_uri: Some(redirect_uri.into()),
        client_id: Some(CLI_CLIENT_ID.into()),
        ..TokenRequest::default()
    }
}

pub(crate) fn refresh(token: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(token.into()),
        client_id: Some(CLI_CLIENT_ID.into()),
        ..TokenRequest::default()
    }
}

pub(crate) fn refresh_token_of(response: &TokenResponse) -> String {
    response.refresh_token.clone().expect("a refresh token")
}

pub(crate) fn is_invalid_grant(answer: &Result<TokenResponse, OAuthError>) -> bool {
    matches!(
        answer,
        Err(OAuthError::Protocol {
            code: OAuthErrorCode::InvalidGrant,
            ..
        })
    )
}

#[tokio::test]
async fn a_code_buys_tokens_once_and_its_reuse_ends_what_it_bought() {
    let h = harness().await;
    let code = approved_code(&h, "code-once@example.com").await;
    let tokens = h
        .service
        .token(exchange(&code, VERIFIER, REDIRECT), None)
        .await
        .expect("the first exchange");
    assert!(tokens.id_token.is_some(), "openid was granted");
    let again = h
        .service
        .token(exchange(&code, VERIFIER, REDIRECT), None)
        .await;
    assert!(is_invalid_grant(&again), "{again:?}");
    let after_replay = h
        .service
        .token(refresh(&refresh_token_of(&tokens)), None)
        .await;
    assert!(
        is_invalid_grant(&after_replay),
        "a replayed code revokes the tokens it bought: {after_replay:?}"
    );
}

#[tokio::test]
async fn a_code_is_bound_to_its_verifier_its_redirect_and_its_lifetime() {
    let h = harness().await;
    let wrong_verifier = approved_code(&h, "code-pkce@example.com").await;
    let answer = h
        .service
        .token(
            exchange(&wrong_verifier, &format!("{VERIFIER}x"), REDIRECT),
            None,
        )
        .await;
    assert!(is_invalid_grant(&answer), "{answer:?}");

    let wrong_redirect = approved_code(&h, "code-redirect@example.com").await;
    let answer = h
        .service
        .token(
            exchange(&wrong_redirect, VERIFIER, "http://127.0.0.1:54321/other"),
            None,
        )
        .await;
    assert!(is_invalid_grant(&answer), "{answer:?}");

    let late = approved_code(&h, "code-late@example.com").await;
    h.clock.advance(Duration::from_secs(61));
    let answer = h
        .service
        .token(exchange(&late, VERIFIER, REDIRECT), None)
        .await;
    assert!(is_invalid_grant(&answer), "an expired code: {answer:?}");
}

#[tokio::test]
async fn a_refresh_token_rotates_and_a_spent_one_ends_its_family() {
    let h = harness().await;
    let code = approved_code(&h, "rotate@example.com").await;
    let first = h
        .service
        .token(exchange(&code, VERIFIER, REDIRECT), None)
        .await
        .expect("tokens");
    let second = h
        .service
        .token(refresh(&refresh_token_of(&first)), None)
        .await
        .expect("a rotation");
    assert_ne!(refresh_token_of(&first), refresh_token_of(&second));
    assert_ne!(first.access_token, second.access_token);

    // The spent token again: refused, and the live one of its family with it.
    let replayed = h
        .service
        .token(refresh(&refresh_token_of(&first)), None)
        .await;
    assert!(is_invalid_grant(&replayed), "{replayed:?}");
    let live = h
        .service
        .token(refresh(&refresh_token_of(&second)), None)
        .await;
    assert!(
        is_invalid_grant(&live),
        "the whole family ends on a replay: {live:?}"
    );
}

#[tokio::test]
async fn a_refresh_token_lapses_after_its_lifetime() {
    let h = harness().await;
    let code = approved_code(&h, "lapse@example.com").await;
    let tokens = h
        .service
        .token(exchange(&code, VERIFIER, REDIRECT), None)
        .await
        .expect("tokens");
    h.clock.advance(Duration::from_secs(29 * 24 * 3600));
    let rotated = h
        .service
        .token(refresh(&refresh_token_of(&tokens)), None)
        .await
        .expect("still live after 29 days");
    h.clock.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    let lapsed = h
        .service
        .token(refresh(&refresh_token_of(&rotated)), None)
        .await;
    assert!(is_invalid_grant(&lapsed), "{lapsed:?}");
}
