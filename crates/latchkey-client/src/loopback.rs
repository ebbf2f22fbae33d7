//! The CLI's loopback server on 127.0.0.1 (Memori/Modal contract): it answers 503 until the
//! token flow exists, then the flow id, so the approval page can show that the request came
//! from this machine.
//!
//! Only the issuer's origin gets CORS access, and a `Host` other than `127.0.0.1:<port>` or
//! `localhost:<port>` is refused, so other sites cannot read it, even through DNS rebinding.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::oneshot};

use crate::ClientError;

#[derive(Debug)]
struct Shared {
    port: u16,
    issuer_origin: String,
    flow_id: RwLock<Option<String>>,
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
        });
        let app = Router::new()
            .route("/", get(flow_id).options(preflight))
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
        HeaderValue::from_static("GET"),
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
