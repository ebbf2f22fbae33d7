//! The service (`latchkey-core`) over the real SQLite store, with the clock in the test's hands:
//! expiry and the re-delivery window are tested without waiting.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::disallowed_methods)]

mod api_keys;
mod signing;
mod token_flow;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use latchkey_core::{
    Clock, Email, Mail, MailError, Mailer, Password, Policy, Service, store::User,
};
use latchkey_proto::VerificationToken;
use latchkey_store::SqliteStore;
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
    pub clock: Arc<TestClock>,
    pub outbox: Arc<Outbox>,
    pub db_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("latchkey.db");
        let store = Arc::new(SqliteStore::open(&db_path).await.expect("store"));
        let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
        let outbox = Arc::new(Outbox::default());
        let service = Service::new(
            store,
            clock.clone(),
            outbox.clone(),
            Policy::new("http://127.0.0.1:8080"),
        );
        Self {
            service,
            clock,
            outbox,
            db_path,
            _dir: dir,
        }
    }

    /// Another service on the same database and clock, as after a restart or on a second
    /// replica.
    pub async fn another_service(&self) -> Service {
        let store = Arc::new(SqliteStore::open(&self.db_path).await.expect("store"));
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
