// The passkeys' queries, written once for both backends like `queries.rs` (and included
// after it): `PasskeyStore` for `ThisStore`.

const PASSKEY_COLUMNS: &str =
    "id, user_id, name, credential_id, credential, created_at, last_used_at";

#[derive(sqlx::FromRow)]
struct PasskeyRow {
    id: String,
    user_id: String,
    name: String,
    credential_id: Vec<u8>,
    credential: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl TryFrom<PasskeyRow> for PasskeyRecord {
    type Error = StoreError;

    fn try_from(row: PasskeyRow) -> Result<Self, StoreError> {
        Ok(PasskeyRecord {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            credential_id: row.credential_id,
            credential: row.credential,
            created_at: from_ms(row.created_at)?,
            last_used_at: from_opt_ms(row.last_used_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CeremonyRow {
    kind: String,
    user_id: Option<String>,
    state: String,
    expires_at: i64,
}

#[async_trait]
impl PasskeyStore for ThisStore {
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&passkey.id)
        .bind(&passkey.user_id)
        .bind(&passkey.name)
        .bind(&passkey.credential_id)
        .bind(&passkey.credential)
        .bind(to_ms(passkey.created_at))
        .bind(passkey.last_used_at.map(to_ms))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let rows: Vec<PasskeyRow> = sqlx::query_as(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(PasskeyRecord::try_from).collect()
    }

    async fn passkey_by_credential(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        let row: Option<PasskeyRow> = sqlx::query_as(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        ))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(PasskeyRecord::try_from).transpose()
    }

    async fn passkey_used(
        &self,
        id: &str,
        credential: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3")
            .bind(credential)
            .bind(to_ms(now))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn rename_passkey(
        &self,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE passkeys SET name = $1 WHERE user_id = $2 AND id = $3")
            .bind(name)
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_ceremony(
        &self,
        token: &SecretHash,
        ceremony: &CeremonyRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (token_hash, kind, user_id, state, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.0.as_slice())
        .bind(&ceremony.kind)
        .bind(&ceremony.user_id)
        .bind(&ceremony.state)
        .bind(to_ms(ceremony.expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<CeremonyRecord>, StoreError> {
        let row: Option<CeremonyRow> = sqlx::query_as(
            "DELETE FROM webauthn_ceremonies WHERE token_hash = $1 AND expires_at > $2 \
             RETURNING kind, user_id, state, expires_at",
        )
        .bind(token.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            Ok(CeremonyRecord {
                kind: row.kind,
                user_id: row.user_id,
                state: row.state,
                expires_at: from_ms(row.expires_at)?,
            })
        })
        .transpose()
    }
}
