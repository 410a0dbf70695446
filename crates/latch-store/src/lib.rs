//! Latch's relational store on diesel: one codebase for SQLite (the embedded default) and
//! PostgreSQL (production), selected by the database URL.
//!
//! **Boundary:** nothing outside this crate sees diesel. Callers use the `latch_core::store`
//! traits, which [`SqlStore`] implements; every query runs on a blocking thread.

mod batch;
mod cipher;
mod conn;
#[cfg(test)]
mod log_stream_plans;
mod logs;
mod refresh_batches;
mod repos;
mod rows;
mod schema;
mod user_reads;

use std::sync::Arc;

use diesel::r2d2::{Pool, PooledConnection};
use latch_core::cache::TtlCache;
use latch_core::{Clock, StoreError, SystemClock};

pub use cipher::{Cipher, CipherError};
pub use conn::{Backend, DbConnection, Manager};
pub use logs::LOG_STREAM_QUEUE_LOCK;

/// How long a cached client (or connection) record is used before it is read again.
pub const CLIENT_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most clients cached; a full cache starts again empty.
const CACHED_CLIENTS: usize = 10_000;
/// Most connections cached; a full cache starts again empty.
const CACHED_CONNECTIONS: usize = 1_000;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool<Manager>,
    /// Opens the replacement for a pooled connection that stopped working.
    manager: Arc<Manager>,
    backend: Backend,
    cipher: Arc<Cipher>,
    /// SQLite has one writer: writers queue here instead of in SQLite's busy handler, which
    /// sleeps in steps of milliseconds.
    write_lock: Arc<std::sync::Mutex<()>>,
    /// Clients by id, kept [`CLIENT_TTL`]: every token request reads its client. This store's
    /// own writes drop the entry at once; another instance's are seen within the TTL.
    clients: Arc<TtlCache<String, latch_core::model::Client>>,
    /// Connections by name and by id, kept [`CLIENT_TTL`] too: every sign-in step and SCIM
    /// request reads its connection (and decrypts its secrets). Any connection or client write
    /// here empties it.
    connections: Arc<TtlCache<String, latch_core::model::Connection>>,
    /// Whether any client has a `global_token_revocation` endpoint (one entry), kept
    /// [`CLIENT_TTL`]: a user-wide logout looks for the user's apps that take GTR only when
    /// some app does. This store's client writes drop it.
    gtr_clients: Arc<TtlCache<String, bool>>,
    /// Client grants by client and audience, kept [`CLIENT_TTL`]: every `client_credentials`
    /// request reads its grant. This store's client and client grant writes empty it.
    client_grants: Arc<TtlCache<String, latch_core::model::ClientGrant>>,
    /// Client writes through this store, counted: a cached answer read across one is dropped.
    client_writes: Arc<std::sync::atomic::AtomicU64>,
    /// Log events are written in batches by a writer thread (see [`logs`]).
    logs: logs::LogQueue,
    /// Refresh token lookups and rotations go in batches (see [`refresh_batches`]).
    refresh: Arc<refresh_batches::RefreshBatches>,
    /// A user's identity, live refresh tokens and live grants are read in batches (see
    /// [`user_reads`]).
    user_reads: Arc<user_reads::UserReads>,
    /// Dropped with the last clone: stops the SQLite checkpoint thread and waits for it.
    _checkpoints: Arc<Option<latch_core::periodic::Periodic>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish()
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://…` / `postgresql://…`, or a SQLite path (optionally `sqlite://path`).
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout: std::time::Duration,
    /// SQLite: whether this store checkpoints the WAL on a thread of its own (the default). A
    /// process that opens the file of a running Latch (the peer bench seeds it) leaves that to
    /// Latch: two checkpointers would each hold the write lock for a `RESTART` every second.
    pub sqlite_checkpoints: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            // Also how long a request waits for a pooled connection: a database that is down or
            // saturated sheds requests with 503 in seconds instead of queueing them.
            connect_timeout: std::time::Duration::from_secs(3),
            sqlite_checkpoints: true,
        }
    }
}

