use std::path::Path;

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use latch_core::clock::to_millis;
use latch_core::session::*;
use latch_core::throttle::{Backoff, Throttle, ThrottleCheck, ThrottleKey};
use latch_core::*;
use time::OffsetDateTime;

use crate::internal;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sessions");

mod schema {
    diesel::table! {
        upstream_sids (key) {
            key -> Text,
            user_id -> Text,
            expires_at -> BigInt,
        }
    }
    diesel::table! {
        sessions (id) {
            id -> Text,
            user_id -> Text,
            ends_at -> BigInt,
            data -> Text,
        }
    }
    diesel::table! {
        auth_codes (digest) {
            digest -> Text,
            expires_at -> BigInt,
            data -> Text,
        }
    }
    diesel::table! {
        login_transactions (id) {
            id -> Text,
            expires_at -> BigInt,
            data -> Text,
        }
    }
    diesel::table! {
        counters (key) {
            key -> Text,
            hits -> BigInt,
            expires_at -> BigInt,
        }
    }
    diesel::table! {
        throttles (key) {
            key -> Text,
            failures -> BigInt,
            mark -> BigInt,
            until_at -> BigInt,
            expires_at -> BigInt,
        }
    }
    diesel::table! {
        seen_once (scope, key) {
            scope -> Text,
            key -> Text,
            expires_at -> BigInt,
        }
    }
}
use schema::*;

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, c: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        c.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 100000;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

/// Sessions in a SQLite file: durable across restarts, for a single instance.
#[derive(Clone)]
pub struct EmbeddedSessionStore {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    /// Dropped with the last clone of the store, after `pool`: the checkpoint thread then ends,
    /// and its connection is closed before the drop returns (the file's last connection
    /// checkpoints the WAL and removes it as it closes, as when the store held the only pool).
    _checkpoints: std::sync::Arc<Option<latch_core::periodic::Periodic>>,
}

/// How often the checkpoint thread moves the WAL's pages into the session file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Checkpoints the session file's WAL every [`CHECKPOINT_EVERY`] on a thread and connection of
/// its own ([`latch_core::periodic::SQLITE_WAL_CHECKPOINT`]) until the returned handle is dropped,
/// which closes the connection before it returns; connections leave checkpoints to it up to
/// 100,000 WAL pages. Left to SQLite, the commit that grows the WAL past 1,000 pages runs the
/// checkpoint and its fsync itself while holding the write lock, and every session write waits
/// behind it (the main store's WAL is checkpointed the same way, for the same reason).
fn checkpoints(url: String) -> Result<latch_core::periodic::Periodic, SessionError> {
    use diesel::r2d2::ManageConnection;
    let manager = ConnectionManager::<SqliteConnection>::new(url);
    latch_core::periodic::Periodic::with_state(
        "latch-sess-ckpt",
        CHECKPOINT_EVERY,
        "SQLite WAL checkpoint of the session file",
        move || {
            let mut c = manager.connect().map_err(|e| e.to_string())?;
            Pragmas.on_acquire(&mut c).map_err(|e| e.to_string())?;
            Ok(c)
        },
        |c: &mut SqliteConnection| {
            c.batch_execute(latch_core::periodic::SQLITE_WAL_CHECKPOINT)
                .map_err(|e| e.to_string())
        },
    )
    .map_err(|e| SessionError::Unavailable(Box::new(e)))
}

impl std::fmt::Debug for EmbeddedSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedSessionStore")
    }
}

