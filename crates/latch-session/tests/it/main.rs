//! The session conformance suite on the embedded store and on Redis, plus restart durability.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latch_session::{EmbeddedSessionStore, RedisSessionStore};
use latch_testkit::SessionHarness;
use latch_testkit::at_rest::AtRest;
use latch_testkit::env::{TempDir, unique};

mod redis_format;

mod embedded {
    use super::*;

    pub async fn make(_test: &str) -> Option<SessionHarness> {
        let dir = TempDir::new();
        let s = EmbeddedSessionStore::open(&dir.path().join("sessions.db"))
            .await
            .unwrap();
        Some(SessionHarness {
            sessions: Arc::new(s),
            at_rest: AtRest::Dir(dir.path().to_owned()),
            guard: Box::new(dir),
        })
    }

    latch_testkit::session_conformance_tests!(make);
}

mod redis {
    use super::*;

    pub async fn make(test: &str) -> Option<SessionHarness> {
        let url = latch_testkit::env::redis_url(test)?;
        let prefix = format!("latch-test:{}:", unique());
        let s = RedisSessionStore::connect(&url, prefix.clone())
            .await
            .unwrap();
        Some(SessionHarness {
            sessions: Arc::new(s),
            at_rest: AtRest::Redis { url, prefix },
            guard: Box::new(()),
        })
    }

    latch_testkit::session_conformance_tests!(make);

    /// An HTTP worker (a thread running a current-thread runtime) sends its commands on a
    /// connection of its own, opened at its first command and kept; other threads share one.
    /// What one thread writes, another reads.
    #[test]
    fn each_worker_thread_has_a_connection_of_its_own() {
        use latch_core::session::SessionStore;
        let Some(url) =
            latch_testkit::env::redis_url("each_worker_thread_has_a_connection_of_its_own")
        else {
            return;
        };
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = multi
            .block_on(RedisSessionStore::connect(
                &url,
                format!("latch-test:{}:", unique()),
            ))
            .unwrap();
        let shared = multi.block_on(s.connection_id()).unwrap();
        assert_eq!(multi.block_on(s.connection_id()).unwrap(), shared);
        let user = latch_testkit::fixtures::user_id();
        let sess = latch_testkit::fixtures::session(&user);
        let now = latch_testkit::fixtures::now();
        let worker = |s: RedisSessionStore, sess: latch_core::session::Session, write: bool| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let first = s.connection_id().await.unwrap();
                    if write {
                        s.insert_session(&sess).await.unwrap();
                    } else {
                        assert_eq!(
                            s.find_session(&sess.id, now).await.unwrap(),
                            Some(sess),
                            "a session written on another thread is read here"
                        );
                    }
                    (first, s.connection_id().await.unwrap())
                })
            })
            .join()
            .unwrap()
        };
        let (a1, a2) = worker(s.clone(), sess.clone(), true);
        let (b1, b2) = worker(s.clone(), sess, false);
        assert_eq!(a1, a2, "a worker keeps its connection");
        assert_eq!(b1, b2, "a worker keeps its connection");
        assert!(
            a1 != shared && b1 != shared && a1 != b1,
            "shared {shared}, workers {a1} and {b1}"
        );
        assert_eq!(multi.block_on(s.connection_id()).unwrap(), shared);
    }

    /// A thread's connection lives on the runtime that opened it: once that runtime is gone,
    /// a new runtime on the same thread opens another and works.
    #[test]
    fn a_new_runtime_on_a_thread_opens_a_new_connection() {
        use latch_core::session::SessionStore;
        let Some(url) =
            latch_testkit::env::redis_url("a_new_runtime_on_a_thread_opens_a_new_connection")
        else {
            return;
        };
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let s = first
            .block_on(RedisSessionStore::connect(
                &url,
                format!("latch-test:{}:", unique()),
            ))
            .unwrap();
        let user = latch_testkit::fixtures::user_id();
        let sess = latch_testkit::fixtures::session(&user);
        let old = first.block_on(s.connection_id()).unwrap();
        first.block_on(s.insert_session(&sess)).unwrap();
        drop(first);
        let second = runtime();
        let new = second.block_on(s.connection_id()).unwrap();
        assert_ne!(new, old);
        assert_eq!(
            second
                .block_on(s.find_session(&sess.id, latch_testkit::fixtures::now()))
                .unwrap(),
            Some(sess)
        );
    }

    #[tokio::test]
    async fn session_memory_is_small() {
        use latch_core::session::SessionStore;
        let Some(url) = latch_testkit::env::redis_url("session_memory_is_small") else {
            return;
        };
        let s = RedisSessionStore::connect(&url, format!("latch-test:{}:", unique()))
            .await
            .unwrap();
        let user = latch_testkit::fixtures::user_id();
        let sess = latch_testkit::fixtures::session(&user);
        s.insert_session(&sess).await.unwrap();
        s.add_session_client(
            &sess.id,
            &latch_testkit::fixtures::session_client("app"),
            latch_testkit::fixtures::now(),
        )
        .await
        .unwrap();
        let bytes = s.memory_usage(&sess.id).await.unwrap();
        assert!(bytes > 0 && bytes <= 1024, "{bytes} bytes per session");
    }
}

