//! OpenID Connect relying-party libraries no one here wrote, run as their users run them:
//! openid-client (npm, OpenID certified) and authlib (PyPI) discover latchkey, register, sign a
//! person in with code + PKCE + nonce, validate the ID token and userinfo by their own rules,
//! and send the person to RP-initiated logout; authlib's discovery validators pass; PyJWT and
//! joserfc verify tokens of every algorithm.

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{LoopbackCallback, Person, Server, unique_email};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    PASSWORD, bin,
    mcp::{drive_login, python_in, repo_root},
};

fn openid_client() -> Result<Command> {
    ensure!(
        repo_root()
            .join("tests/oidc/node_modules/openid-client")
            .exists(),
        "openid-client is missing: run the README test command, which installs it"
    );
    let mut command = Command::new("node");
    command.arg(repo_root().join("tests/oidc/openid_client.mjs"));
    Ok(command)
}

fn oidc_python(script: &str) -> Result<Command> {
    let mut command = Command::new(python_in(".venv-oidc")?);
    command.arg(repo_root().join("tests/oidc").join(script));
    Ok(command)
}

/// Sends `person` to the logout URL a library built; checks they come back to `back` with
/// `state` and are signed out.
async fn logout_through(
    person: &Person,
    end_session: &str,
    back: LoopbackCallback,
    state: &str,
) -> Result<()> {
    let page = person.get(end_session).await?;
    ensure!(
        page.html == "ok",
        "logout did not return to the client: {} {}",
        page.url,
        page.html
    );
    assert_eq!(back.received().await?, format!("/callback?state={state}"));
    assert!(person.me().await.is_err(), "the person is signed out");
    Ok(())
}

#[tokio::test]
async fn openid_client_signs_a_person_in_and_out_with_every_id_token_algorithm() -> Result<()> {
    let server = Server::start(bin()).await?;
    for alg in ["RS256", "ES256", "EdDSA"] {
        let email = unique_email("openid-client");
        let person = Person::verified_account(&server, &email, PASSWORD).await?;
        let callback = LoopbackCallback::start().await?;
        let back = LoopbackCallback::start().await?;
        let mut command = openid_client()?;
        command
            .arg(&server.url)
            .arg(callback.redirect_uri())
            .arg(back.redirect_uri())
            .arg(alg);
        let signed_in = drive_login(command, &person, callback, |_, url| Ok(url.to_owned()))
            .await
            .with_context(|| format!("openid-client with {alg}"))?;
        assert_eq!(signed_in["alg"], alg);
        let claims = &signed_in["claims"];
        assert_eq!(claims["iss"], server.url.as_str());
        assert_eq!(claims["aud"], signed_in["client_id"]);
        assert_eq!(claims["email"], email.as_str());
        assert_eq!(signed_in["userinfo"]["sub"], claims["sub"]);
        assert_eq!(signed_in["userinfo"]["email_verified"], true);
        let end_session = signed_in["end_session"].as_str().context("end_session")?;
        logout_through(&person, end_session, back, "signed-out-by-openid-client").await?;
    }
    Ok(())
}

#[tokio::test]
async fn authlib_validates_the_discovery_document_and_signs_a_person_in_and_out() -> Result<()> {
    let server = Server::start(bin()).await?;
    let email = unique_email("authlib");
    let person = Person::verified_account(&server, &email, PASSWORD).await?;
    let callback = LoopbackCallback::start().await?;
    let back = LoopbackCallback::start().await?;
    let mut command = oidc_python("authlib_client.py")?;
    command
        .arg(&server.url)
        .arg(callback.redirect_uri())
        .arg(back.redirect_uri());
    let signed_in = drive_login(command, &person, callback, |_, url| Ok(url.to_owned()))
        .await
        .context("authlib")?;
    let claims = &signed_in["claims"];
    assert_eq!(claims["aud"], signed_in["client_id"]);
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(signed_in["userinfo"]["email"], email.as_str());
    let end_session = signed_in["end_session"].as_str().context("end_session")?;
    logout_through(&person, end_session, back, "signed-out-by-authlib").await
}

/// PyJWT and joserfc each verify `tokens` (token, audience, algorithm) against `server`'s JWKS;
/// the subjects they read.
pub async fn verified_by_pyjwt_and_joserfc(
    server: &Server,
    tokens: &[(String, String, &str)],
) -> Result<Value> {
    use tokio::io::AsyncWriteExt;
    let request = json!({
        "jwks_uri": server.url("/.well-known/jwks.json"),
        "issuer": server.url,
        "tokens": tokens
            .iter()
            .map(|(token, audience, alg)| json!({"token": token, "audience": audience, "alg": alg}))
            .collect::<Vec<_>>(),
    });
    let mut child = oidc_python("verify_jwts.py")?
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await??;
    ensure!(
        output.status.success(),
        "PyJWT or joserfc refused a token:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}
