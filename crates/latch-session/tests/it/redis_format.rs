//! The Redis store across an upgrade (sessions and user index sets written by the release
//! before are read, changed and ended), and the keys a sign-in leaves: what is used goes.

use ::redis::AsyncCommands;
use latch_core::clock::to_millis;
use latch_core::session::*;
use latch_core::*;
use latch_session::RedisSessionStore;
use latch_testkit::env::unique;
use latch_testkit::fixtures;
use serde::Serialize;
use time::Duration;

/// The release before this one: its record encoder and insert script, verbatim.
mod previous {
    use super::*;

    #[derive(Serialize)]
    struct Core {
        s: Sid,
        c: ConnectionName,
        t: i64,
        a: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        i: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        g: Option<String>,
        #[serde(default, skip_serializing_if = "is_default")]
        p: UpstreamSession,
    }

    fn is_default(u: &UpstreamSession) -> bool {
        *u == UpstreamSession::default()
    }

    #[derive(Serialize)]
    struct Joined {
        client_id: ClientId,
        s: Sid,
        j: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        m: Option<SamlParticipant>,
    }

    fn client_line(c: &SessionClient) -> String {
        let j = Joined {
            client_id: c.client_id.clone(),
            s: c.sid.clone(),
            j: to_millis(c.joined_at),
            m: c.saml.clone(),
        };
        format!("c{}\n", serde_json::to_string(&j).unwrap())
    }

    pub fn encode(s: &Session) -> String {
        let core = Core {
            s: s.sid.clone(),
            c: s.connection.clone(),
            t: to_millis(s.created_at),
            a: to_millis(s.auth_time),
            i: s.ip.clone(),
            g: s.user_agent.clone(),
            p: s.upstream.clone(),
        };
        let mut out = format!(
            "v1\n{}\n{}\n{}\n{}\n{}\n",
            to_millis(s.last_seen_at),
            to_millis(s.idle_expires_at),
            to_millis(s.expires_at),
            s.user_id,
            serde_json::to_string(&core).unwrap()
        );
        for c in &s.clients {
            out.push_str(&client_line(c));
        }
        out
    }

    const INSERT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local t = redis.call('PEXPIRETIME', KEYS[2])
if t == -1 or t < tonumber(ARGV[4]) then redis.call('PEXPIREAT', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'PXAT', ARGV[4]) end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[3])
return 1
";

    /// Stores `s` as the release before did (its `insert_session`).
    pub async fn insert(c: &mut ::redis::aio::MultiplexedConnection, prefix: &str, s: &Session) {
        let key = s.upstream.index_key();
        let sid = key.as_deref();
        let _: i64 = ::redis::Script::new(INSERT)
            .key(format!("{prefix}sd:{}", s.id))
            .key(format!("{prefix}ud:{}", s.user_id))
            .key(format!(
                "{prefix}us:{}:{}",
                s.connection,
                sid.unwrap_or("-")
            ))
            .key(format!("{prefix}sx"))
            .arg(encode(s))
            .arg(to_millis(s.ends_at() + EXPIRED_GRACE).max(1))
            .arg(s.id.as_str())
            .arg(to_millis(s.expires_at).max(1))
            .arg(if sid.is_some() {
                s.user_id.as_str()
            } else {
                ""
            })
            .arg(to_millis(s.ends_at()))
            .invoke_async(c)
            .await
            .unwrap();
    }
}

async fn connect(
    test: &str,
) -> Option<(
    RedisSessionStore,
    String,
    ::redis::aio::MultiplexedConnection,
)> {
    let url = latch_testkit::env::redis_url(test)?;
    let prefix = format!("latch-test:{}:", unique());
    let s = RedisSessionStore::connect(&url, prefix.clone())
        .await
        .unwrap();
    let c = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Some((s, prefix, c))
}

async fn keys(c: &mut ::redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(c)
        .await
        .unwrap();
    for k in &mut out {
        *k = k[prefix.len()..].to_owned();
    }
    out.sort();
    out
}

/// A session as a federated sign-in leaves it: an upstream sid, a sealed upstream ID token in
/// Latch's form, a SAML app beside an OpenID Connect one.
fn federated(user: &UserId) -> Session {
    let mut s = fixtures::session(user);
    s.connection = ConnectionName::new("acme-okta");
    s.upstream = UpstreamSession {
        sid: Some(format!("up-{}", unique())),
        sealed_id_token: Some("lat1.c2VhbGVkIHVwc3RyZWFtIElEIHRva2Vu".into()),
        id_token_cookie: None,
        name_id: None,
        name_id_format: None,
        session_index: None,
    };
    s.clients = vec![
        SessionClient::oidc(ClientId::new("app"), s.sid.clone(), s.created_at),
        SessionClient {
            client_id: ClientId::new("saml-app"),
            sid: Sid::new(format!("sid-{}", unique())),
            joined_at: s.created_at + Duration::seconds(1),
            saml: Some(SamlParticipant {
                name_id: "alice@example.com".into(),
                name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
                session_index: "_si1".into(),
            }),
        },
    ];
    s
}