fn db(e: diesel::result::Error) -> SessionError {
    internal(e)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, SessionError> {
    serde_json::to_string(v).map_err(internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, SessionError> {
    serde_json::from_str(s).map_err(internal)
}

impl EmbeddedSessionStore {
    /// Opens (creating and migrating) the session file at `path`. The file is created readable by
    /// its owner only (0600) before SQLite opens it, and SQLite gives its WAL and shared-memory
    /// files the database file's mode.
    pub async fn open(path: &Path) -> Result<Self, SessionError> {
        Self::open_with(path, true).await
    }

    /// [`EmbeddedSessionStore::open`] for a process that opens the session file of a running
    /// Latch (the peer bench seeds it): no checkpoint thread of its own, Latch's checkpoints it.
    pub async fn open_without_checkpoints(path: &Path) -> Result<Self, SessionError> {
        Self::open_with(path, false).await
    }

    async fn open_with(path: &Path, checkpoint: bool) -> Result<Self, SessionError> {
        let path = path.to_owned();
        let url = path.to_string_lossy().into_owned();
        let pool_url = url.clone();
        let pool = tokio::task::spawn_blocking(move || {
            create_private(&path)?;
            Pool::builder()
                .max_size(8)
                // Opened as load needs them, not eight at start (idle memory).
                .min_idle(Some(1))
                // No `SELECT 1` parsed and run before every use: a connection to a local file
                // does not go stale, and a failing query reports its own error.
                .test_on_check_out(false)
                .connection_customizer(Box::new(Pragmas))
                .build(ConnectionManager::<SqliteConnection>::new(pool_url))
                .map_err(|e| SessionError::Unavailable(Box::new(e)))
        })
        .await
        .map_err(internal)??;
        let store = Self {
            _checkpoints: std::sync::Arc::new(checkpoint.then(|| checkpoints(url)).transpose()?),
            pool,
        };
        store
            .run(|c| {
                c.run_pending_migrations(MIGRATIONS)
                    .map(|_| ())
                    .map_err(SessionError::Internal)
            })
            .await?;
        Ok(store)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, SessionError> + Send + 'static,
    ) -> Result<T, SessionError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = pool
                .get()
                .map_err(|e| SessionError::Unavailable(Box::new(e)))?;
            f(&mut c)
        })
        .await
        .map_err(internal)?
    }
}

/// Creates `path` empty with mode 0600 when it does not exist (SQLite takes an empty file for a
/// new database); an existing file is left as it is.
fn create_private(path: &Path) -> Result<(), SessionError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SessionError::Unavailable(Box::new(e))),
    }
}

/// Runs `f` in an IMMEDIATE transaction (takes the write lock up front, so read-modify-write
/// cannot interleave).
/// A session row, ready to insert (with its upstream index entry, if any: see
/// `UpstreamSession::index_key`).
struct SessionInsert {
    id: String,
    user: String,
    ends: i64,
    /// The absolute expiry: the index entry outlives idle expiry, which use moves.
    index_ends: i64,
    data: String,
    upstream_key: Option<String>,
}

fn upstream_sid_key(connection: &ConnectionName, sid: &str) -> String {
    format!("{connection}\n{sid}")
}

impl SessionInsert {
    fn of(s: &Session) -> Result<Self, SessionError> {
        Ok(Self {
            id: s.id.as_str().to_owned(),
            user: s.user_id.as_str().to_owned(),
            ends: to_millis(s.ends_at()),
            index_ends: to_millis(s.expires_at),
            data: to_json(s)?,
            upstream_key: s
                .upstream
                .index_key()
                .map(|key| upstream_sid_key(&s.connection, &key)),
        })
    }

    fn put(self, c: &mut SqliteConnection) -> Result<(), SessionError> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(self.id),
                sessions::user_id.eq(&self.user),
                sessions::ends_at.eq(self.ends),
                sessions::data.eq(self.data),
            ))
            .execute(c)
            .map_err(db)?;
        if let Some(key) = self.upstream_key {
            diesel::replace_into(upstream_sids::table)
                .values((
                    upstream_sids::key.eq(key),
                    upstream_sids::user_id.eq(self.user),
                    upstream_sids::expires_at.eq(self.index_ends),
                ))
                .execute(c)
                .map_err(db)?;
        }
        Ok(())
    }
}

/// An authorization code row, ready to insert.
struct CodeInsert {
    digest: String,
    expires_at: i64,
    data: String,
}

impl CodeInsert {
    fn of(code: &AuthCode) -> Result<Self, SessionError> {
        Ok(Self {
            digest: code.digest.as_str().to_owned(),
            expires_at: to_millis(code.expires_at),
            data: to_json(code)?,
        })
    }

    fn put(self, c: &mut SqliteConnection) -> Result<(), SessionError> {
        diesel::insert_into(auth_codes::table)
            .values((
                auth_codes::digest.eq(self.digest),
                auth_codes::expires_at.eq(self.expires_at),
                auth_codes::data.eq(self.data),
            ))
            .execute(c)
            .map_err(db)?;
        Ok(())
    }
}

