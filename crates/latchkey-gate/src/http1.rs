//! The HTTP/1 listener under both `latchkey serve` and `latchkey gate`.
//!
//! hyper's HTTP/1 connection directly, not axum's `serve`: that one sniffs for HTTP/2 first and
//! replays the sniffed bytes, which makes hyper grow every connection's 8 KiB read buffer to
//! 16 KiB on the first request. A held long-poll or idle stream is little more than that buffer,
//! so this halves what each one costs.

use std::{future::Future, time::Duration};

use axum::{Router, http::Request};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::ClientAddr;

/// Request heads larger than this are refused with 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open requests and
/// streams to finish. Each request carries the peer's address as [`ClientAddr`]; a client that
/// takes longer than `header_read_timeout` to send its request head is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES);
    // Every connection task holds a receiver: `closed()` resolves when the last one ends.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(tower::util::MapRequest::new(
            app.clone(),
            move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer.ip()));
                request
            },
        ));
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stopping);
    let _ = stop.send(true);
    stop.closed().await;
}
