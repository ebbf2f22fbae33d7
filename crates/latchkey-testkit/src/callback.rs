//! A one-shot loopback callback receiver, standing in for a CLI's `http://127.0.0.1:<port>/callback`.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::oneshot,
    task::JoinHandle,
};

/// Listens on 127.0.0.1:0 and records the first request's path and query.
#[derive(Debug)]
pub struct LoopbackCallback {
    pub port: u16,
    received: oneshot::Receiver<String>,
    _task: JoinHandle<()>,
}

impl LoopbackCallback {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, received) = oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let target = String::from_utf8_lossy(&head)
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            let _ = tx.send(target);
        });
        Ok(Self {
            port,
            received,
            _task: task,
        })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// The path and query the browser was sent to.
    pub async fn received(self) -> Result<String> {
        tokio::time::timeout(Duration::from_secs(30), self.received)
            .await
            .context("no request reached the loopback callback within 30 s")?
            .context("the loopback callback stopped")
    }
}
