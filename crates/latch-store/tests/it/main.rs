//! The store conformance suite on SQLite and on PostgreSQL, plus what only this crate can see
//! (encryption at rest, migrations, connection failures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latch_store::{Cipher, SqlStore, StoreOptions};
use latch_testkit::StoreHarness;
use latch_testkit::env::{PgSchema, TempDir};

mod log_streams;

const KEY: [u8; 32] = [42; 32];

async fn open(url: &str) -> SqlStore {
    let store = SqlStore::open(StoreOptions::new(url), Cipher::new(&KEY).unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

mod sqlite {
    use super::*;

    pub async fn make(_test: &str) -> Option<StoreHarness> {
        let dir = TempDir::new();
        let store = open(&dir.path().join("latch.db").to_string_lossy()).await;
        Some(StoreHarness {
            store: Arc::new(store),
            guard: Box::new(dir),
        })
    }

    latch_testkit::store_conformance_tests!(make);
}

mod postgres {
    use super::*;

    pub async fn make(test: &str) -> Option<StoreHarness> {
        let base = latch_testkit::env::postgres_url(test)?;
        let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
            .await
            .unwrap();
        let store = open(&schema.url).await;
        Some(StoreHarness {
            store: Arc::new(store),
            guard: Box::new(schema),
        })
    }

    latch_testkit::store_conformance_tests!(make);
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest() {
    use latch_core::model::Strategy;
    use latch_core::store::ConnectionRepo;
    let dir = TempDir::new();
    let path = dir.path().join("latch.db");
    let store = open(&path.to_string_lossy()).await;
    let mut c = latch_testkit::fixtures::connection(Strategy::Oidc);
    c.secrets.insert(
        "client_secret".into(),
        latch_core::SecretString::new("plain-text-marker-8f3a"),
    );
    store.insert_connection(&c).await.unwrap();
    drop(store);
    let mut raw = Vec::new();
    for f in ["latch.db", "latch.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join(f)) {
            raw.extend(b);
        }
    }
    let needle = b"plain-text-marker-8f3a";
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle),
        "secret stored in clear"
    );

    // Another master key cannot read it back.
    let other = SqlStore::open(
        StoreOptions::new(path.to_string_lossy()),
        Cipher::new(&[1; 32]).unwrap(),
    )
    .await
    .unwrap();
    assert!(other.get_connection(&c.id).await.is_err());
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = TempDir::new();
    let url = dir.path().join("latch.db").to_string_lossy().into_owned();
    let store = SqlStore::open(StoreOptions::new(&url), Cipher::new(&KEY).unwrap())
        .await
        .unwrap();
    assert!(!store.migrate().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let mut opts = StoreOptions::new("postgres://postgres@127.0.0.1:1/nowhere");
    opts.connect_timeout = std::time::Duration::from_millis(500);
    let err = SqlStore::open(opts, Cipher::new(&KEY).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, latch_core::StoreError::Unavailable(_)),
        "{err:?}"
    );
    let err = SqlStore::open(StoreOptions::new("mysql://x/y"), Cipher::new(&KEY).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unavailable"));
}

/// Pooled connections are not pinged before each use, so one the server dropped must be noticed
/// when a query on it fails, and replaced: the next call works, on a new server backend. (PostgreSQL
/// only: SQLite runs in the process and has no server to drop a connection.)
#[tokio::test]
async fn a_connection_the_server_dropped_is_replaced() {
    use latch_core::store::ClientRepo;
    let Some(base) =
        latch_testkit::env::postgres_url("a_connection_the_server_dropped_is_replaced")
    else {
        return;
    };
    let b = base.clone();
    let schema = tokio::task::spawn_blocking(move || PgSchema::create(&b))
        .await
        .unwrap();
    let app = format!("latch_drop_{}", latch_testkit::env::unique());
    let mut opts = StoreOptions::new(format!("{}&application_name={app}", schema.url));
    opts.max_connections = 1;
    let store = SqlStore::open(opts, Cipher::new(&KEY).unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let client = latch_testkit::fixtures::client();
    store.insert_client(&client).await.unwrap();
    let before = backends(&base, &app).await;
    assert_eq!(before.len(), 1, "the pool holds one connection: {before:?}");

    // The server ends the store's connection, and the backend has exited when this returns.
    let killed = terminate(&base, &app).await;
    assert_eq!(killed, before, "the store's backend was terminated");
    assert!(backends(&base, &app).await.is_empty());

    // The call on the dead connection fails; the one after it works, on a new backend.
    assert!(
        store.list_clients().await.is_err(),
        "the dropped connection was used"
    );
    let clients = store.list_clients().await.expect("a new connection");
    assert!(clients.iter().any(|c| c.client_id == client.client_id));
    let after = backends(&base, &app).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        !killed.contains(&after[0]),
        "a new backend: {before:?} -> {after:?}"
    );
}

/// One thread writes every rotation of an instance, so a rotation must not wait without end on
/// a row lock held elsewhere (here: an open transaction): it fails as "unavailable" (503) at
/// the batch connection's lock timeout, changes nothing, and the same rotation succeeds once
/// the lock is gone. (PostgreSQL only: SQLite's writers take turns in the process.)
#[tokio::test]
async fn a_rotation_behind_a_held_row_lock_is_unavailable_not_stuck() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    use latch_core::store::{ClientRepo, RefreshTokenRepo, UserRepo};
    use latch_testkit::fixtures;
    let Some(base) = latch_testkit::env::postgres_url(
        "a_rotation_behind_a_held_row_lock_is_unavailable_not_stuck",
    ) else {
        return;
    };
    let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
        .await
        .unwrap();
    let store = open(&schema.url).await;
    let (u, c) = (fixtures::user(), fixtures::client());
    store.insert_user(&u).await.unwrap();
    store.insert_client(&c).await.unwrap();
    let old = fixtures::refresh_token(&u, &c, None, false);
    store
        .insert_grant(&fixtures::grant_of(&old), Some(&old))
        .await
        .unwrap();
    let mut next = fixtures::refresh_token(&u, &c, None, false);
    next.family_id = old.family_id.clone();

    let url = schema.url.clone();
    let id = old.id.as_str().to_owned();
    let mut holder = tokio::task::spawn_blocking(move || {
        let mut h = diesel::PgConnection::establish(&url).unwrap();
        h.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM refresh_tokens WHERE id = '{id}' FOR UPDATE;"
        ))
        .unwrap();
        h
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = store
        .rotate_refresh_token(&old.id, &next, fixtures::now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, latch_core::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(9));
    assert_eq!(store.find_refresh_token(&next.digest).await.unwrap(), None);
    let unchanged = store
        .find_refresh_token(&old.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.rotated_at, None);

    holder = tokio::task::spawn_blocking(move || {
        holder.batch_execute("ROLLBACK;").unwrap();
        holder
    })
    .await
    .unwrap();
    assert!(
        store
            .rotate_refresh_token(&old.id, &next, fixtures::now())
            .await
            .unwrap()
    );
    drop(holder);
}

