// The store's queries, written once for both backends: `sqlite.rs` and `postgres.rs` each
// `include!` this file after defining `ThisStore` (with a `pool` field), `Db`, `DbRow`,
// `BEGIN_WRITE` (how a write transaction starts) and `announce` (how a committed change reaches
// other replicas). The SQL is the common dialect of SQLite and PostgreSQL: `$n` placeholders,
// times as BIGINT milliseconds, hashes as bytes.

const USER_COLUMNS: &str = "u.id, u.email, u.email_verified, u.name, u.password_hash, u.created_at, \
     u.disabled_at, o.id AS org_id, o.slug AS org_slug, o.name AS org_name";

const KEY_COLUMNS: &str = "id, user_id, org_id, name, key_prefix, key_hash, scope, created_at, \
     expires_at, revoked_at, last_used_at, usage_count, origin";

const CODE_COLUMNS: &str = "code_hash, client_id, user_id, redirect_uri, code_challenge, scope, \
     resource, nonce, auth_time, family_id, created_at, expires_at";

const REFRESH_COLUMNS: &str =
    "token_hash, family_id, client_id, user_id, scope, resource, created_at, expires_at, org_id";

const DEVICE_COLUMNS: &str = "device_code_hash, user_code, client_id, scope, resource, created_at, \
     expires_at, last_polled_at, status, user_id, family_id";

const FLOW_COLUMNS: &str = "id, wait_secret_hash, seal_public_key, pairing_code, client_name, \
     utm_source, next_url, localhost_port, created_at, expires_at, status, approved_user_id, \
     approved_key_id, sealed_key, approved_at, delivered_at";

impl ThisStore {
    /// The row `query` finds, read into a record by `read`.
    async fn fetch_record<'q, T>(
        &self,
        query: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
        read: fn(&DbRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(read).transpose()
    }

    /// Deletes up to `batch` accounts never verified and created before `before`, each with
    /// its org, in one transaction.
    async fn sweep_unverified_accounts(
        &self,
        now: OffsetDateTime,
        before: OffsetDateTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let expired: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, personal_org_id FROM users WHERE email_verified = FALSE AND created_at < $1 LIMIT $2",
        )
        .bind(to_ms(before))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        for (user_id, org_id) in &expired {
            delete_user(&mut tx, user_id, org_id, now).await?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(expired.len() as u64)
    }

    /// Stores a single-use `token` of `user_id` in `table` (verification-like rows).
    async fn insert_user_token(
        &self,
        table: &str,
        token: &SecretHash,
        user_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO {table} (token_hash, user_id, expires_at) VALUES ($1, $2, $3)"
        ))
        .bind(token.0.as_slice())
        .bind(user_id)
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// The user of a live `token` in `table`, without spending it.
    async fn live_token_user(
        &self,
        table: &str,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(&format!(
            "SELECT user_id FROM {table} WHERE token_hash = $1 AND expires_at > $2"
        ))
        .bind(token.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    /// The user (with their personal org) whose `column` is `value`.
    async fn user_where(&self, column: &str, value: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.personal_org_id \
             WHERE {column} = $1"
        );
        self.fetch_record(sqlx::query(&sql).bind(value), user_from_row)
            .await
    }
}

fn hash_of(row: &DbRow, column: &str) -> Result<SecretHash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(store_error)?;
    bytes
        .try_into()
        .map(SecretHash)
        .map_err(|_| StoreError::Corrupt("hash"))
}

fn user_from_row(row: &DbRow) -> Result<User, StoreError> {
    let get = |e| store_error(e);
    Ok(User {
        id: row.try_get("id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        email_verified: row.try_get("email_verified").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        password_hash: row.try_get("password_hash").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        disabled_at: from_opt_ms(row.try_get("disabled_at").map_err(get)?)?,
        org: Org {
            id: row.try_get("org_id").map_err(get)?,
            slug: row.try_get("org_slug").map_err(get)?,
            name: row.try_get("org_name").map_err(get)?,
        },
    })
}

fn key_from_row(row: &DbRow) -> Result<ApiKeyRecord, StoreError> {
    let get = |e| store_error(e);
    let usage: i64 = row.try_get("usage_count").map_err(get)?;
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        org_id: row.try_get("org_id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        key_prefix: row.try_get("key_prefix").map_err(get)?,
        hash: hash_of(row, "key_hash")?,
        scope: row.try_get("scope").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        expires_at: from_opt_ms(row.try_get("expires_at").map_err(get)?)?,
        revoked_at: from_opt_ms(row.try_get("revoked_at").map_err(get)?)?,
        last_used_at: from_opt_ms(row.try_get("last_used_at").map_err(get)?)?,
        usage_count: u64::try_from(usage).unwrap_or(0),
        origin: row.try_get("origin").map_err(get)?,
    })
}

