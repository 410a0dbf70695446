//! No handler panics or fails on the request shapes the fuzz targets generate: every seed of
//! `fuzz/corpus/`, and a seeded pseudo-random batch of mutants of each, sent in-process to every
//! route that takes that input. Each answer must be a 2xx, 3xx or 4xx (a 4xx with a body):
//! never a panic, never a 5xx (but the "Sign-in unavailable" 502 of a SAML connection whose
//! pasted IdP settings cannot be used, when a sign-in through it starts).
//!
//! The Latch under test is set up as the fuzz fixtures expect (`fuzz_seeds`): issuer
//! `https://fuzz.example`, its clock at the seeds' instant, an `okta` connection (Universal
//! Logout on) and an `oidc` connection whose issuer's keys are the fixture key (served on
//! loopback), a `samlp` connection trusting the fixture IdP. So valid seeds get past every
//! signature check and their mutants reach the checks behind them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix_web::test;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::FutureExt;
use latch_core::clock::ManualClock;
use latch_server::AppState;
use latch_server::bootstrap;
use latch_server::config::Config;
use latch_testkit::env::{PgSchema, TempDir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fuzz_seeds::{CLIENT_ID, ISSUER, Keys, LATCH_ISSUER, NOW, corpus, fuzz_dir};
use crate::support::{Backends, TOKEN, env_for};

/// Mutants per seed (each one to three mutations of it); fixed seed, so every run sends the same.
const MUTANTS: usize = 24;
const RNG_SEED: u64 = 0x1a7c_4f0f_2d5e_b0b5;

/// SplitMix64: a small, well-known generator; enough to spread mutations deterministically.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What fuzzers like to put in: structure breakers, encodings, extreme numbers.
const INTERESTING: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "%",
    "%00",
    "%zz",
    "%ff",
    "&",
    "=",
    "+",
    "<",
    ">",
    "<!DOCTYPE x [<!ENTITY e \"e\">]>",
    "&amp;",
    "&e;",
    "\u{0}",
    "\u{feff}",
    "é",
    "null",
    "true",
    "-1",
    "1e999",
    "0.5",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "[[[[[[[[[[[[[[[[",
    "{\"a\":{\"a\":{\"a\":{}}}}",
    "..",
    ".",
    "==",
];
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775747",
    "-9223372036854775748",
    "18446744073709551615",
    "1e308",
    "253402300800",
];

/// One to three mutations of `data`.
fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(d.len() + 1);
        match rng.below(8) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            2 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(at..at, bytes);
            }
            3 if !d.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(d.len());
                d.drain(at.min(end)..end);
            }
            4 if !d.is_empty() => {
                let start = rng.below(d.len());
                let end = (start + 1 + rng.below(64)).min(d.len());
                let chunk = d[start..end].to_vec();
                d.splice(at..at, chunk);
            }
            5 => d.truncate(at),
            6 => {
                // Swap a run of digits for an extreme number.
                let digits: Vec<usize> = (0..d.len()).filter(|&i| d[i].is_ascii_digit()).collect();
                if let Some(&start) = digits.get(rng.below(digits.len())) {
                    let end = (start..d.len())
                        .find(|&i| !d[i].is_ascii_digit())
                        .unwrap_or(d.len());
                    let n = NUMBERS[rng.below(NUMBERS.len())].as_bytes().to_vec();
                    d.splice(start..end, n);
                }
            }
            _ => {
                let s = INTERESTING[rng.below(INTERESTING.len())]
                    .as_bytes()
                    .to_vec();
                d.splice(at..at, s);
            }
        }
    }
    d
}

/// Seeds and their mutants. With `keep_mode`, the first byte (the token targets' mode, see
/// `fuzz/src/lib.rs`) is kept so a mutant of a signed seed is signed too.
fn inputs(target: &str, rng: &mut Rng, keep_mode: bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, seed) in corpus(target) {
        out.push((format!("{target}/{name}"), seed.clone()));
        for i in 0..MUTANTS {
            let m = if keep_mode && !seed.is_empty() {
                [&seed[..1], &mutate(rng, &seed[1..])].concat()
            } else {
                mutate(rng, &seed)
            };
            out.push((format!("{target}/{name} mutant {i}"), m));
        }
        // A signed token's time claims at the edges of i64, one at a time.
        if keep_mode && seed.first().is_some_and(|m| m & 1 == 1) {
            out.extend(
                edge_times(&seed)
                    .into_iter()
                    .map(|(what, m)| (format!("{target}/{name} {what}"), m)),
            );
        }
    }
    out
}

