//! Global Token Revocation: the negative matrix (each refusal changes nothing), then the call
//! that ends everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::test;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::model::*;
use latch_core::session::SessionClient;
use latch_core::*;
use latch_jose::keys::{Signer, sign_jws};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backchannel::{Receiver, verify_logout_token};
use crate::on_all_backends;
use crate::support::{Harness, TOKEN};

/// A loopback "Okta org": serves its discovery document and JWKS.
#[derive(Clone)]
struct Org {
    url: String,
    docs: Arc<Mutex<HashMap<String, Value>>>,
}

impl Org {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let org = Self {
            url,
            docs: Arc::default(),
        };
        let me = org.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let doc = me.docs.lock().unwrap().get(&path).cloned();
                    let (status, body) = match doc {
                        Some(d) => (200, d.to_string()),
                        None => (404, "{}".to_owned()),
                    };
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                });
            }
        });
        org.docs.lock().unwrap().insert(
            "/.well-known/openid-configuration".into(),
            json!({ "issuer": org.url, "jwks_uri": format!("{}/oauth2/v1/keys", org.url) }),
        );
        org
    }

    fn publish(&self, keys: &[&Signer]) {
        let jwks: Vec<Value> = keys
            .iter()
            .map(|k| k.public_jwk(SigningAlg::RS256))
            .collect();
        self.docs
            .lock()
            .unwrap()
            .insert("/oauth2/v1/keys".into(), json!({ "keys": jwks }));
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

struct Setup {
    org: Org,
    key: Signer,
    endpoint: String,
    path: String,
    user: UserId,
    app: Client,
    rx: Receiver,
}

async fn setup(h: &Harness, name: &str) -> Setup {
    let org = Org::start().await;
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    org.publish(&[&key]);
    let s = &h.state;
    let app = test::init_service(latch_server::app::app(s.clone())).await;
    let req = test::TestRequest::post()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .set_json(json!({"name": name, "strategy": "okta", "options": {
            "domain": org.url, "client_id": "0oaAPPINSTANCE", "client_secret": "upstream-secret",
            "global_token_revocation_enabled": true }}))
        .to_request();
    let conn: Value = test::read_body_json(test::call_service(&app, req).await).await;
    let conn_id = ConnectionId::new(conn["id"].as_str().unwrap());

    // A user of that connection, signed in on two devices, with an app in each session and an
    // offline refresh token.
    let rx = Receiver::start().await;
    let mut client = latch_testkit::fixtures::client();
    client.oidc_logout.backchannel_logout_urls =
        vec![url::Url::parse(&format!("{}/bc", rx.url)).unwrap()];
    s.store.insert_client(&client).await.unwrap();
    let user = latch_testkit::fixtures::user();
    s.store.insert_user(&user).await.unwrap();
    let mut identity =
        latch_testkit::fixtures::identity(&user, &s.store.get_connection(&conn_id).await.unwrap());
    identity.issuer = org.url.clone();
    identity.subject = "00uALICE".into();
    s.store.insert_identity(&identity).await.unwrap();
    for _ in 0..2 {
        let mut sess = latch_testkit::fixtures::session(&user.user_id);
        sess.connection = ConnectionName::new(name);
        sess.clients = vec![SessionClient {
            client_id: client.client_id.clone(),
            sid: sess.sid.clone(),
            joined_at: latch_testkit::fixtures::now(),
            saml: None,
        }];
        s.sessions.insert_session(&sess).await.unwrap();
    }
    let offline = latch_testkit::fixtures::refresh_token(&user, &client, None, true);
    s.store
        .insert_grant(&latch_testkit::fixtures::grant_of(&offline), Some(&offline))
        .await
        .unwrap();
    let endpoint = latch_gtr::endpoint_url(s.config.issuer_str(), &ConnectionName::new(name));
    let path = format!("/oauth/global-token-revocation/connection/{name}");
    Setup {
        org,
        key,
        endpoint,
        path,
        user: user.user_id,
        app: client,
        rx,
    }
}

fn claims(s: &Setup) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({ "iss": s.org.url, "sub": "0oaAPPINSTANCE", "aud": s.endpoint, "iat": now, "nbf": now - 300, "exp": now + 300, "jti": latch_jose::random_token(16) })
}

fn sign(s: &Setup, c: &Value) -> String {
    sign_jws(
        &s.key,
        SigningAlg::RS256,
        &s.key.thumbprint(),
        "global-token-revocation+jwt",
        c,
    )
    .unwrap()
}

fn subject() -> String {
    json!({"subject": {"format": "iss_sub", "iss": "ISS", "sub": "00uALICE"}}).to_string()
}

