//! Outbound fetches under the one policy of `latch_http::client::Outbound`: answers are cut off
//! at the cap, failures are remembered (one fetch per window, shared by concurrent callers),
//! every URL (an admin's, a discovery document's) passes the address policy, and nothing
//! fetched reaches errors, pages or log events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::Method;
use actix_web::test;
use latch_core::model::*;
use latch_core::*;
use latch_jose::keys::{Signer, sign_jws};
use latch_server::bootstrap;
use latch_server::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_all_backends;
use crate::support::{Backends, Harness, TOKEN, env_for};

/// What a [`Peer`] answers on a path.
#[derive(Clone)]
enum Reply {
    Json(Value),
    Status(u16, &'static str, String),
    /// This many bytes of JSON-looking filler, streamed without a length.
    Huge(usize),
}

/// A loopback server answering by path: it counts requests per path and, for [`Reply::Huge`],
/// records how many bytes it got to send and whether the client read them all.
#[derive(Clone)]
struct Peer {
    url: String,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    streamed: Arc<Mutex<Vec<(usize, bool)>>>,
    /// Signalled when a huge answer ends (the client hung up, or it was all sent).
    stream_ended: Arc<tokio::sync::Notify>,
}

impl Peer {
    async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // Small kernel buffers: what was written is close to what the client read.
        socket.set_send_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let peer = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            replies: Arc::default(),
            hits: Arc::default(),
            streamed: Arc::default(),
            stream_ended: Arc::default(),
        };
        let me = peer.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(me.clone().answer(sock));
            }
        });
        peer
    }

    async fn answer(self, mut sock: tokio::net::TcpStream) {
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
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let reply = self.replies.lock().unwrap().get(&path).cloned();
        let (status, ctype, body) = match reply {
            Some(Reply::Json(v)) => (200, "application/json", v.to_string()),
            Some(Reply::Status(s, ctype, body)) => (s, ctype, body),
            Some(Reply::Huge(total)) => {
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"keys\": [")
                    .await;
                let chunk = vec![b' '; 64 * 1024];
                let (mut sent, mut complete) = (0, true);
                while sent < total {
                    if sock.write_all(&chunk).await.is_err() {
                        complete = false;
                        break;
                    }
                    sent += chunk.len();
                }
                self.streamed.lock().unwrap().push((sent, complete));
                self.stream_ended.notify_one();
                return;
            }
            None => (404, "application/json", "{}".to_owned()),
        };
        let _ = sock
            .write_all(format!("HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
            .await;
    }

    /// How the first huge answer ended: bytes sent, and whether all were.
    async fn first_stream(&self) -> (usize, bool) {
        loop {
            if let Some(first) = self.streamed.lock().unwrap().first() {
                return *first;
            }
            tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.stream_ended.notified(),
            )
            .await
            .expect("the huge answer ends");
        }
    }

    fn reply(&self, path: &str, r: Reply) {
        self.replies.lock().unwrap().insert(path.into(), r);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// An issuer whose discovery document names `jwks_uri`.
    fn issuer(&self, jwks_uri: &str) {
        self.reply(
            "/.well-known/openid-configuration",
            Reply::Json(json!({ "issuer": self.url, "jwks_uri": jwks_uri })),
        );
    }
}

/// A listener on 0.0.0.0 (which the kernel routes to this host) counting connections.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = l.accept().await {
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, seen)
}

/// Sends a request; the status and the body as text.
async fn call<S, B>(
    app: &S,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, String)],
) -> (u16, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::default().method(method).uri(uri);
    for (k, v) in headers {
        req = req.insert_header((*k, v.clone()));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status().as_u16();
    let bytes = test::read_body(res).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn admin() -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {TOKEN}"))]
}

/// A management API write with the admin token that must be refused with a 400 naming `field`.
async fn refused<S, B>(app: &S, method: Method, uri: &str, body: Value, field: &str)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let (s, err) = call(app, method, uri, Some(body.clone()), &admin()).await;
    assert_eq!(s, 400, "{body} -> {err}");
    let err: Value = serde_json::from_str(&err).unwrap();
    assert_eq!(err["field"], field, "{body} -> {err}");
}

