// The account console's queries (sessions, logins, the audit log), written once for both
// backends like `queries.rs` (and included after it): `ConsoleStore` for `ThisStore`.

/// A session's columns, named apart from the user's they are read with.
const SESSION_COLUMNS: &str = "s.id AS session_id, s.user_id AS session_user_id, s.user_agent, \
     s.ip, s.created_at AS session_created_at, s.last_seen_at, s.expires_at AS session_expires_at";

#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: String,
    session_user_id: String,
    user_agent: Option<String>,
    ip: Option<String>,
    session_created_at: i64,
    last_seen_at: i64,
    session_expires_at: i64,
}

fn session_from_row(row: &DbRow) -> Result<SessionRecord, StoreError> {
    let row = SessionRow::from_row(row).map_err(store_error)?;
    Ok(SessionRecord {
        id: row.session_id,
        user_id: row.session_user_id,
        user_agent: row.user_agent,
        ip: row.ip,
        created_at: from_ms(row.session_created_at)?,
        last_seen_at: from_ms(row.last_seen_at)?,
        expires_at: from_ms(row.session_expires_at)?,
    })
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    family_id: String,
    user_id: String,
    client_id: String,
    client_name: String,
    method: String,
    device_name: Option<String>,
    scope: String,
    created_at: i64,
    last_used_at: i64,
}

impl TryFrom<LoginRow> for LoginRecord {
    type Error = StoreError;

    fn try_from(row: LoginRow) -> Result<Self, StoreError> {
        Ok(LoginRecord {
            family_id: row.family_id,
            user_id: row.user_id,
            client_id: row.client_id,
            client_name: row.client_name,
            method: row.method,
            device_name: row.device_name,
            scope: row.scope,
            created_at: from_ms(row.created_at)?,
            last_used_at: from_ms(row.last_used_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    kind: String,
    user_id: Option<String>,
    org_id: Option<String>,
    ip: Option<String>,
    detail: String,
    created_at: i64,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEvent {
            id: row.id,
            kind: row.kind,
            user_id: row.user_id,
            org_id: row.org_id,
            ip: row.ip,
            detail: row.detail,
            at: from_ms(row.created_at)?,
        })
    }
}

#[async_trait]
impl ConsoleStore for ThisStore {
    async fn touch_session(
        &self,
        token: &SecretHash,
        ip: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1, ip = COALESCE($2, ip) WHERE token_hash = $3",
        )
        .bind(to_ms(now))
        .bind(ip)
        .bind(token.0.as_slice())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND s.expires_at > $2 \
             ORDER BY s.last_seen_at DESC, s.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(to_ms(now))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn end_session(&self, user_id: &str, session_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(session_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_other_sessions(&self, user_id: &str, keep: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
            .bind(user_id)
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn logins(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<LoginRecord>, StoreError> {
        let rows: Vec<LoginRow> = sqlx::query_as(
            "SELECT l.family_id, l.user_id, l.client_id, c.name AS client_name, l.method, \
             l.device_name, l.scope, l.created_at, l.last_used_at \
             FROM logins l JOIN oauth_clients c ON c.id = l.client_id \
             WHERE l.user_id = $1 AND EXISTS (SELECT 1 FROM refresh_tokens r \
             WHERE r.family_id = l.family_id AND r.used_at IS NULL AND r.revoked_at IS NULL \
             AND r.expires_at > $2) \
             ORDER BY l.last_used_at DESC, l.family_id",
        )
        .bind(user_id)
        .bind(to_ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(LoginRecord::try_from).collect()
    }

    async fn insert_audit_event(&self, event: &AuditEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_events (kind, user_id, org_id, ip, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.kind)
        .bind(&event.user_id)
        .bind(&event.org_id)
        .bind(&event.ip)
        .bind(&event.detail)
        .bind(to_ms(event.at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn audit_events(
        &self,
        query: &AuditQuery,
        since: OffsetDateTime,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut sql = sqlx::QueryBuilder::<Db>::new(
            "SELECT id, kind, user_id, org_id, ip, detail, created_at FROM audit_events \
             WHERE created_at >= ",
        );
        sql.push_bind(to_ms(since));
        if let Some(user_id) = &query.user_id {
            sql.push(" AND user_id = ").push_bind(user_id);
        }
        if let Some(org_id) = &query.org_id {
            sql.push(" AND org_id = ").push_bind(org_id);
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before);
        }
        if !query.kinds.is_empty() {
            sql.push(" AND kind IN (");
            let mut kinds = sql.separated(", ");
            for kind in &query.kinds {
                kinds.push_bind(kind);
            }
            sql.push(")");
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows: Vec<AuditRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    async fn insert_email_change(
        &self,
        token: &SecretHash,
        user_id: &str,
        new_email: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query("DELETE FROM email_changes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO email_changes (token_hash, user_id, new_email, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token.0.as_slice())
        .bind(user_id)
        .bind(new_email)
        .bind(to_ms(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn apply_email_change(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let change: Option<(String, String)> = sqlx::query_as(
            "DELETE FROM email_changes WHERE token_hash = $1 AND expires_at > $2 \
             RETURNING user_id, new_email",
        )
        .bind(token.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let Some((user_id, new_email)) = change else {
            return Ok(None);
        };
        let old: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(&user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let Some(old) = old else { return Ok(None) };
        sqlx::query("UPDATE users SET email = $1, email_verified = TRUE WHERE id = $2")
            .bind(&new_email)
            .bind(&user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict("account")
                }
                other => store_error(other),
            })?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some((user_id, old, new_email)))
    }

    async fn delete_account(
        &self,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<AccountDeletion, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let sole: Vec<String> = sqlx::query_scalar(
            "SELECT o.slug FROM memberships m JOIN orgs o ON o.id = m.org_id \
             WHERE m.user_id = $1 AND m.role = 'owner' AND m.org_id <> $2 AND NOT EXISTS \
             (SELECT 1 FROM memberships other WHERE other.org_id = m.org_id \
              AND other.role = 'owner' AND other.user_id <> $1) ORDER BY o.slug",
        )
        .bind(&user.id)
        .bind(&user.org.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        if !sole.is_empty() {
            return Ok(AccountDeletion::SoleOwner(sole));
        }
        let orgs: Vec<String> = sqlx::query_scalar(
            "SELECT org_id FROM memberships WHERE user_id = $1 AND org_id <> $2",
        )
        .bind(&user.id)
        .bind(&user.org.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        for org_id in &orgs {
            record_departure(&mut tx, org_id, Some(&user.id), now).await?;
        }
        record_departure(&mut tx, &user.org.id, None, now).await?;
        sign_out_everywhere(&mut tx, &user.id, None, now).await?;
        let revoked = delete_user(&mut tx, &user.id, &user.org.id, now).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(AccountDeletion::Deleted(revoked))
    }

    async fn sign_in_history(
        &self,
        user_id: &str,
        device: &str,
    ) -> Result<(bool, bool), StoreError> {
        let (before, here): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN detail = $2 THEN 1 ELSE 0 END), 0) \
             FROM audit_events WHERE user_id = $1 AND kind = 'sign_in'",
        )
        .bind(user_id)
        .bind(device)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok((before > 0, here > 0))
    }
}
