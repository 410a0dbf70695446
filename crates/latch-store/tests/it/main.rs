//! The store conformance suite on SQLite and on PostgreSQL, plus what only this crate can see
//! (encryption at rest, migrations, connection failures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latch_store::{Cipher, SqlStore, StoreOptions};
use latch_testkit::StoreHarness;
use latch_testkit::env::{PgSchema, TempDir};

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
/// when a query on it fails, and replaced: the next call works. (PostgreSQL only: SQLite runs in
/// the process and has no server to drop a connection.)
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

    // The server ends the store's connection.
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::PgConnection::establish(&base).unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
        ))
        .execute(&mut c)
        .unwrap();
    })
    .await
    .unwrap();

    // The call on the dead connection may fail; the one after it works.
    let _ = store.list_clients().await;
    let clients = store.list_clients().await.expect("a new connection");
    assert!(clients.iter().any(|c| c.client_id == client.client_id));
}

/// Refresh tokens recorded the session's secret as `session_id` before session ids became its
/// digest. The upgrade forgets every such value and revokes the tokens bound to one (their
/// sessions are gone), except `offline_access` grants, which outlive sessions anyway.
mod session_digests {
    use diesel::sql_types::{BigInt, Nullable, Text};
    use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
    use latch_core::store::{ClientRepo, UserRepo};

    use super::*;

    enum Db {
        Pg(PgConnection),
        Lite(SqliteConnection),
    }

    #[derive(QueryableByName, Debug)]
    struct Binding {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Nullable<Text>)]
        session_id: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        revoked_at: Option<i64>,
    }

    impl Db {
        fn open(url: &str) -> Self {
            if url.starts_with("postgres") {
                Self::Pg(PgConnection::establish(url).unwrap())
            } else {
                Self::Lite(SqliteConnection::establish(url).unwrap())
            }
        }
        fn exec(&mut self, sql: &str) {
            match self {
                Self::Pg(c) => diesel::sql_query(sql).execute(c).unwrap(),
                Self::Lite(c) => diesel::sql_query(sql).execute(c).unwrap(),
            };
        }
        fn bindings(&mut self, user: &str) -> Vec<Binding> {
            let q = format!(
                "SELECT id, session_id, revoked_at FROM refresh_tokens WHERE user_id = '{user}' ORDER BY id"
            );
            match self {
                Self::Pg(c) => diesel::sql_query(q).load(c).unwrap(),
                Self::Lite(c) => diesel::sql_query(q).load(c).unwrap(),
            }
        }
    }

    async fn run(url: String) {
        let store = open(&url).await;
        let user = latch_testkit::fixtures::user();
        let client = latch_testkit::fixtures::client();
        store.insert_user(&user).await.unwrap();
        store.insert_client(&client).await.unwrap();
        let (u, c) = (user.user_id.to_string(), client.client_id.to_string());
        let mut db = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || Db::open(&url))
                .await
                .unwrap()
        };
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

        let rows = db.bindings(&u);
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
