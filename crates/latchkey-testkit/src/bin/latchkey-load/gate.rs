//! `gate`: `latchkey gate` against nginx as a plain reverse proxy (no auth), in front of the same
//! upstream (nginx answering `return 200`), in one run. The load comes from `wrk` (C, one
//! thread) for peak throughput and from `oha` for latency at a fixed rate, and each is first
//! shown not to be the bottleneck: straight at the upstream it must reach 1.8× the fastest
//! proxy, or the run says it is invalid. Per target: requests/s (min/median/max of the
//! repetitions), p50/p99 at peak, CPU time per request of the proxy's processes (from /proc),
//! the latency each adds at half of nginx's peak, and the memory each holds for idle SSE
//! streams.

use std::{convert::Infallible, path::Path, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use axum::{
    Router,
    response::sse::{Event, Sse},
    routing::get,
};
use latchkey_testkit::{Decision, Person, Server, sha256_hex, start_gate};
use tokio::{process::Command, task::JoinSet};

use crate::Memory;

const GATE_SECRET: &str = "lkcs_bench-gate-secret-bench-gate-secret";
/// Straight at the upstream, the load generator must reach this many times the fastest
/// proxied target, or it is what is being measured.
const HEADROOM: f64 = 1.8;

/// The streams' upstream: `/idle` opens an SSE stream that never sends.
async fn idle_streams_upstream() -> Result<String> {
    let idle = || async { Sse::new(futures_util::stream::pending::<Result<Event, Infallible>>()) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = listener.local_addr()?.to_string();
    tokio::spawn(
        async move { axum::serve(listener, Router::new().route("/idle", get(idle))).await },
    );
    Ok(base)
}

/// An nginx process tree (master and workers), stopped on drop.
struct Nginx {
    master: tokio::process::Child,
    url: String,
    config: std::path::PathBuf,
}

impl Drop for Nginx {
    /// `nginx -s stop` asks the master to stop its workers too; killing the master alone
    /// would leave them running.
    fn drop(&mut self) {
        let _ = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&self.config)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        // The master stops its workers before it exits (a zombie until reaped): wait for
        // that, a second at most, before its handle is dropped (and killed).
        let Some(pid) = self.master.id() else { return };
        for _ in 0..20 {
            if stat_fields(pid).is_none_or(|f| f.first().is_some_and(|state| state == "Z")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Nginx {
    /// nginx with `workers` workers serving `server` (the body of its `server {}` block).
    async fn start(dir: &Path, name: &str, workers: &str, server: &str) -> Result<Self> {
        let port = free_port()?;
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "worker_processes {workers};\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             worker_rlimit_nofile 20000;\nevents {{ worker_connections 19000; }}\n\
             http {{\n  access_log off;\n  {server_block}\n}}\n",
            dir = dir.display(),
            server_block = server.replace("LISTEN", &format!("127.0.0.1:{port}")),
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config)?;
        let master = Command::new("nginx")
            .arg("-c")
            .arg(&file)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("nginx is not installed: run scripts/bench, which installs it")?;
        wait_for_port(port, &dir.join("error.log")).await?;
        Ok(Self {
            master,
            url: format!("http://127.0.0.1:{port}"),
            config: file,
        })
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let Some(master) = self.master.id() else {
            return Vec::new();
        };
        let mut pids = vec![master];
        pids.extend(children_of(master));
        pids
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(port: u16, log: &Path) -> Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nginx did not start; see {}", log.display())
}

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f.get(1) == Some(&parent.to_string())))
        .collect()
}

/// The fields of /proc/<pid>/stat after the command name: state, ppid, … (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU time of `pids`, in clock ticks (utime and stime: fields 14 and 15).
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter()
        .map(|pid| {
            let fields = stat_fields(*pid).with_context(|| format!("/proc/{pid}/stat"))?;
            let tick = |i: usize| -> Result<u64> {
                fields
                    .get(i)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("field {} of /proc/{pid}/stat", i + 3))
            };
            Ok(tick(11)? + tick(12)?)
        })
        .sum()
}