/// An Okta connection with Universal Logout on, whose org is `org`; its GTR path and endpoint.
async fn gtr_connection<S, B>(app: &S, h: &Harness, org: &Peer) -> (String, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let name = format!("org-{}", latch_testkit::env::unique());
    let (s, body) = call(
        app,
        Method::POST,
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": "okta", "options": {
            "domain": org.url, "client_id": "0oaAPP", "client_secret": "s",
            "global_token_revocation_enabled": true }})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    (
        format!("/oauth/global-token-revocation/connection/{name}"),
        latch_gtr::endpoint_url(h.state.config.issuer_str(), &ConnectionName::new(&name)),
    )
}

/// A GTR call as an attacker makes it: a self-signed token that names the org as its issuer.
fn self_signed(org: &Peer, endpoint: &str) -> String {
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({ "iss": org.url, "sub": "0oaAPP", "aud": endpoint, "iat": now,
                         "exp": now + 300, "jti": latch_jose::random_token(16) });
    sign_jws(
        &key,
        SigningAlg::RS256,
        &key.thumbprint(),
        "global-token-revocation+jwt",
        &claims,
    )
    .unwrap()
}

fn gtr_request(path: &str, token: &str) -> actix_http::Request {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(json!({"subject": {"format": "email", "email": "a@example.com"}}).to_string())
        .to_request()
}

/// A 50 MiB JWKS: the fetch stops at the cap (the org sees the connection dropped after a small
/// part), the call is a 401, and calls in the next 30 s, concurrent or not, do not fetch again.
async fn a_huge_jwks_is_cut_off_at_the_cap(h: Harness) {
    const TOTAL: usize = 50 * 1024 * 1024;
    let app = crate::app!(h);
    let org = Peer::start().await;
    org.issuer(&format!("{}/keys", org.url));
    org.reply("/keys", Reply::Huge(TOTAL));
    let (path, endpoint) = gtr_connection(&app, &h, &org).await;
    let calls =
        (0..5).map(|_| test::call_service(&app, gtr_request(&path, &self_signed(&org, &endpoint))));
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.status(), 401);
    }
    assert_eq!(org.hits("/keys"), 1, "one download, shared");
    let (sent, complete) = org.first_stream().await;
    assert!(!complete, "Latch hung up before the end");
    assert!(sent < 8 * 1024 * 1024, "{sent} bytes of {TOTAL} sent");
    let res = test::call_service(&app, gtr_request(&path, &self_signed(&org, &endpoint))).await;
    assert_eq!(res.status(), 401);
    assert_eq!(org.hits("/keys"), 1, "the failure is remembered");
}
on_all_backends!(
    a_huge_jwks_is_cut_off_at_the_cap,
    a_huge_jwks_is_cut_off_at_the_cap
);

/// A failing JWKS hit by ten unauthenticated GTR calls at once, then ten more, is fetched once;
/// what it answered appears nowhere.
async fn a_failing_jwks_is_fetched_once_per_window(h: Harness) {
    let app = crate::app!(h);
    let org = Peer::start().await;
    org.issuer(&format!("{}/keys", org.url));
    let secret = format!("INTERNAL-SECRET-{}", latch_testkit::env::unique());
    org.reply(
        "/keys",
        Reply::Status(500, "text/plain", format!("db password is {secret}")),
    );
    let (path, endpoint) = gtr_connection(&app, &h, &org).await;
    let calls = (0..10)
        .map(|_| test::call_service(&app, gtr_request(&path, &self_signed(&org, &endpoint))));
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.status(), 401);
        let body = test::read_body(res).await;
        assert!(!String::from_utf8_lossy(&body).contains(&secret));
    }
    for _ in 0..10 {
        let res = test::call_service(&app, gtr_request(&path, &self_signed(&org, &endpoint))).await;
        assert_eq!(res.status(), 401);
    }
    assert_eq!(org.hits("/keys"), 1);
    assert_eq!(org.hits("/.well-known/openid-configuration"), 1);
    let (_, logs) = call(
        &app,
        Method::GET,
        "/api/v2/logs?per_page=100",
        None,
        &admin(),
    )
    .await;
    assert!(logs.contains("universal_logout_failed"), "{logs}");
    assert!(!logs.contains(&secret), "{logs}");
}
on_all_backends!(
    a_failing_jwks_is_fetched_once_per_window,
    a_failing_jwks_is_fetched_once_per_window
);

