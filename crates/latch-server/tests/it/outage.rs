//! A Redis outage under light load (issue 18): the real `latch` binary on the embedded database
//! and a Redis of the test's own (on its own port, never the shared one), stopped and restarted,
//! then frozen (SIGSTOP) and resumed, while a few loops sign in, exchange codes, call
//! `/userinfo`, refresh, read the JWKS and log out. While Redis is down or frozen, requests that
//! need it answer 503 with `Retry-After`, nothing answers another 5xx or hangs, and `/readyz`
//! names the session store; within 10 s of Redis's return the instance is ready and signs users
//! in and out again; a code refused during the outage redeems after it; and every logout Latch
//! answered with success reaches the app's back-channel endpoint.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch_testkit::env::{TempDir, unique};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backchannel::{Receiver, verify_logout_token};
use crate::process::{Latch, free_port};
use crate::support::{Remote, TOKEN, api};

const TEST: &str = "outage::redis_restarts_under_load";
/// Debian's binary; the test is skipped (loudly) without it.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const PASSWORD: &str = "Outage-Under-Load-1";
const CB: &str = "http://127.0.0.1:9/cb";
const BYE: &str = "http://127.0.0.1:9/bye";
/// Load loops running for the whole test.
const WORKERS: usize = 3;
/// Any answer slower than this counts as a hang (a request piling up behind a dead Redis).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// How long Redis stays down, from its stop.
const OUTAGE: Duration = Duration::from_secs(3);
/// From Redis's return to a ready instance that signs a user in and out.
const RECOVERY: Duration = Duration::from_secs(10);
/// How long Redis stays stopped with SIGSTOP: past its client's 2 s response timeout.
const STALL: Duration = Duration::from_secs(7);
/// How long a logout token may take to arrive: at once normally; a logout that failed after
/// recording its deliveries leaves them reserved to this instance until their 30 s lease runs
/// out.
const DELIVERY: Duration = Duration::from_secs(45);
/// Pause of a load loop after a failed pass, so the outage stays light load.
const BACKOFF: Duration = Duration::from_millis(100);

