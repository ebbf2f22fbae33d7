//! Revoked is revoked: an access token whose login was signed out or revoked (a replayed code)
//! is refused by the issuer at once, by `/v1/me` and by introspection alike, not an hour later.

use anyhow::{Context, Result};
use latchkey_testkit::{Person, Server, unique_email};
use oauth2::TokenResponse;
use serde_json::Value;

use crate::{
    PASSWORD,
    cli_login::refresh_with,
    gate_proxy::{GATE_SECRET, answering_upstream, gate, issuer, server_with_gate},
    oauth::{approved_code, http, token_pair},
};

async fn me_status(server: &Server, access: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(access)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn introspected(server: &Server, token: &str) -> Result<Value> {
    Ok(reqwest::Client::new()
        .post(server.url("/oauth/introspect"))
        .basic_auth("gate", Some(GATE_SECRET))
        .form(&[("token", token)])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test]
async fn a_signed_out_login_s_access_token_is_refused_at_once() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("signed-out"), PASSWORD).await?;
    let (access, refresh) = token_pair(&server, &person).await?;
    let (other_access, _) = token_pair(&server, &person).await?;
    assert_eq!(me_status(&server, &access).await?.0, 200);
    assert_eq!(introspected(&server, &access).await?["active"], true);

    let revoked = reqwest::Client::new()
        .post(server.url("/oauth/revoke"))
        .form(&[("token", refresh.as_str()), ("client_id", "latchkey-cli")])
        .send()
        .await?;
    assert_eq!(revoked.status(), 200);

    let (status, body) = me_status(&server, &access).await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    assert!(
        body["message"]
            .as_str()
            .context("message")?
            .contains("revoked"),
        "{body}"
    );
    assert_eq!(introspected(&server, &access).await?["active"], false);
    // Another login of the same person is untouched.
    assert_eq!(me_status(&server, &other_access).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_replayed_code_revokes_the_access_token_it_first_bought() -> Result<()> {
    let approved = approved_code("replayed").await?;
    let verifier = || oauth2::PkceCodeVerifier::new(approved.verifier.secret().clone());
    let tokens = approved
        .client
        .exchange_code(approved.code.clone())
        .set_pkce_verifier(verifier())
        .request_async(&http()?)
        .await?;
    let access = tokens.access_token().secret().clone();
    assert_eq!(me_status(&approved.server, &access).await?.0, 200);

    let replay = approved
        .client
        .exchange_code(approved.code.clone())
        .set_pkce_verifier(verifier())
        .request_async(&http()?)
        .await;
    assert!(replay.is_err(), "a code works once");
    assert_eq!(me_status(&approved.server, &access).await?.0, 401);
    Ok(())
}

#[tokio::test]
async fn a_second_login_to_the_same_account_revokes_the_first() -> Result<()> {
    let server = latchkey_testkit::Server::start(crate::bin()).await?;
    let person = Person::verified_account(&server, &unique_email("twice"), PASSWORD).await?;
    let cli = latchkey_testkit::CliHome::new(crate::bin(), &server.url)?;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let login = cli.start_token_flow_login(&[]).await?;
        person.approve(&login.url).await?;
        let (status, stdout, stderr) = login.finish().await?;
        assert!(status.success(), "{stdout}\n{stderr}");
        let token = cli.run(&["token"]).await?;
        keys.push(String::from_utf8(token.stdout)?.trim().to_owned());
    }
    assert_ne!(keys[0], keys[1]);
    assert_eq!(me_status(&server, &keys[1]).await?.0, 200);
    assert_eq!(
        me_status(&server, &keys[0]).await?.0,
        401,
        "the replaced login's key was revoked, not left alive and invisible"
    );
    assert_eq!(person.api_key_count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_access_token_revoked_on_its_own_is_refused_by_the_issuer_at_once() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("rfc7009"), PASSWORD).await?;
    let (access, refresh) = token_pair(&server, &person).await?;
    let revoke = |client: Option<&str>, client_id: &str| {
        let mut request = reqwest::Client::new()
            .post(server.url("/oauth/revoke"))
            .form(&[("token", access.as_str()), ("client_id", client_id)]);
        if let Some(secret) = client {
            request = request.basic_auth(client_id, Some(secret));
        }
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    };

    // Another client cannot revoke it (RFC 7009 §2.1): 200, and nothing changes.
    assert_eq!(revoke(Some(GATE_SECRET), "gate").await?, 200);
    assert_eq!(me_status(&server, &access).await?.0, 200);

    assert_eq!(revoke(None, "latchkey-cli").await?, 200);
    let (status, body) = me_status(&server, &access).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(introspected(&server, &access).await?["active"], false);

    // Only that token: its login still refreshes, and the new token works.
    let (status, refreshed) = refresh_with(&server, &refresh).await?;
    assert_eq!(status, 200, "{refreshed}");
    let fresh = refreshed["access_token"].as_str().context("access token")?;
    assert_eq!(me_status(&server, fresh).await?.0, 200);
    Ok(())
}

pub(crate) async fn through_gate(gate_url: &str, token: &str) -> Result<u16> {
    Ok(reqwest::Client::new()
        .get(format!("{gate_url}/api"))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

/// How long after `revoked` the gate first refuses `token` (polled every 50 ms, 5 s at most).
pub(crate) async fn refused_after(
    gate_url: &str,
    token: &str,
    revoked: std::time::Instant,
) -> Result<std::time::Duration> {
    for _ in 0..100 {
        if through_gate(gate_url, token).await? == 401 {
            return Ok(revoked.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("the gate still accepts the revoked token after 5 s")
}

pub(crate) async fn revoke(server: &Server, token: &str) -> Result<()> {
    reqwest::Client::new()
        .post(server.url("/oauth/revoke"))
        .form(&[("token", token), ("client_id", "latchkey-cli")])
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

#[tokio::test]
async fn a_standalone_gate_refuses_revoked_tokens_within_two_seconds() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("feed"), PASSWORD).await?;
    let (_gate, gate_url) = gate(&server, &answering_upstream().await?, &[]).await?;

    // One token revoked on its own (RFC 7009), and a whole login signed out.
    let (single, _) = token_pair(&server, &person).await?;
    let (of_login, refresh) = token_pair(&server, &person).await?;
    assert_eq!(through_gate(&gate_url, &single).await?, 200);
    assert_eq!(
        through_gate(&gate_url, &of_login).await?,
        200,
        "and now cached"
    );
    for (token, revoked) in [(&single, &single), (&of_login, &refresh)] {
        let at = std::time::Instant::now();
        revoke(&server, revoked).await?;
        let after = refused_after(&gate_url, token, at).await?;
        assert!(
            after < std::time::Duration::from_secs(2),
            "refused after {after:?}"
        );
    }
    // The control: a token nobody revoked still passes.
    let (live, _) = token_pair(&server, &person).await?;
    assert_eq!(through_gate(&gate_url, &live).await?, 200);
    Ok(())
}

#[tokio::test]
async fn the_gate_inside_the_server_refuses_a_revoked_token_at_once() -> Result<()> {
    let (server, gate_url) = server_with_gate(&answering_upstream().await?).await?;
    let person = Person::verified_account(&server, &unique_email("feed-inside"), PASSWORD).await?;
    let (access, refresh) = token_pair(&server, &person).await?;
    assert_eq!(through_gate(&gate_url, &access).await?, 200);
    revoke(&server, &refresh).await?;
    assert_eq!(
        through_gate(&gate_url, &access).await?,
        401,
        "no feed to wait for"
    );
    Ok(())
}
