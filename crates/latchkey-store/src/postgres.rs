//! The PostgreSQL store: one database shared by any number of `latchkey serve` replicas.
//!
//! Every change another replica must act on at once (a decided token flow, a revoked key, a
//! changed client, a new signing key) is announced with `NOTIFY` inside the transaction that
//! makes it, so it is sent exactly when it commits. Each replica holds one `LISTEN` connection;
//! when that connection drops it reconnects by itself and reports [`Change::Missed`], because
//! notifications sent while it was away are gone.

use std::time::Duration;

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
    Connection, FromRow, PgConnection, Row,
    postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow},
};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::{
    store_error,
    time_ms::{from_ms, from_opt_ms, to_ms},
};

type Db = sqlx::Postgres;
type DbRow = PgRow;
type DbConnection = sqlx::PgConnection;
type ThisStore = PgStore;
const BEGIN_WRITE: &str = "BEGIN";

/// The channel every replica listens on.
const CHANGES_CHANNEL: &str = "latchkey_changes";

/// How a replica connects to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection before it is answered 503: short, so
    /// that an outage is reported at once instead of piling up requests.
    pub acquire_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to a `postgres://` URL and runs the migrations (under PostgreSQL's advisory
    /// lock, so replicas starting together migrate once).
    pub async fn open(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(store_error)?;
        // One direct connection first: the pool would only report a timeout, this reports why
        // (refused, unknown host, wrong password).
        PgConnection::connect_with(&options)
            .await
            .map_err(store_error)?
            .close()
            .await
            .map_err(store_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { pool })
    }

    async fn watch(&self) -> Result<Option<ChangeFeed>, StoreError> {
        let listener = listen(&self.pool).await.map_err(store_error)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(relay_changes(self.pool.clone(), listener, tx));
        Ok(Some(rx))
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications until the receiver is dropped. On a lost connection, a new listener
/// (not sqlx's silent reconnect) with capped backoff, so that the gap can be reported as
/// `Missed` once listening again.
async fn relay_changes(pool: PgPool, mut listener: PgListener, changes: mpsc::Sender<Change>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let Some(change) = Change::from_payload(notification.payload()) else {
                    tracing::warn!(
                        payload = notification.payload(),
                        "ignoring an unknown change"
                    );
                    continue;
                };
                if changes.send(change).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!("lost the PostgreSQL change listener; reconnecting");
                let mut delay = Duration::from_millis(100);
                listener = loop {
                    if changes.is_closed() {
                        return;
                    }
                    match listen(&pool).await {
                        Ok(listener) => break listener,
                        Err(e) => {
                            tracing::debug!(error = %e, "change listener reconnect failed");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                tracing::info!("the PostgreSQL change listener is back");
                if changes.send(Change::Missed).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sent by PostgreSQL when the surrounding transaction commits, and never if it rolls back.
async fn announce(conn: &mut DbConnection, change: &Change) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(change.to_payload())
        .execute(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

include!("queries.rs");
include!("org_queries.rs");
include!("billing_queries.rs");
include!("console_queries.rs");
include!("second_factor_queries.rs");
include!("passkey_queries.rs");
