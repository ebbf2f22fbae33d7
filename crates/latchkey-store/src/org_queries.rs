// The organization queries, written once for both backends like `queries.rs` (and included
// after it): `OrgStore` for `ThisStore`.

#[async_trait]
impl OrgStore for ThisStore {
    async fn create_org(
        &self,
        org: &Org,
        owner_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        insert_org(&mut tx, org, now).await?;
        insert_membership(&mut tx, owner_id, &org.id, Role::Owner, now).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn find_org(&self, org: &str) -> Result<Option<Org>, StoreError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT id, slug, name FROM orgs WHERE id = $1 OR slug = $1")
                .bind(org)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(row.map(|(id, slug, name)| Org { id, slug, name }))
    }

    async fn record_federated_exchange(
        &self,
        record: &FederatedExchangeRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO federated_exchanges (trusted_issuer, subject, claims, org_id, at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.trusted_issuer)
        .bind(&record.subject)
        .bind(&record.claims)
        .bind(&record.org_id)
        .bind(to_ms(record.at))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn memberships(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(&format!(
            "{MEMBERSHIP_SELECT} WHERE m.user_id = $1 \
             ORDER BY CASE WHEN o.id = u.personal_org_id THEN 0 ELSE 1 END, o.slug"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(membership_from_row).collect()
    }

    async fn membership(
        &self,
        user_id: &str,
        org: &str,
    ) -> Result<Option<Membership>, StoreError> {
        let sql = format!("{MEMBERSHIP_SELECT} WHERE m.user_id = $1 AND (o.id = $2 OR o.slug = $2)");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(org)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(membership_from_row).transpose()
    }

    async fn org_members(&self, org_id: &str) -> Result<Vec<MemberRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 \
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, u.email",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let get = |e| store_error(e);
                Ok(MemberRecord {
                    user_id: row.try_get("id").map_err(get)?,
                    email: row.try_get("email").map_err(get)?,
                    name: row.try_get("name").map_err(get)?,
                    role: role_of(row)?,
                    joined_at: from_ms(row.try_get("created_at").map_err(get)?)?,
                })
            })
            .collect()
    }

