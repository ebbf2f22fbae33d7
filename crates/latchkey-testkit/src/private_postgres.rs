//! A PostgreSQL cluster of the test's own, on a free port, that the test may stop and start
//! (a database restart under load) without touching the suite's shared server.

use std::{path::PathBuf, process::Stdio};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// PostgreSQL refuses to run as root: as root, it runs as the `postgres` user.
    as_postgres: bool,
}

impl PrivatePostgres {
    /// `initdb` (trust authentication, superuser `postgres`) and start, from the newest
    /// PostgreSQL in /usr/lib/postgresql.
    pub async fn start() -> Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL server binaries are not installed (/usr/lib/postgresql)")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .context("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir()?;
        let as_postgres = running_as_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(dir.path())).await?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data_dir();
        run(cluster
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "-D"])
            .arg(&data))
        .await?;
        cluster.start_again().await?;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown: connections are cut, as in a failover or a restart.
    pub async fn stop(&self) -> Result<()> {
        let data = self.data_dir();
        run(self
            .command("pg_ctl")
            .args(["-w", "-m", "fast", "stop", "-D"])
            .arg(&data))
        .await
    }

    pub async fn start_again(&self) -> Result<()> {
        let data = self.data_dir();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, "start", "-D"])
            .arg(&data))
        .await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::from(self.std_command(program));
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command
    }

    fn std_command(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .std_command("pg_ctl")
            .args(["-m", "immediate", "stop", "-D"])
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

async fn run(command: &mut Command) -> Result<()> {
    let out = command.output().await?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command.as_std().get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
