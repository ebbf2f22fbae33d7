//! `latchkey gate`: flags to a checked [`ProxyConfig`], then the proxy.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use latchkey_gate::{SubscriptionRequirement, VerifierConfig, proxy::ProxyConfig};
use latchkey_proto::KeyPrefix;
use url::Url;

use latchkey_client::cli::exit::{CONFIG, CliError, INTERNAL};

#[derive(Debug, Args)]
pub struct GateArgs {
    /// text (for people) or json (one object per line, for log collectors).
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::serve::LogFormat,
    /// Where admitted requests go, e.g. http://127.0.0.1:9000
    #[arg(long, env = "LATCHKEY_GATE_UPSTREAM", value_name = "URL")]
    upstream: String,
    /// The latchkey server that issued the credentials, exactly as in tokens' `iss`.
    #[arg(long, env = "LATCHKEY_ISSUER", value_name = "URL")]
    issuer: String,
    #[arg(
        long,
        env = "LATCHKEY_GATE_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// The URL clients reach the gate at (default: http://<listen address>).
    #[arg(long, env = "LATCHKEY_GATE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// A path prefix that passes without a credential (repeat for several).
    #[arg(long = "public", value_name = "PATH")]
    public_paths: Vec<String>,
    /// Tokens must carry this scope.
    #[arg(long, value_name = "SCOPE")]
    require_scope: Option<String>,
    /// The caller's org subscription must grant this entitlement; others get 403
    /// `subscription_required` with the subscribe URL.
    #[arg(long, value_name = "NAME")]
    require_entitlement: Option<String>,
    /// The caller's org subscription must be in this tier (the same 403 otherwise).
    #[arg(long, value_name = "TIER")]
    require_tier: Option<String>,
    /// Where a subscription is bought (default: <issuer>/account); `{org_id}` in it becomes
    /// the caller's org (a Stripe payment link's `?client_reference_id={org_id}`).
    #[arg(long, value_name = "URL")]
    subscribe_url: Option<String>,
    /// Requests per second per credential (bursts of twice that); 0 for no limit.
    #[arg(long, default_value_t = 50, value_name = "N")]
    rate_limit_per_key: u32,
    /// Requests per second per client address (bursts of twice that); 0 for no limit.
    #[arg(long, default_value_t = 100, value_name = "N")]
    rate_limit_per_ip: u32,
    /// Also accept JWTs for this audience (repeat; the issuer and the gate's URL always are).
    #[arg(long = "audience", value_name = "URI")]
    audiences: Vec<String>,
    /// The gate's confidential client at the issuer, for introspecting API keys.
    #[arg(long, env = "LATCHKEY_GATE_CLIENT_ID", value_name = "ID")]
    client_id: String,
    #[arg(
        long,
        env = "LATCHKEY_GATE_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    client_secret: String,
    /// The prefix of the issuer's API keys.
    #[arg(
        long,
        env = "LATCHKEY_KEY_PREFIX",
        default_value = "lk",
        value_name = "PREFIX"
    )]
    key_prefix: String,
    /// How long a valid API key is trusted before the issuer is asked again: a revoked key is
    /// refused at most this much later.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    key_cache_secs: u64,
    /// Serve /metrics here (kept off the proxied listener).
    #[arg(long, env = "LATCHKEY_GATE_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// How often API key usage counts are reported to the issuer, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    usage_flush_secs: u64,
    /// Close a connection whose request head takes longer than this to arrive (slowloris).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    header_read_timeout_secs: u64,
    /// Pass the client's Authorization / X-API-Key headers upstream too.
    #[arg(long)]
    forward_credentials: bool,
    /// A web origin whose pages may call through the gate (CORS), as scheme://host[:port]
    /// (repeat for several); the gate answers their preflights. None: preflights go upstream.
    #[arg(
        long = "cors-origin",
        env = "LATCHKEY_GATE_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    cors_origins: Vec<String>,
    /// Worker threads, each with its own listening socket, runtime and upstream connections
    /// (default: one for each core).
    #[arg(long, env = "LATCHKEY_GATE_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Forward over HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1: streams share upstream
    /// connections, so an idle SSE stream holds none of its own. The upstream must speak h2c.
    #[arg(long, env = "LATCHKEY_GATE_UPSTREAM_HTTP2")]
    upstream_http2: bool,
    /// Streams on one HTTP/2 connection to the upstream before another is opened (default
    /// 100); keep it at or below the upstream's limit (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(
        long,
        env = "LATCHKEY_GATE_UPSTREAM_HTTP2_STREAMS",
        requires = "upstream_http2",
        value_name = "N"
    )]
    upstream_http2_streams: Option<usize>,
    /// DEBUGGING ONLY: let every request through without authentication.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// A `--…-secs` flag as a duration, refused outside `1..=max`.
