//! A hostile upstream IdP on loopback: it answers the code exchange with whatever ID token the
//! test crafts. Every bad token must end on a page, with no session.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::clock::ManualClock;
use latch_core::model::SigningAlg;
use latch_jose::keys::{Signer, sign_jws};
use latch_server::bootstrap;
use latch_server::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_all_backends;
use crate::process::{Latch, free_port};
use crate::support::{Backends, Harness, TOKEN, TestEnv, env_for};

#[derive(Clone)]
struct Hostile {
    base: String,
    id_token: Arc<Mutex<String>>,
    jwks: Arc<Mutex<Value>>,
}

impl Hostile {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let me = Self {
            base,
            id_token: Arc::default(),
            jwks: Arc::new(Mutex::new(json!({"keys": []}))),
        };
        let h = me.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_owned();
                    let body = match path.as_str() {
                        "/.well-known/openid-configuration" => json!({
                            "issuer": h.base,
                            "authorization_endpoint": format!("{}/authorize", h.base),
                            "token_endpoint": format!("{}/token", h.base),
                            "jwks_uri": format!("{}/jwks", h.base),
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }),
                        "/jwks" => h.jwks.lock().unwrap().clone(),
                        "/token" => json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": h.id_token.lock().unwrap().clone()}),
                        _ => json!({}),
                    }
                    .to_string();
                    let _ = sock
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                });
            }
        });
        me
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn id_token_rejections_leave_no_session() {
    let Some((env, _dir, _schema)) =
        env_for("id_token_rejections_leave_no_session", Backends::Embedded)
    else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let idp = Hostile::start().await;
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    let other = Signer::generate(SigningAlg::RS256).unwrap();
    *idp.jwks.lock().unwrap() = json!({"keys": [key.public_jwk(SigningAlg::RS256)]});
    let (http, cid) = app_and_connection(&latch.base, &idp.base).await;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    type Mutate = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutate, Option<&Signer>, u16)> = vec![
        ("good", Box::new(|_| {}), Some(&key), 302),
        (
            "signed by a key the IdP does not publish",
            Box::new(|_| {}),
            Some(&other),
            400,
        ),
        (
            "wrong issuer",
            Box::new(|c| c["iss"] = json!("https://evil.example.com")),
            Some(&key),
            400,
        ),
        (
            "wrong audience",
            Box::new(|c| c["aud"] = json!("someone-else")),
            Some(&key),
            400,
        ),
        (
            "expired",
            Box::new(move |c| {
                c["exp"] = json!(now - 3600);
                c["iat"] = json!(now - 7200);
            }),
            Some(&key),
            400,
        ),
        (
            "nonce mismatch",
            Box::new(|c| c["nonce"] = json!("not-the-nonce")),
            Some(&key),
            400,
        ),
        (
            "no nonce",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            Some(&key),
            400,
        ),
        ("alg none", Box::new(|_| {}), None, 400),
        (
            "tampered",
            Box::new(|c| c["sub"] = json!("mallory")),
            Some(&key),
            400,
        ),
    ];
    for (what, mutate, signer, want) in cases {
        let (status, session) = try_id_token(
            &http,
            &latch.base,
            &cid,
            &idp,
            now,
            &*mutate,
            signer,
            what == "tampered",
        )
        .await;
        assert_eq!(status, want, "{what}");
        assert_eq!(
            session,
            want == 302,
            "{what}: a session only for the good token"
        );
    }
    // Only the good token created a user.
    let users = crate::support::api(
        &crate::support::Remote(&http, &latch.base),
        "GET",
        "/api/v2/users?q=alice",
        None,
    )
    .await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["identities"][0]["user_id"], "alice");
}

