//! `latchkey gate`: a reverse proxy with the [`GateLayer`] in front. Bodies stream both ways
//! (hyper's own body types end to end, never collected, but over HTTP/2 a small request body
//! is read whole so that it can be resent), so SSE, chunked responses and MCP Streamable HTTP
//! pass event by event; `Upgrade` requests (WebSocket) are joined to the
//! upstream's upgraded connection byte for byte. Upstream connections are pooled
//! ([`crate::upstream`]), over HTTP/1.1 or HTTP/2.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::rt::TokioIo;
use latchkey_proto::origin::web_origin;
use thiserror::Error;
use tower_http::cors::{AllowOrigin, CorsLayer};
use url::Url;

pub use crate::upstream::HTTP2_STREAMS_PER_CONNECTION;
use crate::{
    GateLayer, Verifier, VerifierConfig, causes,
    layer::IDENTITY_HEADER_PREFIX,
    upstream::{Upstream, UpstreamAddress},
};

/// Everything `latchkey gate` needs, checked.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Where requests go once admitted (`http://` only: the upstream sits beside the gate).
    pub upstream: Url,
    /// The URL clients reach the gate at: the resource in its RFC 9728 document.
    pub public_url: Option<Url>,
    pub verifier: VerifierConfig,
    pub public_paths: Vec<String>,
    pub require_scope: Option<String>,
    /// What callers' subscriptions must grant, and where one is bought.
    pub require_subscription: Option<crate::layer::SubscriptionRequirement>,
    /// Requests per second per credential and per client address (0: unlimited).
    pub rate_limit_per_credential: u32,
    pub rate_limit_per_ip: u32,
    pub forward_credentials: bool,
    /// Debugging only: everything passes, with a warning at start and every minute.
    pub insecure_no_auth: bool,
    /// A client must finish sending its request head within this (slowloris).
    pub header_read_timeout: Duration,
    /// How often API key usage is reported to the issuer.
    pub usage_flush: Duration,
    /// Where `/metrics` is served, apart from the proxied traffic.
    pub admin_listen: Option<SocketAddr>,
    /// Web origins whose pages may call through the gate (CORS); the gate answers their
    /// preflights itself. Empty: preflights go to the upstream like any request.
    pub cors_origins: Vec<String>,
    /// Threads that serve the traffic, as nginx's worker processes do: each runs a
    /// single-threaded runtime with a listening socket of its own on `listen`
    /// (`SO_REUSEPORT`), its own connections to the upstream, and shares the policy. No task
    /// ever crosses to another core. At least one.
    pub workers: usize,
    /// Forward over HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1, this many streams a
    /// connection (at most the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS`; usually
    /// [`HTTP2_STREAMS_PER_CONNECTION`]): streams share connections, so an idle SSE stream
    /// holds no upstream connection of its own. The upstream must speak h2c; `Upgrade`
    /// requests still go over HTTP/1.1.
    pub upstream_http2: Option<usize>,
}

impl ProxyConfig {
    /// A gate in front of `upstream` with the defaults `latchkey gate` documents: 50 requests/s
    /// per credential and 100 per address, 10 s to send a request head, usage reported every
    /// 10 s, no public paths, no scope or tier required, a worker thread for each core, HTTP/1.1
    /// to the upstream.
    pub fn new(listen: SocketAddr, upstream: Url, verifier: VerifierConfig) -> Self {
        Self {
            listen,
            upstream,
            public_url: None,
            verifier,
            public_paths: Vec::new(),
            require_scope: None,
            require_subscription: None,
            rate_limit_per_credential: 50,
            rate_limit_per_ip: 100,
            forward_credentials: false,
            insecure_no_auth: false,
            header_read_timeout: Duration::from_secs(10),
            usage_flush: Duration::from_secs(10),
            admin_listen: None,
            cors_origins: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            upstream_http2: None,
        }
    }
}

/// HTTP/2 streams a connection out of `1..=10000`, or given without HTTP/2.
#[derive(Debug, Error)]
#[error("the HTTP/2 streams a connection must be between 1 and 10000, and go with HTTP/2")]
pub struct InvalidHttp2Streams;

