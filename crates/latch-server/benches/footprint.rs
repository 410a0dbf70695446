//! The real `latch` binary (bench profile) on the embedded default, started on a fresh data dir:
//! the time from the process start to `/readyz` answering 200 (target ≤ 200 ms: a first start
//! generates the signing keys that must sign now), and its resident memory once idle (target
//! ≤ 30 MiB). Five starts; the median and the range are printed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latch");
const RUNS: usize = 5;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut starts, mut rss, mut anon) = (Vec::new(), Vec::new(), Vec::new());
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
}
