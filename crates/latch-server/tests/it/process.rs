//! The real `latch` binary, started as an operator starts it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Backends, TOKEN, env_for};

const BIN: &str = env!("CARGO_BIN_EXE_latch");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Latch {
    child: Child,
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
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Persisted", "callbacks": ["https://p.example.com/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = c["client_id"].as_str().unwrap().to_owned();
    let conn: Value = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "persisted-oidc", "strategy": "oidc",
            "options": {"issuer": "https://idp.example.com", "client_id": "a", "client_secret": "b"},
            "enabled_clients": [client_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(latch.stop().success(), "graceful stop exits 0");

    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let got: Value = http
        .get(format!(
            "{}/api/v2/connections/{}",
            latch.base,
            conn["id"].as_str().unwrap()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, conn);
    let got: Value = http
        .get(format!("{}/api/v2/clients/{client_id}", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "Persisted");
    // Still exactly one built-in database connection after the second start.
    let list: Value = http
        .get(format!("{}/api/v2/connections?name=database", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let (code, err) = run_expecting_failure(
        &[(
            "LATCH_DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/none",
        )],
        &["serve"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("database") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password printed: {err}");
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
