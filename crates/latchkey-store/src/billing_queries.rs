// The subscription queries, written once for both backends like `queries.rs` (and included
// after it): `BillingStore` for `ThisStore`.

#[async_trait]
impl BillingStore for ThisStore {
    async fn subscription(&self, org_id: &str) -> Result<Option<Subscription>, StoreError> {
        read_subscription(&self.pool, org_id).await
    }

    async fn billing_org(
        &self,
        subscription_id: Option<&str>,
        customer_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT org_id FROM subscriptions WHERE subscription_id = $1 OR customer_id = $2 \
             ORDER BY CASE WHEN subscription_id = $1 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(subscription_id)
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn apply_billing_update(
        &self,
        event_id: Option<&str>,
        org_id: &str,
        update: &SubscriptionUpdate,
        default_tier: &str,
        now: OffsetDateTime,
    ) -> Result<BillingOutcome, StoreError> {
        // The org's row lock orders concurrent updates of one subscription (two replicas
        // receiving its events at once): each reads the state the other committed.
        let mut tx = lock_org(&self.pool, org_id).await?;
        if let Some(event_id) = event_id {
            let fresh = sqlx::query(
                "INSERT INTO billing_events (event_id, received_at) VALUES ($1, $2) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            if fresh.rows_affected() == 0 {
                return Ok(BillingOutcome::Replayed);
            }
            // Stripe retries an event for three days: a month of ids is ample.
            sqlx::query("DELETE FROM billing_events WHERE received_at < $1")
                .bind(to_ms(now - time::Duration::days(30)))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        let stored = read_subscription(&mut *tx, org_id).await?;
        let Some(next) = billing::stripe::resolve(stored.as_ref(), update, default_tier) else {
            tx.commit().await.map_err(store_error)?;
            return Ok(BillingOutcome::Stale);
        };
        sqlx::query(
            "INSERT INTO subscriptions (org_id, status, tier, current_period_end, customer_id, \
             subscription_id, as_of) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (org_id) DO UPDATE SET status = excluded.status, tier = excluded.tier, \
             current_period_end = excluded.current_period_end, customer_id = excluded.customer_id, \
             subscription_id = excluded.subscription_id, as_of = excluded.as_of",
        )
        .bind(org_id)
        .bind(next.status.as_str())
        .bind(&next.tier)
        .bind(next.current_period_end.map(to_ms))
        .bind(&next.customer_id)
        .bind(&next.subscription_id)
        .bind(to_ms(next.as_of))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        announce(&mut tx, &Change::SubscriptionChanged(org_id.to_owned())).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(BillingOutcome::Applied(next))
    }
}

async fn read_subscription<'e>(
    executor: impl sqlx::Executor<'e, Database = Db>,
    org_id: &str,
) -> Result<Option<Subscription>, StoreError> {
    let row = sqlx::query(
        "SELECT status, tier, current_period_end, customer_id, subscription_id, as_of \
         FROM subscriptions WHERE org_id = $1",
    )
    .bind(org_id)
    .fetch_optional(executor)
    .await
    .map_err(store_error)?;
    row.map(|row| {
        let get = |e| store_error(e);
        let status: String = row.try_get("status").map_err(get)?;
        Ok(Subscription {
            status: SubscriptionStatus::parse(&status)
                .map_err(|_| StoreError::Corrupt("subscription"))?,
            tier: row.try_get("tier").map_err(get)?,
            current_period_end: from_opt_ms(row.try_get("current_period_end").map_err(get)?)?,
            customer_id: row.try_get("customer_id").map_err(get)?,
            subscription_id: row.try_get("subscription_id").map_err(get)?,
            as_of: from_ms(row.try_get("as_of").map_err(get)?)?,
        })
    })
    .transpose()
}
