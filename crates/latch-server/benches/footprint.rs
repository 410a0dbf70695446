//! The real `latch` binary (bench profile) on the embedded default, started on a fresh data dir:
//! the time from the process start to `/readyz` answering 200 (target ≤ 200 ms: a first start
//! generates the signing keys that must sign now), and its resident memory once idle (target
//! ≤ 30 MiB). Five starts; the median and the range are printed, with where the idle RSS lives
//! (from `/proc/<pid>/smaps`): the binary's own pages (its text and read-only data, file-backed),
//! the shared libraries' file-backed pages, anonymous memory (heap, thread stacks, relocated
//! data), and the thread count.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_latch");
const RUNS: usize = 5;

/// `GET /readyz` over a plain socket: 200 or not.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Idle RSS split by where it lives, KiB.
#[derive(Default, Clone, Copy)]
struct Breakdown {
    /// File-backed pages of the `latch` binary itself.
    binary: u64,
    /// File-backed pages of every other mapped file (the shared libraries).
    libraries: u64,
    /// Anonymous pages: heap, thread stacks, and copied-on-write relocated data.
    anonymous: u64,
}

fn breakdown(pid: u32) -> Breakdown {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Breakdown::default();
    };
    let binary = std::fs::canonicalize(BIN).unwrap_or_else(|_| BIN.into());
    let mut b = Breakdown::default();
    let (mut own, mut file, mut rss) = (false, false, 0);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if !first.ends_with(':') {
            // A mapping's header: address range, perms, offset, device, inode, path.
            let path = words.nth(4);
            own = path.is_some_and(|p| std::path::Path::new(p) == binary);
            file = path.is_some_and(|p| p.starts_with('/'));
            continue;
        }
        let kib = words
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match first {
            "Rss:" => rss = kib,
            "Anonymous:" => {
                b.anonymous += kib;
                let backed = rss.saturating_sub(kib);
                if own {
                    b.binary += backed;
                } else if file {
                    b.libraries += backed;
                }
            }
            _ => {}
        }
    }
    b
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut starts, mut rss, mut anon) = (Vec::new(), Vec::new(), Vec::new());
    let (mut binary, mut libraries, mut anonymous, mut threads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dir = std::env::temp_dir().join(format!(
            "latch-footprint-{}-{}",
            std::process::id(),
            starts.len()
        ));
        let port = free_port();
        let t0 = Instant::now();
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("LATCH_DATA_DIR", &dir)
            .env("LATCH_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("latch starts");
        while !ready(port) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "latch did not become ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        starts.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Idle: the background next-key generation done, nothing asked of it.
        std::thread::sleep(Duration::from_secs(3));
        rss.push(rss_kib(child.id(), "VmRSS:") as f64 / 1024.0);
        anon.push(rss_kib(child.id(), "RssAnon:") as f64 / 1024.0);
        let b = breakdown(child.id());
        binary.push(b.binary as f64 / 1024.0);
        libraries.push(b.libraries as f64 / 1024.0);
        anonymous.push(b.anonymous as f64 / 1024.0);
        threads.push(rss_kib(child.id(), "Threads:") as f64);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        format!("{lo:.0}–{hi:.0}")
    };
    println!("footprint (embedded default, fresh data dir, {RUNS} starts)");
    println!(
        "  first start to /readyz: median {:.0} ms (range {} ms; target ≤ 200 ms)",
        median(&mut starts.clone()),
        range(&starts)
    );
    println!(
        "  idle RSS after 3 s:     median {:.1} MiB (range {} MiB; target ≤ 30 MiB), of which anonymous {:.1} MiB",
        median(&mut rss.clone()),
        range(&rss),
        median(&mut anon.clone())
    );
    println!(
        "  where it lives (medians): the binary {:.1} MiB, shared libraries {:.1} MiB, \
         anonymous {:.1} MiB; {:.0} threads",
        median(&mut binary),
        median(&mut libraries),
        median(&mut anonymous),
        median(&mut threads)
    );
}
