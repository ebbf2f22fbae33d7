//! The CLI's loopback server on 127.0.0.1. `/` (Memori/Modal contract) answers 503 until the
//! token flow exists, then the flow id, so the approval page can show that the request came
//! from this machine. `/callback` (RFC 8252 and the mgrep contract) receives either an OAuth
//! authorization `code` or a key handed over directly, by GET query or POST JSON / form, and
//! only with the `state` this login chose.
//!
//! Only the issuer's origin gets CORS access, and a `Host` other than `127.0.0.1:<port>` or
//! `localhost:<port>` is refused, so other sites cannot read it, even through DNS rebinding.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use axum::{
    Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use tokio::{
    net::TcpListener,
    sync::{Mutex, oneshot},
};

use crate::ClientError;

/// What arrived at `/callback` with the right `state`.
#[derive(Clone, PartialEq, Eq)]
pub enum CallbackResult {
    /// An OAuth authorization code, to exchange with the PKCE verifier.
    Code(String),
    /// A key handed over directly (mgrep), with the store it is for.
    ApiKey {
        api_key: String,
        store: Option<String>,
    },
    /// The authorization server sent an error (`access_denied`, …).
    Error {
        error: String,
        description: Option<String>,
    },
}

impl std::fmt::Debug for CallbackResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(_) => f.write_str("Code([redacted])"),
            Self::ApiKey { store, .. } => write!(f, "ApiKey([redacted], store: {store:?})"),
            Self::Error { error, .. } => write!(f, "Error({error})"),
        }
    }
}

/// The callback's fields under every name the contracts use.
#[derive(Debug, Default, Deserialize)]
struct CallbackFields {
    code: Option<String>,
    #[serde(
        alias = "apiKey",
        alias = "api_key",
        alias = "token",
        alias = "access_token"
    )]
    key: Option<String>,
    #[serde(alias = "store_id", alias = "storeName")]
    store: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where a completed callback goes: taken by the first request with the right state.
struct CallbackSlot {
    state: String,
    sender: Mutex<Option<oneshot::Sender<CallbackResult>>>,
}

impl std::fmt::Debug for CallbackSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSlot")
    }
}

#[derive(Debug)]
struct Shared {
    port: u16,
    issuer_origin: String,
    flow_id: RwLock<Option<String>>,
    callback: RwLock<Option<Arc<CallbackSlot>>>,
}

/// A running loopback server; dropping it stops the server.
#[derive(Debug)]
pub struct LoopbackServer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl LoopbackServer {
    /// Binds 127.0.0.1:`preferred_port`, or a free port when that one is busy.
    pub async fn start(preferred_port: u16, issuer_origin: String) -> Result<Self, ClientError> {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, preferred_port)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(ClientError::Loopback)?,
        };
        let port = listener.local_addr().map_err(ClientError::Loopback)?.port();
        let shared = Arc::new(Shared {
            port,
            issuer_origin,
            flow_id: RwLock::new(None),
            callback: RwLock::new(None),
        });
        let app = Router::new()
            .route("/", get(flow_id).options(preflight))
            .route(
                "/callback",
                get(callback_query).post(callback_body).options(preflight),
            )
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self {
            shared,
            stop: Some(stop),
        })
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    pub fn set_flow_id(&self, id: &str) {
        if let Ok(mut slot) = self.shared.flow_id.write() {
            *slot = Some(id.to_owned());
        }
    }

    /// `http://127.0.0.1:<port>/callback`.
    pub fn callback_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.shared.port)
    }

    /// Accepts callbacks carrying `state` from now on; the receiver gets the first one.
    pub fn expect_callback(&self, state: &str) -> oneshot::Receiver<CallbackResult> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut slot) = self.shared.callback.write() {
            *slot = Some(Arc::new(CallbackSlot {
                state: state.to_owned(),
                sender: Mutex::new(Some(sender)),
            }));
        }
        receiver
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Refuses requests whose `Host` is not this server by its loopback name (DNS rebinding) or
/// whose `Origin` is another site's.
fn check_request(shared: &Shared, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let port = shared.port;
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        return Err((StatusCode::MISDIRECTED_REQUEST, "unexpected Host header\n"));
    }
    match headers.get(header::ORIGIN) {
        Some(origin) if origin.as_bytes() != shared.issuer_origin.as_bytes() => Err((
            StatusCode::FORBIDDEN,
            "this origin may not read the login receiver\n",
        )),
        _ => Ok(()),
    }
}

