//! The service (`latchkey-core`) over the real store, with the clock in the test's hands:
//! expiry and the re-delivery window are tested without waiting. SQLite by default; a fresh
//! PostgreSQL database per test under `LATCHKEY_TEST_DATABASE_URL`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::disallowed_methods)]

mod api_keys;
mod signing;
mod store_rules;
mod token_flow;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_core::Store;
use latchkey_core::{
    Clock, Email, Mail, MailError, Mailer, Password, Policy, Service, store::User,
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
        let service = Service::new(
            store.clone(),
            clock.clone(),
            outbox.clone(),
            Policy::new("http://127.0.0.1:8080"),
        );
        Self {
            service,
            store,
            clock,
            outbox,
            database,
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
        let store = self.database.open().await;
        Service::new(
            store,
            self.clock.clone(),
            self.outbox.clone(),
            Policy::new("http://127.0.0.1:8080"),
        )
    }

    /// A verified account, as the web pages would make one.
    pub async fn verified_user(&self, email: &str) -> User {
        let user = self
            .service
            .sign_up(
                Email::parse(email).expect("email"),
                Password::parse("correct horse".into()).expect("password"),
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
        self.service
            .verify_email(&VerificationToken::from_presented(token.to_owned()))
            .await
            .expect("verified");
        self.service
            .user(&user.id)
            .await
            .expect("read")
            .expect("exists")
    }
}