/// A `redis-server` of this test's own: loopback, its own port, an append-only file in its own
/// directory synced on every write, so what it held survives a stop and a start.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl OwnRedis {
    fn start() -> Self {
        let mut r = Self {
            child: None,
            port: free_port(),
            dir: TempDir::new(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers `PING` with `PONG` (not `LOADING`).
    async fn wait_pong(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port).await {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited: {status}; {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM (Redis syncs its file and exits), then waits for the exit.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "redis-server exited {status}");
                return;
            }
            assert!(Instant::now() < deadline, "redis did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `SIGSTOP` or `SIGCONT`.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis is running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Does the Redis on `port` answer `PING` with `PONG`?
async fn ping(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

/// Where the test is when a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before = 0,
    /// From the stop of Redis until it answers again.
    Outage = 1,
    After = 2,
    /// Redis stopped with SIGSTOP: connections accepted, nothing answered.
    Stalled = 3,
    /// After its SIGCONT.
    Resumed = 4,
}

const PHASES: [Phase; 5] = [
    Phase::Before,
    Phase::Outage,
    Phase::After,
    Phase::Stalled,
    Phase::Resumed,
];

impl Phase {
    fn from_u8(v: u8) -> Self {
        PHASES
            .into_iter()
            .find(|p| *p as u8 == v)
            .unwrap_or(Phase::Resumed)
    }
}

/// How many requests answered each status, and the slowest answer.
type Tally = (BTreeMap<String, usize>, Duration);

/// One request of the run.
#[derive(Debug)]
struct Call {
    /// When it was answered.
    phase: Phase,
    what: &'static str,
    expected: u16,
    /// The status, or why no answer came (a timeout, a dropped connection).
    status: Result<u16, String>,
    retry_after: bool,
    took: Duration,
}

/// An answer, read whole.
struct Answer {
    status: u16,
    location: Option<String>,
    cookies: Vec<(String, String)>,
    body: String,
}

/// A browser's cookies for Latch, kept by hand.
#[derive(Debug, Clone, Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, a: &Answer) {
        for (k, v) in &a.cookies {
            if v.is_empty() {
                self.0.remove(k);
            } else {
                self.0.insert(k.clone(), v.clone());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A signed-in browser session and the app's tokens for it, once it has them.
#[derive(Debug, Clone)]
struct Signed {
    jar: Jar,
    tokens: Option<Tokens>,
    /// The pass of its load loop that signed it in.
    tick: u64,
}

#[derive(Debug, Clone)]
struct Tokens {
    id_token: String,
    access_token: String,
    refresh_token: String,
    sid: String,
}

/// What the load loops and the test share.
struct Load {
    base: String,
    client_id: String,
    client_secret: String,
    email: String,
    /// No redirects followed; every request bounded by [`REQUEST_TIMEOUT`].
    http: reqwest::Client,
    phase: AtomicU8,
    stop: AtomicBool,
    calls: Mutex<Vec<Call>>,
    /// Answers of an unexpected shape (a 302 without a code, a token answer without a sid).
    anomalies: Mutex<Vec<String>>,
    /// The sid of every session whose logout Latch answered with success, and when.
    logged_out: Mutex<Vec<(String, Phase)>>,
    /// Passes of the load loops in which every request succeeded, per phase.
    passes: [AtomicUsize; PHASES.len()],
}

impl Load {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::SeqCst);
    }

    fn passes(&self, p: Phase) -> usize {
        self.passes[p as usize].load(Ordering::SeqCst)
    }

    fn anomaly(&self, what: String) {
        eprintln!("{TEST}: anomaly: {what}");
        self.anomalies.lock().unwrap().push(what);
    }

    /// Sends `req`, records it, and answers it when Latch answered `expected`.
    async fn send(
        &self,
        what: &'static str,
        expected: u16,
        req: reqwest::RequestBuilder,
    ) -> Option<Answer> {
        self.request(what, expected, req)
            .await
            .filter(|a| a.status == expected)
    }

    /// Sends `req` and records it (`expected` is the status of a success); the answer,
    /// whatever its status.
    async fn request(
        &self,
        what: &'static str,
        expected: u16,
        req: reqwest::RequestBuilder,
    ) -> Option<Answer> {
        let started = Instant::now();
        let answer = async {
            let res = req.send().await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            let location = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let cookies = res
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| {
                    let pair = v.to_str().ok()?.split(';').next()?;
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect();
            let body = res.text().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((
                Answer {
                    status,
                    location,
                    cookies,
                    body,
                },
                retry_after,
            ))
        }
        .await;
        let took = started.elapsed();
        let phase = self.phase();
        let (status, retry_after, out) = match answer {
            Ok((a, retry_after)) => (Ok(a.status), retry_after, Some(a)),
            Err(e) => (Err(e), false, None),
        };
        self.calls.lock().unwrap().push(Call {
            phase,
            what,
            expected,
            status,
            retry_after,
            took,
        });
        out
    }

    fn authorize_url(&self, extra: &str) -> String {
        let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
        format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={cb}&scope=openid%20offline_access&state=s&nonce=n{extra}",
            self.base, self.client_id
        )
    }

    /// The code of a redirect to the app.
    fn code(&self, what: &str, a: &Answer) -> Option<String> {
        let code = a
            .location
            .as_deref()
            .and_then(|l| url::Url::parse(l).ok())
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            });
        if code.is_none() {
            self.anomaly(format!(
                "{what}: a redirect without a code: {:?}",
                a.location
            ));
        }
        code
    }

    /// The sign-in form, then the password: a session (in `jar`) and a code.
    async fn sign_in(&self, jar: &mut Jar) -> Option<String> {
        let a = self
            .send(
                "authorize",
                200,
                self.http
                    .get(self.authorize_url(""))
                    .header("Cookie", jar.header()),
            )
            .await?;
        jar.take(&a);
        let Some(start) = a.body.find("name=\"tx\" value=\"").map(|i| i + 17) else {
            self.anomaly("authorize: 200 without the sign-in form".into());
            return None;
        };
        let tx = a.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned();
        let a = self
            .send(
                "login",
                302,
                self.http
                    .post(format!("{}/login", self.base))
                    .header("Cookie", jar.header())
                    .form(&[
                        ("tx", tx.as_str()),
                        ("email", &self.email),
                        ("password", PASSWORD),
                    ]),
            )
            .await?;
        jar.take(&a);
        self.code("login", &a)
    }

    /// A code for the session already in `jar`, without a form (`prompt=none`).
    async fn silent(&self, jar: &mut Jar) -> Option<String> {
        let a = self
            .send(
                "authorize prompt=none",
                302,
                self.http
                    .get(self.authorize_url("&prompt=none"))
                    .header("Cookie", jar.header()),
            )
            .await?;
        jar.take(&a);
        self.code("authorize prompt=none", &a)
    }

    fn token_request(&self, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form)
    }

    async fn token(&self, what: &'static str, form: &[(&str, &str)]) -> Option<Value> {
        let a = self.send(what, 200, self.token_request(form)).await?;
        match serde_json::from_str(&a.body) {
            Ok(v) => Some(v),
            Err(_) => {
                self.anomaly(format!("{what}: 200 without JSON: {}", a.body));
                None
            }
        }
    }

    async fn exchange(&self, code: &str) -> Option<Tokens> {
        let t = self
            .token(
                "token (code)",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", CB),
                ],
            )
            .await?;
        let id_token = t["id_token"].as_str().unwrap_or_default().to_owned();
        let sid = jsonwebtoken::dangerous::insecure_decode::<Value>(&id_token)
            .ok()
            .and_then(|d| d.claims["sid"].as_str().map(str::to_owned));
        match (sid, t["access_token"].as_str(), t["refresh_token"].as_str()) {
            (Some(sid), Some(at), Some(rt)) => Some(Tokens {
                id_token,
                access_token: at.to_owned(),
                refresh_token: rt.to_owned(),
                sid,
            }),
            _ => {
                self.anomaly(format!("token (code): incomplete answer {t}"));
                None
            }
        }
    }

    /// `/userinfo`, a refresh (the new tokens kept) and the JWKS. `true` when all succeeded.
    async fn use_tokens(&self, t: &mut Tokens) -> bool {
        let info = self
            .send(
                "userinfo",
                200,
                self.http
                    .get(format!("{}/userinfo", self.base))
                    .bearer_auth(&t.access_token),
            )
            .await
            .is_some();
        let refreshed = self
            .token(
                "token (refresh)",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &t.refresh_token),
                ],
            )
            .await;
        if let Some(r) = &refreshed {
            match (r["access_token"].as_str(), r["refresh_token"].as_str()) {
                (Some(at), Some(rt)) => {
                    t.access_token = at.to_owned();
                    t.refresh_token = rt.to_owned();
                }
                _ => self.anomaly(format!("token (refresh): incomplete answer {r}")),
            }
        }
        let jwks = self
            .send(
                "jwks",
                200,
                self.http
                    .get(format!("{}/.well-known/jwks.json", self.base)),
            )
            .await
            .is_some();
        info && refreshed.is_some() && jwks
    }

    /// RP-initiated logout with the session's cookie and ID token; recorded when Latch answers
    /// with the redirect back to the app.
    async fn logout(&self, s: &Signed) -> bool {
        let Some(t) = &s.tokens else {
            return false;
        };
        let Some(a) = self
            .send(
                "logout",
                302,
                self.http
                    .get(format!("{}/oidc/logout", self.base))
                    .query(&[
                        ("id_token_hint", t.id_token.as_str()),
                        ("post_logout_redirect_uri", BYE),
                        ("state", "bye"),
                    ])
                    .header("Cookie", s.jar.header()),
            )
            .await
        else {
            return false;
        };
        if !a.location.as_deref().is_some_and(|l| l.starts_with(BYE)) {
            self.anomaly(format!("logout: 302 to {:?}", a.location));
            return false;
        }
        self.logged_out
            .lock()
            .unwrap()
            .push((t.sid.clone(), self.phase()));
        true
    }

    /// Tokens for a session whose code exchange failed: a new code through `prompt=none`.
    async fn get_tokens(&self, s: &mut Signed) -> bool {
        if s.tokens.is_none() {
            let Some(code) = self.silent(&mut s.jar).await else {
                return false;
            };
            s.tokens = self.exchange(&code).await;
        }
        s.tokens.is_some()
    }

    /// A new session, signed in with the form: `None` when the sign-in failed (the browser
    /// holds no session then), without tokens when the code exchange failed.
    async fn new_session(&self, tick: u64) -> Option<Signed> {
        let mut jar = Jar::default();
        let code = self.sign_in(&mut jar).await?;
        let tokens = self.exchange(&code).await;
        Some(Signed { jar, tokens, tick })
    }

    /// One pass of a load loop over its sessions (`live`, oldest first): tokens for those
    /// without, a new session, every session's tokens used, and the logout of those from
    /// earlier passes. `true` when every request succeeded.
    async fn tick(&self, live: &mut VecDeque<Signed>, tick: u64) -> bool {
        let mut ok = true;
        for s in live.iter_mut() {
            ok &= self.get_tokens(s).await;
        }
        match self.new_session(tick).await {
            Some(s) => {
                ok &= s.tokens.is_some();
                live.push_back(s);
            }
            None => ok = false,
        }
        for s in live.iter_mut() {
            if let Some(t) = &mut s.tokens {
                ok &= self.use_tokens(t).await;
            }
        }
        while let Some(s) = live.front().filter(|s| s.tick < tick) {
            if !self.logout(s).await {
                ok = false;
                break;
            }
            live.pop_front();
        }
        ok
    }

    /// Logs every session of `live` out, retrying until `deadline`; answers those left.
    async fn log_all_out(&self, mut live: VecDeque<Signed>, deadline: Instant) -> Vec<Signed> {
        while !live.is_empty() && Instant::now() < deadline {
            let mut left = VecDeque::new();
            for mut s in live {
                if !(self.get_tokens(&mut s).await && self.logout(&s).await) {
                    left.push_back(s);
                }
            }
            live = left;
            if !live.is_empty() {
                tokio::time::sleep(BACKOFF).await;
            }
        }
        live.into()
    }

    /// A load loop: passes until told to stop, then every session it holds logged out.
    /// Answers the sessions it could not log out.
    async fn run(self: Arc<Self>) -> Vec<Signed> {
        let mut live = VecDeque::new();
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let phase = self.phase();
            if self.tick(&mut live, n).await {
                self.passes[phase as usize].fetch_add(1, Ordering::SeqCst);
            } else {
                tokio::time::sleep(BACKOFF).await;
            }
            n += 1;
        }
        self.log_all_out(live, Instant::now() + Duration::from_secs(15))
            .await
    }

    /// Sign-in, code exchange and logout, as one app's user would; `true` when all succeeded.
    /// A session it cannot log out goes to `left`.
    async fn sign_in_and_out(&self, left: &mut Vec<Signed>) -> bool {
        let Some(s) = self.new_session(0).await else {
            return false;
        };
        if s.tokens.is_some() && self.logout(&s).await {
            return true;
        }
        left.push(s);
        false
    }

    async fn readyz(&self) -> Option<(u16, Value)> {
        // Recorded too: a 503 from the probe carries `Retry-After` like any other.
        let started = Instant::now();
        let res = self.http.get(format!("{}/readyz", self.base)).send().await;
        let out = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                Ok((status, retry_after, body))
            }
            Err(e) => Err(e.to_string()),
        };
        let phase = self.phase();
        let (status, retry_after, answer) = match out {
            Ok((s, ra, b)) => (Ok(s), ra, Some((s, b))),
            Err(e) => (Err(e), false, None),
        };
        self.calls.lock().unwrap().push(Call {
            phase,
            what: "readyz",
            expected: 200,
            status,
            retry_after,
            took: started.elapsed(),
        });
        answer
    }
}

