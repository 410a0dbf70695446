//! Redis bytes per signed-in session, counting every key a sign-in leaves behind.
//!
//! Latch runs in this process on PostgreSQL + Redis (`bootstrap::start`, a fresh schema, a Redis
//! prefix of its own for each kind of sign-in) behind a loopback HTTP server. Users sign in over
//! HTTP as a browser would, and an app redeems each code at `/oauth/token`:
//! - `database`: `/authorize` → the form → `POST /login` (email and password) → the code;
//! - `okta`: `/authorize?connection=…` → a loopback stand-in for an Okta org (discovery, JWKS,
//!   token endpoint; ID tokens shaped like Okta's, RS256) → `/login/callback` → the code.
//!
//! The Redis prefix is as long as the default `latch:` (six characters; key names count). Then
//! the prefix is SCANned and every key's `MEMORY USAGE` (SAMPLES 0: every element),
//! `PTTL`, `TYPE` and `OBJECT ENCODING` is read. Printed per key pattern: count, bytes
//! min/median/max and sum, TTL range, encoding; then the sum over every key divided by the
//! sessions signed in (a key shared by many sessions, such as the expiry set or a per-IP counter,
//! counts its share). Keys present before the first sign-in are left out. Target: ≤ 1,024 bytes
//! per session. A second round signs the same users in again (two sessions each), to show what
//! the per-user index costs when it is shared.
//!
//! `cargo bench -p latch-server --bench redis_footprint`; PostgreSQL and Redis are taken from
//! `LATCH_BENCH_DATABASE_URL` / `LATCH_BENCH_REDIS_URL`, else the `LATCH_TEST_*` ones; without
//! them it is skipped, loudly. The keys it made are deleted at the end (kept with
//! `LATCH_FOOTPRINT_KEEP=1`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use actix_web::HttpServer;
use latch_server::bootstrap;
use latch_server::config::Config;
use latch_testkit::env::{PgSchema, TempDir, unique};
use serde_json::{Value, json};

mod common;
use common::{ADMIN_TOKEN as TOKEN, Op, SECRET_KEY, cookies, free_listener, location, query};

const PASSWORD: &str = "Footprint-Password-7";
const CB: &str = "http://127.0.0.1:9/cb";
/// Users of each kind, each signed in once per round.
const USERS: usize = 200;
const CONCURRENCY: usize = 8;
const TARGET: f64 = 1024.0;

/// A browser's User-Agent, as a real sign-in sends one (sessions keep it).
const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// The loopback "Okta org": discovery, JWKS, and a token endpoint that answers a code with the
/// ID token minted for it.
fn start_org() -> Op {
    Op::start(
        &[
            ("authorization_endpoint", "/oauth2/v1/authorize"),
            ("token_endpoint", "/oauth2/v1/token"),
            ("userinfo_endpoint", "/oauth2/v1/userinfo"),
            ("jwks_uri", "/oauth2/v1/keys"),
            ("end_session_endpoint", "/oauth2/v1/logout"),
        ],
        json!({"expires_in": 3600, "scope": "openid email profile"}),
    )
}

/// What an Okta org authorization server puts in an ID token for a code flow with
/// `openid email profile`, for an app with back-channel logout on (its `sid`, which Latch indexes
/// for upstream logout: the `us:` key).
fn okta_claims(org: &Op, user: usize, nonce: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "sub": format!("00u{user:05}abcdEFGH5d7"),
        "name": format!("Footprint User {user}"),
        "email": format!("footprint-{user}@example.com"),
        "ver": 1,
        "iss": org.base,
        "aud": "0oa1footprintAPP5d7",
        "iat": now,
        "exp": now + 3600,
        "jti": format!("ID.{}", latch_jose::random_token(32)),
        "amr": ["pwd"],
        "idp": "00o1footprintIDP5d7",
        "nonce": nonce,
        "preferred_username": format!("footprint-{user}@example.com"),
        "auth_time": now,
        "at_hash": latch_jose::random_token(16),
        "sid": format!("102{}", latch_jose::random_token(18)),
    })
}

struct Rp {
    http: reqwest::Client,
    base: String,
    cid: String,
    secret: String,
}

