//! The Dockerfile, checked without Docker (no engine runs on CI machines): its build stage
//! installs what `scripts/install-deps.sh` says the build needs, and its runtime stage every
//! shared library the `latch` binary links (looked up with `readelf`, `ldd` and `dpkg -S`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// In `debian:bookworm-slim` already (essential packages).
const BASE_IMAGE: &[&str] = &["libc6", "libgcc-s1", "libstdc++6", "zlib1g"];

/// Packages each `FROM` stage installs with `apt-get install`.
fn dockerfile_stages() -> Vec<BTreeSet<String>> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut stages: Vec<BTreeSet<String>> = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.starts_with("FROM ") {
            stages.push(BTreeSet::new());
        }
        let Some(stage) = stages.last_mut() else {
            continue;
        };
        for command in line.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(at) = words.iter().position(|w| *w == "install")
                && words[..at].contains(&"apt-get")
            {
                stage.extend(
                    words[at + 1..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| (*w).to_owned()),
                );
            }
        }
    }
    stages
}

fn script_array(name: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("scripts/install-deps.sh")).unwrap();
    let start = text
        .find(&format!("\n{name}=("))
        .unwrap_or_else(|| panic!("{name} in install-deps.sh"));
    let rest = &text[start + name.len() + 3..];
    rest[..rest.find(')').unwrap()]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn dockerfile_build_stage_has_the_build_packages() {
    let stages = dockerfile_stages();
    assert_eq!(stages.len(), 2, "a build and a runtime stage");
    let missing: Vec<_> = script_array("build_packages")
        .difference(&stages[0])
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "Dockerfile build stage lacks {missing:?}"
    );
}

/// The Debian package that ships a library path (bookworm ships some under `/lib`, some under
/// `/usr/lib`, and `ldd` may name either).
fn package_of(path: &str) -> Option<String> {
    let other = match path.strip_prefix("/usr") {
        Some(rest) => rest.to_owned(),
        None => format!("/usr{path}"),
    };
    for p in [path, other.as_str()] {
        let out = Command::new("dpkg").args(["-S", p]).output().ok()?;
        if out.status.success() {
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            return line.split(':').next().map(|pkg| pkg.trim().to_owned());
        }
    }
    None
}

#[test]
fn dockerfile_runtime_stage_has_every_linked_library() {
    let bin = env!("CARGO_BIN_EXE_latch");
    let (Ok(readelf), Ok(ldd)) = (
        Command::new("readelf").args(["-d", bin]).output(),
        Command::new("ldd").arg(bin).output(),
    ) else {
        panic!("readelf and ldd (binutils, libc-bin) are needed for this check");
    };
    let needed: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect();
    // libpq is built into the binary (pq-sys `bundled`): the system one would bring Kerberos,
    // LDAP and GnuTLS, 19 more libraries to load at every start.
    assert!(needed.iter().any(|n| n.starts_with("libssl")), "{needed:?}");
    assert!(!needed.iter().any(|n| n.starts_with("libpq")), "{needed:?}");
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let runtime = dockerfile_stages().pop().unwrap();
    let mut missing = Vec::new();
    for lib in needed.iter().filter(|l| !l.starts_with("ld-linux")) {
        let path = ldd
            .lines()
            .find_map(|l| {
                let (name, rest) = l.trim().split_once(" => ")?;
                (name == lib).then(|| rest.split_whitespace().next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| panic!("ldd does not resolve {lib}: {ldd}"));
        let pkg = package_of(&path).unwrap_or_else(|| panic!("no package ships {path}"));
        if !runtime.contains(&pkg) && !BASE_IMAGE.contains(&pkg.as_str()) {
            missing.push(format!("{pkg} ({lib})"));
        }
    }
    assert!(
        missing.is_empty(),
        "Dockerfile runtime stage lacks {missing:?}"
    );
}