/// One upstream sign-in through the hostile IdP, answered with an ID token made of the claims
/// (after `mutate`) signed by `signer` (`None`: `alg: none`). Returns the callback's status and
/// whether it set a session.
#[allow(clippy::too_many_arguments)]
async fn try_id_token(
    http: &reqwest::Client,
    base: &str,
    cid: &str,
    idp: &Hostile,
    now: i64,
    mutate: &dyn Fn(&mut Value),
    signer: Option<&Signer>,
    tampered: bool,
) -> (u16, bool) {
    // Start a sign-in; the IdP's authorization URL carries Latch's state and nonce.
    let res = http
        .get(format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&connection=hostile"))
        .send()
        .await
        .unwrap();
    let cookie: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let to_idp = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    let mut claims = json!({"iss": idp.base, "sub": "alice", "aud": "latch-at-hostile", "iat": now, "exp": now + 300,
                            "nonce": q["nonce"], "email": "alice@example.com"});
    mutate(&mut claims);
    let token = match signer {
        Some(s) if tampered => {
            // Signed over the original sub, then the payload swapped.
            let mut orig = claims.clone();
            orig["sub"] = json!("alice");
            let signed = sign_jws(s, SigningAlg::RS256, &s.thumbprint(), "JWT", &orig).unwrap();
            let parts: Vec<&str> = signed.split('.').collect();
            format!("{}.{}.{}", parts[0], b64(&claims), parts[2])
        }
        Some(s) => sign_jws(s, SigningAlg::RS256, &s.thumbprint(), "JWT", &claims).unwrap(),
        None => format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims)),
    };
    *idp.id_token.lock().unwrap() = token;
    let cb = http
        .get(format!(
            "{base}/login/callback?code=any&state={}",
            q["state"]
        ))
        .header("Cookie", cookie.join("; "))
        .send()
        .await
        .unwrap();
    let session = cb.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap_or("").starts_with("latch_session=")
            && !v.to_str().unwrap_or("").starts_with("latch_session=;")
    });
    (cb.status().as_u16(), session)
}

/// A Latch served by this process on a loopback port, on a clock the test moves: the caches of
/// other issuers' keys and metadata read it too.
struct InProcess {
    base: String,
    clock: ManualClock,
    server: actix_web::dev::ServerHandle,
    _env: TestEnv,
}

