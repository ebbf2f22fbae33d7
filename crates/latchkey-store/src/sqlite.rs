//! The SQLite store: the embedded default for a single `latchkey serve`. One process owns the
//! file, so there is nobody to announce changes to.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use latchkey_core::{
    Store, StoreError,
    billing::{self, Subscription, SubscriptionStatus, stripe::SubscriptionUpdate},
    org::Role,
    store::{
        AccessRevocation, AccountDeletion, ApiKeyRecord, AuditEvent, AuditQuery,
        AuthorizationCodeRecord, BillingOutcome, BillingStore, CeremonyRecord, Change, ChangeFeed,
        CodeUse, ConsoleStore, DeviceCodeRecord, DeviceCodeStatus, FederatedExchangeRecord,
        FlowApproval, FlowStatus, IdentityRecord, InvitationRecord, KeyUsage, LoginRecord,
        LoginStart, MemberRecord, Membership, MembershipChange, NextRefresh, OAuthClientRecord,
        Org, OrgStore, PasskeyRecord, PasskeyStore, PendingVerification, RefreshTokenRecord,
        RefreshUse, SecondFactorStore, SessionRecord, SigningKeyRecord, TokenFlowRecord,
        TotpRecord, UpstreamLoginRecord, User,
    },
};
use latchkey_proto::{SecretHash, jws::Algorithm};
use sqlx::{
    FromRow, Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use time::OffsetDateTime;

use crate::{
    store_error,
    time_ms::{from_ms, from_opt_ms, to_ms},
};

type Db = sqlx::Sqlite;
type DbRow = SqliteRow;
type DbConnection = sqlx::SqliteConnection;
type ThisStore = SqliteStore;
/// Write transactions take the write lock up front. A deferred one that has read first fails at
/// once (SQLITE_BUSY_SNAPSHOT, "database is locked") when another connection commits in
/// between, instead of waiting its turn under the busy timeout.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect(options).await
    }

    /// Opens a `sqlite:` URL (for example `sqlite::memory:` in tests).
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(store_error)?
            .create_if_missing(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // 512 KiB of pages per connection instead of 2 MiB: the OS page cache holds the
            // file anyway, and eight full caches were a tenth of a busy server's memory.
            .pragma("cache_size", "-512");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { pool })
    }

    async fn watch(&self) -> Result<Option<ChangeFeed>, StoreError> {
        Ok(None)
    }
}

/// Nobody else has the file open: the service's own notes are complete.
async fn announce(_: &mut DbConnection, _: &Change) -> Result<(), StoreError> {
    Ok(())
}

include!("queries.rs");
include!("org_queries.rs");
include!("billing_queries.rs");
include!("console_queries.rs");
include!("second_factor_queries.rs");
include!("passkey_queries.rs");