/// Resident memory of `pids` together, in MiB.
fn rss_mib(pids: &[u32]) -> Result<f64> {
    let kib: u64 = pids
        .iter()
        .map(|pid| Memory::of(*pid).map(|m| m.rss_kib))
        .sum::<Result<u64>>()?;
    Ok(kib as f64 / 1024.0)
}

/// A JWT for `person` by the device grant, over plain HTTP.
async fn access_token(server: &Server, person: &Person) -> Result<String> {
    let http = reqwest::Client::new();
    let started: serde_json::Value = http
        .post(server.url("/oauth/device_authorization"))
        .form(&[("client_id", "latchkey-cli"), ("scope", "openid")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_code = started["user_code"].as_str().context("user_code")?;
    person
        .decide_device_code(user_code, Decision::Approve)
        .await?;
    let tokens: serde_json::Value = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            (
                "device_code",
                started["device_code"].as_str().context("device_code")?,
            ),
            ("client_id", "latchkey-cli"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(tokens["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy)]
struct Peak {
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time of the target's processes per request, µs.
    cpu_us: f64,
}

/// wrk's durations: `270.00us`, `1.20ms`, `2.00s`.
fn micros(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Reads wrk's report: requests, requests/s, and the 50 % and 99 % latencies; refuses a run
/// with errors or answers other than 2xx.
fn read_wrk(report: &str) -> Result<(u64, f64, f64, f64)> {
    let line_with = |needle: &str| report.lines().find(|l| l.contains(needle));
    if let Some(line) = line_with("Non-2xx or 3xx responses") {
        bail!("not every answer was a 200: {}", line.trim());
    }
    if let Some(line) = line_with("Socket errors") {
        bail!("wrk saw socket errors: {}", line.trim());
    }
    let requests = line_with("requests in")
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("no request count in wrk's report")?;
    let rps = line_with("Requests/sec:")
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .context("no Requests/sec in wrk's report")?;
    let percentile = |p: &str| {
        report
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut words| (words.next()? == p).then(|| micros(words.next()?))?)
            .with_context(|| format!("no {p} latency in wrk's report"))
    };
    Ok((requests, rps, percentile("50%")?, percentile("99%")?))
}

/// One `wrk` run at `url`: one thread, `connections` keep-alive connections, `seconds`;
/// the CPU the processes `pids` spent on it, per request.
async fn wrk(
    url: &str,
    credential: Option<&str>,
    connections: usize,
    seconds: u64,
    pids: &[u32],
    tick_us: f64,
) -> Result<Peak> {
    let mut command = Command::new("wrk");
    command.args([
        "-t1".to_owned(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
    ]);
    if let Some(credential) = credential {
        command.args(["-H", &format!("Authorization: Bearer {credential}")]);
    }
    let before = cpu_ticks(pids)?;
    let out = command
        .arg(url)
        .output()
        .await
        .context("wrk is not installed: run scripts/bench, which installs it")?;
    let after = cpu_ticks(pids)?;
    let report = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "wrk failed: {report}");
    let (requests, requests_per_second, p50_us, p99_us) =
        read_wrk(&report).with_context(|| format!("{url}: {report}"))?;
    Ok(Peak {
        requests_per_second,
        p50_us,
        p99_us,
        cpu_us: (after - before) as f64 * tick_us / requests.max(1) as f64,
    })
}

/// One `oha` run paced at `rate` requests/s: the achieved rate and p50/p99 in µs.
async fn oha(
    url: &str,
    credential: Option<&str>,
    connections: usize,
    seconds: u64,
    rate: f64,
) -> Result<(f64, f64, f64)> {
    let oha = std::env::var("OHA").unwrap_or_else(|_| "oha".to_owned());
    let mut command = Command::new(&oha);
    command.args([
        "--no-tui".to_owned(),
        "--output-format".to_owned(),
        "json".to_owned(),
        "-z".to_owned(),
        format!("{seconds}s"),
        "-c".to_owned(),
        connections.to_string(),
        "-q".to_owned(),
        format!("{rate:.0}"),
    ]);
    if let Some(credential) = credential {
        command.args(["-H", &format!("Authorization: Bearer {credential}")]);
    }
    let out =
        command.arg(url).output().await.with_context(|| {
            format!("{oha} is not installed: run scripts/bench, which installs it")
        })?;
    ensure!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let statuses = report["statusCodeDistribution"]
        .as_object()
        .context("no status codes in oha's report")?;
    ensure!(
        statuses.keys().all(|code| code == "200"),
        "{url}: not every answer was a 200: {statuses:?}"
    );
    let seconds_to_us = |v: &serde_json::Value| v.as_f64().map(|s| s * 1e6);
    Ok((
        report["summary"]["requestsPerSec"]
            .as_f64()
            .context("no requestsPerSec in oha's report")?,
        seconds_to_us(&report["latencyPercentiles"]["p50"]).context("no p50")?,
        seconds_to_us(&report["latencyPercentiles"]["p99"]).context("no p99")?,
    ))
}

/// The median of a few values (the lower middle one for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get((values.len().max(1) - 1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Opens `count` idle SSE streams at `url`; the RSS `pids` hold, idle and holding them.
async fn idle_streams(
    url: &str,
    credential: Option<&str>,
    count: usize,
    pids: &[u32],
) -> Result<(f64, f64)> {
    let idle = rss_mib(pids)?;
    let http = Arc::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .http1_only()
            .build()?,
    );
    let mut streams = Vec::with_capacity(count);
    for chunk in 0..count.div_ceil(500) {
        let mut opening = JoinSet::new();
        for _ in 0..500.min(count - chunk * 500) {
            let (http, url) = (http.clone(), format!("{url}/idle"));
            let credential = credential.map(str::to_owned);
            opening.spawn(async move {
                let mut request = http.get(url);
                if let Some(credential) = credential {
                    request = request.bearer_auth(credential);
                }
                let response = request.send().await?;
                ensure!(
                    response.status() == 200,
                    "idle stream refused: {}",
                    response.status()
                );
                anyhow::Ok(response)
            });
        }
        while let Some(opened) = opening.join_next().await {
            streams.push(opened??);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = rss_mib(pids)?;
    drop(streams);
    Ok((idle, held))
}

/// A proxied or direct target of the run.
struct Target<'a> {
    name: &'static str,
    url: &'a str,
    credential: Option<&'a str>,
    /// The processes doing the work, for CPU per request.
    pids: Vec<u32>,
    /// Whether the idle streams are measured through it.
    holds_streams: bool,
}

pub async fn gate(
    bin: &Path,
    connections: usize,
    seconds: u64,
    repetitions: usize,
    streams: usize,
) -> Result<()> {
    let files = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    // Each stream is a socket to the proxy and one on to the upstream, in each and here.
    ensure!(
        files > 2 * streams as u64 + 500,
        "RLIMIT_NOFILE is {files}: {streams} proxied streams need {} (raise `ulimit -Hn` or pass --idle-streams)",
        2 * streams + 500
    );
    let tick_us = 1e6 / clock_ticks_per_second()?;
    let tmp = tempfile::tempdir()?;
    let sse = idle_streams_upstream().await?;
    let upstream_server = |listen: &str| {
        format!(
            "server {{ listen {listen}; location / {{ return 200 \"ok\"; }}\n    \
             location /idle {{ proxy_pass http://{sse}; proxy_http_version 1.1; \
             proxy_buffering off; proxy_read_timeout 1h; }} }}"
        )
    };
    let upstream = Nginx::start(tmp.path(), "upstream", "1", &upstream_server("LISTEN")).await?;
    // The same upstream over h2c, for the gate forwarding over HTTP/2.
    let upstream_h2 = Nginx::start(
        tmp.path(),
        "upstream-h2",
        "1",
        &upstream_server("LISTEN http2"),
    )
    .await?;
    // The issuer, with the gate inside it too (`serve --gate-upstream`), rate limits off.
    let in_process = format!("127.0.0.1:{}", free_port()?);
    let server = Server::start_with_config(
        bin,
        &format!(
            "[[oauth_clients]]\nid = \"gate\"\nname = \"gate\"\nsecret_sha256 = \"{}\"\n",
            sha256_hex(GATE_SECRET)
        ),
        &[
            "--gate-upstream",
            &upstream.url,
            "--gate-listen",
            &in_process,
            "--gate-rate-limit-per-key",
            "0",
            "--gate-rate-limit-per-ip",
            "0",
        ],
    )
    .await?;
    let in_process_url = format!("http://{in_process}");
    let person =
        Person::verified_account(&server, "gate-bench@example.com", "load test password").await?;
    let key = person.new_api_key("bench").await?;
    let jwt = access_token(&server, &person).await?;

    let upstream_host = upstream.url.trim_start_matches("http://").to_owned();
    let proxy = Nginx::start(
        tmp.path(),
        "proxy",
        "auto",
        &format!(
            "upstream app {{ server {upstream_host}; keepalive 64; }}\n  \
             server {{ listen LISTEN; location / {{ proxy_pass http://app; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; \
             proxy_read_timeout 1h; }} }}"
        ),
    )
    .await?;
    let unlimited = ["--rate-limit-per-key", "0", "--rate-limit-per-ip", "0"];
    let (gate, gate_url) =
        start_gate(bin, &upstream.url, &server.url, GATE_SECRET, &unlimited).await?;
    let gate_pids = vec![gate.id().context("gate pid")?];
    let mut over_http2 = unlimited.to_vec();
    over_http2.push("--upstream-http2");
    let (gate_h2, gate_h2_url) =
        start_gate(bin, &upstream_h2.url, &server.url, GATE_SECRET, &over_http2).await?;
    let targets = [
        Target {
            name: "upstream direct",
            url: &upstream.url,
            credential: None,
            pids: upstream.pids(),
            holds_streams: false,
        },
        Target {
            name: "nginx, no auth",
            url: &proxy.url,
            credential: None,
            pids: proxy.pids(),
            holds_streams: true,
        },
        Target {
            name: "gate, API key",
            url: &gate_url,
            credential: Some(&key),
            pids: gate_pids.clone(),
            holds_streams: true,
        },
        Target {
            name: "gate, JWT",
            url: &gate_url,
            credential: Some(&jwt),
            pids: gate_pids.clone(),
            holds_streams: false,
        },
        Target {
            name: "serve --gate-upstream, API key",
            url: &in_process_url,
            credential: Some(&key),
            pids: server.pid().into_iter().collect(),
            holds_streams: false,
        },
        Target {
            name: "gate, API key, HTTP/2 upstream",
            url: &gate_h2_url,
            credential: Some(&key),
            pids: vec![gate_h2.id().context("gate pid")?],
            holds_streams: true,
        },
    ];
    println!(
        "gate vs nginx, wrk -t1 -c{connections} -d{seconds}s, {repetitions} repetitions, {} cores, \
         nginx proxy workers: auto, upstream: nginx `return 200` (1 worker)",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    // Warm every path: the gate's JWKS and introspection caches, every pool.
    for target in &targets {
        wrk(
            target.url,
            target.credential,
            connections,
            1,
            &target.pids,
            tick_us,
        )
        .await?;
    }

    let mut peaks: Vec<Vec<Peak>> = vec![Vec::new(); targets.len()];
    let mut valid = true;
    for repetition in 1..=repetitions {
        let mut this_run = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let peak = wrk(
                target.url,
                target.credential,
                connections,
                seconds,
                &target.pids,
                tick_us,
            )
            .await?;
            println!(
                "  run {repetition}, {}: {:.0} requests/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} µs CPU a request",
                target.name, peak.requests_per_second, peak.p50_us, peak.p99_us, peak.cpu_us
            );
            peaks[i].push(peak);
            this_run.push(peak.requests_per_second);
        }
        let fastest_proxy = this_run[1..].iter().copied().fold(0.0, f64::max);
        let headroom = this_run[0] / fastest_proxy;
        let ok = headroom >= HEADROOM;
        valid &= ok;
        println!(
            "  run {repetition}: the load generator drives the upstream at {headroom:.2}× the fastest proxy ({})",
            if ok {
                "valid"
            } else {
                "INVALID: below 1.8×, the load generator is the bottleneck"
            }
        );
    }

    println!(
        "\n| target | requests/s min / median / max | p50 at peak | p99 at peak | CPU a request | ratio to nginx |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let nginx_median = median(
        &mut peaks[1]
            .iter()
            .map(|p| p.requests_per_second)
            .collect::<Vec<_>>(),
    );
    for (target, runs) in targets.iter().zip(&peaks) {
        let mut rps: Vec<f64> = runs.iter().map(|p| p.requests_per_second).collect();
        let middle = median(&mut rps);
        let (min, max) = (rps[0], rps[rps.len() - 1]);
        let pick = |f: fn(&Peak) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        println!(
            "| {} | {min:.0} / {middle:.0} / {max:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {:.2} |",
            target.name,
            pick(|p| p.p50_us),
            pick(|p| p.p99_us),
            pick(|p| p.cpu_us),
            middle / nginx_median,
        );
    }

    // Latency at a fixed rate below saturation: half of nginx's peak, paced by oha.
    let rate = nginx_median / 2.0;
    println!("\nat {rate:.0} requests/s (half of nginx's median peak), paced by oha:");
    let mut direct_p50 = None;
    for target in &targets {
        let (achieved, p50, p99) =
            oha(target.url, target.credential, connections, seconds, rate).await?;
        let direct = direct_p50.is_none();
        let base = *direct_p50.get_or_insert(p50);
        let paced = achieved >= 0.95 * rate;
        // Straight at the upstream, missing the rate means oha is the bottleneck; through a
        // proxy, that the proxy's own peak is below it.
        valid &= paced || !direct;
        println!(
            "  {}: {achieved:.0} requests/s{}, p50 {p50:.0} µs (adds {:.0}), p99 {p99:.0} µs",
            target.name,
            match (paced, direct) {
                (true, _) => "",
                (false, true) => " (INVALID: oha did not reach the rate)",
                (false, false) => " (saturated: its peak is below this rate)",
            },
            p50 - base,
        );
    }

    // Idle SSE streams held through each proxy.
    for target in targets.iter().filter(|target| target.holds_streams) {
        let (idle, held) =
            idle_streams(target.url, target.credential, streams, &target.pids).await?;
        println!(
            "{} RSS: {idle:.1} MiB idle, {held:.1} MiB holding {streams} idle SSE streams ({:.1} KiB a stream)",
            target.name,
            (held - idle) * 1024.0 / streams as f64
        );
    }
    drop((gate, gate_h2));
    if valid {
        println!("\nthe run is valid");
        Ok(())
    } else {
        bail!("the run is INVALID: see the lines marked INVALID above")
    }
}

/// The kernel's clock ticks per second, in which /proc reports CPU time.
fn clock_ticks_per_second() -> Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("getconf")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 8s test @ http://127.0.0.1:8080\n  1 threads and 32 connections\n\
        \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
        \x20   Latency   330.12us  120.00us   5.00ms   90.00%\n\
        \x20 Latency Distribution\n     50%  270.00us\n     75%  350.00us\n     90%  500.00us\n\
        \x20    99%    1.20ms\n  756800 requests in 8.00s, 100.00MB read\nRequests/sec:  94600.12\n\
        Transfer/sec:     12.50MB\n";

    #[test]
    fn wrk_reports_are_read_and_errors_refused() {
        let (requests, rps, p50, p99) = read_wrk(REPORT).expect("a clean report");
        assert_eq!(requests, 756_800);
        assert!((rps - 94_600.12).abs() < 0.01);
        assert!((p50 - 270.0).abs() < 1e-9 && (p99 - 1200.0).abs() < 1e-9);
        let failing = format!("{REPORT}  Non-2xx or 3xx responses: 12\n");
        assert!(read_wrk(&failing).is_err());
        assert_eq!(micros("2.00s"), Some(2_000_000.0));
        assert_eq!(micros("12"), None);
    }

    #[test]
    fn the_median_of_three_is_the_middle_one() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
    }
}
