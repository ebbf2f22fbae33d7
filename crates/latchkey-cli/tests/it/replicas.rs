//! Several replicas on one PostgreSQL database, as behind a load balancer: a decision on one
//! reaches waits on another, refresh-token reuse and key revocation are seen everywhere, and
//! neither a killed replica nor a PostgreSQL restart loses a flow. Run in the PostgreSQL pass
//! (`LATCHKEY_TEST_DATABASE_URL`); the restart test brings a cluster of its own.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use futures_util::{StreamExt, stream};
use latchkey_proto::wire::TokenFlowCreateResponse as Flow;
use latchkey_testkit::{Person, PrivatePostgres, Server, count_rows, unique_email};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    PASSWORD, bin,
    oauth::{approved_code, assert_invalid_grant, http, public_client},
};

async fn create_flow(http: &reqwest::Client, server: &Server) -> Result<Flow> {
    Ok(http
        .post(server.url("/v1/token-flow/create"))
        .json(&json!({"client_name": "replica test"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits for `flow` as the CLI does, through a load balancer over `servers`: held waits are
/// renewed, and a replica that refuses the connection or answers 503 is skipped for the next.
async fn collect_key(http: &reqwest::Client, servers: &[&str], flow: &Flow) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut turn = 0;
    while Instant::now() < deadline {
        let base = servers[turn % servers.len()];
        let response = http
            .post(format!("{base}/v1/token-flow/wait"))
            .json(
                &json!({"token_flow_id": flow.token_flow_id, "wait_secret": flow.wait_secret, "timeout": 20}),
            )
            .send()
            .await;
        match response {
            Ok(r) if r.status() == StatusCode::OK => {
                let body: Value = r.json().await?;
                if body["timeout"] == false {
                    return body["api_key"]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("approved without a key: {body}"));
                }
            }
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                ensure!(
                    r.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                );
                turn += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(r) => bail!("wait answered {}: {}", r.status(), r.text().await?),
            Err(_) => {
                turn += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    bail!("flow {} was never delivered", flow.token_flow_id)
}

/// The same person on another replica: same cookies, that replica's pages.
fn on(server: &Server, person: &Person) -> Person {
    Person {
        http: person.http.clone(),
        base: server.url.clone(),
    }
}

/// `web_url` of a flow, on another replica.
fn moved(url: &str, from: &Server, to: &Server) -> String {
    url.replacen(&from.url, &to.url, 1)
}

async fn me_status(server: &Server, key: &str) -> Result<StatusCode> {
    Ok(reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(key)
        .send()
        .await?
        .status())
}

/// Polls `done` every 5 ms until it holds, for a second at most (a notification crosses in
/// about a millisecond; polling briefly does not race it).
async fn within_a_second(failure: &str, mut done: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !done().await? {
        ensure!(started.elapsed() < Duration::from_secs(1), "{failure}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A wait on `waiter` returns within a second of the approval on `approver`: well inside the
/// 5 s re-check, so the notification woke it.
async fn wakes_at_notification_speed(
    waiter: &Server,
    approver: &Server,
    person: &Person,
) -> Result<()> {
    let woke_after = cross_replica_wake(waiter, approver, person, async || Ok(())).await?;
    assert!(
        woke_after < Duration::from_secs(1),
        "woken after {woke_after:?}"
    );
    Ok(())
}

/// Approves a new flow on `approver` while a wait for it is held on `waiter`, after
/// `before_approval` has run; returns how long after the approval's answer the wait returned.
async fn cross_replica_wake(
    waiter: &Server,
    approver: &Server,
    person: &Person,
    before_approval: impl AsyncFnOnce() -> Result<()>,
) -> Result<Duration> {
    let http = reqwest::Client::new();
    let flow = create_flow(&http, waiter).await?;
    let page = moved(&flow.web_url, waiter, approver);
    let url = waiter.url.clone();
    let waiting = tokio::spawn(async move {
        collect_key(&http, &[&url], &flow).await?;
        anyhow::Ok(Instant::now())
    });
    waiter
        .wait_for_metric("latchkey_token_flow_waits_open", 1)
        .await?;
    before_approval().await?;
    on(approver, person).approve(&page).await?;
    let approved_at = Instant::now();
    Ok(waiting.await??.saturating_duration_since(approved_at))
}

/// The replicas' `LISTEN` connections open on `database_url`.
async fn listeners(database_url: &str) -> Result<i64> {
    count_rows(
        database_url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await
}

#[tokio::test]
async fn a_flow_created_on_one_replica_and_approved_on_another_wakes_the_wait_at_once() -> Result<()>
{
    let a = Server::start(bin()).await?;
    let b = a.replica().await?;
    let person = Person::verified_account(&a, &unique_email("across"), PASSWORD).await?;
    wakes_at_notification_speed(&a, &b, &person).await?;
    wakes_at_notification_speed(&b, &a, &person).await?;
    Ok(())
}

#[tokio::test]
async fn a_dropped_change_listener_reconnects_and_no_wake_up_is_lost() -> Result<()> {
    let a = Server::start(bin()).await?;
    let b = a.replica().await?;
    let person = Person::verified_account(&a, &unique_email("listener"), PASSWORD).await?;
    // Cut every replica's LISTEN connection just before approving: the notification is sent
    // while nobody listens.
    let cut_listeners = async || {
        let db = sqlx::PgPool::connect(&a.database_url).await?;
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&db)
        .await?;
        ensure!(cut == vec![true, true], "one listener per replica: {cut:?}");
        Ok(())
    };
    let woke_after = cross_replica_wake(&a, &b, &person, cut_listeners).await?;
    // Woken by the reconnected listener's "missed" wake-all, or at worst by the 5 s re-check.
    assert!(
        woke_after < Duration::from_secs(6),
        "woken after {woke_after:?}"
    );

    // The listeners are back: the next approval crosses at notification speed again.
    let back = Instant::now();
    while listeners(&a.database_url).await? < 2 {
        ensure!(
            back.elapsed() < Duration::from_secs(10),
            "the listeners did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wakes_at_notification_speed(&a, &b, &person).await?;
    Ok(())
}

#[tokio::test]
async fn a_refresh_token_rotated_on_one_replica_is_caught_reused_on_another() -> Result<()> {
    let mut approved = approved_code("replica-refresh").await?;
    let b = approved.server.replica().await?;
    let callback = latchkey_testkit::LoopbackCallback::start().await?;
    let on_b = public_client(&b, "latchkey-cli", &callback)?;
    let http = http()?;
    let (first, second) = approved.rotate_once(&http).await?;

    // The spent token replayed on the other replica: refused, and the family is revoked there
    // for everyone, so the live token stops working on the first replica too.
    assert_invalid_grant(
        on_b.exchange_refresh_token(&first)
            .request_async(&http)
            .await,
    );
    assert_invalid_grant(
        approved
            .client
            .exchange_refresh_token(&second)
            .request_async(&http)
            .await,
    );
    assert_eq!(b.metric("latchkey_refresh_token_reuse_total").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_at_once_by_the_other() -> Result<()> {
    let a = Server::start(bin()).await?;
    let b = a.replica().await?;
    let person = Person::verified_account(&a, &unique_email("revoke"), PASSWORD).await?;
    let created = person.create_api_key("replicated").await?;
    let key = created["api_key"].as_str().context("api_key")?.to_owned();
    let id = created["id"].as_str().context("id")?.to_owned();
    // Both replicas now hold the key in their caches (kept 60 s without a revocation).
    assert_eq!(me_status(&a, &key).await?, StatusCode::OK);
    assert_eq!(me_status(&b, &key).await?, StatusCode::OK);

    let revoked = on(&b, &person)
        .http
        .delete(b.url(&format!("/v1/api-keys/{id}")))
        .header("origin", &b.url)
        .send()
        .await?;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    within_a_second("replica A still accepts a key revoked on B", async || {
        Ok(me_status(&a, &key).await? != StatusCode::OK)
    })
    .await?;
    assert_eq!(me_status(&a, &key).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&b, &key).await?, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// Creates `n` flows, alternating replicas; waits for each through the load balancer (starting
/// on the other replica); the person approves them `approvals_at_once` at a time on
/// `approver`. `after_approval(i)` runs after the i-th approval. Returns the keys.
async fn run_flows(
    replicas: &[&Server],
    person: &Person,
    approver: &Server,
    n: usize,
    mut after_approval: impl AsyncFnMut(usize) -> Result<()>,
) -> Result<Vec<String>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let mut flows = Vec::with_capacity(n);
    for i in 0..n {
        flows.push(create_flow(&http, replicas[i % replicas.len()]).await?);
    }
    let pages: Vec<String> = flows
        .iter()
        .map(|f| {
            let origin = replicas
                .iter()
                .find(|r| f.web_url.starts_with(&r.url))
                .context("flow on no replica")?;
            Ok(moved(&f.web_url, origin, approver))
        })
        .collect::<Result<_>>()?;
    let waits: Vec<_> = flows
        .into_iter()
        .enumerate()
        .map(|(i, flow)| {
            let http = http.clone();
            let mut order = urls.clone();
            order.rotate_left((i + 1) % urls.len());
            tokio::spawn(async move {
                let order: Vec<&str> = order.iter().map(String::as_str).collect();
                collect_key(&http, &order, &flow).await
            })
        })
        .collect();
    let approver_person = on(approver, person);
    let mut approvals = stream::iter(pages)
        .map(|page| {
            let person = approver_person.clone();
            async move { person.approve(&page).await }
        })
        .buffer_unordered(16);
    let mut approved = 0;
    while let Some(result) = approvals.next().await {
        result?;
        approved += 1;
        after_approval(approved).await?;
    }
    let mut keys = Vec::with_capacity(n);
    for wait in waits {
        keys.push(wait.await??);
    }
    Ok(keys)
}

/// Every key distinct and working; the database holds exactly one delivered flow and one key
/// per flow.
async fn assert_each_flow_delivered_once(server: &Server, keys: &[String], n: usize) -> Result<()> {
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), n, "every flow gave its own key");
    let statuses: Vec<StatusCode> = stream::iter(keys)
        .map(|key| me_status(server, key))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every key works"
    );
    let n = i64::try_from(n)?;
    assert_eq!(
        count_rows(&server.database_url, "SELECT count(*) FROM api_keys").await?,
        n
    );
    assert_eq!(
        count_rows(
            &server.database_url,
            "SELECT count(*) FROM token_flows WHERE status = 'approved' AND delivered_at IS NOT NULL"
        )
        .await?,
        n
    );
    assert_eq!(
        count_rows(&server.database_url, "SELECT count(*) FROM token_flows").await?,
        n,
        "no flow lost or left undecided"
    );
    Ok(())
}

#[tokio::test]
async fn a_thousand_concurrent_token_flows_across_two_replicas_deliver_one_key_each() -> Result<()>
{
    let a = Server::start(bin()).await?;
    let b = a.replica().await?;
    let person = Person::verified_account(&a, &unique_email("thousand"), PASSWORD).await?;
    let keys = run_flows(&[&a, &b], &person, &b, 1000, async |_| Ok(())).await?;
    assert_each_flow_delivered_once(&a, &keys, 1000).await?;
    let delivered = a.metric("latchkey_token_flows_delivered_total").await?
        + b.metric("latchkey_token_flows_delivered_total").await?;
    assert_eq!(delivered, 1000, "no flow delivered twice");
    Ok(())
}

#[tokio::test]
async fn a_replica_killed_mid_load_loses_no_flow() -> Result<()> {
    let mut a = Server::start(bin()).await?;
    let b = a.replica().await?;
    let person = Person::verified_account(&b, &unique_email("sigkill"), PASSWORD).await?;
    let a_url = a.url.clone();
    let replicas = [&a, &b];
    // Waits spread over both; replica A dies after a quarter of the approvals.
    let pid = a.pid().context("replica A runs")?;
    let keys = run_flows(&replicas, &person, &b, 200, async |approved| {
        if approved == 50 {
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()?;
            ensure!(killed.success(), "kill -KILL {pid}");
        }
        Ok(())
    })
    .await?;
    assert!(
        reqwest::get(format!("{a_url}/healthz")).await.is_err(),
        "replica A is gone"
    );
    assert_each_flow_delivered_once(&b, &keys, 200).await?;
    a.kill().await.ok();
    Ok(())
}

#[tokio::test]
async fn postgres_restarted_mid_load_answers_503_then_every_pending_flow_completes() -> Result<()> {
    let postgres = PrivatePostgres::start().await?;
    let tmp = tempfile::tempdir()?;
    let server = Server::start_at(
        bin(),
        &tmp.path().join("data"),
        "127.0.0.1:0".parse()?,
        &["--database-url", &postgres.url()],
    )
    .await?;
    let person = Person::verified_account(&server, &unique_email("pgrestart"), PASSWORD).await?;
    let http = reqwest::Client::new();
    let mut flows = Vec::new();
    for _ in 0..20 {
        flows.push(create_flow(&http, &server).await?);
    }
    let pages: Vec<String> = flows.iter().map(|f| f.web_url.clone()).collect();
    let waits: Vec<_> = flows
        .into_iter()
        .map(|flow| {
            let (http, url) = (http.clone(), server.url.clone());
            tokio::spawn(async move { collect_key(&http, &[&url], &flow).await })
        })
        .collect();
    server
        .wait_for_metric("latchkey_token_flow_waits_open", 20)
        .await?;

    postgres.stop().await?;
    let ready = http.get(server.url("/readyz")).send().await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let create = http
        .post(server.url("/v1/token-flow/create"))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(create.headers()["retry-after"], "5");
    let body: Value = create.json().await?;
    assert_eq!(body["error"], "unavailable", "{body}");
    let token = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
        .send()
        .await?;
    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(token.headers().contains_key("retry-after"));

    postgres.start_again().await?;
    let back = Instant::now();
    while http.get(server.url("/readyz")).send().await?.status() != StatusCode::OK {
        ensure!(
            back.elapsed() < Duration::from_secs(30),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for page in &pages {
        person.approve(page).await?;
    }
    let mut keys = Vec::new();
    for wait in waits {
        keys.push(wait.await??);
    }
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 20);
    for key in &keys {
        assert_eq!(me_status(&server, key).await?, StatusCode::OK);
    }
    let delivered = "SELECT count(*) FROM token_flows WHERE delivered_at IS NOT NULL";
    assert_eq!(count_rows(&postgres.url(), delivered).await?, 20);
    assert_eq!(
        count_rows(&postgres.url(), "SELECT count(*) FROM api_keys").await?,
        20
    );
    Ok(())
}

#[tokio::test]
async fn the_example_deployment_config_runs_two_replicas() -> Result<()> {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/latchkey.toml"
    ))?;
    // Production's URL, address and master key file give way to loopback ones and the dev
    // key; everything else is as shipped.
    let config: String = example
        .lines()
        .filter(|l| {
            !l.starts_with("public_url")
                && !l.starts_with("listen")
                && !l.starts_with("master_key_file")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let a =
        Server::start_with_config(bin(), &config, &["--smtp-url", "smtp://127.0.0.1:2525"]).await?;
    let b = a.replica().await?;
    let http = reqwest::Client::new();
    for replica in [&a, &b] {
        let ready = http.get(replica.url("/readyz")).send().await?;
        assert_eq!(ready.status(), StatusCode::OK);
        let device = http
            .post(replica.url("/oauth/device_authorization"))
            .form(&[("client_id", "example-cli")])
            .send()
            .await?;
        assert_eq!(
            device.status(),
            StatusCode::OK,
            "the declared CLI client exists"
        );
    }
    Ok(())
}

#[tokio::test]
async fn webhooks_of_one_subscription_on_two_replicas_at_once_end_in_the_newest_state() -> Result<()>
{
    use crate::billing::{Billing, OLD_SECRET, event, signature, subscription, unix_now};
    let billing = Billing::start().await?;
    // Both replicas live to the end: dropping a `Server` stops it.
    let replica = billing.server.replica().await?;
    let replicas = [billing.server.url.clone(), replica.url.clone()];
    let now = unix_now();
    let events: Vec<(usize, String)> = (0..40)
        .map(|i| {
            let status = if i % 2 == 0 { "active" } else { "past_due" };
            let created = now - 100 + i as i64;
            let body = event(
                &format!("evt_race_{i}"),
                "customer.subscription.updated",
                created,
                subscription(&billing.org_id, status, now + 1000 + i as i64),
            );
            (i, body.to_string())
        })
        .collect();
    // Newest first, each sent twice (to both replicas), many at once.
    let sends = events
        .iter()
        .rev()
        .flat_map(|(i, body)| [(i % 2, body.clone()), ((i + 1) % 2, body.clone())]);
    let http = reqwest::Client::new();
    let answers: Vec<Result<StatusCode>> = stream::iter(sends)
        .map(|(replica, body)| {
            let (http, url) = (
                http.clone(),
                format!("{}/v1/billing/stripe/webhook", replicas[replica]),
            );
            async move {
                let response = http
                    .post(url)
                    .header("Stripe-Signature", signature(OLD_SECRET, unix_now(), &body))
                    .body(body)
                    .send()
                    .await?;
                anyhow::Ok(response.status())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for answer in answers {
        assert_eq!(answer?, StatusCode::OK);
    }
    assert_eq!(
        billing.rows("SELECT COUNT(*) FROM billing_events").await?,
        40
    );
    // The newest event (i = 39: past_due, created now - 61) is the state, whatever arrived last.
    let newest_ms = (now - 61) * 1000;
    assert_eq!(
        billing
            .rows(&format!(
                "SELECT COUNT(*) FROM subscriptions WHERE status = 'past_due' AND as_of = {newest_ms}"
            ))
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_subscription_bought_or_cancelled_on_one_replica_reaches_the_other_s_gate_at_once()
-> Result<()> {
    use crate::billing::{
        CONFIG, event, paid_checkout, post_signed_webhook, status_through, subscription, unix_now,
    };
    use crate::gate_proxy::{upstream, wait_for_port};
    let a = Server::start_with_config(bin(), CONFIG, &[]).await?;
    let gate_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let gate_listen = format!("127.0.0.1:{gate_port}");
    let upstream = upstream().await?;
    // Replica B, kept alive to the end (dropping a `Server` stops it), with the gate inside.
    let _b = a
        .replica_with_flags(&[
            "--gate-upstream",
            &upstream,
            "--gate-listen",
            &gate_listen,
            "--gate-require-entitlement",
            "cloud_sync",
        ])
        .await?;
    wait_for_port(gate_port).await;
    let person = Person::verified_account(&a, &unique_email("replicated-buyer"), PASSWORD).await?;
    let key = person.new_api_key("through b").await?;
    let org_id = person.me().await?["org"]["id"]
        .as_str()
        .context("org id")?
        .to_owned();
    let through_b = format!("http://{gate_listen}");
    // B's gate has now read (and keeps) the org's standing: no subscription.
    assert_eq!(
        status_through(&through_b, &key).await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_through(&through_b, &key).await?,
        StatusCode::FORBIDDEN
    );

    let now = unix_now();
    let checkout = paid_checkout("evt_replicated_checkout", now - 10, &org_id);
    assert_eq!(post_signed_webhook(&a, checkout).await?, StatusCode::OK);
    within_a_second(
        "B's gate still refuses an org that bought on A",
        async || Ok(status_through(&through_b, &key).await? == StatusCode::OK),
    )
    .await?;

    let cancelled = event(
        "evt_replicated_cancel",
        "customer.subscription.deleted",
        now,
        subscription(&org_id, "canceled", now + 1000),
    );
    assert_eq!(
        post_signed_webhook(&a, cancelled.to_string()).await?,
        StatusCode::OK
    );
    within_a_second(
        "B's gate still admits an org that cancelled on A",
        async || Ok(status_through(&through_b, &key).await? == StatusCode::FORBIDDEN),
    )
    .await?;
    Ok(())
}
