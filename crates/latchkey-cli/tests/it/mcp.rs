//! A real MCP server behind the gate: the Python SDK's FastMCP over Streamable HTTP, and the
//! SDK's client calling tools through `latchkey gate` with an API key and with a JWT; without
//! a credential the client gets the 401 and its `WWW-Authenticate`.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use latchkey_testkit::{Person, spawn_until, unique_email};
use serde_json::Value;
use tokio::process::Command;

use crate::{
    PASSWORD,
    gate_proxy::{gate, issuer},
    oauth::access_token,
};

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> Result<PathBuf> {
    python_in(".venv")
}

/// The Python of the venv `dir` (`.venv` has the MCP SDK 1.x, `.venv-mcp2` the 2.x line,
/// `.venv-oidc` authlib, PyJWT and joserfc).
pub(crate) fn python_in(dir: &str) -> Result<PathBuf> {
    let python = repo_root().join(dir).join("bin/python");
    ensure!(
        python.exists(),
        "the Python venv {dir} is missing: run the README test command, which creates it"
    );
    Ok(python)
}

/// Runs the SDK's client against `url`; its one line of JSON.
async fn mcp_client(url: &str, credential: Option<&str>) -> Result<Value> {
    let mut command = Command::new(python()?);
    command
        .arg(repo_root().join("tests/mcp/client.py"))
        .arg(url);
    if let Some(credential) = credential {
        command.arg(credential);
    }
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        command.kill_on_drop(true).output(),
    )
    .await
    .context("the MCP client did not finish within 60 s")??;
    ensure!(
        output.status.success(),
        "the MCP client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    Ok(serde_json::from_str(
        stdout.lines().last().context("no output")?,
    )?)
}

/// Waits until something accepts connections on `port`.
async fn listening(port: u16) -> Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("nothing listens on {port}")
}

#[tokio::test]
async fn the_mcp_sdk_calls_tools_through_the_gate_with_a_key_or_a_jwt() -> Result<()> {
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("mcp"), PASSWORD).await?;
    let key = person.new_api_key("mcp").await?;
    let me = person.me().await?;
    let jwt = access_token(&server, &person).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut fastmcp = Command::new(python()?);
    fastmcp
        .arg(repo_root().join("tests/mcp/server.py"))
        .arg(port.to_string())
        // The SDK logs a traceback for every closed session stream; not ours to show.
        .stderr(std::process::Stdio::null());
    let (_fastmcp, _) = spawn_until(fastmcp, "listening on ").await?;
    listening(port).await?;
    let (_gate, gate_url) = gate(&server, &format!("http://127.0.0.1:{port}"), &[]).await?;
    let mcp_url = format!("{gate_url}/mcp");

    for credential in [key.as_str(), jwt.as_str()] {
        let called = mcp_client(&mcp_url, Some(credential)).await?;
        assert_eq!(called["add"], "5", "{called}");
        assert_eq!(called["whoami"], me["user_id"], "{called}");
    }
    let refused = mcp_client(&mcp_url, None).await?;
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(
        refused["www_authenticate"],
        format!("Bearer resource_metadata=\"{gate_url}/.well-known/oauth-protected-resource\"")
            .as_str()
    );
    Ok(())
}

/// An MCP client SDK that no one here wrote.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    Python1,
    Python2,
    TypeScript,
}

impl Sdk {
    /// Its OAuth client script, ready for the MCP URL and the redirect URI.
    fn command(self) -> Result<Command> {
        let (program, script) = match self {
            Sdk::Python1 => (python_in(".venv")?, "tests/mcp/oauth_client.py"),
            Sdk::Python2 => (python_in(".venv-mcp2")?, "tests/mcp/oauth_client.py"),
            Sdk::TypeScript => {
                ensure!(
                    repo_root()
                        .join("tests/mcp-ts/node_modules/@modelcontextprotocol/sdk")
                        .exists(),
                    "the MCP TypeScript SDK is missing: run the README test command, which installs it"
                );
                (PathBuf::from("node"), "tests/mcp-ts/oauth_client.mjs")
            }
        };
        let mut command = Command::new(program);
        command.arg(repo_root().join(script));
        Ok(command)
    }
}

