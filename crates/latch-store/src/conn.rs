//! Connections: one enum over both backends, a pool manager that picks the backend by URL
//! scheme (diesel's own `establish` on the enum hides the real error), and migrations.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::ManageConnection;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use latch_core::StoreError;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// An r2d2 manager that knows which backend it opens.
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    backend: Backend,
}

impl Manager {
    pub fn new(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                url: with_connect_timeout(url),
                backend: Backend::Postgres,
            });
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::Unavailable(
                format!("unsupported database URL scheme in {:?}: use postgres:// or a SQLite file path", redact(url)).into(),
            ));
        }
        if path == ":memory:" {
            return Err(StoreError::Unavailable(
                "an in-memory SQLite database cannot be pooled: use a file path".into(),
            ));
        }
        Ok(Self {
            url: path.to_owned(),
            backend: Backend::Sqlite,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// libpq settings added to a PostgreSQL URL that does not set them: a connection may take 3 s
/// to open (`connect_timeout`), and a server that stops answering (a dead host, a
/// network partition) is noticed within about 10 s by TCP keepalives and `tcp_user_timeout`
/// (unacknowledged data), so a query fails (503) instead of hanging until the system's TCP
/// timeout of minutes.
const PG_DEFAULTS: [(&str, &str); 6] = [
    ("connect_timeout", "3"),
    ("keepalives", "1"),
    ("keepalives_idle", "5"),
    ("keepalives_interval", "2"),
    ("keepalives_count", "2"),
    ("tcp_user_timeout", "10000"),
];

fn with_connect_timeout(url: &str) -> String {
    let mut out = url.to_owned();
    for (key, value) in PG_DEFAULTS {
        if url.contains(&format!("{key}=")) {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("{key}={value}"));
    }
    out
}

/// A URL with any password replaced, fit for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match self.backend {
            Backend::Postgres => PgConnection::establish(&self.url)
                .map(DbConnection::Pg)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(&self.url)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // Several pooled connections share one file: wait for the writer instead of
                // failing with "database is locked", and let readers run beside it. The store's
                // checkpoint thread does the checkpoints (`checkpoints`), so a writer does not
                // wait for a checkpoint's fsync; a commit checkpoints only if the WAL has grown
                // past 100,000 pages (about 400 MB) regardless, should that thread stop.
                c.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 100000;",
                )
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(c))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// The PostgreSQL advisory lock migrations run under: instances started together on one
/// database take turns, and the later ones find the schema done (two `CREATE TYPE`s at once
/// fail on `pg_type_typname_nsp_index`).
const MIGRATION_LOCK: i64 = 0x4c61_7463_685f_6d67; // "Latch_mg"

pub(crate) fn run_migrations(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let done = match conn {
        DbConnection::Pg(c) => {
            use diesel::RunQueryDsl;
            let lock = |c: &mut diesel::PgConnection, f: &str| {
                diesel::sql_query(format!("SELECT {f}({MIGRATION_LOCK})"))
                    .execute(c)
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))
            };
            lock(c, "pg_advisory_lock")?;
            let done = c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.into_iter().map(|m| m.to_string()).collect::<Vec<_>>());
            // Released on this connection whatever the outcome (a session lock outlives an
            // error); a connection that cannot release it is closed by the pool's check.
            let _ = lock(c, "pg_advisory_unlock");
            done
        }
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.into_iter().map(|m| m.to_string()).collect::<Vec<_>>()),
    }
    .map_err(StoreError::Internal)?;
    Ok(done)
}

