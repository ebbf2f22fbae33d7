//! The gate as a tower [`Layer`]: an axum service adds `.layer(GateLayer::new(verifier, …))`
//! and every request is authenticated before it reaches a handler. Identity headers sent by the
//! client are always removed; a verified request carries `X-Latchkey-User`, `X-Latchkey-Org`
//! and `X-Latchkey-Scopes` instead.

use latchkey_listener::ClientAddr;
use std::{
    future::Future,
    net::IpAddr,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower::{Layer, Service};

use crate::verifier::{Principal, Verifier, VerifyError};

/// Every header with this prefix comes from the gate, never from the client.
pub const IDENTITY_HEADER_PREFIX: &str = "x-latchkey-";
pub const USER_HEADER: &str = "x-latchkey-user";
pub const ORG_HEADER: &str = "x-latchkey-org";
pub const SCOPES_HEADER: &str = "x-latchkey-scopes";
const API_KEY_HEADER: &str = "x-api-key";

/// Token buckets per credential and per client address: `per_second` sustained, twice that in
/// a burst.
#[derive(Debug)]
struct RateLimits {
    per_credential: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn bucket<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

/// Counters the gate exposes on its admin listener's `/metrics`.
#[derive(Debug, Default)]
pub struct GateStats {
    pub admitted: AtomicU64,
    pub passed_unauthenticated: AtomicU64,
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
    pub rate_limited: AtomicU64,
    pub issuer_unavailable: AtomicU64,
}

impl GateStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let outcomes = [
            ("admitted", &self.admitted),
            ("public", &self.passed_unauthenticated),
            ("unauthorized", &self.unauthorized),
            ("forbidden", &self.forbidden),
            ("rate_limited", &self.rate_limited),
            ("issuer_unavailable", &self.issuer_unavailable),
        ];
        let mut text = String::from(
            "# HELP latchkey_gate_requests_total Requests by what the gate decided.\n\
             # TYPE latchkey_gate_requests_total counter\n",
        );
        for (outcome, counter) in outcomes {
            text.push_str(&format!(
                "latchkey_gate_requests_total{{outcome=\"{outcome}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        text
    }
}

/// What a caller's subscription must grant to pass: an entitlement, a tier, or both; and
/// where to buy it (`{org_id}` in it becomes the caller's org, as a Stripe payment link's
/// `client_reference_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequirement {
    pub entitlement: Option<String>,
    pub tier: Option<String>,
    pub subscribe_url: String,
}

impl SubscriptionRequirement {
    fn admits(&self, principal: &Principal) -> bool {
        self.entitlement
            .as_ref()
            .is_none_or(|e| principal.entitlements.contains(e))
            && self
                .tier
                .as_ref()
                .is_none_or(|t| principal.subscription_tier == *t)
    }
}

/// What the gate lets through, and what it tells clients it refuses.
#[derive(Debug)]
struct Policy {
    stats: Arc<GateStats>,
    verifier: Arc<Verifier>,
    /// RFC 9728 metadata URL, named in every `WWW-Authenticate`.
    resource_metadata: String,
    public_paths: Vec<String>,
    required_scope: Option<String>,
    /// What the caller's subscription must grant, and where to get it.
    required_subscription: Option<SubscriptionRequirement>,
    forward_credentials: bool,
    limits: RateLimits,
}

#[derive(Debug, Clone)]
pub struct GateLayer {
    policy: Arc<Policy>,
}

impl GateLayer {
    /// `resource_metadata` is the URL of this resource's `/.well-known/oauth-protected-resource`.
    pub fn new(verifier: Arc<Verifier>, resource_metadata: impl Into<String>) -> Self {
        Self {
            policy: Arc::new(Policy {
                stats: Arc::default(),
                verifier,
                resource_metadata: resource_metadata.into(),
                public_paths: Vec::new(),
                required_scope: None,
                required_subscription: None,
                forward_credentials: false,
                limits: RateLimits {
                    per_credential: None,
                    per_ip: None,
                },
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Policy)) -> Self {
        if let Some(policy) = Arc::get_mut(&mut self.policy) {
            change(policy);
        }
        self
    }

    /// Drops rate-limit state of credentials and addresses not seen lately, so the limiters'
    /// memory follows recent traffic, not every client ever seen. Call it now and then.
    pub fn forget_idle(&self) {
        let limits = &self.policy.limits;
        if let Some(limiter) = &limits.per_credential {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &limits.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The gate's counters, for a `/metrics` endpoint.
    pub fn stats(&self) -> Arc<GateStats> {
        self.policy.stats.clone()
    }

    /// Requests under `prefix` pass without a credential.
    pub fn public_path(self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        self.with(|p| p.public_paths.push(prefix))
    }

    /// Tokens must carry `scope` (API keys carry their account's full rights).
    pub fn require_scope(self, scope: &str) -> Self {
        let scope = scope.to_owned();
        self.with(|p| p.required_scope = Some(scope))
    }

    /// The caller's subscription must grant `required`; otherwise the answer is 403
    /// `subscription_required` with where to subscribe.
    pub fn require_subscription(self, required: SubscriptionRequirement) -> Self {
        self.with(|p| p.required_subscription = Some(required))
    }

    /// Requests per second per credential and per client address (0: no limit); bursts of
    /// twice that pass. Over the limit: 429 with `Retry-After`.
    pub fn rate_limits(self, per_credential: u32, per_ip: u32) -> Self {
        self.with(|p| {
            p.limits = RateLimits {
                per_credential: bucket(per_credential),
                per_ip: bucket(per_ip),
            };
        })
    }

    /// Pass the client's `Authorization` / `X-API-Key` upstream too (removed by default).
    pub fn forward_credentials(self, forward: bool) -> Self {
        self.with(|p| p.forward_credentials = forward)
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    policy: Arc<Policy>,
}

/// Whether `path` is under one of the public prefixes. Only plain paths can be: any
/// percent-escape (`%2F`, `%2e`, `%252e`, `%00`), `;` (path parameters, `..;`), backslash,
/// control character or dot segment means the upstream may read the path differently from
/// us, so `/public/..;/private` and `/public/%252e%252e/private` must authenticate.
pub fn is_public(path: &str, prefixes: &[String]) -> bool {
    let plain = !path
        .bytes()
        .any(|b| matches!(b, b'%' | b';' | b'\\') || b.is_ascii_control())
        && !path
            .split('/')
            .any(|segment| segment == ".." || segment == ".");
    plain
        && prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.is_empty())
        })
}

/// Removes every header in our `X-Latchkey-` namespace (only the gate may set them) and,
/// unless they are to be forwarded, the client's credentials.
fn strip_client_headers(headers: &mut HeaderMap, forward_credentials: bool) {
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(IDENTITY_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
    if !forward_credentials {
        headers.remove(header::AUTHORIZATION);
        headers.remove(API_KEY_HEADER);
    }
}

/// The credential a request presents: `Authorization: Bearer …`, else `X-API-Key`.
pub fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()))
        .filter(|c| !c.is_empty())
}

fn json_error(status: StatusCode, error: &str, message: &str, challenge: String) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "error": error, "message": message })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

