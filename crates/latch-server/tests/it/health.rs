use std::sync::Arc;

use actix_web::test;
use async_trait::async_trait;
use latch_core::session::*;
use latch_core::*;
use latch_testkit::session_conformance::MemorySessions;
use time::OffsetDateTime;

use crate::on_all_backends;
use crate::support::Harness;

async fn ready_and_healthy(h: Harness) {
    let app = crate::app!(h);
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), 200);
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers().get("x-frame-options").unwrap(), "DENY");
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"]["backend"], h.state.store.backend());
}
on_all_backends!(ready_and_healthy, ready_and_healthy);

/// A session store with faults on demand; everything else goes to `inner`. `down`: it does not
/// answer a ping (readiness); `ends_fail`: "end every session of a user" fails while set (a
/// Redis restarting mid-logout).
pub struct Faulty {
    pub inner: Arc<dyn SessionStore>,
    pub down: bool,
    pub ends_fail: std::sync::atomic::AtomicBool,
}

impl Faulty {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            down: false,
            ends_fail: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl SessionStore for Faulty {
    fn backend(&self) -> &'static str {
        if self.down {
            "down"
        } else {
            self.inner.backend()
        }
    }
    async fn ping(&self) -> Result<(), SessionError> {
        if self.down {
            return Err(SessionError::Unavailable("connection refused".into()));
        }
        self.inner.ping().await
    }
    async fn insert_session(&self, s: &Session) -> Result<(), SessionError> {
        self.inner.insert_session(s).await
    }
    async fn find_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        self.inner.find_session(id, now).await
    }
    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<Session>, SessionError> {
        self.inner.touch_session(id, now, idle).await
    }
    async fn add_session_client(
        &self,
        id: &SessionId,
        c: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        self.inner.add_session_client(id, c, now).await
    }
    async fn list_user_sessions(
        &self,
        u: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, SessionError> {
        self.inner.list_user_sessions(u, now).await
    }
    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        self.inner.end_session(id).await
    }
    async fn expired_sessions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, SessionError> {
        self.inner.expired_sessions(now, limit).await
    }
    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError> {
        if self.ends_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SessionError::Unavailable("connection reset".into()));
        }
        self.inner.end_user_sessions(user).await
    }
    async fn user_of_upstream(
        &self,
        c: &ConnectionName,
        sid: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionError> {
        self.inner.user_of_upstream(c, sid, now).await
    }
    async fn insert_code(&self, c: &AuthCode) -> Result<(), SessionError> {
        self.inner.insert_code(c).await
    }
    async fn take_code(
        &self,
        d: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<AuthCode>, SessionError> {
        self.inner.take_code(d, now).await
    }
    async fn insert_login_tx(&self, t: &LoginTransaction) -> Result<(), SessionError> {
        self.inner.insert_login_tx(t).await
    }
    async fn take_login_tx(
        &self,
        id: &LoginTxId,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, SessionError> {
        self.inner.take_login_tx(id, now).await
    }
    async fn forget_once(&self, s: &str, k: &str) -> Result<(), SessionError> {
        self.inner.forget_once(s, k).await
    }
    async fn remember_once(
        &self,
        s: &str,
        k: &str,
        e: OffsetDateTime,
        n: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        self.inner.remember_once(s, k, e, n).await
    }
    async fn count_hit(
        &self,
        k: &str,
        e: OffsetDateTime,
        n: OffsetDateTime,
    ) -> Result<u64, SessionError> {
        self.inner.count_hit(k, e, n).await
    }
    async fn throttle_peek(
        &self,
        k: &[latch_core::throttle::ThrottleKey<'_>],
        n: OffsetDateTime,
    ) -> Result<Vec<latch_core::throttle::Throttle>, SessionError> {
        self.inner.throttle_peek(k, n).await
    }
    async fn throttle_begin(
        &self,
        k: &[latch_core::throttle::ThrottleKey<'_>],
        n: OffsetDateTime,
    ) -> Result<latch_core::throttle::ThrottleCheck, SessionError> {
        self.inner.throttle_begin(k, n).await
    }
    async fn throttle_fail(
        &self,
        k: &[latch_core::throttle::ThrottleKey<'_>],
        n: OffsetDateTime,
    ) -> Result<Vec<latch_core::throttle::Throttle>, SessionError> {
        self.inner.throttle_fail(k, n).await
    }
    async fn throttle_clear(&self, k: &str) -> Result<(), SessionError> {
        self.inner.throttle_clear(k).await
    }
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, SessionError> {
        self.inner.purge_expired(now).await
    }
}

#[actix_web::test]
async fn not_ready_when_the_session_store_is_down() {
    let h = crate::support::harness("not_ready", crate::support::Backends::Embedded)
        .await
        .unwrap();
    let mut state = h.state.clone();
    state.sessions = Arc::new(Faulty {
        down: true,
        ..Faulty::new(Arc::new(MemorySessions::default()))
    });
    let app = test::init_service(latch_server::app::app(state)).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = test::read_body_json(res).await;
    assert_eq!(body["sessions"]["ok"], false);
    assert_eq!(body["database"]["ok"], true);
    // Liveness does not depend on the stores.
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), 200);
}