/// How often the checkpoint thread moves the SQLite WAL's pages into the database file.
pub(crate) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// SQLite: checkpoints the WAL every [`CHECKPOINT_EVERY`] on a thread and connection of its own
/// ([`latch_core::periodic::SQLITE_WAL_CHECKPOINT`]), until the returned handle is dropped, which
/// closes the connection before it returns. Connections leave checkpoints to it up to 100,000
/// WAL pages: left to SQLite, the commit that grows the WAL past 1,000 pages runs the checkpoint
/// and its fsync itself, and every write queued behind it waits (the refresh bench saw the
/// machine a sixth idle while rotations queued).
pub(crate) fn checkpoints(manager: Manager) -> Result<latch_core::periodic::Periodic, StoreError> {
    use diesel::r2d2::ManageConnection;
    latch_core::periodic::Periodic::with_state(
        "latch-checkpoint",
        CHECKPOINT_EVERY,
        "SQLite WAL checkpoint",
        move || manager.connect().map_err(|e| e.to_string()),
        |c: &mut DbConnection| {
            c.batch_execute(latch_core::periodic::SQLITE_WAL_CHECKPOINT)
                .map_err(|e| e.to_string())
        },
    )
    .map_err(|e| StoreError::Internal(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    /// Writers leave the WAL alone (no checkpoint after a commit, so the database file does not
    /// grow); the checkpoint thread moves the pages into the file, and stops with its store.
    #[test]
    fn sqlite_wal_is_checkpointed_by_the_thread_not_by_writers() {
        use diesel::r2d2::ManageConnection;
        let dir = latch_testkit::env::TempDir::new();
        let file = dir.path().join("main.db");
        let manager = super::Manager::new(file.to_str().unwrap()).unwrap();
        let mut c = manager.connect().unwrap();
        c.batch_execute("CREATE TABLE t (v TEXT NOT NULL);")
            .unwrap();
        let before = std::fs::metadata(&file).unwrap().len();
        // About 4 MiB in 40 commits: more than SQLite's own checkpoint threshold (1,000 pages).
        for _ in 0..40 {
            c.batch_execute(latch_testkit::env::SQLITE_APPEND_100_KIB)
                .unwrap();
        }
        assert_eq!(std::fs::metadata(&file).unwrap().len(), before);
        let checkpoints = super::checkpoints(manager).unwrap();
        latch_testkit::env::wait_for_file_size(&file, before + 4_000_000);
        drop(checkpoints);
        drop(c);
    }

    /// The checkpoint holds the write lock while it waits for a reader of older pages, so no
    /// writer slips frames in behind it, and gives up after its 50 ms; once that reader is gone,
    /// the write after the next checkpoint starts the WAL over (the WAL header's checkpoint
    /// sequence number counts the restarts). A `PASSIVE` checkpoint alone takes no lock, and
    /// under a steady stream of writes the WAL never started over (the bench's grew without end).
    #[test]
    fn sqlite_checkpoint_waits_briefly_for_readers_then_starts_the_wal_over() {
        use diesel::r2d2::ManageConnection;
        use std::time::{Duration, Instant};
        let dir = latch_testkit::env::TempDir::new();
        let file = dir.path().join("main.db");
        let wal = dir.path().join("main.db-wal");
        let manager = super::Manager::new(file.to_str().unwrap()).unwrap();
        let restarts = || -> u32 {
            let header = std::fs::read(&wal).unwrap();
            u32::from_be_bytes([header[12], header[13], header[14], header[15]])
        };
        let insert = "INSERT INTO t (v) VALUES (hex(randomblob(512)));";
        let mut w = manager.connect().unwrap();
        w.batch_execute("CREATE TABLE t (v TEXT NOT NULL);")
            .unwrap();
        w.batch_execute(insert).unwrap();
        // A reader in the middle of a transaction on a snapshot the writer has since moved past.
        let mut r = manager.connect().unwrap();
        r.batch_execute("BEGIN; SELECT count(*) FROM t;").unwrap();
        w.batch_execute(insert).unwrap();
        let mut c = manager.connect().unwrap();
        let checkpoint = std::thread::spawn(move || {
            let started = Instant::now();
            c.batch_execute(latch_core::periodic::SQLITE_WAL_CHECKPOINT)
                .unwrap();
            (started.elapsed(), c)
        });
        // A writer that does not wait: it finds the lock taken while the checkpoint waits.
        w.batch_execute("PRAGMA busy_timeout = 0;").unwrap();
        let mut locked = false;
        while !checkpoint.is_finished() && !locked {
            locked = w
                .batch_execute(insert)
                .is_err_and(|e| e.to_string().contains("locked"));
        }
        let (took, mut c) = checkpoint.join().unwrap();
        assert!(locked, "the checkpoint took the write lock while it waited");
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(5),
            "the checkpoint waited for the reader for its busy timeout, not more: {took:?}"
        );
        r.batch_execute("COMMIT;").unwrap();
        let before = restarts();
        c.batch_execute(latch_core::periodic::SQLITE_WAL_CHECKPOINT)
            .unwrap();
        w.batch_execute(insert).unwrap();
        assert_eq!(restarts(), before + 1, "the WAL started over");
        drop((w, r, c));
    }

    /// A store opened without checkpoints (a process beside a running Latch) starts no
    /// checkpoint thread; the default store does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_default_store_checkpoints_its_file() {
        use crate::{Cipher, SqlStore, StoreOptions};
        let dir = latch_testkit::env::TempDir::new();
        let url = dir.path().join("latch.db").to_string_lossy().into_owned();
        let opts = |checkpoints| StoreOptions {
            sqlite_checkpoints: checkpoints,
            ..StoreOptions::new(&url)
        };
        let own = SqlStore::open(opts(true), Cipher::new(&[7; 32]).unwrap())
            .await
            .unwrap();
        let beside = SqlStore::open(opts(false), Cipher::new(&[7; 32]).unwrap())
            .await
            .unwrap();
        assert!(own._checkpoints.is_some());
        assert!(beside._checkpoints.is_none());
    }

    #[test]
    fn postgres_urls_get_timeouts_they_do_not_set() {
        let u = super::with_connect_timeout("postgres://u@h/db?sslmode=disable&connect_timeout=9");
        assert!(
            u.contains("connect_timeout=9") && !u.contains("connect_timeout=3"),
            "{u}"
        );
        assert!(u.contains("&keepalives=1&keepalives_idle=5"), "{u}");
        assert!(u.contains("tcp_user_timeout=10000"), "{u}");
        let u = super::with_connect_timeout("postgres://u@h/db");
        assert!(
            u.starts_with("postgres://u@h/db?connect_timeout=3&keepalives=1"),
            "{u}"
        );
    }
}
