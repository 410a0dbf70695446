//! Real peers nobody here wrote, against the real `latch` binary on loopback: the npm
//! `openid-client` relying party (installed by `scripts/install-peers.sh`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::process::{Latch, free_port};
use crate::support::{Backends, TOKEN, env_for};

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../peers")
}

fn require_peers() {
    let dir = peers_dir().join("node_modules/openid-client");
    assert!(
        dir.exists(),
        "npm peers are missing: run scripts/install-peers.sh (cargo xtask test does)"
    );
}

async fn openid_client_full_flow(backends: Backends, test: &str) {
    require_peers();
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let redirect = "http://127.0.0.1:9/callback";
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "openid-client RP", "callbacks": [redirect]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let email = format!("rp-{}@example.com", latch_testkit::env::unique());
    let password = "Opaque-Passw0rd!";
    let u: Value = http
        .post(format!("{}/api/v2/users", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"connection": "database", "email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking({
        let (issuer, cid, secret, email) = (
            latch.base.clone(),
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap().to_owned(),
            email.clone(),
        );
        move || {
            Command::new("node")
                .arg("rp.mjs")
                .current_dir(peers_dir())
                .env("LATCH_ISSUER", issuer)
                .env("RP_CLIENT_ID", cid)
                .env("RP_CLIENT_SECRET", secret)
                .env("RP_REDIRECT_URI", redirect)
                .env("RP_EMAIL", email)
                .env("RP_PASSWORD", password)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "rp.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "openid-client failed: {report}");
    assert_eq!(report["discovered_issuer"], latch.base.as_str());
    assert_eq!(report["sub"], u["user_id"]);
    assert_eq!(report["email"], email.as_str());
    assert_eq!(report["userinfo_email"], email.as_str());
    assert!(report["sid"].is_string());
    assert_eq!(report["has_refresh_token"], true);
    assert_eq!(report["refreshed"], true);
    assert_eq!(report["refreshed_sub"], u["user_id"]);
    assert_eq!(report["refresh_after_revoke"], "invalid_grant", "{report}");
}

#[tokio::test]
async fn openid_client_on_the_embedded_default() {
    openid_client_full_flow(Backends::Embedded, "openid_client_on_the_embedded_default").await;
}

#[tokio::test]
async fn openid_client_on_postgres_and_redis() {
    openid_client_full_flow(Backends::Production, "openid_client_on_postgres_and_redis").await;
}
