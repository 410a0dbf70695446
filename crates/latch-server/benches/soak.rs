//! Soak (issue 18): a bounded mixed load against three `latch serve` processes (bench profile)
//! on one fresh PostgreSQL database and one Redis prefix, behind a loopback round-robin TCP
//! proxy whose URL is their issuer. Workers loop, at a bounded total request rate: sign in
//! through the database connection's form → code → tokens → `/userinfo` → two refreshes → an
//! RP-initiated logout (`/oidc/logout` with the session cookie and `id_token_hint`) or, every
//! `LATCH_SOAK_GTR_EVERY`th round, a signed Global Token Revocation of the user from a loopback
//! "Okta org". The app's back-channel logout endpoint is a loopback receiver: every session the
//! load ended must get its logout token.
//!
//! Every 10 s one line: elapsed, requests, failures, each process's RSS (VmRSS read every
//! second, the 10 s's median), pending outbox deliveries, logout tokens received of expected,
//! the 10 s's p99. Exits 1 when any request gets an answer the scenario does not expect (none is
//! expected to fail), a process exits, a process's median RSS over the last 10 s of the load is
//! more than 10% above its median over the 10 s up to the baseline (1 minute in), or within 60 s
//! after the load the outbox has not drained (nothing pending, nothing failed, every expected
//! logout token received).
//!
//! `cargo xtask soak [--minutes N]` runs it; it runs only with `LATCH_SOAK=1`, so a plain
//! `cargo bench` skips it. Settings (environment): `LATCH_SOAK_MINUTES` (30),
//! `LATCH_SOAK_RATE` (requests/s, 60), `LATCH_SOAK_WORKERS` (8), `LATCH_SOAK_GTR_EVERY` (4),
//! `LATCH_SOAK_BASELINE_SECONDS` (60). PostgreSQL and Redis: `LATCH_BENCH_DATABASE_URL` /
//! `LATCH_BENCH_REDIS_URL`, else the `LATCH_TEST_*` ones; both are required.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use latch_core::model::{DeliveryQuery, DeliveryState, Identity, SigningAlg};
use latch_core::store::Store;
use latch_core::{ConnectionId, ConnectionName, UserId};
use latch_jose::keys::{Signer, sign_jws};
use latch_testkit::env::{PgDatabase, TempDir, unique};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

mod common;
use common::{SECRET_KEY, api, free_port, okta_org, read_request};

const BIN: &str = env!("CARGO_BIN_EXE_latch");
const TOKEN: &str = "soak-admin-token-0123456789";
const PASSWORD: &str = "Soak-Password-3";
const CB: &str = "http://127.0.0.1:9/cb";
const BYE: &str = "http://127.0.0.1:9/bye";
const INSTANCES: usize = 3;
/// Users per worker, signed in in turn.
const USERS_PER_WORKER: usize = 4;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// RSS growth allowed from the baseline sample to the end of the load.
const RSS_GROWTH_LIMIT: f64 = 0.10;
/// How long the outbox may take to drain after the load.
const DRAIN_WITHIN: Duration = Duration::from_secs(60);
/// Any one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Failures printed as they happen (all are counted).
const FAILURES_SHOWN: usize = 10;

struct Settings {
    load: Duration,
    rate: f64,
    workers: usize,
    gtr_every: u64,
    baseline: Duration,
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let minutes: f64 = setting("LATCH_SOAK_MINUTES", 30.0)?;
        let rate: f64 = setting("LATCH_SOAK_RATE", 60.0)?;
        let workers: usize = setting("LATCH_SOAK_WORKERS", 8)?;
        let gtr_every: u64 = setting("LATCH_SOAK_GTR_EVERY", 4)?;
        let baseline: u64 = setting("LATCH_SOAK_BASELINE_SECONDS", 60)?;
        if !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
            return Err("LATCH_SOAK_MINUTES must be above 0 and at most 1440".into());
        }
        if !(1.0..=10_000.0).contains(&rate) {
            return Err("LATCH_SOAK_RATE must be 1 to 10000 requests/s".into());
        }
        if !(1..=256).contains(&workers) || gtr_every == 0 {
            return Err(
                "LATCH_SOAK_WORKERS must be 1 to 256, LATCH_SOAK_GTR_EVERY at least 1".into(),
            );
        }
        let load = Duration::from_secs_f64(minutes * 60.0);
        let baseline = Duration::from_secs(baseline);
        if baseline.is_zero() || baseline >= load {
            return Err(format!(
                "LATCH_SOAK_BASELINE_SECONDS ({} s) must be above 0 and below the load's {} s",
                baseline.as_secs(),
                load.as_secs()
            ));
        }
        Ok(Self {
            load,
            rate,
            workers,
            gtr_every,
            baseline,
        })
    }
}

