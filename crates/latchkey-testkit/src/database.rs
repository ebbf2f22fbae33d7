//! A fresh PostgreSQL database per test server, when the suite runs against PostgreSQL
//! (`LATCHKEY_TEST_DATABASE_URL`, e.g. `postgres://postgres@127.0.0.1:5432/test`): created on
//! the server that URL names, dropped when the test is done.

use anyhow::{Context, Result};
use sqlx::{Connection, Executor, PgConnection};

/// Where the suite's databases live, if it runs against PostgreSQL.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("LATCHKEY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The one number a `SELECT count(*) …` gives, read straight from a server's database (SQLite or
/// PostgreSQL), to check what a test did or did not store.
pub async fn count_rows(database_url: &str, sql: &str) -> Result<i64> {
    Ok(if database_url.starts_with("postgres") {
        let mut db = PgConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut db).await?
    } else {
        let mut db = sqlx::SqliteConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut db).await?
    })
}

/// Runs one statement that changes rows (what a server-side change no API offers yet, such as
/// an email change); returns how many rows it touched.
pub async fn execute(database_url: &str, sql: &str) -> Result<u64> {
    Ok(if database_url.starts_with("postgres") {
        let mut db = PgConnection::connect(database_url).await?;
        sqlx::query(sql).execute(&mut db).await?.rows_affected()
    } else {
        let mut db = sqlx::SqliteConnection::connect(database_url).await?;
        sqlx::query(sql).execute(&mut db).await?.rows_affected()
    })
}

/// A database of its own on the suite's PostgreSQL server, dropped (connections and all) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(admin_url: &str) -> Result<Self> {
        let name = format!(
            "latchkey_test_{}_{}",
            std::process::id(),
            latchkey_proto::base62::random(&mut rand::thread_rng(), 10).to_lowercase()
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url} to create a test database"))?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&name);
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop the test database {}", self.name);
        }
    }
}
