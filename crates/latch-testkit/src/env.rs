//! Which real services this test run may use, and per-test isolation on them.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

/// `LATCH_TEST_DATABASE_URL`: a PostgreSQL database tests may create schemas in.
pub const DATABASE_URL_VAR: &str = "LATCH_TEST_DATABASE_URL";
/// `LATCH_TEST_REDIS_URL`: a Redis tests may write prefixed keys to.
pub const REDIS_URL_VAR: &str = "LATCH_TEST_REDIS_URL";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `LATCH_TEST_SKIP_LOG`: a file `cargo xtask test` reads to count skipped tests.
pub const SKIP_LOG_VAR: &str = "LATCH_TEST_SKIP_LOG";

fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(path) = var(SKIP_LOG_VAR) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// The PostgreSQL URL, or `None` after saying loudly that the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    let v = var(DATABASE_URL_VAR);
    if v.is_none() {
        skipped(
            test,
            &format!("{DATABASE_URL_VAR} is not set, PostgreSQL not exercised"),
        );
    }
    v
}

/// The Redis URL, or `None` after saying loudly that the test is skipped.
pub fn redis_url(test: &str) -> Option<String> {
    let v = var(REDIS_URL_VAR);
    if v.is_none() {
        skipped(
            test,
            &format!("{REDIS_URL_VAR} is not set, Redis not exercised"),
        );
    }
    v
}

/// A short unique token for names, prefixes and schemas.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// A scratch PostgreSQL schema, dropped when the guard is dropped. `url` connects with that
/// schema first on the search path, so migrations and queries land in it.
pub struct PgSchema {
    base: String,
    pub name: String,
    pub url: String,
}

impl PgSchema {
    pub fn create(base: &str) -> Self {
        let name = format!("latch_test_{}", unique());
        let mut c = PgConnection::establish(base).expect("connect to LATCH_TEST_DATABASE_URL");
        c.batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Self {
            base: base.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.base) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A fresh PostgreSQL database on the server of `base` (named `{prefix}_{unique}`), dropped,
/// connections and all, with the guard: for tests and benches that run `latch` processes of
/// their own, which migrate a database from scratch.
pub struct PgDatabase {
    base: String,
    pub name: String,
    /// `base` with the new database's name as its path (its query kept).
    pub url: String,
}

impl PgDatabase {
    pub fn create(base: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{}", unique());
        let mut c = PgConnection::establish(base).expect("connect to the PostgreSQL server");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let mut url = url::Url::parse(base).expect("the database URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            base: base.to_owned(),
            name,
            url: url.into(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.base) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A fresh temporary directory path (created) for SQLite files; removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("latch-test-{}", unique()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SQL that appends about 100 KiB to a SQLite table `t (v TEXT NOT NULL)`: run 40 times, about
/// 4 MiB, past SQLite's own checkpoint threshold (1,000 pages). The checkpoint threads' tests
/// fill a WAL with it.
pub const SQLITE_APPEND_100_KIB: &str = "INSERT INTO t (v) SELECT hex(randomblob(512)) FROM \
     (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
     SELECT i FROM n);";

/// Waits until `file` holds at least `size` bytes (a checkpoint moved the WAL's pages into it);
/// fails after 10 s.
pub fn wait_for_file_size(file: &std::path::Path, size: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(file).expect("file").len() < size {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was not checkpointed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