/// The SDK's client logging in by itself through the gate at `gate_url`: it discovers,
/// registers and asks for consent; `person` approves; then it calls tools.
async fn sdk_logs_in_and_calls_tools(sdk: Sdk, gate_url: &str, person: &Person) -> Result<Value> {
    let callback = latchkey_testkit::LoopbackCallback::start().await?;
    let mut command = sdk.command()?;
    command
        .arg(format!("{gate_url}/mcp"))
        .arg(callback.redirect_uri());
    let finished = drive_login(command, person, callback, |query, _| {
        let code = crate::oauth::param(query, "code").context("no code")?;
        let state = crate::oauth::param(query, "state").context("no state")?;
        let iss = crate::oauth::param(query, "iss").context("no iss (RFC 9207)")?;
        Ok(format!("{code} {state} {iss}"))
    })
    .await;
    finished.context("the SDK's login failed")
}

/// Runs a client that logs in by itself: it prints `{"authorize": url}`, `person` approves
/// there, the client gets `reply` (from the callback's query and URL) on a line of its stdin
/// and prints its result as its last line of JSON.
pub(crate) async fn drive_login(
    mut command: Command,
    person: &Person,
    callback: latchkey_testkit::LoopbackCallback,
    reply: impl FnOnce(&[(String, String)], &str) -> Result<String>,
) -> Result<Value> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let port = callback.port;
    let mut client = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = client.stdin.take().context("stdin")?;
    let mut lines = tokio::io::BufReader::new(client.stdout.take().context("stdout")?).lines();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let first: Value = serde_json::from_str(&lines.next_line().await?.context("no output")?)?;
        let authorize = first["authorize"]
            .as_str()
            .context("no authorization URL")?;
        let query = crate::oauth::consent(person, authorize, callback, "approve").await?;
        let url =
            url::Url::parse_with_params(&format!("http://127.0.0.1:{port}/callback"), &query)?;
        stdin
            .write_all(format!("{}\n", reply(&query, url.as_str())?).as_bytes())
            .await?;
        let last = lines
            .next_line()
            .await?
            .context("the client said nothing more")?;
        anyhow::Ok(serde_json::from_str::<Value>(&last)?)
    })
    .await;
    match finished {
        Ok(Ok(result)) => Ok(result),
        other => {
            let _ = client.start_kill();
            let output = client.wait_with_output().await?;
            anyhow::bail!("{other:?}\n{}", String::from_utf8_lossy(&output.stderr))
        }
    }
}

/// FastMCP on a free port, the upstream the gates protect.
async fn fastmcp() -> Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(python()?);
    command
        .arg(repo_root().join("tests/mcp/server.py"))
        .arg(port.to_string())
        .stderr(std::process::Stdio::null());
    let (child, _) = spawn_until(command, "listening on ").await?;
    listening(port).await?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

#[tokio::test]
async fn the_mcp_sdk_logs_in_by_itself_through_every_gate() -> Result<()> {
    let (_fastmcp, upstream) = fastmcp().await?;
    let server = issuer().await?;
    let person = Person::verified_account(&server, &unique_email("mcp-oauth"), PASSWORD).await?;
    let me = person.me().await?;

    let (_default, default_url) = gate(&server, &upstream, &[]).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let (_public, public_url) = gate(
        &server,
        &upstream,
        &["--listen", &listen, "--public-url", &public],
    )
    .await?;
    let (inside, inside_url) = crate::gate_proxy::server_with_gate(&upstream).await?;
    let inside_person =
        Person::verified_account(&inside, &unique_email("mcp-inside"), PASSWORD).await?;
    let inside_me = inside_person.me().await?;
    let gates = [
        (&default_url, &person, &me),
        (&public_url, &person, &me),
        (&inside_url, &inside_person, &inside_me),
    ];
    for sdk in [Sdk::Python1, Sdk::Python2, Sdk::TypeScript] {
        for (gate_url, person, me) in gates {
            let called = sdk_logs_in_and_calls_tools(sdk, gate_url, person).await?;
            assert_eq!(called["add"], "5", "{sdk:?} via {gate_url}: {called}");
            assert_eq!(
                called["whoami"], me["user_id"],
                "{sdk:?} via {gate_url}: {called}"
            );
        }
    }
    Ok(())
}
