//! The signing keys and everything else in the data directory, attacked by another local
//! user and by whoever holds a copy of the database: the directory is private, and the
//! private keys in the database are sealed with a master key kept outside it.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use latchkey_testkit::{Person, Server, unique_email};
use sqlx::Connection;

use crate::{PASSWORD, bin};

fn mode(path: &std::path::Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test]
async fn other_local_users_cannot_read_the_data_directory() -> Result<()> {
    let server = Server::start(bin()).await?;
    // A mail in the outbox, and writes in the database's journal.
    Person::verified_account(&server, &unique_email("perms"), PASSWORD).await?;
    let dir = &server.data_dir;
    assert_eq!(mode(dir)?, 0o700, "the data directory");
    for name in ["outbox.jsonl", "master.key"] {
        assert_eq!(mode(&dir.join(name))?, 0o600, "{name}");
    }
    if !server.database_url.starts_with("postgres") {
        for name in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
            assert_eq!(mode(&dir.join(name))?, 0o600, "{name}");
        }
    }
    Ok(())
}

/// The stored private halves of the signing keys, read as a thief with the database would.
async fn stored_private_keys(database_url: &str) -> Result<Vec<Vec<u8>>> {
    let sql = "SELECT private_pkcs8 FROM signing_keys";
    Ok(if database_url.starts_with("postgres") {
        let mut db = sqlx::PgConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_all(&mut db).await?
    } else {
        let mut db = sqlx::SqliteConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_all(&mut db).await?
    })
}

#[tokio::test]
async fn a_copy_of_the_database_cannot_mint_tokens() -> Result<()> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let server = Server::start(bin()).await?;
    let keys = stored_private_keys(&server.database_url).await?;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(
            ed25519_dalek::SigningKey::from_pkcs8_der(key).is_err(),
            "a stored private key parses as a key: it is in the clear"
        );
        assert!(key.starts_with(b"lkmk1:"), "sealed with the master key");
    }

    // A server on the same database with another master key refuses to start, and says why.
    let elsewhere = tempfile::tempdir()?;
    let output = tokio::process::Command::new(bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(elsewhere.path().join("data"))
        .args(["--database-url", &server.database_url])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a configuration error: {stderr}"
    );
    assert!(
        stderr.contains("sealed with another master key"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn production_refuses_to_start_without_a_master_key() -> Result<()> {
    let data = tempfile::tempdir()?;
    let output = tokio::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args([
            "--smtp-url",
            "smtp://127.0.0.1:25",
            "--mail-from",
            "auth@example.com",
        ])
        .env_remove("LATCHKEY_MASTER_KEY")
        .env_remove("LATCHKEY_MASTER_KEY_FILE")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("master_key_file"), "{stderr}");
    assert!(
        stderr.contains("head -c 32 /dev/urandom | base64"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn the_master_key_rotates_as_the_deployment_guide_says() -> Result<()> {
    let mut server = Server::start(bin()).await?;
    let person = Person::verified_account(&server, &unique_email("rotate"), PASSWORD).await?;
    let before = crate::oauth::access_token(&server, &person).await?;

    // 1. A new master key file; 2. a new signing key sealed with it.
    let new_key = latchkey_core::master_key::MasterKey::generate(&mut rand::rngs::OsRng);
    let keys = tempfile::tempdir()?;
    let new_file = keys.path().join("new.key");
    std::fs::write(&new_file, new_key.to_text())?;
    let rotated = tokio::process::Command::new(bin())
        .args(["admin", "--dev", "--data-dir"])
        .arg(&server.data_dir)
        .args(["--database-url", &server.database_url, "--master-key-file"])
        .arg(&new_file)
        .args(["keys", "rotate"])
        .output()
        .await?;
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );

    // 3. The server restarts with the new key (here: the dev key file replaced).
    std::fs::copy(&new_file, server.data_dir.join("master.key"))?;
    server.restart().await?;
    let me = |token: String| {
        let request = reqwest::Client::new()
            .get(server.url("/v1/me"))
            .bearer_auth(token)
            .send();
        async move { anyhow::Ok(request.await?.status().as_u16()) }
    };
    assert_eq!(me(before.clone()).await?, 200, "old tokens still verify");
    let after = crate::oauth::access_token(&server, &person).await?;
    assert_eq!(me(after.clone()).await?, 200, "the new key signs");
    let kid = |token: &str| token.split('.').next().map(str::to_owned);
    assert_ne!(kid(&before), kid(&after), "signed by the new signing key");
    Ok(())
}
