//! What every session store backend must do, and [`MemorySessions`], a plain in-memory model of
//! the contract that the suite also runs against (so the suite itself is checked).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use latch_core::clock::{from_millis, to_millis};
use latch_core::session::*;
use latch_core::throttle::{Backoff, Throttle, ThrottleCheck, ThrottleKey};
use latch_core::*;
use time::{Duration, OffsetDateTime};

use crate::fixtures::{self, now};

pub async fn insert_find_and_expiry(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let live = fixtures::session(&user);
    s.insert_session(&live).await.unwrap();
    assert_eq!(
        s.find_session(&live.id, now()).await.unwrap(),
        Some(live.clone())
    );
    assert!(
        s.find_session(&SessionId::new("missing"), now())
            .await
            .unwrap()
            .is_none()
    );

    // Past its idle expiry, or its absolute expiry, a session is gone whatever the backend purged.
    let later = live.idle_expires_at + Duration::milliseconds(1);
    assert!(s.find_session(&live.id, later).await.unwrap().is_none());
    let mut dead = fixtures::session(&user);
    dead.expires_at = now() - Duration::seconds(1);
    s.insert_session(&dead).await.unwrap();
    assert!(s.find_session(&dead.id, now()).await.unwrap().is_none());
    assert_eq!(
        s.list_user_sessions(&user, now()).await.unwrap(),
        vec![live]
    );
}