fn with_cors(shared: &Shared, mut response: Response, headers: &HeaderMap) -> Response {
    let origin = HeaderValue::from_str(&shared.issuer_origin);
    if let (true, Ok(origin)) = (headers.contains_key(header::ORIGIN), origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn flow_id(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = check_request(&shared, &headers) {
        return refused.into_response();
    }
    let id = shared.flow_id.read().ok().and_then(|slot| slot.clone());
    let response = match id {
        Some(id) => (StatusCode::OK, id).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "pending\n").into_response(),
    };
    with_cors(&shared, response, &headers)
}

async fn preflight(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    debug_assert_eq!(method, Method::OPTIONS);
    if let Err(refused) = check_request(&shared, &headers) {
        return refused.into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    // The hand-off page posts JSON, which needs Content-Type allowed.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("60"),
    );
    // Chromium's Private Network Access asks before a public page may reach loopback.
    h.insert(
        "access-control-allow-private-network",
        HeaderValue::from_static("true"),
    );
    with_cors(&shared, response, &headers)
}

const DONE_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Logged in</title>\
<body style=\"font:16px system-ui;max-width:30rem;margin:3rem auto\">\
<h1>You are logged in</h1><p>Return to your terminal. You can close this tab.</p>";

/// Reads the fields of a POST body: JSON, or a form.
fn body_fields(headers: &HeaderMap, body: &[u8]) -> Option<CallbackFields> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).ok()
    } else {
        serde_urlencoded::from_bytes(body).ok()
    }
}

/// Checks `state` (and `iss`, RFC 9207) and hands the result to the waiting login.
async fn complete(shared: &Shared, fields: CallbackFields) -> Result<(), (StatusCode, String)> {
    let slot = shared.callback.read().ok().and_then(|s| s.clone()).ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready yet\n".to_owned(),
    ))?;
    if fields.state.as_deref() != Some(slot.state.as_str()) {
        return Err((
            StatusCode::BAD_REQUEST,
            "state does not match this login; start again from your terminal\n".to_owned(),
        ));
    }
    if fields
        .iss
        .as_deref()
        .is_some_and(|iss| iss != shared.issuer_origin)
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "this response comes from another issuer\n".to_owned(),
        ));
    }
    let result = match (fields.error, fields.code, fields.key) {
        (Some(error), _, _) => CallbackResult::Error {
            error,
            description: fields.error_description,
        },
        (None, Some(code), _) if !code.is_empty() => CallbackResult::Code(code),
        (None, _, Some(key)) if !key.trim().is_empty() => CallbackResult::ApiKey {
            api_key: key.trim().to_owned(),
            store: fields.store.filter(|s| !s.is_empty()),
        },
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                "the callback carries neither a code nor an API key\n".to_owned(),
            ));
        }
    };
    let sender = slot.sender.lock().await.take().ok_or((
        StatusCode::CONFLICT,
        "this login already received its credential\n".to_owned(),
    ))?;
    sender.send(result).map_err(|_| {
        (
            StatusCode::GONE,
            "the login is no longer waiting\n".to_owned(),
        )
    })
}

async fn callback_query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refused) = check_request(&shared, &headers) {
        return refused.into_response();
    }
    let fields = serde_urlencoded::from_str(&query.unwrap_or_default()).unwrap_or_default();
    let response = match complete(&shared, fields).await {
        Ok(()) => Html(DONE_PAGE).into_response(),
        Err(refused) => refused.into_response(),
    };
    with_cors(&shared, response, &headers)
}

async fn callback_body(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = check_request(&shared, &headers) {
        return refused.into_response();
    }
    let response = match body_fields(&headers, &body) {
        None => (StatusCode::BAD_REQUEST, "the body is not JSON or a form\n").into_response(),
        Some(fields) => match complete(&shared, fields).await {
            Ok(()) => axum::Json(serde_json::json!({ "ok": true })).into_response(),
            Err(refused) => refused.into_response(),
        },
    };
    with_cors(&shared, response, &headers)
}