/// [`ProxyConfig::upstream_http2`] from its two settings, as `latchkey gate` and `latchkey
/// serve` take them: whether to speak HTTP/2, and the streams a connection if given.
pub fn upstream_http2(
    enabled: bool,
    streams: Option<usize>,
) -> Result<Option<usize>, InvalidHttp2Streams> {
    match (enabled, streams) {
        (false, None) => Ok(None),
        (true, None) => Ok(Some(HTTP2_STREAMS_PER_CONNECTION)),
        (true, Some(streams @ 1..=10_000)) => Ok(Some(streams)),
        (_, Some(_)) => Err(InvalidHttp2Streams),
    }
}

#[derive(Debug, Error)]
pub enum GateError {
    #[error("could not listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("the upstream must be an http:// URL with no path, query or fragment: {0}")]
    Upstream(String),
    #[error(
        "the CORS origin {0:?} is not an origin: name each site as scheme://host[:port] \
         (a wildcard would let any site read what callers' credentials fetch)"
    )]
    CorsOrigin(String),
    #[error("could not build the HTTP client for the issuer")]
    Http(#[source] reqwest::Error),
    #[error("could not start the gate's worker threads")]
    Workers(#[source] std::io::Error),
    #[error("the gate stopped with an error")]
    Serve(#[source] std::io::Error),
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let kept =
        |name: &HeaderName| keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION);
    // Most requests carry none, and most answers only `Connection: keep-alive`: one look at
    // the names they have, then only those present are removed.
    let mut hop_by_hop: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) && !kept(name))
        .cloned()
        .collect();
    // A `Connection` header is among them unless kept for an upgrade, which always has one.
    if hop_by_hop.is_empty() && !keep_upgrade {
        return;
    }
    let named_by_connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Connection options, not header names (RFC 9112 §9.3, §9.6).
        .filter(|token| !token.eq_ignore_ascii_case("keep-alive"))
        .filter(|token| !token.eq_ignore_ascii_case("close"))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        // `Connection` names only what the client itself sent. By now every `X-Latchkey-*`
        // header is the gate's own (the layer dropped the client's copies before setting
        // them), so a client naming them must not get them removed on the way upstream.
        .filter(|name| !name.as_str().starts_with(IDENTITY_HEADER_PREFIX));
    hop_by_hop.extend(named_by_connection);
    for name in hop_by_hop {
        headers.remove(name);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The client's request body failed (a malformed chunk, a connection cut mid-body): the
/// client's fault, not the upstream's.
#[derive(Debug, Error)]
#[error("the request body could not be read")]
struct ClientBodyError(#[source] axum::Error);

/// Whether `error` (from forwarding a request) was caused by the client's own body.
fn caused_by_client_body(error: &(dyn std::error::Error + 'static)) -> bool {
    causes(error).any(|e| e.is::<ClientBodyError>())
}

/// `error` and its causes, for the log: the outermost alone rarely says what went wrong.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    causes(error)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The gate's own answer instead of the upstream's: `{error, message}`.
fn gate_error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": error, "message": message })),
    )
        .into_response()
}

fn bad_gateway(message: &str) -> Response {
    gate_error(StatusCode::BAD_GATEWAY, "bad_gateway", message)
}

async fn forward(State(upstream): State<Arc<Upstream>>, mut request: Request<Body>) -> Response {
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let Ok(uri) = upstream.uri(std::mem::take(&mut parts.uri)) else {
        return bad_gateway("the request path cannot be forwarded");
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let body = Body::new(http_body_util::BodyExt::map_err(body, ClientBodyError));
    let mut response = match upstream
        .send(Request::from_parts(parts, body), upgrade)
        .await
    {
        Ok(response) => response,
        Err(e) if caused_by_client_body(&e) => {
            return gate_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body is malformed or was cut off.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %with_causes(&e), "the upstream request failed");
            return bad_gateway("the upstream did not answer");
        }
    };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(server)) = (client_upgrade.await, upstream_upgrade.await) {
                let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    strip_hop_by_hop(response.headers_mut(), false);
    response
}

/// RFC 9728: which authorization server protects this resource.
async fn protected_resource(State(document): State<Arc<serde_json::Value>>) -> Response {
    axum::Json(document.as_ref().clone()).into_response()
}

/// The gate, checked and built once: the verifier and the layer (none with
/// `--insecure-no-auth`), shared by every runtime that serves it.
pub struct Gateway {
    pub verifier: Option<Arc<Verifier>>,
    /// The layer in front of the upstream, for its counters and housekeeping.
    pub layer: Option<GateLayer>,
    upstream: UpstreamAddress,
    upstream_http2: Option<usize>,
    document: Arc<serde_json::Value>,
    cors: Option<CorsLayer>,
}

impl Gateway {
    pub fn new(config: &ProxyConfig, public_url: &Url) -> Result<Self, GateError> {
        let url = &config.upstream;
        let shaped = url.scheme() == "http"
            && url.host().is_some()
            && matches!(url.path(), "" | "/")
            && url.query().is_none()
            && url.fragment().is_none();
        if !shaped {
            return Err(GateError::Upstream(url.to_string()));
        }
        let upstream =
            UpstreamAddress::of(url).ok_or_else(|| GateError::Upstream(url.to_string()))?;
        let resource = public_url.as_str().trim_end_matches('/').to_owned();
        let metadata_url = format!("{resource}/.well-known/oauth-protected-resource");
        let document = Arc::new(serde_json::json!({
            "resource": resource,
            "authorization_servers": [config.verifier.issuer.as_str().trim_end_matches('/')],
            "bearer_methods_supported": ["header"],
        }));
        let (verifier, layer) = if config.insecure_no_auth {
            (None, None)
        } else {
            // The resource this gate advertises is always an audience it accepts, however it
            // was started (a public URL given or not, standalone or inside the server).
            let mut verifier_config = config.verifier.clone();
            verifier_config.audiences.push(resource);
            let verifier = Arc::new(Verifier::new(verifier_config).map_err(GateError::Http)?);
            let mut layer = GateLayer::new(verifier.clone(), metadata_url)
                .forward_credentials(config.forward_credentials)
                .rate_limits(config.rate_limit_per_credential, config.rate_limit_per_ip);
            if let Some(required) = &config.require_subscription {
                layer = layer.require_subscription(required.clone());
            }
            for path in &config.public_paths {
                layer = layer.public_path(path);
            }
            if let Some(scope) = &config.require_scope {
                layer = layer.require_scope(scope);
            }
            (Some(verifier), Some(layer))
        };
        Ok(Self {
            verifier,
            layer,
            upstream,
            upstream_http2: config.upstream_http2,
            document,
            cors: cors(&config.cors_origins)?,
        })
    }

    /// The routes: the metadata document, then everything else forwarded through the layer,
    /// over pooled connections of this router's own. Build one for each runtime that serves,
    /// so that a runtime's requests only ever use connections its own tasks drive.
    pub fn router(&self) -> Router {
        let forwarded = Router::new()
            .fallback(forward)
            .with_state(Arc::new(Upstream::new(
                self.upstream.clone(),
                self.upstream_http2,
            )));
        let forwarded = match &self.layer {
            Some(layer) => forwarded.layer(layer.clone()),
            None => forwarded,
        };
        let router = Router::new()
            .route(
                "/.well-known/oauth-protected-resource",
                get(protected_resource).with_state(self.document.clone()),
            )
            .merge(forwarded);
        // Outside the gate layer, so that its refusals (and their WWW-Authenticate) reach the
        // page.
        match &self.cors {
            Some(cors) => router.layer(cors.clone()),
            None => router,
        }
    }
}

/// The CORS policy for pages of `origins` calling through the gate: the methods an API or MCP
/// server answers, the credential and MCP headers, and the answers' `WWW-Authenticate` (so a
/// browser client can find the issuer) and `Mcp-Session-Id` readable. No cookies: credentials
/// are bearer headers the page sets itself.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, GateError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allowed = origins
        .iter()
        .map(|raw| {
            web_origin(raw)
                .and_then(|origin| HeaderValue::from_str(&origin).ok())
                .ok_or_else(|| GateError::CorsOrigin(raw.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mcp_session = HeaderName::from_static("mcp-session-id");
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("x-api-key"),
                mcp_session.clone(),
                HeaderName::from_static("mcp-protocol-version"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::WWW_AUTHENTICATE, mcp_session, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}

/// `/metrics` on its own listener, so it is never exposed with the proxied API.
async fn serve_admin(addr: SocketAddr, stats: Arc<crate::GateStats>) -> Result<(), GateError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| GateError::Bind(addr, e))?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let stats = stats.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    stats.render(),
                )
            }
        }),
    );
    println!(
        "latchkey gate serves /metrics on http://{}",
        listener
            .local_addr()
            .map_err(|e| GateError::Bind(addr, e))?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

/// Reports usage every `every`, follows the issuer's revocations every second, and once a
/// minute forgets idle rate-limit state, until the gate stops.
fn spawn_housekeeping(
    verifier: Arc<Verifier>,
    layer: GateLayer,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reports = tokio::time::interval(every);
        let mut forget = tokio::time::interval(Duration::from_secs(60));
        // Revoked tokens are refused within a poll of the issuer's feed, a second.
        let mut revocations = tokio::time::interval(Duration::from_secs(1));
        revocations.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let follow = verifier.follows_revocation_feed();
        let mut since = None;
        loop {
            tokio::select! {
                _ = reports.tick() => {
                    if let Err(e) = verifier.report_usage().await {
                        tracing::warn!(error = %e, "reporting API key usage failed; will retry");
                    }
                }
                _ = forget.tick() => layer.forget_idle(),
                _ = revocations.tick(), if follow => {
                    match verifier.follow_revocations(since).await {
                        Ok(next) => since = Some(next),
                        Err(e) => tracing::warn!(error = %e, "following the issuer's revocations failed; will retry"),
                    }
                }
            }
        }
    })
}