fn secs_arg(flag: &str, secs: u64, max: u64) -> Result<Duration, CliError> {
    if (1..=max).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(CliError::new(
            CONFIG,
            format!("--{flag} must be between 1 and {max}"),
        ))
    }
}

fn url_arg(flag: &str, raw: &str) -> Result<Url, CliError> {
    Url::parse(raw)
        .map_err(|e| CliError::new(CONFIG, format!("--{flag} {raw:?} is not a URL: {e}")))
}

pub async fn run(args: GateArgs) -> Result<(), CliError> {
    crate::serve::init_server_process(args.log_format);
    let issuer = url_arg("issuer", &args.issuer)?;
    let public_url = args
        .public_url
        .as_deref()
        .map(|u| url_arg("public-url", u))
        .transpose()?;
    let require_subscription = if args.require_entitlement.is_some() || args.require_tier.is_some()
    {
        let subscribe_url = match args.subscribe_url {
            // Checked as a URL, kept as given: the parser would encode a `{org_id}` in a path,
            // and the gate fills that placeholder in for each caller.
            Some(raw) => {
                url_arg("subscribe-url", &raw)?;
                raw
            }
            None => issuer
                .join("/account")
                .map_err(|e| CliError::new(CONFIG, format!("--issuer: {e}")))?
                .to_string(),
        };
        Some(SubscriptionRequirement {
            entitlement: args.require_entitlement,
            tier: args.require_tier,
            subscribe_url,
        })
    } else {
        None
    };
    let mut verifier = VerifierConfig::new(issuer, &args.client_id, &args.client_secret);
    verifier.key_prefix =
        KeyPrefix::parse(&args.key_prefix).map_err(|e| CliError::new(CONFIG, e))?;
    verifier.positive_ttl = secs_arg("key-cache-secs", args.key_cache_secs, 300)?;
    verifier.audiences.extend(args.audiences);
    let mut config = ProxyConfig::new(args.listen, url_arg("upstream", &args.upstream)?, verifier);
    config.public_url = public_url;
    config.public_paths = args.public_paths;
    config.require_scope = args.require_scope;
    config.require_subscription = require_subscription;
    config.rate_limit_per_credential = args.rate_limit_per_key;
    config.rate_limit_per_ip = args.rate_limit_per_ip;
    config.forward_credentials = args.forward_credentials;
    config.insecure_no_auth = args.insecure_no_auth;
    config.admin_listen = args.admin_listen;
    config.cors_origins = args.cors_origins;
    // clap already refuses the streams without `--upstream-http2`.
    config.upstream_http2 =
        latchkey_gate::proxy::upstream_http2(args.upstream_http2, args.upstream_http2_streams)
            .map_err(|_| {
                CliError::new(
                    CONFIG,
                    "--upstream-http2-streams must be between 1 and 10000",
                )
            })?;
    match args.workers {
        Some(0) => return Err(CliError::new(CONFIG, "--workers must be at least 1")),
        Some(workers) => config.workers = workers,
        None => {}
    }
    config.usage_flush = secs_arg("usage-flush-secs", args.usage_flush_secs, 3600)?;
    config.header_read_timeout = secs_arg(
        "header-read-timeout-secs",
        args.header_read_timeout_secs,
        300,
    )?;
    latchkey_gate::proxy::run(config, crate::serve::shutdown_signal())
        .await
        .map_err(|e| {
            let code = match e {
                latchkey_gate::proxy::GateError::Upstream(_)
                | latchkey_gate::proxy::GateError::CorsOrigin(_) => CONFIG,
                _ => INTERNAL,
            };
            CliError::new(code, e)
        })
}
