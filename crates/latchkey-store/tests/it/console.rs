//! The account console's rules at the service, on the test clock: sessions are listed with
//! their device and ended only by their owner; a login (refresh family) is listed until it is
//! revoked, which ends its tokens; the audit log pages, filters and forgets after 90 days.

use std::{net::IpAddr, time::Duration};

use latchkey_core::{
    console::{AuditKind, SessionOrigin},
    oauth::token::TokenRequest,
    second_factor::SignInStep,
    store::{AuditQuery, User},
};
use latchkey_proto::SessionToken;

use crate::{
    Harness,
    oauth_grants::{
        REDIRECT, VERIFIER, approved_code, exchange, harness, is_invalid_grant, refresh,
        refresh_token_of,
    },
};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

fn from(user_agent: &str, last: u8) -> SessionOrigin {
    SessionOrigin {
        user_agent: Some(user_agent.into()),
        ip: Some(IpAddr::from([198, 51, 100, last])),
    }
}

async fn sign_in(h: &Harness, email: &str, origin: &SessionOrigin) -> (SessionToken, User) {
    let password = latchkey_core::Password::parse("correct horse".into()).expect("password");
    match h.service.sign_in(email, password, origin, None).await {
        Ok(SignInStep::SignedIn(token, user)) => (token, *user),
        other => panic!("expected a session: {other:?}"),
    }
}

fn mails_titled(h: &Harness, subject: &str) -> usize {
    h.outbox
        .0
        .lock()
        .expect("outbox")
        .iter()
        .filter(|m| m.subject == subject)
        .count()
}

async fn kinds_of(h: &Harness, user: &User) -> Vec<String> {
    let query = AuditQuery {
        user_id: Some(user.id.clone()),
        limit: 100,
        ..AuditQuery::default()
    };
    let events = h.service.audit_events(&query).await.expect("audit");
    events.into_iter().rev().map(|e| e.kind).collect()
}

#[tokio::test]
async fn sessions_are_listed_by_device_and_ended_only_by_their_owner() {
    let h = Harness::new().await;
    let email = "sessions@example.com";
    h.verified_user(email).await;
    let (laptop, user) = sign_in(&h, email, &from(FIREFOX, 1)).await;
    assert_eq!(mails_titled(&h, "New sign-in to your account"), 0);
    let (phone, _) = sign_in(&h, email, &from(SAFARI, 2)).await;
    assert_eq!(
        mails_titled(&h, "New sign-in to your account"),
        1,
        "a second device is news"
    );
    sign_in(&h, email, &from(SAFARI, 3)).await;
    assert_eq!(mails_titled(&h, "New sign-in to your account"), 1);

    let (_, current) = h
        .service
        .session_user(&laptop)
        .await
        .expect("read")
        .expect("live");
    let listed = h
        .service
        .sessions_of(&user, Some(&current.id))
        .await
        .expect("sessions");
    assert_eq!(listed.len(), 3);
    let devices: Vec<&str> = listed.iter().map(|s| s.device.as_str()).collect();
    assert!(devices.contains(&"Firefox on Linux"), "{devices:?}");
    assert!(devices.contains(&"Safari on iPhone"), "{devices:?}");
    assert_eq!(listed.iter().filter(|s| s.current).count(), 1);

    // Seen again from another address: written once the granularity has passed.
    let seen = current.last_seen_at;
    let elsewhere = Some(IpAddr::from([192, 0, 2, 9]));
    h.clock.advance(Duration::from_secs(60));
    h.service
        .touch_session(&laptop, seen, elsewhere)
        .await
        .expect("touch");
    let (_, unchanged) = h
        .service
        .session_user(&laptop)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(
        unchanged.last_seen_at, seen,
        "a minute later is not written"
    );
    h.clock.advance(Duration::from_secs(300));
    h.service
        .touch_session(&laptop, seen, elsewhere)
        .await
        .expect("touch");
    let (_, touched) = h
        .service
        .session_user(&laptop)
        .await
        .expect("read")
        .expect("live");
    assert!(touched.last_seen_at > seen);
    assert_eq!(touched.ip.as_deref(), Some("192.0.2.9"));

    // Someone else cannot end them, even knowing an id.
    let mallory = h.verified_user("mallory@example.com").await;
    let (_, phone_session) = h
        .service
        .session_user(&phone)
        .await
        .expect("read")
        .expect("live");
    assert!(
        !h.service
            .end_session(&mallory, &phone_session.id, None)
            .await
            .expect("end")
    );
    assert!(
        h.service
            .session_user(&phone)
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        h.service
            .end_session(&user, &phone_session.id, None)
            .await
            .expect("end")
    );
    assert!(
        h.service
            .session_user(&phone)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        h.service
            .end_other_sessions(&user, &current.id, None)
            .await
            .expect("end others"),
        1
    );
    let left = h.service.sessions_of(&user, None).await.expect("sessions");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].record.id, current.id);
    assert_eq!(
        kinds_of(&h, &user).await,
        ["sign_in", "sign_in", "sign_in", "signed_out", "signed_out"]
    );
}

