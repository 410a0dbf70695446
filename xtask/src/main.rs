//! Project tasks: `cargo xtask test`, `cargo xtask bench`, `cargo xtask soak`, `cargo xtask
//! fuzz`. The dependency
//! rules are checked by `tidy`, a test module run by `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[cfg(test)]
mod tidy;

const HELP: &str = "\
cargo xtask <task>

tasks:
  serve [ARGS...]
          installs the system packages the build needs when missing (scripts/install-deps.sh),
          builds the release binary and runs `latch serve ARGS...` (embedded default: nothing else
          to set up)
  test    the whole suite, as CI runs it (cargo test --workspace), after installing the system
          packages and test peers it needs; PostgreSQL and Redis tests run
          when LATCH_TEST_DATABASE_URL / LATCH_TEST_REDIS_URL are set, and are reported skipped otherwise
  bench [--peer]
          the benchmarks, printing their figures (Redis from LATCH_BENCH_REDIS_URL or LATCH_TEST_REDIS_URL).
          --peer instead runs Latch side by side with npm oidc-provider under wrk (refresh,
          client_credentials; then GTR on Latch alone): the release binary on PostgreSQL + Redis
          (LATCH_BENCH_DATABASE_URL / LATCH_BENCH_REDIS_URL, or the LATCH_TEST_* ones) and on the
          embedded default, interleaved rounds of LATCH_BENCH_SECONDS (10) x LATCH_BENCH_ROUNDS
          (3), medians and ratios beside the RS256 signing rate measured before each of Latch's
          rounds, and each round's CPU time per request. Installs wrk
          (scripts/install-deps.sh --bench) and the peers (scripts/install-peers.sh) when missing
  soak [--minutes N]
          a bounded mixed load (sign-in, refresh, userinfo, logout, GTR) against three instances on
          PostgreSQL + Redis for N minutes (default LATCH_SOAK_MINUTES, else 30); fails if a request
          fails, an instance's RSS grows more than 10% after the first minute, or the outbox does
          not drain. Needs LATCH_BENCH_DATABASE_URL / LATCH_BENCH_REDIS_URL (or the LATCH_TEST_*
          ones); LATCH_SOAK_RATE (requests/s, 60), LATCH_SOAK_WORKERS (8), LATCH_SOAK_GTR_EVERY (4),
          LATCH_SOAK_BASELINE_SECONDS (60). Not part of `bench` or CI
  fuzz [--seconds N] [--sanitizer address|none] [target...]
          builds the cargo-fuzz targets (fuzz/) and runs each (default: all) for N seconds (default
          60), seeded from fuzz/corpus/<target>; crashes land in fuzz/artifacts/<target>/.
          Installs cargo-fuzz when missing. `test` builds them too (unoptimized) and runs each for a
          few seconds
";

/// The cargo-fuzz release `fuzz` and `test` install when it is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds each fuzz target runs within `cargo xtask test`: the seeds, then a short search.
const FUZZ_SECONDS_IN_TEST: u64 = 3;

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

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The Debian packages the build (and the tests) need, installed when missing.
fn install_system_packages() -> bool {
    let mut deps = Command::new("bash");
    deps.arg(root().join("scripts/install-deps.sh"));
    let ok = run(deps);
    if !ok {
        eprintln!(
            "xtask: could not install the system packages (scripts/install-deps.sh; root or sudo needed)"
        );
    }
    ok
}

/// `cargo xtask serve`: Latch on a fresh machine in one command.
fn serve(args: &[String]) -> bool {
    if !install_system_packages() {
        return false;
    }
    let mut cmd = cargo();
    cmd.current_dir(root())
        .args([
            "run",
            "--release",
            "--locked",
            "-p",
            "latch-server",
            "--bin",
            "latch",
            "--",
            "serve",
        ])
        .args(args);
    run(cmd)
}

