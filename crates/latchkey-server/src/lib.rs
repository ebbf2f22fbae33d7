//! `latchkey serve`: the auth service. Routes parse, call [`latchkey_core::Service`] and map its
//! errors ([`error::AppError`]); pages are server-rendered HTML.

pub mod client_metadata;
pub mod config;
mod data_dir;
pub mod error;
pub mod extract;
pub mod federation;
mod gate;
pub mod mail;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod upstream;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header},
    routing::{delete, get, patch, post},
};
use latchkey_core::{Clock, Mailer, Policy, Service, Store, SystemClock};
use latchkey_store::{PgSettings, PgStore, SqliteStore};
use thiserror::Error;
use tokio::net::TcpListener;
use tower_http::{
    cors::{self, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

/// The header that names a request in the logs and in its answer.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use config::{ConfigError, Database, ServeConfig, ServeOptions};

/// Facts about the deployment that handlers need.
#[derive(Debug)]
pub struct Site {
    /// `scheme://host[:port]`, as browsers send it in `Origin`.
    pub origin: String,
    /// Cookies get `Secure` unless the service is reached over plain HTTP on loopback.
    pub secure_cookies: bool,
    /// The public URL is https: responses carry HSTS, cookies are `__Host-` prefixed.
    pub https: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Cookie names: `__Host-` prefixed over https, so no subdomain can set or shadow them.
    pub session_cookie: &'static str,
    pub csrf_cookie: &'static str,
    /// The browser's sign-up receipt (see `pages::sign_up`).
    pub signup_cookie: &'static str,
    /// A sign-in waiting for its second factor (see `pages::second_factor`).
    pub second_factor_cookie: &'static str,
}

impl Site {
    fn new(public_url: &url::Url, trusted_proxies: Vec<std::net::IpAddr>) -> Self {
        let https = public_url.scheme() == "https";
        Self {
            https,
            trusted_proxies,
            session_cookie: if https {
                "__Host-lk_session"
            } else {
                "lk_session"
            },
            csrf_cookie: if https { "__Host-lk_csrf" } else { "lk_csrf" },
            signup_cookie: if https {
                "__Host-lk_signup"
            } else {
                "lk_signup"
            },
            second_factor_cookie: if https { "__Host-lk_2fa" } else { "lk_2fa" },
            origin: public_url.origin().ascii_serialization(),
            secure_cookies: !(public_url.scheme() == "http"
                && config::is_loopback_host(public_url)),
        }
    }

    /// A cookie of ours: `HttpOnly`, `SameSite=Lax`, for the whole site, `Secure` unless the
    /// site is plain http on loopback; a session cookie unless `max_age` is given.
    pub fn cookie(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        value: String,
        max_age: Option<Duration>,
    ) -> axum_extra::extract::cookie::Cookie<'static> {
        let mut cookie = axum_extra::extract::cookie::Cookie::build((name, value))
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(axum_extra::extract::cookie::SameSite::Lax)
            .path("/");
        if let Some(age) = max_age.and_then(|a| time::Duration::try_from(a).ok()) {
            cookie = cookie.max_age(age);
        }
        cookie.build()
    }

    /// The cookie that ties the upstream sign-in with `state` to the browser that started it:
    /// one per sign-in, so sign-ins started in two tabs do not undo each other.
    pub fn upstream_cookie(&self, state: &str) -> String {
        let prefix = if self.https { "__Host-" } else { "" };
        let id: String = state
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{prefix}lk_upstream_{id}")
    }

    /// The origin of the web page that sent this request, when a browser sent it from a site
    /// other than this one (an SPA calling the token endpoint, say).
    pub fn foreign_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get(header::ORIGIN)
            .filter(|origin| origin.as_bytes() != self.origin.as_bytes())
            .map(|origin| origin.to_str().unwrap_or("an unreadable origin"))
    }

    /// Whether a browser request provably comes from our own pages (`Origin` or `Referer`).
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN) {
            return origin.as_bytes() == self.origin.as_bytes();
        }
        headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .is_some_and(|r| r.origin().ascii_serialization() == self.origin)
    }
}

