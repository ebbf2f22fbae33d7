//! sqlx implementations of [`latchkey_core::Store`].
//!
//! SQLite is the embedded default: one file in the data directory, WAL mode, migrations run at
//! start. A PostgreSQL implementation slots in beside it behind the same trait.

mod sqlite;
mod time_ms;

pub use sqlite::SqliteStore;

use latchkey_core::StoreError;

/// Maps an sqlx failure into the domain's store error, naming which uniqueness rule refused it.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let message = db.message();
        if message.contains("users.email") {
            return StoreError::Conflict("account");
        }
        if message.contains("orgs.slug") {
            return StoreError::Conflict("org");
        }
        return StoreError::Conflict("row");
    }
    StoreError::Unavailable(Box::new(e))
}
