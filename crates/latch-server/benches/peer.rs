//! Latch side by side with the provider users would otherwise pick (issue 19): npm
//! `oidc-provider` 9 (peers/bench_provider.mjs, in-memory adapter, configured like Latch's bench
//! client), the real `latch` binary (bench profile) on PostgreSQL + Redis and on the embedded
//! default, all driven by one load generator in its own process: `wrk` (16 connections, 2
//! threads, a Lua script per scenario under peers/bench/).
//!
//! Scenarios, each with one 2-s warm-up round per target (not counted), then
//! `LATCH_BENCH_ROUNDS` (3) rounds of `LATCH_BENCH_SECONDS` (10) interleaved peer / Latch on
//! PostgreSQL + Redis / Latch embedded; medians, p99s and the ratios Latch/peer, beside the raw
//! RS256 signing rate measured in the same run (this process, 2 threads, Latch's key ring, for
//! 2 s before each of Latch's rounds; a round's share of it is against the measurement beside
//! it, and the share reported is the median of the rounds'):
//! - refresh grant: 64 refresh tokens per round and target (Latch: signed in over HTTP,
//!   `openid offline_access email profile`; the peer: minted by its bench-only route); Latch
//!   rotates, oidc-provider (default policy) does not rotate a confidential client's tokens;
//! - client_credentials with an RS256 JWT access token (Latch: the management API audience;
//!   the peer: a resource indicator);
//! - Global Token Revocation (Latch only; this process plays the Okta org): distinct pre-signed
//!   requests for users holding one session, and for users holding 20 sessions in 5 apps whose
//!   back-channel logout URLs point at a receiver here (every delivery awaited). Users and
//!   sessions are written straight into Latch's store and session store before each round, as
//!   many as the warm-up's rate says the round needs; a round whose requests run out is invalid.
//!
//! `LATCH_BENCH_CONNECTIONS` (16) sets wrk's connections, and `LATCH_BENCH_DELAY_MS` a pause
//! before each GTR request of a connection: latency below saturation (the targets are at 16
//! connections, unpaced).
//!
//! Any answer with another status fails its round (printed loudly, with the first bodies).
//! `cargo xtask bench --peer` runs it (it runs only with `LATCH_BENCH_PEER=1`). PostgreSQL and
//! Redis: `LATCH_BENCH_DATABASE_URL` / `LATCH_BENCH_REDIS_URL` (or the `LATCH_TEST_*` ones);
//! without them only the embedded default runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use latch_core::model::{Identity, SigningAlg};
use latch_core::session::{SessionClient, SessionStore};
use latch_core::store::Store;
use latch_core::{ClientId, ConnectionId, ConnectionName, SystemClock, UserId};
use latch_jose::keys::{Signer, sign_jws};
use latch_testkit::env::{PgDatabase, TempDir, unique};
use latch_testkit::fixtures;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

mod common;
use common::{ADMIN_TOKEN as TOKEN, SECRET_KEY, api, cookies, free_port, okta_org};

const BIN: &str = env!("CARGO_BIN_EXE_latch");
const PASSWORD: &str = "Bench-Password-3";
const CB: &str = "http://127.0.0.1:9/cb";
const SCOPE: &str = "openid offline_access email profile";
/// The peer's client, API and scope: as in peers/bench_provider.mjs.
const PEER_CLIENT: (&str, &str) = (
    "bench-client",
    "bench-client-secret-0123456789abcdef0123456789",
);
const PEER_API: &str = "https://api.bench.example/";
const PEER_API_SCOPE: &str = "api:read";
/// The scope Latch's client grant gives on the management API.
const LATCH_API_SCOPE: &str = "read:clients";
/// Refresh tokens per round and target: 4 per connection (wrk needs more than 1).
const REFRESH_TOKENS: usize = 64;
/// Latch's database users the refresh tokens are signed in as.
const USERS: usize = 8;
/// wrk's connections (`LATCH_BENCH_CONNECTIONS`, 16: the targets are at 16; fewer
/// measure latency under a lighter load) and threads (2, or 1 for one connection).
fn connections() -> usize {
    setting("LATCH_BENCH_CONNECTIONS", 16) as usize
}
fn threads() -> usize {
    connections().min(2)
}
const WARMUP_SECS: u64 = 2;
/// The 20-session GTR case: sessions per user, and the apps (with back-channel logout) they
/// joined.
const GTR_SESSIONS: usize = 20;
const GTR_APPS: usize = 5;
/// Prepared GTR requests per second of round, times the rate seen so far. 1.3 let rounds of
/// users with 20 sessions run out (their rate moved between 289 and 473/s from one round to the
/// next on a shared host); unused requests only cost seeding time, outside the rounds.
const GTR_HEADROOM: f64 = 1.8;
/// The same for the first round, whose estimate is the warm-up's: that runs on stores just
/// seeded and not yet warm, and measured 1,048/s before a first round that ran out at 1,889/s
/// (PostgreSQL + Redis, 2026-12-08).
const GTR_FIRST_HEADROOM: f64 = 3.0;
const DELIVERIES_WITHIN: Duration = Duration::from_secs(120);

struct Settings {
    seconds: u64,
    rounds: usize,
}

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("peer: {name}={v:?} is not a number above 0");
                std::process::exit(2);
            }
        },
        _ => default,
    }
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers")
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A child process (Latch or the peer), killed on drop.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis keys of one Latch instance's prefix, deleted on drop (the run's database is dropped
/// the same way): a run leaves hundreds of thousands of keys behind otherwise, which slowed the
/// test suite's `KEYS` reads on the same Redis until they timed out.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(mut c) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(10_000)
                .query(&mut c)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<u64> = redis::cmd("UNLINK").arg(&keys).query(&mut c);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A fresh database for the run, reached without TLS when on loopback. libpq's default
