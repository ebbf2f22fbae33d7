//! The issuer's JSON API as the client calls it. Transient failures (timeouts, 502, 503, 504,
//! and a refused connection once the server has answered before, as during a restart) are
//! retried with capped exponential backoff and jitter; 4xx answers are not, and neither is a
//! first connection that nothing accepts: a wrong URL fails at once.

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use latchkey_proto::{
    ErrorBody, WaitSecret,
    oauth::{DeviceAuthorizationResponse, OAuthErrorBody, TokenResponse},
    wire::{
        ApiKeyCreateRequest, ApiKeyCreateResponse, ApiKeyListResponse, CredentialInfo,
        InvitationCreateRequest, InvitationInfo, MeResponse, MemberListResponse, OrgCreateRequest,
        OrgListResponse, OrgMembershipInfo, SessionsResponse, TokenFlowCreateRequest,
        TokenFlowCreateResponse, TokenFlowWaitRequest, TokenFlowWaitResponse,
    },
};
use rand::Rng;
use reqwest::{Response, StatusCode};
use url::Url;

use crate::{ClientError, Settings};

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: OnceLock<reqwest::Client>,
    user_agent: String,
    ca_bundle: Option<PathBuf>,
    base: Url,
    /// Whether the server has answered this process once: from then on a refused connection
    /// is a restart worth waiting out.
    reached: Arc<AtomicBool>,
}

/// How long to sleep before retry number `attempt` (0-based): 250 ms doubling to 8 s, with up to
/// 50% jitter so that many clients do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(8));
    let jitter = rand::thread_rng().gen_range(0.0..0.5);
    base.mul_f64(1.0 + jitter)
}

/// Runs `call` until it succeeds, fails for good, or `deadline` passes.
pub async fn retrying<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut call: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e)
                if e.is_transient()
                    && tokio::time::Instant::now() + backoff(attempt) < deadline =>
            {
                tracing::debug!(error = %e, attempt, "transient failure; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A response from any API behind latchkey (a tool's own, through the gate): passed on when
/// it succeeded, else the error it carries: `subscription_required` becomes
/// [`ClientError::SubscriptionRequired`] (exit 6 in the CLI, with where to subscribe), any
/// other `{error, message}` a [`ClientError::Server`].
pub async fn error_for_status(response: Response) -> Result<Response, ClientError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(server_error(response).await)
    }
}

async fn server_error(response: Response) -> ClientError {
    let status = response.status().as_u16();
    match response.json::<ErrorBody>().await {
        Ok(ErrorBody {
            error,
            subscribe_url: Some(subscribe_url),
            ..
        }) if error == "subscription_required" => {
            ClientError::SubscriptionRequired { subscribe_url }
        }
        Ok(body) => ClientError::Server {
            status,
            code: body.error,
            message: body.message,
        },
        Err(_) => ClientError::Server {
            status,
            code: "unexpected_response".into(),
            message: "the server's answer was not understood".into(),
        },
    }
}