/// A discovery document that names a `jwks_uri` on a refused address: Latch never connects
/// there, for GTR and for upstream back-channel logout alike.
async fn jwks_uris_from_discovery_pass_the_policy(h: Harness) {
    let app = crate::app!(h);
    let (port, seen) = counting_listener().await;
    // GTR, for both addresses.
    for (jwks_uri, kind) in [
        (format!("http://0.0.0.0:{port}/keys"), "unspecified"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "link-local",
        ),
        (
            format!("https://[::ffff:0.0.0.0]:{port}/keys"),
            "unspecified",
        ),
    ] {
        let org = Peer::start().await;
        org.issuer(&jwks_uri);
        let (path, endpoint) = gtr_connection(&app, &h, &org).await;
        let res = test::call_service(&app, gtr_request(&path, &self_signed(&org, &endpoint))).await;
        assert_eq!(res.status(), 401, "{jwks_uri}");
        assert_eq!(seen.load(Ordering::SeqCst), 0, "{jwks_uri} was not fetched");
        let (_, logs) = call(
            &app,
            Method::GET,
            "/api/v2/logs?type=universal_logout_failed&per_page=100",
            None,
            &admin(),
        )
        .await;
        assert!(
            logs.contains(kind),
            "the refusal names the address kind: {logs}"
        );
    }
    // Upstream back-channel logout through an OIDC connection.
    let idp = Peer::start().await;
    idp.issuer(&format!("http://0.0.0.0:{port}/keys"));
    let name = format!("idp-{}", latch_testkit::env::unique());
    let (s, body) = call(
        &app,
        Method::POST,
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": "oidc", "options": {
            "issuer": idp.url, "client_id": "latch", "client_secret": "s" }})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = sign_jws(
        &key,
        SigningAlg::RS256,
        &key.thumbprint(),
        "logout+jwt",
        &json!({"iss": idp.url, "aud": "latch", "iat": now, "jti": "j1", "sub": "alice",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    )
    .unwrap();
    let req = test::TestRequest::post()
        .uri(&format!("/login/backchannel-logout/{name}"))
        .set_form([("logout_token", token)])
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 400);
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the jwks_uri was not fetched"
    );
}
on_all_backends!(
    jwks_uris_from_discovery_pass_the_policy,
    jwks_uris_from_discovery_pass_the_policy
);