/// `sslmode=prefer` takes TLS when the server offers it, which only costs CPU on loopback: it
/// was 10% of PostgreSQL's and 9% of Latch's database threads' CPU in the profiles (Redis is
/// plaintext here too). A URL that names its `sslmode` keeps it.
fn fresh_database(base: &str) -> PgDatabase {
    let mut db = PgDatabase::create(base, "latch_peer");
    let mut url = url::Url::parse(&db.url).expect("the database URL is a URL");
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if loopback && !url.query_pairs().any(|(k, _)| k == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
        db.url = url.into();
    }
    db
}

/// What one wrk run reports (peers/bench/common.lua's `BENCH` line).
#[derive(Default)]
struct Run {
    requests: u64,
    secs: f64,
    /// Socket errors and timeouts.
    errors: u64,
    /// Answers without the expected status.
    bad: u64,
    /// Requests asked for after the prepared input ran out.
    dry: u64,
    p50_ms: f64,
    p99_ms: f64,
    failures: Vec<String>,
    /// CPU per request in the round, when measured ([`CpuMeter`]).
    cpu: Option<Cpu>,
}

impl Run {
    fn with_cpu(mut self, meter: &CpuMeter) -> Self {
        self.cpu = meter.per_request(self.requests);
        self
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }

    fn valid(&self) -> bool {
        self.errors == 0 && self.bad == 0 && self.dry == 0
    }

    fn text(&self) -> String {
        let mut s = format!(
            "{:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests in {:.1} s)",
            self.rate(),
            self.p50_ms,
            self.p99_ms,
            self.requests,
            self.secs
        );
        if let Some(c) = &self.cpu {
            s += &format!("  {}", c.text());
        }
        if self.bad + self.errors > 0 {
            s += &format!(
                "  *** FAILED: {} answers with another status, {} socket errors/timeouts ***",
                self.bad, self.errors
            );
        }
        if self.dry > 0 {
            s += "  *** INVALID: the prepared requests ran out before the round ended ***";
        }
        for f in &self.failures {
            s += &format!("\n      {f}");
        }
        s
    }
}

/// CPU time per request of a round: the target's own process (all its threads), and for Latch
/// on PostgreSQL + Redis also every `postgres` and `redis-server` process on the machine (its
/// stores; the peer keeps its state in its process). From `/proc/<pid>/stat` (user + system),
/// which leaves out what the hypervisor took from the guest (steal) and wrk's own CPU. It tells
/// whether a slow round had less of the machine or did more work per request: on the VM where
/// it was added, it moved with the rates (1,006 and 1,222 µs per embedded refresh in rounds at
/// 1,772 and 1,398/s), so that host's swings are slower execution, not stolen time.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    own_us: f64,
    stores_us: Option<f64>,
}

impl Cpu {
    fn text(&self) -> String {
        let mut s = format!("CPU {:.0} µs/request", self.own_us);
        if let Some(st) = self.stores_us {
            s += &format!(" (+{st:.0} in PostgreSQL and Redis)");
        }
        s
    }
}

/// User + system CPU ticks of `pid`, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces), from the state on: utime and
    // stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The CPU ticks of every process named `postgres` or `redis-server`.
fn store_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| matches!(c.trim(), "postgres" | "redis-server"))
        })
        .filter_map(cpu_ticks)
        .sum()
}

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The CPU counters at a round's start.
struct CpuMeter {
    pid: u32,
    own: Option<u64>,
    stores: Option<u64>,
}

impl CpuMeter {
    fn start(pid: u32, stores: bool) -> Self {
        Self {
            pid,
            own: cpu_ticks(pid),
            stores: stores.then(store_ticks),
        }
    }

    fn per_request(&self, requests: u64) -> Option<Cpu> {
        let us = |ticks: u64| 1e6 * ticks as f64 / ticks_per_sec() / requests.max(1) as f64;
        let own = cpu_ticks(self.pid)?.checked_sub(self.own?)?;
        Some(Cpu {
            own_us: us(own),
            stores_us: self.stores.map(|s| us(store_ticks().saturating_sub(s))),
        })
    }
}