impl Policy {
    fn refuse(&self, error: &VerifyError) -> Response {
        let metadata = &self.resource_metadata;
        match error {
            VerifyError::IssuerUnavailable(_) | VerifyError::AuthorityFailed(_) => {
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({
                        "error": "issuer_unavailable",
                        "message": error.to_string(),
                    })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
            VerifyError::Missing => json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &error.to_string(),
                format!("Bearer resource_metadata=\"{metadata}\""),
            ),
            _ => json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                &error.to_string(),
                format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\""),
            ),
        }
    }

    /// 403 `subscription_required`, with where `principal`'s org subscribes, and RFC 6750's
    /// `insufficient_scope` for clients that read only the header.
    fn subscription_required(
        &self,
        required: &SubscriptionRequirement,
        principal: &Principal,
    ) -> Response {
        let subscribe_url = required
            .subscribe_url
            .replace("{org_id}", &principal.org_id);
        let mut response = (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "subscription_required",
                "message": format!("Active subscription required — Subscribe at: {subscribe_url}"),
                "required_entitlement": required.entitlement,
                "required_tier": required.tier,
                "subscribe_url": subscribe_url,
            })),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Ok(link) = HeaderValue::from_str(&format!("<{subscribe_url}>; rel=\"payment\"")) {
            headers.insert(header::LINK, link);
        }
        if let Ok(challenge) = HeaderValue::from_str(&format!(
            "Bearer error=\"insufficient_scope\", error_description=\"an active subscription \
             is required\", resource_metadata=\"{}\"",
            self.resource_metadata
        )) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }

    /// The 429 to send when `key` has used up its bucket.
    fn throttle<K: std::hash::Hash + Eq + Clone>(
        limiter: Option<&DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Option<Response> {
        let not_until = limiter?.check_key(key).err()?;
        {
            let clock = governor::clock::DefaultClock::default();
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({
                    "error": "rate_limited",
                    "message": "too many requests; slow down and retry after the time in Retry-After",
                })),
            )
                .into_response();
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            Some(response)
        }
    }

    fn insufficient_scope(&self, scope: &str) -> Response {
        json_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &format!("this resource needs the scope {scope}; log in again asking for it"),
            format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{}\"",
                self.resource_metadata
            ),
        )
    }

    /// Authenticates `request` in place: identity headers set, credentials removed unless
    /// forwarded. `Err` is the response to send instead.
    async fn admit(&self, request: &mut Request) -> Result<(), Response> {
        if let Some(ClientAddr(ip)) = request.extensions().get::<ClientAddr>()
            && let Some(refused) = Self::throttle(self.limits.per_ip.as_ref(), ip)
        {
            return Err(refused);
        }
        if request.method() == Method::OPTIONS
            || is_public(request.uri().path(), &self.public_paths)
        {
            strip_client_headers(request.headers_mut(), self.forward_credentials);
            GateStats::bump(&self.stats.passed_unauthenticated);
            return Ok(());
        }
        let credential = presented_credential(request.headers())
            .ok_or(VerifyError::Missing)
            .map_err(|e| self.refuse(&e))?
            .to_owned();
        let principal = self
            .verifier
            .verify(&credential)
            .await
            .map_err(|e| self.refuse(&e))?;
        if let Some(refused) =
            Self::throttle(self.limits.per_credential.as_ref(), &principal.rate_key)
        {
            return Err(refused);
        }
        if let Some(scope) = &self.required_scope
            && !principal.has_scope(scope)
        {
            return Err(self.insufficient_scope(scope));
        }
        if let Some(required) = &self.required_subscription
            && !required.admits(&principal)
        {
            return Err(self.subscription_required(required, &principal));
        }
        self.verifier.record_use(&principal);
        GateStats::bump(&self.stats.admitted);
        let headers = request.headers_mut();
        strip_client_headers(headers, self.forward_credentials);
        identity_headers(headers, &principal);
        Ok(())
    }
}

