//! The SQLite store: the embedded default for a single `latchkey serve`.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use latchkey_core::{
    Store, StoreError,
    store::{
        ApiKeyRecord, AuthorizationCodeRecord, CodeUse, DeviceCodeRecord, DeviceCodeStatus,
        FlowApproval, FlowStatus, KeyUsage, NextRefresh, OAuthClientRecord, Org,
        RefreshTokenRecord, RefreshUse, SigningKeyRecord, TokenFlowRecord, User,
    },
};
use latchkey_proto::SecretHash;
use sqlx::{
    Row,
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

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const USER_COLUMNS: &str = "u.id, u.email, u.email_verified, u.password_hash, u.created_at, \
     o.id AS org_id, o.slug AS org_slug, o.name AS org_name";

const KEY_COLUMNS: &str = "id, user_id, org_id, name, key_prefix, key_hash, created_at, expires_at, \
     revoked_at, last_used_at, usage_count";

const CODE_COLUMNS: &str = "code_hash, client_id, user_id, redirect_uri, code_challenge, scope, \
     resource, family_id, created_at, expires_at";

const REFRESH_COLUMNS: &str =
    "token_hash, family_id, client_id, user_id, scope, resource, created_at, expires_at";

const DEVICE_COLUMNS: &str = "device_code_hash, user_code, client_id, scope, resource, created_at, \
     expires_at, last_polled_at, status, user_id, family_id";

const FLOW_COLUMNS: &str = "id, wait_secret_hash, seal_public_key, pairing_code, client_name, \
     utm_source, next_url, localhost_port, created_at, expires_at, status, approved_user_id, \
     approved_key_id, sealed_key, approved_at, delivered_at";

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
            .busy_timeout(Duration::from_secs(5));
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
}