pub async fn touch_moves_idle_not_absolute(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let sess = fixtures::session(&user);
    s.insert_session(&sess).await.unwrap();
    let t1 = now() + Duration::minutes(20);
    let touched = s
        .touch_session(&sess.id, t1, Duration::minutes(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_seen_at, t1);
    assert_eq!(touched.idle_expires_at, t1 + Duration::minutes(30));
    assert_eq!(touched.expires_at, sess.expires_at);
    // Alive past the first idle deadline now.
    let t2 = sess.idle_expires_at + Duration::minutes(1);
    assert_eq!(
        s.find_session(&sess.id, t2).await.unwrap(),
        Some(touched.clone())
    );
    // Idle expiry never passes the absolute one.
    let t3 = now() + Duration::minutes(45);
    let capped = s
        .touch_session(&sess.id, t3, Duration::minutes(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(capped.idle_expires_at, sess.expires_at);
    // A dead session cannot be revived.
    let t4 = sess.expires_at + Duration::seconds(1);
    assert!(
        s.touch_session(&sess.id, t4, Duration::minutes(30))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn clients_join_once(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let sess = fixtures::session(&user);
    s.insert_session(&sess).await.unwrap();
    let a = fixtures::session_client("app-a");
    let mut b = fixtures::session_client("app-b");
    b.joined_at = a.joined_at + Duration::seconds(1);
    s.add_session_client(&sess.id, &a, now())
        .await
        .unwrap()
        .unwrap();
    let got = s
        .add_session_client(&sess.id, &b, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.clients, vec![a.clone(), b.clone()]);
    // Joining again keeps the first sid.
    let again = SessionClient {
        sid: Sid::new("another"),
        ..a.clone()
    };
    let got = s
        .add_session_client(&sess.id, &again, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.clients, vec![a.clone(), b.clone()]);
    assert_eq!(
        s.find_session(&sess.id, now())
            .await
            .unwrap()
            .unwrap()
            .clients,
        vec![a, b]
    );
    // No session, no join.
    let ghost = fixtures::session_client("app-c");
    assert!(
        s.add_session_client(&SessionId::new("missing"), &ghost, now())
            .await
            .unwrap()
            .is_none()
    );
    let late = sess.expires_at + Duration::seconds(1);
    assert!(
        s.add_session_client(&sess.id, &ghost, late)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn user_index_lists_only_live_sessions(s: &dyn SessionStore) {
    let (alice, bob) = (fixtures::user_id(), fixtures::user_id());
    let mut mine = Vec::new();
    for n in 0..3 {
        let mut x = fixtures::session(&alice);
        x.created_at = now() + Duration::milliseconds(n);
        s.insert_session(&x).await.unwrap();
        mine.push(x);
    }
    let theirs = fixtures::session(&bob);
    s.insert_session(&theirs).await.unwrap();
    let mut short = fixtures::session(&alice);
    short.idle_expires_at = now() + Duration::seconds(5);
    s.insert_session(&short).await.unwrap();

    let listed = s
        .list_user_sessions(&alice, now() + Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(listed, mine);
    assert_eq!(
        s.list_user_sessions(&bob, now()).await.unwrap(),
        vec![theirs]
    );
    assert!(
        s.list_user_sessions(&fixtures::user_id(), now())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn end_one_session(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let (a, b) = (fixtures::session(&user), fixtures::session(&user));
    s.insert_session(&a).await.unwrap();
    s.insert_session(&b).await.unwrap();
    let joined = fixtures::session_client("app");
    let a = s
        .add_session_client(&a.id, &joined, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.end_session(&a.id).await.unwrap(), Some(a.clone()));
    assert!(s.end_session(&a.id).await.unwrap().is_none());
    assert!(s.find_session(&a.id, now()).await.unwrap().is_none());
    assert_eq!(s.list_user_sessions(&user, now()).await.unwrap(), vec![b]);
}

pub async fn end_all_sessions_of_user(s: &dyn SessionStore) {
    let (user, other) = (fixtures::user_id(), fixtures::user_id());
    let mut mine = Vec::new();
    for n in 0..5 {
        let mut x = fixtures::session(&user);
        x.created_at = now() + Duration::milliseconds(n);
        x.clients = vec![fixtures::session_client(&format!("app-{n}"))];
        s.insert_session(&x).await.unwrap();
        mine.push(x);
    }
    let keep = fixtures::session(&other);
    s.insert_session(&keep).await.unwrap();
    let ended = s.end_user_sessions(&user).await.unwrap();
    assert_eq!(ended, mine);
    assert!(s.list_user_sessions(&user, now()).await.unwrap().is_empty());
    for x in &mine {
        assert!(s.find_session(&x.id, now()).await.unwrap().is_none());
    }
    assert!(s.end_user_sessions(&user).await.unwrap().is_empty());
    assert_eq!(
        s.list_user_sessions(&other, now()).await.unwrap(),
        vec![keep]
    );
}

pub async fn end_all_is_atomic_under_concurrency(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let x = fixtures::session(&user);
        ids.push(x.id.clone());
        s.insert_session(&x).await.unwrap();
    }
    let (a, b, c) = tokio::join!(
        s.end_user_sessions(&user),
        s.end_user_sessions(&user),
        async {
            let mut n = 0;
            for id in &ids[..5] {
                n += usize::from(s.end_session(id).await.unwrap().is_some());
            }
            n
        }
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<_> = a.iter().chain(b.iter()).map(|x| x.id.clone()).collect();
    assert_eq!(all.len() + c, 20, "every session ended exactly once");
    all.sort();
    all.dedup();
    assert_eq!(all.len() + c, 20, "no session ended twice");
}

fn code(expires_in: Duration) -> AuthCode {
    AuthCode {
        digest: TokenDigest::new(format!("code-{}", crate::env::unique())),
        client_id: ClientId::new("app"),
        user_id: fixtures::user_id(),
        session_id: Some(SessionId::new("s")),
        sid: Some(Sid::new("sid")),
        redirect_uri: "https://app.example.com/cb".into(),
        scope: "openid email".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: now(),
        expires_at: now() + expires_in,
    }
}

pub async fn codes_are_single_use(s: &dyn SessionStore) {
    let c = code(Duration::minutes(1));
    s.insert_code(&c).await.unwrap();
    let (a, b) = tokio::join!(s.take_code(&c.digest, now()), s.take_code(&c.digest, now()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.iter().chain(b.iter()).count(),
        1,
        "exactly one taker wins"
    );
    assert_eq!(a.or(b), Some(c.clone()));
    assert!(s.take_code(&c.digest, now()).await.unwrap().is_none());

    let stale = code(Duration::seconds(30));
    s.insert_code(&stale).await.unwrap();
    assert!(
        s.take_code(&stale.digest, now() + Duration::seconds(31))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn a_session_and_its_first_code_together(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let sess = fixtures::session(&user);
    let mut c = code(Duration::minutes(1));
    c.user_id = user.clone();
    c.session_id = Some(sess.id.clone());
    s.insert_session_with_code(&sess, &c).await.unwrap();
    assert_eq!(s.find_session(&sess.id, now()).await.unwrap(), Some(sess));
    assert_eq!(
        s.take_code(&c.digest, now()).await.unwrap(),
        Some(c.clone())
    );
    assert!(s.take_code(&c.digest, now()).await.unwrap().is_none());
}

pub async fn login_transactions_are_single_use(s: &dyn SessionStore) {
    let t = LoginTransaction {
        id: LoginTxId::new(format!("tx-{}", crate::env::unique())),
        expires_at: now() + Duration::minutes(10),
        payload: serde_json::json!({"nonce": "abc", "return_to": "/authorize?x=1"}),
    };
    s.insert_login_tx(&t).await.unwrap();
    assert!(
        s.take_login_tx(&t.id, t.expires_at + Duration::seconds(1))
            .await
            .unwrap()
            .is_none()
    );
    let t2 = LoginTransaction {
        id: LoginTxId::new(format!("tx-{}", crate::env::unique())),
        ..t.clone()
    };
    s.insert_login_tx(&t2).await.unwrap();
    assert_eq!(
        s.take_login_tx(&t2.id, now()).await.unwrap(),
        Some(t2.clone())
    );
    assert!(s.take_login_tx(&t2.id, now()).await.unwrap().is_none());
}

pub async fn remember_once_guards_replay(s: &dyn SessionStore) {
    let key = crate::env::unique();
    let exp = now() + Duration::minutes(5);
    assert!(s.remember_once("gtr-jti", &key, exp, now()).await.unwrap());
    assert!(!s.remember_once("gtr-jti", &key, exp, now()).await.unwrap());
    assert!(
        s.remember_once("saml-assertion", &key, exp, now())
            .await
            .unwrap()
    );
    let other = crate::env::unique();
    let (a, b) = tokio::join!(
        s.remember_once("gtr-jti", &other, exp, now()),
        s.remember_once("gtr-jti", &other, exp, now())
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "exactly one concurrent caller is first"
    );
    // Forgotten (the work failed on Latch's side): the sender's retry is first again, and only
    // that key of that scope is forgotten.
    s.forget_once("gtr-jti", &key).await.unwrap();
    assert!(s.remember_once("gtr-jti", &key, exp, now()).await.unwrap());
    assert!(
        !s.remember_once("saml-assertion", &key, exp, now())
            .await
            .unwrap()
    );
    s.forget_once("gtr-jti", "never-seen").await.unwrap();
}

pub async fn upstream_session_round_trip(s: &dyn SessionStore) {
    let mut x = fixtures::session(&fixtures::user_id());
    x.upstream = UpstreamSession {
        sid: Some("upstream-sid".into()),
        sealed_id_token: Some("lat1.c2VhbGVk".into()),
        id_token_cookie: None,
        name_id: Some("alice@example.com".into()),
        name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
        session_index: Some("_be9967abd904ddcae3c0eb4189adbe3f71e327cf93".into()),
    };
    x.connection = ConnectionName::new("acme-okta");
    s.insert_session(&x).await.unwrap();
    assert_eq!(s.find_session(&x.id, now()).await.unwrap(), Some(x));
    // A session whose browser carries the ID token keeps the cookie's digest instead.
    let mut y = fixtures::session(&fixtures::user_id());
    y.connection = ConnectionName::new("acme-okta");
    y.upstream = UpstreamSession {
        sid: Some("upstream-sid-2".into()),
        id_token_cookie: Some(latch_core::session::upstream_cookie_digest("lat1.c2VhbGVk")),
        ..Default::default()
    };
    s.insert_session(&y).await.unwrap();
    assert_eq!(s.find_session(&y.id, now()).await.unwrap(), Some(y));
}

pub async fn upstream_sid_finds_its_user(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let sid = format!("up-{}", crate::env::unique());
    let mut x = fixtures::session(&user);
    x.connection = ConnectionName::new("acme-okta");
    x.upstream.sid = Some(sid.clone());
    s.insert_session(&x).await.unwrap();
    let conn = ConnectionName::new("acme-okta");
    assert_eq!(
        s.user_of_upstream(&conn, &sid, now()).await.unwrap(),
        Some(user.clone())
    );
    // Another connection's sid space, an unknown sid, a session without one: nothing.
    let other = ConnectionName::new("other-idp");
    assert!(
        s.user_of_upstream(&other, &sid, now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.user_of_upstream(&conn, "no-such-sid", now())
            .await
            .unwrap()
            .is_none()
    );
    // A session that has already ended leaves no entry behind.
    let mut ended = fixtures::session(&user);
    ended.connection = conn.clone();
    ended.upstream.sid = Some(format!("gone-{}", crate::env::unique()));
    ended.idle_expires_at = now() - Duration::seconds(1);
    s.insert_session(&ended).await.unwrap();
    let gone = ended.upstream.sid.clone().unwrap_or_default();
    assert!(
        s.user_of_upstream(&conn, &gone, now())
            .await
            .unwrap()
            .is_none()
    );
}

/// A SAML session is found by its NameID (the IdP's LogoutRequest names it), for as long as a
/// live session of that connection carries it, even after use moved its idle expiry past the
/// first one.
pub async fn upstream_name_id_finds_its_user(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let name_id = format!("alice-{}@example.com", crate::env::unique());
    let conn = ConnectionName::new("acme-saml");
    let mut x = fixtures::session(&user);
    x.connection = conn.clone();
    x.upstream.name_id = Some(name_id.clone());
    x.upstream.session_index = Some("_idx1".into());
    x.idle_expires_at = now() + Duration::minutes(5);
    x.expires_at = now() + Duration::hours(8);
    s.insert_session(&x).await.unwrap();
    let key = latch_core::session::saml_name_id_key(&name_id);
    assert_eq!(
        s.user_of_upstream(&conn, &key, now()).await.unwrap(),
        Some(user.clone())
    );
    // The bare NameID is not an OpenID Connect sid, nor is it found at another connection.
    assert!(
        s.user_of_upstream(&conn, &name_id, now())
            .await
            .unwrap()
            .is_none()
    );
    let other = ConnectionName::new("other-saml");
    assert!(
        s.user_of_upstream(&other, &key, now())
            .await
            .unwrap()
            .is_none()
    );
    // Used after 4 minutes, the session lives past its first idle expiry, and so does the entry.
    let later = now() + Duration::minutes(4);
    s.touch_session(&x.id, later, Duration::minutes(5))
        .await
        .unwrap()
        .expect("live");
    let past_first_idle = now() + Duration::minutes(7);
    assert_eq!(
        s.user_of_upstream(&conn, &key, past_first_idle)
            .await
            .unwrap(),
        Some(user.clone())
    );
    // Once the session ends, nothing is found.
    s.end_session(&x.id).await.unwrap();
    assert!(
        s.user_of_upstream(&conn, &key, now())
            .await
            .unwrap()
            .is_none()
    );
}

/// A session past its end is no live session, yet it waits for the expiry sweeper
/// (`expired_sessions`) until `end_session` takes it or `EXPIRED_GRACE` has passed; use moves
/// the end it is listed at.
pub async fn expired_sessions_wait_for_the_sweeper(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let live = fixtures::session(&user);
    let mut dead = fixtures::session(&user);
    dead.idle_expires_at = now() - Duration::seconds(30);
    let mut touched = fixtures::session(&user);
    touched.idle_expires_at = now() + Duration::seconds(10);
    for x in [&live, &dead, &touched] {
        s.insert_session(x).await.unwrap();
    }
    let ids = |v: Vec<Session>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
    let listed = ids(s.expired_sessions(now(), 1000).await.unwrap());
    assert!(listed.contains(&dead.id));
    assert!(!listed.contains(&live.id) && !listed.contains(&touched.id));
    assert!(s.find_session(&dead.id, now()).await.unwrap().is_none());
    assert!(
        s.list_user_sessions(&user, now())
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != dead.id)
    );
    // A minute on, the untouched one has ended too; the one used meanwhile has not.
    s.touch_session(
        &touched.id,
        now() + Duration::seconds(5),
        Duration::minutes(5),
    )
    .await
    .unwrap()
    .expect("live");
    let later = ids(s
        .expired_sessions(now() + Duration::seconds(60), 1000)
        .await
        .unwrap());
    assert!(later.contains(&dead.id) && !later.contains(&touched.id));
    // Purged within the grace, it stays for the sweeper; the sweeper's end takes it.
    s.purge_expired(now()).await.unwrap();
    assert!(ids(s.expired_sessions(now(), 1000).await.unwrap()).contains(&dead.id));
    let ended = s
        .end_session(&dead.id)
        .await
        .unwrap()
        .expect("still stored");
    assert_eq!(ended.id, dead.id);
    assert!(!ids(s.expired_sessions(now(), 1000).await.unwrap()).contains(&dead.id));
    // One the sweeper never took is gone once the grace has passed.
    let mut old = fixtures::session(&user);
    old.idle_expires_at = now() - Duration::seconds(1);
    s.insert_session(&old).await.unwrap();
    s.purge_expired(now() + latch_core::session::EXPIRED_GRACE + Duration::seconds(1))
        .await
        .unwrap();
    assert!(
        !ids(s
            .expired_sessions(now() + latch_core::session::EXPIRED_GRACE, 1000)
            .await
            .unwrap())
        .contains(&old.id)
    );
}

pub async fn purge_drops_only_expired(s: &dyn SessionStore) {
    let user = fixtures::user_id();
    let live = fixtures::session(&user);
    let mut dead = fixtures::session(&user);
    dead.idle_expires_at = now() - Duration::seconds(1);
    s.insert_session(&live).await.unwrap();
    s.insert_session(&dead).await.unwrap();
    s.purge_expired(now()).await.unwrap();
    assert!(s.find_session(&live.id, now()).await.unwrap().is_some());
    assert!(
        s.end_session(&dead.id)
            .await
            .unwrap()
            .map(|d| d.is_live(now()))
            != Some(true)
    );
    assert_eq!(
        s.list_user_sessions(&user, now()).await.unwrap(),
        vec![live]
    );
}

/// A session's secret (the cookie's value) is nowhere in what the backend stores: not as a key,
/// not in the session's record or the user's index, not in a code bound to the session, not after
/// the session is used and joined. The session is stored under the secret's digest and found
/// by it.
pub async fn session_secret_is_not_at_rest(h: &crate::SessionHarness) {
    let s = &*h.sessions;
    let user = fixtures::user_id();
    let secret = SessionSecret::new(format!(
        "cookie-secret-{}{}",
        crate::env::unique(),
        crate::env::unique()
    ));
    let mut sess = fixtures::session(&user);
    sess.id = secret.id();
    sess.connection = ConnectionName::new("acme-okta");
    sess.upstream.sid = Some(format!("up-{}", crate::env::unique()));
    let mut c = code(Duration::minutes(1));
    c.user_id = user.clone();
    c.session_id = Some(sess.id.clone());
    s.insert_session_with_code(&sess, &c).await.unwrap();
    s.touch_session(&sess.id, now(), Duration::minutes(30))
        .await
        .unwrap()
        .unwrap();
    s.add_session_client(&sess.id, &fixtures::session_client("app"), now())
        .await
        .unwrap()
        .unwrap();
    s.insert_code(&code(Duration::minutes(1))).await.unwrap();

    // The cookie still finds its session; the secret itself is not a key.
    let found = s.find_session(&secret.id(), now()).await.unwrap().unwrap();
    assert_eq!(found.sid, sess.sid);
    assert!(
        s.find_session(&SessionId::new(secret.expose()), now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.list_user_sessions(&user, now()).await.unwrap().len(), 1);

    let stored = h.at_rest.read().await;
    // The scan sees what was stored (so a miss below means something)...
    for seen in [sess.id.as_str(), sess.sid.as_str(), user.as_str()] {
        assert!(
            crate::at_rest::contains(&stored, seen),
            "the scan of what the backend stores does not show {seen}"
        );
    }
    // ... and the secret is not in it.
    assert!(
        !crate::at_rest::contains(&stored, secret.expose()),
        "the session secret is stored"
    );
}

pub async fn rate_counters_count_per_window(s: &dyn SessionStore) {
    let key = format!("login:{}", crate::env::unique());
    let t0 = now();
    let ends = t0 + Duration::minutes(15);
    for expected in 1..=3u64 {
        assert_eq!(s.count_hit(&key, ends, t0).await.unwrap(), expected);
    }
    let other = format!("login:{}", crate::env::unique());
    assert_eq!(s.count_hit(&other, ends, t0).await.unwrap(), 1);
    // A window that has ended starts over.
    let short = format!("login:{}", crate::env::unique());
    let past = t0 - Duration::seconds(1);
    s.count_hit(&short, past, t0 - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(s.count_hit(&short, ends, t0).await.unwrap(), 1);
    // Concurrent hits are all counted.
    let busy = format!("login:{}", crate::env::unique());
    let (a, b, c) = tokio::join!(
        s.count_hit(&busy, ends, t0),
        s.count_hit(&busy, ends, t0),
        s.count_hit(&busy, ends, t0)
    );
    let mut got = vec![a.unwrap(), b.unwrap(), c.unwrap()];
    got.sort();
    assert_eq!(got, vec![1, 2, 3]);
}

fn throttle_key(policy: &Backoff) -> (String, Backoff) {
    (format!("pw:{}", crate::env::unique()), *policy)
}

/// `(key, policy)` pairs as the `ThrottleKey`s the calls take.
fn tk<'a>(keys: &[&'a (String, Backoff)]) -> Vec<ThrottleKey<'a>> {
    keys.iter()
        .map(|(k, b)| ThrottleKey {
            key: k.as_str(),
            backoff: *b,
        })
        .collect()
}

const SLOW: Backoff = Backoff {
    free: 2,
    base: Duration::seconds(1),
    cap: Duration::seconds(4),
    leak: Duration::minutes(1),
};

/// Free failures first, then each failure doubles the wait up to the cap; an attempt that goes
/// ahead past the free failures holds the key, so a second one at the same moment waits.
pub async fn throttle_delays_double_after_free_failures(s: &dyn SessionStore) {
    let t0 = now();
    let ms = |d: i64| to_millis(t0) + d;
    let k = throttle_key(&SLOW);
    let keys = tk(&[&k]);
    assert_eq!(
        s.throttle_peek(&keys, t0).await.unwrap()[0].failures,
        0,
        "a key never seen"
    );
    for n in 1..=2u64 {
        assert_eq!(
            s.throttle_begin(&keys, t0).await.unwrap(),
            ThrottleCheck::Go
        );
        let t = s.throttle_fail(&keys, t0).await.unwrap()[0];
        assert_eq!((t.failures, t.until), (n, 0), "free failure {n}");
    }
    // The third attempt goes ahead and holds the key for what its failure would cost.
    assert_eq!(
        s.throttle_begin(&keys, t0).await.unwrap(),
        ThrottleCheck::Go
    );
    let held = ThrottleCheck::Wait {
        key: 0,
        until: from_millis(ms(1000)),
    };
    assert_eq!(s.throttle_begin(&keys, t0).await.unwrap(), held);
    let t = s.throttle_fail(&keys, t0).await.unwrap()[0];
    assert_eq!((t.failures, t.until), (3, ms(1000)));
    assert_eq!(
        s.throttle_begin(&keys, t0 + Duration::milliseconds(999))
            .await
            .unwrap(),
        held,
        "not a millisecond early"
    );
    let mut at = t0 + Duration::seconds(1);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for (n, wait) in [(4u64, 2000i64), (5, 4000), (6, 4000)] {
        assert_eq!(
            s.throttle_begin(&keys, at).await.unwrap(),
            ThrottleCheck::Go
        );
        let t = s.throttle_fail(&keys, at).await.unwrap()[0];
        got.push((t.failures, t.until));
        expected.push((n, to_millis(at) + wait));
        at += Duration::milliseconds(wait);
    }
    assert_eq!(got, expected, "doubling up to the cap");
    let peeked = s.throttle_peek(&keys, at).await.unwrap()[0];
    assert_eq!((peeked.failures, peeked.mark), (6, to_millis(t0)));
}

/// A waiting key refuses the attempt without changing any key; the longest wait is named.
pub async fn throttle_wait_changes_nothing(s: &dyn SessionStore) {
    let t0 = now();
    let strict = Backoff {
        free: 0,
        base: Duration::seconds(10),
        cap: Duration::seconds(10),
        ..SLOW
    };
    let short = Backoff {
        free: 0,
        base: Duration::seconds(2),
        ..SLOW
    };
    let (a, b) = (throttle_key(&strict), throttle_key(&short));
    let fresh = throttle_key(&short);
    s.throttle_fail(&tk(&[&a, &b]), t0).await.unwrap();
    let t1 = t0 + Duration::seconds(1);
    let before = s.throttle_peek(&tk(&[&fresh, &b, &a]), t1).await.unwrap();
    assert_eq!(
        s.throttle_begin(&tk(&[&fresh, &b, &a]), t1).await.unwrap(),
        ThrottleCheck::Wait {
            key: 2,
            until: t0 + Duration::seconds(10)
        }
    );
    assert_eq!(
        s.throttle_peek(&tk(&[&fresh, &b, &a]), t1).await.unwrap(),
        before,
        "a refused attempt counts for nothing and holds nothing"
    );
    // Once b's wait is over but a's is not, a still refuses.
    assert_eq!(
        s.throttle_begin(&tk(&[&b, &a]), t0 + Duration::seconds(3))
            .await
            .unwrap(),
        ThrottleCheck::Wait {
            key: 1,
            until: t0 + Duration::seconds(10)
        }
    );
    assert_eq!(
        s.throttle_begin(&tk(&[&b]), t0 + Duration::seconds(3))
            .await
            .unwrap(),
        ThrottleCheck::Go
    );
}

/// Failures leak away one per interval; clearing forgets a key at once.
pub async fn throttle_failures_leak_and_clear(s: &dyn SessionStore) {
    let t0 = now();
    let k = throttle_key(&SLOW);
    let keys = tk(&[&k]);
    for _ in 0..4 {
        s.throttle_fail(&keys, t0).await.unwrap();
    }
    let t = s
        .throttle_peek(&keys, t0 + Duration::seconds(150))
        .await
        .unwrap()[0];
    assert_eq!(
        (t.failures, t.mark),
        (2, to_millis(t0 + Duration::minutes(2)))
    );
    // A failure after leaking counts from what is left.
    let t = s
        .throttle_fail(&keys, t0 + Duration::seconds(150))
        .await
        .unwrap()[0];
    assert_eq!(t.failures, 3);
    assert_eq!(
        s.throttle_peek(&keys, t0 + Duration::minutes(6))
            .await
            .unwrap()[0]
            .failures,
        0
    );
    s.throttle_fail(&keys, t0).await.unwrap();
    s.throttle_clear(&k.0).await.unwrap();
    let t = s.throttle_peek(&keys, t0).await.unwrap()[0];
    assert_eq!((t.failures, t.until), (0, 0));
    assert_eq!(
        s.throttle_begin(&keys, t0).await.unwrap(),
        ThrottleCheck::Go
    );
    s.throttle_clear(&format!("never-{}", crate::env::unique()))
        .await
        .unwrap();
}

/// Concurrent failures all count; of attempts arriving together once a delay ends, one goes.
pub async fn throttle_is_atomic_under_concurrency(s: &dyn SessionStore) {
    let t0 = now();
    let k = throttle_key(&Backoff { free: 0, ..SLOW });
    let keys = tk(&[&k]);
    let (a, b, c, d) = tokio::join!(
        s.throttle_fail(&keys, t0),
        s.throttle_fail(&keys, t0),
        s.throttle_fail(&keys, t0),
        s.throttle_fail(&keys, t0)
    );
    let mut n: Vec<u64> = [a, b, c, d]
        .into_iter()
        .map(|r| r.unwrap()[0].failures)
        .collect();
    n.sort();
    assert_eq!(n, vec![1, 2, 3, 4]);
    let at = t0 + Duration::seconds(4);
    let (a, b, c) = tokio::join!(
        s.throttle_begin(&keys, at),
        s.throttle_begin(&keys, at),
        s.throttle_begin(&keys, at)
    );
    let went = [a, b, c]
        .into_iter()
        .filter(|r| *r.as_ref().unwrap() == ThrottleCheck::Go)
        .count();
    assert_eq!(went, 1);
}

/// The session store contract in its plainest form: a map behind a mutex.
#[derive(Default)]
pub struct MemorySessions {
    inner: Mutex<Mem>,
    ends_fail: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Mem {
    sessions: HashMap<SessionId, Session>,
    codes: HashMap<TokenDigest, AuthCode>,
    txs: HashMap<LoginTxId, LoginTransaction>,
    seen: HashMap<(String, String), OffsetDateTime>,
    counters: HashMap<String, (u64, OffsetDateTime)>,
    throttles: HashMap<String, Throttle>,
}

impl MemorySessions {
    fn with<T>(&self, f: impl FnOnce(&mut Mem) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// While on, ending sessions fails (a store going away mid-logout) and changes nothing.
    pub fn fail_ends(&self, on: bool) {
        self.ends_fail
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn ends(&self) -> Result<(), SessionError> {
        if self.ends_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SessionError::Unavailable("connection reset".into()));
        }
        Ok(())
    }

    /// What it holds of sessions, codes and transactions, rendered (for checks on what is kept).
    pub fn render(&self) -> String {
        self.with(|m| format!("{:?}\n{:?}\n{:?}", m.sessions, m.codes, m.txs))
    }
}

fn by_creation(v: &mut [Session]) {
    v.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[async_trait]
impl SessionStore for MemorySessions {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn ping(&self) -> Result<(), SessionError> {
        Ok(())
    }
    async fn insert_session(&self, s: &Session) -> Result<(), SessionError> {
        self.with(|m| m.sessions.insert(s.id.clone(), s.clone()));
        Ok(())
    }
    async fn find_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        Ok(self.with(|m| m.sessions.get(id).filter(|s| s.is_live(now)).cloned()))
    }
    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: Duration,
    ) -> Result<Option<Session>, SessionError> {
        Ok(self.with(|m| {
            let s = m.sessions.get_mut(id).filter(|s| s.is_live(now))?;
            s.last_seen_at = now;
            s.idle_expires_at = (now + idle).min(s.expires_at);
            Some(s.clone())
        }))
    }
    async fn add_session_client(
        &self,
        id: &SessionId,
        c: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        Ok(self.with(|m| {
            let s = m.sessions.get_mut(id).filter(|s| s.is_live(now))?;
            if !s.clients.iter().any(|j| j.client_id == c.client_id) {
                s.clients.push(c.clone());
                s.clients.sort_by(|a, b| {
                    a.joined_at
                        .cmp(&b.joined_at)
                        .then_with(|| a.client_id.cmp(&b.client_id))
                });
            }
            Some(s.clone())
        }))
    }
    async fn list_user_sessions(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, SessionError> {
        let mut v: Vec<_> = self.with(|m| {
            m.sessions
                .values()
                .filter(|s| s.user_id == *user && s.is_live(now))
                .cloned()
                .collect()
        });
        by_creation(&mut v);
        Ok(v)
    }
    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        self.ends()?;
        Ok(self.with(|m| m.sessions.remove(id)))
    }
    async fn expired_sessions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, SessionError> {
        let mut v: Vec<Session> = self.with(|m| {
            m.sessions
                .values()
                .filter(|s| !s.is_live(now))
                .cloned()
                .collect()
        });
        v.sort_by(|a, b| a.ends_at().cmp(&b.ends_at()).then_with(|| a.id.cmp(&b.id)));
        v.truncate(limit as usize);
        Ok(v)
    }
    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError> {
        self.ends()?;
        let mut v: Vec<_> = self.with(|m| {
            let ids: Vec<_> = m
                .sessions
                .values()
                .filter(|s| s.user_id == *user)
                .map(|s| s.id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| m.sessions.remove(&id))
                .collect()
        });
        by_creation(&mut v);
        Ok(v)
    }
    async fn user_of_upstream(
        &self,
        connection: &ConnectionName,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionError> {
        Ok(self.with(|m| {
            m.sessions
                .values()
                .find(|s| {
                    s.is_live(now)
                        && s.connection == *connection
                        && s.upstream.index_key().as_deref() == Some(key)
                })
                .map(|s| s.user_id.clone())
        }))
    }
    async fn insert_code(&self, c: &AuthCode) -> Result<(), SessionError> {
        self.with(|m| m.codes.insert(c.digest.clone(), c.clone()));
        Ok(())
    }
    async fn take_code(
        &self,
        d: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<AuthCode>, SessionError> {
        Ok(self
            .with(|m| m.codes.remove(d))
            .filter(|c| c.expires_at > now))
    }
    async fn insert_login_tx(&self, t: &LoginTransaction) -> Result<(), SessionError> {
        self.with(|m| m.txs.insert(t.id.clone(), t.clone()));
        Ok(())
    }
    async fn take_login_tx(
        &self,
        id: &LoginTxId,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, SessionError> {
        Ok(self
            .with(|m| m.txs.remove(id))
            .filter(|t| t.expires_at > now))
    }
    async fn forget_once(&self, scope: &str, key: &str) -> Result<(), SessionError> {
        self.with(|m| m.seen.remove(&(scope.to_owned(), key.to_owned())));
        Ok(())
    }
    async fn remember_once(
        &self,
        scope: &str,
        key: &str,
        exp: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        Ok(self.with(|m| {
            let k = (scope.to_owned(), key.to_owned());
            match m.seen.get(&k) {
                Some(e) if *e > now => false,
                _ => {
                    m.seen.insert(k, exp);
                    true
                }
            }
        }))
    }
    async fn count_hit(
        &self,
        key: &str,
        ends: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, SessionError> {
        Ok(self.with(|m| {
            let e = m.counters.entry(key.to_owned()).or_insert((0, ends));
            if e.1 <= now {
                *e = (0, ends);
            }
            e.0 += 1;
            e.0
        }))
    }
    async fn throttle_peek(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        Ok(self.with(|m| {
            keys.iter()
                .map(|k| {
                    let stored = m.throttles.get(k.key).copied().unwrap_or_default();
                    k.backoff.current(stored, now)
                })
                .collect()
        }))
    }
    async fn throttle_begin(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<ThrottleCheck, SessionError> {
        Ok(self.with(|m| {
            let states: Vec<Throttle> = keys
                .iter()
                .map(|k| {
                    let stored = m.throttles.get(k.key).copied().unwrap_or_default();
                    k.backoff.current(stored, now)
                })
                .collect();
            if let Some((key, t)) = states
                .iter()
                .enumerate()
                .filter(|(_, t)| t.waits(now))
                .max_by_key(|(_, t)| t.until)
            {
                return ThrottleCheck::Wait {
                    key,
                    until: t.until_at(),
                };
            }
            for (k, t) in keys.iter().zip(states) {
                m.throttles.insert(k.key.to_owned(), k.backoff.hold(t, now));
            }
            ThrottleCheck::Go
        }))
    }
    async fn throttle_fail(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        Ok(self.with(|m| {
            keys.iter()
                .map(|k| {
                    let stored = m.throttles.get(k.key).copied().unwrap_or_default();
                    let t = k.backoff.fail(k.backoff.current(stored, now), now);
                    m.throttles.insert(k.key.to_owned(), t);
                    t
                })
                .collect()
        }))
    }
    async fn throttle_clear(&self, key: &str) -> Result<(), SessionError> {
        self.with(|m| m.throttles.remove(key));
        Ok(())
    }
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, SessionError> {
        Ok(self.with(|m| {
            let before = m.sessions.len();
            m.sessions
                .retain(|_, s| s.ends_at() + latch_core::session::EXPIRED_GRACE > now);
            (before - m.sessions.len()) as u64
        }))
    }
}

#[cfg(test)]
mod memory {
    use std::sync::Arc;

    use super::MemorySessions;
    use crate::SessionHarness;

    async fn make(_test: &str) -> Option<SessionHarness> {
        let sessions = Arc::new(MemorySessions::default());
        let held = sessions.clone();
        Some(SessionHarness {
            sessions,
            at_rest: crate::at_rest::AtRest::Memory(Arc::new(move || held.render())),
            guard: Box::new(()),
        })
    }

    crate::session_conformance_tests!(make);
}
