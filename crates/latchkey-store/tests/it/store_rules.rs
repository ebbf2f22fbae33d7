//! Rules both backends must keep the same way: uniqueness errors, throttles shared by every
//! service on the database, sweeps in bounded batches.

use std::time::Duration;

use latchkey_core::{
    AccountError, Password, StoreError,
    store::{DeviceCodeRecord, DeviceCodeStatus, IdentityRecord, OAuthClientRecord, Org, User},
};
use latchkey_proto::SecretHash;
use time::OffsetDateTime;

use crate::Harness;

fn user(id: &str, email: &str, slug: &str, now: OffsetDateTime) -> User {
    User {
        id: id.into(),
        email: email.into(),
        email_verified: false,
        name: None,
        password_hash: "not a real hash".into(),
        created_at: now,
        disabled_at: None,
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

fn ip(last: u8) -> latchkey_core::console::SessionOrigin {
    latchkey_core::console::SessionOrigin {
        user_agent: None,
        ip: Some(std::net::IpAddr::from([203, 0, 113, last])),
    }
}

#[tokio::test]
async fn failed_sign_ins_back_off_exponentially_on_every_service_of_the_database() {
    let h = Harness::new().await;
    let other = h.another_service().await;
    h.verified_user("guessed@example.com").await;
    let wrong = || Password::parse("wrong password!".into()).expect("password");
    let right = || Password::parse("correct horse".into()).expect("password");
    let services = [&h.service, &other];
    for i in 0..6 {
        let attempt = services[i % 2]
            .sign_in("guessed@example.com", wrong(), &ip(1), None)
            .await;
        assert!(
            matches!(attempt, Err(AccountError::WrongCredentials)),
            "{i}: {attempt:?}"
        );
    }
    // The sixth failure locked this address out of the account for 2 s, on both services,
    // even with the right password; the next failure doubles it.
    for (wait, lock) in [(2, 4), (4, 8)] {
        for service in services {
            let attempt = service
                .sign_in("guessed@example.com", right(), &ip(1), None)
                .await;
            match attempt {
                Err(AccountError::Throttled(t)) => assert!(t.retry_after_secs() <= wait),
                other => panic!("expected a lock of {wait} s: {other:?}"),
            }
        }
        h.clock.advance(Duration::from_secs(wait));
        let attempt = other
            .sign_in("guessed@example.com", wrong(), &ip(1), None)
            .await;
        assert!(
            matches!(attempt, Err(AccountError::WrongCredentials)),
            "{attempt:?}"
        );
        match h
            .service
            .sign_in("guessed@example.com", right(), &ip(1), None)
            .await
        {
            Err(AccountError::Throttled(t)) => assert_eq!(t.retry_after_secs(), lock),
            other => panic!("expected a lock of {lock} s: {other:?}"),
        }
    }
    // Meanwhile the owner, from an address with no failures, signs in.
    assert!(
        h.service
            .sign_in("guessed@example.com", right(), &ip(2), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_emptied_account_budget_refuses_only_addresses_that_failed() {
    let h = Harness::new().await;
    h.verified_user("sprayed@example.com").await;
    let wrong = || Password::parse("wrong password!".into()).expect("password");
    for last in 10..20 {
        let attempt = h
            .service
            .sign_in("sprayed@example.com", wrong(), &ip(last), None)
            .await;
        assert!(
            matches!(attempt, Err(AccountError::WrongCredentials)),
            "{attempt:?}"
        );
    }
    let again = h
        .service
        .sign_in("sprayed@example.com", wrong(), &ip(10), None)
        .await;
    assert!(
        matches!(again, Err(AccountError::Throttled(_))),
        "{again:?}"
    );
    let right = Password::parse("correct horse".into()).expect("password");
    assert!(
        h.service
            .sign_in("sprayed@example.com", right, &ip(30), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn unverified_accounts_expire_after_a_day_and_free_their_address() {
    let h = Harness::new().await;
    let sign_up = || {
        h.service.sign_up(
            latchkey_core::Email::parse("late@example.com").expect("email"),
            None,
            Password::parse("correct horse".into()).expect("password"),
            None,
            None,
        )
    };
    sign_up().await.expect("sign up");
    let first = h
        .store
        .user_by_email("late@example.com")
        .await
        .expect("read")
        .expect("stored");
    h.clock.advance(Duration::from_secs(23 * 3600));
    h.service.sweep().await.expect("sweep");
    assert!(
        h.store
            .user_by_email("late@example.com")
            .await
            .expect("read")
            .is_some()
    );
    h.clock.advance(Duration::from_secs(2 * 3600));
    assert!(h.service.sweep().await.expect("sweep") >= 1);
    assert!(h.store.user_by_id(&first.id).await.expect("read").is_none());
    assert!(
        h.store
            .user_by_email("late@example.com")
            .await
            .expect("read")
            .is_none()
    );
    sign_up().await.expect("the address is free again");
}

#[tokio::test]
async fn replacing_an_unverified_account_revokes_its_keys_and_never_touches_a_verified_one() {
    let h = Harness::new().await;
    let now = h.service.now();
    let squatter = user("usr_sq", "owned@example.com", "sq", now);
    h.store.create_user(&squatter).await.expect("squatter");
    let key_hash = SecretHash([7; 32]);
    h.store
        .insert_api_key(&latchkey_core::store::ApiKeyRecord {
            id: "key_sq".into(),
            user_id: squatter.id.clone(),
            org_id: squatter.org.id.clone(),
            name: "legacy".into(),
            key_prefix: "lk_abcd".into(),
            hash: key_hash,
            scope: Some("read deploy".into()),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            usage_count: 0,
            origin: None,
        })
        .await
        .expect("key");
    let stored = h.store.api_key_by_hash(&key_hash).await.expect("read");
    assert_eq!(
        stored.and_then(|k| k.scope).as_deref(),
        Some("read deploy"),
        "a key's scopes are kept as written"
    );
    let owner = user("usr_ow", "owned@example.com", "ow", now);
    let revoked = h
        .store
        .replace_unverified_user(&squatter, &owner, now)
        .await
        .expect("replaced");
    assert_eq!(revoked, [key_hash]);
    assert!(h.store.user_by_id("usr_sq").await.expect("read").is_none());
    assert!(
        h.store
            .api_key_by_hash(&key_hash)
            .await
            .expect("read")
            .is_none()
    );
    let stored = h
        .store
        .user_by_email("owned@example.com")
        .await
        .expect("read");
    assert_eq!(stored.map(|u| u.id), Some("usr_ow".to_owned()));

    let verified = h.verified_user("kept@example.com").await;
    let usurper = user("usr_us", "kept@example.com", "us", now);
    let refused = h
        .store
        .replace_unverified_user(&verified, &usurper, now)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict("account"))),
        "{refused:?}"
    );
    let kept = h
        .store
        .user_by_email("kept@example.com")
        .await
        .expect("read");
    assert_eq!(kept.map(|u| u.id), Some(verified.id));
}

#[tokio::test]
async fn a_password_reset_link_expires_after_30_minutes() {
    let h = Harness::new().await;
    h.verified_user("forgetful@example.com").await;
    h.service
        .request_password_reset("forgetful@example.com", None)
        .await
        .expect("asked");
    let token = h.reset_token("forgetful@example.com").await;
    h.service.check_password_reset(&token).await.expect("live");
    h.clock.advance(Duration::from_secs(31 * 60));
    let expired = h.service.check_password_reset(&token).await;
    assert!(
        matches!(expired, Err(AccountError::InvalidResetLink)),
        "{expired:?}"
    );
    let new = Password::parse("brand new password".into()).expect("password");
    let refused = h.service.reset_password(&token, new).await;
    assert!(
        matches!(refused, Err(AccountError::InvalidResetLink)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_sweep_deletes_at_most_one_batch_of_each_kind() {
    let h = Harness::new().await;
    let user = h.verified_user("sweep@example.com").await;
    let now = h.service.now();
    for i in 0..5u8 {
        let session = latchkey_core::store::SessionRecord {
            id: format!("ses_{i}"),
            user_id: user.id.clone(),
            user_agent: None,
            ip: None,
            created_at: now,
            last_seen_at: now,
            expires_at: now + Duration::from_secs(1),
        };
        h.store
            .insert_session(&latchkey_proto::SecretHash([i; 32]), &session)
            .await
            .expect("session");
    }
    let later = now + Duration::from_secs(10);
    // A sign-in at a provider that never came back: swept with the rest, in its own batch.
    h.service
        .start_upstream_login("corp", None, None)
        .await
        .expect("a sign-in");
    let much_later = now + Duration::from_secs(11 * 60);
    assert_eq!(
        h.store
            .sweep_expired(much_later, much_later, much_later, now, 2)
            .await
            .expect("sweep"),
        3,
        "two sessions and the abandoned sign-in"
    );
    assert_eq!(
        h.store
            .sweep_expired(later, later, later, now, 2)
            .await
            .expect("sweep"),
        2
    );
    assert_eq!(
        h.store
            .sweep_expired(later, later, later, now, 2)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(
        h.store
            .sweep_expired(later, later, later, now, 2)
            .await
            .expect("sweep"),
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
            registration_token: None,
            post_logout_redirect_uris: Vec::new(),
            id_token_alg: None,
            access_token_alg: None,
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

#[tokio::test]
async fn an_account_links_one_identity_per_provider_and_keeps_its_last_way_to_sign_in() {
    let h = Harness::new().await;
    let ann = h.verified_user("ann-links@example.com").await;
    let bob = h.verified_user("bob-links@example.com").await;
    let now = h.service.now();
    let identity = |provider: &str, subject: &str, user: &User| IdentityRecord {
        provider_id: provider.into(),
        subject: subject.into(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        created_at: now,
    };
    h.store
        .insert_identity(&identity("github", "1", &ann))
        .await
        .expect("linked");
    // A second GitHub account for Ann, or Ann's GitHub account for Bob: conflicts.
    for taken in [identity("github", "2", &ann), identity("github", "1", &bob)] {
        assert!(matches!(
            h.store.insert_identity(&taken).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert!(
        h.store
            .identities_of(&bob.id)
            .await
            .expect("read")
            .is_empty()
    );

    // Without a password, the only identity stays; with another, either may go, not both.
    assert!(
        !h.store
            .delete_identity(&ann.id, "github", false)
            .await
            .expect("delete")
    );
    h.store
        .insert_identity(&identity("corp", "a-1", &ann))
        .await
        .expect("linked");
    assert!(
        h.store
            .delete_identity(&ann.id, "github", false)
            .await
            .expect("delete")
    );
    assert!(
        !h.store
            .delete_identity(&ann.id, "corp", false)
            .await
            .expect("delete")
    );
    let left = h.store.identities_of(&ann.id).await.expect("read");
    assert_eq!(
        left.iter()
            .map(|i| i.provider_id.as_str())
            .collect::<Vec<_>>(),
        ["corp"]
    );
    // With a password, the last identity may go.
    assert!(
        h.store
            .delete_identity(&ann.id, "corp", true)
            .await
            .expect("delete")
    );
    assert!(
        !h.store
            .delete_identity(&ann.id, "corp", true)
            .await
            .expect("gone already")
    );
}

#[tokio::test]
async fn an_org_keeps_an_owner_and_takes_its_members_keys_with_it() {
    use latchkey_core::{
        org::Role,
        store::{InvitationRecord, MembershipChange},
    };
    let h = Harness::new().await;
    let ann = h.verified_user("ann-org@example.com").await;
    let bob = h.verified_user("bob-org@example.com").await;
    let now = h.service.now();
    let org = Org {
        id: "org_team".into(),
        slug: "team".into(),
        name: "Team".into(),
    };
    h.store
        .create_org(&org, &ann.id, now)
        .await
        .expect("created");
    assert!(matches!(
        h.store
            .create_org(
                &Org {
                    id: "org_other".into(),
                    ..org.clone()
                },
                &bob.id,
                now
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let invitation = InvitationRecord {
        id: "inv_1".into(),
        org_id: org.id.clone(),
        email: bob.email.clone(),
        role: Role::Member,
        token_hash: SecretHash([7; 32]),
        invited_by: ann.id.clone(),
        created_at: now,
        expires_at: now + Duration::from_secs(60),
    };
    h.store
        .replace_invitation(&invitation)
        .await
        .expect("invited");
    assert!(
        h.store
            .accept_invitation(&invitation, &bob.id, now)
            .await
            .expect("accept")
    );
    assert!(
        !h.store
            .accept_invitation(&invitation, &bob.id, now)
            .await
            .expect("spent")
    );
    let bob_in_team = h
        .store
        .membership(&bob.id, "team")
        .await
        .expect("read")
        .expect("a member");
    assert_eq!(bob_in_team.role, Role::Member);
    assert!(!bob_in_team.personal);

    // Ann is the only owner: she can neither step down nor leave.
    let set = |user: String, role| {
        let (store, org_id) = (h.store.clone(), org.id.clone());
        async move {
            store
                .set_member_role(&org_id, &user, role)
                .await
                .expect("set")
        }
    };
    assert_eq!(
        set(ann.id.clone(), Role::Admin).await,
        MembershipChange::LastOwner
    );
    let (left, _) = h
        .store
        .remove_member(&org.id, &ann.id, now)
        .await
        .expect("remove");
    assert_eq!(left, MembershipChange::LastOwner);
    assert_eq!(
        set("usr_nobody".into(), Role::Admin).await,
        MembershipChange::NotAMember
    );
    // With Bob an owner too, she can.
    assert_eq!(
        set(bob.id.clone(), Role::Owner).await,
        MembershipChange::Done
    );
    assert_eq!(
        set(ann.id.clone(), Role::Member).await,
        MembershipChange::Done
    );
    let members = h.store.org_members(&org.id).await.expect("members");
    assert_eq!(
        members
            .iter()
            .map(|m| (m.email.as_str(), m.role))
            .collect::<Vec<_>>(),
        [
            (bob.email.as_str(), Role::Owner),
            (ann.email.as_str(), Role::Member)
        ]
    );

    // Removing Ann revokes her keys in the org (and only there); deleting the org, the rest.
    let key = |user: &User, id: &str, org_id: &str, byte: u8| latchkey_core::store::ApiKeyRecord {
        id: id.into(),
        user_id: user.id.clone(),
        org_id: org_id.into(),
        name: id.into(),
        key_prefix: "lk_test".into(),
        hash: SecretHash([byte; 32]),
        scope: None,
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        usage_count: 0,
        origin: None,
    };
    for record in [
        key(&ann, "key_ann_team", &org.id, 1),
        key(&ann, "key_ann_own", &ann.org.id, 2),
        key(&bob, "key_bob_team", &org.id, 3),
    ] {
        h.store.insert_api_key(&record).await.expect("key");
    }
    let (removed, revoked) = h
        .store
        .remove_member(&org.id, &ann.id, now)
        .await
        .expect("remove");
    assert_eq!(removed, MembershipChange::Done);
    assert_eq!(revoked, [SecretHash([1; 32])]);
    assert_eq!(
        h.store.delete_org(&org.id, now).await.expect("delete"),
        [SecretHash([3; 32])]
    );
    assert!(
        h.store
            .membership(&bob.id, "team")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        h.store.memberships(&ann.id).await.expect("read").len(),
        1,
        "the personal org"
    );
}
