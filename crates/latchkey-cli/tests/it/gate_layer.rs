//! The gate as a tower layer in front of a small axum app, against the real issuer: API keys
//! (checksum, then cached introspection), JWTs from a browser login (local JWKS check), and the
//! attacks: no credential, forged token, spoofed identity headers, a revoked key after the
//! cache's TTL, a missing scope.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use axum::{Router, http::HeaderMap, routing::get};
use latchkey_gate::{GateLayer, Verifier, VerifierConfig};
use latchkey_testkit::{Person, Server, sha256_hex, unique_email};
use serde_json::{Value, json};

use crate::{PASSWORD, bin, oauth};

const GATE_SECRET: &str = "lkcs_gate-introspection-secret";

/// What the app behind the gate saw.
async fn echo(headers: HeaderMap) -> axum::Json<Value> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    axum::Json(json!({
        "user": get("x-latchkey-user"),
        "org": get("x-latchkey-org"),
        "scopes": get("x-latchkey-scopes"),
        "authorization": get("authorization"),
        "api_key": get("x-api-key"),
    }))
}

/// Serves the app behind `layer` on 127.0.0.1:0; returns its base URL.
async fn app_behind(layer: GateLayer) -> Result<String> {
    let app = Router::new()
        .route("/whoami", get(echo))
        .route("/public/info", get(echo))
        .layer(layer);
    crate::gate_proxy::serve_app(app).await
}

async fn issuer_with_gate_client() -> Result<Server> {
    Server::start_with_config(
        bin(),
        &format!(
            "[[oauth_clients]]\nid = \"gate\"\nname = \"gate\"\nsecret_sha256 = \"{}\"\n",
            sha256_hex(GATE_SECRET)
        ),
        &[],
    )
    .await
}

fn verifier(server: &Server, positive_ttl: Duration) -> Result<Arc<Verifier>> {
    let mut config = VerifierConfig::new(url::Url::parse(&server.url)?, "gate", GATE_SECRET);
    config.positive_ttl = positive_ttl;
    Ok(Arc::new(Verifier::new(config)?))
}

#[tokio::test]
async fn api_keys_and_jwts_pass_with_their_identity_and_everything_else_is_refused() -> Result<()> {
    let server = issuer_with_gate_client().await?;
    let person = Person::verified_account(&server, &unique_email("gate"), PASSWORD).await?;
    let key = person.create_api_key("gate").await?;
    let (api_key, key_id) = (
        key["api_key"].as_str().context("key")?.to_owned(),
        key["id"].as_str().context("id")?.to_owned(),
    );
    let me = person.me().await?;
    let base = app_behind(
        GateLayer::new(
            verifier(&server, Duration::from_secs(1))?,
            "http://gate.example/.well-known/oauth-protected-resource",
        )
        .public_path("/public"),
    )
    .await?;
    let http = reqwest::Client::new();

    let anonymous = http.get(format!("{base}/whoami")).send().await?;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer resource_metadata=\"http://gate.example/.well-known/oauth-protected-resource\""
    );
    let body: Value = anonymous.json().await?;
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("X-API-Key"))
    );

    // An API key, with spoofed identity headers that must not survive.
    let seen: Value = http
        .get(format!("{base}/whoami"))
        .header("x-api-key", &api_key)
        .header("x-latchkey-user", "usr_admin")
        .header("x-latchkey-scopes", "admin")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seen["user"], me["user_id"]);
    assert_eq!(seen["org"], me["org"]["id"]);
    assert_eq!(seen["scopes"], "*");
    assert_eq!(
        seen["api_key"],
        Value::Null,
        "credentials are not forwarded"
    );

    // The public path passes without a credential, still without spoofed headers.
    let public: Value = http
        .get(format!("{base}/public/info"))
        .header("x-latchkey-user", "usr_admin")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(public["user"], Value::Null);

    // A typo never reaches the issuer; a forged JWT is refused locally.
    let last = if api_key.ends_with('x') { 'y' } else { 'x' };
    let typo = format!("{}{last}", &api_key[..api_key.len() - 1]);
    for bad in [typo.as_str(), "a.b.c"] {
        let refused = http
            .get(format!("{base}/whoami"))
            .bearer_auth(bad)
            .send()
            .await?;
        assert_eq!(refused.status(), 401, "{bad}");
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()?
                .contains("invalid_token")
        );
    }

    // A JWT from a browser login with the oauth2 crate, checked locally against the JWKS.
    let jwt = oauth::access_token(&server, &person).await?;
    let seen: Value = http
        .get(format!("{base}/whoami"))
        .bearer_auth(&jwt)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seen["user"], me["user_id"]);
    assert_eq!(seen["scopes"], "openid");
    assert_eq!(seen["authorization"], Value::Null);

    // A scope the token lacks: 403 for the JWT; an API key carries its account's full rights.
    let scoped = app_behind(
        GateLayer::new(
            verifier(&server, Duration::from_secs(30))?,
            "http://gate.example/meta",
        )
        .require_scope("email"),
    )
    .await?;
    let lacking = http
        .get(format!("{scoped}/whoami"))
        .bearer_auth(&jwt)
        .send()
        .await?;
    assert_eq!(lacking.status(), 403);
    assert!(
        lacking.headers()["www-authenticate"]
            .to_str()?
            .contains("scope=\"email\"")
    );
    let body: Value = lacking.json().await?;
    assert_eq!(body["error"], "insufficient_scope");
    let with_key = http
        .get(format!("{scoped}/whoami"))
        .header("x-api-key", &api_key)
        .send()
        .await?;
    assert_eq!(with_key.status(), 200);

    // Revocation reaches the gate once the positive cache (1 s here) lapses.
    let revoke = person
        .http
        .delete(server.url(&format!("/v1/api-keys/{key_id}")))
        .header("origin", &server.url)
        .send()
        .await?;
    assert!(revoke.status().is_success(), "{}", revoke.status());
    let mut status = 200;
    for _ in 0..100 {
        status = http
            .get(format!("{base}/whoami"))
            .header("x-api-key", &api_key)
            .send()
            .await?
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401, "refused within the cache time, not 5 s later");
    Ok(())
}
