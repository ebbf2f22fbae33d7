//! `exchange`: RFC 8693 token exchanges per second beside `client_credentials`, in one run on
//! one server: an API key traded for an access token of an org its holder is in, and a CI
//! job's OIDC token (signed by the testkit's OIDC stand-in, whose keys latchkey fetched once)
//! traded for an org's token under a `[[trusted_issuers]]` trust.

use std::path::Path;

use anyhow::Result;
use latchkey_testkit::{OidcStandIn, Person, Server};
use serde_json::json;

use crate::{
    client_credentials::{LATCHKEY_FORM, bench_client_config, measure},
    report,
};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ORG: &str = "bench-team";

pub async fn exchange(bin: &Path, concurrency: usize, seconds: u64) -> Result<()> {
    let idp = OidcStandIn::start("unused", "unused").await?;
    let trust = format!(
        "[[trusted_issuers]]\nid = \"ci\"\nissuer = \"{}\"\naudience = \"latchkey-bench\"\n\
         org = \"{ORG}\"\nscopes = [\"deploy\"]\n[trusted_issuers.claims]\n\
         repository = \"acme/*\"\n",
        idp.issuer
    );
    let server =
        Server::start_with_config(bin, &format!("{}{trust}", bench_client_config()), &[]).await?;
    let person =
        Person::verified_account(&server, "load@example.com", "load test password").await?;
    let key = person.new_api_key("bench").await?;
    person.create_org(ORG).await?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the job token's times are checked by the server against its wall clock"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let job_token = idp.sign(&json!({
        "iss": idp.issuer, "aud": "latchkey-bench", "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app", "iat": now, "nbf": now - 5, "exp": now + 3600,
    }))?;
    let org_scope = format!("org:{ORG}");
    let key_form = [
        ("grant_type", EXCHANGE),
        ("subject_token", key.as_str()),
        (
            "subject_token_type",
            "urn:latchkey:params:oauth:token-type:api_key",
        ),
        ("scope", org_scope.as_str()),
    ];
    let job_form = [
        ("grant_type", EXCHANGE),
        ("subject_token", job_token.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ];
    println!(
        "token endpoint, {concurrency} connections, {seconds} s each (after 1 s warm-up), EdDSA JWTs; \
         SQLite; {} cores shared with the load",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let url = [server.url("/oauth/token")];
    let mut results = Vec::new();
    for (name, form) in [
        ("client_credentials", LATCHKEY_FORM),
        ("exchange: API key → org token", &key_form[..]),
        ("exchange: CI job token → org token", &job_form[..]),
    ] {
        results.push((name, measure(&url, form, concurrency, seconds).await?));
    }
    let baseline = results[0].1.tokens_per_sec;
    for (name, result) in &mut results {
        println!(
            "{name}: {:.0} tokens/s ({} tokens), {:.2}× client_credentials",
            result.tokens_per_sec,
            result.latencies.len(),
            result.tokens_per_sec / baseline
        );
        report(name, &mut result.latencies);
    }
    Ok(())
}