/// Runs wrk with `script` (peers/bench/) against `base` for `secs`.
async fn wrk(script: &str, base: &str, secs: u64, env: &[(&str, String)]) -> Run {
    let lua = peers_dir().join("bench");
    let out = tokio::process::Command::new("wrk")
        .args([
            "-t",
            &threads().to_string(),
            "-c",
            &connections().to_string(),
        ])
        .args(["-d", &format!("{secs}s"), "--timeout", "10s", "-s"])
        .arg(lua.join(script))
        .arg(base)
        .env("BENCH_LUA_DIR", &lua)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("wrk runs (scripts/install-deps.sh --bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
    else {
        panic!("wrk printed no BENCH line ({}): {text}", out.status);
    };
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Run {
        requests: n("requests"),
        secs: n("duration_us") as f64 / 1e6,
        errors: n("connect") + n("read") + n("write") + n("timeout"),
        bad: n("bad"),
        dry: n("dry"),
        p50_ms: n("p50_us") as f64 / 1000.0,
        p99_ms: n("p99_us") as f64 / 1000.0,
        failures: text
            .lines()
            .filter(|l| l.starts_with("FAILURE "))
            .map(str::to_owned)
            .collect(),
        cpu: None,
    }
}

/// Writes `lines` to `<prefix>.<thread>`, line `i` to thread `i % threads()`.
fn write_split(prefix: &Path, lines: &[String]) {
    let threads = threads();
    for t in 0..threads {
        let mut s = String::new();
        for l in lines.iter().skip(t).step_by(threads) {
            s.push_str(l);
            s.push('\n');
        }
        std::fs::write(format!("{}.{t}", prefix.display()), s).expect("write wrk input");
    }
}

/// One sign-in at Latch (form, password, code exchange): the refresh token.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    client: &(String, String),
    email: &str,
) -> Result<String, String> {
    let e = |what: &str, x: &dyn std::fmt::Display| format!("{what}: {x}");
    let a = http
        .get(format!(
            "{base}/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=s&nonce=n",
            client.0,
            enc(CB),
            enc(SCOPE)
        ))
        .send()
        .await
        .map_err(|x| e("authorize", &x))?;
    let jar = cookies(&a);
    let body = a.text().await.map_err(|x| e("authorize", &x))?;
    let tx = body
        .split_once("name=\"tx\" value=\"")
        .and_then(|(_, r)| r.split('"').next())
        .ok_or_else(|| e("authorize: no sign-in form", &body))?;
    let l = http
        .post(format!("{base}/login"))
        .header("Cookie", jar)
        .form(&[("tx", tx), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .map_err(|x| e("login", &x))?;
    let to = l
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let code = url::Url::parse(to)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or_else(|| e("login: no code", &format!("{} {to}", l.status())))?;
    let t = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ])
        .send()
        .await
        .map_err(|x| e("token", &x))?;
    let v: Value = t.json().await.map_err(|x| e("token", &x))?;
    v["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| e("token: no refresh token", &v))
}

/// The apps' back-channel logout endpoint: answers 200, counts the requests.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<AtomicU64>,
    notify: Arc<Notify>,
}

