//! A real `latchkey serve --dev` process, on SQLite in its data directory or, when the suite
//! runs against PostgreSQL, on a fresh database of its own.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{TestDatabase, postgres_admin_url};
use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

#[derive(Debug)]
pub struct Server {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The database it serves from: a `sqlite://` file or a `postgres://` database.
    pub database_url: String,
    /// `/metrics`, on the admin listener.
    pub metrics_url: String,
    /// Where its log goes, when started with [`Server::start_logging`].
    log: Option<PathBuf>,
    bin: PathBuf,
    /// Flags it was started with, for a restart.
    args: Vec<String>,
    database: Option<std::sync::Arc<TestDatabase>>,
    _tmp: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// `latchkey gate` from `bin` in front of `upstream`, introspecting at `issuer` as the
/// confidential client `gate` with `client_secret`, with `extra` flags (and a free loopback
/// port unless they name `--listen`); and its URL, once it listens.
pub async fn start_gate(
    bin: &Path,
    upstream: &str,
    issuer: &str,
    client_secret: &str,
    extra: &[&str],
) -> Result<(Child, String)> {
    let mut command = Command::new(bin);
    command.arg("gate");
    if !extra.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .args(["--upstream", upstream])
        .args(["--issuer", issuer, "--client-id", "gate"])
        .args(extra)
        .env("LATCHKEY_GATE_CLIENT_SECRET", client_secret)
        .env("LATCHKEY_LOG", "warn");
    let (child, rest) = spawn_until(command, "latchkey gate is listening on ").await?;
    let url = rest
        .split_whitespace()
        .next()
        .context("gate URL")?
        .to_owned();
    Ok((child, url))
}

/// Spawns `command` and waits (30 s at most) for a stdout line starting with `prefix`; returns
/// the child and the rest of that line. Stdout keeps being drained so the child never blocks;
/// stderr goes where the caller set it (inherited by default).
pub async fn spawn_until(command: Command, prefix: &str) -> Result<(Child, String)> {
    let (child, rest, _) = spawn_until_noting(command, prefix).await?;
    Ok((child, rest))
}

/// [`spawn_until`], also returning the stdout lines printed before the awaited one.
pub async fn spawn_until_noting(
    mut command: Command,
    prefix: &str,
) -> Result<(Child, String, Vec<String>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the latchkey binary")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
            before.push(line);
        }
        bail!("the process exited before printing {prefix:?}")
    })
    .await
    .with_context(|| format!("no {prefix:?} within 30 s"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, rest, before))
}

