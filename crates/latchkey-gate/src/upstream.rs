//! The gate's connections to its upstream, one set per worker thread.
//!
//! By default requests go over HTTP/1.1 through hyper-util's pooled client: a request in flight
//! (an open SSE stream included) holds a connection of its own, with its task and buffers. With
//! HTTP/2 (h2c, prior knowledge) requests are streams over a few shared connections, so an idle
//! stream costs an HTTP/2 stream instead. `Upgrade` requests (WebSocket) always use HTTP/1.1:
//! HTTP/2 has no such upgrade.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::{
        HeaderMap, HeaderValue, Method, Request, Response, Uri, Version, header, request,
        uri::{Authority, PathAndQuery, Scheme},
    },
};
use hyper::{body::Body as _, body::Incoming, client::conn::http2};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use thiserror::Error;
use url::Url;

/// Streams opened on one HTTP/2 connection, by default, before the next request opens another
/// connection. A stream past the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` would wait in hyper
/// until another closes (and every later request on that connection behind it), and an SSE
/// stream may never close, so this stays at or below common servers' limits (100 in
/// hypercorn and Apache, 128 in nginx, 200 in hyper, 250 in Go). hyper does not tell the
/// peer's own limit, so an upstream that allows fewer is configured to match.
pub const HTTP2_STREAMS_PER_CONNECTION: usize = 100;