/// Polls `f` every 50 ms until it answers `Some`, for at most `bound`.
async fn within<T>(what: &str, bound: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints the instance's warnings and errors when the test fails.
struct ShowLogOnFailure(std::path::PathBuf);

impl Drop for ShowLogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(60)
            {
                eprintln!("latch: {line}");
            }
        }
    }
}

/// Awaits `/readyz` answering 503, naming the session store down and the database up.
async fn await_unready(load: &Load, bound: Duration) {
    let ready = within(
        "/readyz says the session store is down",
        bound,
        async || {
            let (status, body) = load.readyz().await?;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert_eq!(
        ready["sessions"],
        json!({"backend": "redis", "ok": false}),
        "{ready}"
    );
    assert_eq!(ready["database"]["ok"], true, "{ready}");
}

/// Awaits a request of the load answered 503 in `phase`.
async fn await_503(load: &Load, phase: Phase) {
    within(
        &format!("a request that needs Redis answered 503 ({phase:?})"),
        Duration::from_secs(10),
        async || {
            let calls = load.calls.lock().unwrap();
            calls
                .iter()
                .any(|c| c.phase == phase && c.what != "readyz" && c.status == Ok(503))
                .then_some(())
        },
    )
    .await;
}

/// Awaits `/readyz` answering 200 and a sign-in, code exchange and logout succeeding.
async fn await_recovery(load: &Load, left: &mut Vec<Signed>) {
    within(
        "ready, and a full sign-in and logout",
        RECOVERY + Duration::from_secs(5),
        async || {
            let (status, _) = load.readyz().await?;
            if status != 200 {
                return None;
            }
            load.sign_in_and_out(left).await.then_some(())
        },
    )
    .await;
}

fn skip(why: &str) {
    eprintln!("SKIPPED {TEST}: {why}");
    if let Some(path) = std::env::var_os(latch_testkit::env::SKIP_LOG_VAR) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{TEST}: {why}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_under_load() {
    if !Path::new(REDIS_SERVER).exists() {
        skip(&format!(
            "{REDIS_SERVER} not found, the Redis outage not exercised"
        ));
        return;
    }
    let mut redis = OwnRedis::start();
    redis.wait_pong().await;

    let data = TempDir::new();
    let logs = TempDir::new();
    let port = free_port();
    let env: Vec<(String, String)> = [
        ("LATCH_DATA_DIR", data.path().to_string_lossy().as_ref()),
        ("LATCH_ADMIN_TOKEN", TOKEN),
        ("LATCH_REDIS_URL", &redis.url()),
        ("LATCH_REDIS_PREFIX", &format!("latch-outage:{}:", unique())),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // Its log (stdout) kept beside its data, for what a failure needs explained.
    let log_path = logs.path().join("latch.log");
    let _show = ShowLogOnFailure(log_path.clone());
    let child = Command::new(env!("CARGO_BIN_EXE_latch"))
        .arg("serve")
        .envs(env.iter().cloned())
        .env("LATCH_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut latch = Latch {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    latch.wait_ready().await;

    let admin_http = reqwest::Client::new();
    let at = Remote(&admin_http, &latch.base);
    let rx = Receiver::start().await;
    let app = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "Outage", "callbacks": [CB], "allowed_logout_urls": [BYE],
            "grant_types": ["authorization_code", "refresh_token"],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/bc", rx.url)],
                "backchannel_logout_session_required": true}}),
        ),
    )
    .await;
    let email = format!("outage-{}@example.com", unique());
    api(
        &at,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;
    let issuer = api(&at, "GET", "/.well-known/openid-configuration", None).await["issuer"]
        .as_str()
        .unwrap()
        .to_owned();

    let load = Arc::new(Load {
        base: latch.base.clone(),
        client_id: app["client_id"].as_str().unwrap().to_owned(),
        client_secret: app["client_secret"].as_str().unwrap().to_owned(),
        email,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap(),
        phase: AtomicU8::new(Phase::Before as u8),
        stop: AtomicBool::new(false),
        calls: Mutex::default(),
        anomalies: Mutex::default(),
        logged_out: Mutex::default(),
        passes: Default::default(),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(load.clone().run()))
        .collect();
    within(
        "passes without a failure before the outage",
        Duration::from_secs(20),
        async || (load.passes(Phase::Before) >= 2 * WORKERS).then_some(()),
    )
    .await;

    // A code minted before the outage, redeemed during it and after.
    let mut held = Jar::default();
    let held_code = load
        .sign_in(&mut held)
        .await
        .expect("a sign-in before the outage");

    // Redis goes away under the load.
    load.set_phase(Phase::Outage);
    redis.stop().await;
    let stopped = Instant::now();
    await_unready(&load, Duration::from_secs(5)).await;
    let seen_down = stopped.elapsed();
    await_503(&load, Phase::Outage).await;
    let code_form = [
        ("grant_type", "authorization_code"),
        ("code", held_code.as_str()),
        ("redirect_uri", CB),
    ];
    let a = load
        .request("token (code)", 200, load.token_request(&code_form))
        .await
        .expect("an answer");
    let error: Value = serde_json::from_str(&a.body).unwrap_or_default();
    assert_eq!(
        (a.status, error["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "a code exchange while Redis is down: {}",
        a.body
    );
    // The outage lasts a while longer, the load going on.
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;

    // Redis returns, with what it held.
    redis.spawn();
    redis.wait_pong().await;
    let returned = Instant::now();
    let outage = stopped.elapsed();
    load.set_phase(Phase::After);
    let mut probe_left = Vec::new();
    await_recovery(&load, &mut probe_left).await;
    let recovered = returned.elapsed();
    eprintln!(
        "{TEST}: readyz 503 {seen_down:?} after the stop; Redis down {outage:?}; recovered {recovered:?} after its return"
    );
    assert!(
        recovered <= RECOVERY,
        "recovery took {recovered:?} after Redis returned"
    );
    // The code the outage refused was not spent: it redeems now.
    let tokens = load
        .exchange(&held_code)
        .await
        .expect("the code refused during the outage redeems after it");
    probe_left.push(Signed {
        jar: held,
        tokens: Some(tokens),
        tick: 0,
    });
    within(
        "passes without a failure after the outage",
        Duration::from_secs(15),
        async || (load.passes(Phase::After) >= WORKERS).then_some(()),
    )
    .await;

    // Redis stalls: connections are accepted, nothing is answered.
    load.set_phase(Phase::Stalled);
    redis.signal("STOP");
    let stalled = Instant::now();
    await_unready(&load, Duration::from_secs(8)).await;
    let seen_stalled = stalled.elapsed();
    await_503(&load, Phase::Stalled).await;
    tokio::time::sleep(STALL.saturating_sub(stalled.elapsed())).await;
    redis.signal("CONT");
    let resumed = Instant::now();
    let stall = stalled.elapsed();
    load.set_phase(Phase::Resumed);
    await_recovery(&load, &mut probe_left).await;
    let recovered = resumed.elapsed();
    eprintln!(
        "{TEST}: readyz 503 {seen_stalled:?} into the stall; Redis stalled {stall:?}; recovered {recovered:?} after it resumed"
    );
    assert!(
        recovered <= RECOVERY,
        "recovery took {recovered:?} after Redis resumed"
    );
    within(
        "passes without a failure after the stall",
        Duration::from_secs(15),
        async || (load.passes(Phase::Resumed) >= WORKERS).then_some(()),
    )
    .await;

    // The load stops; every session it left signed in is logged out first.
    load.stop.store(true, Ordering::SeqCst);
    let mut left = Vec::new();
    for w in workers {
        left.extend(w.await.unwrap());
    }
    left.extend(
        load.log_all_out(probe_left.into(), Instant::now() + Duration::from_secs(10))
            .await,
    );
    assert!(
        left.is_empty(),
        "{} sessions could not be logged out after the outage: {left:?}",
        left.len()
    );
    assert!(
        latch.child.try_wait().unwrap().is_none(),
        "latch exited during the test"
    );

    // No logout lost: every one Latch answered with success reached the app.
    let logged_out: Vec<(String, Phase)> = load.logged_out.lock().unwrap().clone();
    let expected: BTreeSet<String> = logged_out.iter().map(|(sid, _)| sid.clone()).collect();
    assert_eq!(expected.len(), logged_out.len(), "a sid logged out twice");
    let jwks = api(&at, "GET", "/.well-known/jwks.json", None).await;
    let sids_received = |tokens: &[(String, String)]| -> BTreeSet<String> {
        tokens
            .iter()
            .filter_map(|(_, t)| {
                jsonwebtoken::dangerous::insecure_decode::<Value>(t)
                    .ok()?
                    .claims["sid"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    let tokens = within(
        "a logout token for every logout answered with success",
        DELIVERY,
        async || {
            let got = rx.received();
            expected.is_subset(&sids_received(&got)).then_some(got)
        },
    )
    .await;
    for (_, t) in &tokens {
        verify_logout_token(&jwks, t, &load.client_id, &issuer);
    }

    // The invariants of the whole run.
    let calls = std::mem::take(&mut *load.calls.lock().unwrap());
    // Per phase and request: how many answered each status, and the slowest answer.
    let mut summary: BTreeMap<(Phase, &str), Tally> = BTreeMap::new();
    for c in &calls {
        let key = match &c.status {
            Ok(s) => s.to_string(),
            Err(_) => "no answer".into(),
        };
        let (statuses, slowest) = summary.entry((c.phase, c.what)).or_default();
        *statuses.entry(key).or_default() += 1;
        *slowest = (*slowest).max(c.took);
    }
    for ((phase, what), (statuses, slowest)) in &summary {
        eprintln!("{TEST}: {phase:?} {what}: {statuses:?}, slowest {slowest:?}");
    }
    eprintln!(
        "{TEST}: logouts answered with success per phase {:?}",
        PHASES.map(|p| logged_out.iter().filter(|(_, q)| *q == p).count())
    );
    let failures: Vec<&Call> = calls
        .iter()
        .filter(|c| match c.status {
            Err(_) => true,
            Ok(503) => !c.retry_after,
            Ok(s) => s != c.expected,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "a hang, a 5xx other than 503, a 503 without Retry-After or an unexpected answer: {failures:#?}"
    );
    // With both dependencies up, light load fails nothing.
    let before: Vec<&Call> = calls
        .iter()
        .filter(|c| c.phase == Phase::Before && c.status != Ok(c.expected))
        .collect();
    assert!(before.is_empty(), "failed before the outage: {before:#?}");
    let anomalies = load.anomalies.lock().unwrap();
    assert!(anomalies.is_empty(), "{anomalies:#?}");
    // Reading the signing keys needs no Redis: it kept working.
    assert!(
        calls
            .iter()
            .filter(|c| c.what == "jwks")
            .all(|c| c.status == Ok(200)),
        "the JWKS failed while Redis was down"
    );
    for phase in [Phase::Before, Phase::After, Phase::Resumed] {
        assert!(
            logged_out.iter().any(|(_, p)| *p == phase),
            "no logout answered with success in {phase:?}"
        );
    }
}
