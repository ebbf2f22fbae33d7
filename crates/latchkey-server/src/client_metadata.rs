//! Fetching Client ID Metadata Documents without becoming an SSRF proxy: the host must resolve
//! to public addresses only, and the connection is pinned to the address that was checked (no
//! second DNS answer can swap in an internal one); no redirects, no proxy, 5 s, 5 KiB.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use latchkey_core::oauth::client_metadata::{
    ClientMetadataError, ClientMetadataFetcher, MAX_DOCUMENT_BYTES, is_public_ip,
};
use url::Url;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Documents are re-fetched after this long (the spec lets servers cache them).
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_ENTRIES: usize = 1_000;

pub struct HttpClientMetadataFetcher {
    /// Admit loopback addresses (development and tests only).
    insecure_loopback: bool,
    cache: Mutex<HashMap<String, (Instant, Vec<u8>)>>,
}

impl HttpClientMetadataFetcher {
    pub fn new(insecure_loopback: bool) -> Self {
        Self {
            insecure_loopback,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, url: &Url) -> Option<Vec<u8>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(url.as_str())
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, body)| body.clone())
    }

    fn remember(&self, url: &Url, body: &[u8]) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(url.as_str().to_owned(), (Instant::now(), body.to_vec()));
        }
    }

    /// The one address to connect to, after checking every address the host resolves to.
    /// Every refusal reads the same to the client, whether the name does not resolve, times
    /// out or resolves to a private address: otherwise the answers would map the internal
    /// network's names for whoever asks. The log keeps the reason.
    async fn vetted_address(&self, url: &Url) -> Result<SocketAddr, ClientMetadataError> {
        let host = url
            .host_str()
            .ok_or_else(|| ClientMetadataError::Fetch("the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let refused = |reason: &str| {
            tracing::info!(%host, reason, "client metadata document not fetched");
            ClientMetadataError::Fetch(format!(
                "{host} does not resolve to a public address, and only public addresses are fetched"
            ))
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| refused("resolving timed out"))?
                .map_err(|e| refused(&format!("does not resolve: {e}")))?
                .collect();
        let allowed = |a: &SocketAddr| {
            is_public_ip(a.ip()) || (self.insecure_loopback && a.ip().is_loopback())
        };
        match addresses.first() {
            Some(first) if addresses.iter().all(allowed) => Ok(*first),
            Some(_) => Err(refused("resolves to a private or loopback address")),
            None => Err(refused("has no address")),
        }
    }
}

#[async_trait]
impl ClientMetadataFetcher for HttpClientMetadataFetcher {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, ClientMetadataError> {
        if let Some(body) = self.cached(url) {
            return Ok(body);
        }
        let address = self.vetted_address(url).await?;
        let failed = |e: reqwest::Error| ClientMetadataError::Fetch(e.without_url().to_string());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .resolve(url.host_str().unwrap_or_default(), address)
            .build()
            .map_err(failed)?;
        let mut response = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(ClientMetadataError::Fetch(format!(
                "it answered {} (redirects are not followed)",
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(ClientMetadataError::Fetch(format!(
                    "it is larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        self.remember(url, &body);
        Ok(body)
    }
}
