//! Test helpers that make each end-to-end test read as its scenario: a real `latchkey serve`
//! on an ephemeral port with its own data directory ([`Server`]), a person with a browser-like
//! cookie jar playing the web pages over HTTP ([`Person`]), and the CLI run as a subprocess
//! with its own HOME ([`CliHome`]).

mod callback;
mod cli;
mod database;
mod document;
mod identity_providers;
mod inspecting_proxy;
mod person;
mod private_postgres;
mod server;

pub use callback::LoopbackCallback;
pub use cli::{CliHome, LoginProcess};
pub use database::{TestDatabase, count_rows, execute, postgres_admin_url};
pub use document::CannedServer;
pub use identity_providers::{GitHubStandIn, GitHubUser, IdTokenForgery, OidcPerson, OidcStandIn};
pub use inspecting_proxy::InspectingProxy;
pub use person::{ApprovalForm, Decision, Page, Person};
pub use private_postgres::PrivatePostgres;
pub use server::{Mail, Server, spawn_until, start_gate};

/// A fresh, unique email address for a test account.
pub fn unique_email(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}@example.com",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// SHA-256 of `secret` in hex, as `secret_sha256` in the config file takes it.
pub fn sha256_hex(secret: &str) -> String {
    latchkey_proto::SecretHash::of(secret).to_hex()
}