fn write_tx<T>(
    c: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T, SessionError>,
) -> Result<T, SessionError> {
    enum E {
        S(SessionError),
        D(diesel::result::Error),
    }
    impl From<diesel::result::Error> for E {
        fn from(e: diesel::result::Error) -> Self {
            Self::D(e)
        }
    }
    c.immediate_transaction(|c| f(c).map_err(E::S))
        .map_err(|e| match e {
            E::S(e) => e,
            E::D(e) => db(e),
        })
}

/// A throttle key as stored (the default when there is no row).
fn load_throttle(c: &mut SqliteConnection, key: &str) -> Result<Throttle, SessionError> {
    let row: Option<(i64, i64, i64)> = throttles::table
        .find(key)
        .select((throttles::failures, throttles::mark, throttles::until_at))
        .first(c)
        .optional()
        .map_err(db)?;
    Ok(
        row.map_or_else(Throttle::default, |(failures, mark, until)| Throttle {
            failures: failures.max(0) as u64,
            mark,
            until,
        }),
    )
}

/// Stores a throttle key's state, or deletes the row once it means nothing.
fn save_throttle(
    c: &mut SqliteConnection,
    key: &str,
    backoff: &Backoff,
    t: &Throttle,
    now: i64,
) -> Result<(), SessionError> {
    diesel::delete(throttles::table.find(key))
        .execute(c)
        .map_err(db)?;
    let expires = backoff.forgotten_at(t);
    if expires > now {
        diesel::insert_into(throttles::table)
            .values((
                throttles::key.eq(key),
                throttles::failures.eq(t.failures.min(i64::MAX as u64) as i64),
                throttles::mark.eq(t.mark),
                throttles::until_at.eq(t.until),
                throttles::expires_at.eq(expires),
            ))
            .execute(c)
            .map_err(db)?;
    }
    Ok(())
}