#[derive(Clone, Debug)]
pub struct AppState {
    pub service: Service,
    pub site: Arc<Site>,
    /// The identity providers people may sign in with.
    pub upstream: Arc<upstream::Upstream>,
    /// The external issuers whose CI tokens are exchanged (keyless CI).
    pub federation: Arc<federation::Federation>,
}

pub fn router(state: AppState) -> Router {
    use pages::{
        account, cli_login, consent, device, handoff, invitations, logout, passkeys,
        password_reset, profile, second_factor, security, sign_up, upstream,
    };
    use routes::{
        api_keys, billing, console, discovery, gate, health, machine, oauth, openid, orgs,
        token_flow,
    };

    let api = Router::new()
        .route("/v1/token-flow/create", post(token_flow::create))
        .route("/v1/token-flow/wait", post(token_flow::wait))
        .route("/v1/me", get(api_keys::me))
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
        .route("/v1/sessions", get(console::list))
        .route("/v1/sessions/{id}", delete(console::end))
        .route("/v1/audit", get(console::audit))
        .route("/v1/account/export", get(profile::export))
        .route("/v1/orgs", get(orgs::list).post(orgs::create))
        .route(
            "/v1/orgs/{org}",
            get(orgs::get).patch(orgs::rename).delete(orgs::delete),
        )
        .route("/v1/orgs/{org}/members", get(orgs::members))
        .route(
            "/v1/orgs/{org}/invitations",
            get(orgs::invitations).post(orgs::invite),
        )
        .route(
            "/v1/orgs/{org}/invitations/{id}",
            delete(orgs::revoke_invitation),
        )
        .route(
            "/v1/orgs/{org}/members/{user_id}",
            patch(orgs::change_role).delete(orgs::remove_member),
        )
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revocations", get(oauth::revocations))
        .route(
            "/oauth/register/{client_id}",
            get(oauth::read_registration)
                .put(oauth::update_registration)
                .delete(oauth::delete_registration),
        )
        .route("/auth/client", post(machine::exchange))
        .route("/v1/gate/usage", post(gate::usage))
        .route("/v1/billing/stripe/webhook", post(billing::stripe_webhook))
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // What browser-based public clients (SPAs, MCP inspectors) call from their own sites:
        // the public documents, and the endpoints of code + PKCE. No cookie is read there, and
        // a client secret sent from a web page is refused (`Site::foreign_origin`).
        .merge(
            Router::new()
                .route(
                    "/.well-known/oauth-authorization-server",
                    get(discovery::metadata),
                )
                .route(
                    "/.well-known/openid-configuration",
                    get(discovery::openid_configuration),
                )
                .route("/openapi.json", get(openapi::document))
                .route("/.well-known/jwks.json", get(discovery::jwks))
                .route("/oauth/token", post(oauth::token))
                .route("/oauth/revoke", post(oauth::revoke))
                .route("/oauth/register", post(oauth::register))
                .route(
                    "/oauth/userinfo",
                    get(openid::userinfo).post(openid::userinfo_by_post),
                )
                .layer(
                    CorsLayer::new()
                        .allow_origin(cors::Any)
                        .allow_methods([Method::GET, Method::POST])
                        // MCP clients send their protocol version even to discovery.
                        .allow_headers([
                            header::CONTENT_TYPE,
                            header::AUTHORIZATION,
                            HeaderName::from_static("mcp-protocol-version"),
                        ])
                        .expose_headers([header::WWW_AUTHENTICATE])
                        .max_age(Duration::from_secs(600)),
                ),
        );

    let pages = Router::new()
        .route("/", get(account::home))
        .route("/signup", get(sign_up::signup_page).post(sign_up::signup))
        .route("/signin", get(account::signin_page).post(account::signin))
        .route("/signout", post(account::signout))
        .route("/check-email", get(sign_up::check_email))
        .route(
            "/verify-email",
            get(sign_up::verify_email).post(sign_up::verify_email_with_password),
        )
        .route("/verify-email/resend", post(sign_up::resend_verification))
        .route(
            "/forgot-password",
            get(password_reset::forgot_password_page).post(password_reset::forgot_password),
        )
        .route(
            "/reset-password",
            get(password_reset::reset_password_page).post(password_reset::reset_password),
        )
        .route("/account", get(account::account))
        .route("/account/keys", post(account::create_key))
        .route("/account/password", post(account::change_password))
        .route("/account/security", get(security::security_page))
        .route("/account/email", post(profile::request_email_change))
        .route("/account/email/confirm", get(profile::confirm_email_change))
        .route("/account/delete", post(profile::delete_account))
        .route(
            "/signin/second-factor",
            get(second_factor::code_page).post(second_factor::submit_code),
        )
        .route(
            "/account/second-factor/setup",
            post(second_factor::start_setup),
        )
        .route(
            "/account/second-factor/confirm",
            post(second_factor::confirm_setup),
        )
        .route(
            "/account/second-factor/disable",
            post(second_factor::disable),
        )
        .route("/assets/passkeys.js", get(passkeys::script))
        .route(
            "/account/passkeys/start",
            post(passkeys::start_registration),
        )
        .route(
            "/account/passkeys/finish",
            post(passkeys::finish_registration),
        )
        .route("/account/passkeys/{id}/rename", post(passkeys::rename))
        .route("/account/passkeys/{id}/remove", post(passkeys::remove))
        .route("/signin/passkey/start", post(passkeys::start_sign_in))
        .route("/signin/passkey/finish", post(passkeys::finish_sign_in))
        .route(
            "/signin/second-factor/passkey/start",
            post(passkeys::start_second_factor),
        )
        .route(
            "/signin/second-factor/passkey/finish",
            post(passkeys::finish_second_factor),
        )
        .route(
            "/account/security/sign-out-others",
            post(security::sign_out_others),
        )
        .route("/account/security/{id}/end", post(security::end))
        .route("/account/keys/{id}/revoke", post(account::revoke_key))
        .route("/login/cli", get(cli_login::approval_page))
        .route("/login/cli/approve", post(cli_login::approve))
        .route("/login/cli/deny", post(cli_login::deny))
        .route("/device", get(device::device_page).post(device::enter_code))
        .route("/device/decide", post(device::decide))
        .route("/cli/auth", get(handoff::confirm_page).post(handoff::send))
        .route(
            "/oauth/authorize",
            get(consent::consent_page).post(consent::decide),
        )
        .route("/oauth/logout/confirm", post(logout::confirm))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::same_site_writes,
        ))
        // Relying parties may POST here from their own site (RP-Initiated Logout §2); it
        // signs out only on proof (an ID token for the signed-in person), else it asks.
        .route(
            "/oauth/logout",
            get(logout::logout_by_query).post(logout::logout_by_form),
        )
        // The provider's redirect back is a cross-site navigation by design; the sign-in it
        // finishes was started here and is tied to this browser by a cookie.
        .route("/auth/login/{provider}", get(upstream::start))
        .route("/auth/callback/{provider}", get(upstream::callback))
        .route(
            "/invitations/accept",
            get(invitations::invitation_page).post(invitations::accept),
        )
        .route("/orgs", post(invitations::create_org))
        .route("/orgs/{org}", get(invitations::org_page))
        .route("/orgs/{org}/invite", post(invitations::invite))
        .route(
            "/orgs/{org}/invitations/{id}/revoke",
            post(invitations::revoke_invitation),
        )
        .route(
            "/orgs/{org}/members/{user_id}/remove",
            post(invitations::remove_member),
        )
        .route(
            "/orgs/{org}/members/{user_id}/role",
            post(invitations::change_role),
        )
        .route("/account/link/{provider}", get(upstream::link))
        .route(
            "/account/identities/{provider}/unlink",
            post(upstream::unlink),
        )
        // Pages must never be framed: Approve must not be clickjacked.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ));

    // Over https, browsers must never come back over plain http (HSTS, two years).
    let hsts = state.site.https.then(|| {
        SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        )
    });
    api.merge(pages)
        .layer(tower::util::option_layer(hsts))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // Spans carry the path only: query strings can hold secrets (verification tokens).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        // Every answer carries the id its log lines carry (the caller's own, if it sent one).
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// `/metrics` alone, for the admin listener: never on the public address.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .with_state(state)
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error("could not open the database")]
    Store(#[from] latchkey_core::StoreError),
    #[error("could not load the token signing keys")]
    Signing(#[from] latchkey_core::SigningError),
    #[error("the SMTP configuration is not valid")]
    Smtp(#[from] mail::SmtpConfigError),
    #[error("could not register the OAuth clients declared in the config")]
    DeclaredClients(#[from] latchkey_core::OAuthError),
    #[error("could not set up the machine clients declared in the config")]
    MachineClients(#[from] latchkey_core::machine::MachineClientError),
    #[error("could not listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("could not build the HTTP client for the identity providers")]
    Http(#[source] openidconnect::reqwest::Error),
}

/// A client gets this long to send its request head (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the store, binds, prints where it listens, serves until `shutdown` resolves (the CLI
/// passes SIGINT/SIGTERM), then flushes usage counts and exits. Open long-polls are cut: CLIs
/// retry their wait.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Bound before the store opens: a busy port must not leave a new data directory behind.
    let listener = latchkey_listener::listen(config.listen, false)
        .and_then(TcpListener::from_std)
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None if bound.ip().is_loopback() => config::check_public_url(&format!("http://{bound}"))?,
        None => return Err(config::ConfigError::NoPublicUrl(bound).into()),
    };
    let store = open_store(&config).await?;
    pages::brand::install(config.brand.clone());
    let signature = config.brand.mail_signature();
    let mailer: Arc<dyn Mailer> = match &config.mail {
        config::MailConfig::DevOutbox(path) => Arc::new(mail::Signed::new(
            mail::DevOutbox::new(path.clone()),
            signature,
        )),
        config::MailConfig::Smtp { url, from } => Arc::new(mail::Signed::new(
            mail::SmtpMailer::new(url, from)?,
            signature,
        )),
    };

    let mut policy = Policy::new(public_url.as_str());
    policy.product_name = config.brand.product_name.clone();
    policy.key_prefix = config.key_prefix.clone();
    policy.declared_clients = config.declared_clients.clone();
    policy.machine_clients = config.machine_clients.clone();
    policy.client_metadata_insecure_loopback = config.client_metadata_insecure_loopback;
    policy.allowed_resources = config.allowed_resources.clone();
    policy.registration_allows_confidential = config.registration_allows_confidential;
    policy.password_sign_in = config.password_sign_in;
    policy.access_token_alg = config.access_token_alg;
    policy.plans = config.plans.clone();
    policy.stripe = config.stripe.clone();
    policy.master_key = Some(data_dir::master_key(&config.master_key)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = Service::new(store, clock, mailer, policy);
    service.set_client_metadata_fetcher(Arc::new(client_metadata::HttpClientMetadataFetcher::new(
        config.client_metadata_insecure_loopback,
    )));
    service.load_signing_keys().await?;
    service.ensure_declared_clients().await?;
    service.ensure_machine_clients().await?;
    let state = AppState {
        service: service.clone(),
        site: Arc::new(Site::new(&public_url, config.trusted_proxies.clone())),
        upstream: Arc::new(
            upstream::Upstream::new(config.identity_providers.clone(), public_url.clone())
                .map_err(ServeError::Http)?,
        ),
        federation: Arc::new(
            federation::Federation::new(config.trusted_issuers.clone())
                .map_err(ServeError::Http)?,
        ),
    };

    let background = spawn_background(service.clone(), config.usage_flush);
    let follower = match service.watch_changes().await? {
        Some(feed) => {
            let service = service.clone();
            Some(tokio::spawn(
                async move { service.follow_changes(feed).await },
            ))
        }
        None => None,
    };
    if let Some(addr) = config.admin_listen {
        let admin = TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::Bind(addr, e))?;
        let bound = admin.local_addr().map_err(|e| ServeError::Bind(addr, e))?;
        println!("latchkey serves /metrics on http://{bound}");
        tokio::spawn(latchkey_listener::serve(
            admin,
            admin_router(state.clone()),
            HEADER_READ_TIMEOUT,
            std::future::pending(),
        ));
    }
    let base = public_url.as_str().trim_end_matches('/');
    if base == format!("http://{bound}") {
        println!("latchkey is listening on {base}");
    } else {
        println!("latchkey is listening on {base} (bound to {bound})");
    }
    if config.client_metadata_insecure_loopback {
        tracing::warn!(
            "client metadata documents are fetched over plain http from loopback addresses: for development and tests only"
        );
    }
    if config.dev {
        println!(
            "dev mode: emails go to the log and to {}",
            config.data_dir.join("outbox.jsonl").display()
        );
        println!("Open {base}/signup to create an account.");
    }

    // One stop signal for the API and the in-process gate.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopping_service = service.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping_service.end_waits();
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let gate = config.gate.as_ref().map(|in_process| {
        tokio::spawn(latchkey_gate::proxy::run(
            gate::config(&service, &public_url, in_process),
            stopped(stopping.clone()),
        ))
    });
    latchkey_listener::serve(
        listener,
        router(state),
        HEADER_READ_TIMEOUT,
        stopped(stopping),
    )
    .await;
    if let Some(gate) = gate {
        match gate.await {
            Ok(Err(e)) => {
                tracing::error!(error = %error::error_chain(&e), "the in-process gate failed")
            }
            Err(e) => tracing::error!(error = %e, "the in-process gate panicked"),
            Ok(Ok(())) => {}
        }
    }
    background.abort();
    if let Some(follower) = follower {
        follower.abort();
    }
    if let Err(e) = service.flush_key_usage().await {
        tracing::warn!(error = %error::error_chain(&e), "flushing API key usage at shutdown failed");
    }
    Ok(())
}

async fn open_store(config: &ServeConfig) -> Result<Arc<dyn Store>, ServeError> {
    let sqlite_file = match &config.database {
        Database::SqliteFile(path) => Some(path.as_path()),
        _ => None,
    };
    data_dir::prepare(&config.data_dir, sqlite_file)?;
    Ok(match &config.database {
        Database::SqliteFile(path) => Arc::new(SqliteStore::open(path).await?),
        Database::SqliteUrl(url) => Arc::new(SqliteStore::open_url(url).await?),
        Database::Postgres {
            url,
            max_connections,
        } => {
            let settings = PgSettings {
                max_connections: *max_connections,
                ..PgSettings::default()
            };
            Arc::new(PgStore::open(url, &settings).await?)
        }
    })
}

/// The service over the configured database, for `latchkey admin` commands (no listener, no
/// background tasks, no mail).
pub async fn admin_service(config: &ServeConfig) -> Result<Service, ServeError> {
    let store = open_store(config).await?;
    let public_url = config
        .public_url
        .as_ref()
        .map_or_else(|| "http://127.0.0.1".to_owned(), |u| u.to_string());
    let mut policy = Policy::new(public_url);
    policy.master_key = Some(data_dir::master_key(&config.master_key)?);
    policy.plans = config.plans.clone();
    Ok(Service::new(
        store,
        Arc::new(SystemClock),
        Arc::new(mail::DevOutbox::new(config.data_dir.join("outbox.jsonl"))),
        policy,
    ))
}

/// Usage flushes, the sweep of expired rows, and reloading signing keys (a rotation made by
/// `latchkey admin` or another replica is picked up within a minute).
fn spawn_background(service: Service, usage_flush: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(usage_flush);
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = service.flush_key_usage().await {
                        tracing::warn!(error = %error::error_chain(&e), "flushing API key usage failed; will retry");
                    }
                }
                _ = sweep.tick() => {
                    if let Err(e) = service.load_signing_keys().await {
                        tracing::warn!(error = %error::error_chain(&e), "reloading signing keys failed");
                    }
                    match service.sweep().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(rows = n, "swept expired rows"),
                        Err(e) => tracing::warn!(error = %error::error_chain(&e), "sweeping expired rows failed"),
                    }
                }
            }
        }
    })
}
