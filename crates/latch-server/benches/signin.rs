//! Latch's own CPU time per brokered sign-in: OpenID Connect and SAML upstream connections, and
//! a SAML app (Latch as the SAML IdP, `addons.samlp`) signing users in through the OIDC one.
//!
//! The real `latch` binary (bench profile) runs as a child process; this process plays the app
//! and the upstream IdP on loopback (an OpenID provider answering discovery, JWKS and the code
//! exchange with RS256 ID tokens; a SAML IdP whose Responses are signed here with xmlsec). One
//! sign-in is the whole brokered flow: `/authorize` → IdP → `/login/callback` (OIDC: Latch
//! redeems the upstream code and checks the ID token; SAML: the ACS POST, then the same-site
//! GET) → the app's code exchange at `/oauth/token`. For the SAML app: `GET /samlp/{client_id}`
//! with an unsigned HTTP-Redirect AuthnRequest → the OpenID provider → `/login/callback`, whose
//! answer is the page POSTing the signed `SAMLResponse` to the app's ACS (the SP's own work is
//! not part of it). Latch's CPU is read from `/proc/{pid}/stat` (user + system) before and
//! after, so the IdP's and the app's work is not counted. Returning users: 200 upstream
//! subjects, signed in again and again (JIT updates).
//!
//! Targets: ≤ 2 ms of Latch CPU per OpenID Connect sign-in, ≤ 2.5 ms per SAML app sign-in.
//! `LATCH_BENCH_SIGNIN=oidc` (or `samlp`, `saml`) runs one kind only, e.g. under `perf record`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latch_testkit::env::TempDir;
use latch_testkit::saml::{Spec, TestIdp};
use serde_json::{Value, json};

mod common;
use common::{ADMIN_TOKEN as TOKEN, Op, cookies, free_port, location, query};

const BIN: &str = env!("CARGO_BIN_EXE_latch");
const CONCURRENCY: usize = 8;
const USERS: usize = 200;

/// Clock ticks of CPU (user + system) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct Latch {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Drop for Latch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_latch(env: &[(String, String)]) -> Latch {
    let dir = TempDir::new();
    let port = free_port();
    let mut latch = Latch {
        child: Command::new(BIN)
            .arg("serve")
            .envs(env.iter().cloned())
            .env("LATCH_DATA_DIR", dir.path())
            .env("LATCH_ADMIN_TOKEN", TOKEN)
            .env("LATCH_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("latch starts"),
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("{}/readyz", latch.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return latch;
        }
        if let Ok(Some(status)) = latch.child.try_wait() {
            panic!("latch exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("latch did not become ready");
}

/// The upstream OpenID provider: discovery, JWKS, and a token endpoint that answers a code with
/// the ID token the driver minted for it.
fn start_op() -> Op {
    Op::start(
        &[
            ("authorization_endpoint", "/authorize"),
            ("token_endpoint", "/token"),
            ("jwks_uri", "/jwks"),
        ],
        json!({"expires_in": 300}),
    )
}

struct Rp {
    http: reqwest::Client,
    base: String,
    cid: String,
    secret: String,
    callback: String,
    /// The SAML app (`addons.samlp`, no signingCert): its client id.
    samlp_cid: String,
}

/// The SAML app's entity id and AssertionConsumerService.
const SAMLP_AUDIENCE: &str = "urn:bench:sp";
const SAMLP_ACS: &str = "http://127.0.0.1:9/acs";

impl Rp {
    fn authorize(&self, connection: &str) -> String {
        let cb: String = url::form_urlencoded::byte_serialize(self.callback.as_bytes()).collect();
        format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={cb}&scope=openid%20email%20profile&state=s&nonce=n&connection={connection}",
            self.base, self.cid
        )
    }

    async fn redeem(&self, back: &str) {
        let app = (self.cid.as_str(), self.secret.as_str());
        common::redeem(&self.http, &self.base, app, &self.callback, back).await;
    }
}

/// The upstream OpenID provider's part of a sign-in Latch sent to it (`to_idp`, its
/// `/authorize` URL): an ID token for `user-{user}` under a fresh code, then Latch's
/// `/login/callback` with the login's cookies; returns Latch's answer.
async fn upstream_oidc(
    app: &Rp,
    op: &Op,
    user: usize,
    to_idp: &str,
    jar: &str,
) -> reqwest::Response {
    let q = query(to_idp);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": op.base, "sub": format!("user-{user}"), "aud": "latch-bench",
        "iat": now, "exp": now + 300, "nonce": q["nonce"],
        "email": format!("user-{user}@example.com"), "email_verified": true, "name": format!("User {user}")});
    let code = op.code_for(&claims, 16);
    app.http
        .get(format!(
            "{}/login/callback?code={code}&state={}",
            app.base, q["state"]
        ))
        .header("Cookie", jar)
        .send()
        .await
        .expect("callback")
}

