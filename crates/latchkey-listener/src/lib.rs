//! The HTTP/1 listener under both `latchkey serve` and `latchkey gate`, and the client address
//! it gives every request.
//!
//! hyper's HTTP/1 connection directly, not axum's `serve`: that one sniffs for HTTP/2 first and
//! replays the sniffed bytes, which makes hyper grow every connection's 8 KiB read buffer to
//! 16 KiB on the first request. A held long-poll or idle stream is little more than that buffer,
//! so this halves what each one costs.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, header},
};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::Service;

/// The client's address, put in request extensions by whoever accepted the connection
/// ([`serve`] does; an axum app can with `into_make_service_with_connect_info`'s
/// `ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Request heads larger than this are refused with 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Connections the kernel queues before they are accepted (it caps this at
/// `net.core.somaxconn`). Thousands of CLIs opening their waits at once, or a burst of clients
/// after a restart, outrun the accept loop for a moment; with the usual 1024 the queue
/// overflows, the kernel falls back to SYN cookies, and some of those connections are reset.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with a deep accept queue, for [`serve`]. With `shared_port`,
/// other sockets may listen on the same port (`SO_REUSEPORT`: the kernel spreads new
/// connections among them), and only sockets of the same user can join that group, so
/// another account on the machine cannot take a share of the traffic.
pub fn listen(addr: SocketAddr, shared_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if shared_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

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
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer.ip()));
            answer(app.clone(), request)
        });
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

/// Runs `app` on `request`. A response sent before the request's body was read to its end
/// (a refusal, say) says `Connection: close`: hyper closes such a connection rather than read
/// the rest, and a client not told so would send its next request into a closed socket.
async fn answer(
    mut app: Router,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    // Most requests have no body: nothing to track, nothing to allocate.
    if request.body().is_end_stream() {
        return app.call(request.map(Body::new)).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(TrackedBody {
            inner: body,
            finished: finished.clone(),
        })
    });
    let mut response = app.call(request).await?;
    if !finished.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A request body that records when it has been read to its end.
struct TrackedBody {
    inner: Incoming,
    finished: Arc<AtomicBool>,
}

impl hyper::body::Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpStream, time::Duration};

    use super::*;

    /// A burst of connections the accept loop has not reached yet all complete their
    /// handshake: none waits for a SYN retransmission or is reset after SYN cookies, as with
    /// the usual backlog of 1024.
    #[test]
    fn a_burst_of_connections_waits_in_the_accept_queue() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let burst = somaxconn.min(LISTEN_BACKLOG as usize).saturating_sub(100);
        if burst <= 1024 {
            eprintln!(
                "net.core.somaxconn is {somaxconn}: the kernel caps the queue below 1024 here"
            );
            return;
        }
        let files = rlimit::increase_nofile_limit(u64::MAX).expect("RLIMIT_NOFILE");
        let burst = burst.min((files as usize).saturating_sub(100) / 2);
        assert!(
            burst > 1024,
            "RLIMIT_NOFILE {files} is too low for this test"
        );
        let listener = listen("127.0.0.1:0".parse().expect("address"), false).expect("listen");
        let addr = listener.local_addr().expect("address");
        let connected: Vec<TcpStream> = (0..burst)
            .map(|n| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {n} of {burst} not queued: {e}"))
            })
            .collect();
        assert_eq!(connected.len(), burst);
    }
}
