//! The session conformance suite on the embedded store and on Redis, plus restart durability.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latch_session::{EmbeddedSessionStore, RedisSessionStore};
use latch_testkit::SessionHarness;
use latch_testkit::env::{TempDir, unique};

mod embedded {
    use super::*;

    pub async fn make(_test: &str) -> Option<SessionHarness> {
        let dir = TempDir::new();
        let s = EmbeddedSessionStore::open(&dir.path().join("sessions.db"))
            .await
            .unwrap();
        Some(SessionHarness {
            sessions: Arc::new(s),
            guard: Box::new(dir),
        })
    }

    latch_testkit::session_conformance_tests!(make);
}

mod redis {
    use super::*;

    pub async fn make(test: &str) -> Option<SessionHarness> {
        let url = latch_testkit::env::redis_url(test)?;
        let s = RedisSessionStore::connect(&url, format!("latch-test:{}:", unique()))
            .await
            .unwrap();
        Some(SessionHarness {
            sessions: Arc::new(s),
            guard: Box::new(()),
        })
    }

    latch_testkit::session_conformance_tests!(make);

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