impl Server {
    /// `latchkey serve --dev` on 127.0.0.1:0 with a fresh data directory.
    pub async fn start(bin: &Path) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut server = Self::start_at(bin, &data_dir, "127.0.0.1:0".parse()?, &[]).await?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// `latchkey serve --dev` reached at `http://localhost:<port>`, as passkeys need (WebAuthn
    /// refuses IP addresses), with `extra` flags.
    pub async fn start_on_localhost(bin: &Path, extra: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let public_url = format!("http://localhost:{port}");
        let mut args = vec!["--public-url", public_url.as_str()];
        args.extend_from_slice(extra);
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Self::start_at(bin, &data_dir, listen, &args).await?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// `latchkey serve --dev` logging at `debug` to a file, read back with [`Server::log`].
    pub async fn start_logging(bin: &Path) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let log = tmp.path().join("server.log");
        let listen = "127.0.0.1:0".parse()?;
        let mut server = Self::launch(bin, &data_dir, listen, &[], Some(log)).await?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// `latchkey serve --dev` with a TOML config file holding `config`, and `extra` flags.
    pub async fn start_with_config(bin: &Path, config: &str, extra: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("latchkey.toml");
        std::fs::write(&file, config)?;
        let file = file.to_str().context("config path")?.to_owned();
        let mut args = vec!["--config", file.as_str()];
        args.extend_from_slice(extra);
        let data_dir = tmp.path().join("data");
        let mut server = Self::start_at(bin, &data_dir, "127.0.0.1:0".parse()?, &args).await?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// Starts on a given data directory and address (to restart where a killed one stood).
    /// Under `LATCHKEY_TEST_DATABASE_URL` it gets a fresh PostgreSQL database, unless `extra`
    /// names one.
    pub async fn start_at(
        bin: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        extra: &[&str],
    ) -> Result<Self> {
        Self::launch(bin, data_dir, listen, extra, None).await
    }

    async fn launch(
        bin: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        extra: &[&str],
        log: Option<PathBuf>,
    ) -> Result<Self> {
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let mut database = None;
        if let Some(admin) = postgres_admin_url()
            && !extra.contains(&"--database-url")
        {
            let db = TestDatabase::create(&admin).await?;
            args.extend(["--database-url".to_owned(), db.url.clone()]);
            database = Some(std::sync::Arc::new(db));
        }
        let mut server = Self::spawn(bin, data_dir, listen, args, log).await?;
        server.database = database;
        Ok(server)
    }

    /// Another replica on the same database (PostgreSQL), with a data directory of its own.
    pub async fn replica(&self) -> Result<Self> {
        self.replica_with_flags(&[]).await
    }

    /// [`Server::replica`] with more flags (a gate of its own, say).
    pub async fn replica_with_flags(&self, extra: &[&str]) -> Result<Self> {
        anyhow::ensure!(
            self.database_url.starts_with("postgres"),
            "replicas need PostgreSQL: set LATCHKEY_TEST_DATABASE_URL"
        );
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        // Replicas share the master key that seals the signing keys (in --dev, the first
        // server's key file).
        let mut args = self.args.clone();
        if !args.iter().any(|a| a == "--master-key-file") {
            let key_file = self.data_dir.join("master.key");
            args.extend([
                "--master-key-file".to_owned(),
                key_file.display().to_string(),
            ]);
        }
        args.extend(extra.iter().map(|flag| (*flag).to_owned()));
        let listen = "127.0.0.1:0".parse()?;
        let mut replica = Self::spawn(&self.bin, &data_dir, listen, args, None).await?;
        replica.database = self.database.clone();
        replica._tmp = Some(tmp);
        Ok(replica)
    }

    async fn spawn(
        bin: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        args: Vec<String>,
        log: Option<PathBuf>,
    ) -> Result<Self> {
        let database_url = match args.iter().position(|a| a == "--database-url") {
            Some(i) => args
                .get(i + 1)
                .context("--database-url needs a value")?
                .clone(),
            None => format!("sqlite://{}", data_dir.join("latchkey.db").display()),
        };
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--dev",
                "--listen",
                &listen.to_string(),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(&args)
            .env("LATCHKEY_LOG", "warn");
        if let Some(log) = &log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            command.env("LATCHKEY_LOG", "debug").stderr(file);
        }
        let (child, line, before) =
            spawn_until_noting(command, "latchkey is listening on ").await?;
        let url = line
            .split_whitespace()
            .next()
            .context("no URL on the listening line")?
            .to_owned();
        // A public URL other than the address says where it is bound: "(bound to ADDR)".
        let addr: SocketAddr = match line.split("(bound to ").nth(1) {
            Some(bound) => bound.trim_end_matches(')').trim().parse()?,
            None => url.trim_start_matches("http://").parse()?,
        };
        let metrics_url = before
            .iter()
            .find_map(|l| l.strip_prefix("latchkey serves /metrics on "))
            .map(|base| format!("{}/metrics", base.trim()))
            .context("the server did not say where /metrics is")?;
        Ok(Self {
            child,
            url,
            metrics_url,
            log,
            addr,
            data_dir: data_dir.to_owned(),
            database_url,
            bin: bin.to_owned(),
            args,
            database: None,
            _tmp: None,
        })
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then the exit status once the process has shut down gracefully.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().context("the server is not running")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        Ok(self.child.wait().await?)
    }

    /// SIGKILL: no graceful shutdown, no final flush.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts the same binary again with the same flags, data directory, database and port.
    pub async fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill().await;
        let (bin, dir, log) = (&self.bin, &self.data_dir, self.log.clone());
        let mut next = Self::spawn(bin, dir, self.addr, self.args.clone(), log).await?;
        std::mem::swap(&mut self.child, &mut next.child);
        std::mem::swap(&mut self.metrics_url, &mut next.metrics_url);
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn outbox(&self) -> Result<Vec<Mail>> {
        let path = self.data_dir.join("outbox.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    }

    /// The verification link in the newest message to `to`.
    pub fn verification_link(&self, to: &str) -> Result<String> {
        let mail = self
            .outbox()?
            .into_iter()
            .rev()
            .find(|m| m.to == to)
            .with_context(|| format!("no email to {to} in the outbox"))?;
        mail.text
            .split_whitespace()
            .find(|w| w.contains("/verify-email?token="))
            .map(str::to_owned)
            .context("the email has no verification link")
    }

    /// Everything the server logged so far (see [`Server::start_logging`]).
    pub fn log(&self) -> Result<String> {
        let path = self
            .log
            .as_ref()
            .context("this server was not started logging")?;
        Ok(std::fs::read_to_string(path)?)
    }

    /// Polls `/metrics` (10 s at most) until the gauge or counter `name` reaches `at_least`.
    pub async fn wait_for_metric(&self, name: &str, at_least: u64) -> Result<()> {
        for _ in 0..200 {
            if self.metric(name).await? >= at_least {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{name} did not reach {at_least} within 10 s")
    }

    /// A counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> Result<u64> {
        let text = reqwest::get(&self.metrics_url).await?.text().await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .with_context(|| format!("metric {name} not found"))
    }
}
