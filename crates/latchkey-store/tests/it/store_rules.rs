//! Rules both backends must keep the same way: uniqueness errors, throttles shared by every
//! service on the database, sweeps in bounded batches.

use std::time::Duration;

use latchkey_core::{
    AccountError, Password, StoreError,
    store::{DeviceCodeRecord, DeviceCodeStatus, OAuthClientRecord, Org, User},
};
use latchkey_proto::SecretHash;
use time::OffsetDateTime;

use crate::Harness;

fn user(id: &str, email: &str, slug: &str, now: OffsetDateTime) -> User {
    User {
        id: id.into(),
        email: email.into(),
        email_verified: false,
        password_hash: "not a real hash".into(),
        created_at: now,
        org: Org {
            id: format!("org_{id}"),
            slug: slug.into(),
            name: slug.into(),
        },
    }
}

#[tokio::test]
async fn a_taken_email_or_org_slug_is_a_named_conflict_and_writes_nothing() {
    let h = Harness::new().await;
    let now = h.service.now();
    h.store
        .create_user(&user("usr_1", "a@example.com", "a-1", now))
        .await
        .expect("first");
    let taken_email = h
        .store
        .create_user(&user("usr_2", "a@example.com", "b-2", now))
        .await;
    assert!(
        matches!(taken_email, Err(StoreError::Conflict("account"))),
        "{taken_email:?}"
    );
    let taken_slug = h
        .store
        .create_user(&user("usr_3", "c@example.com", "a-1", now))
        .await;
    assert!(
        matches!(taken_slug, Err(StoreError::Conflict("org"))),
        "{taken_slug:?}"
    );
    for (id, email) in [("usr_2", "b@example.com"), ("usr_3", "c@example.com")] {
        assert!(h.store.user_by_id(id).await.expect("read").is_none());
        assert!(h.store.user_by_email(email).await.expect("read").is_none());
    }
}

#[tokio::test]
async fn sign_in_attempts_count_against_one_budget_on_every_service_of_the_database() {
    let h = Harness::new().await;
    let other = h.another_service().await;
    h.verified_user("guessed@example.com").await;
    let wrong = || Password::parse("wrong password!".into()).expect("password");
    for i in 0..10 {
        let service = if i % 2 == 0 { &h.service } else { &other };
        let attempt = service.sign_in("guessed@example.com", wrong(), None).await;
        assert!(
            matches!(attempt, Err(AccountError::WrongCredentials)),
            "{i}: {attempt:?}"
        );
    }
    for service in [&h.service, &other] {
        let attempt = service.sign_in("guessed@example.com", wrong(), None).await;
        assert!(
            matches!(attempt, Err(AccountError::Throttled(_))),
            "{attempt:?}"
        );
    }
    h.clock.advance(Duration::from_secs(90));
    let attempt = other.sign_in("guessed@example.com", wrong(), None).await;
    assert!(
        matches!(attempt, Err(AccountError::WrongCredentials)),
        "refilled: {attempt:?}"
    );
}

#[tokio::test]
async fn a_sweep_deletes_at_most_one_batch_of_each_kind() {
    let h = Harness::new().await;
    let user = h.verified_user("sweep@example.com").await;
    let now = h.service.now();
    for i in 0..5u8 {
        h.store
            .insert_session(
                &latchkey_proto::SecretHash([i; 32]),
                &user.id,
                now + Duration::from_secs(1),
            )
            .await
            .expect("session");
    }
    let later = now + Duration::from_secs(10);
    assert_eq!(
        h.store.sweep_expired(later, later, 2).await.expect("sweep"),
        2
    );
    assert_eq!(
        h.store.sweep_expired(later, later, 2).await.expect("sweep"),
        2
    );
    assert_eq!(
        h.store.sweep_expired(later, later, 2).await.expect("sweep"),
        1
    );
    assert_eq!(
        h.store.sweep_expired(later, later, 2).await.expect("sweep"),
        0
    );
}

#[tokio::test]
async fn concurrent_read_then_write_transactions_wait_their_turn() {
    // A device code polled by many at once: each poll reads the row, then writes it, in one
    // transaction. On SQLite a transaction that read before another committed must wait for
    // the write lock, not fail with "database is locked".
    let h = Harness::new().await;
    let now = h.service.now();
    h.store
        .upsert_oauth_client(&OAuthClientRecord {
            id: "cli_poll".into(),
            name: "poller".into(),
            secret_hash: None,
            redirect_uris: vec![],
            created_at: now,
        })
        .await
        .expect("client");
    let device_code = SecretHash::of("device code");
    h.store
        .insert_device_code(&DeviceCodeRecord {
            device_code_hash: device_code,
            user_code: "BCDFGHJK".into(),
            client_id: "cli_poll".into(),
            scope: "openid".into(),
            resource: None,
            created_at: now,
            expires_at: now + Duration::from_secs(600),
            last_polled_at: None,
            status: DeviceCodeStatus::Pending,
            user_id: None,
            family_id: "fam_poll".into(),
        })
        .await
        .expect("device code");

    let mut polls = tokio::task::JoinSet::new();
    for n in 0..400u64 {
        let (store, hash) = (h.store.clone(), device_code);
        polls.spawn(async move {
            let at = now + Duration::from_millis(n);
            store.poll_device_code(&hash, at).await
        });
    }
    while let Some(poll) = polls.join_next().await {
        let record = poll.expect("poll task").expect("every poll succeeds");
        assert!(record.is_some());
    }
}