fn upstream_login_from_row(row: &DbRow) -> Result<UpstreamLoginRecord, StoreError> {
    let get = |e| store_error(e);
    Ok(UpstreamLoginRecord {
        state_hash: hash_of(row, "state_hash")?,
        provider_id: row.try_get("provider_id").map_err(get)?,
        browser_hash: hash_of(row, "browser_hash")?,
        pkce_verifier: row.try_get("pkce_verifier").map_err(get)?,
        nonce: row.try_get("nonce").map_err(get)?,
        next_path: row.try_get("next_path").map_err(get)?,
        link_user_id: row.try_get("link_user_id").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(get)?)?,
    })
}

fn identity_from_row(row: &DbRow) -> Result<IdentityRecord, StoreError> {
    let get = |e| store_error(e);
    Ok(IdentityRecord {
        provider_id: row.try_get("provider_id").map_err(get)?,
        subject: row.try_get("subject").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
    })
}

fn flow_from_row(row: &DbRow) -> Result<TokenFlowRecord, StoreError> {
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
impl Store for ThisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn watch_changes(&self) -> Result<Option<ChangeFeed>, StoreError> {
        self.watch().await
    }

    async fn throttle_state(&self, key: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT full_at FROM throttles WHERE throttle_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        from_opt_ms(tat)
    }

    async fn swap_throttle_state(
        &self,
        key: &str,
        seen: Option<OffsetDateTime>,
        next: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = match seen {
            None => sqlx::query(
                "INSERT INTO throttles (throttle_key, full_at) VALUES ($1, $2) \
                 ON CONFLICT (throttle_key) DO NOTHING",
            )
            .bind(key)
            .bind(to_ms(next)),
            Some(seen) => sqlx::query(
                "UPDATE throttles SET full_at = $2 WHERE throttle_key = $1 AND full_at = $3",
            )
            .bind(key)
            .bind(to_ms(next))
            .bind(to_ms(seen)),
        }
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        insert_user(&mut tx, user).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &IdentityRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        insert_user(&mut tx, user).await?;
        insert_identity(&mut *tx, identity).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn insert_identity(&self, identity: &IdentityRecord) -> Result<(), StoreError> {
        insert_identity(&self.pool, identity).await
    }

    async fn identities_of(&self, user_id: &str) -> Result<Vec<IdentityRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider_id, subject, user_id, email, created_at FROM identities \
             WHERE user_id = $1 ORDER BY created_at, provider_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn delete_identity(
        &self,
        user_id: &str,
        provider_id: &str,
        has_password: bool,
    ) -> Result<bool, StoreError> {
        // One statement, so the check and the removal see the same identities.
        let done = sqlx::query(
            "DELETE FROM identities WHERE user_id = $1 AND provider_id = $2 \
             AND ($3 OR (SELECT COUNT(*) FROM identities WHERE user_id = $1) > 1)",
        )
        .bind(user_id)
        .bind(provider_id)
        .bind(has_password)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn identity_user(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT user_id FROM identities WHERE provider_id = $1 AND subject = $2")
            .bind(provider_id)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn insert_upstream_login(&self, login: &UpstreamLoginRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, provider_id, browser_hash, pkce_verifier, \
             nonce, next_path, link_user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(login.state_hash.0.as_slice())
        .bind(&login.provider_id)
        .bind(login.browser_hash.0.as_slice())
        .bind(&login.pkce_verifier)
        .bind(&login.nonce)
        .bind(&login.next_path)
        .bind(&login.link_user_id)
        .bind(to_ms(login.created_at))
        .bind(to_ms(login.expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn upstream_login(
        &self,
        state_hash: &SecretHash,
    ) -> Result<Option<UpstreamLoginRecord>, StoreError> {
        let query = sqlx::query(
            "SELECT state_hash, provider_id, browser_hash, pkce_verifier, nonce, next_path, \
             link_user_id, created_at, expires_at FROM upstream_logins WHERE state_hash = $1",
        )
        .bind(state_hash.0.as_slice());
        self.fetch_record(query, upstream_login_from_row).await
    }

    async fn claim_upstream_login(&self, state_hash: &SecretHash) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM upstream_logins WHERE state_hash = $1")
            .bind(state_hash.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.user_where("u.email", email).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.user_where("u.id", id).await
    }

    async fn users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.personal_org_id \
             ORDER BY u.created_at DESC, u.id LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> Result<Option<Vec<SecretHash>>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let found = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at.map(to_ms))
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if found.rows_affected() == 0 {
            return Ok(None);
        }
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT key_hash FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        let keys = keys
            .into_iter()
            .map(|h| h.try_into().map(SecretHash))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("api key"))?;
        if let Some(now) = disabled_at {
            sign_out_everywhere(&mut tx, user_id, None, now).await?;
        }
        // Every cache forgets the keys either way: a refusal cached while the account was
        // disabled must not outlive its enabling.
        for hash in &keys {
            announce(&mut tx, &Change::ApiKeyRevoked(*hash)).await?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(Some(keys))
    }

    async fn sign_out_everywhere(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        sign_out_everywhere(&mut tx, user_id, None, now).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(u64::try_from(sessions).unwrap_or(0))
    }

    async fn replace_unverified_user(
        &self,
        old: &User,
        new: &User,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretHash>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let still_unverified: Option<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE id = $1 AND email_verified = FALSE",
        )
        .bind(&old.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        if still_unverified.is_none() {
            return Err(StoreError::Conflict("account"));
        }
        let revoked = delete_user(&mut tx, &old.id, &old.org.id, now).await?;
        insert_user(&mut tx, new).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(revoked)
    }

    async fn insert_email_verification(
        &self,
        token: &SecretHash,
        user_id: &str,
        browser: Option<&SecretHash>,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO email_verifications (token_hash, user_id, browser_hash, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token.0.as_slice())
        .bind(user_id)
        .bind(browser.map(|b| b.0.to_vec()))
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn email_verification(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<PendingVerification>, StoreError> {
        let query = sqlx::query(
            "SELECT user_id, browser_hash FROM email_verifications WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token.0.as_slice())
        .bind(to_ms(now));
        self.fetch_record(query, |row| {
            let browser: Option<Vec<u8>> = row.try_get("browser_hash").map_err(store_error)?;
            Ok(PendingVerification {
                user_id: row.try_get("user_id").map_err(store_error)?,
                browser: browser
                    .map(|b| b.try_into().map(SecretHash))
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("email verification"))?,
            })
        })
        .await
    }

    async fn email_verification_by_browser(
        &self,
        browser: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT user_id FROM email_verifications WHERE browser_hash = $1 AND expires_at > $2 \
             ORDER BY expires_at DESC LIMIT 1",
        )
        .bind(browser.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn consume_email_verification(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let user_id = spend_user_token(&mut tx, "email_verifications", token, now).await?;
        if let Some(user_id) = &user_id {
            sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(user_id)
    }

    async fn insert_password_reset(
        &self,
        token: &SecretHash,
        user_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.insert_user_token("password_resets", token, user_id, expires_at)
            .await
    }

    async fn password_reset_user(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        self.live_token_user("password_resets", token, now).await
    }

    async fn reset_password(
        &self,
        token: &SecretHash,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let user_id = spend_user_token(&mut tx, "password_resets", token, now).await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        sqlx::query("UPDATE users SET password_hash = $1, email_verified = TRUE WHERE id = $2")
            .bind(password_hash)
            .bind(&user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query("DELETE FROM email_verifications WHERE user_id = $1")
            .bind(&user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sign_out_everywhere(&mut tx, &user_id, None, now).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(user_id))
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sign_out_everywhere(&mut tx, user_id, Some(keep), now).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn insert_session(
        &self,
        token: &SecretHash,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, id, user_id, user_agent, ip, created_at, \
             last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.0.as_slice())
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.user_agent)
        .bind(&session.ip)
        .bind(to_ms(session.created_at))
        .bind(to_ms(session.last_seen_at))
        .bind(to_ms(session.expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn session_user(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(User, SessionRecord)>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, {SESSION_COLUMNS} FROM sessions s \
             JOIN users u ON u.id = s.user_id JOIN orgs o ON o.id = u.personal_org_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        self.fetch_record(
            sqlx::query(&sql).bind(token.0.as_slice()).bind(to_ms(now)),
            |row| Ok((user_from_row(row)?, session_from_row(row)?)),
        )
        .await
    }

    async fn delete_session(&self, token: &SecretHash) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
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
        // A disabled account's keys are refused without being revoked: enabling it gives them
        // back. The check is one primary-key probe of the key's own account.
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE key_hash = $1 AND NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = k.user_id AND u.disabled_at IS NOT NULL)"
        );
        self.fetch_record(sqlx::query(&sql).bind(hash.0.as_slice()), key_from_row)
            .await
    }

    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id"
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING key_hash",
        )
        .bind(to_ms(now))
        .bind(key_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let Some(hash) = hash else { return Ok(None) };
        let hash = SecretHash(
            hash.try_into()
                .map_err(|_| StoreError::Corrupt("api key"))?,
        );
        announce(&mut tx, &Change::ApiKeyRevoked(hash)).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(hash))
    }

    async fn record_api_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        for u in usage {
            sqlx::query(
                "UPDATE api_keys SET usage_count = usage_count + $1, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 \
                 ELSE last_used_at END WHERE id = $3",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')",
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
            "SELECT id, name, secret_hash, redirect_uris, created_at, registration_token_hash, \
             post_logout_redirect_uris, id_token_alg, access_token_alg \
             FROM oauth_clients WHERE id = $1",
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
        let logout_uris: String = row
            .try_get("post_logout_redirect_uris")
            .map_err(store_error)?;
        let alg = |column: &str| -> Result<Option<Algorithm>, StoreError> {
            let name: Option<String> = row.try_get(column).map_err(store_error)?;
            name.map(|name| Algorithm::parse(&name).ok_or(StoreError::Corrupt("oauth client")))
                .transpose()
        };
        let has_registration_token = row
            .try_get::<Option<Vec<u8>>, _>("registration_token_hash")
            .map_err(store_error)?
            .is_some();
        Ok(Some(OAuthClientRecord {
            registration_token: has_registration_token
                .then(|| hash_of(&row, "registration_token_hash"))
                .transpose()?,
            id: row.try_get("id").map_err(store_error)?,
            name: row.try_get("name").map_err(store_error)?,
            secret_hash: has_secret
                .then(|| hash_of(&row, "secret_hash"))
                .transpose()?,
            redirect_uris: serde_json::from_str(&uris)
                .map_err(|_| StoreError::Corrupt("oauth client"))?,
            created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
            post_logout_redirect_uris: serde_json::from_str(&logout_uris)
                .map_err(|_| StoreError::Corrupt("oauth client"))?,
            id_token_alg: alg("id_token_alg")?,
            access_token_alg: alg("access_token_alg")?,
        }))
    }

    async fn upsert_oauth_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|_| StoreError::Corrupt("oauth client"))?;
        let logout_uris = serde_json::to_string(&client.post_logout_redirect_uris)
            .map_err(|_| StoreError::Corrupt("oauth client"))?;
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, created_at, \
             registration_token_hash, post_logout_redirect_uris, id_token_alg, access_token_alg) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE \
             SET name = excluded.name, secret_hash = excluded.secret_hash, \
             redirect_uris = excluded.redirect_uris, \
             registration_token_hash = excluded.registration_token_hash, \
             post_logout_redirect_uris = excluded.post_logout_redirect_uris, \
             id_token_alg = excluded.id_token_alg, access_token_alg = excluded.access_token_alg",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(client.secret_hash.as_ref().map(|h| h.0.to_vec()))
        .bind(uris)
        .bind(to_ms(client.created_at))
        .bind(client.registration_token.as_ref().map(|h| h.0.to_vec()))
        .bind(logout_uris)
        .bind(client.id_token_alg.map(Algorithm::as_str))
        .bind(client.access_token_alg.map(Algorithm::as_str))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        announce(&mut tx, &Change::ClientChanged(client.id.clone())).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn delete_oauth_client(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let deleted = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected()
            == 1;
        announce(&mut tx, &Change::ClientChanged(id.to_owned())).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    async fn insert_authorization_code(
        &self,
        code: &AuthorizationCodeRecord,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        sqlx::query(&sql)
            .bind(code.code_hash.0.as_slice())
            .bind(&code.client_id)
            .bind(&code.user_id)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(&code.scope)
            .bind(&code.resource)
            .bind(&code.nonce)
            .bind(to_ms(code.auth_time))
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let sql =
            format!("SELECT {CODE_COLUMNS}, used_at FROM authorization_codes WHERE code_hash = $1");
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
            "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
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

    async fn insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
        login: Option<&LoginStart>,
    ) -> Result<(), StoreError> {
        let Some(login) = login else {
            return insert_refresh(&self.pool, token).await;
        };
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query(
            "INSERT INTO logins (family_id, user_id, client_id, method, device_name, scope, \
             created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (family_id) DO NOTHING",
        )
        .bind(&token.family_id)
        .bind(&token.user_id)
        .bind(&token.client_id)
        .bind(login.method)
        .bind(&login.device_name)
        .bind(&token.scope)
        .bind(to_ms(token.created_at))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        insert_refresh(&mut *tx, token).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &SecretHash,
        client_id: &str,
        next: &NextRefresh,
        now: OffsetDateTime,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let sql = format!(
            "SELECT {REFRESH_COLUMNS}, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1"
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
            revoke_family(&mut tx, &record.family_id, now).await?;
            tx.commit().await.map_err(store_error)?;
            return Ok(RefreshUse::Replayed(record));
        }
        // Guarded: of two concurrent rotations (PostgreSQL reads committed), one spends it and
        // the other is a reuse.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(presented.0.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if spent.rows_affected() != 1 {
            revoke_family(&mut tx, &record.family_id, now).await?;
            tx.commit().await.map_err(store_error)?;
            return Ok(RefreshUse::Replayed(record));
        }
        let next = RefreshTokenRecord {
            token_hash: next.token_hash,
            created_at: next.created_at,
            expires_at: next.expires_at,
            ..record.clone()
        };
        insert_refresh(&mut *tx, &next).await?;
        sqlx::query("UPDATE logins SET last_used_at = $1 WHERE family_id = $2")
            .bind(to_ms(now))
            .bind(&record.family_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(RefreshUse::Rotated(record))
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn access_revocations_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<AccessRevocation>, StoreError> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT CAST('jti' AS TEXT), jti, CAST(NULL AS TEXT), expires_at \
             FROM revoked_access_tokens WHERE revoked_at >= $1 \
             UNION ALL SELECT CAST('sid' AS TEXT), family_id, CAST(NULL AS TEXT), MAX(revoked_at) \
             FROM refresh_tokens WHERE revoked_at >= $1 GROUP BY family_id \
             UNION ALL SELECT CAST('org' AS TEXT), org_id, user_id, departed_at \
             FROM org_departures WHERE departed_at >= $1",
        )
        .bind(to_ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|(kind, id, user_id, at)| {
                let at = from_ms(at)?;
                Ok(match kind.as_str() {
                    "jti" => AccessRevocation::Token {
                        jti: id,
                        expires_at: at,
                    },
                    "sid" => AccessRevocation::Login {
                        family_id: id,
                        revoked_at: at,
                    },
                    _ => AccessRevocation::Departure {
                        org_id: id,
                        user_id,
                        departed_at: at,
                    },
                })
            })
            .collect()
    }

    async fn access_revoked(
        &self,
        claims: &latchkey_proto::oauth::AccessTokenClaims,
    ) -> Result<bool, StoreError> {
        // A token issued in the second its holder left counts as issued before: `iat` has no
        // finer grain.
        let revoked: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM revoked_access_tokens WHERE jti = $1 UNION ALL \
             SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND revoked_at IS NOT NULL UNION ALL \
             SELECT 1 FROM org_departures WHERE org_id = $3 AND (user_id = $4 OR user_id IS NULL) \
             AND departed_at >= $5 LIMIT 1",
        )
        .bind(&claims.jti)
        .bind(&claims.sid)
        .bind(&claims.org_id)
        .bind(&claims.sub)
        .bind(claims.iat.saturating_mul(1000))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(revoked.is_some())
    }

    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL \
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
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1");
        self.fetch_record(sqlx::query(&sql).bind(token_hash.0.as_slice()), refresh_from_row)
            .await
    }

    async fn live_refresh_token(
        &self,
        token_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2"
        );
        self.fetch_record(sqlx::query(&sql).bind(token_hash.0.as_slice()).bind(to_ms(now)), refresh_from_row)
            .await
    }

    async fn insert_device_code(&self, code: &DeviceCodeRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO device_codes ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
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
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM device_codes WHERE user_code = $1");
        self.fetch_record(sqlx::query(&sql).bind(user_code), device_from_row)
            .await
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
            "UPDATE device_codes SET status = $1, user_id = $2 \
             WHERE user_code = $3 AND status = 'pending' AND expires_at > $4",
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM device_codes WHERE device_code_hash = $1");
        let row = sqlx::query(&sql)
            .bind(device_code_hash.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(record) = row.as_ref().map(device_from_row).transpose()? else {
            return Ok(None);
        };
        sqlx::query("UPDATE device_codes SET last_polled_at = $1 WHERE device_code_hash = $2")
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
             WHERE device_code_hash = $1 AND status = 'approved'",
        )
        .bind(device_code_hash.0.as_slice())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn live_grants(
        &self,
        user_id: &str,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, resource FROM refresh_tokens WHERE user_id = $1 AND client_id = $2 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(to_ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("scope").map_err(store_error)?,
                    row.try_get("resource").map_err(store_error)?,
                ))
            })
            .collect()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_pkcs8, public_key, created_at, retired_at FROM signing_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let alg: String = row.try_get("alg").map_err(store_error)?;
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid").map_err(store_error)?,
                    alg: Algorithm::parse(&alg).ok_or(StoreError::Corrupt("signing key"))?,
                    private_pkcs8: row.try_get("private_pkcs8").map_err(store_error)?,
                    public_key: row.try_get("public_key").map_err(store_error)?,
                    created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
                    retired_at: from_opt_ms(row.try_get("retired_at").map_err(store_error)?)?,
                })
            })
            .collect()
    }

    async fn reseal_signing_key(&self, kid: &str, private: &[u8]) -> Result<(), StoreError> {
        sqlx::query("UPDATE signing_keys SET private_pkcs8 = $1 WHERE kid = $2")
            .bind(private)
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        forget_retired_before: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1")
            .bind(to_ms(forget_retired_before))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = $2")
            .bind(to_ms(key.created_at))
            .bind(key.alg.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at, alg) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.private_pkcs8)
        .bind(key.public_key.as_slice())
        .bind(to_ms(key.created_at))
        .bind(key.alg.as_str())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        announce(&mut tx, &Change::SigningKeysRotated).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn token_flow(&self, id: &str) -> Result<Option<TokenFlowRecord>, StoreError> {
        let sql = format!("SELECT {FLOW_COLUMNS} FROM token_flows WHERE id = $1");
        self.fetch_record(sqlx::query(&sql).bind(id), flow_from_row)
            .await
    }

    async fn approve_token_flow(
        &self,
        flow_id: &str,
        approval: &FlowApproval,
        key: &ApiKeyRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let updated = sqlx::query(
            "UPDATE token_flows SET status = 'approved', approved_user_id = $1, approved_key_id = $2, \
             sealed_key = $3, approved_at = $4 WHERE id = $5 AND status = 'pending' AND expires_at > $6",
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
        announce(&mut tx, &Change::TokenFlowDecided(flow_id.to_owned())).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn deny_token_flow(
        &self,
        flow_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let updated = sqlx::query(
            "UPDATE token_flows SET status = 'denied' WHERE id = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(flow_id)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        announce(&mut tx, &Change::TokenFlowDecided(flow_id.to_owned())).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn mark_token_flow_delivered(
        &self,
        flow_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE token_flows SET delivered_at = $1 WHERE id = $2 AND delivered_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(flow_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn delete_token_flow(&self, flow_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM token_flows WHERE id = $1")
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
        unverified_before: OffsetDateTime,
        audit_before: OffsetDateTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let swept_accounts = self
            .sweep_unverified_accounts(now, unverified_before, batch)
            .await?;
        let (now, before, batch) = (to_ms(now), to_ms(delivered_before), i64::from(batch));
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        // A key approved but never collected reached nobody: revoke it with its flow.
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL AND id IN (SELECT approved_key_id \
             FROM token_flows WHERE status = 'approved' AND delivered_at IS NULL AND expires_at < $2 LIMIT $3)",
        )
        .bind(now)
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let mut swept = swept_accounts;
        for sql in [
                            "DELETE FROM token_flows WHERE id IN (SELECT id FROM token_flows WHERE \
                 (status != 'approved' AND expires_at < $1) OR delivered_at < $2 \
                 OR (status = 'approved' AND delivered_at IS NULL AND expires_at < $2) LIMIT $3)",
            "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at < $1 LIMIT $3)",
                            "DELETE FROM email_verifications WHERE token_hash IN \
                 (SELECT token_hash FROM email_verifications WHERE expires_at < $1 LIMIT $3)",
            "DELETE FROM password_resets WHERE token_hash IN \
                 (SELECT token_hash FROM password_resets WHERE expires_at < $1 LIMIT $3)",
            "DELETE FROM email_changes WHERE token_hash IN \
                 (SELECT token_hash FROM email_changes WHERE expires_at < $1 LIMIT $3)",
            "DELETE FROM sign_in_challenges WHERE token_hash IN \
                 (SELECT token_hash FROM sign_in_challenges WHERE expires_at < $1 LIMIT $3)",
            "DELETE FROM webauthn_ceremonies WHERE token_hash IN \
                 (SELECT token_hash FROM webauthn_ceremonies WHERE expires_at < $1 LIMIT $3)",
            "DELETE FROM revoked_access_tokens WHERE jti IN \
                 (SELECT jti FROM revoked_access_tokens WHERE expires_at < $1 LIMIT $3)",
                            // Kept a little past expiry, so a replay just after still revokes its family.
                "DELETE FROM authorization_codes WHERE code_hash IN \
                 (SELECT code_hash FROM authorization_codes WHERE expires_at < $2 LIMIT $3)",
                            "DELETE FROM refresh_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $3)",
                            "DELETE FROM device_codes WHERE device_code_hash IN \
                 (SELECT device_code_hash FROM device_codes WHERE expires_at < $1 LIMIT $3)",
                            // A bucket full again holds nothing a missing row does not.
                "DELETE FROM throttles WHERE throttle_key IN \
                 (SELECT throttle_key FROM throttles WHERE full_at < $1 LIMIT $3)",
            "DELETE FROM upstream_logins WHERE state_hash IN \
                 (SELECT state_hash FROM upstream_logins WHERE expires_at < $1 LIMIT $3)",
        ] {
            swept += sqlx::query(sql)
                .bind(now)
                .bind(before)
                .bind(batch)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?
                .rows_affected();
        }
        swept += sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE created_at < $1 LIMIT $2)",
        )
        .bind(to_ms(audit_before))
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        // A login whose every refresh token has been swept is over.
        swept += sqlx::query(
            "DELETE FROM logins WHERE family_id IN (SELECT family_id FROM logins l WHERE NOT EXISTS \
             (SELECT 1 FROM refresh_tokens r WHERE r.family_id = l.family_id) LIMIT $1)",
        )
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        tx.commit().await.map_err(store_error)?;
        Ok(swept)
    }
}

/// Deletes a live single-use `token` from `table` and returns its user.
async fn spend_user_token(
    tx: &mut sqlx::Transaction<'_, Db>,
    table: &str,
    token: &SecretHash,
    now: OffsetDateTime,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(&format!(
        "DELETE FROM {table} WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id"
    ))
    .bind(token.0.as_slice())
    .bind(to_ms(now))
    .fetch_optional(&mut **tx)
    .await
    .map_err(store_error)
}

/// Inserts the user, their personal org and their owner membership.
async fn insert_user(tx: &mut sqlx::Transaction<'_, Db>, user: &User) -> Result<(), StoreError> {
    insert_org(tx, &user.org, user.created_at).await?;
    sqlx::query(
        "INSERT INTO users (id, email, email_verified, password_hash, personal_org_id, created_at, \
         name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(user.email_verified)
    .bind(&user.password_hash)
    .bind(&user.org.id)
    .bind(to_ms(user.created_at))
    .bind(&user.name)
    .execute(&mut **tx)
    .await
    .map_err(store_error)?;
    insert_membership(tx, &user.id, &user.org.id, Role::Owner, user.created_at).await
}

/// Deletes a user and their personal org (the rows that refer to the user go with it), after
/// revoking their keys so that every replica drops them from its cache. Returns their hashes.
async fn delete_user(
    tx: &mut sqlx::Transaction<'_, Db>,
    user_id: &str,
    org_id: &str,
    now: OffsetDateTime,
) -> Result<Vec<SecretHash>, StoreError> {
    let revoked = revoke_keys(tx, "user_id = $2", user_id, None, now).await?;
    for (sql, id) in [
        ("DELETE FROM users WHERE id = $1", user_id),
        ("DELETE FROM orgs WHERE id = $1", org_id),
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
    }
    Ok(revoked)
}

async fn insert_identity<'e, E>(executor: E, identity: &IdentityRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query(
        "INSERT INTO identities (provider_id, subject, user_id, email, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&identity.provider_id)
    .bind(&identity.subject)
    .bind(&identity.user_id)
    .bind(&identity.email)
    .bind(to_ms(identity.created_at))
    .execute(executor)
    .await
    .map_err(store_error)?;
    Ok(())
}

async fn insert_key<'e, E>(executor: E, key: &ApiKeyRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, org_id, name, key_prefix, key_hash, scope, created_at, \
         expires_at, revoked_at, last_used_at, usage_count, origin) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, 0, $10)",
    )
    .bind(&key.id)
    .bind(&key.user_id)
    .bind(&key.org_id)
    .bind(&key.name)
    .bind(&key.key_prefix)
    .bind(key.hash.0.as_slice())
    .bind(&key.scope)
    .bind(to_ms(key.created_at))
    .bind(key.expires_at.map(to_ms))
    .bind(&key.origin)
    .execute(executor)
    .await
    .map_err(store_error)?;
    Ok(())
}

