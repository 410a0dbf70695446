//! Latch's relational store on diesel: one codebase for SQLite (the embedded default) and
//! PostgreSQL (production), selected by the database URL.
//!
//! **Boundary:** nothing outside this crate sees diesel. Callers use the `latch_core::store`
//! traits, which [`SqlStore`] implements; every query runs on a blocking thread.

mod cipher;
mod conn;
mod repos;
mod rows;
mod schema;

use std::sync::Arc;

use diesel::r2d2::{Pool, PooledConnection};
use latch_core::StoreError;

pub use cipher::{Cipher, CipherError};
pub use conn::{Backend, DbConnection, Manager};

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool<Manager>,
    backend: Backend,
    cipher: Arc<Cipher>,
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
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            connect_timeout: std::time::Duration::from_secs(5),
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
        let pool = tokio::task::spawn_blocking(move || {
            Pool::builder()
                .max_size(max)
                .min_idle(Some(1))
                .connection_timeout(opts.connect_timeout)
                .build(manager)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self {
            pool,
            backend,
            cipher: Arc::new(cipher),
        })
    }

    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Runs the pending migrations of this backend; returns their names.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.run(|c| conn::run_migrations(c)).await
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PooledConnection<Manager>) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
    }
}
