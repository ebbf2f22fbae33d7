//! The `latchkey` CLI (or a tool embedding its command set) as a subprocess with its own HOME and
//! config dir, so tests never touch the developer's real credentials, and no session bus (so no
//! keychain) unless a test adds one.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

#[derive(Debug)]
pub struct CliHome {
    bin: PathBuf,
    /// The tool's name (`latchkey`, `acme`): its config subdirectory and env-var prefix.
    tool: String,
    pub home: tempfile::TempDir,
    issuer: String,
    env: Vec<(String, String)>,
}

impl CliHome {
    pub fn new(bin: &Path, issuer: &str) -> Result<Self> {
        Self::for_tool(bin, "latchkey", issuer)
    }

    /// A tool that embeds latchkey's command set under its own name.
    pub fn for_tool(bin: &Path, tool: &str, issuer: &str) -> Result<Self> {
        Ok(Self {
            bin: bin.to_owned(),
            tool: tool.to_owned(),
            home: tempfile::tempdir()?,
            issuer: issuer.to_owned(),
            env: vec![],
        })
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join(".config")
    }

    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir().join(&self.tool).join("credentials.json")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.program(self.bin.as_os_str(), args)
    }

    /// Any program with the CLI's environment (for wrappers such as `dbus-run-session`);
    /// `LATCHKEY_BIN` names the binary under test.
    pub fn program(&self, program: &std::ffi::OsStr, args: &[&str]) -> Command {
        let env_prefix = self.tool.to_uppercase();
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("LATCHKEY_BIN", &self.bin)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env(format!("{env_prefix}_ISSUER"), &self.issuer)
            .env(format!("{env_prefix}_LOGIN_PORT"), "0")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .context("the CLI did not finish within 60 s")??;
        Ok(output)
    }

    /// Runs the CLI with `input` on its stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Result<Output> {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(input.as_bytes()).await?;
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .context("the CLI did not finish within 60 s")??;
        Ok(output)
    }

    /// Starts `latchkey login --no-browser …` and waits until it prints the URL (and the
    /// code, when the method has one).
    pub async fn start_login(&self, extra: &[&str]) -> Result<LoginProcess> {
        let mut args = vec!["login", "--no-browser"];
        args.extend_from_slice(extra);
        LoginProcess::start(self.command(&args)).await
    }

    /// `latchkey login --method token-flow --no-browser …`.
    pub async fn start_token_flow_login(&self, extra: &[&str]) -> Result<LoginProcess> {
        let mut args = vec!["--method", "token-flow"];
        args.extend_from_slice(extra);
        self.start_login(&args).await
    }
}

/// A running `latchkey login`, with what it told the person.
#[derive(Debug)]
pub struct LoginProcess {
    child: Child,
    pub url: String,
    /// The pairing or user code; empty for a login that shows none (the mgrep hand-off).
    pub code: String,
    /// Every stderr line up to and including the URL and code.
    pub printed: Vec<String>,
    stderr_lines: mpsc::UnboundedReceiver<String>,
}

impl LoginProcess {
    pub async fn start(mut command: Command) -> Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut url, mut code) = (None, None);
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = rx.recv().await {
                let trimmed = line.trim();
                if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
                    url = Some(trimmed.to_owned());
                }
                if let Some(c) = trimmed.strip_prefix("Check that the page shows the code ") {
                    code = Some(c.to_owned());
                }
                let waiting = trimmed.starts_with("Waiting for approval");
                seen.push(line);
                if url.is_some() && waiting {
                    return true;
                }
            }
            false
        })
        .await;
        match (found, url) {
            (Ok(true), Some(url)) => Ok(Self {
                child,
                url,
                code: code.unwrap_or_default(),
                printed: seen,
                stderr_lines: rx,
            }),
            _ => bail!("login did not print a URL and start waiting; it printed: {seen:?}"),
        }
    }

    /// Waits for the login to end: exit status, stdout, and the rest of stderr.
    pub async fn finish(mut self) -> Result<(std::process::ExitStatus, String, String)> {
        let mut stdout = String::new();
        let mut out = self.child.stdout.take().context("no stdout")?;
        let status = tokio::time::timeout(Duration::from_secs(120), async {
            out.read_to_string(&mut stdout).await?;
            self.child.wait().await
        })
        .await
        .context("login did not finish within 120 s")??;
        let mut stderr = String::new();
        // The reader ends at EOF, once the process has exited and closed stderr.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.stderr_lines.recv()).await
        {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        Ok((status, stdout, stderr))
    }
}