#[tokio::test]
async fn a_login_is_listed_until_revoked_and_its_tokens_end_with_it() {
    let h = harness().await;
    let code = approved_code(&h, "logins@example.com").await;
    let tokens = h
        .service
        .token(
            TokenRequest {
                device_name: Some("build-box\u{7}".into()),
                ..exchange(&code, VERIFIER, REDIRECT)
            },
            None,
        )
        .await
        .expect("tokens");
    let user = h
        .service
        .find_user("logins@example.com")
        .await
        .expect("read")
        .expect("user");
    let logins = h.service.logins_of(&user).await.expect("logins");
    assert_eq!(logins.len(), 1);
    let login = &logins[0];
    assert_eq!(login.method, "browser");
    assert_eq!(login.device_name.as_deref(), Some("build-box"));
    assert_eq!(login.scope, "openid offline_access");
    assert_eq!(login.created_at, login.last_used_at);

    h.clock.advance(Duration::from_secs(120));
    let rotated = h
        .service
        .token(refresh(&refresh_token_of(&tokens)), None)
        .await
        .expect("a refresh");
    let used = h.service.logins_of(&user).await.expect("logins");
    assert!(
        used[0].last_used_at > used[0].created_at,
        "a refresh is a use"
    );

    let mallory = h.verified_user("mallory@example.com").await;
    assert!(
        !h.service
            .revoke_login(&mallory, &login.family_id, None)
            .await
            .expect("revoke")
    );
    assert!(
        h.service
            .revoke_login(&user, &login.family_id, None)
            .await
            .expect("revoke")
    );
    let after = h
        .service
        .token(refresh(&refresh_token_of(&rotated)), None)
        .await;
    assert!(is_invalid_grant(&after), "{after:?}");
    let claims = h
        .service
        .verify_access_token(&rotated.access_token, "http://127.0.0.1:8080")
        .expect("a valid signature");
    assert!(
        h.service.access_revoked(&claims).await.expect("read"),
        "its access token ends with it"
    );
    assert!(h.service.logins_of(&user).await.expect("logins").is_empty());
    assert!(
        !h.service
            .revoke_login(&user, &login.family_id, None)
            .await
            .expect("revoke"),
        "a revoked login is gone"
    );
    assert_eq!(
        kinds_of(&h, &user).await,
        ["login_approved", "login_revoked"]
    );
}

#[tokio::test]
async fn the_audit_log_pages_filters_and_forgets_after_ninety_days() {
    let h = Harness::new().await;
    let user = h.verified_user("audit@example.com").await;
    let kinds = [
        AuditKind::SignIn,
        AuditKind::ApiKeyCreated,
        AuditKind::SignIn,
        AuditKind::PasswordChanged,
        AuditKind::SignIn,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        h.service
            .audit(kind, Some(&user.id), None, None, &format!("event {i}"))
            .await
            .expect("audit");
    }
    let page = |before: Option<i64>, kinds: Vec<String>| AuditQuery {
        user_id: Some(user.id.clone()),
        kinds,
        before,
        limit: 2,
        ..AuditQuery::default()
    };
    let first = h
        .service
        .audit_events(&page(None, vec![]))
        .await
        .expect("page");
    let details: Vec<&str> = first.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["event 4", "event 3"], "newest first");
    let second = h
        .service
        .audit_events(&page(Some(first[1].id), vec![]))
        .await
        .expect("page");
    let details: Vec<&str> = second.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["event 2", "event 1"]);
    let sign_ins = h
        .service
        .audit_events(&AuditQuery {
            limit: 10,
            ..page(None, vec!["sign_in".into()])
        })
        .await
        .expect("filtered");
    assert_eq!(sign_ins.len(), 3);
    assert!(sign_ins.iter().all(|e| e.kind == "sign_in"));
    let someone_else = h.verified_user("other@example.com").await;
    let theirs = AuditQuery {
        user_id: Some(someone_else.id.clone()),
        limit: 10,
        ..AuditQuery::default()
    };
    assert!(
        h.service
            .audit_events(&theirs)
            .await
            .expect("read")
            .is_empty()
    );

    h.clock.advance(Duration::from_secs(91 * 24 * 3600));
    assert!(
        h.service
            .audit_events(&page(None, vec![]))
            .await
            .expect("read")
            .is_empty(),
        "older than 90 days is not shown"
    );
    assert!(h.service.sweep().await.expect("sweep") >= 5);
    let now = h.service.now();
    let kept: i64 = {
        let since = now - Duration::from_secs(400 * 24 * 3600);
        let all = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        h.store.audit_events(&all, since).await.expect("read").len() as i64
    };
    assert_eq!(kept, 0, "and is deleted by the sweep");
}
