//! Session store figures, printed: create, look up, end-all-of-a-user (100 sessions), on the
//! embedded store and on Redis, plus Redis bytes per session.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p latch-session`). Redis is taken from
//! `LATCH_BENCH_REDIS_URL`, else `LATCH_TEST_REDIS_URL`; without either it is skipped, loudly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use latch_core::session::SessionStore;
use latch_core::*;
use latch_session::{EmbeddedSessionStore, RedisSessionStore};
use latch_testkit::env::{TempDir, unique};
use latch_testkit::fixtures;

/// Concurrent tasks: one client task pool, as a Latch instance would drive the store.
const TASKS: usize = 64;

struct Figure {
    ops: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Figure {
    fn print(&self, backend: &str, what: &str) {
        let rate = self.ops as f64 / self.elapsed.as_secs_f64();
        println!(
            "{backend:<9} {what:<38} {:>8} ops {:>10.0} ops/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            self.ops,
            rate,
            self.hist.value_at_quantile(0.50) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
}

/// Runs `per_task` operations on each of `tasks` tasks; `op(task, i)` is one operation.
async fn measure<F, Fut>(tasks: usize, per_task: usize, op: F) -> Figure
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for i in 0..per_task {
                let t0 = Instant::now();
                op(t, i).await;
                let _ = h.record(t0.elapsed().as_micros() as u64);
            }
            h
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for h in handles {
        hist.add(h.await.expect("task")).expect("merge");
    }
    Figure {
        ops: (tasks * per_task) as u64,
        elapsed: start.elapsed(),
        hist,
    }
}

async fn run(name: &str, store: Arc<dyn SessionStore>, scale: usize) -> Vec<SessionId> {
    // Create.
    let users: Arc<Vec<UserId>> = Arc::new((0..TASKS).map(|_| fixtures::user_id()).collect());
    let ids: Arc<std::sync::Mutex<Vec<SessionId>>> = Arc::default();
    let (s, u, i2) = (store.clone(), users.clone(), ids.clone());
    let create = measure(TASKS, scale / TASKS, move |t, _| {
        let (s, u, i2) = (s.clone(), u.clone(), i2.clone());
        async move {
            let mut sess = fixtures::session(&u[t]);
            sess.clients = vec![fixtures::session_client("bench-app")];
            s.insert_session(&sess).await.expect("insert");
            i2.lock().expect("lock").push(sess.id);
        }
    })
    .await;
    create.print(name, "create session");

    // Look up (random existing sessions).
    let all: Arc<Vec<SessionId>> = Arc::new(ids.lock().expect("lock").clone());
    let now = fixtures::now();
    let (s, a) = (store.clone(), all.clone());
    let lookups = measure(TASKS, scale * 4 / TASKS, move |t, i| {
        let (s, a) = (s.clone(), a.clone());
        async move {
            let id = &a[(t * 7919 + i * 104_729) % a.len()];
            assert!(s.find_session(id, now).await.expect("find").is_some());
        }
    })
    .await;
    lookups.print(name, "look up session");

    // End all sessions of users with 100 sessions each.
    let heavy: Vec<UserId> = (0..(TASKS * 2)).map(|_| fixtures::user_id()).collect();
    for u in &heavy {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let s2 = store.clone();
            let sess = fixtures::session(u);
            batch.push(async move { s2.insert_session(&sess).await.expect("insert") });
        }
        futures_util::future::join_all(batch).await;
    }
    let heavy = Arc::new(heavy);
    let (s, h) = (store.clone(), heavy.clone());
    let end_all = measure(TASKS, 2, move |t, i| {
        let (s, h) = (s.clone(), h.clone());
        async move {
            let ended = s.end_user_sessions(&h[t * 2 + i]).await.expect("end all");
            assert_eq!(ended.len(), 100);
        }
    })
    .await;
    end_all.print(name, "end all sessions of a user (100)");
    let per_session = end_all.elapsed.as_secs_f64() * 1e6 / (end_all.ops * 100) as f64;
    println!(
        "{name:<9} {:<38} {per_session:>8.2} µs of wall time per ended session",
        ""
    );
    all.to_vec()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "latch-session benchmark ({TASKS} concurrent tasks, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let dir = TempDir::new();
    let embedded = EmbeddedSessionStore::open(&dir.path().join("sessions.db"))
        .await
        .expect("embedded store");
    run("embedded", Arc::new(embedded), 4096).await;

    let url = std::env::var("LATCH_BENCH_REDIS_URL")
        .or_else(|_| std::env::var("LATCH_TEST_REDIS_URL"))
        .ok();
    let Some(url) = url else {
        println!("SKIPPED redis: set LATCH_BENCH_REDIS_URL or LATCH_TEST_REDIS_URL");
        return;
    };
    let prefix = format!("latch-bench:{}:", unique());
    let redis = RedisSessionStore::connect(&url, prefix.clone())
        .await
        .expect("redis");
    let redis = Arc::new(redis);
    let ids = run("redis", redis.clone(), 16384).await;

    // Memory: the session hash plus its share of the user's index set.
    let sample: Vec<_> = ids.iter().step_by(ids.len() / 200).take(200).collect();
    let mut total = 0u64;
    for id in &sample {
        total += redis.memory_usage(id).await.expect("memory usage");
    }
    let hash = total as f64 / sample.len() as f64;
    // A user set holding 100 ids, divided by 100: the index's cost per session.
    let u = fixtures::user_id();
    for _ in 0..100 {
        redis
            .insert_session(&fixtures::session(&u))
            .await
            .expect("insert");
    }
    let index = redis.user_index_memory(&u).await.expect("memory usage") as f64 / 100.0;
    println!(
        "redis     memory per session: {:.0} bytes (record {:.0} + user index {:.0}); target <= 1024",
        hash + index,
        hash,
        index
    );
    // Clean up what the benchmark wrote.
    let mut c = redis::Client::open(url.as_str())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut c).await;
    }
}
