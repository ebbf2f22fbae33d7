//! Rules both backends must keep the same way: uniqueness errors, throttles shared by every
//! service on the database, sweeps in bounded batches.

use std::time::Duration;

use latchkey_core::{
    AccountError, Password, StoreError,
    store::{Org, User},
};
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