fn identity_headers(headers: &mut HeaderMap, principal: &Principal) {
    let scopes = principal
        .scopes
        .as_ref()
        .map_or_else(|| "*".to_owned(), |s| s.join(" "));
    for (name, value) in [
        (USER_HEADER, principal.user_id.as_str()),
        (ORG_HEADER, principal.org_id.as_str()),
        (SCOPES_HEADER, scopes.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready is the one that serves (tower's usual hand-over).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            match policy.admit(&mut request).await {
                Ok(()) => inner.call(request).await,
                Err(refused) => {
                    let stats = &policy.stats;
                    GateStats::bump(match refused.status() {
                        StatusCode::UNAUTHORIZED => &stats.unauthorized,
                        StatusCode::FORBIDDEN => &stats.forbidden,
                        StatusCode::TOO_MANY_REQUESTS => &stats.rate_limited,
                        _ => &stats.issuer_unavailable,
                    });
                    Ok(refused)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_under_a_public_prefix_are_public() {
        let public = vec!["/public".to_owned(), "/healthz".to_owned()];
        for open in ["/public", "/public/", "/public/a/b.css", "/healthz"] {
            assert!(is_public(open, &public), "{open}");
        }
        for closed in [
            "/publicity",
            "/private",
            "/public/../private",
            "/public/./x",
            "/public%2F..%2Fprivate",
            "/public/%2e%2e/private",
            "/public\\..\\private",
            "/public/..;/private",
            "/public;/../private",
            "/public/%252e%252e/private",
            "/public/%00/../private",
            "/public/a\tb",
            "/",
        ] {
            assert!(!is_public(closed, &public), "{closed}");
        }
    }

    #[test]
    fn the_whole_identity_namespace_and_credentials_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-latchkey-user", "usr_forged"),
            ("x-latchkey-email", "boss@example.com"),
            ("X-Latchkey-Subscription", "pro"),
            ("authorization", "Bearer secret"),
            ("x-api-key", "lk_secret"),
            ("x-request-id", "kept"),
        ] {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static(value),
            );
        }
        let mut forwarded = headers.clone();
        strip_client_headers(&mut forwarded, true);
        assert!(forwarded.contains_key(header::AUTHORIZATION));
        assert!(forwarded.contains_key(API_KEY_HEADER));
        strip_client_headers(&mut headers, false);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-request-id"]);
    }

    #[test]
    fn bearer_wins_over_the_api_key_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_credential(&headers), None);
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("lk_key"));
        assert_eq!(presented_credential(&headers), Some("lk_key"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a.b.c"),
        );
        assert_eq!(presented_credential(&headers), Some("a.b.c"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert_eq!(presented_credential(&headers), Some("lk_key"));
    }
}