impl Rp {
    fn authorize(&self, connection: Option<&str>, n: usize) -> String {
        let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
        let mut url = format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={cb}&scope=openid%20email%20profile&state=s{n}&nonce=n{n}",
            self.base, self.cid
        );
        if let Some(c) = connection {
            url.push_str("&connection=");
            url.push_str(c);
        }
        url
    }

    /// The app's code exchange, as an app would do it.
    async fn redeem(&self, back: &str) {
        common::redeem(&self.http, &self.base, (&self.cid, &self.secret), CB, back).await;
    }

    async fn database_sign_in(&self, user: usize, n: usize, trace: Option<&Tracer>) {
        let res = self
            .http
            .get(self.authorize(None, n))
            .send()
            .await
            .expect("authorize");
        assert_eq!(res.status(), 200, "the sign-in form");
        let jar = cookies(&res);
        let body = res.text().await.expect("form");
        let start = body.find("name=\"tx\" value=\"").expect("tx field") + 17;
        let tx = body[start..].split('"').next().expect("tx").to_owned();
        step(trace, "GET /authorize (the sign-in form)").await;
        let email = format!("footprint-{user}@example.com");
        let res = self
            .http
            .post(format!("{}/login", self.base))
            .header("Cookie", jar)
            .form(&[
                ("tx", tx.as_str()),
                ("email", email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), 302, "password accepted");
        step(trace, "POST /login (password accepted, code to the app)").await;
        self.redeem(&location(&res)).await;
        step(trace, "POST /oauth/token (the app redeems the code)").await;
    }

    async fn okta_sign_in(
        &self,
        org: &Op,
        connection: &str,
        user: usize,
        n: usize,
        trace: Option<&Tracer>,
    ) {
        let res = self
            .http
            .get(self.authorize(Some(connection), n))
            .send()
            .await
            .expect("authorize");
        let jar = cookies(&res);
        let q = query(&location(&res));
        step(trace, "GET /authorize (to the Okta org)").await;
        let claims = okta_claims(org, user, &q["nonce"]);
        let code = org.code_for(&claims, 24);
        let res = self
            .http
            .get(format!(
                "{}/login/callback?code={code}&state={}",
                self.base, q["state"]
            ))
            .header("Cookie", jar)
            .send()
            .await
            .expect("callback");
        step(
            trace,
            "GET /login/callback (ID token checked, code to the app)",
        )
        .await;
        self.redeem(&location(&res)).await;
        step(trace, "POST /oauth/token (the app redeems the code)").await;
    }
}

/// Prints the keys one sign-in adds and removes at each step.
struct Tracer {
    redis: tokio::sync::Mutex<(redis::aio::MultiplexedConnection, HashSet<String>)>,
    prefix: String,
}

async fn step(trace: Option<&Tracer>, what: &str) {
    let Some(t) = trace else { return };
    let mut guard = t.redis.lock().await;
    let (redis, seen) = &mut *guard;
    let now: HashSet<String> = keys_of(redis, &t.prefix).await.into_iter().collect();
    println!("  after {what}:");
    let mut added: Vec<&String> = now.difference(seen).collect();
    added.sort();
    for k in added {
        let mut ks = inspect_keys(redis, &t.prefix, std::slice::from_ref(k)).await;
        if let Some(k) = ks.pop() {
            println!(
                "    + {:<10} {:>5} B  TTL {:<9} {}/{}",
                k.pattern,
                k.bytes,
                ttl(k.pttl),
                k.kind,
                k.encoding
            );
        }
    }
    let mut gone: Vec<&String> = seen.difference(&now).collect();
    gone.sort();
    for k in gone {
        println!("    - {:<10} deleted", pattern(&k[t.prefix.len()..]));
    }
    *seen = now;
}

/// One key as Redis keeps it.
struct Key {
    pattern: String,
    bytes: u64,
    /// Milliseconds left; -1 without a TTL.
    pttl: i64,
    kind: String,
    encoding: String,
}

/// A key's name with its variable parts starred, after the prefix: the namespace (and, for
/// keys named by scope or connection, the next part) kept.
fn pattern(rest: &str) -> String {
    let parts: Vec<&str> = rest.splitn(3, ':').collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [ns, _] => format!("{ns}:*"),
        [ns, scope, _] if matches!(*ns, "o" | "us" | "th" | "r") => format!("{ns}:{scope}:*"),
        [ns, ..] => format!("{ns}:*"),
    }
}