/// One `latch serve`, killed on drop.
struct Instance {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Instance {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let port = free_port();
        let mut cmd = Command::new(BIN);
        // Only the settings given here: not this process's LATCH_SOAK_* / LATCH_BENCH_*.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LATCH_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("serve")
            .envs(env.iter().copied())
            .env("LATCH_DATA_DIR", dir.path())
            .env("LATCH_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("latch starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("latch exited while starting: {status}");
            }
            assert!(Instant::now() < deadline, "latch did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A process's resident memory (VmRSS), KiB; `None` once it is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback round-robin TCP proxy: each connection goes to the next backend in turn, past any
/// that refuses it.
async fn proxy(listener: tokio::net::TcpListener, backends: Vec<SocketAddr>) {
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((mut inbound, _)) = listener.accept().await {
        let (next, backends) = (next.clone(), backends.clone());
        tokio::spawn(async move {
            let first = next.fetch_add(1, Ordering::Relaxed);
            for k in 0..backends.len() {
                let to = backends[(first + k) % backends.len()];
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

/// The claims of a JWT, unverified (`None` when it is not one).
fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// The app's back-channel logout endpoint: counts the logout tokens it gets, by `sid`.
#[derive(Clone, Default)]
struct Receiver {
    by_sid: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/bc", listener.local_addr().expect("addr"));
        let by_sid = self.by_sid.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let by_sid = by_sid.clone();
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut sock).await else {
                        return;
                    };
                    let sid = url::form_urlencoded::parse(&body)
                        .find(|(k, _)| k == "logout_token")
                        .and_then(|(_, t)| claims(&t))
                        .and_then(|c| c["sid"].as_str().map(str::to_owned));
                    if let Some(sid) = sid {
                        *by_sid.lock().expect("receiver").entry(sid).or_default() += 1;
                    }
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        url
    }

    /// (distinct sids, tokens) received.
    fn counts(&self) -> (usize, u64) {
        let m = self.by_sid.lock().expect("receiver");
        (m.len(), m.values().map(|n| u64::from(*n)).sum())
    }

    /// How many of `expected` have not been received.
    fn missing(&self, expected: &HashSet<String>) -> usize {
        let m = self.by_sid.lock().expect("receiver");
        expected.iter().filter(|s| !m.contains_key(*s)).count()
    }
}

/// Spaces requests `gap` apart across all workers; a late request does not make the next ones
/// burst.
struct Pacer {
    next: Mutex<Instant>,
    gap: Duration,
}

impl Pacer {
    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().expect("pacer");
            let at = (*next).max(Instant::now());
            *next = at + self.gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The scenario's requests, counted apart.
#[derive(Clone, Copy)]
enum Kind {
    Authorize,
    Login,
    Code,
    Userinfo,
    Refresh,
    Logout,
    Gtr,
}

const KINDS: [&str; 7] = [
    "authorize",
    "login",
    "code",
    "userinfo",
    "refresh",
    "logout",
    "gtr",
];

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

struct Stats {
    requests: [AtomicU64; 7],
    failures: AtomicU64,
    shown: Mutex<Vec<String>>,
    /// Latencies (µs) since the last sample.
    window: Mutex<Histogram<u64>>,
    /// Rounds finished by RP-initiated logout and by GTR.
    logouts: AtomicU64,
    gtrs: AtomicU64,
    /// The sessions the load ended, by `sid`: each must get its logout token.
    expected: Mutex<HashSet<String>>,
}

impl Stats {
    fn new() -> Self {
        Self {
            requests: Default::default(),
            failures: AtomicU64::new(0),
            shown: Mutex::default(),
            window: Mutex::new(new_histogram()),
            logouts: AtomicU64::new(0),
            gtrs: AtomicU64::new(0),
            expected: Mutex::default(),
        }
    }

    fn requests(&self) -> u64 {
        self.requests
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    fn fail(&self, what: String) -> Failed {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        if (n as usize) < FAILURES_SHOWN {
            eprintln!("soak: FAILURE {}: {what}", n + 1);
            self.shown.lock().expect("failures").push(what);
        }
        Failed
    }
}

/// A round stopped at a failure (already counted).
struct Failed;

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of each cookie set with a value.
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .filter(|c| c.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
            .collect()
    }

    fn brief(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        match self.location() {
            "" => format!("{} {body}", self.status),
            to => format!("{} to {to} {body}", self.status),
        }
    }
}

/// What the workers share.
struct Load {
    issuer: String,
    /// One connection per request (so the proxy spreads them over the instances); redirects
    /// are not followed.
    http: reqwest::Client,
    pacer: Pacer,
    stats: Stats,
    stop: AtomicBool,
    app: (String, String),
    gtr_every: u64,
    /// The GTR connection's name, endpoint, org and the org's signing key.
    okta: (String, String, String, Signer),
}

struct User {
    id: String,
    email: String,
    /// Its subject at the Okta connection.
    okta_sub: String,
}

impl Load {
    /// Sends one request of `kind` (paced, timed, counted) and reads the whole answer.
    async fn send(&self, kind: Kind, req: reqwest::RequestBuilder) -> Result<Answer, Failed> {
        self.pacer.wait().await;
        let t0 = Instant::now();
        let res = req.send().await;
        let answer = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                r.text().await.map(|body| Answer {
                    status,
                    headers,
                    body,
                })
            }
            Err(e) => Err(e),
        };
        self.stats.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.stats
            .window
            .lock()
            .expect("window")
            .saturating_record(t0.elapsed().as_micros() as u64);
        answer.map_err(|e| {
            self.stats
                .fail(format!("{}: no answer: {e}", KINDS[kind as usize]))
        })
    }

    /// `answer` must have `status` and pass `ok`.
    fn check(
        &self,
        kind: Kind,
        answer: &Answer,
        status: u16,
        ok: impl FnOnce(&Answer) -> bool,
    ) -> Result<(), Failed> {
        if answer.status == status && ok(answer) {
            Ok(())
        } else {
            Err(self.stats.fail(format!(
                "{}: expected {status}, got {}",
                KINDS[kind as usize],
                answer.brief()
            )))
        }
    }

    /// One round for `user`: sign-in, code, userinfo, two refreshes, then logout or GTR.
    async fn round(&self, user: &User, n: u64) -> Result<(), Failed> {
        let issuer = &self.issuer;
        let (cid, secret) = (&self.app.0, &self.app.1);
        let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
        // The form.
        let a = self
            .send(
                Kind::Authorize,
                self.http.get(format!("{issuer}/authorize?response_type=code&client_id={cid}&redirect_uri={cb}&scope=openid%20email%20offline_access&state=s{n}&nonce=n{n}")),
            )
            .await?;
        self.check(Kind::Authorize, &a, 200, |a| {
            a.body.contains("name=\"tx\" value=\"")
        })?;
        let start = a.body.find("name=\"tx\" value=\"").unwrap_or(0) + 17;
        let tx = a.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned();
        // The password, at whichever instance the proxy picks.
        let l = self
            .send(
                Kind::Login,
                self.http
                    .post(format!("{issuer}/login"))
                    .header("Cookie", a.cookies().join("; "))
                    .form(&[
                        ("tx", tx.as_str()),
                        ("email", user.email.as_str()),
                        ("password", PASSWORD),
                    ]),
            )
            .await?;
        self.check(Kind::Login, &l, 302, |l| l.location().starts_with(CB))?;
        let code = url::Url::parse(l.location())
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| {
                self.stats
                    .fail(format!("login: no code in {}", l.location()))
            })?;
        let session_cookies = l.cookies().join("; ");
        // The code.
        let t = self
            .send(
                Kind::Code,
                self.http
                    .post(format!("{issuer}/oauth/token"))
                    .basic_auth(cid, Some(secret))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", CB),
                    ]),
            )
            .await?;
        let tokens = t.json();
        self.check(Kind::Code, &t, 200, |_| {
            ["id_token", "access_token", "refresh_token"]
                .iter()
                .all(|k| tokens[k].is_string())
        })?;
        let id_token = tokens["id_token"].as_str().unwrap_or_default().to_owned();
        let sid = claims(&id_token)
            .and_then(|c| c["sid"].as_str().map(str::to_owned))
            .ok_or_else(|| self.stats.fail("code: the ID token has no sid".into()))?;
        // Userinfo.
        let u = self
            .send(
                Kind::Userinfo,
                self.http
                    .get(format!("{issuer}/userinfo"))
                    .bearer_auth(tokens["access_token"].as_str().unwrap_or_default()),
            )
            .await?;
        self.check(Kind::Userinfo, &u, 200, |u| {
            u.json()["sub"].as_str() == Some(user.id.as_str())
        })?;
        // Two refreshes, each with the token the previous answer rotated in.
        let mut rt = tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for _ in 0..2 {
            let r = self
                .send(
                    Kind::Refresh,
                    self.http
                        .post(format!("{issuer}/oauth/token"))
                        .basic_auth(cid, Some(secret))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]),
                )
                .await?;
            let next = r.json()["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.check(Kind::Refresh, &r, 200, |_| !next.is_empty() && next != rt)?;
            rt = next;
        }
        // The end of the session: the user's logout at the app, or the IdP's GTR.
        if n % self.gtr_every == self.gtr_every - 1 {
            let (name, endpoint, org, key) = &self.okta;
            let iat = time::OffsetDateTime::now_utc().unix_timestamp();
            let claims = json!({"iss": org, "sub": "0oaSOAK", "aud": endpoint, "iat": iat,
                "exp": iat + 300, "jti": latch_jose::random_token(16)});
            let bearer = sign_jws(
                key,
                SigningAlg::RS256,
                &key.thumbprint(),
                "global-token-revocation+jwt",
                &claims,
            )
            .map_err(|e| self.stats.fail(format!("gtr: signing: {e}")))?;
            let g = self
                .send(
                    Kind::Gtr,
                    self.http
                        .post(format!("{issuer}/oauth/global-token-revocation/connection/{name}"))
                        .bearer_auth(bearer)
                        .header("Content-Type", "application/json")
                        .body(
                            json!({"subject": {"format": "iss_sub", "iss": org, "sub": user.okta_sub}})
                                .to_string(),
                        ),
                )
                .await?;
            self.check(Kind::Gtr, &g, 204, |_| true)?;
            self.stats.gtrs.fetch_add(1, Ordering::Relaxed);
        } else {
            let to = format!("{BYE}?state=bye{n}");
            let o = self
                .send(
                    Kind::Logout,
                    self.http
                        .get(format!("{issuer}/oidc/logout"))
                        .header("Cookie", &session_cookies)
                        .query(&[
                            ("id_token_hint", id_token.as_str()),
                            ("post_logout_redirect_uri", BYE),
                            ("state", &format!("bye{n}")),
                        ]),
                )
                .await?;
            self.check(Kind::Logout, &o, 302, |o| o.location() == to)?;
            self.stats.logouts.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.expected.lock().expect("expected").insert(sid);
        Ok(())
    }
}

async fn worker(load: Arc<Load>, users: Vec<User>) {
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let _ = load.round(&users[n as usize % users.len()], n).await;
        n += 1;
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The whole soak; `true` when it passed.
async fn soak(settings: &Settings, db_url: &str, redis: &str) -> bool {
    let prefix = format!("latch-soak:{}:", unique());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let env = [
        ("LATCH_ISSUER", issuer.as_str()),
        ("LATCH_SECRET_KEY", SECRET_KEY),
        ("LATCH_ADMIN_TOKEN", TOKEN),
        ("LATCH_DATABASE_URL", db_url),
        ("LATCH_REDIS_URL", redis),
        ("LATCH_REDIS_PREFIX", prefix.as_str()),
    ];
    let mut instances: Vec<Instance> = (0..INSTANCES).map(|_| Instance::start(&env)).collect();
    let setup_http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    for i in &mut instances {
        i.wait_ready(&setup_http).await;
    }
    let backends = instances
        .iter()
        .map(|i| {
            i.base
                .trim_start_matches("http://")
                .parse()
                .expect("address")
        })
        .collect();
    tokio::spawn(proxy(listener, backends));

    // The app, its back-channel receiver, the Okta connection with GTR.
    let receiver = Receiver::default();
    let bc = receiver.start().await;
    let app = api(
        &setup_http,
        &issuer,
        TOKEN,
        "POST",
        "/api/v2/clients",
        json!({"name": "Soak app", "callbacks": [CB], "allowed_logout_urls": [BYE],
            "grant_types": ["authorization_code", "refresh_token"],
            "oidc_logout": {"backchannel_logout_urls": [bc], "backchannel_logout_session_required": true}}),
    )
    .await;
    let app = (
        app["client_id"].as_str().expect("client_id").to_owned(),
        app["client_secret"].as_str().expect("secret").to_owned(),
    );
    let org_key = Signer::generate(SigningAlg::RS256).expect("key");
    let org = okta_org(&org_key).await;
    let okta_name = format!("okta-{}", unique());
    let conn = api(
        &setup_http,
        &issuer,
        TOKEN,
        "POST",
        "/api/v2/connections",
        json!({"name": okta_name, "strategy": "okta", "options": {
            "domain": org, "client_id": "0oaSOAK", "client_secret": "upstream-secret",
            "global_token_revocation_enabled": true}}),
    )
    .await;
    let okta_id = ConnectionId::new(conn["id"].as_str().expect("connection id"));

    // The store, beside the instances: the users' Okta identities, and the outbox's state.
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(SECRET_KEY)
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let mut opts = latch_store::StoreOptions::new(db_url.to_owned());
    opts.max_connections = 2;
    let store: Arc<dyn Store> = Arc::new(
        latch_store::SqlStore::open(opts, latch_store::Cipher::new(&key).expect("cipher"))
            .await
            .expect("store"),
    );
    let run = unique();
    let mut users_of = Vec::new();
    for w in 0..settings.workers {
        let mut users = Vec::new();
        for k in 0..USERS_PER_WORKER {
            let email = format!("soak-{run}-{w}-{k}@example.com");
            let u = api(
                &setup_http,
                &issuer,
                TOKEN,
                "POST",
                "/api/v2/users",
                json!({"connection": "database", "email": email, "password": PASSWORD}),
            )
            .await;
            let id = u["user_id"].as_str().expect("user_id").to_owned();
            let okta_sub = format!("00u{w}x{k}");
            let now = time::OffsetDateTime::now_utc();
            store
                .insert_identity(&Identity {
                    user_id: UserId::new(&id),
                    connection_id: okta_id.clone(),
                    issuer: org.clone(),
                    subject: okta_sub.clone(),
                    password_hash: None,
                    profile: serde_json::Map::new(),
                    created_at: now,
                    updated_at: now,
                })
                .await
                .expect("identity");
            users.push(User {
                id,
                email,
                okta_sub,
            });
        }
        users_of.push(users);
    }

    let endpoint = latch_gtr::endpoint_url(&issuer, &ConnectionName::new(&okta_name));
    let load = Arc::new(Load {
        issuer: issuer.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("client"),
        pacer: Pacer {
            next: Mutex::new(Instant::now()),
            gap: Duration::from_secs_f64(1.0 / settings.rate),
        },
        stats: Stats::new(),
        stop: AtomicBool::new(false),
        app,
        gtr_every: settings.gtr_every,
        okta: (okta_name, endpoint, org, org_key),
    });
    println!(
        "soak: {INSTANCES} instances behind {issuer}, {} workers, at most {} requests/s, GTR every {} rounds, {} s of load, RSS baseline at {} s",
        settings.workers,
        settings.rate,
        settings.gtr_every,
        settings.load.as_secs(),
        settings.baseline.as_secs()
    );

    // Every instance signs the app in: another instance's writes reach an instance's client and
    // connection caches within latch_store::CLIENT_TTL.
    let settled = Instant::now();
    for i in &instances {
        let url = format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s&nonce=n",
            i.base,
            load.app.0,
            url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>()
        );
        loop {
            let res = load.http.get(&url).send().await.expect("authorize");
            if res.status() == 200 {
                break;
            }
            assert!(
                settled.elapsed() < Duration::from_secs(30),
                "{} does not offer the app's sign-in form: {} {:?}",
                i.base,
                res.status(),
                res.headers().get("location")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "soak: every instance offers the app's sign-in form {:.1} s after the setup",
        settled.elapsed().as_secs_f64()
    );

    // Resident memory, every second: the 10-s lines and the verdict use each window's median
    // (an argon2id hash holds 19 MiB for a few tens of milliseconds).
    let rss_samples: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let sampler = {
        let pids: Vec<u32> = instances.iter().map(|i| i.child.id()).collect();
        let samples = rss_samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let rss = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
                samples.lock().expect("rss").push(rss);
            }
        })
    };