/// How long connecting to the upstream may take before the request is a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a slow client can make the gate hold of one HTTP/2 response: the upstream sends no
/// more of a stream's body until the client has read it.
const HTTP2_STREAM_WINDOW: u32 = 256 * 1024;

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("the HTTP/1.1 request to the upstream failed")]
    Http1(#[source] hyper_util::client::legacy::Error),
    #[error("the HTTP/2 request to the upstream failed (over HTTP/2 the upstream must speak h2c)")]
    Http2(#[source] hyper::Error),
    #[error("could not connect to the upstream")]
    Connect(#[source] std::io::Error),
    #[error("the upstream closed a new HTTP/2 connection at once")]
    ClosedAtOnce,
    /// The client's request body failed while it was read to be sent.
    #[error("the request body could not be read")]
    RequestBody(#[source] axum::Error),
    /// Opening the connection this request waited for failed.
    #[error(transparent)]
    Connecting(#[from] Arc<UpstreamError>),
}

/// Where admitted requests go: the upstream's address, parsed once, not at every request.
#[derive(Clone)]
pub struct UpstreamAddress {
    authority: Authority,
    /// The `Host` every request forwarded over HTTP/1.1 carries.
    host: HeaderValue,
}

impl UpstreamAddress {
    /// The address of `base`, an `http://` URL with no path; `None` if it has no usable one.
    pub fn of(base: &Url) -> Option<Self> {
        let authority = &base[url::Position::BeforeHost..url::Position::AfterPort];
        Some(Self {
            authority: authority.parse().ok()?,
            host: HeaderValue::from_str(authority).ok()?,
        })
    }
}

/// One worker's connections to the upstream.
pub struct Upstream {
    address: UpstreamAddress,
    http1: Client<HttpConnector, Body>,
    http2: Option<Http2Pool>,
}

impl Upstream {
    /// Connections to `address`; with `http2` (streams a connection), every request but
    /// upgrades goes over HTTP/2.
    pub fn new(address: UpstreamAddress, http2: Option<usize>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            http2: http2.map(|streams| Http2Pool::new(&address.authority, streams)),
            address,
            http1,
        }
    }

    /// The upstream URI for `uri`: the upstream's scheme and authority, the request's path
    /// and query (whatever host an absolute-form request named).
    pub fn uri(&self, uri: Uri) -> Result<Uri, axum::http::uri::InvalidUriParts> {
        let mut parts = uri.into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.address.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        Uri::from_parts(parts)
    }

    /// Sends `request` (its URI from [`Self::uri`], hop-by-hop headers gone; `upgrade` if it
    /// asks for one) and returns the upstream's answer, its body streaming.
    pub async fn send(
        &self,
        mut request: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        match &self.http2 {
            // CONNECT is a tunnel in HTTP/2 too, not a request to forward.
            Some(pool) if !upgrade && request.method() != Method::CONNECT => {
                // `:authority` names the upstream, from the URI; the client's `Host` beside
                // it would be a second, different one (nginx answers 400).
                request.headers_mut().remove(header::HOST);
                pool.send(request).await
            }
            _ => {
                request
                    .headers_mut()
                    .insert(header::HOST, self.address.host.clone());
                self.http1
                    .request(request)
                    .await
                    .map(|response| response.map(Body::new))
                    .map_err(UpstreamError::Http1)
            }
        }
    }
}

/// HTTP/2 connections to one upstream, each carrying up to `streams_per_connection` streams.
/// Only its own worker's tasks use it, so its locks are never contended (they are
/// `Mutex`es because axum's handlers must be `Send`) and never held across an `await`.
struct Http2Pool {
    host: String,
    port: u16,
    streams_per_connection: usize,
    connections: Mutex<Vec<Http2Connection>>,
    /// The connection being opened, if one is: requests that find no room wait for it
    /// instead of each opening their own.
    connecting: Mutex<Option<Arc<Connecting>>>,
}

type Connecting = tokio::sync::OnceCell<Result<Http2Connection, Arc<UpstreamError>>>;

#[derive(Clone)]
struct Http2Connection {
    sender: http2::SendRequest<Body>,
    open_streams: Arc<AtomicUsize>,
}

impl Http2Pool {
    fn new(authority: &Authority, streams_per_connection: usize) -> Self {
        Self {
            // An IPv6 address without its brackets, as the resolver takes it.
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            streams_per_connection,
            connections: Mutex::new(Vec::new()),
            connecting: Mutex::new(None),
        }
    }

    async fn send(&self, request: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        let (mut head, body) = request.into_parts();
        head.version = Version::HTTP_2;
        let (mut request, sending) = Sending::prepare(head, body).await?;
        let mut retried = false;
        loop {
            let (mut connection, stream) = self.stream().await?;
            match connection.sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| {
                        Body::new(StreamBody {
                            body,
                            _stream: stream,
                        })
                    }));
                }
                Err(mut failed) => {
                    // Not sent, because the connection had closed, or refused by the upstream
                    // unprocessed (RFC 9113 §8.7): sending it again is safe, on another
                    // connection.
                    let again = failed.take_message().or_else(|| {
                        sending
                            .copy()
                            .filter(|_| refused_unprocessed(failed.error()))
                            .map(Resend::request)
                    });
                    match again {
                        Some(again) if !retried => {
                            self.forget(&connection);
                            request = again;
                            retried = true;
                        }
                        _ => {
                            return Err(match sending.client_body_error() {
                                Some(error) => UpstreamError::RequestBody(error),
                                None => UpstreamError::Http2(failed.into_error()),
                            });
                        }
                    }
                }
            }
        }
    }

    /// A stream on a connection with room for it: a pooled one, or the one being opened, or
    /// a new one.
    async fn stream(&self) -> Result<(Http2Connection, OpenStream), UpstreamError> {
        loop {
            if let Some(reserved) = self.reserve() {
                return Ok(reserved);
            }
            let attempt = lock(&self.connecting)
                .get_or_insert_with(Default::default)
                .clone();
            let opened = attempt.get_or_init(|| self.connect()).await.clone();
            let mut connecting = lock(&self.connecting);
            if connecting
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &attempt))
            {
                *connecting = None;
            }
            drop(connecting);
            // Open and pooled: the next round takes a stream on it, or, if the other waiters
            // filled it, opens another.
            if opened?.sender.is_closed() {
                return Err(UpstreamError::ClosedAtOnce);
            }
        }
    }

    /// A stream on a pooled connection with room for one, if there is one. Closed connections
    /// are forgotten, and so are idle ones beyond the first, so that a burst of streams does
    /// not leave its connections open once it is over.
    fn reserve(&self) -> Option<(Http2Connection, OpenStream)> {
        let mut connections = lock(&self.connections);
        let mut idle_kept = false;
        connections.retain(|connection| {
            if connection.sender.is_closed() {
                return false;
            }
            // Streams are counted up only under this lock, so an idle count cannot rise
            // while the connection is being dropped.
            if connection.open_streams.load(Ordering::Acquire) > 0 {
                return true;
            }
            !std::mem::replace(&mut idle_kept, true)
        });
        let connection = connections.iter().find(|connection| {
            connection.open_streams.load(Ordering::Acquire) < self.streams_per_connection
        })?;
        Some((connection.clone(), OpenStream::on(connection)))
    }

    /// Opens a connection and pools it.
    async fn connect(&self) -> Result<Http2Connection, Arc<UpstreamError>> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|elapsed| UpstreamError::Connect(elapsed.into()))?
        .map_err(UpstreamError::Connect)?;
        tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
        let (sender, driver) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(UpstreamError::Http2)?;
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!(error = %e, "an HTTP/2 connection to the upstream ended");
            }
        });
        let connection = Http2Connection {
            sender,
            open_streams: Arc::new(AtomicUsize::new(0)),
        };
        lock(&self.connections).push(connection.clone());
        Ok(connection)
    }

    /// Takes `failed` out of the pool: no new stream goes to it.
    fn forget(&self, failed: &Http2Connection) {
        lock(&self.connections)
            .retain(|connection| !Arc::ptr_eq(&connection.open_streams, &failed.open_streams));
    }
}

