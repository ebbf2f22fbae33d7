//! The service (`latchkey-core`) over the real store, with the clock in the test's hands:
//! expiry and the re-delivery window are tested without waiting. SQLite by default; a fresh
//! PostgreSQL database per test under `LATCHKEY_TEST_DATABASE_URL`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod api_keys;
mod console;
mod oauth_grants;
mod signing;
mod store_rules;
mod token_flow;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_core::Store;
use latchkey_core::master_key::MasterKey;
use latchkey_core::{
    Clock, Email, Mail, MailError, Mailer, Password, Policy, Service, VerificationStep, store::User,
};
use latchkey_proto::VerificationToken;
use latchkey_store::{PgSettings, PgStore, SqliteStore};
use latchkey_testkit::{TestDatabase, postgres_admin_url};
use time::OffsetDateTime;

pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn advance(&self, by: std::time::Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|n| *n)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

#[derive(Default)]
pub struct Outbox(Mutex<Vec<Mail>>);

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        if let Ok(mut sent) = self.0.lock() {
            sent.push(mail);
        }
        Ok(())
    }
}

pub struct Harness {
    pub service: Service,
    /// The store under the service, for the rules the service's own checks hide.
    pub store: Arc<dyn Store>,
    pub clock: Arc<TestClock>,
    pub outbox: Arc<Outbox>,
    database: Database,
    /// Seals the signing keys, as `latchkey serve` always does.
    pub master_key: MasterKey,
}

fn policy(master_key: Option<MasterKey>) -> Policy {
    let mut policy = Policy::new("http://127.0.0.1:8080");
    policy.master_key = master_key;
    policy
}

enum Database {
    Sqlite {
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(TestDatabase),
}

impl Database {
    async fn fresh() -> Self {
        match postgres_admin_url() {
            Some(admin) => {
                Self::Postgres(TestDatabase::create(&admin).await.expect("test database"))
            }
            None => {
                let dir = tempfile::tempdir().expect("tempdir");
                Self::Sqlite {
                    path: dir.path().join("latchkey.db"),
                    _dir: dir,
                }
            }
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.expect("store")),
            Self::Postgres(db) => Arc::new(
                PgStore::open(&db.url, &PgSettings::default())
                    .await
                    .expect("store"),
            ),
        }
    }
}

impl Harness {
    pub async fn new() -> Self {
        let database = Database::fresh().await;
        let store = database.open().await;
        let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
        let outbox = Arc::new(Outbox::default());
        let master_key = MasterKey::generate(&mut rand::thread_rng());
        let service = Service::new(
            store.clone(),
            clock.clone(),
            outbox.clone(),
            policy(Some(master_key.clone())),
        );
        Self {
            service,
            store,
            clock,
            outbox,
            database,
            master_key,
        }
    }

    /// Everything the database holds, as an attacker with a copy of it would see it: the
    /// SQLite files, or every PostgreSQL row as text plus every byte column raw.
    pub async fn database_copy(&self) -> Vec<u8> {
        match &self.database {
            Database::Sqlite { path, .. } => {
                let mut bytes = std::fs::read(path).expect("db");
                bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
                bytes
            }
            Database::Postgres(db) => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
                let columns: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text, data_type::text \
                     FROM information_schema.columns WHERE table_schema = 'public'",
                )
                .fetch_all(&pool)
                .await
                .expect("columns");
                let mut bytes = Vec::new();
                for (table, column, kind) in columns {
                    let sql = format!("SELECT {column}::text FROM {table}");
                    let sql = if kind == "bytea" {
                        format!("SELECT {column} FROM {table}")
                    } else {
                        sql
                    };
                    let rows = sqlx::query(&sql).fetch_all(&pool).await.expect("rows");
                    for row in rows {
                        use sqlx::Row;
                        let value: Option<Vec<u8>> = if kind == "bytea" {
                            row.get(0)
                        } else {
                            row.get::<Option<String>, _>(0).map(String::into_bytes)
                        };
                        bytes.extend(value.unwrap_or_default());
                    }
                }
                bytes
            }
        }
    }

    /// Another service on the same database and clock, as after a restart or on a second
    /// replica.
    pub async fn another_service(&self) -> Service {
        self.service_with_master_key(Some(self.master_key.clone()))
            .await
    }

    /// Another service on the same database, sealing signing keys with `master_key`.
    pub async fn service_with_master_key(&self, master_key: Option<MasterKey>) -> Service {
        let store = self.database.open().await;
        Service::new(
            store,
            self.clock.clone(),
            self.outbox.clone(),
            policy(master_key),
        )
    }

    /// A verified account, as the web pages would make one: signed up, then the link opened
    /// in the same browser.
    pub async fn verified_user(&self, email: &str) -> User {
        let receipt = self
            .service
            .sign_up(
                Email::parse(email).expect("email"),
                None,
                Password::parse("correct horse".into()).expect("password"),
                None,
                None,
            )
            .await
            .expect("sign up");
        let link = self
            .outbox
            .0
            .lock()
            .expect("outbox")
            .iter()
            .rev()
            .find(|m| m.to == email)
            .map(|m| m.text.clone())
            .expect("mail sent");
        let token = link
            .split("token=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("token in link");
        let step = self
            .service
            .open_verification_link(
                &VerificationToken::from_presented(token.to_owned()),
                None,
                Some(&receipt),
            )
            .await
            .expect("verified");
        match step {
            VerificationStep::Verified(user) => user,
            VerificationStep::PasswordNeeded { .. } => panic!("the receipt was not accepted"),
        }
    }

    /// The token of the newest reset link mailed to `to` (it is sent in the background).
    pub async fn reset_token(&self, to: &str) -> latchkey_proto::PasswordResetToken {
        for _ in 0..100 {
            let token = self
                .outbox
                .0
                .lock()
                .expect("outbox")
                .iter()
                .rev()
                .filter(|m| m.to == to)
                .find_map(|m| {
                    let rest = m.text.split("/reset-password?token=").nth(1)?;
                    rest.split_whitespace().next().map(str::to_owned)
                });
            if let Some(token) = token {
                return latchkey_proto::PasswordResetToken::from_presented(token);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no reset link mailed to {to}")
    }
}
