//! Subscriptions from Stripe's webhooks: events signed the way Stripe signs them (this test
//! computes the `Stripe-Signature` header from the secret itself), shaped like Stripe's
//! documented examples, sent in and out of order, replayed, forged. After each, what the org's
//! tokens say (the live record) and what is stored are checked; refusals change nothing.

use anyhow::{Context, Result};
use base64::Engine;
use hmac::{Hmac, Mac};
use latchkey_testkit::{Person, Server, count_rows, unique_email};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{PASSWORD, bin};

pub(crate) const OLD_SECRET: &str = "whsec_old_0123456789abcdef";
const NEW_SECRET: &str = "whsec_new_0123456789abcdef";

pub(crate) const CONFIG: &str = r#"
[tiers.free]
entitlements = []
[tiers.pro]
entitlements = ["cloud_sync", "api_access"]
subscribe_url = "https://buy.stripe.com/test_pro_link?client_reference_id={org_id}"

[billing]
past_due_grace_days = 3
manage_url = "https://billing.stripe.com/p/login/test_portal"

[stripe]
webhook_secrets = ["whsec_old_0123456789abcdef", "whsec_new_0123456789abcdef"]
[stripe.prices]
price_1PRO = "pro"
"#;

pub(crate) fn unix_now() -> i64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "Stripe signs with the wall clock"
    )]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Stripe-Signature` for `body` at `t`, as Stripe computes it.
pub(crate) fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

pub(crate) struct Billing {
    pub(crate) server: Server,
    person: Person,
    key: String,
    slug: String,
    pub(crate) org_id: String,
}

impl Billing {
    pub(crate) async fn start() -> Result<Self> {
        Self::start_with(CONFIG).await
    }

    async fn start_with(config: &str) -> Result<Self> {
        let server = Server::start_with_config(bin(), config, &[]).await?;
        let person = Person::verified_account(&server, &unique_email("buyer"), PASSWORD).await?;
        let key = person.new_api_key("billing").await?;
        let slug = unique_email("paying")
            .split('@')
            .next()
            .unwrap_or("paying")
            .to_owned();
        let org_id = person.create_org(&slug).await?;
        Ok(Self {
            server,
            person,
            key,
            slug,
            org_id,
        })
    }

    /// Posts `body` with `header` (none: no Stripe-Signature).
    async fn post(&self, body: &str, header: Option<String>) -> Result<(StatusCode, Value)> {
        let mut request = reqwest::Client::new()
            .post(self.server.url("/v1/billing/stripe/webhook"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(header) = header {
            request = request.header("Stripe-Signature", header);
        }
        let response = request.send().await?;
        Ok((response.status(), response.json().await?))
    }

    /// Posts `event`, signed now with `secret`.
    async fn send(&self, event: &Value, secret: &str) -> Result<Value> {
        let body = event.to_string();
        let (status, answer) = self
            .post(&body, Some(signature(secret, unix_now(), &body)))
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "{status}: {answer}");
        Ok(answer)
    }

    /// What a fresh access token of the org says: status, tier, entitlements.
    async fn token_says(&self) -> Result<(String, String, Value)> {
        let org_scope = format!("org:{}", self.slug);
        let (_, answer) = crate::orgs::exchange(
            &self.server,
            &[
                ("subject_token", self.key.as_str()),
                ("subject_token_type", crate::orgs::API_KEY_TYPE),
                ("scope", &org_scope),
            ],
        )
        .await?;
        let token = answer["access_token"].as_str().context("access_token")?;
        let payload = token.split('.').nth(1).context("a JWT")?;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?,
        )?;
        Ok((
            claims["subscription_status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            claims["subscription_tier"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            claims
                .get("entitlements")
                .cloned()
                .unwrap_or_else(|| json!([])),
        ))
    }

    pub(crate) async fn rows(&self, sql: &str) -> Result<i64> {
        count_rows(&self.server.database_url, sql).await
    }
}

pub(crate) fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created,
        "livemode": false, "pending_webhooks": 1, "type": kind,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object}
    })
}

pub(crate) fn subscription(org_id: &str, status: &str, period_end: i64) -> Value {
    json!({
        "id": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "object": "subscription",
        "customer": "cus_NffrFeUfNV2Hib", "status": status,
        "current_period_end": period_end, "cancel_at_period_end": false,
        "metadata": {"latchkey_org": org_id},
        "items": {"object": "list", "data": [{
            "id": "si_NcLYdDxLHxlFo7", "object": "subscription_item",
            "price": {"id": "price_1PRO", "object": "price", "currency": "usd", "unit_amount": 1000}
        }]}
    })
}

#[tokio::test]
async fn stripe_webhooks_set_the_subscription_in_event_order_and_forgeries_change_nothing()
-> Result<()> {
    let b = Billing::start().await?;
    let now = unix_now();
    assert_eq!(
        b.token_says().await?,
        ("none".into(), "free".into(), json!([]))
    );
    let checkout = event(
        "evt_checkout",
        "checkout.session.completed",
        now - 100,
        json!({
            "id": "cs_test_a1", "object": "checkout.session", "mode": "subscription",
            "payment_status": "paid", "status": "complete", "client_reference_id": b.org_id,
            "customer": "cus_NffrFeUfNV2Hib", "subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
            "metadata": {"latchkey_tier": "pro"}
        }),
    );
    let body = checkout.to_string();
    let nothing_stored = "SELECT COUNT(*) FROM billing_events";

    // Forgeries and mistakes: 401 (or 400), and nothing stored.
    for (what, header, status) in [
        ("no signature", None, StatusCode::UNAUTHORIZED),
        (
            "another secret",
            Some(signature("whsec_someone_else", now, &body)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "six minutes old",
            Some(signature(OLD_SECRET, now - 360, &body)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a body changed after signing",
            Some(signature(OLD_SECRET, now, &body.replace("paid", "unpaid"))),
            StatusCode::UNAUTHORIZED,
        ),
        ("no v1", Some(format!("t={now}")), StatusCode::UNAUTHORIZED),
    ] {
        let (got, answer) = b.post(&body, header).await?;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer["error"].is_string() && answer["message"].is_string());
        assert_eq!(b.rows(nothing_stored).await?, 0, "{what}");
    }
    let garbage = "{\"not\": \"an event\"}";
    let (got, _) = b
        .post(garbage, Some(signature(OLD_SECRET, now, garbage)))
        .await?;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert_eq!(b.rows("SELECT COUNT(*) FROM subscriptions").await?, 0);

    // Checkout completes: pro, with its entitlements, in the next token.
    assert_eq!(b.send(&checkout, OLD_SECRET).await?["outcome"], "applied");
    assert_eq!(
        b.token_says().await?,
        (
            "active".into(),
            "pro".into(),
            json!(["cloud_sync", "api_access"])
        )
    );
    // A replay changes nothing.
    assert_eq!(b.send(&checkout, OLD_SECRET).await?["outcome"], "unchanged");
    assert_eq!(b.rows(nothing_stored).await?, 1);

    // The payment fails (signed with the new secret, during rotation): past_due keeps pro
    // within the grace; the `created` event, older, arriving late, changes nothing.
    let past_due = event(
        "evt_updated",
        "customer.subscription.updated",
        now - 50,
        subscription(&b.org_id, "past_due", now + 1000),
    );
    assert_eq!(b.send(&past_due, NEW_SECRET).await?["outcome"], "applied");
    let created = event(
        "evt_created",
        "customer.subscription.created",
        now - 90,
        subscription(&b.org_id, "active", now + 1000),
    );
    assert_eq!(b.send(&created, OLD_SECRET).await?["outcome"], "unchanged");
    assert_eq!(
        b.token_says().await?,
        (
            "past_due".into(),
            "pro".into(),
            json!(["cloud_sync", "api_access"])
        )
    );

    // Deleted, then a late `updated` (older), then one of the same second: it stays canceled.
    let deleted = event(
        "evt_deleted",
        "customer.subscription.deleted",
        now - 10,
        subscription(&b.org_id, "canceled", now + 1000),
    );
    assert_eq!(b.send(&deleted, OLD_SECRET).await?["outcome"], "applied");
    for (id, created) in [("evt_late", now - 20), ("evt_same_second", now - 10)] {
        let late = event(
            id,
            "customer.subscription.updated",
            created,
            subscription(&b.org_id, "active", now + 5000),
        );
        assert_eq!(b.send(&late, OLD_SECRET).await?["outcome"], "unchanged");
    }
    assert_eq!(
        b.token_says().await?,
        ("canceled".into(), "free".into(), json!([]))
    );
    assert_eq!(
        b.rows("SELECT COUNT(*) FROM subscriptions WHERE status = 'canceled' AND tier = 'pro'")
            .await?,
        1
    );

    // An event type latchkey does not use: 200, ignored.
    let other = event(
        "evt_customer",
        "customer.created",
        now,
        json!({"id": "cus_1"}),
    );
    assert_eq!(b.send(&other, OLD_SECRET).await?["outcome"], "ignored");
    Ok(())
}

#[tokio::test]
async fn a_server_without_stripe_takes_no_webhooks() -> Result<()> {
    let server = Server::start(bin()).await?;
    let body = event("evt_1", "customer.created", unix_now(), json!({})).to_string();
    let response = reqwest::Client::new()
        .post(server.url("/v1/billing/stripe/webhook"))
        .header("Stripe-Signature", signature(OLD_SECRET, unix_now(), &body))
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // The secret may come from the environment (or the flag) instead of the file.
    let from_env = Server::start_with_config(
        bin(),
        "[tiers.pro]\nentitlements = []\n[stripe.prices]\nprice_1PRO = \"pro\"\n",
        &["--stripe-webhook-secret", "whsec_from_the_environment"],
    )
    .await?;
    let sent = |secret: &'static str| {
        let (url, body) = (from_env.url("/v1/billing/stripe/webhook"), body.clone());
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("Stripe-Signature", signature(secret, unix_now(), &body))
                .body(body)
                .send()
                .await?;
            anyhow::Ok(response.status())
        }
    };
    assert_eq!(sent("whsec_from_the_environment").await?, StatusCode::OK);
    assert_eq!(sent(OLD_SECRET).await?, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn an_admin_sets_and_shows_a_subscription_without_stripe() -> Result<()> {
    let b = Billing::start().await?;
    let admin = |args: &[&str]| {
        let args: Vec<String> = ["subscriptions"]
            .iter()
            .chain(args)
            .map(|a| (*a).to_owned())
            .collect();
        let server = &b.server;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::console::admin(server, &args).await
        }
    };
    let page = b.person.get(&format!("/orgs/{}", b.slug)).await?;
    assert!(page.html.contains(">free (none)<"), "{}", page.html);
    assert!(
        !page.html.contains("manage-billing"),
        "nothing to manage yet"
    );
    let pro_link = format!(
        "href=\"https://buy.stripe.com/test_pro_link?client_reference_id={}\">Subscribe to pro<",
        b.org_id
    );
    assert!(page.html.contains(&pro_link), "{}", page.html);
    let (code, shown, _) = admin(&["show", "--org", &b.slug]).await?;
    assert_eq!(code, Some(0));
    assert!(
        shown.contains("status: none") && shown.contains("grants now: tier free"),
        "{shown}"
    );

    let (code, _, stderr) = admin(&[
        "set",
        "--org",
        &b.slug,
        "--tier",
        "pro",
        "--status",
        "active",
        "--until",
        "2099-01-31",
    ])
    .await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        b.token_says().await?,
        (
            "active".into(),
            "pro".into(),
            json!(["cloud_sync", "api_access"])
        )
    );
    // The org page shows the plan, and to its owner where billing is managed.
    let page = b.person.get(&format!("/orgs/{}", b.slug)).await?;
    assert!(
        page.html.contains(">pro (active, until 2099-01-31)<"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains(
            "id=\"manage-billing\" href=\"https://billing.stripe.com/p/login/test_portal\""
        ),
        "{}",
        page.html
    );
    assert!(!page.html.contains("Subscribe to pro"), "{}", page.html);
    let (_, shown, _) = admin(&["show", "--org", &b.org_id]).await?;
    assert!(
        shown.contains("period ends: 2099-01-31")
            && shown.contains("grants now: tier pro, entitlements [cloud_sync, api_access]"),
        "{shown}"
    );

    // Mistakes: a tier, a status, a date, an org that do not exist; exit 2, nothing changed.
    for (args, says) in [
        (
            vec![
                "set", "--org", &b.slug, "--tier", "gold", "--status", "active",
            ],
            "the tiers are free, pro",
        ),
        (
            vec!["set", "--org", &b.slug, "--tier", "pro", "--status", "paid"],
            "is not a subscription status",
        ),
        (
            vec![
                "set",
                "--org",
                &b.slug,
                "--tier",
                "pro",
                "--status",
                "active",
                "--until",
                "31/01/2099",
            ],
            "is not a date",
        ),
        (
            vec![
                "set",
                "--org",
                "no-such-org",
                "--tier",
                "pro",
                "--status",
                "active",
            ],
            "no org",
        ),
    ] {
        let (code, _, stderr) = admin(&args).await?;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(b.token_says().await?.1, "pro");
    Ok(())
}

#[tokio::test]
async fn a_purchase_reaches_the_cli_s_next_token_and_the_gate_and_a_cancellation_closes_it()
-> Result<()> {
    use crate::{
        cli_login::text,
        gate_proxy::{GATE_SECRET, gate, upstream},
    };
    let config = format!(
        "{}[[oauth_clients]]\nid = \"gate\"\nname = \"gate\"\nsecret_sha256 = \"{}\"\n",
        CONFIG.replace(
            "[billing]\n",
            "[billing]\nsubscribe_url = \"https://buy.stripe.com/test_pro?client_reference_id={org_id}\"\n",
        ),
        latchkey_testkit::sha256_hex(GATE_SECRET)
    );
    let b = Billing::start_with(&config).await?;
    let cli = latchkey_testkit::CliHome::new(bin(), &b.server.url)?;
    let login = cli
        .run_with_stdin(
            &["login", "--with-token", "--org", &b.slug],
            &format!("{}\n", b.key),
        )
        .await?;
    assert!(login.status.success(), "{}", text(&login.stderr));
    let status = cli.run(&["status"]).await?;
    assert!(
        text(&status.stdout).contains("Subscription: free (none); subscribe at https://buy.stripe.com/test_pro?client_reference_id="),
        "{}",
        text(&status.stdout)
    );
    let (_gate, gate_url) = gate(
        &b.server,
        &upstream().await?,
        &[
            "--require-entitlement",
            "cloud_sync",
            "--subscribe-url",
            "https://buy.stripe.com/test_pro?client_reference_id={org_id}",
            "--key-cache-secs",
            "1",
        ],
    )
    .await?;
    let through = |token: String| {
        let url = format!("{gate_url}/echo");
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await?;
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            anyhow::Ok((
                response.status(),
                challenge,
                response.json::<Value>().await?,
            ))
        }
    };
    let key = text(&cli.run(&["token"]).await?.stdout).trim().to_owned();
    // A tool calling its API through the gate with the library gets the typed error.
    let answer = reqwest::Client::new()
        .get(format!("{gate_url}/echo"))
        .bearer_auth(&key)
        .send()
        .await?;
    match latchkey_client::api::error_for_status(answer).await {
        Err(latchkey_client::ClientError::SubscriptionRequired { subscribe_url }) => {
            assert!(subscribe_url.ends_with(&b.org_id), "{subscribe_url}");
        }
        other => anyhow::bail!("expected SubscriptionRequired, got {other:?}"),
    }
    let (status, challenge, refused) = through(key.clone()).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"], "subscription_required");
    let subscribe = format!(
        "https://buy.stripe.com/test_pro?client_reference_id={}",
        b.org_id
    );
    assert_eq!(refused["subscribe_url"], subscribe.as_str());
    assert!(challenge.is_some_and(|c| c.contains("insufficient_scope")));

    // A login acting for the org, before the purchase.
    let (login, _) = crate::oauth::token_pair(&b.server, &b.person).await?;
    let (branch_access, branch) = crate::orgs::login_branch(&b.server, &login, &b.slug).await?;
    assert_eq!(through(branch_access).await?.0, StatusCode::FORBIDDEN);
    // Checkout completes: the org's key passes the gate once its cache lapses, and an access
    // token exchanged for it carries pro.
    let now = unix_now();
    let checkout = event(
        "evt_e2e_checkout",
        "checkout.session.completed",
        now - 5,
        json!({"object": "checkout.session", "mode": "subscription", "payment_status": "paid",
            "client_reference_id": b.org_id, "customer": "cus_E2E",
            "subscription": "sub_E2E", "metadata": {"latchkey_tier": "pro"}}),
    );
    b.send(&checkout, OLD_SECRET).await?;
    let mut admitted = StatusCode::FORBIDDEN;
    for _ in 0..40 {
        admitted = through(key.clone()).await?.0;
        if admitted == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        admitted,
        StatusCode::OK,
        "the key's cached standing lapsed within 4 s"
    );
    let org_token = text(&cli.run(&["token", "--org", &b.slug]).await?.stdout)
        .trim()
        .to_owned();
    assert_eq!(through(org_token).await?.0, StatusCode::OK);
    let status = cli.run(&["status", "--json"]).await?;
    let status: Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(status["subscription"]["tier"], "pro", "{status}");
    // The login's org tokens, issued before the purchase, carry it after a refresh.
    let (code, refreshed) = crate::cli_login::refresh_with(&b.server, &branch).await?;
    assert_eq!(code, 200, "{refreshed}");
    let refreshed = refreshed["access_token"].as_str().context("access")?;
    assert_eq!(through(refreshed.to_owned()).await?.0, StatusCode::OK);
    // A login that requires the entitlement passes now.
    let paid_login = |cli: latchkey_testkit::CliHome| {
        let key = b.key.clone();
        let slug = b.slug.clone();
        async move {
            cli.run_with_stdin(
                &[
                    "login",
                    "--with-token",
                    "--org",
                    &slug,
                    "--require-entitlement",
                    "cloud_sync",
                ],
                &format!("{key}\n"),
            )
            .await
        }
    };
    let passed = paid_login(latchkey_testkit::CliHome::new(bin(), &b.server.url)?).await?;
    assert!(passed.status.success(), "{}", text(&passed.stderr));

    // Canceled: a new token is refused at the gate with where to subscribe again.
    let deleted = event(
        "evt_e2e_deleted",
        "customer.subscription.deleted",
        now,
        json!({"id": "sub_E2E", "customer": "cus_E2E", "status": "canceled"}),
    );
    b.send(&deleted, OLD_SECRET).await?;
    let fresh = text(&cli.run(&["token", "--org", &b.slug]).await?.stdout)
        .trim()
        .to_owned();
    let (status, _, refused) = through(fresh).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused["message"],
        format!("Active subscription required — Subscribe at: {subscribe}").as_str()
    );
    // And the login that requires it exits 6 with the seed's words.
    let refused_login = paid_login(latchkey_testkit::CliHome::new(bin(), &b.server.url)?).await?;
    assert_eq!(
        refused_login.status.code(),
        Some(6),
        "{}",
        text(&refused_login.stderr)
    );
    assert!(
        text(&refused_login.stderr).contains(&format!(
            "Active subscription required — Subscribe at: {subscribe}"
        )),
        "{}",
        text(&refused_login.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn an_event_signed_by_stripe_s_own_library_is_accepted() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let b = Billing::start().await?;
    let body = event(
        "evt_signed_by_stripe_node",
        "checkout.session.completed",
        unix_now(),
        json!({"object": "checkout.session", "mode": "subscription", "payment_status": "paid",
            "client_reference_id": b.org_id, "customer": "cus_node", "subscription": "sub_node",
            "metadata": {"latchkey_tier": "pro"}}),
    )
    .to_string();
    let sign = |secret: &str| {
        let dir = crate::mcp::repo_root().join("tests/billing");
        let mut command = tokio::process::Command::new("node");
        command
            .arg("sign.mjs")
            .current_dir(dir)
            .env("STRIPE_WEBHOOK_SECRET", secret)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let body = body.clone();
        async move {
            let mut child = command.spawn()?;
            let mut stdin = child.stdin.take().context("stdin")?;
            stdin.write_all(body.as_bytes()).await?;
            drop(stdin);
            let out = child.wait_with_output().await?;
            anyhow::ensure!(
                out.status.success(),
                "stripe's signer failed (npm ci in tests/billing)"
            );
            anyhow::Ok(String::from_utf8(out.stdout)?)
        }
    };
    // Stripe's signature with another secret is refused, then with the right one accepted.
    let (status, _) = b.post(&body, Some(sign("whsec_not_ours").await?)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = b.post(&body, Some(sign(NEW_SECRET).await?)).await?;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("applied")),
        "{answer}"
    );
    assert_eq!(b.token_says().await?.1, "pro");
    Ok(())
}

/// What a request with `key` through the gate at `gate` is answered.
pub(crate) async fn status_through(gate: &str, key: &str) -> Result<StatusCode> {
    let answer = reqwest::Client::new()
        .get(format!("{gate}/echo"))
        .bearer_auth(key)
        .send()
        .await?;
    Ok(answer.status())
}

/// A paid Checkout Session for `org_id`'s subscription to pro, sent at `created`.
pub(crate) fn paid_checkout(id: &str, created: i64, org_id: &str) -> String {
    event(
        id,
        "checkout.session.completed",
        created,
        json!({"object": "checkout.session", "mode": "subscription", "payment_status": "paid",
            "client_reference_id": org_id, "customer": "cus_in", "subscription": "sub_in",
            "metadata": {"latchkey_tier": "pro"}}),
    )
    .to_string()
}

/// Posts `body` to `server`'s Stripe webhook, signed with the configured secret.
pub(crate) async fn post_signed_webhook(server: &Server, body: String) -> Result<StatusCode> {
    let answer = reqwest::Client::new()
        .post(server.url("/v1/billing/stripe/webhook"))
        .header("Stripe-Signature", signature(OLD_SECRET, unix_now(), &body))
        .body(body)
        .send()
        .await?;
    Ok(answer.status())
}

#[tokio::test]
async fn the_gate_inside_the_server_sees_a_purchase_at_once() -> Result<()> {
    use crate::gate_proxy::{server_with_gate_flags, upstream};
    let (server, gate) = server_with_gate_flags(
        &upstream().await?,
        CONFIG,
        &["--gate-require-entitlement", "cloud_sync"],
    )
    .await?;
    let person = Person::verified_account(&server, &unique_email("inside"), PASSWORD).await?;
    let key = person.new_api_key("inside").await?;
    let org_id = person.me().await?["org"]["id"]
        .as_str()
        .context("org id")?
        .to_owned();
    assert_eq!(status_through(&gate, &key).await?, StatusCode::FORBIDDEN);
    let checkout = paid_checkout("evt_inside", unix_now(), &org_id);
    assert_eq!(
        post_signed_webhook(&server, checkout).await?,
        StatusCode::OK
    );
    assert_eq!(
        status_through(&gate, &key).await?,
        StatusCode::OK,
        "no cache to wait for"
    );
    Ok(())
}