async fn keys_of(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .expect("SCAN");
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

async fn inspect(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    skip: &HashSet<String>,
) -> Vec<Key> {
    let keys: Vec<String> = keys_of(redis, prefix)
        .await
        .into_iter()
        .filter(|k| !skip.contains(k))
        .collect();
    inspect_keys(redis, prefix, &keys).await
}

async fn inspect_keys(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    keys: &[String],
) -> Vec<Key> {
    let mut out = Vec::new();
    for k in keys {
        let (bytes, pttl, kind, encoding): (Option<u64>, i64, String, Option<String>) =
            redis::pipe()
                .cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .arg("SAMPLES")
                .arg(0)
                .cmd("PTTL")
                .arg(k)
                .cmd("TYPE")
                .arg(k)
                .cmd("OBJECT")
                .arg("ENCODING")
                .arg(k)
                .query_async(redis)
                .await
                .expect("inspect");
        let Some(bytes) = bytes else { continue };
        out.push(Key {
            pattern: pattern(&k[prefix.len()..]),
            bytes,
            pttl,
            kind,
            encoding: encoding.unwrap_or_default(),
        });
    }
    out
}

fn ttl(ms: i64) -> String {
    match ms {
        -1 => "none".into(),
        ms if ms >= 86_400_000 => format!("{:.1} d", ms as f64 / 86_400_000.0),
        ms if ms >= 3_600_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        ms if ms >= 60_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        ms => format!("{:.0} s", ms as f64 / 1000.0),
    }
}

/// Prints the keys by pattern, and returns bytes per session.
fn report(label: &str, keys: &[Key], sessions: usize) -> f64 {
    let mut by: BTreeMap<&str, Vec<&Key>> = BTreeMap::new();
    for k in keys {
        by.entry(&k.pattern).or_default().push(k);
    }
    println!(
        "{label}: {sessions} sessions signed in, {} keys",
        keys.len()
    );
    println!(
        "  {:<24} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9}  {:<22} type/encoding",
        "key", "count", "min B", "median", "max B", "sum B", "B/session", "TTL"
    );
    let mut total = 0u64;
    for (p, ks) in &by {
        let mut b: Vec<u64> = ks.iter().map(|k| k.bytes).collect();
        b.sort_unstable();
        let sum: u64 = b.iter().sum();
        total += sum;
        let (lo, hi) = ks.iter().fold((i64::MAX, i64::MIN), |(lo, hi), k| {
            (lo.min(k.pttl), hi.max(k.pttl))
        });
        let ttls = if lo == hi {
            ttl(lo)
        } else {
            format!("{}–{}", ttl(lo), ttl(hi))
        };
        let enc: HashSet<String> = ks
            .iter()
            .map(|k| format!("{}/{}", k.kind, k.encoding))
            .collect();
        let mut enc: Vec<String> = enc.into_iter().collect();
        enc.sort();
        println!(
            "  {p:<24} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9.1}  {ttls:<22} {}",
            ks.len(),
            b[0],
            b[b.len() / 2],
            b[b.len() - 1],
            sum,
            sum as f64 / sessions as f64,
            enc.join(", ")
        );
    }
    let per = total as f64 / sessions as f64;
    println!(
        "  total {total} B: {per:.0} B per session (target ≤ {TARGET:.0}: {})",
        if per <= TARGET { "met" } else { "NOT met" }
    );
    per
}

/// Runs `n` sign-ins with `sign_in(i)`, `CONCURRENCY` at a time.
async fn drive<F, Fut>(n: usize, sign_in: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sign_in = Arc::new(sign_in);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (sign_in, next) = (sign_in.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    sign_in(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sign-ins");
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Database,
    Okta,
}

async fn run(kind: Kind, db: &str, redis_url: &str) {
    let label = match kind {
        Kind::Database => "database",
        Kind::Okta => "okta",
    };
    let schema = {
        let db = db.to_owned();
        tokio::task::spawn_blocking(move || PgSchema::create(&db))
            .await
            .expect("schema")
    };
    let dir = TempDir::new();
    let mut redis = redis::Client::open(redis_url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // As long as the default `latch:` (key names count), and used by nothing else.
    let prefix = loop {
        let p = format!("f{}:", &unique()[..4]);
        if keys_of(&mut redis, &p).await.is_empty() {
            break p;
        }
    };
    let listener = free_listener();
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let env: Vec<(String, String)> = [
        ("LATCH_DATA_DIR", dir.path().to_string_lossy().as_ref()),
        ("LATCH_ISSUER", base.as_str()),
        ("LATCH_ADMIN_TOKEN", TOKEN),
        ("LATCH_DATABASE_URL", schema.url.as_str()),
        ("LATCH_REDIS_URL", redis_url),
        ("LATCH_REDIS_PREFIX", prefix.as_str()),
        ("LATCH_SECRET_KEY", SECRET_KEY),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let config = Config::from_sources(None, &env).expect("config");
    let state = bootstrap::start(config).await.expect("start").state;
    let s2 = state.clone();
    let server = HttpServer::new(move || latch_server::app::app(s2.clone()))
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
    let server_handle = server.handle();
    tokio::spawn(server);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build()
        .expect("client");
    let app = common::api(
        &http,
        &base,
        TOKEN,
        "POST",
        "/api/v2/clients",
        json!({"name": "Footprint app", "callbacks": [CB]}),
    )
    .await;
    let rp = Arc::new(Rp {
        http: http.clone(),
        base: base.clone(),
        cid: app["client_id"].as_str().expect("client_id").to_owned(),
        secret: app["client_secret"].as_str().expect("secret").to_owned(),
    });
    let org = Arc::new(start_org());
    let connection = format!("okta-{}", unique());
    match kind {
        Kind::Database => {
            for u in 0..=USERS {
                let r = http
                    .post(format!("{base}/api/v2/users"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"connection": "database",
                        "email": format!("footprint-{u}@example.com"), "password": PASSWORD}))
                    .send()
                    .await
                    .expect("user");
                assert_eq!(r.status(), 201, "user");
            }
        }
        Kind::Okta => {
            let r = http
                .post(format!("{base}/api/v2/connections"))
                .bearer_auth(TOKEN)
                .json(&json!({"name": connection, "strategy": "okta",
                    "enabled_clients": [rp.cid],
                    "options": {"domain": org.base, "client_id": "0oa1footprintAPP5d7",
                        "client_secret": "upstream-secret"}}))
                .send()
                .await
                .expect("connection");
            assert_eq!(r.status(), 201, "connection");
        }
    }

    let before: HashSet<String> = keys_of(&mut redis, &prefix).await.into_iter().collect();
    if !before.is_empty() {
        println!(
            "{label}: {} keys before the first sign-in, left out",
            before.len()
        );
    }
    // One sign-in step by step, by a user of its own (who then signs in no more).
    {
        println!("{label}: one sign-in, step by step (keys added + and deleted -)");
        let trace = Tracer {
            redis: tokio::sync::Mutex::new((redis.clone(), before.clone())),
            prefix: prefix.clone(),
        };
        match kind {
            Kind::Database => rp.database_sign_in(USERS, 0, Some(&trace)).await,
            Kind::Okta => {
                rp.okta_sign_in(&org, &connection, USERS, 0, Some(&trace))
                    .await
            }
        }
        // Its keys go, so that the figures below count only theirs.
        let sx = format!("{prefix}sx");
        for k in keys_of(&mut redis, &prefix).await {
            if before.contains(&k) || k == sx {
                continue;
            }
            if let Some(id) = k.strip_prefix(&format!("{prefix}sd:")) {
                let _: i64 = redis::cmd("ZREM")
                    .arg(&sx)
                    .arg(id)
                    .query_async(&mut redis)
                    .await
                    .expect("ZREM");
            }
            let _: i64 = redis::cmd("UNLINK")
                .arg(&k)
                .query_async(&mut redis)
                .await
                .expect("UNLINK");
        }
    }
    let mut figures = Vec::new();
    for round in 1..=2 {
        let (rp, org, connection) = (rp.clone(), org.clone(), connection.clone());
        drive(USERS, move |u| {
            let (rp, org, connection) = (rp.clone(), org.clone(), connection.clone());
            async move {
                match kind {
                    Kind::Database => rp.database_sign_in(u, round * USERS + u, None).await,
                    Kind::Okta => {
                        rp.okta_sign_in(&org, &connection, u, round * USERS + u, None)
                            .await
                    }
                }
            }
        })
        .await;
        let keys = inspect(&mut redis, &prefix, &before).await;
        let what = if round == 1 {
            format!("{label} sign-ins, one session per user")
        } else {
            format!("{label} sign-ins, two sessions per user")
        };
        figures.push(report(&what, &keys, round * USERS));
    }
    println!(
        "redis_footprint/{label}: {:.0} B per session (one per user), {:.0} B per session (two per user); target ≤ {TARGET:.0}",
        figures[0], figures[1]
    );
    server_handle.stop(true).await;
    if std::env::var_os("LATCH_FOOTPRINT_KEEP").is_some() {
        println!("{label}: keys kept under {prefix}");
        return;
    }
    let mine = keys_of(&mut redis, &prefix).await;
    for chunk in mine.chunks(500) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut redis)
            .await
            .expect("UNLINK");
    }
    drop(state);
    drop(schema);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (Some(db), Some(redis)) = common::database_and_redis() else {
        println!(
            "redis_footprint: SKIPPED (set LATCH_BENCH_DATABASE_URL and LATCH_BENCH_REDIS_URL, or the LATCH_TEST_* ones)"
        );
        return;
    };
    let rt = common::runtime();
    rt.block_on(async {
        println!(
            "Redis bytes per signed-in session (MEMORY USAGE of every key the sign-ins left, SAMPLES 0), {USERS} users of each kind"
        );
        run(Kind::Database, &db, &redis).await;
        run(Kind::Okta, &db, &redis).await;
    });
}