fn test() -> bool {
    if !install_system_packages() {
        return false;
    }
    report_services();
    // The end-to-end tests drive real peers (npm openid-client): install them first.
    let mut peers = Command::new("bash");
    let root = root();
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
    // The fuzz targets must keep building, and their seeds must keep passing: a cheap build
    // (no sanitizer) and a few seconds each.
    let started = Instant::now();
    let fuzz_ok = fuzz_targets(&[], FUZZ_SECONDS_IN_TEST, "none", FuzzBuild::Smoke);
    eprintln!(
        "xtask: fuzz targets built and run in {} s",
        started.elapsed().as_secs()
    );
    println!(
        "xtask: {} passed, {failed} failed, {} skipped",
        passed.saturating_sub(skipped_tests),
        ignored + skipped_tests
    );
    ok && failed == 0 && fuzz_ok
}

/// `cargo xtask fuzz [--seconds N] [--sanitizer S] [target...]`.
fn fuzz(args: &[String]) -> bool {
    let (mut seconds, mut sanitizer, mut targets) = (60u64, "address".to_owned(), Vec::new());
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => seconds = n,
                None => {
                    eprintln!("xtask: --seconds takes a number");
                    return false;
                }
            },
            "--sanitizer" => match args.next() {
                Some(s) => sanitizer = s.clone(),
                None => {
                    eprintln!("xtask: --sanitizer takes address, none, …");
                    return false;
                }
            },
            other if other.starts_with('-') => {
                eprintln!("xtask: unknown option {other}\n\n{HELP}");
                return false;
            }
            target => targets.push(target.to_owned()),
        }
    }
    fuzz_targets(&targets, seconds, &sanitizer, FuzzBuild::Search)
}

/// cargo-fuzz passes nightly-only flags (`-Zsanitizer`, …); `RUSTC_BOOTSTRAP=1` makes the
/// stable toolchain accept them.
fn cargo_fuzz() -> Command {
    let mut cmd = cargo();
    cmd.current_dir(root())
        .env("RUSTC_BOOTSTRAP", "1")
        .arg("fuzz");
    cmd
}

/// How the fuzz targets are built. `Search` (`cargo xtask fuzz`): release builds with debug
/// assertions and overflow checks (an overflow is a crash to find). `Smoke` (`cargo xtask
/// test`): unoptimized builds, which check that the targets build and that their seeds pass in
/// half the build time (cargo-fuzz builds release with one codegen unit: 9.5 minutes against
/// 4.6 on a 2-core machine), at a slower search that a few seconds of smoke do not need.
#[derive(Clone, Copy)]
enum FuzzBuild {
    Search,
    Smoke,
}

/// The build flags of `cargo fuzz build` and `run`: one target dir per sanitizer so `test`
/// (none) and `fuzz` (address) do not rebuild each other.
fn fuzz_build_flags(sanitizer: &str, build: FuzzBuild) -> [String; 7] {
    [
        "--fuzz-dir".into(),
        "fuzz".into(),
        match build {
            FuzzBuild::Search => "--debug-assertions",
            FuzzBuild::Smoke => "--dev",
        }
        .into(),
        "--sanitizer".into(),
        sanitizer.into(),
        "--target-dir".into(),
        format!("fuzz/target/{sanitizer}"),
    ]
}

/// cargo-fuzz on the PATH, installed from crates.io when missing.
fn ensure_cargo_fuzz() -> bool {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return true;
    }
    eprintln!("xtask: cargo-fuzz is missing; installing {CARGO_FUZZ_VERSION} from crates.io");
    let mut cmd = cargo();
    cmd.args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    run(cmd)
}

/// What one fuzz run did, read from libFuzzer's output.
struct FuzzReport {
    target: String,
    ok: bool,
    runs: String,
    coverage: String,
    corpus: String,
    crash: Option<String>,
    log: PathBuf,
}

