//! Project tasks: `cargo xtask test`, `cargo xtask bench`. The dependency rules are checked by
//! `tidy`, a test module run by `cargo test --workspace`.

use std::process::{Command, ExitCode};

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
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"]);
    let ok = run(cmd);
    report_services();
    ok
}

fn bench() -> bool {
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "--locked",
        "-p",
        "latch-session",
        "--bench",
        "sessions",
    ]);
    if std::env::var_os("LATCH_BENCH_REDIS_URL").is_none()
        && let Ok(url) = std::env::var("LATCH_TEST_REDIS_URL")
    {
        cmd.env("LATCH_BENCH_REDIS_URL", url);
    }
    run(cmd)
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
