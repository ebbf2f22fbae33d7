//! Corporate networks: the CLI reaches an https issuer through `HTTPS_PROXY`, past a proxy that
//! inspects TLS with its own CA, trusted through `SSL_CERT_FILE`; `NO_PROXY` bypasses it.

use anyhow::{Context, Result};
use latchkey_testkit::{CliHome, InspectingProxy, Person, Server, unique_email};

use crate::{PASSWORD, bin};

const HOST: &str = "auth.corp.test";

#[tokio::test]
async fn login_goes_through_a_tls_inspecting_proxy_whose_ca_is_trusted() -> Result<()> {
    let server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("proxy"), PASSWORD).await?;
    let key = person.new_api_key("laptop").await?;
    let proxy = InspectingProxy::start(HOST, server.addr).await?;
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("corp-ca.pem");
    std::fs::write(&ca_file, &proxy.ca_pem)?;
    let issuer = format!("https://{HOST}");
    let stdin = format!("{key}\n");

    let trusting = CliHome::new(bin(), &issuer)?
        .env("HTTPS_PROXY", &proxy.url)
        .env("SSL_CERT_FILE", ca_file.to_str().context("path")?);
    let login = trusting
        .run_with_stdin(&["login", "--with-token"], &stdin)
        .await?;
    let stderr = String::from_utf8_lossy(&login.stderr);
    assert!(login.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&login.stdout).contains(&format!("Logged in to {issuer}")));
    assert_eq!(proxy.connects(), [format!("{HOST}:443")]);

    // Without the CA, the inspected connection is refused, and nothing is stored.
    let distrusting = CliHome::new(bin(), &issuer)?.env("HTTPS_PROXY", &proxy.url);
    let refused = distrusting
        .run_with_stdin(&["login", "--with-token"], &stdin)
        .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    assert!(!distrusting.credentials_file().exists());

    // NO_PROXY sends requests direct: an http issuer on loopback, with HTTP_PROXY set too.
    let bypassing = CliHome::new(bin(), &server.url)?
        .env("HTTP_PROXY", &proxy.url)
        .env("HTTPS_PROXY", &proxy.url)
        .env("NO_PROXY", "127.0.0.1");
    let direct = bypassing
        .run_with_stdin(&["login", "--with-token"], &stdin)
        .await?;
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    assert_eq!(
        proxy.connects().len(),
        2,
        "the proxy saw only the two https logins"
    );
    Ok(())
}