async fn revoke_family(
    conn: &mut DbConnection,
    family_id: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
        .bind(to_ms(now))
        .bind(family_id)
        .execute(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Ends `user_id`'s sessions (all but `keep`) and reset links and revokes every refresh family
/// of theirs: what a password change or reset does besides setting the password.
async fn sign_out_everywhere(
    tx: &mut sqlx::Transaction<'_, Db>,
    user_id: &str,
    keep: Option<&SecretHash>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR token_hash <> $2)")
        .bind(user_id)
        .bind(keep.map(|k| k.0.as_slice()))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    sqlx::query("DELETE FROM password_resets WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(to_ms(now))
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map_err(store_error)?;
    Ok(())
}

async fn insert_refresh<'e>(
    executor: impl sqlx::Executor<'e, Database = Db>,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    let sql =
        format!("INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    sqlx::query(&sql)
        .bind(token.token_hash.0.as_slice())
        .bind(&token.family_id)
        .bind(&token.client_id)
        .bind(&token.user_id)
        .bind(&token.scope)
        .bind(&token.resource)
        .bind(to_ms(token.created_at))
        .bind(to_ms(token.expires_at))
        .bind(&token.org_id)
        .execute(executor)
        .await
        .map_err(store_error)?;
    Ok(())
}

fn code_from_row(row: &DbRow) -> Result<AuthorizationCodeRecord, StoreError> {
    Ok(AuthorizationCodeRecord {
        code_hash: hash_of(row, "code_hash")?,
        client_id: row.try_get("client_id").map_err(store_error)?,
        user_id: row.try_get("user_id").map_err(store_error)?,
        redirect_uri: row.try_get("redirect_uri").map_err(store_error)?,
        code_challenge: row.try_get("code_challenge").map_err(store_error)?,
        scope: row.try_get("scope").map_err(store_error)?,
        resource: row.try_get("resource").map_err(store_error)?,
        nonce: row.try_get("nonce").map_err(store_error)?,
        auth_time: from_ms(row.try_get("auth_time").map_err(store_error)?)?,
        family_id: row.try_get("family_id").map_err(store_error)?,
        created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(store_error)?)?,
    })
}

fn refresh_from_row(row: &DbRow) -> Result<RefreshTokenRecord, StoreError> {
    Ok(RefreshTokenRecord {
        token_hash: hash_of(row, "token_hash")?,
        family_id: row.try_get("family_id").map_err(store_error)?,
        client_id: row.try_get("client_id").map_err(store_error)?,
        user_id: row.try_get("user_id").map_err(store_error)?,
        scope: row.try_get("scope").map_err(store_error)?,
        resource: row.try_get("resource").map_err(store_error)?,
        created_at: from_ms(row.try_get("created_at").map_err(store_error)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(store_error)?)?,
        org_id: row.try_get("org_id").map_err(store_error)?,
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

fn device_from_row(row: &DbRow) -> Result<DeviceCodeRecord, StoreError> {
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