fn hash_of(row: &SqliteRow, column: &str) -> Result<SecretHash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(store_error)?;
    bytes
        .try_into()
        .map(SecretHash)
        .map_err(|_| StoreError::Corrupt("hash"))
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let get = |e| store_error(e);
    Ok(User {
        id: row.try_get("id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        email_verified: row.try_get("email_verified").map_err(get)?,
        password_hash: row.try_get("password_hash").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        org: Org {
            id: row.try_get("org_id").map_err(get)?,
            slug: row.try_get("org_slug").map_err(get)?,
            name: row.try_get("org_name").map_err(get)?,
        },
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let get = |e| store_error(e);
    let usage: i64 = row.try_get("usage_count").map_err(get)?;
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        org_id: row.try_get("org_id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        key_prefix: row.try_get("key_prefix").map_err(get)?,
        hash: hash_of(row, "key_hash")?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        expires_at: from_opt_ms(row.try_get("expires_at").map_err(get)?)?,
        revoked_at: from_opt_ms(row.try_get("revoked_at").map_err(get)?)?,
        last_used_at: from_opt_ms(row.try_get("last_used_at").map_err(get)?)?,
        usage_count: u64::try_from(usage).unwrap_or(0),
    })
}

fn flow_from_row(row: &SqliteRow) -> Result<TokenFlowRecord, StoreError> {
    let get = |e| store_error(e);
    let status: String = row.try_get("status").map_err(get)?;
    let status = match status.as_str() {
        "pending" => FlowStatus::Pending,
        "denied" => FlowStatus::Denied,
        "approved" => FlowStatus::Approved(FlowApproval {
            user_id: row
                .try_get::<Option<String>, _>("approved_user_id")
                .map_err(get)?
                .ok_or(StoreError::Corrupt("token flow"))?,
            key_id: row
                .try_get::<Option<String>, _>("approved_key_id")
                .map_err(get)?
                .ok_or(StoreError::Corrupt("token flow"))?,
            sealed_key: row.try_get("sealed_key").map_err(get)?,
            approved_at: from_ms(
                row.try_get::<Option<i64>, _>("approved_at")
                    .map_err(get)?
                    .ok_or(StoreError::Corrupt("token flow"))?,
            )?,
            delivered_at: from_opt_ms(row.try_get("delivered_at").map_err(get)?)?,
        }),
        _ => return Err(StoreError::Corrupt("token flow")),
    };
    let public: Vec<u8> = row.try_get("seal_public_key").map_err(get)?;
    let port: Option<i64> = row.try_get("localhost_port").map_err(get)?;
    Ok(TokenFlowRecord {
        id: row.try_get("id").map_err(get)?,
        wait_secret_hash: hash_of(row, "wait_secret_hash")?,
        seal_public_key: public
            .try_into()
            .map_err(|_| StoreError::Corrupt("token flow"))?,
        pairing_code: row.try_get("pairing_code").map_err(get)?,
        client_name: row.try_get("client_name").map_err(get)?,
        utm_source: row.try_get("utm_source").map_err(get)?,
        next_url: row.try_get("next_url").map_err(get)?,
        localhost_port: port.and_then(|p| u16::try_from(p).ok()),
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(get)?)?,
        status,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, ?)")
            .bind(&user.org.id)
            .bind(&user.org.slug)
            .bind(&user.org.name)
            .bind(to_ms(user.created_at))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, password_hash, personal_org_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.email_verified)
        .bind(&user.password_hash)
        .bind(&user.org.id)
        .bind(to_ms(user.created_at))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query("INSERT INTO memberships (user_id, org_id, role) VALUES (?, ?, 'owner')")
            .bind(&user.id)
            .bind(&user.org.id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.personal_org_id WHERE u.email = ?"
        );
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.personal_org_id WHERE u.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn insert_email_verification(
        &self,
        token: &SecretHash,
        user_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO email_verifications (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
        )
        .bind(token.0.as_slice())
        .bind(user_id)
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn consume_email_verification(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let user_id: Option<String> = sqlx::query_scalar(
            "DELETE FROM email_verifications WHERE token_hash = ? AND expires_at > ? RETURNING user_id",
        )
        .bind(token.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        if let Some(user_id) = &user_id {
            sqlx::query("UPDATE users SET email_verified = 1 WHERE id = ?")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(user_id)
    }

    async fn insert_session(
        &self,
        token: &SecretHash,
        user_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?)")
            .bind(token.0.as_slice())
            .bind(user_id)
            .bind(to_ms(expires_at))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn session_user(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             JOIN orgs o ON o.id = u.personal_org_id WHERE s.token_hash = ? AND s.expires_at > ?"
        );
        let row = sqlx::query(&sql)
            .bind(token.0.as_slice())
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_session(&self, token: &SecretHash) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        insert_key(&self.pool, key).await
    }

    async fn api_key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?");
        let row = sqlx::query(&sql)
            .bind(hash.0.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(
        &self,
        user_id: &str,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SecretHash>, StoreError> {
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL RETURNING key_hash",
        )
        .bind(to_ms(now))
        .bind(key_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        hash.map(|h| {
            h.try_into()
                .map(SecretHash)
                .map_err(|_| StoreError::Corrupt("api key"))
        })
        .transpose()
    }

    async fn record_api_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        for u in usage {
            sqlx::query(
                "UPDATE api_keys SET usage_count = usage_count + ?, \
                 last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
            )
            .bind(i64::try_from(u.count).unwrap_or(i64::MAX))
            .bind(to_ms(u.last_used_at))
            .bind(&u.key_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn insert_token_flow(&self, flow: &TokenFlowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO token_flows (id, wait_secret_hash, seal_public_key, pairing_code, client_name, \
             utm_source, next_url, localhost_port, created_at, expires_at, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        )
        .bind(&flow.id)
        .bind(flow.wait_secret_hash.0.as_slice())
        .bind(flow.seal_public_key.as_slice())
        .bind(&flow.pairing_code)
        .bind(&flow.client_name)
        .bind(&flow.utm_source)
        .bind(&flow.next_url)
        .bind(flow.localhost_port.map(i64::from))
        .bind(to_ms(flow.created_at))
        .bind(to_ms(flow.expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn oauth_client(&self, id: &str) -> Result<Option<OAuthClientRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, secret_hash, redirect_uris, created_at FROM oauth_clients WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let has_secret = row
            .try_get::<Option<Vec<u8>>, _>("secret_hash")
            .map_err(store_error)?
            .is_some();
        let uris: String = row.try_get("redirect_uris").map_err(store_error)?;
        Ok(Some(OAuthClientRecord {
            id: row.try_get("id").map_err(store_error)?,
            name: row.try_get("name").map_err(store_error)?,
            secret_hash: has_secret
                .then(|| hash_of(&row, "secret_hash"))
                .transpose()?,
            redirect_uris: serde_json::from_str(&uris)
                .map_err(|_| StoreError::Corrupt("oauth client"))?,
            created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        }))
    }

    async fn upsert_oauth_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|_| StoreError::Corrupt("oauth client"))?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(client.secret_hash.as_ref().map(|h| h.0.to_vec()))
        .bind(uris)
        .bind(to_ms(client.created_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn insert_authorization_code(
        &self,
        code: &AuthorizationCodeRecord,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&sql)
            .bind(code.code_hash.0.as_slice())
            .bind(&code.client_id)
            .bind(&code.user_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.scope)
            .bind(&code.resource)
            .bind(&code.family_id)
            .bind(to_ms(code.created_at))
            .bind(to_ms(code.expires_at))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn use_authorization_code(
        &self,
        code_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CodeUse, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let sql =
            format!("SELECT {CODE_COLUMNS}, used_at FROM authorization_codes WHERE code_hash = ?");
        let row = sqlx::query(&sql)
            .bind(code_hash.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(CodeUse::Unknown);
        };
        let record = code_from_row(&row)?;
        let used_at: Option<i64> = row.try_get("used_at").map_err(store_error)?;
        if used_at.is_some() {
            return Ok(CodeUse::Replayed(record));
        }
        let spent = sqlx::query(
            "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(code_hash.0.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(if spent.rows_affected() == 1 {
            CodeUse::First(record)
        } else {
            CodeUse::Replayed(record)
        })
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        insert_refresh(&self.pool, token).await
    }

    async fn rotate_refresh_token(
        &self,
        presented: &SecretHash,
        client_id: &str,
        next: &NextRefresh,
        now: OffsetDateTime,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let sql = format!(
            "SELECT {REFRESH_COLUMNS}, used_at, revoked_at FROM refresh_tokens WHERE token_hash = ?"
        );
        let row = sqlx::query(&sql)
            .bind(presented.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(RefreshUse::Unknown);
        };
        let record = refresh_from_row(&row)?;
        let used_at: Option<i64> = row.try_get("used_at").map_err(store_error)?;
        let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(store_error)?;
        // Another client's, expired, or revoked (by logout or an earlier reuse): not valid.
        if record.client_id != client_id
            || record.expires_at <= now
            || (revoked_at.is_some() && used_at.is_none())
        {
            return Ok(RefreshUse::Unknown);
        }
        if used_at.is_some() {
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
            )
            .bind(to_ms(now))
            .bind(&record.family_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
            return Ok(RefreshUse::Replayed(record));
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?")
            .bind(to_ms(now))
            .bind(presented.0.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let next = RefreshTokenRecord {
            token_hash: next.token_hash,
            created_at: next.created_at,
            expires_at: next.expires_at,
            ..record.clone()
        };
        insert_refresh(&mut *tx, &next).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(RefreshUse::Rotated(record))
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL \
             AND used_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(family_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn refresh_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?");
        let row = sqlx::query(&sql)
            .bind(token_hash.0.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn live_refresh_token(
        &self,
        token_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ? AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > ?"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash.0.as_slice())
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn insert_audit_event(
        &self,
        kind: &str,
        user_id: Option<&str>,
        detail: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (kind, user_id, detail, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(kind)
        .bind(user_id)
        .bind(detail)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn insert_device_code(&self, code: &DeviceCodeRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO device_codes ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        sqlx::query(&sql)
            .bind(code.device_code_hash.0.as_slice())
            .bind(&code.user_code)
            .bind(&code.client_id)
            .bind(&code.scope)
            .bind(&code.resource)
            .bind(to_ms(code.created_at))
            .bind(to_ms(code.expires_at))
            .bind(code.last_polled_at.map(to_ms))
            .bind(device_status_name(code.status))
            .bind(&code.user_id)
            .bind(&code.family_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn device_code_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceCodeRecord>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM device_codes WHERE user_code = ?");
        let row = sqlx::query(&sql)
            .bind(user_code)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        user_id: &str,
        approve: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let status = if approve { "approved" } else { "denied" };
        let done = sqlx::query(
            "UPDATE device_codes SET status = ?, user_id = ? \
             WHERE user_code = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(status)
        .bind(user_id)
        .bind(user_code)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<DeviceCodeRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM device_codes WHERE device_code_hash = ?");
        let row = sqlx::query(&sql)
            .bind(device_code_hash.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(record) = row.as_ref().map(device_from_row).transpose()? else {
            return Ok(None);
        };
        sqlx::query("UPDATE device_codes SET last_polled_at = ? WHERE device_code_hash = ?")
            .bind(to_ms(now))
            .bind(device_code_hash.0.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(record))
    }

    async fn mark_device_code_delivered(
        &self,
        device_code_hash: &SecretHash,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE device_codes SET status = 'delivered' \
             WHERE device_code_hash = ? AND status = 'approved'",
        )
        .bind(device_code_hash.0.as_slice())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, private_pkcs8, public_key, created_at, retired_at FROM signing_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let public: Vec<u8> = row.try_get("public_key").map_err(store_error)?;
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid").map_err(store_error)?,
                    private_pkcs8: row.try_get("private_pkcs8").map_err(store_error)?,
                    public_key: public
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("signing key"))?,
                    created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
                    retired_at: from_opt_ms(row.try_get("retired_at").map_err(store_error)?)?,
                })
            })
            .collect()
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        forget_retired_before: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("DELETE FROM signing_keys WHERE retired_at < ?")
            .bind(to_ms(forget_retired_before))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(to_ms(key.created_at))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(&key.private_pkcs8)
        .bind(key.public_key.as_slice())
        .bind(to_ms(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn token_flow(&self, id: &str) -> Result<Option<TokenFlowRecord>, StoreError> {
        let sql = format!("SELECT {FLOW_COLUMNS} FROM token_flows WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(flow_from_row).transpose()
    }

    async fn approve_token_flow(
        &self,
        flow_id: &str,
        approval: &FlowApproval,
        key: &ApiKeyRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let updated = sqlx::query(
            "UPDATE token_flows SET status = 'approved', approved_user_id = ?, approved_key_id = ?, \
             sealed_key = ?, approved_at = ? WHERE id = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(&approval.user_id)
        .bind(&approval.key_id)
        .bind(approval.sealed_key.as_deref())
        .bind(to_ms(approval.approved_at))
        .bind(flow_id)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        insert_key(&mut *tx, key).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn deny_token_flow(
        &self,
        flow_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE token_flows SET status = 'denied' WHERE id = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(flow_id)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn mark_token_flow_delivered(
        &self,
        flow_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE token_flows SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(flow_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn delete_token_flow(&self, flow_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM token_flows WHERE id = ?")
            .bind(flow_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn sweep_expired(
        &self,
        now: OffsetDateTime,
        delivered_before: OffsetDateTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let (now, before, batch) = (to_ms(now), to_ms(delivered_before), i64::from(batch));
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // A key approved but never collected reached nobody: revoke it with its flow.
        sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND id IN (SELECT approved_key_id \
             FROM token_flows WHERE status = 'approved' AND delivered_at IS NULL AND expires_at < ? LIMIT ?)",
        )
        .bind(now)
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let mut swept = 0;
        for (sql, cutoff) in [
            (
                "DELETE FROM token_flows WHERE id IN (SELECT id FROM token_flows WHERE \
                 (status != 'approved' AND expires_at < ?1) OR delivered_at < ?2 \
                 OR (status = 'approved' AND delivered_at IS NULL AND expires_at < ?2) LIMIT ?3)",
                now,
            ),
            (
                "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT ?3)",
                now,
            ),
            (
                "DELETE FROM email_verifications WHERE token_hash IN \
                 (SELECT token_hash FROM email_verifications WHERE expires_at < ?1 LIMIT ?3)",
                now,
            ),
            (
                // Kept a little past expiry, so a replay just after still revokes its family.
                "DELETE FROM authorization_codes WHERE code_hash IN \
                 (SELECT code_hash FROM authorization_codes WHERE expires_at < ?2 LIMIT ?3)",
                now,
            ),
            (
                "DELETE FROM refresh_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM refresh_tokens WHERE expires_at < ?1 LIMIT ?3)",
                now,
            ),
            (
                "DELETE FROM device_codes WHERE device_code_hash IN \
                 (SELECT device_code_hash FROM device_codes WHERE expires_at < ?1 LIMIT ?3)",
                now,
            ),
        ] {
            swept += sqlx::query(sql)
                .bind(cutoff)
                .bind(before)
                .bind(batch)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?
                .rows_affected();
        }
        tx.commit().await.map_err(store_error)?;
        Ok(swept)
    }
}

async fn insert_key<'e, E>(executor: E, key: &ApiKeyRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, org_id, name, key_prefix, key_hash, created_at, expires_at, \
         revoked_at, last_used_at, usage_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0)",
    )
    .bind(&key.id)
    .bind(&key.user_id)
    .bind(&key.org_id)
    .bind(&key.name)
    .bind(&key.key_prefix)
    .bind(key.hash.0.as_slice())
    .bind(to_ms(key.created_at))
    .bind(key.expires_at.map(to_ms))
    .execute(executor)
    .await
    .map_err(store_error)?;
    Ok(())
}

async fn insert_refresh<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    let sql =
        format!("INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(&sql)
        .bind(token.token_hash.0.as_slice())
        .bind(&token.family_id)
        .bind(&token.client_id)
        .bind(&token.user_id)
        .bind(&token.scope)
        .bind(&token.resource)
        .bind(to_ms(token.created_at))
        .bind(to_ms(token.expires_at))
        .execute(executor)
        .await
        .map_err(store_error)?;
    Ok(())
}

fn code_from_row(row: &SqliteRow) -> Result<AuthorizationCodeRecord, StoreError> {
    Ok(AuthorizationCodeRecord {
        code_hash: hash_of(row, "code_hash")?,
        client_id: row.try_get("client_id").map_err(store_error)?,
        user_id: row.try_get("user_id").map_err(store_error)?,
        redirect_uri: row.try_get("redirect_uri").map_err(store_error)?,
        code_challenge: row.try_get("code_challenge").map_err(store_error)?,
        scope: row.try_get("scope").map_err(store_error)?,
        resource: row.try_get("resource").map_err(store_error)?,
        family_id: row.try_get("family_id").map_err(store_error)?,
        created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(store_error)?)?,
    })
}

fn refresh_from_row(row: &SqliteRow) -> Result<RefreshTokenRecord, StoreError> {
    Ok(RefreshTokenRecord {
        token_hash: hash_of(row, "token_hash")?,
        family_id: row.try_get("family_id").map_err(store_error)?,
        client_id: row.try_get("client_id").map_err(store_error)?,
        user_id: row.try_get("user_id").map_err(store_error)?,
        scope: row.try_get("scope").map_err(store_error)?,
        resource: row.try_get("resource").map_err(store_error)?,
        created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(store_error)?)?,
    })
}

fn device_status_name(status: DeviceCodeStatus) -> &'static str {
    match status {
        DeviceCodeStatus::Pending => "pending",
        DeviceCodeStatus::Approved => "approved",
        DeviceCodeStatus::Denied => "denied",
        DeviceCodeStatus::Delivered => "delivered",
    }
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceCodeRecord, StoreError> {
    let status: String = row.try_get("status").map_err(store_error)?;
    Ok(DeviceCodeRecord {
        device_code_hash: hash_of(row, "device_code_hash")?,
        user_code: row.try_get("user_code").map_err(store_error)?,
        client_id: row.try_get("client_id").map_err(store_error)?,
        scope: row.try_get("scope").map_err(store_error)?,
        resource: row.try_get("resource").map_err(store_error)?,
        created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(store_error)?)?,
        last_polled_at: from_opt_ms(row.try_get("last_polled_at").map_err(store_error)?)?,
        status: match status.as_str() {
            "pending" => DeviceCodeStatus::Pending,
            "approved" => DeviceCodeStatus::Approved,
            "denied" => DeviceCodeStatus::Denied,
            "delivered" => DeviceCodeStatus::Delivered,
            _ => return Err(StoreError::Corrupt("device code")),
        },
        user_id: row.try_get("user_id").map_err(store_error)?,
        family_id: row.try_get("family_id").map_err(store_error)?,
    })
}
