//! Tidy checks, run as tests by `cargo test --workspace`: the crate dependency arrows of
//! ARCHITECTURE.md, and that ARCHITECTURE.md names every crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Internal crates each crate may depend on (normal dependencies). `None` = any.
fn allowed(name: &str) -> Option<&'static [&'static str]> {
    const CORE: &[&str] = &["latch-core"];
    Some(match name {
        "latch-core" => &[],
        "latch-store" | "latch-session" | "latch-jose" | "latch-saml" | "latch-http" => CORE,
        "latch-remote" => &["latch-core", "latch-jose"],
        "latch-federation" => &[
            "latch-core",
            "latch-jose",
            "latch-remote",
            "latch-saml",
            "latch-http",
        ],
        "latch-login" => &["latch-core", "latch-jose", "latch-http"],
        "latch-oidc" => &["latch-core", "latch-jose", "latch-http", "latch-login"],
        "latch-backchannel" => &["latch-core", "latch-jose", "latch-http"],
        "latch-logstream" => &["latch-core", "latch-http"],
        "latch-gtr" => &["latch-core", "latch-jose", "latch-remote", "latch-http"],
        "latch-scim" => &["latch-core", "latch-jose", "latch-http"],
        "latch-samlp" => &["latch-core", "latch-saml", "latch-http", "latch-login"],
        "latch-slo" => &["latch-core", "latch-jose", "latch-saml"],
        "latch-admin" => &["latch-core", "latch-jose", "latch-http"],
        "latch-testkit" => CORE,
        "latch-server" | "xtask" => return None,
        other => panic!("crate {other} is not in the tidy table: add it with its allowed arrows"),
    })
}

/// Crates that must stay free of the web framework.
const FRAMEWORK_FREE: &[&str] = &[
    "latch-core",
    "latch-store",
    "latch-session",
    "latch-jose",
    "latch-remote",
    "latch-saml",
    "latch-testkit",
];

struct Package {
    name: String,
    deps: Vec<(String, Option<String>)>,
}

fn packages() -> Vec<Package> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            deps: p["dependencies"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|d| {
                            (
                                d["name"].as_str().unwrap_or_default().to_owned(),
                                d["kind"].as_str().map(str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

#[test]
fn dependencies_point_toward_core() {
    let mut wrong = BTreeMap::new();
    for p in packages() {
        for (dep, kind) in &p.deps {
            let internal = dep.starts_with("latch-");
            match kind.as_deref() {
                // Normal dependencies follow the table.
                None => {
                    if internal && allowed(&p.name).is_some_and(|ok| !ok.contains(&dep.as_str())) {
                        wrong.insert(format!("{} -> {dep}", p.name), "not an allowed arrow");
                    }
                    if FRAMEWORK_FREE.contains(&p.name.as_str())
                        && (dep.starts_with("actix") || dep == "askama")
                    {
                        wrong.insert(format!("{} -> {dep}", p.name), "must stay framework-free");
                    }
                }
                // Tests may add the testkit (and the server's end-to-end tests anything); the
                // testkit itself never reaches for the server or endpoint crates.
                Some("dev") => {
                    let ok = !internal
                        || dep == "latch-testkit"
                        || dep == "latch-core"
                        || p.name == "latch-server";
                    if !ok {
                        wrong.insert(
                            format!("{} -(dev)-> {dep}", p.name),
                            "tests use latch-testkit, not other crates",
                        );
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependency rules broken (see ARCHITECTURE.md):\n{wrong:#?}"
    );
}

#[test]
fn architecture_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let missing: Vec<_> = packages()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n != "xtask" && !arch.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not describe: {missing:?}"
    );
}

#[test]
fn crate_folders_are_named_as_their_crates() {
    let crates = root().join("crates");
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let dir = entry.expect("entry").path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let folder = dir
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            manifest.contains(&format!("name = \"{folder}\"")),
            "crates/{folder} is not named {folder}"
        );
    }
}
