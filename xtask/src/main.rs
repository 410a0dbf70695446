//! Project tasks: `cargo xtask test`, `cargo xtask bench`. The dependency rules are checked by
//! `tidy`, a test module run by `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

#[cfg(test)]
mod tidy;

const HELP: &str = "\
cargo xtask <task>

tasks:
  test    the whole suite, as CI runs it (cargo test --workspace); PostgreSQL and Redis tests run
          when LATCH_TEST_DATABASE_URL / LATCH_TEST_REDIS_URL are set, and are reported skipped otherwise
  bench   the benchmarks, printing their figures (Redis from LATCH_BENCH_REDIS_URL or LATCH_TEST_REDIS_URL)
";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut cmd: Command) -> bool {
    eprintln!("xtask: running {:?}", cmd);
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// Which real services this run uses, said loudly.
fn report_services() {
    let mut skipped = Vec::new();
    for (var, what) in [
        ("LATCH_TEST_DATABASE_URL", "PostgreSQL"),
        ("LATCH_TEST_REDIS_URL", "Redis"),
    ] {
        match std::env::var(var).ok().filter(|v| !v.is_empty()) {
            Some(v) => eprintln!("xtask: {what} tests run against {v}"),
            None => skipped.push(format!("{what} ({var} is not set)")),
        }
    }
    if !skipped.is_empty() {
        eprintln!();
        eprintln!("xtask: ***************************************************************");
        for s in &skipped {
            eprintln!("xtask: SKIPPING every {s} test");
        }
        eprintln!("xtask: CI sets both; see README.md > Tests");
        eprintln!("xtask: ***************************************************************");
        eprintln!();
    }
}

fn test() -> bool {
    report_services();
    // The end-to-end tests drive real peers (npm openid-client): install them first.
    let mut peers = Command::new("bash");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(std::path::Path::new("."));
    peers.arg(root.join("scripts/install-peers.sh"));
    if !run(peers) {
        eprintln!("xtask: could not install the test peers (scripts/install-peers.sh)");
        return false;
    }
    let mut cmd = cargo();
    let skip_log = std::env::temp_dir().join(format!("latch-skipped-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    cmd.args(["test", "--workspace", "--locked"])
        .env("LATCH_TEST_SKIP_LOG", &skip_log)
        .stdout(Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    // Echo cargo's output and add up its per-binary results into one closing line.
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(what)) = (
                        words.next().and_then(|n| n.parse::<u64>().ok()),
                        words.next(),
                    ) {
                        match what {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            "ignored" => ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    report_services();
    // Tests that found their service unconfigured passed without exercising it: count them as
    // skipped, not passed.
    let skipped_tests = std::fs::read_to_string(&skip_log)
        .map(|s| s.lines().count() as u64)
        .unwrap_or(0);
    let _ = std::fs::remove_file(&skip_log);
    if skipped_tests > 0 {
        eprintln!(
            "xtask: {skipped_tests} tests skipped their PostgreSQL/Redis part (listed with SKIPPED above when run with --nocapture)"
        );
    }
    println!(
        "xtask: {} passed, {failed} failed, {} skipped",
        passed.saturating_sub(skipped_tests),
        ignored + skipped_tests
    );
    ok && failed == 0
}

fn bench() -> bool {
    let mut ok = true;
    for (package, bench) in [
        ("latch-session", "sessions"),
        ("latch-server", "refresh"),
        ("latch-server", "logout"),
        ("latch-server", "signin"),
    ] {
        let mut cmd = cargo();
        cmd.args(["bench", "--locked", "-p", package, "--bench", bench])
            .env("RUST_LOG", "error");
        for (bench_var, test_var) in [
            ("LATCH_BENCH_REDIS_URL", "LATCH_TEST_REDIS_URL"),
            ("LATCH_BENCH_DATABASE_URL", "LATCH_TEST_DATABASE_URL"),
        ] {
            if std::env::var_os(bench_var).is_none()
                && let Ok(url) = std::env::var(test_var)
            {
                cmd.env(bench_var, url);
            }
        }
        ok &= run(cmd);
    }
    ok
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let ok = match task.as_deref() {
        Some("test") => test(),
        Some("bench") => bench(),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            true
        }
        Some(other) => {
            eprint!("xtask: unknown task {other:?}\n\n{HELP}");
            false
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