async fn oidc_sign_in(app: &Rp, op: &Op, user: usize) {
    let res = app
        .http
        .get(app.authorize("bench-oidc"))
        .send()
        .await
        .expect("authorize");
    let jar = cookies(&res);
    let res = upstream_oidc(app, op, user, &location(&res), &jar).await;
    app.redeem(&location(&res)).await;
}

/// The SP's HTTP-Redirect query for a fresh, unsigned AuthnRequest (DEFLATE + base64) with
/// `RelayState=r`.
fn authn_request_query(app: &Rp) -> String {
    let destination = format!("{}/samlp/{}", app.base, app.samlp_cid);
    let xml = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
            r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{now}" Destination="{destination}" "#,
            r#"ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" "#,
            r#"AssertionConsumerServiceURL="{acs}"><saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"</samlp:AuthnRequest>"#
        ),
        id = latch_saml::idp::new_id(),
        now = latch_saml::idp::instant(time::OffsetDateTime::now_utc()),
        destination = destination,
        acs = SAMLP_ACS,
        issuer = SAMLP_AUDIENCE,
    );
    // Latch's own HTTP-Redirect encoder (DEFLATE, base64, form-encoding), as an SP would.
    latch_saml::idp::Inbound::from_post(&latch_saml::idp::base64(xml.as_bytes()), Some("r".into()))
        .expect("AuthnRequest")
        .as_redirect_query("SAMLRequest")
        .expect("redirect query")
}

