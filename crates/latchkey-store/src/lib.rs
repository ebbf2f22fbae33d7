//! sqlx implementations of [`latchkey_core::Store`].
//!
//! SQLite is the embedded default: one file in the data directory, WAL mode, one process.
//! PostgreSQL serves any number of replicas on one database and announces changes between them
//! with `LISTEN`/`NOTIFY`. Both run the same queries (`queries.rs`), each with its own
//! migrations, so they behave the same: same errors, same uniqueness rules, same times.

mod postgres;
mod sqlite;
mod time_ms;

pub use postgres::{PgSettings, PgStore};
pub use sqlite::SqliteStore;

use latchkey_core::StoreError;

/// Maps an sqlx failure into the domain's store error, naming which uniqueness rule refused it
/// (SQLite names the column in its message, PostgreSQL names the constraint).
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let message = db.message();
        let constraint = db.constraint().unwrap_or_default();
        if message.contains("users.email") || constraint == "users_email_key" {
            return StoreError::Conflict("account");
        }
        if message.contains("orgs.slug") || constraint == "orgs_slug_key" {
            return StoreError::Conflict("org");
        }
        return StoreError::Conflict("row");
    }
    StoreError::Unavailable(Box::new(e))
}
