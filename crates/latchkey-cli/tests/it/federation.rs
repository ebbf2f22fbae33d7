//! Keyless CI: a CI job's OIDC token (signed by the testkit's OIDC stand-in, shaped like
//! GitHub Actions') is exchanged for a short-lived access token of an org, with no secret
//! stored anywhere; it passes the gate. Every mismatch is refused and recorded nowhere; every
//! exchange that succeeds is recorded.

use anyhow::{Context, Result};
use latchkey_testkit::{OidcStandIn, Person, count_rows, unique_email};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    PASSWORD,
    gate_proxy::{server_with_gate_flags, upstream},
};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// What a GitHub Actions job's token says, for `repository` on `git_ref`.
pub(crate) fn job_claims(issuer: &str, repository: &str, git_ref: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    json!({
        "iss": issuer,
        "aud": "latchkey-ci",
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository,
        "ref": git_ref,
        "workflow": "deploy",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    })
}

/// A server with its gate (with `config` and `flags` besides), trusting `idp`'s tokens from
/// `acme/app` on any branch for a new org (made by its owner): the server, the gate's URL and
/// the org's slug and id.
pub(crate) async fn trusting_server(
    idp: &OidcStandIn,
    config: &str,
    flags: &[&str],
) -> Result<(latchkey_testkit::Server, String, String, String)> {
    let slug = unique_email("ci")
        .split('@')
        .next()
        .unwrap_or("ci")
        .to_owned();
    let trust = format!(
        "[[trusted_issuers]]\nid = \"gha\"\nissuer = \"{}\"\naudience = \"latchkey-ci\"\n\
         org = \"{slug}\"\nscopes = [\"deploy\", \"read\"]\nmax_lifetime_secs = 300\n\
         [trusted_issuers.claims]\nrepository = \"acme/app\"\nref = \"refs/heads/*\"\n",
        idp.issuer
    );
    let config = format!("{trust}{config}");
    let (server, gate) = server_with_gate_flags(&upstream().await?, &config, flags).await?;
    let owner = Person::verified_account(&server, &unique_email("owner"), PASSWORD).await?;
    let org_id = owner.create_org(&slug).await?;
    Ok((server, gate, slug, org_id))
}

/// What the upstream behind `gate` was told of the caller bearing `token`.
pub(crate) async fn through_gate(gate: &str, token: &str) -> Result<Value> {
    Ok(reqwest::Client::new()
        .get(format!("{gate}/echo"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test]
async fn a_ci_job_trades_its_oidc_token_for_an_org_token_that_passes_the_gate() -> Result<()> {
    let idp = OidcStandIn::start("unused", "unused").await?;
    let (server, gate, _, org_id) = trusting_server(&idp, "", &[]).await?;

    let exchange = |subject: String, scope: Option<&'static str>| {
        let url = server.url("/oauth/token");
        async move {
            let mut form = vec![
                ("grant_type", EXCHANGE.to_owned()),
                ("client_id", "latchkey-cli".to_owned()),
                ("subject_token", subject),
                ("subject_token_type", JWT.to_owned()),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope.to_owned()));
            }
            let response = reqwest::Client::new().post(url).form(&form).send().await?;
            anyhow::Ok((response.status(), response.json::<Value>().await?))
        }
    };
    let recorded = || {
        count_rows(
            &server.database_url,
            "SELECT COUNT(*) FROM federated_exchanges",
        )
    };

    // The job on main: an org token, at most 5 minutes, with the trust's scopes.
    let main = job_claims(&idp.issuer, "acme/app", "refs/heads/main");
    let (status, token) = exchange(idp.sign(&main)?, None).await?;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["scope"], "deploy read");
    assert!(
        token["expires_in"].as_u64().is_some_and(|s| s <= 300),
        "{token}"
    );
    assert!(token.get("refresh_token").is_none());
    let access = token["access_token"].as_str().context("access_token")?;
    let through = through_gate(&gate, access).await?;
    assert_eq!(through["org"], org_id.as_str(), "{through}");
    assert_eq!(through["user"], "federated:gha", "{through}");
    assert_eq!(recorded().await?, 1);
    let audit_subject = count_rows(
        &server.database_url,
        "SELECT COUNT(*) FROM federated_exchanges \
         WHERE subject = 'repo:acme/app:ref:refs/heads/main' AND trusted_issuer = 'gha'",
    )
    .await?;
    assert_eq!(audit_subject, 1);
    // Narrower scopes may be asked for, wider ones not.
    let (status, narrowed) = exchange(idp.sign(&main)?, Some("deploy")).await?;
    assert_eq!(
        (status, &narrowed["scope"]),
        (StatusCode::OK, &json!("deploy"))
    );
    let (status, widened) = exchange(idp.sign(&main)?, Some("admin")).await?;
    assert_eq!(
        (status, &widened["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_scope"))
    );
    // The trust fixes the org: naming another is refused, naming its own is fine.
    let (status, elsewhere) = exchange(idp.sign(&main)?, Some("org:someone-else deploy")).await?;
    assert_eq!(
        (status, &elsewhere["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_target")),
        "{elsewhere}"
    );
    let accepted = recorded().await?;

    // Every mismatch: refused, nothing issued, nothing recorded.
    let with = |change: Value| {
        let mut claims = main.clone();
        for (k, v) in change.as_object().into_iter().flatten() {
            claims[k] = v.clone();
        }
        claims
    };
    let attempts = [
        (
            "another repository",
            idp.sign(&with(json!({"repository": "acme/other"})))?,
        ),
        (
            "a tag, not a branch",
            idp.sign(&with(json!({"ref": "refs/tags/v1"})))?,
        ),
        (
            "another audience",
            idp.sign(&with(json!({"aud": "someone-else"})))?,
        ),
        ("expired", idp.sign(&with(json!({"exp": 1_000_000_000})))?),
        ("no ref", idp.sign(&with(json!({"ref": null})))?),
        ("an unknown key", idp.sign_with_unknown_key(&main)?),
        ("alg none", OidcStandIn::unsigned(&main)),
        (
            "another issuer",
            idp.sign(&with(json!({"iss": "https://evil.example"})))?,
        ),
    ];
    for (what, subject) in attempts {
        let (status, answer) = exchange(subject, None).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"], "invalid_grant", "{what}: {answer}");
        assert!(answer.get("access_token").is_none());
    }
    assert_eq!(
        recorded().await?,
        accepted,
        "refusals are not recorded as exchanges"
    );
    Ok(())
}