/// `data` with the number of each `"iat"`, `"exp"`, `"nbf"` member swapped for each of
/// [`NUMBERS`].
fn edge_times(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for claim in ["\"iat\":", "\"exp\":", "\"nbf\":"] {
        let Some(at) = text.find(claim).map(|i| i + claim.len()) else {
            continue;
        };
        let end = text[at..]
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .map_or(text.len(), |n| at + n);
        for n in NUMBERS {
            let m = format!("{}{n}{}", &text[..at], &text[end..]);
            out.push((format!("{claim}{n}"), m.into_bytes()));
        }
    }
    out
}

/// A loopback issuer: the fixture key's JWKS at `/keys`.
async fn key_server(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = jwks.to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    url
}

struct Latch {
    state: AppState,
    _keep: (TempDir, Option<PgSchema>),
}

async fn start(test: &str, backends: Backends) -> Option<Latch> {
    let (mut env, dir, schema) = tokio::task::spawn_blocking({
        let test = test.to_owned();
        move || env_for(&test, backends)
    })
    .await
    .unwrap()?;
    env.push(("LATCH_ISSUER".into(), LATCH_ISSUER.into()));
    let config = Config::from_sources(None, &env).unwrap();
    let mut state = bootstrap::start(config).await.unwrap().state;
    // The seeds' tokens are valid at their instant.
    state.clock = Arc::new(ManualClock::new(
        time::OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
    ));
    Some(Latch {
        state,
        _keep: (dir, schema),
    })
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// A request the fuzz inputs drive.
struct Req {
    method: &'static str,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &'static str, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn form(self, body: Vec<u8>) -> Self {
        Self { body, ..self }.header("content-type", "application/x-www-form-urlencoded")
    }
    fn json(self, body: Vec<u8>) -> Self {
        Self { body, ..self }.header("content-type", "application/json")
    }
}

/// A header value HTTP can carry (what a client could send at all).
fn sendable(v: &str) -> bool {
    actix_web::http::header::HeaderValue::from_str(v).is_ok()
}

/// The fuzz fixtures' SAML certificate (the fuzz crate is not in this workspace).
fn latch_fuzz_cert() -> String {
    std::fs::read_to_string(crate::fuzz_seeds::fuzz_dir().join("fixtures/saml-idp.pem")).unwrap()
}

async fn no_handler_panics_on_fuzz_inputs(test: &str, backends: Backends) {
    let Some(latch) = start(test, backends).await else {
        return;
    };
    let keys = Keys::load();
    let keys_url = format!("{}/keys", key_server(keys.jwks()).await);
    let app = test::init_service(latch_server::app::app(latch.state.clone())).await;
    let mut rng = Rng(RNG_SEED);
    let mut jti = 0u64;
    let mut sent = 0usize;

    // Sends one request; fails the test on a panic, a 5xx, or a 4xx without a body.
    macro_rules! send {
        ($req:expr, $what:expr) => {{
            let r: Req = $req;
            let mut t = test::TestRequest::default()
                .method(r.method.parse().unwrap())
                .uri(&r.uri)
                .set_payload(r.body.clone());
            for (k, v) in &r.headers {
                t = t.insert_header((*k, v.as_str()));
            }
            let res = AssertUnwindSafe(test::call_service(&app, t.to_request()))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} {} panicked on {}: {:?}",
                        r.method,
                        r.uri,
                        $what,
                        String::from_utf8_lossy(&r.body)
                    )
                });
            let status = res.status();
            let body = test::read_body(res).await;
            assert!(
                !status.is_server_error(),
                "{} {} answered {status} to {}: {:?} → {:?}",
                r.method,
                r.uri,
                $what,
                String::from_utf8_lossy(&r.body),
                String::from_utf8_lossy(&body)
            );
            if status.is_client_error() {
                assert!(
                    !body.is_empty(),
                    "{} {}: a {status} without a body",
                    r.method,
                    r.uri
                );
            }
            sent += 1;
            (status, body)
        }};
    }
    macro_rules! api {
        ($method:expr, $path:expr, $body:expr) => {{
            let (status, body) = send!(
                Req::new($method, $path)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .json(serde_json::to_vec(&$body).unwrap()),
                "setup"
            );
            assert!(status.is_success(), "{} {}: {status}", $method, $path);
            serde_json::from_slice::<Value>(&body).unwrap()
        }};
    }

    // The app, the connections the fixtures name, and a user the seeds' subjects find.
    let client = api!(
        "POST",
        "/api/v2/clients",
        json!({"name": "App", "callbacks": ["https://app.example/cb"],
            "allowed_logout_urls": ["https://app.example/bye"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"]})
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let client_secret = client["client_secret"].as_str().unwrap().to_owned();
    let okta = api!(
        "POST",
        "/api/v2/connections",
        json!({"name": "okta", "strategy": "okta", "enabled_clients": [client_id],
            "options": {"domain": "idp.fuzz.example", "client_id": CLIENT_ID,
            "client_secret": "upstream-secret", "global_token_revocation_enabled": true,
            "global_token_revocation_jwt_iss": ISSUER, "jwks_uri": keys_url}})
    );
    api!(
        "POST",
        "/api/v2/connections",
        json!({"name": "oidc", "strategy": "oidc", "enabled_clients": [client_id],
            "options": {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": "s",
            "jwks_uri": keys_url}})
    );
    let cert = std::fs::read_to_string(fuzz_dir().join("fixtures/saml-idp.pem")).unwrap();
    api!(
        "POST",
        "/api/v2/connections",
        json!({"name": "saml", "strategy": "samlp", "enabled_clients": [client_id],
            "options": {"signInEndpoint": "https://idp.fuzz.example/sso", "signingCert": cert}})
    );
    let user = api!(
        "POST",
        "/api/v2/users",
        json!({"connection": "database", "email": "alice@example.com",
            "password": "Correct-Horse-9", "name": "Alice"})
    );
    let s = &latch.state;
    let okta_conn = s
        .store
        .get_connection(&latch_core::ConnectionId::new(okta["id"].as_str().unwrap()))
        .await
        .unwrap();
    let alice = s
        .store
        .find_user(&latch_core::UserId::new(user["user_id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let mut identity = latch_testkit::fixtures::identity(&alice, &okta_conn);
    identity.issuer = ISSUER.into();
    identity.subject = "00uALICE".into();
    s.store.insert_identity(&identity).await.unwrap();

    let gtr = "/oauth/global-token-revocation/connection/okta";
    let bcl = "/login/backchannel-logout/oidc";
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{client_id}:{client_secret}"))
    );
    let mut fresh_gtr_token = |keys: &Keys| {
        jti += 1;
        keys.sign(
            json!({"alg": "ES256", "kid": keys.kid(), "typ": "global-token-revocation+jwt"})
                .to_string()
                .as_bytes(),
            json!({"iss": ISSUER, "sub": CLIENT_ID, "aud": format!("{LATCH_ISSUER}{gtr}"),
                "iat": NOW, "exp": NOW + 300, "jti": format!("no-panic-{jti}")})
            .to_string()
            .as_bytes(),
        )
    };
    let iss_sub = json!({"subject": {"format": "iss_sub", "iss": ISSUER, "sub": "00uNOBODY"}})
        .to_string()
        .into_bytes();

    // GTR: the body behind a valid token, and the token in front of a valid body.
    for (what, body) in inputs("gtr_body", &mut rng, false) {
        let token = fresh_gtr_token(&keys);
        send!(
            Req::new("POST", gtr)
                .header("authorization", format!("Bearer {token}"))
                .json(body),
            what
        );
    }
    for (what, data) in inputs("gtr_token", &mut rng, true) {
        let Some(token) = keys.token_of(&data).filter(|t| sendable(t)) else {
            continue;
        };
        send!(
            Req::new("POST", gtr)
                .header("authorization", format!("Bearer {token}"))
                .json(iss_sub.clone()),
            what
        );
    }
    // Upstream back-channel logout: the token, and the form around it.
    for (what, data) in inputs("backchannel_logout_token", &mut rng, true) {
        let Some(token) = keys.token_of(&data) else {
            continue;
        };
        send!(
            Req::new("POST", bcl).form(form(&[("logout_token", &token)])),
            what
        );
    }
    for (what, body) in inputs("form_backchannel_logout", &mut rng, false) {
        send!(Req::new("POST", bcl).form(body), what);
    }
    // Tokens where Latch reads tokens: bearer (userinfo, management API), id_token_hint,
    // introspection.
    for target in ["jose_jwks", "jose_sealed"] {
        for (what, data) in inputs(target, &mut rng, target == "jose_jwks") {
            let token = if target == "jose_jwks" {
                // Odd modes are JWKS documents, not tokens (the fuzz target covers those).
                match data.split_first() {
                    Some((m, rest)) if m & 1 == 0 => String::from_utf8_lossy(rest).into_owned(),
                    _ => continue,
                }
            } else {
                String::from_utf8_lossy(&data).into_owned()
            };
            if sendable(&format!("Bearer {token}")) {
                let bearer = format!("Bearer {token}");
                send!(
                    Req::new("GET", "/userinfo").header("authorization", bearer.clone()),
                    what
                );
                send!(
                    Req::new("GET", "/api/v2/clients").header("authorization", bearer),
                    what
                );
            }
            let hint: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
            send!(
                Req::new("GET", format!("/oidc/logout?id_token_hint={hint}")),
                what
            );
            send!(
                Req::new("POST", "/oauth/introspect")
                    .header("authorization", basic.clone())
                    .form(form(&[("token", &token)])),
                what
            );
        }
    }
    // SAML: each Response against a live login transaction (its RelayState), and the raw form.
    let cb: String = url::form_urlencoded::byte_serialize(b"https://app.example/cb").collect();
    let authorize = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={cb}&scope=openid&state=s&connection=saml"
    );
    for (what, data) in inputs("saml_response", &mut rng, true) {
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let posted = if mode & 1 == 0 {
            STANDARD.encode(rest)
        } else {
            String::from_utf8_lossy(rest).into_owned()
        };
        let res =
            test::call_service(&app, test::TestRequest::get().uri(&authorize).to_request()).await;
        assert!(res.status().is_redirection(), "{}", res.status());
        let to = res
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let relay = url::Url::parse(&to)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "RelayState")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        send!(
            Req::new("POST", "/login/callback?connection=saml")
                .form(form(&[("SAMLResponse", &posted), ("RelayState", &relay)])),
            what
        );
    }
    for (what, body) in inputs("form_saml_callback", &mut rng, false) {
        send!(
            Req::new("POST", "/login/callback?connection=saml").form(body),
            what
        );
    }
    // A SAML app's messages at Latch's IdP endpoints, unsigned (no `signingCert`: every message
    // is read) and signed (a certificate: every signature checked), in each binding.
    for cert in [None, Some(latch_fuzz_cert())] {
        let mut addon =
            json!({"audience": "urn:fuzz:sp", "logout": {"callback": "https://app.example/slo"}});
        if let Some(c) = cert {
            addon["signingCert"] = json!(c);
        }
        let app = api!(
            "POST",
            "/api/v2/clients",
            json!({"name": "SAML app", "callbacks": ["https://app.example/acs"],
                "addons": {"samlp": addon}})
        );
        let id = app["client_id"].as_str().unwrap().to_owned();
        for (what, data) in inputs("saml_app_message", &mut rng, true) {
            let Some((&mode, rest)) = data.split_first() else {
                continue;
            };
            let text = String::from_utf8_lossy(rest).into_owned();
            match mode % 3 {
                0 => {
                    for path in [format!("/samlp/{id}"), format!("/samlp/{id}/logout")] {
                        let uri = format!("{path}?{}", text.replace(['#', ' '], ""));
                        if uri.parse::<actix_web::http::Uri>().is_ok() {
                            send!(Req::new("GET", &uri), what.clone());
                        }
                    }
                }
                1 => {
                    for path in [format!("/samlp/{id}"), format!("/samlp/{id}/logout")] {
                        send!(
                            Req::new("POST", &path).form(form(&[("SAMLRequest", &text)])),
                            what.clone()
                        );
                    }
                }
                _ => {
                    let b64 = STANDARD.encode(rest);
                    let slo = format!("/samlp/{id}/logout");
                    for field in ["SAMLRequest", "SAMLResponse"] {
                        send!(
                            Req::new("POST", &slo)
                                .form(form(&[(field, &b64), ("RelayState", "r")])),
                            what.clone()
                        );
                    }
                }
            }
        }
    }
    // An upstream IdP's logout messages at the SAML connection's SingleLogoutService, and the
    // way back from a federated logout, in each binding.
    for (what, data) in inputs("saml_app_message", &mut rng, true) {
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(rest).into_owned();
        let slo = "/logout?connection=saml";
        match mode % 3 {
            0 => {
                let uri = format!("{slo}&{}", text.replace(['#', ' '], ""));
                if uri.parse::<actix_web::http::Uri>().is_ok() {
                    send!(Req::new("GET", &uri), what.clone());
                }
            }
            1 => {
                send!(
                    Req::new("POST", slo).form(form(&[("SAMLRequest", &text)])),
                    what.clone()
                );
            }
            _ => {
                let b64 = STANDARD.encode(rest);
                for field in ["SAMLRequest", "SAMLResponse"] {
                    send!(
                        Req::new("POST", slo).form(form(&[(field, &b64), ("RelayState", "r")])),
                        what.clone()
                    );
                }
            }
        }
    }
    // What an admin pastes into a SAML connection: saved, then read when a sign-in starts.
    let metadata = inputs("saml_idp_metadata", &mut rng, false)
        .into_iter()
        .map(|(what, data)| (what, json!({"metadataXml": String::from_utf8_lossy(&data)})));
    let certificates =
        inputs("saml_certificate", &mut rng, false)
            .into_iter()
            .map(|(what, data)| {
                let pem = String::from_utf8_lossy(&data).into_owned();
                (
                    what,
                    json!({"signInEndpoint": "https://idp.fuzz.example/sso", "signingCert": pem}),
                )
            });
    for (i, (what, options)) in metadata.chain(certificates).enumerate() {
        let name = format!("saml-{i}");
        let (status, _) = send!(
            Req::new("POST", "/api/v2/connections")
                .header("authorization", format!("Bearer {TOKEN}"))
                .json(
                    serde_json::to_vec(&json!({"name": name, "strategy": "samlp",
                        "enabled_clients": [client_id], "options": options}))
                    .unwrap()
                ),
            what.clone()
        );
        if status.is_success() {
            // A connection whose IdP settings cannot be used answers the sign-in with the
            // "Sign-in unavailable" page (502), as for an IdP that cannot be reached.
            let start = authorize.replace("connection=saml", &format!("connection={name}"));
            let res = AssertUnwindSafe(test::call_service(
                &app,
                test::TestRequest::get().uri(&start).to_request(),
            ))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| panic!("GET {start} panicked on {what}"));
            let status = res.status();
            let body = test::read_body(res).await;
            assert!(
                status.is_redirection()
                    || ((status.is_client_error() || status == 502) && !body.is_empty()),
                "GET {start} answered {status} to {what}"
            );
            sent += 1;
        }
    }
    // The forms.
    for (target, paths) in [
        ("form_login", &["/login"][..]),
        ("form_token", &["/oauth/token"][..]),
        ("form_logout", &["/oidc/logout"][..]),
        ("form_revoke", &["/oauth/revoke", "/oauth/introspect"][..]),
    ] {
        for (what, body) in inputs(target, &mut rng, false) {
            for path in paths {
                send!(Req::new("POST", *path).form(body.clone()), what.clone());
            }
        }
    }
    assert!(sent > 600, "only {sent} requests sent");
}

#[actix_web::test]
async fn no_handler_panics_on_fuzz_inputs_embedded() {
    no_handler_panics_on_fuzz_inputs(
        "no_handler_panics_on_fuzz_inputs_embedded",
        Backends::Embedded,
    )
    .await;
}

#[actix_web::test]
async fn no_handler_panics_on_fuzz_inputs_postgres_redis() {
    no_handler_panics_on_fuzz_inputs(
        "no_handler_panics_on_fuzz_inputs_postgres_redis",
        Backends::Production,
    )
    .await;
}