#[tokio::test]
async fn embedded_sessions_survive_a_restart() {
    use latch_core::session::SessionStore;
    let dir = TempDir::new();
    let path = dir.path().join("sessions.db");
    let user = latch_testkit::fixtures::user_id();
    let sess = latch_testkit::fixtures::session(&user);
    {
        let s = EmbeddedSessionStore::open(&path).await.unwrap();
        s.insert_session(&sess).await.unwrap();
    }
    let s = EmbeddedSessionStore::open(&path).await.unwrap();
    assert_eq!(
        s.find_session(&sess.id, latch_testkit::fixtures::now())
            .await
            .unwrap(),
        Some(sess)
    );
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let err = RedisSessionStore::connect("redis://127.0.0.1:1", "x:")
        .await
        .unwrap_err();
    assert!(
        matches!(err, latch_core::SessionError::Unavailable(_)),
        "{err:?}"
    );
}

/// Sessions of releases that stored them under their secret are dropped on upgrade (the
/// `session_digests` migration): their users sign in again once.
#[tokio::test]
async fn embedded_upgrade_drops_sessions_stored_under_their_secret() {
    use diesel::{Connection, RunQueryDsl};
    use latch_core::session::SessionStore;
    let dir = TempDir::new();
    let path = dir.path().join("sessions.db");
    let user = latch_testkit::fixtures::user_id();
    let mut legacy = latch_testkit::fixtures::session(&user);
    legacy.id = latch_core::SessionId::new(format!("raw-cookie-secret-{}", unique()));
    {
        let s = EmbeddedSessionStore::open(&path).await.unwrap();
        s.insert_session(&legacy).await.unwrap();
    }
    // As the release before the migration left it.
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = diesel::SqliteConnection::establish(&p.to_string_lossy()).unwrap();
        diesel::sql_query(
            "DELETE FROM __diesel_schema_migrations WHERE version = '20261208000001'",
        )
        .execute(&mut c)
        .unwrap();
    })
    .await
    .unwrap();
    let s = EmbeddedSessionStore::open(&path).await.unwrap();
    let now = latch_testkit::fixtures::now();
    assert!(s.find_session(&legacy.id, now).await.unwrap().is_none());
    assert!(s.list_user_sessions(&user, now).await.unwrap().is_empty());
    // Sessions stored from then on stay.
    let fresh = latch_testkit::fixtures::session(&user);
    s.insert_session(&fresh).await.unwrap();
    drop(s);
    let s = EmbeddedSessionStore::open(&path).await.unwrap();
    assert_eq!(s.find_session(&fresh.id, now).await.unwrap(), Some(fresh));
}

/// The session file and the files SQLite adds next to it are private to this user.
#[cfg(unix)]
#[tokio::test]
async fn embedded_session_files_are_private() {
    use latch_core::session::SessionStore;
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let s = EmbeddedSessionStore::open(&dir.path().join("sessions.db"))
        .await
        .unwrap();
    let user = latch_testkit::fixtures::user_id();
    s.insert_session(&latch_testkit::fixtures::session(&user))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        let name = e.file_name().to_string_lossy().into_owned();
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["sessions.db", "sessions.db-shm", "sessions.db-wal"]);
}

/// What releases before session ids were digests left in Redis (`{p}s:{secret}` records and
/// `{p}u:{user}` sets of secrets) is deleted; today's keys are not touched.
#[tokio::test]
async fn redis_drops_sessions_stored_under_their_secret() {
    use ::redis::AsyncCommands;
    use latch_core::session::SessionStore;
    let Some(url) = latch_testkit::env::redis_url("redis_drops_sessions_stored_under_their_secret")
    else {
        return;
    };
    let prefix = format!("latch-test:{}:", unique());
    let s = RedisSessionStore::connect(&url, prefix.clone())
        .await
        .unwrap();
    let user = latch_testkit::fixtures::user_id();
    let mut fresh = latch_testkit::fixtures::session(&user);
    fresh.upstream.sid = Some(format!("up-{}", unique()));
    s.insert_session(&fresh).await.unwrap();
    let secret = format!("raw-cookie-secret-{}", unique());
    let mut c = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let legacy_record = format!("{prefix}s:{secret}");
    let legacy_index = format!("{prefix}u:{user}");
    let _: () = c
        .set(&legacy_record, format!("v1\n1\n2\n3\n{user}\n{{}}\n"))
        .await
        .unwrap();
    let _: () = c.sadd(&legacy_index, &secret).await.unwrap();
    // Another deployment's prefix is not this store's business.
    let other = format!("latch-test:{}:s:{secret}", unique());
    let _: () = c.set(&other, "x").await.unwrap();

    assert_eq!(s.drop_legacy_sessions().await.unwrap(), 2);
    let at_rest = latch_testkit::at_rest::AtRest::Redis {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    assert!(!at_rest.contains(&secret).await, "a secret is left");
    let now = latch_testkit::fixtures::now();
    assert_eq!(
        s.find_session(&fresh.id, now).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        s.list_user_sessions(&user, now).await.unwrap(),
        vec![fresh.clone()]
    );
    assert_eq!(
        s.user_of_upstream(
            &fresh.connection,
            fresh.upstream.sid.as_deref().unwrap(),
            now
        )
        .await
        .unwrap(),
        Some(user)
    );
    let kept: Option<String> = c.get(&other).await.unwrap();
    assert_eq!(kept.as_deref(), Some("x"));
    let _: () = c.del(&other).await.unwrap();
    assert_eq!(
        s.drop_legacy_sessions().await.unwrap(),
        0,
        "nothing left to drop"
    );
}