async fn post<S, B>(
    app: &S,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: String,
) -> u16
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", content_type.to_owned()))
        .set_payload(body);
    if let Some(b) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {b}")));
    }
    test::call_service(app, req.to_request())
        .await
        .status()
        .as_u16()
}

async fn global_token_revocation(h: Harness) {
    let name = format!("acme-{}", latch_testkit::env::unique());
    let s = setup(&h, &name).await;
    let app = crate::app!(h);
    let body = subject().replace("ISS", &s.org.url);
    let live = || async {
        h.state
            .sessions
            .list_user_sessions(&s.user, h.state.clock.now())
            .await
            .unwrap()
            .len()
    };
    assert_eq!(live().await, 2);

    let other_key = Signer::generate(SigningAlg::RS256).unwrap();
    let mut cases: Vec<(&str, Option<String>, String, String, u16)> = Vec::new();
    let ct = "application/json".to_owned();
    let good = |c: Value| sign(&s, &c);
    let with = |k: &str, v: Value| {
        let mut c = claims(&s);
        c[k] = v;
        good(c)
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    cases.push(("no bearer", None, ct.clone(), body.clone(), 401));
    cases.push((
        "wrong audience",
        Some(with("aud", json!(format!("{}/other", s.endpoint)))),
        ct.clone(),
        body.clone(),
        401,
    ));
    cases.push((
        "wrong issuer",
        Some(with("iss", json!("https://evil.okta.com"))),
        ct.clone(),
        body.clone(),
        401,
    ));
    cases.push((
        "wrong sub",
        Some(with("sub", json!("0oaOTHERAPP"))),
        ct.clone(),
        body.clone(),
        403,
    ));
    let mut expired = claims(&s);
    expired["iat"] = json!(now - 900);
    expired["exp"] = json!(now - 600);
    cases.push((
        "expired",
        Some(good(expired)),
        ct.clone(),
        body.clone(),
        401,
    ));
    let mut future = claims(&s);
    future["iat"] = json!(now + 600);
    future["exp"] = json!(now + 900);
    cases.push((
        "future iat",
        Some(good(future)),
        ct.clone(),
        body.clone(),
        401,
    ));
    let mut long = claims(&s);
    long["exp"] = json!(now + 86_400);
    cases.push((
        "lifetime too long",
        Some(good(long)),
        ct.clone(),
        body.clone(),
        401,
    ));
    let unknown = sign_jws(
        &other_key,
        SigningAlg::RS256,
        &other_key.thumbprint(),
        "global-token-revocation+jwt",
        &claims(&s),
    )
    .unwrap();
    cases.push(("unknown key", Some(unknown), ct.clone(), body.clone(), 401));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "global-token-revocation+jwt"})),
        b64(&claims(&s))
    );
    cases.push(("alg none", Some(none), ct.clone(), body.clone(), 401));
    // HS256 keyed with the public key's bytes (the classic confusion attack).
    let hs_input = format!(
        "{}.{}",
        b64(
            &json!({"alg": "HS256", "typ": "global-token-revocation+jwt", "kid": s.key.thumbprint()})
        ),
        b64(&claims(&s))
    );
    let n = s.key.public_jwk(SigningAlg::RS256)["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, n.as_bytes()),
        hs_input.as_bytes(),
    );
    cases.push((
        "HS256 with the public key",
        Some(format!(
            "{hs_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.as_ref())
        )),
        ct.clone(),
        body.clone(),
        401,
    ));
    let wrong_typ = sign_jws(
        &s.key,
        SigningAlg::RS256,
        &s.key.thumbprint(),
        "JWT",
        &claims(&s),
    )
    .unwrap();
    cases.push(("wrong typ", Some(wrong_typ), ct.clone(), body.clone(), 401));
    cases.push((
        "malformed JSON",
        Some(good(claims(&s))),
        ct.clone(),
        "{\"subject\":".into(),
        400,
    ));
    cases.push((
        "not JSON",
        Some(good(claims(&s))),
        "text/plain".into(),
        body.clone(),
        400,
    ));
    cases.push((
        "unknown format",
        Some(good(claims(&s))),
        ct.clone(),
        json!({"subject": {"format": "opaque", "id": "x"}}).to_string(),
        400,
    ));
    cases.push(("both keys", Some(good(claims(&s))), ct.clone(), json!({"subject": {"format": "email", "email": "a@b.c"}, "sub_id": {"format": "email", "email": "a@b.c"}}).to_string(), 400));
    cases.push((
        "extra member",
        Some(good(claims(&s))),
        ct.clone(),
        json!({"subject": {"format": "email", "email": "a@b.c", "x": 1}}).to_string(),
        400,
    ));
    cases.push((
        "unknown user",
        Some(good(claims(&s))),
        ct.clone(),
        subject()
            .replace("ISS", &s.org.url)
            .replace("00uALICE", "00uNOBODY"),
        404,
    ));
    cases.push((
        "oversized body",
        Some(good(claims(&s))),
        ct.clone(),
        format!(
            "{{\"subject\":{{\"format\":\"email\",\"email\":\"{}@x.com\"}}}}",
            "a".repeat(5000)
        ),
        413,
    ));
    for (what, bearer, ctype, b, want) in &cases {
        let got = post(&app, &s.path, bearer.as_deref(), ctype, b.clone()).await;
        assert_eq!(got, *want, "{what}");
        assert_eq!(live().await, 2, "{what} changed nothing");
    }
    // Unknown connection, and a connection whose switch is off, look like bad credentials.
    let t = good(claims(&s));
    assert_eq!(
        post(
            &app,
            "/oauth/global-token-revocation/connection/no-such",
            Some(&t),
            &ct,
            body.clone()
        )
        .await,
        401
    );
    let conn = h
        .state
        .store
        .find_connection_by_name(&ConnectionName::new(&name))
        .await
        .unwrap()
        .unwrap();
    let mut off = conn.clone();
    off.options
        .insert("global_token_revocation_enabled".into(), json!(false));
    h.state.store.update_connection(&off).await.unwrap();
    assert_eq!(post(&app, &s.path, Some(&t), &ct, body.clone()).await, 401);
    h.state.store.update_connection(&conn).await.unwrap();
    assert_eq!(live().await, 2);

    // The real call: every session ends, every token dies, the app is told (by the workers the
    // call wakes, as in the running binary).
    let workers = latch_server::app::spawn_workers(&h.state);
    let jwks = test::read_body_json::<Value, _>(
        test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/.well-known/jwks.json")
                .to_request(),
        )
        .await,
    )
    .await;
    let access_token =
        crate::access_tokens::mint_access_token(&h.state, &s.user, &s.app.client_id).await;
    assert_eq!(
        crate::access_tokens::userinfo(&app, &access_token).await,
        200
    );
    let t = good(claims(&s));
    assert_eq!(post(&app, &s.path, Some(&t), &ct, body.clone()).await, 204);
    assert_eq!(live().await, 0);
    assert_eq!(
        crate::access_tokens::userinfo(&app, &access_token).await,
        401,
        "access tokens die with the user's grants"
    );
    assert!(
        h.state
            .store
            .list_user_refresh_tokens(&s.user, h.state.clock.now())
            .await
            .unwrap()
            .is_empty(),
        "offline tokens too"
    );
    let got = s.rx.wait_for(2, std::time::Duration::from_secs(5)).await;
    for w in workers {
        w.abort();
    }
    assert_eq!(got.len(), 2, "one logout token per session the app joined");
    for (_, token) in &got {
        let c = verify_logout_token(
            &jwks,
            token,
            s.app.client_id.as_str(),
            h.state.config.issuer_str(),
        );
        assert_eq!(c["sub"], s.user.as_str());
    }
    // The same token again is a replay.
    assert_eq!(post(&app, &s.path, Some(&t), &ct, body.clone()).await, 401);
    // Okta's default subject format, email, and the draft's sub_id key, work too.
    let email = h
        .state
        .store
        .get_user(&s.user)
        .await
        .unwrap()
        .email
        .unwrap();
    let by_email = json!({"sub_id": {"format": "email", "email": email}}).to_string();
    assert_eq!(
        post(&app, &s.path, Some(&good(claims(&s))), &ct, by_email).await,
        204
    );
    let logs = h
        .state
        .store
        .list_logs(&LogQuery {
            event_type: Some("universal_logout_succeeded".into()),
            user_id: Some(s.user.clone()),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 2);
    let first = logs
        .iter()
        .find(|e| e.details["sessions_ended"] == 2)
        .expect("the first call's event");
    assert_eq!(first.details["subject_format"], "iss_sub");
    assert_eq!(first.details["refresh_tokens_revoked"], 1);
    assert_eq!(first.details["caller"]["sub"], "0oaAPPINSTANCE");
    let failed = h
        .state
        .store
        .list_logs(&LogQuery {
            event_type: Some("universal_logout_failed".into()),
            connection: Some(ConnectionName::new(&name)),
            per_page: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.len() >= cases.len() - 1, "refusals are logged");
}
on_all_backends!(global_token_revocation, global_token_revocation);

/// Refusals for a connection that does not exist are counted, not logged one by one: a flood of
/// calls naming 8,000-character or hostile connections writes one `universal_logout_failed`
/// event per interval, carrying the count and none of the names, and every one of them gets the
/// same answer. A known connection's refusals are each still logged, their reason cut short.
async fn unknown_connection_refusals_are_counted_not_logged(h: Harness) {
    let clock = latch_core::clock::ManualClock::new(h.state.clock.now());
    let mut state = h.state.clone();
    state.clock = Arc::new(clock.clone());
    let app = test::init_service(latch_server::app::app(state)).await;
    let call = |path: String, bearer: String| {
        test::TestRequest::post()
            .uri(&path)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Authorization", format!("Bearer {bearer}")))
            .set_payload(subject())
            .to_request()
    };
    let failed = |connection: Option<&str>| {
        let q = LogQuery {
            event_type: Some("universal_logout_failed".into()),
            connection: connection.map(ConnectionName::new),
            per_page: 100,
            ..Default::default()
        };
        let store = h.state.store.clone();
        async move { store.list_logs(&q).await.unwrap() }
    };
    let long = "x".repeat(8000);
    let names = [
        long.as_str(),
        "no-such-connection",
        "evil%0Ainjected%20line",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ];
    let mut answers = std::collections::HashSet::new();
    for i in 0..40 {
        let path = format!(
            "/oauth/global-token-revocation/connection/{}",
            names[i % names.len()]
        );
        let res = test::call_service(&app, call(path, "x.y.z".into())).await;
        let mut headers: Vec<String> = res
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-request-id")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        headers.sort();
        let status = res.status().as_u16();
        answers.insert((status, headers, test::read_body(res).await));
    }
    assert_eq!(answers.len(), 1, "one answer for every unknown name");
    assert_eq!(answers.iter().next().unwrap().0, 401);
    let events = failed(None).await;
    assert_eq!(events.len(), 1, "one event for the whole flood");
    assert_eq!(events[0].connection, None);
    assert_eq!(events[0].details["unknown_connection_refusals"], 1);
    let text = format!("{events:?}");
    for attacker in ["xxxxxxxxxxxxxxxx", "injected", "<script", "alert(1)"] {
        assert!(!text.contains(attacker), "{attacker} logged: {text}");
    }
    // After the interval, the next refusal logs the count since the last event.
    clock.advance(time::Duration::seconds(61));
    let res = test::call_service(
        &app,
        call(
            "/oauth/global-token-revocation/connection/no-such-connection".into(),
            "x.y.z".into(),
        ),
    )
    .await;
    assert_eq!(res.status(), 401);
    let events = failed(None).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].details["unknown_connection_refusals"], 40);
    assert_eq!(events[0].details["sample_connection"], "no-such-connection");

    // A known connection: every refusal logged, with at most a bounded quote of the token.
    let name = format!("acme-{}", latch_testkit::env::unique());
    let s = setup(&h, &name).await;
    let header = json!({"alg": "A".repeat(8000), "typ": "global-token-revocation+jwt"});
    let hostile = format!("{}.{}.sig", b64(&header), b64(&claims(&s)));
    for _ in 0..3 {
        let res = test::call_service(&app, call(s.path.clone(), hostile.clone())).await;
        assert_eq!(res.status(), 401);
    }
    let events = failed(Some(&name)).await;
    assert_eq!(events.len(), 3, "each refusal of a known connection");
    for e in &events {
        let reason = e.details["reason"].as_str().unwrap();
        assert!(
            reason.chars().count() <= LOG_REASON_MAX + 1,
            "{} characters of reason",
            reason.chars().count()
        );
        assert!(!reason.contains(&"A".repeat(300)));
    }
}
on_all_backends!(
    unknown_connection_refusals_are_counted_not_logged,
    unknown_connection_refusals_are_counted_not_logged
);