fn owned_keys(keys: &[ThrottleKey<'_>]) -> Vec<(String, Backoff)> {
    keys.iter().map(|k| (k.key.to_owned(), k.backoff)).collect()
}

fn load_session(c: &mut SqliteConnection, id: &str) -> Result<Option<Session>, SessionError> {
    let data: Option<String> = sessions::table
        .find(id)
        .select(sessions::data)
        .first(c)
        .optional()
        .map_err(db)?;
    data.map(|d| from_json(&d)).transpose()
}

fn save_session(c: &mut SqliteConnection, s: &Session) -> Result<(), SessionError> {
    diesel::update(sessions::table.find(s.id.as_str()))
        .set((
            sessions::ends_at.eq(to_millis(s.ends_at())),
            sessions::data.eq(to_json(s)?),
        ))
        .execute(c)
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl SessionStore for EmbeddedSessionStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), SessionError> {
        self.run(|c| {
            c.batch_execute("SELECT 1")
                .map_err(|e| SessionError::Unavailable(Box::new(e)))
        })
        .await
    }

    async fn insert_session(&self, session: &Session) -> Result<(), SessionError> {
        let row = SessionInsert::of(session)?;
        self.run(move |c| row.put(c)).await
    }

    async fn find_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        let id = id.as_str().to_owned();
        let s = self.run(move |c| load_session(c, &id)).await?;
        Ok(s.filter(|s| s.is_live(now)))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<Session>, SessionError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            write_tx(c, |c| {
                let Some(mut s) = load_session(c, &id)?.filter(|s| s.is_live(now)) else {
                    return Ok(None);
                };
                s.last_seen_at = now;
                s.idle_expires_at = (now + idle).min(s.expires_at);
                save_session(c, &s)?;
                Ok(Some(s))
            })
        })
        .await
    }

    async fn add_session_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        let id = id.as_str().to_owned();
        let client = client.clone();
        self.run(move |c| {
            write_tx(c, |c| {
                let Some(mut s) = load_session(c, &id)?.filter(|s| s.is_live(now)) else {
                    return Ok(None);
                };
                if !s.clients.iter().any(|j| j.client_id == client.client_id) {
                    s.clients.push(client);
                    save_session(c, &s)?;
                }
                Ok(Some(s))
            })
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, SessionError> {
        let user = user.as_str().to_owned();
        let now_ms = to_millis(now);
        let rows: Vec<String> = self
            .run(move |c| {
                sessions::table
                    .filter(sessions::user_id.eq(&user))
                    .filter(sessions::ends_at.gt(now_ms))
                    .select(sessions::data)
                    .load(c)
                    .map_err(db)
            })
            .await?;
        let mut out = rows
            .iter()
            .map(|d| from_json::<Session>(d))
            .collect::<Result<Vec<_>, _>>()?;
        out.retain(|s| s.is_live(now));
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            write_tx(c, |c| {
                let s = load_session(c, &id)?;
                diesel::delete(sessions::table.find(&id))
                    .execute(c)
                    .map_err(db)?;
                Ok(s)
            })
        })
        .await
    }

    async fn expired_sessions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, SessionError> {
        let now = to_millis(now);
        self.run(move |c| {
            let rows: Vec<String> = sessions::table
                .filter(sessions::ends_at.le(now))
                .order((sessions::ends_at.asc(), sessions::id.asc()))
                .limit(i64::from(limit))
                .select(sessions::data)
                .load(c)
                .map_err(db)?;
            rows.iter().map(|d| from_json::<Session>(d)).collect()
        })
        .await
    }

    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError> {
        let user = user.as_str().to_owned();
        self.run(move |c| {
            write_tx(c, |c| {
                let rows: Vec<String> = sessions::table
                    .filter(sessions::user_id.eq(&user))
                    .select(sessions::data)
                    .load(c)
                    .map_err(db)?;
                diesel::delete(sessions::table.filter(sessions::user_id.eq(&user)))
                    .execute(c)
                    .map_err(db)?;
                let mut out = rows
                    .iter()
                    .map(|d| from_json::<Session>(d))
                    .collect::<Result<Vec<_>, _>>()?;
                out.sort_by(|a, b| {
                    a.created_at
                        .cmp(&b.created_at)
                        .then_with(|| a.id.cmp(&b.id))
                });
                Ok(out)
            })
        })
        .await
    }

    async fn insert_session_with_code(
        &self,
        session: &Session,
        code: &AuthCode,
    ) -> Result<(), SessionError> {
        let (row, code) = (SessionInsert::of(session)?, CodeInsert::of(code)?);
        self.run(move |c| write_tx(c, |c| row.put(c).and_then(|()| code.put(c))))
            .await
    }

    async fn user_of_upstream(
        &self,
        connection: &ConnectionName,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionError> {
        let indexed = upstream_sid_key(connection, key);
        let at = to_millis(now);
        let user = self
            .run(move |c| {
                let user: Option<String> = upstream_sids::table
                    .filter(upstream_sids::key.eq(indexed))
                    .filter(upstream_sids::expires_at.gt(at))
                    .select(upstream_sids::user_id)
                    .first(c)
                    .optional()
                    .map_err(db)?;
                Ok(user.map(UserId::new))
            })
            .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        // The entry lives until the absolute expiry; a live session must still carry the key.
        let live =
            self.list_user_sessions(&user, now).await?.iter().any(|s| {
                s.connection == *connection && s.upstream.index_key().as_deref() == Some(key)
            });
        Ok(live.then_some(user))
    }

    async fn insert_code(&self, code: &AuthCode) -> Result<(), SessionError> {
        let code = CodeInsert::of(code)?;
        self.run(move |c| code.put(c)).await
    }

    async fn take_code(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<AuthCode>, SessionError> {
        let digest = digest.as_str().to_owned();
        let now = to_millis(now);
        self.run(move |c| {
            write_tx(c, |c| {
                let row: Option<(i64, String)> = auth_codes::table
                    .find(&digest)
                    .select((auth_codes::expires_at, auth_codes::data))
                    .first(c)
                    .optional()
                    .map_err(db)?;
                let Some((exp, data)) = row else {
                    return Ok(None);
                };
                diesel::delete(auth_codes::table.find(&digest))
                    .execute(c)
                    .map_err(db)?;
                if exp <= now {
                    return Ok(None);
                }
                from_json(&data).map(Some)
            })
        })
        .await
    }

    async fn insert_login_tx(&self, t: &LoginTransaction) -> Result<(), SessionError> {
        let data = to_json(t)?;
        let (id, exp) = (t.id.as_str().to_owned(), to_millis(t.expires_at));
        self.run(move |c| {
            diesel::insert_into(login_transactions::table)
                .values((
                    login_transactions::id.eq(id),
                    login_transactions::expires_at.eq(exp),
                    login_transactions::data.eq(data),
                ))
                .execute(c)
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn take_login_tx(
        &self,
        id: &LoginTxId,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, SessionError> {
        let id = id.as_str().to_owned();
        let now = to_millis(now);
        self.run(move |c| {
            write_tx(c, |c| {
                let row: Option<(i64, String)> = login_transactions::table
                    .find(&id)
                    .select((login_transactions::expires_at, login_transactions::data))
                    .first(c)
                    .optional()
                    .map_err(db)?;
                let Some((exp, data)) = row else {
                    return Ok(None);
                };
                diesel::delete(login_transactions::table.find(&id))
                    .execute(c)
                    .map_err(db)?;
                if exp <= now {
                    return Ok(None);
                }
                from_json(&data).map(Some)
            })
        })
        .await
    }

    async fn forget_once(&self, scope: &str, key: &str) -> Result<(), SessionError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.run(move |c| {
            diesel::delete(seen_once::table.find((&scope, &key)))
                .execute(c)
                .map(drop)
                .map_err(db)
        })
        .await
    }

    async fn remember_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        let (exp, now) = (to_millis(expires_at), to_millis(now));
        self.run(move |c| {
            write_tx(c, |c| {
                let seen: Option<i64> = seen_once::table
                    .find((&scope, &key))
                    .select(seen_once::expires_at)
                    .first(c)
                    .optional()
                    .map_err(db)?;
                match seen {
                    Some(e) if e > now => Ok(false),
                    Some(_) => {
                        diesel::update(seen_once::table.find((&scope, &key)))
                            .set(seen_once::expires_at.eq(exp))
                            .execute(c)
                            .map_err(db)?;
                        Ok(true)
                    }
                    None => {
                        diesel::insert_into(seen_once::table)
                            .values((
                                seen_once::scope.eq(&scope),
                                seen_once::key.eq(&key),
                                seen_once::expires_at.eq(exp),
                            ))
                            .execute(c)
                            .map_err(db)?;
                        Ok(true)
                    }
                }
            })
        })
        .await
    }

    async fn count_hit(
        &self,
        key: &str,
        window_ends: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, SessionError> {
        let key = key.to_owned();
        let (ends, now) = (to_millis(window_ends), to_millis(now));
        self.run(move |c| {
            write_tx(c, |c| {
                let row: Option<(i64, i64)> = counters::table
                    .find(&key)
                    .select((counters::hits, counters::expires_at))
                    .first(c)
                    .optional()
                    .map_err(db)?;
                let hits = match row {
                    Some((hits, exp)) if exp > now => hits + 1,
                    _ => 1,
                };
                let exp = match row {
                    Some((_, exp)) if exp > now => exp,
                    _ => ends,
                };
                diesel::delete(counters::table.find(&key))
                    .execute(c)
                    .map_err(db)?;
                diesel::insert_into(counters::table)
                    .values((
                        counters::key.eq(&key),
                        counters::hits.eq(hits),
                        counters::expires_at.eq(exp),
                    ))
                    .execute(c)
                    .map_err(db)?;
                Ok(hits as u64)
            })
        })
        .await
    }

    async fn throttle_peek(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        let keys = owned_keys(keys);
        self.run(move |c| {
            keys.iter()
                .map(|(key, b)| Ok(b.current(load_throttle(c, key)?, now)))
                .collect()
        })
        .await
    }

    async fn throttle_begin(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<ThrottleCheck, SessionError> {
        let keys = owned_keys(keys);
        self.run(move |c| {
            write_tx(c, |c| {
                let mut states = Vec::with_capacity(keys.len());
                for (key, b) in &keys {
                    states.push(b.current(load_throttle(c, key)?, now));
                }
                let waiting = states
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.waits(now))
                    .max_by_key(|(_, t)| t.until);
                if let Some((key, t)) = waiting {
                    return Ok(ThrottleCheck::Wait {
                        key,
                        until: t.until_at(),
                    });
                }
                for ((key, b), t) in keys.iter().zip(states) {
                    let held = b.hold(t, now);
                    if held != t {
                        save_throttle(c, key, b, &held, to_millis(now))?;
                    }
                }
                Ok(ThrottleCheck::Go)
            })
        })
        .await
    }

    async fn throttle_fail(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        let keys = owned_keys(keys);
        self.run(move |c| {
            write_tx(c, |c| {
                let mut out = Vec::with_capacity(keys.len());
                for (key, b) in &keys {
                    let t = b.fail(b.current(load_throttle(c, key)?, now), now);
                    save_throttle(c, key, b, &t, to_millis(now))?;
                    out.push(t);
                }
                Ok(out)
            })
        })
        .await
    }

    async fn throttle_clear(&self, key: &str) -> Result<(), SessionError> {
        let key = key.to_owned();
        self.run(move |c| {
            diesel::delete(throttles::table.find(&key))
                .execute(c)
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, SessionError> {
        // Sessions stay EXPIRED_GRACE past their end, for the expiry sweeper.
        let swept = to_millis(now - latch_core::session::EXPIRED_GRACE);
        let now = to_millis(now);
        self.run(move |c| {
            write_tx(c, |c| {
                let mut n = diesel::delete(sessions::table.filter(sessions::ends_at.le(swept)))
                    .execute(c)
                    .map_err(db)?;
                n += diesel::delete(auth_codes::table.filter(auth_codes::expires_at.le(now)))
                    .execute(c)
                    .map_err(db)?;
                n += diesel::delete(
                    login_transactions::table.filter(login_transactions::expires_at.le(now)),
                )
                .execute(c)
                .map_err(db)?;
                n += diesel::delete(counters::table.filter(counters::expires_at.le(now)))
                    .execute(c)
                    .map_err(db)?;
                n += diesel::delete(throttles::table.filter(throttles::expires_at.le(now)))
                    .execute(c)
                    .map_err(db)?;
                n += diesel::delete(seen_once::table.filter(seen_once::expires_at.le(now)))
                    .execute(c)
                    .map_err(db)?;
                n += diesel::delete(upstream_sids::table.filter(upstream_sids::expires_at.le(now)))
                    .execute(c)
                    .map_err(db)?;
                Ok(n as u64)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// A session store opened beside a running Latch starts no checkpoint thread; `open` does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_default_store_checkpoints_the_session_file() {
        let dir = latch_testkit::env::TempDir::new();
        let file = dir.path().join("sessions.db");
        let own = super::EmbeddedSessionStore::open(&file).await.unwrap();
        let beside = super::EmbeddedSessionStore::open_without_checkpoints(&file)
            .await
            .unwrap();
        assert!(own._checkpoints.is_some());
        assert!(beside._checkpoints.is_none());
    }

    /// The session file's writers leave the WAL alone (no checkpoint, so no fsync, in a session
    /// write's commit); the store's checkpoint thread moves the pages into the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_session_wal_is_checkpointed_by_a_thread_not_by_writers() {
        let dir = latch_testkit::env::TempDir::new();
        let file = dir.path().join("sessions.db");
        let store = super::EmbeddedSessionStore::open(&file).await.unwrap();
        let pool = store.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = pool.get().unwrap();
            #[derive(QueryableByName)]
            struct Pages {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                wal_autocheckpoint: i64,
            }
            let p: Pages = diesel::sql_query("PRAGMA wal_autocheckpoint")
                .get_result(&mut *c)
                .unwrap();
            assert_eq!(p.wal_autocheckpoint, 100_000);
            c.batch_execute("CREATE TABLE t (v TEXT NOT NULL);")
                .unwrap();
            let before = std::fs::metadata(&file).unwrap().len();
            // About 4 MiB in 40 commits: past SQLite's own checkpoint threshold (1,000 pages),
            // faster than the thread's second.
            let start = std::time::Instant::now();
            for _ in 0..40 {
                c.batch_execute(latch_testkit::env::SQLITE_APPEND_100_KIB)
                    .unwrap();
            }
            if start.elapsed() < super::CHECKPOINT_EVERY {
                assert_eq!(std::fs::metadata(&file).unwrap().len(), before);
            }
            latch_testkit::env::wait_for_file_size(&file, before + 4_000_000);
        })
        .await
        .unwrap();
        drop(store);
    }
}