/// Builds `targets` (all when empty), runs each for `seconds` over a scratch corpus seeded
/// from `fuzz/corpus/<target>` (the committed seeds are never written to), and reports.
fn fuzz_targets(targets: &[String], seconds: u64, sanitizer: &str, mode: FuzzBuild) -> bool {
    if !ensure_cargo_fuzz() {
        eprintln!("xtask: could not install cargo-fuzz");
        return false;
    }
    let root = root();
    let all = match cargo_fuzz().args(["list", "--fuzz-dir", "fuzz"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        _ => {
            eprintln!("xtask: cargo fuzz list failed");
            return false;
        }
    };
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        eprintln!(
            "xtask: no fuzz target {unknown:?}; the targets are: {}",
            all.join(", ")
        );
        return false;
    }
    let targets = if targets.is_empty() {
        all
    } else {
        targets.to_vec()
    };
    // One build for all of them (cargo links the binaries in parallel).
    let mut build = cargo_fuzz();
    build.arg("build").args(fuzz_build_flags(sanitizer, mode));
    if targets.len() == 1 {
        build.arg(&targets[0]);
    }
    if !run(build) {
        eprintln!("xtask: building the fuzz targets failed");
        return false;
    }
    let logs = root.join("fuzz/target/logs");
    let _ = std::fs::create_dir_all(&logs);
    // libFuzzer runs on one thread: one target per core at a time.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut running: std::collections::VecDeque<(String, std::process::Child, PathBuf)> =
        std::collections::VecDeque::new();
    let mut reports = Vec::new();
    let finish = |(t, mut child, log): (String, std::process::Child, PathBuf)| {
        let ok = child.wait().is_ok_and(|s| s.success());
        read_report(&t, ok, log)
    };
    for t in &targets {
        let work = root.join("fuzz/target/corpus").join(t);
        let _ = std::fs::create_dir_all(&work);
        let log = logs.join(format!("{t}.log"));
        let Ok(out) = std::fs::File::create(&log) else {
            eprintln!("xtask: cannot write {}", log.display());
            return false;
        };
        let mut cmd = cargo_fuzz();
        cmd.arg("run")
            .args(fuzz_build_flags(sanitizer, mode))
            .arg(t)
            .arg(&work)
            .arg(root.join("fuzz/corpus").join(t))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-print_final_stats=1"])
            .args(fuzz_dict(t).map(|d| format!("-dict=fuzz/dicts/{d}.dict")))
            .stdout(Stdio::null())
            .stderr(out);
        if t == "saml_response" {
            // Verifying a validly signed SAML answer leaks in libxml/samael (see
            // `latch_saml::verify_response`): every seed would stop the run, and the exit too.
            cmd.arg("-detect_leaks=0")
                .env("ASAN_OPTIONS", "detect_leaks=0:detect_odr_violation=0");
        }

        eprintln!(
            "xtask: fuzzing {t} for {seconds} s (log: {})",
            log.display()
        );
        if running.len() == cores
            && let Some(oldest) = running.pop_front()
        {
            reports.push(finish(oldest));
        }
        match cmd.spawn() {
            Ok(child) => running.push_back((t.clone(), child, log)),
            Err(e) => {
                eprintln!("xtask: could not start cargo fuzz run {t}: {e}");
                reports.push(read_report(t, false, log));
            }
        }
    }
    reports.extend(running.into_iter().map(finish));
    eprintln!();
    eprintln!(
        "xtask: {:<26} {:>10} {:>8} {:>8}  result",
        "fuzz target", "runs", "cov", "corpus"
    );
    for r in &reports {
        eprintln!(
            "xtask: {:<26} {:>10} {:>8} {:>8}  {}",
            r.target,
            r.runs,
            r.coverage,
            r.corpus,
            match (&r.crash, r.ok) {
                (_, true) => "ok".to_owned(),
                (Some(a), false) => format!("CRASH: {a}"),
                (None, false) => format!("FAILED: see {}", r.log.display()),
            }
        );
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        eprintln!(
            "xtask: {failed} fuzz target(s) failed; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>`, then add the input as a regression test in the owning crate"
        );
    }
    failed == 0
}

/// The dictionary (`fuzz/dicts/`) that helps a target's mutations: the words of its format.
fn fuzz_dict(target: &str) -> Option<&'static str> {
    Some(match target {
        "gtr_body" => "json",
        "jose_sealed" => return None,
        t if t.starts_with("saml_") => "xml",
        t if t.starts_with("form_") => "form",
        _ => "jwt",
    })
}