    async fn rename_org(&self, org_id: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE orgs SET name = $2 WHERE id = $1")
            .bind(org_id)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<MembershipChange, StoreError> {
        let mut tx = lock_org(&self.pool, org_id).await?;
        let changed = sqlx::query(&format!(
            "UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2 \
             AND (role <> 'owner' OR $3 = 'owner' OR {OTHER_OWNERS})"
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let outcome = membership_change(&mut tx, org_id, user_id, changed.rows_affected()).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(outcome)
    }

    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<(MembershipChange, Vec<SecretHash>), StoreError> {
        let mut tx = lock_org(&self.pool, org_id).await?;
        let removed = sqlx::query(&format!(
            "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2 \
             AND (role <> 'owner' OR {OTHER_OWNERS})"
        ))
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let outcome = membership_change(&mut tx, org_id, user_id, removed.rows_affected()).await?;
        let revoked = if outcome == MembershipChange::Done {
            sqlx::query("DELETE FROM refresh_tokens WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            record_departure(&mut tx, org_id, Some(user_id), now).await?;
            revoke_keys(&mut tx, "user_id = $2 AND org_id = $3", user_id, Some(org_id), now).await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(store_error)?;
        Ok((outcome, revoked))
    }

    async fn replace_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query("DELETE FROM org_invitations WHERE org_id = $1 AND email = $2")
            .bind(&invitation.org_id)
            .bind(&invitation.email)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO org_invitations (id, org_id, email, role, token_hash, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&invitation.id)
        .bind(&invitation.org_id)
        .bind(&invitation.email)
        .bind(invitation.role.as_str())
        .bind(invitation.token_hash.0.as_slice())
        .bind(&invitation.invited_by)
        .bind(to_ms(invitation.created_at))
        .bind(to_ms(invitation.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn invitations(
        &self,
        org_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM org_invitations i \
             WHERE i.org_id = $1 AND i.expires_at > $2 ORDER BY i.created_at DESC, i.email"
        ))
        .bind(org_id)
        .bind(to_ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(invitation_from_row).collect()
    }

    async fn delete_invitation(&self, org_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM org_invitations WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn invitation(
        &self,
        token_hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<Option<(InvitationRecord, Org)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS}, o.slug, o.name FROM org_invitations i \
             JOIN orgs o ON o.id = i.org_id WHERE i.token_hash = $1 AND i.expires_at > $2"
        ))
        .bind(token_hash.0.as_slice())
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            let invitation = invitation_from_row(&row)?;
            let org = Org {
                id: invitation.org_id.clone(),
                slug: row.try_get("slug").map_err(store_error)?,
                name: row.try_get("name").map_err(store_error)?,
            };
            Ok((invitation, org))
        })
        .transpose()
    }

    async fn accept_invitation(
        &self,
        invitation: &InvitationRecord,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = lock_org(&self.pool, &invitation.org_id).await?;
        let spent = sqlx::query("DELETE FROM org_invitations WHERE id = $1")
            .bind(&invitation.id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if spent.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO memberships (user_id, org_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, org_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(&invitation.org_id)
        .bind(invitation.role.as_str())
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn delete_org(
        &self,
        org_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretHash>, StoreError> {
        let mut tx = lock_org(&self.pool, org_id).await?;
        let revoked = revoke_keys(&mut tx, "org_id = $2", org_id, None, now).await?;
        record_departure(&mut tx, org_id, None, now).await?;
        sqlx::query("DELETE FROM orgs WHERE id = $1")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(revoked)
    }
}

const MEMBERSHIP_SELECT: &str = "SELECT o.id, o.slug, o.name, o.require_second_factor, m.role, u.personal_org_id \
     FROM memberships m JOIN orgs o ON o.id = m.org_id JOIN users u ON u.id = m.user_id";

/// True while the org ($1) has an owner other than the member ($2) being changed.
const OTHER_OWNERS: &str = "EXISTS (SELECT 1 FROM memberships o2 WHERE o2.org_id = $1 \
     AND o2.role = 'owner' AND o2.user_id <> $2)";

const INVITATION_COLUMNS: &str = "i.id, i.org_id, i.email, i.role, i.token_hash, i.invited_by, \
     i.created_at, i.expires_at";

fn invitation_from_row(row: &DbRow) -> Result<InvitationRecord, StoreError> {
    let get = |e| store_error(e);
    Ok(InvitationRecord {
        id: row.try_get("id").map_err(get)?,
        org_id: row.try_get("org_id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        role: role_of(row)?,
        token_hash: hash_of(row, "token_hash")?,
        invited_by: row.try_get("invited_by").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(get)?)?,
    })
}

fn role_of(row: &DbRow) -> Result<Role, StoreError> {
    let role: String = row.try_get("role").map_err(store_error)?;
    Role::parse(&role).map_err(|_| StoreError::Corrupt("membership"))
}

fn membership_from_row(row: &DbRow) -> Result<Membership, StoreError> {
    let get = |e| store_error(e);
    let id: String = row.try_get("id").map_err(get)?;
    let personal_org_id: String = row.try_get("personal_org_id").map_err(get)?;
    Ok(Membership {
        personal: id == personal_org_id,
        org: Org {
            id,
            slug: row.try_get("slug").map_err(get)?,
            name: row.try_get("name").map_err(get)?,
        },
        role: role_of(row)?,
        requires_second_factor: row.try_get("require_second_factor").map_err(get)?,
    })
}

/// A write transaction holding the org's row, so that owner checks in it cannot race.
async fn lock_org<'p>(
    pool: &'p sqlx::Pool<Db>,
    org_id: &str,
) -> Result<sqlx::Transaction<'p, Db>, StoreError> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
    // An update that changes nothing still takes the row lock (PostgreSQL); SQLite's write
    // transaction already excludes every other writer.
    sqlx::query("UPDATE orgs SET name = name WHERE id = $1")
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    Ok(tx)
}

/// What an update or delete of `user_id`'s membership that touched `affected` rows means.
async fn membership_change(
    tx: &mut sqlx::Transaction<'_, Db>,
    org_id: &str,
    user_id: &str,
    affected: u64,
) -> Result<MembershipChange, StoreError> {
    if affected == 1 {
        return Ok(MembershipChange::Done);
    }
    let member: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(store_error)?;
    Ok(match member {
        Some(_) => MembershipChange::LastOwner,
        None => MembershipChange::NotAMember,
    })
}

async fn insert_org(
    tx: &mut sqlx::Transaction<'_, Db>,
    org: &Org,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO orgs (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&org.id)
        .bind(&org.slug)
        .bind(&org.name)
        .bind(to_ms(now))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

async fn insert_membership(
    tx: &mut sqlx::Transaction<'_, Db>,
    user_id: &str,
    org_id: &str,
    role: Role,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO memberships (user_id, org_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(org_id)
        .bind(role.as_str())
        .bind(to_ms(now))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Records that `user_id` (or, with `None`, everyone) left `org_id` at `now`, for access-token
/// revocation, and forgets departures older than any access token can live.
async fn record_departure(
    tx: &mut sqlx::Transaction<'_, Db>,
    org_id: &str,
    user_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    const KEPT: time::Duration = time::Duration::days(1);
    sqlx::query("DELETE FROM org_departures WHERE departed_at < $1")
        .bind(to_ms(now - KEPT))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    sqlx::query("INSERT INTO org_departures (org_id, user_id, departed_at) VALUES ($1, $2, $3)")
        .bind(org_id)
        .bind(user_id)
        .bind(to_ms(now))
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

async fn revoke_keys(
    tx: &mut sqlx::Transaction<'_, Db>,
    condition: &str,
    first: &str,
    second: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<SecretHash>, StoreError> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = $1 WHERE {condition} AND revoked_at IS NULL \
         RETURNING key_hash"
    );
    let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql).bind(to_ms(now)).bind(first);
    if let Some(second) = second {
        query = query.bind(second);
    }
    let hashes = query.fetch_all(&mut **tx).await.map_err(store_error)?;
    let mut revoked = Vec::with_capacity(hashes.len());
    for hash in hashes {
        let hash = SecretHash(hash.try_into().map_err(|_| StoreError::Corrupt("api key"))?);
        announce(tx, &Change::ApiKeyRevoked(hash)).await?;
        revoked.push(hash);
    }
    Ok(revoked)
}