    let start = Instant::now();
    let workers: Vec<_> = users_of
        .into_iter()
        .map(|users| tokio::spawn(worker(load.clone(), users)))
        .collect();
    let end = start + settings.load;
    let mut total = new_histogram();
    let mut max_p99 = (0u64, 0u64);
    let mut baseline: Option<Vec<u64>> = None;
    let mut last_rss = vec![0u64; INSTANCES];
    let mut peak_rss = [0u64; INSTANCES];
    let mut exited = Vec::new();
    let mut at = start;
    let pending = async |store: &Arc<dyn Store>| -> Option<u64> {
        store.count_pending_deliveries(1_000_000).await.ok()
    };
    let (mut last_requests, mut last_at) = (0u64, start);
    loop {
        at = (at + SAMPLE_EVERY).min(end);
        tokio::time::sleep_until(at).await;
        let elapsed = start.elapsed().as_secs();
        let window_rss = std::mem::take(&mut *rss_samples.lock().expect("rss"));
        let rss: Vec<u64> = (0..INSTANCES)
            .map(|n| {
                let mut all: Vec<u64> = window_rss.iter().map(|s| s[n]).collect();
                all.sort_unstable();
                peak_rss[n] = all.last().copied().unwrap_or(0).max(peak_rss[n]);
                all.get(all.len() / 2).copied().unwrap_or(0)
            })
            .collect();
        for (n, i) in instances.iter_mut().enumerate() {
            if let Ok(Some(status)) = i.child.try_wait()
                && !exited.iter().any(|(k, _)| *k == n)
            {
                exited.push((n, status.to_string()));
            }
        }
        let window = std::mem::replace(
            &mut *load.stats.window.lock().expect("window"),
            new_histogram(),
        );
        let p99 = window.value_at_quantile(0.99);
        if !window.is_empty() && p99 > max_p99.0 {
            max_p99 = (p99, elapsed);
        }
        total.add(&window).expect("histogram");
        let requests = load.stats.requests();
        let rate = (requests - last_requests) as f64 / last_at.elapsed().as_secs_f64();
        (last_requests, last_at) = (requests, Instant::now());
        let expected = load.stats.expected.lock().expect("expected").len();
        let (received, _) = receiver.counts();
        println!(
            "soak: {elapsed:>5} s  requests {requests:>7} ({rate:>5.1}/s)  failures {}  RSS (10-s median) {}  outbox pending {}  logout tokens {received}/{expected}  p99 {:.1} ms",
            load.stats.failures.load(Ordering::Relaxed),
            rss.iter()
                .map(|k| format!("{:.1}", mib(*k)))
                .collect::<Vec<_>>()
                .join(" / ")
                + " MiB",
            pending(&store)
                .await
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            ms(p99),
        );
        if baseline.is_none() && at.duration_since(start) >= settings.baseline {
            baseline = Some(rss.clone());
        }
        last_rss = rss;
        if at >= end || !exited.is_empty() {
            break;
        }
    }
    let load_secs = start.elapsed().as_secs_f64();
    sampler.abort();
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }

    // The outbox drains: nothing pending, nothing failed, every expected token received.
    let expected = load.stats.expected.lock().expect("expected").clone();
    let stopped = Instant::now();
    let mut drained = None;
    let (mut left, mut failed, mut missing) = (None, None, expected.len());
    while stopped.elapsed() < DRAIN_WITHIN {
        left = pending(&store).await;
        failed = store
            .list_deliveries(&DeliveryQuery::in_state(DeliveryState::Failed), 1000)
            .await
            .ok()
            .map(|d| d.len());
        missing = receiver.missing(&expected);
        if left == Some(0) && failed == Some(0) && missing == 0 {
            drained = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (distinct, tokens) = receiver.counts();
    total
        .add(&*load.stats.window.lock().expect("window"))
        .expect("histogram");

    // The verdict.
    let requests = load.stats.requests();
    let failures = load.stats.failures.load(Ordering::Relaxed);
    let mut reasons = Vec::new();
    if failures > 0 {
        reasons.push(format!("{failures} requests failed"));
    }
    for (n, status) in &exited {
        reasons.push(format!("instance {n} exited: {status}"));
    }
    let baseline = baseline.unwrap_or_else(|| last_rss.clone());
    let mut rss_lines = Vec::new();
    for n in 0..INSTANCES {
        let (b, e) = (baseline[n], last_rss[n]);
        let growth = if b > 0 {
            (e as f64 - b as f64) / b as f64
        } else {
            f64::INFINITY
        };
        rss_lines.push(format!(
            "instance {n}: {:.1} MiB -> {:.1} MiB ({:+.1}%; peak {:.1} MiB)",
            mib(b),
            mib(e),
            growth * 100.0,
            mib(peak_rss[n])
        ));
        if growth > RSS_GROWTH_LIMIT {
            reasons.push(format!(
                "instance {n}'s RSS grew {:.1}% (limit {:.0}%)",
                growth * 100.0,
                RSS_GROWTH_LIMIT * 100.0
            ));
        }
    }
    if drained.is_none() {
        reasons.push(format!(
            "the outbox did not drain within {} s: pending {}, failed {}, {missing} of {} logout tokens not received",
            DRAIN_WITHIN.as_secs(),
            left.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            failed.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            expected.len()
        ));
    }
    let per_kind = KINDS
        .iter()
        .zip(&load.stats.requests)
        .map(|(k, n)| format!("{k} {}", n.load(Ordering::Relaxed)))
        .collect::<Vec<_>>()
        .join(", ");
    println!();
    println!("soak: summary");
    println!(
        "  load:        {load_secs:.0} s, {INSTANCES} instances (PostgreSQL + Redis), {} workers, rate limit {} requests/s",
        settings.workers, settings.rate
    );
    println!(
        "  requests:    {requests} ({:.1}/s): {per_kind}",
        requests as f64 / load_secs
    );
    println!(
        "  rounds:      {} ended by RP-initiated logout, {} by GTR; failures: {failures}",
        load.stats.logouts.load(Ordering::Relaxed),
        load.stats.gtrs.load(Ordering::Relaxed)
    );
    println!(
        "  latency:     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; highest 10-s p99 {:.1} ms (at {} s)",
        ms(total.value_at_quantile(0.5)),
        ms(total.value_at_quantile(0.99)),
        ms(total.max()),
        ms(max_p99.0),
        max_p99.1
    );
    println!(
        "  RSS (10-s medians) at {} s -> end of load: {}",
        settings.baseline.as_secs(),
        rss_lines.join("; ")
    );
    println!(
        "  outbox:      {}; logout tokens: {} expected, {distinct} received ({} duplicates)",
        match drained {
            Some(d) => format!("drained {:.1} s after the load", d.as_secs_f64()),
            None => "NOT drained".to_owned(),
        },
        expected.len(),
        tokens - distinct as u64
    );
    let shown = load.stats.shown.lock().expect("failures");
    for f in shown.iter() {
        println!("  failure:     {f}");
    }
    if reasons.is_empty() {
        println!("soak: PASSED");
        true
    } else {
        println!("soak: FAILED: {}", reasons.join("; "));
        false
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var("LATCH_SOAK").as_deref() != Ok("1") {
        println!("soak: skipped (it runs for 30 minutes): run it with `cargo xtask soak`");
        return;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let var = |bench: &str, test: &str| {
        std::env::var(bench)
            .or_else(|_| std::env::var(test))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let (Some(db), Some(redis)) = (
        var("LATCH_BENCH_DATABASE_URL", "LATCH_TEST_DATABASE_URL"),
        var("LATCH_BENCH_REDIS_URL", "LATCH_TEST_REDIS_URL"),
    ) else {
        eprintln!(
            "soak: needs PostgreSQL and Redis: set LATCH_BENCH_DATABASE_URL and LATCH_BENCH_REDIS_URL (or the LATCH_TEST_* ones)"
        );
        std::process::exit(2);
    };
    let rt = common::runtime();
    let passed = rt.block_on(async {
        let fresh = tokio::task::spawn_blocking(move || PgDatabase::create(&db, "latch_soak"))
            .await
            .expect("database");
        let passed = soak(&settings, &fresh.url, &redis).await;
        tokio::task::spawn_blocking(move || drop(fresh))
            .await
            .expect("drop database");
        passed
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    if !passed {
        std::process::exit(1);
    }
}