#[derive(diesel::QueryableByName, Debug)]
struct PgBackend {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

/// Runs `sql` (selecting `pid` and `ok`) on a connection of its own; the pids of the rows whose
/// `ok` is true, sorted.
async fn pids(base: &str, sql: String) -> Vec<i32> {
    let base = base.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::PgConnection::establish(&base).unwrap();
        let rows: Vec<PgBackend> = diesel::sql_query(sql).load(&mut c).unwrap();
        let mut pids: Vec<i32> = rows.into_iter().filter(|r| r.ok).map(|r| r.pid).collect();
        pids.sort_unstable();
        pids
    })
    .await
    .unwrap()
}

/// The server backends serving connections named `app`.
async fn backends(base: &str, app: &str) -> Vec<i32> {
    let sql =
        format!("SELECT pid, true AS ok FROM pg_stat_activity WHERE application_name = '{app}'");
    pids(base, sql).await
}

/// Terminates the backends serving connections named `app`, waiting up to five seconds for each
/// to exit; the ones that did.
async fn terminate(base: &str, app: &str) -> Vec<i32> {
    let sql = format!(
        "SELECT pid, pg_terminate_backend(pid, 5000) AS ok FROM pg_stat_activity \
         WHERE application_name = '{app}'"
    );
    pids(base, sql).await
}