#[tokio::test]
async fn the_cli_logs_a_ci_job_in_with_its_oidc_token_and_no_stored_secret() -> Result<()> {
    let idp = OidcStandIn::start("unused", "unused").await?;
    let (server, gate, slug, org_id) = trusting_server(&idp, "", &[]).await?;
    let job_token = idp.sign(&job_claims(&idp.issuer, "acme/app", "refs/heads/main"))?;
    let cli =
        latchkey_testkit::CliHome::new(crate::bin(), &server.url)?.env("CI_OIDC_TOKEN", &job_token);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let login = cli
        .run(&[
            "login",
            "--subject-token-env",
            "CI_OIDC_TOKEN",
            "--insecure-storage",
        ])
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(
        text(&login.stdout).contains(&format!("as federated:gha (org {slug})")),
        "{}",
        text(&login.stdout)
    );
    let status = cli.run(&["status", "--json"]).await?;
    let status: Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(
        (&status["user_id"], &status["org"]),
        (&json!("federated:gha"), &json!(slug))
    );
    let token = cli.run(&["token"]).await?;
    assert!(token.status.success(), "{}", text(&token.stderr));
    let through = through_gate(&gate, text(&token.stdout).trim()).await?;
    assert_eq!(
        (&through["user"], &through["org"]),
        (&json!("federated:gha"), &json!(org_id))
    );

    // A job of another repository, a missing variable, an empty file: refused, nothing stored.
    let other = latchkey_testkit::CliHome::new(crate::bin(), &server.url)?.env(
        "CI_OIDC_TOKEN",
        &idp.sign(&job_claims(&idp.issuer, "mallory/app", "refs/heads/main"))?,
    );
    let refused = other
        .run(&["login", "--subject-token-env", "CI_OIDC_TOKEN"])
        .await?;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("repository"),
        "{}",
        text(&refused.stderr)
    );
    let unset = other
        .run(&["login", "--subject-token-env", "NOT_SET_ANYWHERE"])
        .await?;
    assert!(text(&unset.stderr).contains("NOT_SET_ANYWHERE is not set"));
    let empty = other.config_dir().join("empty-token");
    std::fs::create_dir_all(other.config_dir())?;
    std::fs::write(&empty, "\n")?;
    let empty = other
        .run(&[
            "login",
            "--subject-token-file",
            &empty.display().to_string(),
        ])
        .await?;
    assert!(text(&empty.stderr).contains("the subject token is empty"));
    let nothing = other.run(&["token"]).await?;
    assert!(!nothing.status.success(), "nothing was stored");
    Ok(())
}