/// A lock no panic can poison for good: every holder leaves the pool consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A copy of a request to send again if the upstream refuses it. A body of known, small size
/// is read whole before the request goes out (an MCP message, a JSON call), so that an upstream
/// closing a connection gracefully (nginx does, every 1,000 requests) costs no request that
/// was on its way. A larger or open-ended body streams, and its request is not resent.
struct Resend {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// The largest body read whole before it is sent, so that it can be resent.
const RESENDABLE_BODY: u64 = 64 * 1024;

/// How a request's body goes out over HTTP/2.
enum Sending {
    /// Read whole first, so the request can be sent again.
    Resendable(Box<Resend>),
    /// Streamed. If the client's body fails midway, hyper resets the stream and reports that
    /// instead; the client's own error is kept here, so the answer is still the client's 400.
    Streamed(Arc<Mutex<Option<axum::Error>>>),
}

impl Sending {
    /// The request to send, and how its body goes.
    async fn prepare(
        head: request::Parts,
        body: Body,
    ) -> Result<(Request<Body>, Self), UpstreamError> {
        match body.size_hint().exact() {
            Some(length) if length <= RESENDABLE_BODY => {
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(UpstreamError::RequestBody)?
                    .to_bytes();
                let copy = Resend {
                    method: head.method.clone(),
                    uri: head.uri.clone(),
                    headers: head.headers.clone(),
                    body: body.clone(),
                };
                Ok((
                    Request::from_parts(head, Body::from(body)),
                    Self::Resendable(Box::new(copy)),
                ))
            }
            _ => {
                let failure = Arc::new(Mutex::new(None));
                let kept = failure.clone();
                let body = http_body_util::BodyExt::map_err(body, move |error| {
                    *lock(&kept) = Some(error);
                    std::io::Error::other("the client's request body failed")
                });
                Ok((
                    Request::from_parts(head, Body::new(body)),
                    Self::Streamed(failure),
                ))
            }
        }
    }

    fn copy(&self) -> Option<&Resend> {
        match self {
            Self::Resendable(copy) => Some(copy),
            Self::Streamed(_) => None,
        }
    }

    fn client_body_error(&self) -> Option<axum::Error> {
        match self {
            Self::Resendable(_) => None,
            Self::Streamed(failure) => lock(failure).take(),
        }
    }
}

impl Resend {
    fn request(&self) -> Request<Body> {
        let mut request = Request::new(Body::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Whether `error` says the upstream refused the stream without processing it: a graceful
/// `GOAWAY` that left it out, or `REFUSED_STREAM`.
fn refused_unprocessed(error: &hyper::Error) -> bool {
    crate::causes(error)
        .find_map(|e| e.downcast_ref::<h2::Error>())
        .is_some_and(|h2| {
            h2.is_remote()
                && match h2.reason() {
                    Some(h2::Reason::NO_ERROR) => h2.is_go_away(),
                    Some(h2::Reason::REFUSED_STREAM) => h2.is_reset(),
                    _ => false,
                }
        })
}

/// One of a connection's open streams, counted until the response body is dropped.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn on(connection: &Http2Connection) -> Self {
        connection.open_streams.fetch_add(1, Ordering::AcqRel);
        Self(connection.open_streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An HTTP/2 response body that keeps its stream counted while the client reads it.
struct StreamBody {
    body: Incoming,
    _stream: OpenStream,
}

impl hyper::body::Body for StreamBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_path_and_query_on_the_upstream_whatever_host_they_name() {
        let address =
            UpstreamAddress::of(&Url::parse("http://127.0.0.1:9000").expect("url")).expect("ok");
        assert_eq!(address.host, "127.0.0.1:9000");
        let upstream = Upstream::new(address, None);
        let forwarded = |uri: &str| {
            upstream
                .uri(uri.parse().expect("uri"))
                .expect("forwardable")
                .to_string()
        };
        assert_eq!(
            forwarded("/mcp?session=1"),
            "http://127.0.0.1:9000/mcp?session=1"
        );
        // Absolute form: the request named another host; it still goes to the upstream.
        assert_eq!(
            forwarded("http://elsewhere.example/admin?x=1"),
            "http://127.0.0.1:9000/admin?x=1"
        );
        // Authority form (CONNECT) names no path.
        assert_eq!(forwarded("elsewhere.example:443"), "http://127.0.0.1:9000/");
    }
}