impl InProcess {
    async fn start(test: &str, backends: Backends) -> Option<Self> {
        let (mut env, dir, schema) = tokio::task::spawn_blocking({
            let test = test.to_owned();
            move || env_for(&test, backends)
        })
        .await
        .unwrap()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        env.push(("LATCH_BIND".into(), addr.to_string()));
        let config = Config::from_sources(None, &env).unwrap();
        let clock = ManualClock::new(time::OffsetDateTime::now_utc());
        let state = bootstrap::start_with_clock(config, Arc::new(clock.clone()))
            .await
            .unwrap()
            .state;
        let server = actix_web::HttpServer::new(move || latch_server::app::app(state.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Some(Self {
            base: format!("http://{addr}"),
            clock,
            server: handle,
            _env: (env, dir, schema),
        })
    }
}

/// The IdP rolls its signing key: a token under the new `kid` makes Latch refetch the JWKS, at
/// most once every 30 seconds per issuer (so a flood of unknown kids cannot make Latch hammer
/// the IdP). Right after a fetch the new key is not yet trusted; once Latch's clock has moved past
/// the interval it is.
#[actix_web::test]
async fn a_rolled_upstream_key_is_picked_up_after_the_refetch_interval() {
    let Some(latch) = InProcess::start(
        "a_rolled_upstream_key_is_picked_up_after_the_refetch_interval",
        Backends::Embedded,
    )
    .await
    else {
        return;
    };
    let idp = Hostile::start().await;
    let old = Signer::generate(SigningAlg::RS256).unwrap();
    let new = Signer::generate(SigningAlg::RS256).unwrap();
    *idp.jwks.lock().unwrap() = json!({"keys": [old.public_jwk(SigningAlg::RS256)]});
    let (http, cid) = app_and_connection(&latch.base, &idp.base).await;
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let keep = |_: &mut Value| {};
    let (status, _) = try_id_token(
        &http,
        &latch.base,
        &cid,
        &idp,
        now(),
        &keep,
        Some(&old),
        false,
    )
    .await;
    assert_eq!(status, 302, "the old key signs in");
    // The IdP rolls to the new key and drops the old one.
    *idp.jwks.lock().unwrap() = json!({"keys": [new.public_jwk(SigningAlg::RS256)]});
    let (status, session) = try_id_token(
        &http,
        &latch.base,
        &cid,
        &idp,
        now(),
        &keep,
        Some(&new),
        false,
    )
    .await;
    assert_eq!((status, session), (400, false), "refetched within 30 s");
    latch.clock.advance(time::Duration::seconds(31));
    let (status, session) = try_id_token(
        &http,
        &latch.base,
        &cid,
        &idp,
        now(),
        &keep,
        Some(&new),
        false,
    )
    .await;
    assert_eq!((status, session), (302, true), "the new key is picked up");
    let (status, _) = try_id_token(
        &http,
        &latch.base,
        &cid,
        &idp,
        now(),
        &keep,
        Some(&old),
        false,
    )
    .await;
    assert_eq!(status, 400, "the dropped key no longer signs in");
    latch.server.stop(true).await;
}

/// OpenID Connect Back-Channel Logout from the IdP with a `sid` and no `sub`: the session that
/// upstream `sid` signed in ends (found through the session store's upstream-sid index); an
/// unknown `sid` ends nothing and is still a 200; a token with neither is refused.
async fn sid_only_upstream_logout(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let idp = Hostile::start().await;
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    *idp.jwks.lock().unwrap() = json!({"keys": [key.public_jwk(SigningAlg::RS256)]});
    let (http, cid) = app_and_connection(&latch.base, &idp.base).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let upstream_sid = format!("okta-sid-{}", latch_testkit::env::unique());
    let with_sid = {
        let s = upstream_sid.clone();
        move |c: &mut Value| c["sid"] = json!(s)
    };
    let (status, session) = try_id_token(
        &http,
        &latch.base,
        &cid,
        &idp,
        now,
        &with_sid,
        Some(&key),
        false,
    )
    .await;
    assert_eq!((status, session), (302, true));
    let users = crate::support::api(
        &crate::support::Remote(&http, &latch.base),
        "GET",
        "/api/v2/users?q=alice",
        None,
    )
    .await;
    let user_id = users[0]["user_id"].as_str().unwrap().to_owned();
    let sessions = || async {
        let path = format!("/api/v2/users/{user_id}/sessions");
        let v = crate::support::api(
            &crate::support::Remote(&http, &latch.base),
            "GET",
            &path,
            None,
        )
        .await;
        v["sessions"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(sessions().await, 1);
    let logout = |claims: Value| {
        let token = sign_jws(
            &key,
            SigningAlg::RS256,
            &key.thumbprint(),
            "logout+jwt",
            &claims,
        )
        .unwrap();
        http.post(format!("{}/login/backchannel-logout/hostile", latch.base))
            .form(&[("logout_token", token)])
            .send()
    };
    let base = |jti: &str| {
        json!({"iss": idp.base, "aud": "latch-at-hostile", "iat": now, "jti": jti,
               "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
    };
    // Neither sub nor sid: refused, nothing ends.
    let r = logout(base("j-none")).await.unwrap();
    assert_eq!(r.status(), 400);
    // An unknown sid: nothing to end, and that is a success.
    let mut unknown = base("j-unknown");
    unknown["sid"] = json!("never-issued");
    assert_eq!(logout(unknown).await.unwrap().status(), 200);
    assert_eq!(sessions().await, 1);
    // The session's own sid, without a sub: it ends.
    let mut by_sid = base("j-sid");
    by_sid["sid"] = json!(upstream_sid);
    assert_eq!(logout(by_sid).await.unwrap().status(), 200);
    assert_eq!(
        sessions().await,
        0,
        "the session signed in with that upstream sid ended"
    );
}

#[tokio::test]
async fn sid_only_upstream_logout_on_the_embedded_default() {
    sid_only_upstream_logout(
        Backends::Embedded,
        "sid_only_upstream_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn sid_only_upstream_logout_on_postgres_and_redis() {
    sid_only_upstream_logout(
        Backends::Production,
        "sid_only_upstream_logout_on_postgres_and_redis",
    )
    .await;
}

/// A logout token must carry a `jti` (jsonwebtoken's `required_spec_claims` does not enforce
/// it), be recent (`iat`), and be used once: its `jti` is remembered per issuer, so neither the
/// same connection nor another connection of the same IdP takes it again.
async fn upstream_logout_tokens_are_unique_and_fresh(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let idp = Hostile::start().await;
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    *idp.jwks.lock().unwrap() = json!({"keys": [key.public_jwk(SigningAlg::RS256)]});
    let (http, cid) = app_and_connection(&latch.base, &idp.base).await;
    // Another connection to the same IdP and app registration.
    crate::support::api(
        &crate::support::Remote(&http, &latch.base),
        "POST",
        "/api/v2/connections",
        Some(
            json!({"name": "hostile-twin", "strategy": "oidc", "options": {
            "issuer": idp.base, "client_id": "latch-at-hostile", "client_secret": "x"}}),
        ),
    )
    .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign_in = || async {
        let keep = |_: &mut Value| {};
        let (status, session) = try_id_token(
            &http,
            &latch.base,
            &cid,
            &idp,
            time::OffsetDateTime::now_utc().unix_timestamp(),
            &keep,
            Some(&key),
            false,
        )
        .await;
        assert_eq!((status, session), (302, true));
    };
    sign_in().await;
    let users = crate::support::api(
        &crate::support::Remote(&http, &latch.base),
        "GET",
        "/api/v2/users?q=alice",
        None,
    )
    .await;
    let user_id = users[0]["user_id"].as_str().unwrap().to_owned();
    let sessions = || async {
        let path = format!("/api/v2/users/{user_id}/sessions");
        let v = crate::support::api(
            &crate::support::Remote(&http, &latch.base),
            "GET",
            &path,
            None,
        )
        .await;
        v["sessions"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(sessions().await, 1);
    let logout = |connection: &str, claims: &Value| {
        let token = sign_jws(
            &key,
            SigningAlg::RS256,
            &key.thumbprint(),
            "logout+jwt",
            claims,
        )
        .unwrap();
        http.post(format!(
            "{}/login/backchannel-logout/{connection}",
            latch.base
        ))
        .form(&[("logout_token", token)])
        .send()
    };
    let good = json!({"iss": idp.base, "aud": "latch-at-hostile", "sub": "alice", "iat": now,
                      "exp": now + 120, "jti": "bcl-jti-1",
                      "events": {"http://schemas.openid.net/event/backchannel-logout": {}}});
    type Mutate = Box<dyn Fn(&mut Value)>;
    let refused: Vec<(&str, Mutate)> = vec![
        (
            "no jti",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        ("empty jti", Box::new(|c| c["jti"] = json!(""))),
        ("jti not a string", Box::new(|c| c["jti"] = json!(42))),
        (
            "issued 20 minutes ago",
            Box::new(move |c| {
                c["iat"] = json!(now - 1200);
                c["jti"] = json!("bcl-jti-old");
            }),
        ),
    ];
    for (what, mutate) in &refused {
        let mut c = good.clone();
        mutate(&mut c);
        let r = logout("hostile", &c).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(sessions().await, 1, "{what} ended nothing");
    }
    // The good token ends the session, once.
    assert_eq!(logout("hostile", &good).await.unwrap().status(), 200);
    assert_eq!(sessions().await, 0);
    sign_in().await;
    assert_eq!(sessions().await, 1);
    for connection in ["hostile", "hostile-twin"] {
        let r = logout(connection, &good).await.unwrap();
        assert_eq!(r.status(), 400, "replayed to {connection}");
    }
    assert_eq!(sessions().await, 1, "a replay ends nothing");
}

#[tokio::test]
async fn upstream_logout_tokens_are_unique_and_fresh_on_the_embedded_default() {
    upstream_logout_tokens_are_unique_and_fresh(
        Backends::Embedded,
        "upstream_logout_tokens_are_unique_and_fresh_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn upstream_logout_tokens_are_unique_and_fresh_on_postgres_and_redis() {
    upstream_logout_tokens_are_unique_and_fresh(
        Backends::Production,
        "upstream_logout_tokens_are_unique_and_fresh_on_postgres_and_redis",
    )
    .await;
}

/// `POST /login/backchannel-logout/{name}` answers an unknown connection, a connection without
/// back-channel logout, a missing token and a bad token alike (the spec's 400, `no-store`): the
/// same status, headers and body, so it does not tell which connections exist.
async fn backchannel_logout_refusals_look_alike(h: Harness) {
    let app = crate::app!(h);
    let name = format!("bcl-{}", latch_testkit::env::unique());
    let req = actix_web::test::TestRequest::post()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .set_json(json!({"name": name, "strategy": "oidc", "options": {
            "issuer": "http://127.0.0.1:9", "client_id": "latch", "client_secret": "x"}}))
        .to_request();
    assert!(
        actix_web::test::call_service(&app, req)
            .await
            .status()
            .is_success()
    );
    let long = "x".repeat(8000);
    let cases = [
        (
            "an unknown connection",
            format!("no-such-{name}"),
            "logout_token=x.y.z",
        ),
        ("a 8000-character name", long, "logout_token=x.y.z"),
        (
            "a connection without back-channel logout",
            latch_core::model::DATABASE_CONNECTION.to_owned(),
            "logout_token=x.y.z",
        ),
        ("a bad token", name.clone(), "logout_token=x.y.z"),
        ("no token", name.clone(), "logout_token="),
    ];
    let mut answers = Vec::new();
    for (what, connection, form) in cases {
        let res = actix_web::test::call_service(
            &app,
            actix_web::test::TestRequest::post()
                .uri(&format!("/login/backchannel-logout/{connection}"))
                .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
                .set_payload(form)
                .to_request(),
        )
        .await;
        let mut headers: Vec<String> = res
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-request-id")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        headers.sort();
        let status = res.status().as_u16();
        let body = actix_web::test::read_body(res).await;
        answers.push((what, (status, headers, body)));
    }
    let (_, first) = &answers[0];
    assert_eq!(first.0, 400);
    assert!(first.1.iter().any(|h| h == "cache-control: no-store"));
    for (what, answer) in &answers {
        assert_eq!(answer, first, "{what} answers like an unknown connection");
    }
}
on_all_backends!(
    backchannel_logout_refusals_look_alike,
    backchannel_logout_refusals_look_alike
);

/// A client without redirects, an app, and the `hostile` OIDC connection to `idp` enabled for
/// it; the app's client id.
async fn app_and_connection(base: &str, idp: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let c = crate::support::api(
        &crate::support::Remote(&http, base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "App", "callbacks": ["http://127.0.0.1:9/cb"]})),
    )
    .await;
    let cid = c["client_id"].as_str().unwrap().to_owned();
    crate::support::api(
        &crate::support::Remote(&http, base),
        "POST",
        "/api/v2/connections",
        Some(
            json!({"name": "hostile", "strategy": "oidc", "enabled_clients": [cid],
            "options": {"issuer": idp, "client_id": "latch-at-hostile", "client_secret": "x"}}),
        ),
    )
    .await;
    (http, cid)
}