/// A connection of its own to the store's database, for writing rows as an earlier release (or a
/// damaged database) left them.
enum Db {
    Pg(diesel::PgConnection),
    Lite(diesel::SqliteConnection),
}

impl Db {
    /// Connects on a blocking thread.
    async fn open(url: &str) -> Self {
        use diesel::Connection;
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            if url.starts_with("postgres") {
                Self::Pg(diesel::PgConnection::establish(&url).unwrap())
            } else {
                Self::Lite(diesel::SqliteConnection::establish(&url).unwrap())
            }
        })
        .await
        .unwrap()
    }

    fn exec(&mut self, sql: &str) {
        use diesel::RunQueryDsl;
        match self {
            Self::Pg(c) => diesel::sql_query(sql).execute(c).unwrap(),
            Self::Lite(c) => diesel::sql_query(sql).execute(c).unwrap(),
        };
    }
}

/// Deliveries recorded before the outbox had a `kind` column are back-channel logouts once it
/// is added; a kind this release does not know is an error, not a panic or a guess.
mod delivery_kind {
    use latch_core::model::{DeliveryKind, DeliveryState};
    use latch_core::store::OutboxRepo;
    use latch_core::{DeliveryId, StoreError};

    use super::*;

    async fn run(url: String) {
        let store = open(&url).await;
        let mut db = Db::open(&url).await;
        // The outbox as the release before left it, holding a delivery.
        db.exec("ALTER TABLE outbox DROP COLUMN kind");
        db.exec("DELETE FROM __diesel_schema_migrations WHERE version = '20261208000001'");
        db.exec(
            "INSERT INTO outbox (id, client_id, target, notice, jti, state, attempts, created_at, \
             next_attempt_at, locked_until, last_error, finished_at) \
             VALUES ('dlv-old', 'c-old', 'http://127.0.0.1:9/bc', \
             '{\"sub\":\"auth0|old\",\"sid\":null,\"initiator\":\"rp-logout\"}', 'jti-old', \
             'pending', 0, 1, 1, NULL, NULL, NULL)",
        );
        let applied = store.migrate().await.unwrap();
        assert_eq!(applied.len(), 1, "{applied:?}");

        let old = DeliveryId::new("dlv-old");
        let d = store.get_delivery(&old).await.unwrap();
        assert_eq!(
            (d.kind, d.state),
            (DeliveryKind::BackchannelLogout, DeliveryState::Pending)
        );
        let now = latch_testkit::fixtures::now();
        let claimed = store
            .claim_deliveries(now, now + time::Duration::minutes(1), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].kind, DeliveryKind::BackchannelLogout);

        // A kind from a later release (or a damaged row): every read of it fails cleanly, and
        // workers leave it to the instances that know it (a rolling upgrade) instead of
        // leasing it with the rows they can send.
        db.exec(
            "UPDATE outbox SET kind = 'carrier_pigeon', locked_until = NULL WHERE id = 'dlv-old'",
        );
        assert!(unknown(store.get_delivery(&old).await));
        assert_eq!(
            store
                .claim_deliveries(now, now + time::Duration::minutes(1), 10)
                .await
                .unwrap(),
            vec![]
        );
        assert!(unknown(
            store.list_deliveries(&Default::default(), 10).await
        ));
    }

    /// The store's error for the row holding the unknown kind.
    fn unknown<T>(r: Result<T, StoreError>) -> bool {
        match r {
            Err(StoreError::Internal(e)) => e.to_string().contains("carrier_pigeon"),
            _ => false,
        }
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = TempDir::new();
        run(dir.path().join("latch.db").to_string_lossy().into_owned()).await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some(base) = latch_testkit::env::postgres_url("delivery_kind::postgres") else {
            return;
        };
        let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
            .await
            .unwrap();
        run(schema.url.clone()).await;
    }
}