/// URLs that reach internal addresses are refused when an admin saves them: a 400 naming the
/// field, nothing changed.
async fn internal_addresses_are_refused_by_the_api(h: Harness) {
    let app = crate::app!(h);
    let before = h.state.store.list_connections().await.unwrap();
    let oidc = |k: &str, v: &str| {
        let mut o =
            json!({"client_id": "a", "client_secret": "b", "issuer": "https://idp.example.com"});
        o[k] = json!(v);
        json!({"name": "internal", "strategy": "oidc", "options": o})
    };
    let saml = |o: Value| json!({"name": "internal", "strategy": "samlp", "options": o});
    let cases = [
        (
            json!({"name": "internal", "strategy": "okta", "options": {"domain": "https://169.254.169.254/", "client_id": "a", "client_secret": "b"}}),
            "options.domain",
        ),
        (
            json!({"name": "internal", "strategy": "okta", "options": {"domain": "10.0.0.5:8443", "client_id": "a", "client_secret": "b"}}),
            "options.domain",
        ),
        (oidc("issuer", "https://10.0.0.5:8443/"), "options.issuer"),
        (
            oidc(
                "discovery_url",
                "https://[fd00::1]/.well-known/openid-configuration",
            ),
            "options.discovery_url",
        ),
        (oidc("jwks_uri", "https://0.0.0.0/keys"), "options.jwks_uri"),
        (
            oidc("jwks_uri", "https://[::ffff:169.254.169.254]/keys"),
            "options.jwks_uri",
        ),
        (
            oidc("jwks_uri", "https://100.64.0.1/keys"),
            "options.jwks_uri",
        ),
        (
            saml(json!({"metadataUrl": "https://192.168.1.1/md"})),
            "options.metadataUrl",
        ),
        (
            saml(json!({"signInEndpoint": "https://224.0.0.1/sso", "signingCert": "x"})),
            "options.signInEndpoint",
        ),
        (
            saml(
                json!({"metadataUrl": "https://idp.example.com/md", "signOutEndpoint": "https://255.255.255.255/slo"}),
            ),
            "options.signOutEndpoint",
        ),
    ];
    for (body, field) in &cases {
        refused(
            &app,
            Method::POST,
            "/api/v2/connections",
            body.clone(),
            field,
        )
        .await;
    }
    assert_eq!(h.state.store.list_connections().await.unwrap(), before);
    // PATCH: the same options on an existing connection are refused, and nothing changes.
    let (s, c) = call(
        &app,
        Method::POST,
        "/api/v2/connections",
        Some(json!({"name": "public", "strategy": "oidc", "options": {"client_id": "a", "client_secret": "b", "issuer": "https://idp.example.com"}})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201);
    let id = serde_json::from_str::<Value>(&c).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = h
        .state
        .store
        .get_connection(&ConnectionId::new(&id))
        .await
        .unwrap();
    for (body, field) in cases.iter().filter(|(b, _)| b["strategy"] == "oidc") {
        let uri = format!("/api/v2/connections/{id}");
        let options = json!({"options": body["options"]});
        refused(&app, Method::PATCH, &uri, options, field).await;
    }
    assert_eq!(
        h.state
            .store
            .get_connection(&ConnectionId::new(&id))
            .await
            .unwrap(),
        kept
    );

    // Clients: the back-channel URL, which Latch itself posts to. Callbacks and logout URLs are
    // only ever visited by a browser: an intranet app's are fine.
    for body in [
        json!({"name": "intranet-cb", "callbacks": ["https://app.example.com/cb", "https://10.1.2.3/cb"]}),
        json!({"name": "intranet-bye", "allowed_logout_urls": ["https://[fe80::1]/bye"]}),
    ] {
        let (s, err) = call(
            &app,
            Method::POST,
            "/api/v2/clients",
            Some(body.clone()),
            &admin(),
        )
        .await;
        assert_eq!(s, 201, "{body} -> {err}");
    }
    let clients_before = h.state.store.list_clients().await.unwrap();
    let cases = [
        (
            json!({"name": "x", "oidc_logout": {"backchannel_logout_urls": ["https://0.0.0.0:8443/bc"]}}),
            "oidc_logout.backchannel_logout_urls[0]",
        ),
        (
            json!({"name": "x", "oidc_logout": {"backchannel_logout_urls": ["https://169.254.169.254/bc"]}}),
            "oidc_logout.backchannel_logout_urls[0]",
        ),
    ];
    for (body, field) in &cases {
        refused(&app, Method::POST, "/api/v2/clients", body.clone(), field).await;
    }
    assert_eq!(h.state.store.list_clients().await.unwrap(), clients_before);
    let (_, c) = call(
        &app,
        Method::POST,
        "/api/v2/clients",
        Some(json!({"name": "Keep", "callbacks": ["https://keep.example.com/cb"]})),
        &admin(),
    )
    .await;
    let cid = serde_json::from_str::<Value>(&c).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, field) in &cases {
        let uri = format!("/api/v2/clients/{cid}");
        refused(&app, Method::PATCH, &uri, body.clone(), field).await;
    }
    let kept = h
        .state
        .store
        .get_client(&ClientId::new(&cid))
        .await
        .unwrap();
    assert_eq!(kept.name, "Keep");
    // Loopback stays the development case.
    let (s, err) = call(
        &app,
        Method::POST,
        "/api/v2/clients",
        Some(json!({"name": "dev", "callbacks": ["http://127.0.0.1:3000/cb", "http://localhost/cb", "http://[::1]/cb"],
                    "oidc_logout": {"backchannel_logout_urls": ["http://127.0.0.1:3000/bc"]}})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{err}");
}
on_all_backends!(
    internal_addresses_are_refused_by_the_api,
    internal_addresses_are_refused_by_the_api
);

/// `LATCH_OUTBOUND_ALLOW` lets the ranges it names through, and only those.
#[actix_web::test]
async fn the_allow_list_lets_a_named_private_range_through() {
    let test = "the_allow_list_lets_a_named_private_range_through";
    let Some((mut env, _dir, _schema)) = env_for(test, Backends::Embedded) else {
        return;
    };
    env.push(("LATCH_OUTBOUND_ALLOW".into(), "10.0.0.0/8, fd00::/8".into()));
    let config = Config::from_sources(None, &env).unwrap();
    let state = bootstrap::start(config).await.unwrap().state;
    let app = test::init_service(latch_server::app::app(state)).await;
    for (domain, want) in [
        ("https://10.0.0.5:8443", 201),
        ("https://[fd00::5]", 201),
        ("https://169.254.169.254", 400),
        ("https://192.168.1.1", 400),
    ] {
        let name = format!("okta-{}", latch_testkit::env::unique());
        let (s, body) = call(
            &app,
            Method::POST,
            "/api/v2/connections",
            Some(json!({"name": name, "strategy": "okta", "options": {
                "domain": domain, "client_id": "a", "client_secret": "b" }})),
            &admin(),
        )
        .await;
        assert_eq!(s, want, "{domain}: {body}");
    }
    let (s, body) = call(
        &app,
        Method::POST,
        "/api/v2/clients",
        Some(json!({"name": "intranet", "callbacks": ["https://10.1.2.3/cb"]})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{body}");
}

/// A SAML `metadataUrl` pointing at an internal service, fetched by an anonymous `/authorize`:
/// the sign-in fails on a page, and neither the page nor the `f` event holds what it answered.
async fn saml_metadata_answers_stay_out_of_the_log(h: Harness) {
    let app = crate::app!(h);
    let internal = Peer::start().await;
    let secret = format!("INTERNAL-SECRET-{}", latch_testkit::env::unique());
    internal.reply(
        "/ok",
        Reply::Json(json!({"token": secret.clone(), "role": "internal"})),
    );
    internal.reply(
        "/err",
        Reply::Status(500, "text/plain", format!("stack trace: {secret}")),
    );
    internal.reply(
        "/text",
        Reply::Status(200, "text/plain", format!("{secret} plain")),
    );
    let (s, c) = call(
        &app,
        Method::POST,
        "/api/v2/clients",
        Some(json!({"name": "App", "callbacks": ["http://127.0.0.1:9/cb"]})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let cid = serde_json::from_str::<Value>(&c).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/ok", "/err", "/text"] {
        let name = format!("saml-{}", latch_testkit::env::unique());
        let (s, body) = call(
            &app,
            Method::POST,
            "/api/v2/connections",
            Some(
                json!({"name": name, "strategy": "samlp", "enabled_clients": [cid],
                        "options": {"metadataUrl": format!("{}{path}", internal.url)}}),
            ),
            &admin(),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let (s, page) = call(
            &app,
            Method::GET,
            &format!("/authorize?response_type=code&client_id={cid}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&connection={name}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 502, "{path}: {page}");
        assert!(!page.contains(&secret), "{page}");
        assert_eq!(internal.hits(path), 1);
        let (_, logs) = call(
            &app,
            Method::GET,
            &format!("/api/v2/logs?type=f&connection={name}"),
            None,
            &admin(),
        )
        .await;
        assert!(logs.contains(&name), "the failure is logged: {logs}");
        assert!(!logs.contains(&secret), "{path}: {logs}");
    }
}
on_all_backends!(
    saml_metadata_answers_stay_out_of_the_log,
    saml_metadata_answers_stay_out_of_the_log
);

/// A back-channel URL on a refused address (stored before the policy, or by hand) is never
/// connected to: the delivery fails for good, saying why.
async fn backchannel_deliveries_pass_the_policy(h: Harness) {
    let (port, seen) = counting_listener().await;
    let client = latch_testkit::fixtures::client();
    h.state.store.insert_client(&client).await.unwrap();
    let now = h.state.clock.now();
    let d = Delivery {
        id: DeliveryId::new(format!("dlv_{}", latch_testkit::env::unique())),
        kind: DeliveryKind::BackchannelLogout,
        client_id: client.client_id.clone(),
        target: url::Url::parse(&format!("http://0.0.0.0:{port}/bc")).unwrap(),
        notice: LogoutNotice {
            sub: Some(latch_testkit::fixtures::user_id()),
            sid: None,
            initiator: LogoutInitiator::SessionRevoked,
            email: None,
        },
        jti: Jti::new(latch_jose::random_token(16)),
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        locked_until: None,
        last_error: None,
        finished_at: None,
    };
    h.state
        .store
        .insert_deliveries(std::slice::from_ref(&d))
        .await
        .unwrap();
    let done = h.state.backchannel.attempt(d).await;
    assert_eq!(done.state, DeliveryState::Failed);
    let why = done.last_error.unwrap_or_default();
    assert!(
        why.contains("refused") && why.contains("unspecified"),
        "{why}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}
on_all_backends!(
    backchannel_deliveries_pass_the_policy,
    backchannel_deliveries_pass_the_policy
);

/// An OIDC connection's discovery goes through the same client: a huge document is cut off, a
/// failing one is fetched once per window however many anonymous `/authorize` calls ask, and a
/// `jwks_uri` on a refused address is never fetched.
async fn oidc_discovery_is_bounded_and_checked(h: Harness) {
    let app = crate::app!(h);
    let (s, c) = call(
        &app,
        Method::POST,
        "/api/v2/clients",
        Some(json!({"name": "App", "callbacks": ["http://127.0.0.1:9/cb"]})),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let cid = serde_json::from_str::<Value>(&c).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let connection = |idp: &Peer| {
        let name = format!("oidc-{}", latch_testkit::env::unique());
        let body = json!({"name": name, "strategy": "oidc", "enabled_clients": [cid],
                          "options": {"issuer": idp.url, "client_id": "latch", "client_secret": "s"}});
        (name, body)
    };
    let authorize = |name: &str| {
        format!(
            "/authorize?response_type=code&client_id={cid}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&connection={name}"
        )
    };
    const DISCOVERY: &str = "/.well-known/openid-configuration";

    // 50 MiB of discovery document.
    let huge = Peer::start().await;
    huge.reply(DISCOVERY, Reply::Huge(50 * 1024 * 1024));
    let (name, body) = connection(&huge);
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v2/connections",
        Some(body),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = call(&app, Method::GET, &authorize(&name), None, &[]).await;
    assert_eq!(s, 502);
    let (sent, complete) = huge.first_stream().await;
    assert!(!complete && sent < 8 * 1024 * 1024, "{sent}");

    // A failing discovery, ten sign-ins: one fetch.
    let failing = Peer::start().await;
    let secret = format!("INTERNAL-SECRET-{}", latch_testkit::env::unique());
    failing.reply(DISCOVERY, Reply::Status(503, "text/plain", secret.clone()));
    let (name, body) = connection(&failing);
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v2/connections",
        Some(body),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    for _ in 0..10 {
        let (s, page) = call(&app, Method::GET, &authorize(&name), None, &[]).await;
        assert_eq!(s, 502);
        assert!(!page.contains(&secret));
    }
    assert_eq!(failing.hits(DISCOVERY), 1);

    // A discovery document naming an unspecified-address JWKS.
    let (port, seen) = counting_listener().await;
    let pointing = Peer::start().await;
    pointing.reply(
        DISCOVERY,
        Reply::Json(json!({
            "issuer": pointing.url,
            "authorization_endpoint": format!("{}/authorize", pointing.url),
            "token_endpoint": format!("{}/token", pointing.url),
            "jwks_uri": format!("http://0.0.0.0:{port}/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })),
    );
    let (name, body) = connection(&pointing);
    let (s, b) = call(
        &app,
        Method::POST,
        "/api/v2/connections",
        Some(body),
        &admin(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = call(&app, Method::GET, &authorize(&name), None, &[]).await;
    assert_eq!(s, 502);
    assert_eq!(pointing.hits(DISCOVERY), 1);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the jwks_uri was not fetched"
    );
    let (_, logs) = call(
        &app,
        Method::GET,
        "/api/v2/logs?type=f&per_page=100",
        None,
        &admin(),
    )
    .await;
    assert!(logs.contains("unspecified"), "{logs}");
    assert!(!logs.contains(&secret), "{logs}");
}
on_all_backends!(
    oidc_discovery_is_bounded_and_checked,
    oidc_discovery_is_bounded_and_checked
);
