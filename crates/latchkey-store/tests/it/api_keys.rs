use latchkey_core::{ApiKeyError, api_key::key_info};
use latchkey_proto::wire::ApiKeyCreateRequest;

use crate::Harness;

fn named(name: &str) -> ApiKeyCreateRequest {
    ApiKeyCreateRequest {
        name: Some(name.into()),
        ..ApiKeyCreateRequest::default()
    }
}

fn lasting(expires_in_days: Option<u32>, expires_in: Option<u64>) -> ApiKeyCreateRequest {
    ApiKeyCreateRequest {
        expires_in_days,
        expires_in,
        ..ApiKeyCreateRequest::default()
    }
}

fn scoped(scopes: &[&str]) -> ApiKeyCreateRequest {
    ApiKeyCreateRequest {
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        ..ApiKeyCreateRequest::default()
    }
}

#[tokio::test]
async fn usage_is_counted_in_memory_and_written_in_one_batch() {
    let h = Harness::new().await;
    let user = h.verified_user("usage@example.com").await;
    let (key, _) = h
        .service
        .create_api_key(&user, &named("ci"), None)
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
        .create_api_key(&user, &lasting(Some(1), None), None)
        .await
        .expect("created");
    assert!(h.service.verify_api_key(key.expose_secret()).await.is_ok());
    h.clock.advance(std::time::Duration::from_secs(86_400));
    assert!(matches!(
        h.service.verify_api_key(key.expose_secret()).await,
        Err(ApiKeyError::Unknown)
    ));
    let listed = h.service.list_api_keys(&user).await.expect("list");
    assert!(
        key_info(&listed[0], h.service.now()).expired,
        "an expired key is listed as expired until it is revoked"
    );
    let (short, _) = h
        .service
        .create_api_key(&user, &lasting(None, Some(120)), None)
        .await
        .expect("created");
    h.clock.advance(std::time::Duration::from_secs(119));
    assert!(
        h.service
            .verify_api_key(short.expose_secret())
            .await
            .is_ok()
    );
    h.clock.advance(std::time::Duration::from_secs(1));
    assert!(
        h.service
            .verify_api_key(short.expose_secret())
            .await
            .is_err()
    );

    let (key, record2) = h
        .service
        .create_api_key(&user, &ApiKeyCreateRequest::default(), None)
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
        h.service.create_api_key(&user, &named(" "), None).await,
        Err(ApiKeyError::InvalidName)
    ));
    assert!(matches!(
        h.service
            .create_api_key(&user, &named(&"x".repeat(101)), None)
            .await,
        Err(ApiKeyError::InvalidName)
    ));
    for (days, secs) in [
        (Some(0), None),
        (Some(5000), None),
        (None, Some(0)),
        (None, Some(3650 * 86_400 + 1)),
    ] {
        assert!(matches!(
            h.service
                .create_api_key(&user, &lasting(days, secs), None)
                .await,
            Err(ApiKeyError::InvalidExpiry)
        ));
    }
    assert!(matches!(
        h.service
            .create_api_key(&user, &lasting(Some(1), Some(3600)), None)
            .await,
        Err(ApiKeyError::TwoExpiries)
    ));
    assert!(matches!(
        h.service
            .create_api_key(&user, &scoped(&["two words"]), None)
            .await,
        Err(ApiKeyError::InvalidScope(_))
    ));
    let elsewhere = ApiKeyCreateRequest {
        org: Some("someone-elses-org".into()),
        ..ApiKeyCreateRequest::default()
    };
    assert!(matches!(
        h.service.create_api_key(&user, &elsewhere, None).await,
        Err(ApiKeyError::NotAMember(_))
    ));
    assert!(
        h.service
            .list_api_keys(&user)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn a_key_limited_to_scopes_cannot_make_a_wider_one() {
    let h = Harness::new().await;
    let user = h.verified_user("scopes@example.com").await;
    let own_org = ApiKeyCreateRequest {
        org: Some(user.org.slug.clone()),
        ..scoped(&["read", "api_keys", "read"])
    };
    let (key, record) = h
        .service
        .create_api_key(&user, &own_org, None)
        .await
        .expect("created");
    assert_eq!(record.scope.as_deref(), Some("read api_keys"));
    let principal = h
        .service
        .verify_api_key(key.expose_secret())
        .await
        .expect("valid");
    assert_eq!(principal.scope.as_deref(), Some("read api_keys"));

    let held = Some("read api_keys");
    let (_, inherited) = h
        .service
        .create_api_key(&user, &ApiKeyCreateRequest::default(), held)
        .await
        .expect("a narrower key");
    assert_eq!(
        inherited.scope.as_deref(),
        held,
        "a key asking for nothing inherits"
    );
    let (_, narrower) = h
        .service
        .create_api_key(&user, &scoped(&["read"]), held)
        .await
        .expect("a narrower key");
    assert_eq!(narrower.scope.as_deref(), Some("read"));
    assert!(matches!(
        h.service
            .create_api_key(&user, &scoped(&["read", "write"]), held)
            .await,
        Err(ApiKeyError::BeyondCreatorScope { .. })
    ));
    assert!(matches!(
        h.service
            .create_api_key(&user, &ApiKeyCreateRequest::default(), Some("read"))
            .await,
        Err(ApiKeyError::BeyondCreatorScope { .. }),
    ));
    assert_eq!(h.service.list_api_keys(&user).await.expect("list").len(), 3);
}