/// Three instances started at the same moment on one fresh PostgreSQL database all migrate:
/// they take turns under an advisory lock instead of racing to create the same types.
#[tokio::test]
async fn concurrent_first_starts_all_migrate() {
    let Some(base) = latch_testkit::env::postgres_url("concurrent_first_starts_all_migrate") else {
        return;
    };
    let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
        .await
        .unwrap();
    let opened = |_| SqlStore::open(StoreOptions::new(&schema.url), Cipher::new(&KEY).unwrap());
    let (a, b, c) = tokio::join!(opened(0), opened(1), opened(2));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let (x, y, z) = tokio::join!(a.migrate(), b.migrate(), c.migrate());
    let applied = [x.unwrap(), y.unwrap(), z.unwrap()];
    // One instance applied every migration; the others found nothing left to do.
    let mut counts: Vec<usize> = applied.iter().map(Vec::len).collect();
    counts.sort_unstable();
    assert_eq!(counts[..2], [0, 0], "{applied:?}");
    assert!(counts[2] > 10, "{applied:?}");
}

/// Two instances on one database: a connection read for a read-modify-write is the stored one,
/// whatever the other instance's cache holds; only the explicitly cached read may lag, and by
/// at most the TTL.
mod shared_connections {
    use latch_core::ConnectionId;
    use latch_core::store::{ClientRepo, ConnectionRepo};

    use super::*;

    async fn run(url: String) {
        let (a, b) = (open(&url).await, open(&url).await);
        let mut c = latch_testkit::fixtures::connection(latch_core::model::Strategy::Oidc);
        a.insert_connection(&c).await.unwrap();
        let id: ConnectionId = c.id.clone();
        // Instance A reads the connection (and caches it).
        assert_eq!(a.get_connection_cached(&id).await.unwrap(), c);
        // Instance B changes it.
        let before = c.display_name.clone();
        c.display_name = Some("Changed at B".into());
        b.update_connection(&c).await.unwrap();
        // A's read for a write sees B's change at once.
        assert_eq!(
            a.get_connection(&id).await.unwrap().display_name.as_deref(),
            Some("Changed at B")
        );
        // Both instances enable a client at once: both stay enabled (a whole-list write of a
        // copy would lose one).
        let (cx, cy) = (
            latch_testkit::fixtures::client(),
            latch_testkit::fixtures::client(),
        );
        a.insert_client(&cx).await.unwrap();
        b.insert_client(&cy).await.unwrap();
        let (x, y) = (cx.client_id.clone(), cy.client_id.clone());
        let (rx, ry) = tokio::join!(
            a.enable_client_on_connection(&id, &x),
            b.enable_client_on_connection(&id, &y)
        );
        assert!(rx.unwrap() && ry.unwrap());
        assert!(!a.enable_client_on_connection(&id, &x).await.unwrap());
        let enabled = b.get_connection(&id).await.unwrap().enabled_clients;
        assert!(enabled.contains(&x) && enabled.contains(&y), "{enabled:?}");
        assert!(matches!(
            a.enable_client_on_connection(&ConnectionId::new("con_none"), &x)
                .await,
            Err(latch_core::StoreError::NotFound {
                entity: "connection",
                ..
            })
        ));
        assert!(matches!(
            a.enable_client_on_connection(&id, &latch_core::ClientId::new("cli_none"))
                .await,
            Err(latch_core::StoreError::NotFound {
                entity: "client",
                ..
            })
        ));
        // Both instances make their first signing key at once: one is stored, the other
        // finds it.
        let key = |kid: &str| latch_core::model::SigningKey {
            kid: latch_core::Kid::new(kid),
            alg: latch_core::model::SigningAlg::ES256,
            state: latch_core::model::KeyState::Current,
            private_pem: latch_core::secret::SecretString::new("pem"),
            public_jwk: serde_json::json!({"kid": kid}),
            created_at: time::OffsetDateTime::now_utc(),
            updated_at: time::OffsetDateTime::now_utc(),
            publish_until: None,
        };
        use latch_core::store::SigningKeyRepo;
        let (first_a, first_b) = (key("first-a"), key("first-b"));
        let (ka, kb) = tokio::join!(
            a.insert_signing_key_if_absent(&first_a),
            b.insert_signing_key_if_absent(&first_b)
        );
        assert!(ka.unwrap() ^ kb.unwrap());
        assert_eq!(a.list_signing_keys().await.unwrap().len(), 1);
        // A's cached read may still be the old one, never older than the TTL.
        let cached = a.get_connection_cached(&id).await.unwrap();
        assert!(
            cached.display_name == before || cached.display_name.as_deref() == Some("Changed at B")
        );
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = TempDir::new();
        run(dir.path().join("latch.db").to_string_lossy().into_owned()).await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some(base) = latch_testkit::env::postgres_url("shared_connections::postgres") else {
            return;
        };
        let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
            .await
            .unwrap();
        run(schema.url.clone()).await;
    }
}

