// The second factor's queries (TOTP, recovery codes, sign-ins waiting for a code, orgs that
// require one), written once for both backends like `queries.rs` (and included after it).

#[derive(sqlx::FromRow)]
struct TotpRow {
    secret: Vec<u8>,
    confirmed_at: Option<i64>,
    last_step: i64,
}

#[async_trait]
impl SecondFactorStore for ThisStore {
    async fn start_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1 AND confirmed_at IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let stored = sqlx::query(
            "INSERT INTO totp_credentials (user_id, secret, confirmed_at, last_step, created_at) \
             VALUES ($1, $2, NULL, 0, $3) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(secret)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(stored.rows_affected() == 1)
    }

    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        let row: Option<TotpRow> = sqlx::query_as(
            "SELECT secret, confirmed_at, last_step FROM totp_credentials WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            Ok(TotpRecord {
                secret: row.secret,
                confirmed_at: from_opt_ms(row.confirmed_at)?,
                last_step: u64::try_from(row.last_step).unwrap_or(0),
            })
        })
        .transpose()
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        step: u64,
        recovery_codes: &[SecretHash],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let confirmed = sqlx::query(
            "UPDATE totp_credentials SET confirmed_at = $1, last_step = $2 \
             WHERE user_id = $3 AND confirmed_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if confirmed.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        for code in recovery_codes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(code.0.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool, StoreError> {
        // Guarded: of two sign-ins with one code, one moves the step and the other is refused.
        let used = sqlx::query(
            "UPDATE totp_credentials SET last_step = $1 \
             WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
        )
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(used.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(user_id)
        .bind(code.0.as_slice())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(used.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError> {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(u64::try_from(left).unwrap_or(0))
    }

    async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let deleted = sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn insert_sign_in_challenge(
        &self,
        token: &SecretHash,
        user_id: &str,
        next_path: Option<&str>,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sign_in_challenges (token_hash, user_id, next_path, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token.0.as_slice())
        .bind(user_id)
        .bind(next_path)
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn sign_in_challenge(
        &self,
        token: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        sqlx::query_as(
            "SELECT user_id, next_path FROM sign_in_challenges \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn delete_sign_in_challenge(&self, token: &SecretHash) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM sign_in_challenges WHERE token_hash = $1")
            .bind(token.0.as_slice())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn set_org_requires_second_factor(
        &self,
        org_id: &str,
        required: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE orgs SET require_second_factor = $1 WHERE id = $2")
            .bind(required)
            .bind(org_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
