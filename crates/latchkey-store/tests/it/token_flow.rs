use std::{sync::atomic::Ordering, time::Duration};

use latchkey_core::TokenFlowError;
use latchkey_proto::{WaitSecret, wire::TokenFlowCreateRequest};

use crate::Harness;

async fn create(h: &Harness) -> latchkey_core::token_flow::CreatedFlow {
    h.service
        .create_token_flow(TokenFlowCreateRequest::default(), Some("test-agent/1"))
        .await
        .expect("created")
}

#[tokio::test]
async fn a_replayed_wait_after_the_redelivery_window_finds_nothing() {
    let h = Harness::new().await;
    let user = h.verified_user("replay@example.com").await;
    let flow = create(&h).await;
    h.service
        .approve_token_flow(&flow.id, &user)
        .await
        .expect("approved");

    let first = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::ZERO)
        .await
        .expect("delivered");
    h.clock.advance(Duration::from_secs(59));
    let again = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::ZERO)
        .await
        .expect("re-delivered");
    assert_eq!(first, again);

    h.clock.advance(Duration::from_secs(2));
    let replay = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::ZERO)
        .await;
    assert!(
        matches!(replay, Err(TokenFlowError::NotFound)),
        "{replay:?}"
    );
    let view = h.service.token_flow_view(&flow.id).await;
    assert!(
        matches!(view, Err(TokenFlowError::NotFound)),
        "the flow row is gone"
    );
}

#[tokio::test]
async fn flows_expire_after_ten_minutes_and_cannot_be_approved_then() {
    let h = Harness::new().await;
    let user = h.verified_user("late@example.com").await;
    let flow = create(&h).await;
    h.clock.advance(Duration::from_secs(10 * 60));
    let approve = h.service.approve_token_flow(&flow.id, &user).await;
    assert!(
        matches!(approve, Err(TokenFlowError::Expired)),
        "{approve:?}"
    );
    let wait = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::ZERO)
        .await;
    assert!(matches!(wait, Err(TokenFlowError::Expired)), "{wait:?}");
    assert!(
        h.service
            .list_api_keys(&user)
            .await
            .expect("list")
            .is_empty(),
        "no key was minted"
    );
}

#[tokio::test]
async fn a_flow_is_approved_once_and_mints_one_key() {
    let h = Harness::new().await;
    let user = h.verified_user("twice@example.com").await;
    let flow = create(&h).await;
    h.service
        .approve_token_flow(&flow.id, &user)
        .await
        .expect("approved");
    let second = h.service.approve_token_flow(&flow.id, &user).await;
    assert!(
        matches!(second, Err(TokenFlowError::AlreadyDecided)),
        "{second:?}"
    );
    let deny = h.service.deny_token_flow(&flow.id).await;
    assert!(
        matches!(deny, Err(TokenFlowError::AlreadyDecided)),
        "{deny:?}"
    );
    assert_eq!(h.service.list_api_keys(&user).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_waiting_cli_is_woken_by_the_approval_not_by_its_timeout() {
    let h = Harness::new().await;
    let user = h.verified_user("wake@example.com").await;
    let flow = create(&h).await;
    let service = h.service.clone();
    let (id, secret) = (flow.id.clone(), flow.wait_secret.clone());
    let waiter = tokio::spawn(async move {
        service
            .wait_token_flow(&id, &secret, Duration::from_secs(60))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let open = || {
        h.service
            .stats()
            .token_flow_waits_open
            .load(Ordering::Relaxed)
    };
    assert_eq!(open(), 1, "the wait is held open");
    h.service
        .approve_token_flow(&flow.id, &user)
        .await
        .expect("approved");
    let response = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the wait ended long before its 60 s timeout")
        .expect("joined")
        .expect("delivered");
    assert!(!response.timeout);
    assert_eq!(response.email.as_deref(), Some("wake@example.com"));
    assert_eq!(open(), 0, "the gauge falls when the wait returns");
}

#[tokio::test]
async fn a_wait_abandoned_by_its_client_is_no_longer_counted_as_held() {
    let h = Harness::new().await;
    let flow = create(&h).await;
    let service = h.service.clone();
    let waiter = tokio::spawn(async move {
        service
            .wait_token_flow(&flow.id, &flow.wait_secret, Duration::from_secs(60))
            .await
    });
    let open = || {
        h.service
            .stats()
            .token_flow_waits_open
            .load(Ordering::Relaxed)
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(open(), 1);
    waiter.abort();
    assert!(waiter.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(open(), 0);
}

#[tokio::test]
async fn a_pending_wait_times_out_with_timeout_true() {
    let h = Harness::new().await;
    let flow = create(&h).await;
    let response = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::from_millis(20))
        .await
        .expect("answered");
    assert!(response.timeout);
    assert!(response.api_key.is_none());
}

#[tokio::test]
async fn a_copy_of_the_database_holds_no_key_in_flight() {
    let h = Harness::new().await;
    let user = h.verified_user("leak@example.com").await;
    let flow = create(&h).await;
    h.service
        .approve_token_flow(&flow.id, &user)
        .await
        .expect("approved");
    // Read the key the way the CLI would, then look for it, and for the wait secret, on disk.
    let delivered = h
        .service
        .wait_token_flow(&flow.id, &flow.wait_secret, Duration::ZERO)
        .await
        .expect("ok");
    let key = delivered.api_key.expect("key");
    let on_disk = h.database_copy().await;
    let contains = |needle: &str| {
        on_disk
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(!contains(&key), "the API key is on disk in plaintext");
    assert!(
        !contains(flow.wait_secret.expose_secret()),
        "the wait secret is on disk"
    );
    let wrong = WaitSecret::generate(&mut rand::rngs::OsRng);
    assert!(
        h.service
            .wait_token_flow(&flow.id, &wrong, Duration::ZERO)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn uncollected_keys_are_revoked_when_their_flow_is_swept() {
    let h = Harness::new().await;
    let user = h.verified_user("sweep@example.com").await;
    let flow = create(&h).await;
    h.service
        .approve_token_flow(&flow.id, &user)
        .await
        .expect("approved");
    assert_eq!(h.service.list_api_keys(&user).await.expect("list").len(), 1);
    h.clock.advance(Duration::from_secs(12 * 60));
    assert!(h.service.sweep().await.expect("swept") >= 1);
    assert!(
        h.service
            .list_api_keys(&user)
            .await
            .expect("list")
            .is_empty(),
        "the key nobody received is revoked"
    );
}