impl Sink {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/bc", listener.local_addr().expect("addr"));
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(sink.clone().connection(sock));
            }
        });
        url
    }

    /// Requests on one keep-alive connection, each read whole (by its Content-Length).
    async fn connection(self, mut sock: tokio::net::TcpStream) {
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 8192]);
        loop {
            let (head, len) = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let h = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = h
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
                match sock.read(&mut chunk).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            };
            while buf.len() < head + len {
                match sock.read(&mut chunk).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            buf.drain(..head + len);
            self.received.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_waiters();
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            if sock.write_all(ok).await.is_err() {
                return;
            }
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` requests have been received (at most `within`); whether they were.
    async fn wait_for(&self, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.received() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received() >= n;
            }
        }
    }
}

/// What the bench keeps of a Latch instance beyond its HTTP side.
struct LatchSide {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
    emails: Vec<String>,
    /// The Okta connection: id, name, org, the org's key, the GTR endpoint.
    okta: (ConnectionId, ConnectionName, String, Arc<Signer>, String),
    /// The apps with back-channel logout, and their receiver.
    apps: Vec<ClientId>,
    sink: Sink,
}

/// One side of the comparison.
struct Target {
    label: &'static str,
    base: String,
    client: (String, String),
    token_path: &'static str,
    cc_form: String,
    /// The refresh target, in multiples of the peer's rate (Latch only).
    refresh_goal: f64,
    latch: Option<LatchSide>,
    _proc: Proc,
    /// After the process: its keys go once it has stopped writing them.
    _redis: Option<RedisKeys>,
}

impl Target {
    /// The CPU counters of this target's process, and of its stores when they run apart
    /// (PostgreSQL + Redis).
    fn cpu_meter(&self) -> CpuMeter {
        CpuMeter::start(self._proc.pid(), self._redis.is_some())
    }

    /// Fresh refresh tokens for one round.
    async fn refresh_tokens(&self, http: &reqwest::Client) -> Vec<String> {
        let Some(l) = &self.latch else {
            let res = http
                .post(format!("{}/bench/mint?n={REFRESH_TOKENS}", self.base))
                .send()
                .await
                .expect("peer mints refresh tokens");
            assert_eq!(res.status(), 200, "peer: /bench/mint");
            let text = res.text().await.expect("minted tokens");
            return text.lines().map(str::to_owned).collect();
        };
        // Four sign-ins at a time, each a session of its own.
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (http, base, client, emails) = (
                http.clone(),
                self.base.clone(),
                self.client.clone(),
                l.emails.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (w..REFRESH_TOKENS).step_by(4) {
                    let email = &emails[i % emails.len()];
                    match sign_in(&http, &base, &client, email).await {
                        Ok(t) => out.push(t),
                        Err(e) => panic!("sign-in at {base} failed: {e}"),
                    }
                }
                out
            }));
        }
        let mut tokens = Vec::new();
        for t in tasks {
            tokens.extend(t.await.expect("sign-ins"));
        }
        tokens
    }
}

async fn start_peer() -> Target {
    let port = free_port();
    let mut child = Command::new("node")
        .arg(peers_dir().join("bench_provider.mjs"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (scripts/install-peers.sh)");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("ready "));
        // The rest of its output, drained so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ready
    })
    .await
    .expect("peer output");
    assert!(ready, "peers/bench_provider.mjs exited before it was ready");
    let base = format!("http://127.0.0.1:{port}");
    Target {
        label: "oidc-provider",
        cc_form: format!(
            "grant_type=client_credentials&resource={}&scope={}&client_id={}&client_secret={}",
            enc(PEER_API),
            enc(PEER_API_SCOPE),
            PEER_CLIENT.0,
            PEER_CLIENT.1
        ),
        client: (PEER_CLIENT.0.into(), PEER_CLIENT.1.into()),
        token_path: "/token",
        refresh_goal: 0.0,
        base,
        latch: None,
        _proc: proc,
        _redis: None,
    }
}

/// Starts `latch serve` (PostgreSQL + Redis when `pg` is given, else the embedded default) and
/// sets it up through the management API and its store.
async fn start_latch(
    label: &'static str,
    http: &reqwest::Client,
    dir: &Path,
    pg: Option<(&str, &str)>,
) -> Target {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("latch-peer:{}:", unique());
    let mut cmd = Command::new(BIN);
    // Only the settings given here.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LATCH_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .env("LATCH_ISSUER", &base)
        .env("LATCH_BIND", format!("127.0.0.1:{port}"))
        .env("LATCH_DATA_DIR", dir)
        .env("LATCH_SECRET_KEY", SECRET_KEY)
        .env("LATCH_ADMIN_TOKEN", TOKEN)
        // LATCH_BENCH_LOG: the servers' RUST_LOG, their log (on stdout) shown (profiling).
        .env(
            "RUST_LOG",
            std::env::var("LATCH_BENCH_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(if std::env::var_os("LATCH_BENCH_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit());
    if let Some((db, redis)) = pg {
        cmd.env("LATCH_DATABASE_URL", db)
            .env("LATCH_REDIS_URL", redis)
            .env("LATCH_REDIS_PREFIX", &prefix);
    }
    let mut proc = Proc(cmd.spawn().expect("latch starts"));
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("{label}: latch exited while starting: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{label}: latch did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The app (all three grants), its grant on the management API, the users.
    let app = api(
        http,
        &base,
        TOKEN,
        "POST",
        "/api/v2/clients",
        json!({"name": "Bench app", "app_type": "regular_web", "callbacks": [CB],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_post", "jwt_configuration": {"alg": "RS256"}}),
    )
    .await;
    let client = (
        app["client_id"].as_str().expect("client_id").to_owned(),
        app["client_secret"].as_str().expect("secret").to_owned(),
    );
    let audience = format!("{base}/api/v2/");
    api(
        http,
        &base,
        TOKEN,
        "POST",
        "/api/v2/client-grants",
        json!({"client_id": client.0, "audience": audience, "scope": [LATCH_API_SCOPE]}),
    )
    .await;
    let run = unique();
    let mut emails = Vec::new();
    for i in 0..USERS {
        let email = format!("bench-{run}-{i}@example.com");
        api(
            http,
            &base,
            TOKEN,
            "POST",
            "/api/v2/users",
            json!({"connection": "database", "email": email, "password": PASSWORD}),
        )
        .await;
        emails.push(email);
    }
    // The apps with back-channel logout, and the Okta connection with Universal Logout.
    let sink = Sink::default();
    let bc = sink.start().await;
    let mut apps = Vec::new();
    for k in 0..GTR_APPS {
        let a = api(
            http,
            &base,
            TOKEN,
            "POST",
            "/api/v2/clients",
            json!({"name": format!("Back-channel app {k}"), "callbacks": [CB],
                "oidc_logout": {"backchannel_logout_urls": [bc], "backchannel_logout_session_required": true}}),
        )
        .await;
        apps.push(ClientId::new(a["client_id"].as_str().expect("client_id")));
    }
    let org_key = Arc::new(Signer::generate(SigningAlg::RS256).expect("key"));
    let org = okta_org(&org_key).await;
    let okta_name = ConnectionName::new(format!("okta-{}", unique()));
    let conn = api(
        http,
        &base,
        TOKEN,
        "POST",
        "/api/v2/connections",
        json!({"name": okta_name.as_str(), "strategy": "okta", "options": {
            "domain": org, "client_id": "0oaBENCH", "client_secret": "upstream-secret",
            "global_token_revocation_enabled": true}}),
    )
    .await;
    let okta_id = ConnectionId::new(conn["id"].as_str().expect("connection id"));
    let endpoint = latch_gtr::endpoint_url(&base, &okta_name);

    // Its store and session store, opened here too (for the GTR users, and the key ring).
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(SECRET_KEY)
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let url = match pg {
        Some((db, _)) => db.to_owned(),
        None => dir.join("latch.db").to_string_lossy().into_owned(),
    };
    let store: Arc<dyn Store> = Arc::new(
        latch_store::SqlStore::open(
            // Latch checkpoints its own file.
            latch_store::StoreOptions {
                sqlite_checkpoints: false,
                ..latch_store::StoreOptions::new(url)
            },
            latch_store::Cipher::new(&key).expect("cipher"),
        )
        .await
        .expect("store"),
    );
    let sessions: Arc<dyn SessionStore> = match pg {
        Some((_, redis)) => Arc::new(
            latch_session::RedisSessionStore::connect(redis, prefix.clone())
                .await
                .expect("Redis sessions"),
        ),
        None => Arc::new(
            latch_session::EmbeddedSessionStore::open_without_checkpoints(&dir.join("sessions.db"))
                .await
                .expect("embedded sessions"),
        ),
    };
    Target {
        label,
        cc_form: format!(
            "grant_type=client_credentials&audience={}&scope={}&client_id={}&client_secret={}",
            enc(&audience),
            enc(LATCH_API_SCOPE),
            enc(&client.0),
            enc(&client.1)
        ),
        client,
        token_path: "/oauth/token",
        refresh_goal: if pg.is_some() { 1.5 } else { 2.0 },
        base,
        latch: Some(LatchSide {
            store,
            sessions,
            emails,
            okta: (okta_id, okta_name, org, org_key, endpoint),
            apps,
            sink,
        }),
        _proc: proc,
        _redis: pg.map(|(_, redis)| RedisKeys {
            url: redis.to_owned(),
            prefix,
        }),
    }
}

/// The key ring Latch signs with, loaded from its store.
async fn key_ring(store: &Arc<dyn Store>) -> Arc<latch_jose::KeyRing> {
    Arc::new(
        latch_jose::KeyRing::load_current(store.clone(), Arc::new(SystemClock))
            .await
            .expect("key ring"),
    )
}

/// RS256 signatures per second on 2 threads for 2 s, through `keys`.
async fn signing_rate(keys: &Arc<latch_jose::KeyRing>) -> f64 {
    let keys = keys.clone();
    tokio::task::spawn_blocking(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let claims = json!({"iss": "https://latch.example", "sub": "auth0|bench", "aud": "x",
            "iat": 1, "exp": 2, "jti": "j", "scope": SCOPE});
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (keys, stop, count, claims) =
                    (keys.clone(), stop.clone(), count.clone(), claims.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        keys.sign(SigningAlg::RS256, "JWT", &claims).expect("sign");
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("signer");
        }
        count.load(Ordering::Relaxed) as f64 / 2.0
    })
    .await
    .expect("signing rate")
}

#[derive(Clone, Copy, PartialEq)]
enum Grant {
    Refresh,
    ClientCredentials,
}

impl Grant {
    fn name(self) -> &'static str {
        match self {
            Grant::Refresh => "refresh",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

/// One wrk round of `grant` against `t`.
async fn grant_round(
    t: &Target,
    grant: Grant,
    secs: u64,
    dir: &Path,
    http: &reqwest::Client,
) -> Run {
    let path = ("BENCH_PATH", t.token_path.to_owned());
    match grant {
        Grant::Refresh => {
            let tokens = t.refresh_tokens(http).await;
            let input = dir.join("refresh");
            write_split(&input, &tokens);
            let form = format!(
                "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token=",
                enc(&t.client.0),
                enc(&t.client.1)
            );
            let input = ("BENCH_INPUT", input.to_string_lossy().into_owned());
            // Counted from here: the tokens' sign-ins above hashed passwords.
            let cpu = t.cpu_meter();
            wrk(
                "refresh.lua",
                &t.base,
                secs,
                &[path, input, ("BENCH_FORM", form)],
            )
            .await
            .with_cpu(&cpu)
        }
        Grant::ClientCredentials => {
            let form = ("BENCH_FORM", t.cc_form.clone());
            let cpu = t.cpu_meter();
            wrk("client_credentials.lua", &t.base, secs, &[path, form])
                .await
                .with_cpu(&cpu)
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The medians of the valid rounds' CPU per request, when measured.
fn cpu_medians(runs: &[Run]) -> Option<Cpu> {
    let cpu: Vec<Cpu> = runs
        .iter()
        .filter(|r| r.valid())
        .filter_map(|r| r.cpu)
        .collect();
    Some(Cpu {
        own_us: median(cpu.iter().map(|c| c.own_us).collect())?,
        stores_us: median(cpu.iter().filter_map(|c| c.stores_us).collect()),
    })
}

/// The medians of the valid rounds: (req/s, p99 ms, valid rounds).
fn medians(runs: &[Run]) -> (Option<f64>, Option<f64>, usize) {
    let valid: Vec<&Run> = runs.iter().filter(|r| r.valid()).collect();
    (
        median(valid.iter().map(|r| r.rate()).collect()),
        median(valid.iter().map(|r| r.p99_ms).collect()),
        valid.len(),
    )
}

/// One line of the closing table.
struct Row {
    scenario: String,
    target: &'static str,
    rate: Option<f64>,
    p99: Option<f64>,
    note: String,
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// A grant scenario: warm-ups, the signing rate (`store`'s key ring), interleaved rounds,
/// medians, ratios to the peer, shares of the signing rate. Returns the rows of the closing
/// table, whether every round passed, and the signing rate.
async fn compare(
    grant: Grant,
    targets: &[Target],
    s: &Settings,
    dir: &Path,
    http: &reqwest::Client,
    store: &Arc<dyn Store>,
) -> (Vec<Row>, bool, f64) {
    println!();
    println!(
        "== {}: {} rounds of {} s, interleaved ==",
        grant.name(),
        s.rounds,
        s.seconds
    );
    if grant == Grant::Refresh {
        println!(
            "  ({REFRESH_TOKENS} fresh refresh tokens per round and target; Latch rotates each use, with reuse detection; oidc-provider keeps its default policy, which does not rotate a confidential client's tokens)"
        );
    }
    for t in targets {
        let r = grant_round(t, grant, WARMUP_SECS, dir, http).await;
        println!("  warm-up  {:<16} {}", t.label, r.text());
    }
    // The signing rate is measured just before each of Latch's rounds (after the warm-ups: a
    // fresh instance generates its next keys in the background at first), and each round's
    // share of it is taken against the measurement beside it: a shared host's speed moves by a
    // fifth from one minute to the next, which one measurement for all rounds would count as
    // Latch's.
    let keys = key_ring(store).await;
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    let mut signs: Vec<Vec<f64>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 1..=s.rounds {
        for (i, t) in targets.iter().enumerate() {
            let sign = match t.latch {
                Some(_) => Some(signing_rate(&keys).await),
                None => None,
            };
            let r = grant_round(t, grant, s.seconds, dir, http).await;
            let beside = sign.map_or_else(String::new, |sign| {
                format!(
                    "  [RS256 just before: {sign:.0}/s, this round {:.0}% of it]",
                    100.0 * r.rate() / sign
                )
            });
            println!("  round {round}  {:<16} {}{beside}", t.label, r.text());
            signs[i].extend(sign);
            runs[i].push(r);
        }
    }
    let all_ok = runs.iter().flatten().all(Run::valid);
    let peer = medians(&runs[0]).0;
    let sign = median(signs.iter().flatten().copied().collect()).unwrap_or(f64::NAN);
    println!(
        "  RS256 signing rate in these rounds (this process, 2 threads, 2 s before each of Latch's rounds, Latch's key ring): median {sign:.0}/s"
    );
    println!("  medians:");
    let mut rows = Vec::new();
    for ((t, r), sg) in targets.iter().zip(&runs).zip(&signs) {
        let (rate, p99, valid) = medians(r);
        // Latch: the median of its rounds' shares of the rate measured beside each; the peer:
        // its median rate against the median measurement.
        let share = if sg.is_empty() {
            rate.map(|r| 100.0 * r / sign)
        } else {
            median(
                r.iter()
                    .zip(sg)
                    .filter(|(r, _)| r.valid())
                    .map(|(r, s)| 100.0 * r.rate() / s)
                    .collect(),
            )
        };
        let mut note = format!("{}% of RS256", opt(share, 0));
        let mut line = format!(
            "    {:<16} {:>7} req/s  p99 {:>6} ms  ({valid}/{} valid rounds)  {} of the RS256 rate",
            t.label,
            opt(rate, 0),
            opt(p99, 2),
            r.len(),
            opt(share.map(|s| s / 100.0), 2)
        );
        if let Some(c) = cpu_medians(r) {
            line += &format!(", {}", c.text());
        }
        if t.latch.is_some() {
            let ratio = rate.zip(peer).map(|(l, p)| l / p);
            let want = match grant {
                Grant::Refresh => t.refresh_goal,
                Grant::ClientCredentials => 1.5,
            };
            let mut verdict = format!(
                "{}x oidc-provider (target >= {want}x: {})",
                opt(ratio, 2),
                met(ratio.is_some_and(|r| r >= want))
            );
            if grant == Grant::ClientCredentials {
                verdict += &format!(
                    "; {}% of RS256 (target >= 80%: {})",
                    opt(share, 0),
                    met(share.is_some_and(|s| s >= 80.0))
                );
            }
            line += &format!("  | {verdict}");
            note = verdict;
        }
        println!("{line}");
        rows.push(Row {
            scenario: grant.name().to_owned(),
            target: t.label,
            rate,
            p99,
            note,
        });
    }
    if !all_ok {
        println!(
            "  *** {}: SOME ROUNDS FAILED OR WERE INVALID (see above) ***",
            grant.name()
        );
    }
    (rows, all_ok, sign)
}

impl LatchSide {
    /// A user of the Okta connection for each of `subjects`, each with `per_user` live sessions
    /// (joined by the bench app when `per_user` is 1, else session `k` by back-channel app
    /// `k % GTR_APPS`), written straight into the store and the session store, 16 at a time:
    /// their ids.
    async fn seed(&self, subjects: &[String], per_user: usize, web: &ClientId) -> Vec<UserId> {
        let subjects: Arc<[String]> = subjects.into();
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (store, sessions) = (self.store.clone(), self.sessions.clone());
            let (conn, name, org) = (
                self.okta.0.clone(),
                self.okta.1.clone(),
                self.okta.2.clone(),
            );
            let apps = if per_user == 1 {
                vec![web.clone()]
            } else {
                self.apps.clone()
            };
            let subjects = subjects.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for subject in subjects.iter().skip(w).step_by(16) {
                    let user = fixtures::user();
                    let now = fixtures::now();
                    let identity = Identity {
                        user_id: user.user_id.clone(),
                        connection_id: conn.clone(),
                        issuer: org.clone(),
                        subject: subject.clone(),
                        password_hash: None,
                        profile: serde_json::Map::new(),
                        created_at: now,
                        updated_at: now,
                    };
                    store
                        .insert_user_with_identity(&user, &identity)
                        .await
                        .expect("user");
                    for k in 0..per_user {
                        let mut s = fixtures::session(&user.user_id);
                        s.connection = name.clone();
                        s.clients = vec![SessionClient::oidc(
                            apps[k % apps.len()].clone(),
                            s.sid.clone(),
                            now,
                        )];
                        sessions.insert_session(&s).await.expect("session");
                    }
                    out.push(user.user_id);
                }
                out
            }));
        }
        let mut all = Vec::with_capacity(subjects.len());
        for t in tasks {
            all.extend(t.await.expect("seeding"));
        }
        all
    }

    /// One GTR request a subject (`path<TAB>token<TAB>body`), each token with its own `jti`,
    /// signed on 2 threads.
    async fn gtr_requests(&self, subjects: Vec<String>) -> Vec<String> {
        let (org, key, endpoint) = (
            self.okta.2.clone(),
            self.okta.3.clone(),
            self.okta.4.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let path = url::Url::parse(&endpoint)
                .map(|u| u.path().to_owned())
                .expect("endpoint");
            let iat = time::OffsetDateTime::now_utc().unix_timestamp();
            let half = subjects.len().div_ceil(2).max(1);
            std::thread::scope(|scope| {
                let parts: Vec<_> = subjects
                    .chunks(half)
                    .map(|part| {
                        let (org, key, endpoint, path) = (&org, &key, &endpoint, &path);
                        scope.spawn(move || {
                            part.iter()
                                .map(|sub| {
                                    let claims = json!({"iss": org, "sub": "0oaBENCH", "aud": endpoint,
                                        "iat": iat, "exp": iat + latch_gtr::MAX_LIFETIME,
                                        "jti": latch_jose::random_token(16)});
                                    let token = sign_jws(key, SigningAlg::RS256, &key.thumbprint(),
                                        latch_gtr::TYP, &claims).expect("sign");
                                    let body = json!({"subject": {"format": "iss_sub", "iss": org, "sub": sub}});
                                    format!("{path}\t{token}\t{body}")
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().expect("signer"))
                    .collect()
            })
        })
        .await
        .expect("signing")
    }
}

/// One GTR round: seeds `users` users with `per_user` sessions, signs their requests, runs wrk,
/// and (with back-channel apps) waits for every delivery of the sessions it ended.
async fn gtr_round(
    t: &Target,
    users: usize,
    per_user: usize,
    secs: u64,
    dir: &Path,
) -> (Run, String) {
    let l = t.latch.as_ref().expect("a Latch target");
    let web = ClientId::new(&t.client.0);
    let run = unique();
    let subjects: Vec<String> = (0..users).map(|i| format!("00u{run}x{i}")).collect();
    // Seeding waits on the databases, signing is CPU: side by side.
    let t0 = Instant::now();
    let (seeded, lines) = tokio::join!(
        l.seed(&subjects, per_user, &web),
        l.gtr_requests(subjects.clone())
    );
    let prepared_in = t0.elapsed().as_secs_f64();
    let input = dir.join("gtr");
    write_split(&input, &lines);
    let before = l.sink.received();
    let env = [
        ("BENCH_INPUT", input.to_string_lossy().into_owned()),
        ("BENCH_EXPECT", "204".to_owned()),
    ];
    // Counted during the load only: a 20-session round's deliveries go on after it.
    let cpu = t.cpu_meter();
    let run = wrk("gtr.lua", &t.base, secs, &env).await.with_cpu(&cpu);
    let mut note = format!(
        "[{users} users x {per_user} session(s) seeded and their requests signed in {prepared_in:.1} s]"
    );
    if per_user > 1 {
        // Every session of a user whose GTR was handled has ended: its deliveries are awaited.
        let ended_at = Instant::now();
        let now = fixtures::now();
        let mut ended = 0u64;
        for u in &seeded {
            if l.sessions
                .list_user_sessions(u, now)
                .await
                .expect("sessions")
                .is_empty()
            {
                ended += 1;
            }
        }
        let expected = ended * per_user as u64;
        let all = l.sink.wait_for(before + expected, DELIVERIES_WITHIN).await;
        let got = l.sink.received() - before;
        note = if all {
            format!(
                "{note} all {expected} back-channel deliveries of the {ended} users' sessions received {:.2} s after the load",
                ended_at.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "{note} *** only {got} of {expected} back-channel deliveries received within {} s ***",
                DELIVERIES_WITHIN.as_secs()
            )
        };
    }
    (run, note)
}

/// A GTR scenario on the Latch targets: warm-ups that size the rounds, interleaved rounds,
/// medians against the targets.
async fn gtr_scenario(
    targets: &[&Target],
    per_user: usize,
    s: &Settings,
    dir: &Path,
) -> (Vec<Row>, bool) {
    let (name, p99_target, rate_target) = if per_user == 1 {
        ("GTR, 1 session/user".to_owned(), 10.0, Some(5000.0))
    } else {
        (
            format!("GTR, {per_user} sessions in {GTR_APPS} apps/user"),
            20.0,
            None,
        )
    };
    println!();
    println!(
        "== {name}: {} rounds of {} s, interleaved; each request a distinct pre-signed Okta request for a distinct user ==",
        s.rounds, s.seconds
    );
    if per_user > 1 {
        println!(
            "  (each user's sessions joined by {GTR_APPS} apps with back-channel logout to a receiver in this process: after each round every delivery of the ended sessions is awaited)"
        );
    }
    // The warm-up measures the rate the rounds' requests are prepared for: its requests run out
    // (the round stops) until it is given more than it can use.
    let mut estimate = Vec::new();
    for t in targets {
        let mut users = if per_user == 1 { 4000 } else { 800 };
        loop {
            let (r, note) = gtr_round(t, users, per_user, WARMUP_SECS, dir).await;
            if r.dry == 0 || users >= 1_000_000 {
                println!("  warm-up  {:<16} {} {note}", t.label, r.text());
                estimate.push(r.rate());
                break;
            }
            println!(
                "  warm-up  {:<16} its {users} requests ran out before the {WARMUP_SECS} s: again with twice as many",
                t.label
            );
            users *= 2;
        }
    }
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    let mut notes_ok = true;
    for round in 1..=s.rounds {
        for (i, t) in targets.iter().enumerate() {
            let headroom = if round == 1 {
                GTR_FIRST_HEADROOM
            } else {
                GTR_HEADROOM
            };
            let users = (estimate[i] * s.seconds as f64 * headroom) as usize + 2 * connections();
            let (r, note) = gtr_round(t, users, per_user, s.seconds, dir).await;
            println!("  round {round}  {:<16} {} {note}", t.label, r.text());
            notes_ok &= !note.contains("***");
            if r.dry > 0 {
                estimate[i] *= 2.0;
            } else {
                estimate[i] = estimate[i].max(r.rate());
            }
            runs[i].push(r);
        }
    }
    let all_ok = notes_ok && runs.iter().flatten().all(Run::valid);
    println!("  medians:");
    let mut rows = Vec::new();
    for (t, r) in targets.iter().zip(&runs) {
        let (rate, p99, valid) = medians(r);
        let mut verdict = format!(
            "p99 <= {p99_target} ms: {}",
            met(p99.is_some_and(|p| p <= p99_target))
        );
        if let Some(want) = rate_target {
            verdict = format!(
                ">= {want:.0}/s: {}; {verdict}",
                met(rate.is_some_and(|r| r >= want))
            );
        }
        if connections() != 16 {
            verdict = format!(
                "{verdict} (the targets are at 16 connections; this run: {})",
                connections()
            );
        }
        println!(
            "    {:<16} {:>7} req/s  p99 {:>6} ms  ({valid}/{} valid rounds)  | target {verdict}",
            t.label,
            opt(rate, 0),
            opt(p99, 2),
            r.len()
        );
        rows.push(Row {
            scenario: name.clone(),
            target: t.label,
            rate,
            p99,
            note: format!("target {verdict}"),
        });
    }
    if !all_ok {
        println!("  *** {name}: SOME ROUNDS FAILED OR WERE INVALID (see above) ***");
    }
    (rows, all_ok)
}

async fn bench(s: &Settings, pg: Option<(String, String)>) -> bool {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let dir = TempDir::new();
    let (latch_pg_dir, latch_embedded_dir) = (TempDir::new(), TempDir::new());
    let mut targets = vec![start_peer().await];
    if let Some((db, redis)) = &pg {
        targets.push(
            start_latch(
                "latch pg+redis",
                &http,
                latch_pg_dir.path(),
                Some((db.as_str(), redis.as_str())),
            )
            .await,
        );
    } else {
        println!(
            "peer: *** SKIPPING Latch on PostgreSQL + Redis: set LATCH_BENCH_DATABASE_URL and LATCH_BENCH_REDIS_URL (or the LATCH_TEST_* ones) ***"
        );
    }
    targets.push(start_latch("latch embedded", &http, latch_embedded_dir.path(), None).await);
    let store = targets[1].latch.as_ref().expect("latch").store.clone();
    println!(
        "peer: oidc-provider {} (in-memory adapter, its default refresh policy: no rotation for a confidential client) at {}; {}",
        oidc_provider_version(),
        targets[0].base,
        targets[1..]
            .iter()
            .map(|t| format!("{} at {}", t.label, t.base))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "peer: wrk -t{} -c{}, {} s rounds, {} rounds per target, one {WARMUP_SECS}-s warm-up per target; {} machine cores",
        threads(),
        connections(),
        s.seconds,
        s.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Ok(ms) = std::env::var("LATCH_BENCH_DELAY_MS") {
        println!(
            "peer: GTR requests paced: {ms} ms before each request of a connection (LATCH_BENCH_DELAY_MS)"
        );
    }
    let mut rows = Vec::new();
    let mut ok = true;
    let mut signs = Vec::new();
    // LATCH_BENCH_ONLY=refresh,client_credentials,gtr1,gtr20 runs those scenarios (profiling).
    let only = std::env::var("LATCH_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    for grant in [Grant::Refresh, Grant::ClientCredentials] {
        let name = match grant {
            Grant::Refresh => "refresh",
            Grant::ClientCredentials => "client_credentials",
        };
        if !wanted(name) {
            continue;
        }
        let (r, good, sign) = compare(grant, &targets, s, dir.path(), &http, &store).await;
        signs.push(sign);
        rows.extend(r);
        ok &= good;
    }
    let latches: Vec<&Target> = targets.iter().filter(|t| t.latch.is_some()).collect();
    for per_user in [1, GTR_SESSIONS] {
        if !wanted(&format!("gtr{per_user}")) {
            continue;
        }
        let (r, good) = gtr_scenario(&latches, per_user, s, dir.path()).await;
        rows.extend(r);
        ok &= good;
    }

    println!();
    println!(
        "== summary (medians of the valid rounds; median RS256 signing rate per grant scenario: {} /s) ==",
        signs
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {:<36} {:<16} {:>9} {:>9}  vs. targets",
        "scenario", "target", "req/s", "p99 ms"
    );
    for r in &rows {
        println!(
            "  {:<36} {:<16} {:>9} {:>9}  {}",
            r.scenario,
            r.target,
            opt(r.rate, 0),
            opt(r.p99, 2),
            r.note
        );
    }
    if !ok {
        println!("peer: *** SOME ROUNDS FAILED OR WERE INVALID: see the rounds above ***");
    }
    drop(targets);
    ok
}

fn oidc_provider_version() -> String {
    std::fs::read_to_string(peers_dir().join("node_modules/oidc-provider/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var("LATCH_BENCH_PEER").as_deref() != Ok("1") {
        println!("peer: skipped: run it with `cargo xtask bench --peer`");
        return;
    }
    let settings = Settings {
        seconds: setting("LATCH_BENCH_SECONDS", 10),
        rounds: setting("LATCH_BENCH_ROUNDS", 3) as usize,
    };
    let var = |bench: &str, test: &str| {
        std::env::var(bench)
            .or_else(|_| std::env::var(test))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let db = var("LATCH_BENCH_DATABASE_URL", "LATCH_TEST_DATABASE_URL");
    let redis = var("LATCH_BENCH_REDIS_URL", "LATCH_TEST_REDIS_URL");
    let rt = common::runtime();
    let ok = rt.block_on(async {
        let fresh = match (db, redis) {
            (Some(db), Some(redis)) => Some((
                tokio::task::spawn_blocking(move || fresh_database(&db))
                    .await
                    .expect("database"),
                redis,
            )),
            _ => None,
        };
        let pg = fresh.as_ref().map(|(f, r)| (f.url.clone(), r.clone()));
        let ok = bench(&settings, pg).await;
        if let Some((fresh, _)) = fresh {
            tokio::task::spawn_blocking(move || drop(fresh))
                .await
                .expect("drop database");
        }
        ok
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    if !ok {
        std::process::exit(1);
    }
}