/// Sessions and per-user sets the release before wrote are found, touched, joined, listed and
/// ended; the user's next sign-in moves the set's ids into the index hash.
#[tokio::test]
async fn redis_reads_what_the_previous_release_stored() {
    let Some((s, prefix, mut c)) = connect("redis_reads_what_the_previous_release_stored").await
    else {
        return;
    };
    let now = fixtures::now();
    let user = fixtures::user_id();
    let old = federated(&user);
    previous::insert(&mut c, &prefix, &old).await;
    let raw: Vec<u8> = c.get(format!("{prefix}sd:{}", old.id)).await.unwrap();
    assert!(raw.starts_with(b"v1\n"), "written in the previous format");

    assert_eq!(
        s.find_session(&old.id, now).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        s.list_user_sessions(&user, now).await.unwrap(),
        vec![old.clone()]
    );
    assert_eq!(
        s.user_of_upstream(&old.connection, old.upstream.sid.as_deref().unwrap(), now)
            .await
            .unwrap(),
        Some(user.clone())
    );

    // Used: the idle expiry moves, the record keeps its format.
    let later = now + Duration::minutes(5);
    let touched = s
        .touch_session(&old.id, later, Duration::minutes(30))
        .await
        .unwrap()
        .unwrap();
    let mut expected = old.clone();
    expected.last_seen_at = later;
    expected.idle_expires_at = later + Duration::minutes(30);
    assert_eq!(touched, expected);
    let raw: Vec<u8> = c.get(format!("{prefix}sd:{}", old.id)).await.unwrap();
    assert!(raw.starts_with(b"v1\n"));

    // Joined by another app (the session's sid), and again by one already in (no change).
    let late = SessionClient::oidc(ClientId::new("late-app"), old.sid.clone(), later);
    let joined = s
        .add_session_client(&old.id, &late, later)
        .await
        .unwrap()
        .unwrap();
    expected.clients.push(late.clone());
    assert_eq!(joined, expected);
    let again = s
        .add_session_client(
            &old.id,
            &SessionClient::oidc(ClientId::new("app"), Sid::new("another"), later),
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, expected, "an app already in joins once");
    assert_eq!(
        s.find_session(&old.id, later).await.unwrap(),
        Some(expected.clone())
    );

    // The user signs in again: the old set's ids move into the index hash, which lives as long
    // as the longest of them.
    let mut fresh = federated(&user);
    fresh.expires_at = old.expires_at - Duration::minutes(10);
    fresh.idle_expires_at = fresh.expires_at;
    s.insert_session(&fresh).await.unwrap();
    assert!(
        !c.exists::<_, bool>(format!("{prefix}ud:{user}"))
            .await
            .unwrap()
    );
    let mut ids: Vec<String> = c.hkeys(format!("{prefix}uh:{user}")).await.unwrap();
    ids.sort();
    let mut want = vec![old.id.to_string(), fresh.id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    let ttl: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(format!("{prefix}uh:{user}"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ttl, to_millis(old.expires_at));
    assert_eq!(
        s.list_user_sessions(&user, later).await.unwrap(),
        vec![expected.clone(), fresh.clone()]
    );

    // Ended one at a time: gone from the index too.
    assert_eq!(s.end_session(&old.id).await.unwrap(), Some(expected));
    assert_eq!(
        s.list_user_sessions(&user, later).await.unwrap(),
        vec![fresh.clone()]
    );
    assert_eq!(s.end_session(&fresh.id).await.unwrap(), Some(fresh.clone()));
    // Left: the upstream index entries, which live to their absolute expiry (a lookup checks
    // that a live session still carries the key).
    let mut want = vec![
        format!("us:acme-okta:{}", old.upstream.sid.as_deref().unwrap()),
        format!("us:acme-okta:{}", fresh.upstream.sid.as_deref().unwrap()),
    ];
    want.sort();
    assert_eq!(keys(&mut c, &prefix).await, want);
}

/// Ending every session of a user takes those in the previous release's set too, and leaves no
/// index behind; the expiry sweeper reads a record of the previous format.
#[tokio::test]
async fn redis_ends_sessions_of_the_previous_release() {
    let Some((s, prefix, mut c)) = connect("redis_ends_sessions_of_the_previous_release").await
    else {
        return;
    };
    let now = fixtures::now();
    let user = fixtures::user_id();
    let a = federated(&user);
    let mut b = fixtures::session(&user);
    b.clients = vec![fixtures::session_client("app")];
    previous::insert(&mut c, &prefix, &a).await;
    previous::insert(&mut c, &prefix, &b).await;
    // Idle past its end, within the grace the sweeper has.
    let mut ended = fixtures::session(&user);
    ended.last_seen_at = now - Duration::minutes(40);
    ended.idle_expires_at = now - Duration::minutes(10);
    previous::insert(&mut c, &prefix, &ended).await;
    assert_eq!(
        s.expired_sessions(now, 100).await.unwrap(),
        vec![ended.clone()]
    );
    assert_eq!(s.end_session(&ended.id).await.unwrap(), Some(ended));
    let c2 = s.insert_session(&fixtures::session(&user)).await;
    c2.unwrap();
    let mut all = s.end_user_sessions(&user).await.unwrap();
    assert_eq!(all.len(), 3);
    all.retain(|x| x.id == a.id || x.id == b.id);
    all.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(all, want);
    assert!(s.list_user_sessions(&user, now).await.unwrap().is_empty());
    let left: Vec<String> = keys(&mut c, &prefix)
        .await
        .into_iter()
        .filter(|k| !k.starts_with("us:"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// What a sign-in leaves once the app redeemed its code: the session record, its entry in the
/// user's index (a small hash) and in the expiry set. The code and the login transaction are
/// gone once used, and ending the session leaves nothing of it.
#[tokio::test]
async fn redis_keys_go_when_used() {
    let Some((s, prefix, mut c)) = connect("redis_keys_go_when_used").await else {
        return;
    };
    let now = fixtures::now();
    let user = fixtures::user_id();
    let tx = LoginTransaction {
        id: LoginTxId::new(format!("tx-{}", unique())),
        expires_at: now + Duration::minutes(15),
        payload: serde_json::json!({"request": {"client_id": "app"}}),
    };
    s.insert_login_tx(&tx).await.unwrap();
    assert_eq!(keys(&mut c, &prefix).await, vec![format!("t:{}", tx.id)]);
    let ttl: i64 = c.pttl(format!("{prefix}t:{}", tx.id)).await.unwrap();
    assert!(ttl > 0 && ttl <= 15 * 60 * 1000, "{ttl}");
    assert!(s.take_login_tx(&tx.id, now).await.unwrap().is_some());
    assert!(
        keys(&mut c, &prefix).await.is_empty(),
        "the transaction is gone once used"
    );

    let mut sess = federated(&user);
    sess.upstream.sid = None;
    let code = AuthCode {
        digest: TokenDigest::new(format!("digest-{}", unique())),
        client_id: ClientId::new("app"),
        user_id: user.clone(),
        session_id: Some(sess.id.clone()),
        sid: Some(sess.sid.clone()),
        redirect_uri: "https://app.example.com/cb".into(),
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        auth_time: now,
        expires_at: now + Duration::minutes(1),
    };
    s.insert_session_with_code(&sess, &code).await.unwrap();
    let mut want = vec![
        format!("c:{}", code.digest),
        format!("sd:{}", sess.id),
        format!("uh:{user}"),
        "sx".to_owned(),
    ];
    want.sort();
    assert_eq!(keys(&mut c, &prefix).await, want);
    let ttl: i64 = c.pttl(format!("{prefix}c:{}", code.digest)).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert_eq!(
        s.take_code(&code.digest, now).await.unwrap(),
        Some(code.clone())
    );
    want.retain(|k| !k.starts_with("c:"));
    assert_eq!(
        keys(&mut c, &prefix).await,
        want,
        "the code is gone once used"
    );

    // The index is a listpack hash; the sealed upstream ID token is kept as its bytes.
    let enc: String = ::redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(format!("{prefix}uh:{user}"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(enc, "listpack");
    let raw: Vec<u8> = c.get(format!("{prefix}sd:{}", sess.id)).await.unwrap();
    assert!(raw.starts_with(
        b"v2
"
    ));
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("c2VhbGVk"), "{text}");
    assert!(raw.ends_with(b"sealed upstream ID token"), "{text}");
    assert_eq!(
        s.find_session(&sess.id, now).await.unwrap(),
        Some(sess.clone())
    );

    assert!(s.end_session(&sess.id).await.unwrap().is_some());
    assert!(
        keys(&mut c, &prefix).await.is_empty(),
        "the ended session left keys"
    );
}
