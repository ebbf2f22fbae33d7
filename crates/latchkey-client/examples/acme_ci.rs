//! acme's CI mode, beside `acme.rs`: no login and no stored secret. `acme_ci` trades the CI
//! job's OIDC token (in `ACME_CI_TOKEN`; in GitHub Actions, fetched with `id-token: write`) for
//! a short-lived token of the org the server trusts the job for (keyless CI, RFC 8693), with
//! one call of the client library, and prints it for the job's next step.

use latchkey_client::{AppIdentity, InvalidKeyPrefix, cli, orgs::ACCESS_TOKEN_TYPE};

fn main() -> Result<std::process::ExitCode, InvalidKeyPrefix> {
    let app = AppIdentity::new("acme", "http://127.0.0.1:8080")
        .with_client_id("acme-cli")
        .with_key_prefix("acme")?;
    Ok(cli::block_on(&app, ci_token(&app)))
}

async fn ci_token(app: &AppIdentity) -> Result<(), cli::CliError> {
    let job_token = std::env::var("ACME_CI_TOKEN").map_err(|_| {
        cli::CliError::new(cli::exit::CONFIG, "ACME_CI_TOKEN is not set")
            .with_hint("put the CI job's OIDC token in it")
    })?;
    let client = cli::client(app)?;
    let token = client
        .exchange_subject(&job_token, None, ACCESS_TOKEN_TYPE)
        .await?;
    println!("{}", token.access_token);
    Ok(())
}