/// The last cause in an error's chain, in words ("Connection refused (os error 111)", a
/// resolver's "failed to lookup address information: …"): what a person can act on.
fn innermost_cause(error: &reqwest::Error) -> String {
    let mut last: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Whether rustls refused the connection somewhere down the error's chain (io errors hide
/// their inner error from `source()`, so they are opened by hand).
fn is_tls_failure(error: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && inner.is::<rustls::Error>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An OAuth endpoint's failure: RFC 6749 error JSON, else the generic shape.
async fn oauth_error(response: Response) -> ClientError {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<OAuthErrorBody>(&bytes) {
        Ok(body) if status < 500 => ClientError::OAuth {
            code: body.error.as_str().to_owned(),
            description: body.error_description.unwrap_or_default(),
        },
        _ => ClientError::Server {
            status,
            code: "unexpected_response".into(),
            message: "the server's answer was not understood".into(),
        },
    }
}

impl ApiClient {
    pub fn new(settings: &Settings) -> Result<Self, ClientError> {
        Ok(Self {
            http: OnceLock::new(),
            user_agent: format!(
                "{}/{} ({})",
                settings.app.name,
                settings.app.version,
                std::env::consts::OS
            ),
            ca_bundle: settings.ca_bundle.clone(),
            base: settings.issuer.clone(),
            reached: Arc::default(),
        })
    }

    /// The HTTP client, built on first use: loading the system's root certificates costs
    /// milliseconds that `latchkey token` with a fresh token must not pay.
    fn http(&self) -> Result<&reqwest::Client, ClientError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        // HTTPS_PROXY / HTTP_PROXY / NO_PROXY are read by reqwest itself.
        let mut builder = reqwest::Client::builder()
            .user_agent(&self.user_agent)
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = &self.ca_bundle {
            let bad_bundle = |detail: String| {
                ClientError::Config(format!(
                    "SSL_CERT_FILE={} could not be used: {detail}",
                    path.display()
                ))
            };
            let pem = std::fs::read(path).map_err(|e| bad_bundle(e.to_string()))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad_bundle(e.to_string()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Internal(format!("building the HTTP client failed: {e}")))?;
        Ok(self.http.get_or_init(|| http))
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|e| ClientError::Internal(format!("bad API path {path}: {e}")))
    }

    /// A transport failure: a certificate the client does not trust is a setup problem that
    /// retrying cannot fix; anything else may pass.
    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        let url = self.base.origin().ascii_serialization();
        if is_tls_failure(&source) {
            ClientError::UntrustedCertificate { url, source }
        } else {
            ClientError::Unreachable { url, source }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        match request.send().await {
            Ok(response) => {
                self.reached.store(true, Ordering::Relaxed);
                Ok(response)
            }
            Err(e)
                if e.is_connect()
                    && !is_tls_failure(&e)
                    && !self.reached.load(Ordering::Relaxed) =>
            {
                Err(ClientError::Refused {
                    url: self.base.origin().ascii_serialization(),
                    reason: innermost_cause(&e),
                })
            }
            Err(e) => Err(self.unreachable(e)),
        }
    }

    pub async fn create_flow(
        &self,
        body: &TokenFlowCreateRequest,
    ) -> Result<TokenFlowCreateResponse, ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        retrying(deadline, || async {
            let response = self
                .send(
                    self.http()?
                        .post(self.url("/v1/token-flow/create")?)
                        .timeout(Duration::from_secs(20))
                        .json(body),
                )
                .await?;
            if !response.status().is_success() {
                return Err(server_error(response).await);
            }
            response.json().await.map_err(|e| self.unreachable(e))
        })
        .await
    }

    /// One wait call; the caller loops. Flow failures become their own errors.
    pub async fn wait_flow(
        &self,
        id: &str,
        secret: &WaitSecret,
        timeout: Duration,
    ) -> Result<TokenFlowWaitResponse, ClientError> {
        let body = TokenFlowWaitRequest {
            token_flow_id: id.to_owned(),
            wait_secret: secret.clone(),
            timeout: timeout.as_secs_f64(),
        };
        let response = self
            .send(
                self.http()?
                    .post(self.url("/v1/token-flow/wait")?)
                    .timeout(timeout + Duration::from_secs(15))
                    .json(&body),
            )
            .await?;
        match response.status() {
            s if s.is_success() => response.json().await.map_err(|e| self.unreachable(e)),
            StatusCode::NOT_FOUND => Err(ClientError::FlowLost),
            StatusCode::GONE => Err(ClientError::FlowExpired),
            StatusCode::FORBIDDEN => Err(ClientError::FlowDenied),
            _ => Err(server_error(response).await),
        }
    }

    pub async fn me(&self, bearer: &str) -> Result<MeResponse, ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        retrying(deadline, || async {
            let request = self.http()?.get(self.url("/v1/me")?);
            self.account_call(request, bearer).await
        })
        .await
    }

    /// `GET /v1/api-keys`: the account's live and expired keys.
    pub async fn list_api_keys(&self, bearer: &str) -> Result<ApiKeyListResponse, ClientError> {
        self.account_get(self.url("/v1/api-keys")?, bearer).await
    }

    /// A `GET` on the account API with `bearer`, retried on network failures.
    async fn account_get<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        bearer: &str,
    ) -> Result<T, ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        retrying(deadline, || async {
            let request = self.http()?.get(url.clone());
            self.account_call(request, bearer).await
        })
        .await
    }

    /// `POST /v1/api-keys`, sent once: a retry after a lost answer could mint a second key.
    pub async fn create_api_key(
        &self,
        bearer: &str,
        body: &ApiKeyCreateRequest,
    ) -> Result<ApiKeyCreateResponse, ClientError> {
        let request = self.http()?.post(self.url("/v1/api-keys")?).json(body);
        self.account_call(request, bearer).await
    }

    /// `DELETE /v1/api-keys/{id}` (idempotent in effect, so retried).
    pub async fn revoke_api_key(&self, bearer: &str, id: &str) -> Result<(), ClientError> {
        self.delete_one(bearer, "/v1/api-keys", id).await
    }

    /// `DELETE <collection>/{id}` on the account API, `id` escaped as a path segment.
    async fn delete_one(
        &self,
        bearer: &str,
        collection: &str,
        id: &str,
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut url = self.url(collection)?;
        url.path_segments_mut()
            .map_err(|()| ClientError::Internal("the issuer URL cannot have a path".into()))?
            .push(id);
        retrying(deadline, || async {
            let request = self.http()?.delete(url.clone());
            self.account_response(request, bearer).await.map(drop)
        })
        .await
    }

    pub async fn list_sessions(&self, bearer: &str) -> Result<SessionsResponse, ClientError> {
        self.account_get(self.url("/v1/sessions")?, bearer).await
    }

    /// `DELETE /v1/sessions/{id}`: signs a browser session out, or revokes a login.
    pub async fn end_session(&self, bearer: &str, id: &str) -> Result<(), ClientError> {
        self.delete_one(bearer, "/v1/sessions", id).await
    }

    /// `/v1/orgs/{org}/<more…>`, each part escaped as a path segment.
    fn org_url(&self, org: &str, more: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.url("/v1/orgs")?;
        url.path_segments_mut()
            .map_err(|()| ClientError::Internal("the issuer URL cannot have a path".into()))?
            .push(org)
            .extend(more);
        Ok(url)
    }

    /// `GET /v1/orgs`.
    pub async fn list_orgs(&self, bearer: &str) -> Result<OrgListResponse, ClientError> {
        self.account_get(self.url("/v1/orgs")?, bearer).await
    }

    /// `POST /v1/orgs`, sent once.
    pub async fn create_org(
        &self,
        bearer: &str,
        body: &OrgCreateRequest,
    ) -> Result<OrgMembershipInfo, ClientError> {
        let request = self.http()?.post(self.url("/v1/orgs")?).json(body);
        self.account_call(request, bearer).await
    }

    /// `GET /v1/orgs/{org}/members`.
    pub async fn org_members(
        &self,
        bearer: &str,
        org: &str,
    ) -> Result<MemberListResponse, ClientError> {
        self.account_get(self.org_url(org, &["members"])?, bearer)
            .await
    }

    /// `POST /v1/orgs/{org}/invitations`, sent once (a retry would mail a second link).
    pub async fn invite(
        &self,
        bearer: &str,
        org: &str,
        body: &InvitationCreateRequest,
    ) -> Result<InvitationInfo, ClientError> {
        let request = self
            .http()?
            .post(self.org_url(org, &["invitations"])?)
            .json(body);
        self.account_call(request, bearer).await
    }

    /// `DELETE /v1/orgs/{org}/members/{user_id}` (idempotent in effect, so retried).
    pub async fn remove_org_member(
        &self,
        bearer: &str,
        org: &str,
        user_id: &str,
    ) -> Result<(), ClientError> {
        let url = self.org_url(org, &["members", user_id])?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        retrying(deadline, || async {
            let request = self.http()?.delete(url.clone());
            self.account_response(request, bearer).await.map(drop)
        })
        .await
    }

    /// One call to the account API with `bearer`: its JSON answer, `KeyRejected` on 401.
    async fn account_call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        bearer: &str,
    ) -> Result<T, ClientError> {
        let response = self.account_response(request, bearer).await?;
        response.json().await.map_err(|e| self.unreachable(e))
    }

    /// The successful answer to an account API call with `bearer`; `KeyRejected` on 401.
    async fn account_response(
        &self,
        request: reqwest::RequestBuilder,
        bearer: &str,
    ) -> Result<Response, ClientError> {
        let response = self
            .send(request.timeout(Duration::from_secs(20)).bearer_auth(bearer))
            .await?;
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED => Err(ClientError::KeyRejected),
            _ => Err(server_error(response).await),
        }
    }

    /// One form POST to an OAuth endpoint, retried on network failures (never on 4xx).
    async fn oauth_post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        retrying(deadline, || async {
            let response = self
                .send(
                    self.http()?
                        .post(self.url(path)?)
                        .timeout(Duration::from_secs(20))
                        .form(form),
                )
                .await?;
            if !response.status().is_success() {
                return Err(oauth_error(response).await);
            }
            response.json().await.map_err(|e| self.unreachable(e))
        })
        .await
    }

    /// `POST /oauth/token` with any grant.
    pub async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse, ClientError> {
        self.oauth_post("/oauth/token", form).await
    }

    pub async fn device_authorization(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorizationResponse, ClientError> {
        self.oauth_post(
            "/oauth/device_authorization",
            &[("client_id", client_id), ("scope", scope)],
        )
        .await
    }

    /// `POST /oauth/revoke` (RFC 7009) as a public client.
    pub async fn revoke_token(&self, client_id: &str, token: &str) -> Result<(), ClientError> {
        let response = self
            .send(
                self.http()?
                    .post(self.url("/oauth/revoke")?)
                    .timeout(Duration::from_secs(20))
                    .form(&[("client_id", client_id), ("token", token)]),
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(oauth_error(response).await)
        }
    }

    /// Revokes the key it authenticates with. A key the server already refuses counts as revoked.
    pub async fn revoke_own_key(&self, api_key: &str) -> Result<(), ClientError> {
        let me = match self.me(api_key).await {
            Err(ClientError::KeyRejected) => return Ok(()),
            other => other?,
        };
        let CredentialInfo::ApiKey { key_id, .. } = me.credential else {
            return Err(ClientError::Internal(
                "the server did not identify the key".into(),
            ));
        };
        let response = self
            .send(
                self.http()?
                    .delete(self.url(&format!("/v1/api-keys/{key_id}"))?)
                    .timeout(Duration::from_secs(20))
                    .bearer_auth(api_key),
            )
            .await?;
        if response.status().is_success() || response.status() == StatusCode::UNAUTHORIZED {
            Ok(())
        } else {
            Err(server_error(response).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(
            backoff(0) >= Duration::from_millis(250) && backoff(0) < Duration::from_millis(375)
        );
        assert!(backoff(3) >= Duration::from_secs(2));
        for attempt in [5, 10, 40] {
            assert!(backoff(attempt) <= Duration::from_secs(12), "capped");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried_and_transient_ones_are() {
        let mut calls = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let r: Result<(), _> = retrying(deadline, || {
            calls += 1;
            async { Err(ClientError::FlowDenied) }
        })
        .await;
        assert!(matches!(r, Err(ClientError::FlowDenied)));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r: Result<u8, _> = retrying(deadline, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(ClientError::Server {
                        status: 503,
                        code: "unavailable".into(),
                        message: String::new(),
                    })
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls, 3);
    }
}