/// Refresh tokens recorded the session's secret as `session_id` before session ids became its
/// digest. The upgrade forgets every such value and revokes the tokens bound to one (their
/// sessions are gone), except `offline_access` grants, which outlive sessions anyway.
mod session_digests {
    use diesel::sql_types::{BigInt, Nullable, Text};
    use diesel::{QueryableByName, RunQueryDsl};
    use latch_core::store::{ClientRepo, UserRepo};

    use super::*;

    #[derive(QueryableByName, Debug)]
    struct Binding {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Nullable<Text>)]
        session_id: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        revoked_at: Option<i64>,
    }

    fn bindings(db: &mut Db, user: &str) -> Vec<Binding> {
        let q = format!(
            "SELECT id, session_id, revoked_at FROM refresh_tokens WHERE user_id = '{user}' ORDER BY id"
        );
        match db {
            Db::Pg(c) => diesel::sql_query(q).load(c).unwrap(),
            Db::Lite(c) => diesel::sql_query(q).load(c).unwrap(),
        }
    }

    async fn run(url: String) {
        let store = open(&url).await;
        let user = latch_testkit::fixtures::user();
        let client = latch_testkit::fixtures::client();
        store.insert_user(&user).await.unwrap();
        store.insert_client(&client).await.unwrap();
        let (u, c) = (user.user_id.to_string(), client.client_id.to_string());
        let mut db = Db::open(&url).await;
        // As a release before the migration left them: bound to a session by its secret (a
        // plain grant, an offline one, one already revoked at 5), and one bound to none.
        for (id, session, offline, revoked) in [
            ("rt_a", "'raw-secret-a'", "false", "NULL"),
            ("rt_b", "'raw-secret-b'", "true", "NULL"),
            ("rt_c", "'raw-secret-c'", "false", "5"),
            ("rt_d", "NULL", "false", "NULL"),
        ] {
            db.exec(&format!(
                "INSERT INTO refresh_tokens (id, digest, family_id, user_id, client_id, session_id, \
                 scope, offline, created_at, expires_at, family_expires_at, rotated_at, revoked_at) \
                 VALUES ('{id}{u}', 'd-{id}{u}', 'f-{id}{u}', '{u}', '{c}', {session}, 'openid', \
                 {offline}, 1, 4102444800000, 4102444800000, NULL, {revoked})"
            ));
        }
        db.exec("DELETE FROM __diesel_schema_migrations WHERE version = '20261206000005'");
        let applied = store.migrate().await.unwrap();
        assert_eq!(applied.len(), 1, "{applied:?}");

        let rows = bindings(&mut db, &u);
        assert_eq!(rows.len(), 4);
        assert!(
            rows.iter().all(|r| r.session_id.is_none()),
            "a session secret is left: {rows:?}"
        );
        let revoked = |id: &str| {
            rows.iter()
                .find(|r| r.id == format!("{id}{u}"))
                .unwrap()
                .revoked_at
        };
        assert!(
            revoked("rt_a").is_some_and(|t| t > 5),
            "a bound token lives on"
        );
        assert_eq!(revoked("rt_b"), None, "an offline grant is revoked");
        assert_eq!(
            revoked("rt_c"),
            Some(5),
            "an earlier revocation is rewritten"
        );
        assert_eq!(revoked("rt_d"), None, "an unbound token is revoked");
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = TempDir::new();
        run(dir.path().join("latch.db").to_string_lossy().into_owned()).await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some(base) = latch_testkit::env::postgres_url("session_digests::postgres") else {
            return;
        };
        let schema = tokio::task::spawn_blocking(move || PgSchema::create(&base))
            .await
            .unwrap();
        run(schema.url.clone()).await;
    }
}