#[cfg(test)]
impl SqlStore {
    /// A migrated store at `url`, for this crate's tests.
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn for_test(url: &str) -> Self {
        let s = Self::open(StoreOptions::new(url), Cipher::new(&[7; 32]).unwrap())
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    }

    /// What this store's batch threads reach the database through, for tests that hand a
    /// batch to a thread's function themselves.
    pub(crate) fn batch_db(&self) -> batch::Db {
        batch::Db {
            manager: self.manager.clone(),
            write_lock: self.write_lock.clone(),
            backend: self.backend,
        }
    }
}

impl SqlStore {
    /// Connects (failing fast with a clear error when the database cannot be reached).
    /// Does not migrate: call [`SqlStore::migrate`].
    pub async fn open(opts: StoreOptions, cipher: Cipher) -> Result<Self, StoreError> {
        let manager = Manager::new(&opts.url)?;
        let backend = manager.backend();
        let max = match backend {
            // SQLite has one writer; a few readers are plenty.
            Backend::Sqlite => opts.max_connections.min(8),
            Backend::Postgres => opts.max_connections,
        };
        // One connection first, so an unreachable or refusing database fails at once with the
        // driver's own reason rather than after the pool's timeout with its own.
        {
            use diesel::r2d2::ManageConnection;
            let probe = manager.clone();
            tokio::task::spawn_blocking(move || probe.connect())
                .await
                .map_err(|e| StoreError::Internal(Box::new(e)))?
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        let spare = Arc::new(manager.clone());
        let pool = tokio::task::spawn_blocking(move || {
            Pool::builder()
                .max_size(max)
                .min_idle(Some(1))
                // No `SELECT 1` before every use (a round trip per query on PostgreSQL): a
                // connection is checked after a query on it fails instead (see `run`).
                .test_on_check_out(false)
                .connection_timeout(opts.connect_timeout)
                .build(manager)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let write_lock: Arc<std::sync::Mutex<()>> = Arc::default();
        // SQLite's WAL is checkpointed by a thread of its own, which stops with the store.
        let checkpoints = match backend {
            Backend::Sqlite if opts.sqlite_checkpoints => {
                Some(conn::checkpoints((*spare).clone())?)
            }
            Backend::Sqlite | Backend::Postgres => None,
        };
        let pool_for_logs = pool.clone();
        let db = batch::Db {
            manager: spare.clone(),
            write_lock: write_lock.clone(),
            backend,
        };
        let refresh = Arc::new(refresh_batches::RefreshBatches::start(db.clone())?);
        let user_reads = Arc::new(user_reads::UserReads::start(db)?);
        Ok(Self {
            pool,
            manager: spare,
            backend,
            cipher: Arc::new(cipher),
            write_lock: write_lock.clone(),
            clients: Arc::new(TtlCache::new(
                Arc::new(SystemClock),
                CLIENT_TTL,
                CACHED_CLIENTS,
            )),
            connections: Arc::new(TtlCache::new(
                Arc::new(SystemClock),
                CLIENT_TTL,
                CACHED_CONNECTIONS,
            )),
            gtr_clients: Arc::new(TtlCache::new(Arc::new(SystemClock), CLIENT_TTL, 1)),
            client_grants: Arc::new(TtlCache::new(
                Arc::new(SystemClock),
                CLIENT_TTL,
                CACHED_CLIENTS,
            )),
            client_writes: Arc::default(),
            logs: logs::LogQueue::start(pool_for_logs, write_lock.clone(), backend),
            _checkpoints: Arc::new(checkpoints),
            refresh,
            user_reads,
        })
    }

    /// This store with its client and connection caches timed by `clock` (the wall clock by
    /// default), emptied.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clients = Arc::new(TtlCache::new(clock.clone(), CLIENT_TTL, CACHED_CLIENTS));
        self.connections = Arc::new(TtlCache::new(clock.clone(), CLIENT_TTL, CACHED_CONNECTIONS));
        self.gtr_clients = Arc::new(TtlCache::new(clock.clone(), CLIENT_TTL, 1));
        self.client_grants = Arc::new(TtlCache::new(clock, CLIENT_TTL, CACHED_CLIENTS));
        self
    }

    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Runs the pending migrations of this backend; returns their names.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.run(|c| conn::run_migrations(c)).await
    }

    pub(crate) fn gtr_clients(&self) -> &TtlCache<String, bool> {
        &self.gtr_clients
    }

    pub(crate) fn client_writes(&self) -> u64 {
        self.client_writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A client was written here: answers cached from before are dropped, and reads under way
    /// do not cache theirs.
    pub(crate) fn client_written(&self) {
        self.client_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gtr_clients.clear();
        self.client_grants.clear();
    }

    pub(crate) fn client_grants(&self) -> &TtlCache<String, latch_core::model::ClientGrant> {
        &self.client_grants
    }

    pub(crate) fn cached_client(&self, id: &str) -> Option<latch_core::model::Client> {
        self.clients.get(id)
    }

    pub(crate) fn cache_client(&self, c: Option<&latch_core::model::Client>, id: &str) {
        match c {
            Some(c) => self.clients.insert(id.to_owned(), c.clone()),
            None => self.clients.remove(id),
        }
    }

    pub(crate) fn cached_connection(&self, name: &str) -> Option<latch_core::model::Connection> {
        self.connections.get(name)
    }

    /// The connection with this id, cached beside the names (under a key no name can be).
    pub(crate) fn cached_connection_by_id(
        &self,
        id: &str,
    ) -> Option<latch_core::model::Connection> {
        self.connections.get(&format!("\0{id}"))
    }

    pub(crate) fn cache_connection(&self, c: &latch_core::model::Connection) {
        self.connections
            .insert(c.name.as_str().to_owned(), c.clone());
        self.connections
            .insert(format!("\0{}", c.id.as_str()), c.clone());
    }

    /// After any write to connections or to the clients they list.
    pub(crate) fn forget_connections(&self) {
        self.connections.clear();
    }

    /// Like [`run`](Self::run), for statements that write: on SQLite they take turns.
    pub(crate) async fn run_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PooledConnection<Manager>) -> Result<T, StoreError> + Send + 'static,
    {
        if self.backend != Backend::Sqlite {
            return self.run(f).await;
        }
        // Take the turn before a pooled connection, so waiting writers do not hold connections
        // that readers could use.
        let (pool, lock, manager) = (
            self.pool.clone(),
            self.write_lock.clone(),
            self.manager.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let _turn = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            checked(&manager, &mut conn, f)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PooledConnection<Manager>) -> Result<T, StoreError> + Send + 'static,
    {
        let (pool, manager) = (self.pool.clone(), self.manager.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            checked(&manager, &mut conn, f)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
    }
}

/// Runs `f` on a pooled connection. When it fails and the connection does not answer a ping
/// either (the server restarted, the network dropped it), the connection is replaced in place by
/// a new one, so the pool does not keep handing out a dead connection.
fn checked<T>(
    manager: &Manager,
    conn: &mut PooledConnection<Manager>,
    f: impl FnOnce(&mut PooledConnection<Manager>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::r2d2::ManageConnection;
    let out = f(conn);
    if out.is_err() && manager.is_valid(conn).is_err() {
        match manager.connect() {
            Ok(fresh) => **conn = fresh,
            Err(e) => tracing::warn!(error = %e, "database connection lost; reconnecting failed"),
        }
        // The database went away under the query: unavailable (503), not a bug (500).
        return out.map_err(|e| match e {
            StoreError::Internal(source) => StoreError::Unavailable(source),
            other => other,
        });
    }
    out
}
