use latchkey_core::ApiKeyError;

use crate::Harness;

#[tokio::test]
async fn usage_is_counted_in_memory_and_written_in_one_batch() {
    let h = Harness::new().await;
    let user = h.verified_user("usage@example.com").await;
    let (key, _) = h
        .service
        .create_api_key(&user, Some("ci".into()), None)
        .await
        .expect("created");
    for _ in 0..3 {
        h.service
            .verify_api_key(key.expose_secret())
            .await
            .expect("valid");
    }
    let before = h.service.list_api_keys(&user).await.expect("list");
    assert_eq!(before[0].usage_count, 0, "nothing is written per request");
    assert_eq!(
        h.service.flush_key_usage().await.expect("flushed"),
        1,
        "one key, one row"
    );
    let after = h.service.list_api_keys(&user).await.expect("list");
    assert_eq!(after[0].usage_count, 3);
    assert!(after[0].last_used_at.is_some());
    assert_eq!(h.service.flush_key_usage().await.expect("flushed"), 0);
}

#[tokio::test]
async fn expired_and_revoked_keys_are_refused() {
    let h = Harness::new().await;
    let user = h.verified_user("expiry@example.com").await;
    let (key, _) = h
        .service
        .create_api_key(&user, None, Some(1))
        .await
        .expect("created");
    assert!(h.service.verify_api_key(key.expose_secret()).await.is_ok());
    h.clock.advance(std::time::Duration::from_secs(86_400));
    assert!(matches!(
        h.service.verify_api_key(key.expose_secret()).await,
        Err(ApiKeyError::Unknown)
    ));

    let (key, record2) = h
        .service
        .create_api_key(&user, None, None)
        .await
        .expect("created");
    assert!(
        h.service.verify_api_key(key.expose_secret()).await.is_ok(),
        "now cached"
    );
    h.service
        .revoke_api_key(&user.id, &record2.id)
        .await
        .expect("revoked");
    assert!(matches!(
        h.service.verify_api_key(key.expose_secret()).await,
        Err(ApiKeyError::Unknown)
    ));
    let again = h.service.revoke_api_key(&user.id, &record2.id).await;
    assert!(matches!(again, Err(ApiKeyError::NotFound(_))));
}

#[tokio::test]
async fn invalid_key_requests_change_nothing() {
    let h = Harness::new().await;
    let user = h.verified_user("names@example.com").await;
    assert!(matches!(
        h.service
            .create_api_key(&user, Some(" ".into()), None)
            .await,
        Err(ApiKeyError::InvalidName)
    ));
    assert!(matches!(
        h.service
            .create_api_key(&user, Some("x".repeat(101)), None)
            .await,
        Err(ApiKeyError::InvalidName)
    ));
    assert!(matches!(
        h.service.create_api_key(&user, None, Some(0)).await,
        Err(ApiKeyError::InvalidExpiry)
    ));
    assert!(matches!(
        h.service.create_api_key(&user, None, Some(5000)).await,
        Err(ApiKeyError::InvalidExpiry)
    ));
    assert!(
        h.service
            .list_api_keys(&user)
            .await
            .expect("list")
            .is_empty()
    );
}