fn warn_no_auth() {
    tracing::warn!("--insecure-no-auth: the gate lets EVERY request through unauthenticated");
    eprintln!(
        "WARNING: --insecure-no-auth: the gate lets every request through unauthenticated. Never use it in production."
    );
}

/// `count` listening sockets on `addr`, sharing one port when there are several (the first
/// binds it, port 0 included).
fn listening_sockets(
    mut addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..count.max(1))
        .map(|_| {
            let listener = latchkey_listener::listen(addr, count > 1)?;
            addr = listener.local_addr()?;
            Ok(listener)
        })
        .collect()
}

/// The threads serving the gate, one per listening socket.
struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Workers {
    /// Starts serving `gateway` on `listeners`, one worker thread each.
    fn start(
        listeners: Vec<std::net::TcpListener>,
        gateway: &Gateway,
        header_read_timeout: Duration,
    ) -> Result<Self, GateError> {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut threads = Vec::with_capacity(listeners.len());
        for (number, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(GateError::Workers)?;
            let listener = {
                // Registered with the worker's own I/O driver.
                let _worker = runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(GateError::Workers)?
            };
            let router = gateway.router();
            let mut stopping = stopping.clone();
            let thread = std::thread::Builder::new()
                .name(format!("gate-worker-{number}"))
                .spawn(move || {
                    runtime.block_on(latchkey_listener::serve(
                        listener,
                        router,
                        header_read_timeout,
                        async move {
                            let _ = stopping.wait_for(|stop| *stop).await;
                        },
                    ));
                })
                .map_err(GateError::Workers)?;
            threads.push(thread);
        }
        Ok(Self { threads, stop })
    }

    /// Serves until `shutdown`, then waits for every worker to drain its requests and
    /// streams.
    async fn serve_until(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        let _ = self.stop.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Binds, prints where it listens, and proxies until `shutdown` resolves (the CLI passes
/// SIGINT/SIGTERM); in-flight requests and streams are drained before it returns (upgraded
/// connections excepted: they are cut).
pub async fn run(
    config: ProxyConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), GateError> {
    let listeners = listening_sockets(config.listen, config.workers)
        .map_err(|e| GateError::Bind(config.listen, e))?;
    let bound = listeners[0]
        .local_addr()
        .map_err(|e| GateError::Bind(config.listen, e))?;
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{bound}"))
            .map_err(|_| GateError::Upstream(bound.to_string()))?,
    };
    let gateway = Gateway::new(&config, &public_url)?;
    if let (Some(addr), Some(layer)) = (config.admin_listen, &gateway.layer) {
        serve_admin(addr, layer.stats()).await?;
    }
    let reports = gateway
        .verifier
        .clone()
        .zip(gateway.layer.clone())
        .map(|(verifier, layer)| spawn_housekeeping(verifier, layer, config.usage_flush));
    if config.insecure_no_auth {
        warn_no_auth();
        tokio::spawn(async {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            every_minute.tick().await;
            loop {
                every_minute.tick().await;
                warn_no_auth();
            }
        });
    }
    let workers = Workers::start(listeners, &gateway, config.header_read_timeout)?;
    println!(
        "latchkey gate is listening on {} and forwards to {}",
        public_url.as_str().trim_end_matches('/'),
        config.upstream.as_str().trim_end_matches('/')
    );
    workers.serve_until(shutdown).await;
    if let Some(reports) = reports {
        reports.abort();
    }
    if let Some(verifier) = gateway.verifier
        && let Err(e) = verifier.report_usage().await
    {
        tracing::warn!(error = %e, "the last usage report failed: those counts are lost");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_streams_go_with_http2_and_stay_in_range() {
        assert_eq!(upstream_http2(false, None).ok(), Some(None));
        assert_eq!(
            upstream_http2(true, None).ok(),
            Some(Some(HTTP2_STREAMS_PER_CONNECTION))
        );
        assert_eq!(upstream_http2(true, Some(50)).ok(), Some(Some(50)));
        for (enabled, streams) in [(true, 0), (true, 10_001), (false, 50)] {
            assert!(upstream_http2(enabled, Some(streams)).is_err());
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_on_their_hop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));

        let mut upgrade = HeaderMap::new();
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&upgrade));
        strip_hop_by_hop(&mut upgrade, true);
        assert!(upgrade.contains_key(header::UPGRADE) && upgrade.contains_key(header::CONNECTION));

        // An upgrade keeps its own two, not the others its Connection names.
        let mut upgrade = HeaderMap::new();
        upgrade.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-private"),
        );
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        upgrade.insert("x-private", HeaderValue::from_static("1"));
        upgrade.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut upgrade, true);
        assert_eq!(upgrade.len(), 2);
        assert!(upgrade.contains_key(header::UPGRADE) && upgrade.contains_key(header::CONNECTION));

        // A client naming the gate's identity headers in Connection keeps them.
        let mut named = HeaderMap::new();
        named.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Latchkey-User, x-latchkey-scopes"),
        );
        named.insert("x-latchkey-user", HeaderValue::from_static("usr_1"));
        named.insert("x-latchkey-scopes", HeaderValue::from_static("read"));
        strip_hop_by_hop(&mut named, false);
        assert_eq!(named.len(), 2);
        assert!(!named.contains_key(header::CONNECTION));

        // An upstream's usual answer: `keep-alive` in Connection is an option, yet the
        // Keep-Alive header it goes with still stays on its hop.
        let mut answer = HeaderMap::new();
        answer.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        answer.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        answer.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut answer, false);
        assert_eq!(answer.keys().collect::<Vec<_>>(), [header::CONTENT_LENGTH]);

        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        plain.insert(header::HOST, HeaderValue::from_static("example.com"));
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 2);
    }
}
