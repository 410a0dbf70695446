//! The real `latch` binary, started as an operator starts it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use latch_core::model::{Delivery, DeliveryState};
use latch_core::store::OutboxRepo;

use crate::support::{Backends, Remote, TOKEN, api, call, env_for, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_latch");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Latch {
    pub child: Child,
    pub base: String,
}

impl Latch {
    pub fn start(env: &[(String, String)], port: u16) -> Self {
        let child = Command::new(BIN)
            .arg("serve")
            .envs(env.iter().cloned())
            .env("LATCH_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("latch exited early: {status}");
            }
            assert!(Instant::now() < deadline, "latch did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait: a graceful stop exits 0.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("latch did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn survives_a_restart(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let http = reqwest::Client::new();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let at = Remote(&http, &latch.base);
    let c = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Persisted", "callbacks": ["https://p.example.com/cb"]})),
    )
    .await;
    let client_id = c["client_id"].as_str().unwrap().to_owned();
    let conn = api(
        &at,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": "persisted-oidc", "strategy": "oidc",
            "options": {"issuer": "https://idp.example.com", "client_id": "a", "client_secret": "b"},
            "enabled_clients": [client_id]})),
    )
    .await;
    assert!(latch.stop().success(), "graceful stop exits 0");

    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let at = Remote(&http, &latch.base);
    let path = format!("/api/v2/connections/{}", conn["id"].as_str().unwrap());
    assert_eq!(api(&at, "GET", &path, None).await, conn);
    let path = format!("/api/v2/clients/{client_id}");
    assert_eq!(api(&at, "GET", &path, None).await["name"], "Persisted");
    // Still exactly one built-in database connection after the second start.
    let list = api(&at, "GET", "/api/v2/connections?name=database", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn embedded_default_survives_a_restart() {
    survives_a_restart(Backends::Embedded, "embedded_default_survives_a_restart").await;
}

#[tokio::test]
async fn postgres_and_redis_survive_a_restart() {
    survives_a_restart(Backends::Production, "postgres_and_redis_survive_a_restart").await;
}

fn run_expecting_failure(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let dir = latch_testkit::env::TempDir::new();
    let out = Command::new(BIN)
        .args(args)
        .env("LATCH_DATA_DIR", dir.path())
        .env("LATCH_BIND", format!("127.0.0.1:{}", free_port()))
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let (code, err) = run_expecting_failure(
        &[
            ("LATCH_BIND", "not-an-address"),
            ("LATCH_LOG_FORMAT", "xml"),
        ],
        &["serve"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("LATCH_BIND") && err.contains("LATCH_LOG_FORMAT"),
        "{err}"
    );
}

#[test]
fn unreachable_database_stops_start_up() {
    let started = Instant::now();
    let (code, err) = run_expecting_failure(
        &[(
            "LATCH_DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/none",
        )],
        &["serve"],
    );
    assert_eq!(code, 1, "{err}");
    // One line naming the setting and what failed, at once (not after the pool's timeout).
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("LATCH_DATABASE_URL") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.to_ascii_lowercase().contains("refused"),
        "says what failed: {err}"
    );
    assert!(!err.contains("hunter2"), "password printed: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_redis_stops_start_up() {
    let (code, err) =
        run_expecting_failure(&[("LATCH_REDIS_URL", "redis://127.0.0.1:1")], &["serve"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("LATCH_REDIS_URL"), "{err}");
}

#[test]
fn migrate_runs_alone() {
    let dir = latch_testkit::env::TempDir::new();
    let out = Command::new(BIN)
        .arg("migrate")
        .env("LATCH_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("latch.db").exists());
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("serve") && text.contains("migrate") && text.contains("--config"),
        "{text}"
    );
}

/// Signs a user in through the real binary's form (reqwest, cookies by hand); returns the code.
async fn sign_in_over_http(
    base: &str,
    client_id: &str,
    callback: &str,
    email: &str,
    password: &str,
) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cb: String = url::form_urlencoded::byte_serialize(callback.as_bytes()).collect();
    let res = http
        .get(format!("{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={cb}&scope=openid%20offline_access&state=s"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let html = res.text().await.unwrap();
    let start = html.find("name=\"tx\" value=\"").unwrap() + 17;
    let tx = &html[start..start + html[start..].find('"').unwrap()];
    let res = http
        .post(format!("{base}/login"))
        .header("Cookie", cookies.join("; "))
        .form(&[("tx", tx), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let loc = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    loc.query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

/// The outbox of a Latch started on an environment from [`env_for`], read beside it (deliveries
/// hold nothing encrypted, so any master key reads them).
struct Outbox(latch_store::SqlStore);

impl Outbox {
    async fn beside(env: &[(String, String)]) -> Self {
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let url = var("LATCH_DATABASE_URL").unwrap_or_else(|| {
            let dir = std::path::PathBuf::from(var("LATCH_DATA_DIR").unwrap());
            dir.join("latch.db").to_string_lossy().into_owned()
        });
        let mut opts = latch_store::StoreOptions::new(url);
        opts.max_connections = 1;
        let cipher = latch_store::Cipher::new(&[0; 32]).unwrap();
        Self(latch_store::SqlStore::open(opts, cipher).await.unwrap())
    }

    async fn deliveries(&self) -> Vec<Delivery> {
        self.0
            .list_deliveries(&Default::default(), 100)
            .await
            .unwrap()
    }
}

async fn logout_survives_sigkill(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    // The app's back-channel endpoint is down at first: nothing listens on its port.
    let app_port = free_port();
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let at = Remote(&http, &latch.base);
    let callback = "http://127.0.0.1:9/cb";
    let c = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "App", "callbacks": [callback],
            "oidc_logout": {"backchannel_logout_urls": [format!("http://127.0.0.1:{app_port}/bc")]}})),
    )
    .await;
    let client_id = c["client_id"].as_str().unwrap().to_owned();
    let email = format!("k{}@example.com", latch_testkit::env::unique());
    let u = api(
        &at,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": "Kill-Nine-99"})),
    )
    .await;
    sign_in_over_http(&latch.base, &client_id, callback, &email, "Kill-Nine-99").await;
    let outbox = Outbox::beside(&env).await;
    let sessions = format!("/api/v2/users/{}/sessions", u["user_id"].as_str().unwrap());
    let (status, _) = call(&at, "DELETE", &sessions, None, Some(TOKEN)).await;
    assert_eq!(status, 204);
    // Let it fail once (the failure written, the delivery waiting for its retry), then kill it
    // without a chance to clean up.
    eventually("a failed attempt recorded", async || {
        let d = outbox.deliveries().await;
        d.iter()
            .any(|d| {
                d.attempts >= 1 && d.state == DeliveryState::Pending && d.locked_until.is_none()
            })
            .then_some(())
    })
    .await;
    drop(outbox);
    latch.child.kill().unwrap();
    let _ = latch.child.wait();

    // The app comes back; so does Latch. The logout is delivered.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    let rx = crate::backchannel::Receiver::serve(listener);
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let got = rx.wait_for(1, Duration::from_secs(45)).await;
    assert_eq!(got.len(), 1, "the logout token arrived after the restart");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&got[0].1)
        .unwrap()
        .claims;
    assert_eq!(claims["aud"], client_id.as_str());
    assert_eq!(claims["sub"], u["user_id"]);
}

#[tokio::test]
async fn logout_survives_sigkill_on_the_embedded_default() {
    logout_survives_sigkill(
        Backends::Embedded,
        "logout_survives_sigkill_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn logout_survives_sigkill_on_postgres_and_redis() {
    logout_survives_sigkill(
        Backends::Production,
        "logout_survives_sigkill_on_postgres_and_redis",
    )
    .await;
}

/// A first start whose port is taken fails before it creates anything: no admin user, token or
/// database whose one-time password and token would never be printed.
#[test]
fn a_taken_port_creates_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = latch_testkit::env::TempDir::new();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .arg("serve")
        .env("LATCH_DATA_DIR", &data)
        .env("LATCH_BIND", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("LATCH_BIND") && err.contains("cannot listen"),
        "{err}"
    );
    assert!(!data.exists(), "nothing created in {}", data.display());
}

/// Read-only commands in the wrong directory say so instead of creating a deployment.
#[test]
fn keys_list_without_a_deployment_creates_nothing() {
    let dir = latch_testkit::env::TempDir::new();
    let data = dir.path().join("nowhere");
    for args in [&["keys", "list"][..], &["admin", "new-token"]] {
        let out = Command::new(BIN)
            .args(args)
            .env("LATCH_DATA_DIR", &data)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no Latch deployment found") && err.contains("nowhere"),
            "{err}"
        );
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

/// The operator who lost the one-time password and token gets new ones from the CLI, on the
/// machine holding the data dir.
#[tokio::test]
async fn admin_recovery_commands() {
    let Some((env, _dir, _schema)) = env_for("admin_recovery_commands", Backends::Embedded) else {
        return;
    };
    // Without LATCH_ADMIN_TOKEN / LATCH_ADMIN_PASSWORD: the first start prints them once.
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k != "LATCH_ADMIN_TOKEN")
        .collect();
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    latch.stop();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    };
    let password = cli(&["admin", "reset-password"]);
    let token = cli(&["admin", "new-token"]);
    assert!(token.starts_with("latch_"), "{token}");
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the new token works");
    // The new password signs `admin` in, through an app the new token registers.
    let (status, app) = call(
        &Remote(&http, &latch.base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Recovery check", "callbacks": ["http://127.0.0.1:9/cb"]})),
        Some(&token),
    )
    .await;
    assert!(status.is_success(), "{status} {app}");
    let code = sign_in_over_http(
        &latch.base,
        app["client_id"].as_str().unwrap(),
        "http://127.0.0.1:9/cb",
        "admin",
        &password,
    )
    .await;
    assert!(!code.is_empty(), "the new password signs in");
}

/// `LATCH_LOG_FORMAT=json`: stdout holds one JSON object per line and nothing else (the banner
/// goes to stderr), no colour codes, refused requests at `info` without Rust debug structs, and
/// no request's query (`state`, `login_hint`) in the logs.
#[tokio::test]
async fn json_logs_are_json_lines_only() {
    let dir = latch_testkit::env::TempDir::new();
    let port = free_port();
    let out_path = dir.path().join("stdout.log");
    let child = Command::new(BIN)
        .arg("serve")
        .env("LATCH_DATA_DIR", dir.path().join("data"))
        .env("LATCH_BIND", format!("127.0.0.1:{port}"))
        .env("LATCH_LOG_FORMAT", "json")
        .env("LATCH_BINDD", "typo")
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut latch = Latch {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let secret_state = "state-that-must-not-be-logged";
    let res = http
        .get(format!(
            "{}/authorize?client_id=nobody&response_type=code&state={secret_state}&login_hint=hint%40example.com",
            latch.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .get(format!("{}/api/v2/users", latch.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(latch.child.id().to_string())
        .status();
    let mut stderr = String::new();
    if let Some(mut e) = latch.child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = latch.child.wait();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(!stdout.trim().is_empty());
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(!stdout.contains('\u{1b}'), "colour codes in {stdout}");
    assert!(!stdout.contains(secret_state) && !stdout.contains("hint%40example.com"));
    assert!(!stdout.contains("Error encountered") && !stdout.contains("ApiError {"));
    let refused: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "request refused")
        .collect();
    assert!(!refused.is_empty(), "{stdout}");
    assert!(refused.iter().all(|v| v["level"] == "INFO"), "{refused:?}");
    assert!(
        stdout.contains("LATCH_BINDD is not a Latch setting") && stdout.contains("LATCH_BIND?"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Latch is running at"),
        "banner on stderr: {stderr}"
    );
}