/// A revocation that fails on Latch's side (the session store drops mid-logout) answers 503, and
/// Okta's retry of the same token is then carried out, not refused as a replay: the `jti` is
/// remembered only for calls that did not fail for Latch's own reasons.
async fn a_failed_revocation_can_be_retried(h: Harness) {
    let name = format!("retry-{}", latch_testkit::env::unique());
    let s = setup(&h, &name).await;
    let flaky = Arc::new(crate::health::Faulty::new(h.state.sessions.clone()));
    flaky
        .ends_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut state = h.state.clone();
    state.sessions = flaky.clone();
    let app = test::init_service(latch_server::app::app(state)).await;
    let body = subject().replace("ISS", &s.org.url);
    let token = sign(&s, &claims(&s));
    let ct = "application/json";
    assert_eq!(
        post(&app, &s.path, Some(&token), ct, body.clone()).await,
        503
    );
    flaky
        .ends_fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        post(&app, &s.path, Some(&token), ct, body.clone()).await,
        204
    );
    assert!(
        h.state
            .sessions
            .list_user_sessions(&s.user, h.state.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    // Once carried out, the same token is a replay.
    assert_eq!(post(&app, &s.path, Some(&token), ct, body).await, 401);
}
on_all_backends!(
    a_failed_revocation_can_be_retried,
    a_failed_revocation_can_be_retried
);
