//! The management API answers as its OpenAPI document (`GET /api/v2/openapi.json`) says:
//! PyPI `schemathesis` (installed into `peers/.venv` by `scripts/install-peers.sh`) generates
//! requests from the document, sends them to the real `latch` binary on loopback, and checks
//! every answer: no server error, a documented status, the documented content type, a body that
//! fits the documented schema.

use std::process::Command;
use std::time::Duration;

use crate::peers::peers_dir;
use crate::process::{Latch, free_port};
use crate::support::{Backends, TOKEN, env_for};

/// Seconds schemathesis spends (its phases repeat until then); the whole test stays near a
/// minute.
const BUDGET: u64 = 30;
/// The same requests every run, as far as the answers allow.
const SEED: &str = "20261206";

async fn conforms(backends: Backends, test: &str) {
    let venv = peers_dir().join(".venv");
    if !venv.exists() {
        eprintln!(
            "SKIPPING {test}: peers/.venv is missing; run scripts/install-peers.sh (cargo xtask test does)"
        );
        return;
    }
    let st = venv.join("bin/st");
    assert!(
        st.exists(),
        "schemathesis is missing from peers/.venv: run scripts/install-peers.sh"
    );
    let Some((env, dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let url = format!("{}/api/v2/openapi.json", latch.base);
    let work = dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &url])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--seed", SEED])
            .args(["--max-time", &BUDGET.to_string()])
            .args(["--request-timeout", "10", "--no-color"])
            // Its caches and reports stay in the test's own directory.
            .current_dir(&work)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(BUDGET + 60), out)
        .await
        .expect("schemathesis did not stop")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the management API does not answer as its OpenAPI document says (schemathesis, seed {SEED}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It did test: every operation of the document.
    assert!(stdout.contains("Tested:"), "{stdout}");
    assert!(!stdout.contains("Tested: 0"), "{stdout}");
}

#[tokio::test]
async fn management_api_conforms_to_its_openapi_document() {
    conforms(
        Backends::Embedded,
        "management_api_conforms_to_its_openapi_document",
    )
    .await;
}

#[tokio::test]
async fn management_api_conforms_on_postgres_and_redis() {
    conforms(
        Backends::Production,
        "management_api_conforms_on_postgres_and_redis",
    )
    .await;
}