fn read_report(target: &str, ok: bool, log: PathBuf) -> FuzzReport {
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .map(str::to_owned)
    };
    // The last status line (`#N DONE cov: … corp: …`, or the last `#N …` before a crash).
    let status = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .unwrap_or("");
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(|n| n.trim().to_owned())
        .or_else(|| {
            status
                .split_whitespace()
                .next()
                .map(|n| n.trim_start_matches('#').to_owned())
        })
        .unwrap_or_else(|| "-".into());
    let crash = text.lines().find_map(|l| {
        l.split_once("Test unit written to ")
            .map(|(_, p)| p.trim().to_owned())
    });
    FuzzReport {
        target: target.to_owned(),
        ok,
        runs,
        coverage: field(status, "cov:").unwrap_or_else(|| "-".into()),
        corpus: field(status, "corp:").unwrap_or_else(|| "-".into()),
        crash,
        log,
    }
}

/// LATCH_BENCH_* from LATCH_TEST_* where only those are set.
fn bench_services(cmd: &mut Command) {
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
}

fn bench(args: &[String]) -> bool {
    match args {
        [] => {}
        [p] if p == "--peer" => return bench_peer(),
        _ => {
            eprintln!("xtask: unknown arguments {args:?}\n\n{HELP}");
            return false;
        }
    }
    // `soak` is not listed: it runs for half an hour (`cargo xtask soak`); nor `peer`
    // (`cargo xtask bench --peer`).
    let mut ok = true;
    for (package, bench) in [
        ("latch-session", "sessions"),
        ("latch-server", "refresh"),
        ("latch-server", "logout"),
        ("latch-server", "signin"),
        ("latch-server", "footprint"),
        ("latch-server", "redis_footprint"),
    ] {
        let mut cmd = cargo();
        cmd.args(["bench", "--locked", "-p", package, "--bench", bench])
            .env("RUST_LOG", "error");
        bench_services(&mut cmd);
        ok &= run(cmd);
    }
    ok
}

/// `cargo xtask bench --peer`: the side-by-side bench (crates/latch-server/benches/peer.rs),
/// after installing wrk and the peers when they are missing.
fn bench_peer() -> bool {
    let root = root();
    let mut deps = Command::new("bash");
    deps.arg(root.join("scripts/install-deps.sh"))
        .arg("--bench");
    if !run(deps) {
        eprintln!(
            "xtask: could not install wrk (scripts/install-deps.sh --bench; root or sudo needed)"
        );
        return false;
    }
    let mut peers = Command::new("bash");
    peers.arg(root.join("scripts/install-peers.sh"));
    if !run(peers) {
        eprintln!("xtask: could not install the peers (scripts/install-peers.sh)");
        return false;
    }
    let mut cmd = cargo();
    cmd.current_dir(&root)
        .args(["bench", "--locked", "-p", "latch-server", "--bench", "peer"])
        .env("LATCH_BENCH_PEER", "1")
        .env("RUST_LOG", "error");
    bench_services(&mut cmd);
    run(cmd)
}

/// `cargo xtask soak [--minutes N]`: the soak bench (crates/latch-server/benches/soak.rs).
fn soak(args: &[String]) -> bool {
    let mut minutes = None;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--minutes" => match args
                .next()
                .filter(|n| n.parse::<f64>().is_ok_and(|n| n > 0.0))
            {
                Some(n) => minutes = Some(n.clone()),
                None => {
                    eprintln!("xtask: --minutes takes a number above 0");
                    return false;
                }
            },
            other => {
                eprintln!("xtask: unknown argument {other:?}\n\n{HELP}");
                return false;
            }
        }
    }
    let mut cmd = cargo();
    cmd.current_dir(root())
        .args(["bench", "--locked", "-p", "latch-server", "--bench", "soak"])
        .env("LATCH_SOAK", "1")
        .env("RUST_LOG", "error");
    if let Some(m) = minutes {
        cmd.env("LATCH_SOAK_MINUTES", m);
    }
    bench_services(&mut cmd);
    run(cmd)
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let ok = match task.as_deref() {
        Some("serve") => serve(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("test") => test(),
        Some("bench") => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("soak") => soak(&std::env::args().skip(2).collect::<Vec<_>>()),
        Some("fuzz") => fuzz(&std::env::args().skip(2).collect::<Vec<_>>()),
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