async fn samlp_sign_in(app: &Rp, op: &Op, user: usize) {
    // The SP names the connection, as the OIDC app does (`connection` is Auth0's parameter).
    let res = app
        .http
        .get(format!(
            "{}/samlp/{}?{}&connection=bench-oidc",
            app.base,
            app.samlp_cid,
            authn_request_query(app)
        ))
        .send()
        .await
        .expect("SSO");
    let jar = cookies(&res);
    let res = upstream_oidc(app, op, user, &location(&res), &jar).await;
    assert_eq!(res.status(), 200, "the SAML app's answer");
    let page = res.text().await.expect("page");
    assert!(
        page.contains(r#"name="SAMLResponse""#) && page.contains(SAMLP_ACS),
        "no SAMLResponse form to the ACS: {page}"
    );
}

async fn saml_sign_in(app: &Rp, idp: &TestIdp, user: usize) {
    let res = app
        .http
        .get(app.authorize("bench-saml"))
        .send()
        .await
        .expect("authorize");
    let jar = cookies(&res);
    let to_idp = location(&res);
    let relay = query(&to_idp).remove("RelayState").expect("RelayState");
    let request_id = latch_testkit::saml::authn_request_id(&to_idp);
    let acs = format!("{}/login/callback?connection=bench-saml", app.base);
    let email = format!("user-{user}@example.com");
    let response = idp.response(&Spec {
        name_id: email.clone(),
        audience: "urn:latch:bench".into(),
        acs_url: acs.clone(),
        in_response_to: request_id,
        attributes: vec![("email".into(), email)],
        ..Spec::default()
    });
    let res = app
        .http
        .post(&acs)
        .form(&[("SAMLResponse", response), ("RelayState", relay)])
        .send()
        .await
        .expect("acs");
    assert_eq!(res.status(), 303);
    let res = app
        .http
        .get(location(&res))
        .header("Cookie", jar)
        .send()
        .await
        .expect("callback");
    app.redeem(&location(&res)).await;
}

#[derive(Clone, Copy)]
enum Kind {
    Oidc,
    Samlp,
    Saml,
}

/// Runs `n` sign-ins, `CONCURRENCY` at a time; returns (Latch CPU seconds, wall seconds).
async fn run(
    kind: Kind,
    n: usize,
    app: &Arc<Rp>,
    op: &Arc<Op>,
    idp: &Arc<TestIdp>,
    pid: u32,
) -> (f64, f64) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (app, op, idp, next) = (app.clone(), op.clone(), idp.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match kind {
                        Kind::Oidc => oidc_sign_in(&app, &op, i % USERS).await,
                        Kind::Samlp => samlp_sign_in(&app, &op, i % USERS).await,
                        Kind::Saml => saml_sign_in(&app, &idp, i % USERS).await,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("driver");
    }
    let cpu = (cpu_ticks(pid) - c0) as f64 / ticks_per_second();
    (cpu, t0.elapsed().as_secs_f64())
}

async fn bench(label: &str, env: Vec<(String, String)>) {
    let latch = start_latch(&env).await;
    let pid = latch.child.id();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build()
        .expect("client");
    let callback = "http://127.0.0.1:9/cb".to_owned();
    let c = common::api(
        &http,
        &latch.base,
        TOKEN,
        "POST",
        "/api/v2/clients",
        json!({"name": "Bench app", "callbacks": [callback]}),
    )
    .await;
    let cid = c["client_id"].as_str().expect("client_id").to_owned();
    let r = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Bench SAML app", "callbacks": [SAMLP_ACS],
                      "addons": {"samlp": {"audience": SAMLP_AUDIENCE}}}))
        .send()
        .await
        .expect("SAML app");
    assert_eq!(r.status(), 201, "SAML app");
    let saml_app: Value = r.json().await.expect("SAML app json");
    let samlp_cid = saml_app["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let op = Arc::new(start_op());
    let idp = Arc::new(TestIdp::new("https://idp.example.com/bench"));
    for (name, strategy, enabled, options) in [
        (
            "bench-oidc",
            "oidc",
            json!([cid, samlp_cid]),
            json!({"issuer": op.base, "client_id": "latch-bench", "client_secret": "s"}),
        ),
        (
            "bench-saml",
            "samlp",
            json!([cid]),
            json!({"signInEndpoint": "http://127.0.0.1:9/sso", "signingCert": idp.cert_pem(),
                   "entityId": "urn:latch:bench"}),
        ),
    ] {
        let r = http
            .post(format!("{}/api/v2/connections", latch.base))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "strategy": strategy, "enabled_clients": enabled, "options": options}))
            .send()
            .await
            .expect("connection");
        assert_eq!(r.status(), 201);
    }
    let app = Arc::new(Rp {
        http,
        base: latch.base.clone(),
        cid,
        secret: c["client_secret"].as_str().expect("secret").to_owned(),
        callback,
        samlp_cid,
    });
    let only = std::env::var("LATCH_BENCH_SIGNIN").unwrap_or_default();
    for (kind, name, what, warm, n) in [
        (Kind::Oidc, "OIDC", "OIDC brokered sign-in", 400, 3000),
        (
            Kind::Samlp,
            "SAMLP",
            "SAML app (Latch as IdP, OIDC upstream) sign-in",
            400,
            3000,
        ),
        (Kind::Saml, "SAML", "SAML brokered sign-in", 200, 1000),
    ] {
        if !only.is_empty() && !only.eq_ignore_ascii_case(name) {
            continue;
        }
        // Warm-up: every user exists, caches are filled.
        run(kind, warm, &app, &op, &idp, pid).await;
        let (cpu, wall) = run(kind, n, &app, &op, &idp, pid).await;
        let ms = cpu * 1000.0 / n as f64;
        let verdict = match kind {
            Kind::Oidc if ms <= 2.0 => " (target <= 2 ms: met)",
            Kind::Oidc => " (target <= 2 ms: NOT met)",
            Kind::Samlp if ms <= 2.5 => " (target <= 2.5 ms: met)",
            Kind::Samlp => " (target <= 2.5 ms: NOT met)",
            Kind::Saml => "",
        };
        println!(
            "signin/{label}: {what}: {n} sign-ins, Latch CPU {ms:.2} ms/sign-in{verdict}, \
             {:.0} sign-ins/s per Latch CPU-second, {:.0} sign-ins/s wall ({CONCURRENCY} concurrent, IdP and app on the same cores)",
            1000.0 / ms,
            n as f64 / wall
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = common::runtime();
    rt.block_on(async {
        bench("embedded", Vec::new()).await;
        match (
            std::env::var("LATCH_BENCH_DATABASE_URL"),
            std::env::var("LATCH_BENCH_REDIS_URL"),
        ) {
            (Ok(db), Ok(redis)) => {
                let schema = latch_testkit::env::PgSchema::create(&db);
                let env = vec![
                    ("LATCH_DATABASE_URL".to_owned(), schema.url.clone()),
                    ("LATCH_REDIS_URL".to_owned(), redis),
                    (
                        "LATCH_REDIS_PREFIX".to_owned(),
                        format!("latch-bench:{}:", latch_testkit::env::unique()),
                    ),
                    ("LATCH_SECRET_KEY".to_owned(), common::SECRET_KEY.to_owned()),
                ];
                bench("postgres+redis", env).await;
            }
            _ => println!(
                "signin: SKIPPED PostgreSQL + Redis (set LATCH_BENCH_DATABASE_URL and LATCH_BENCH_REDIS_URL)"
            ),
        }
    });
}
