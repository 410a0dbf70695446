//! Helpers shared by the bench programs, each of which includes this file with `mod common;`
//! (cargo does not take a file in a subdirectory of `benches/` for a bench target of its own).

// Each bench uses only some of these helpers; the rest would be dead code in that bench.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use latch_core::model::SigningAlg;
use latch_jose::keys::{Signer, sign_jws};
use latch_testkit::env::{PgSchema, TempDir, unique};
use serde_json::{Value, json};

/// The admin token the in-process benches give Latch (`LATCH_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// The `LATCH_SECRET_KEY` the benches give Latch on PostgreSQL + Redis (32 bytes, base64).
pub const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A listener on a free loopback port.
pub fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind")
}

/// A loopback port that was free a moment ago (for a child process to bind).
pub fn free_port() -> u16 {
    free_listener().local_addr().expect("addr").port()
}

/// The benches' Tokio runtime: two worker threads, as many as the machine they run on has cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// PostgreSQL's and Redis's URLs: `LATCH_BENCH_DATABASE_URL` / `LATCH_BENCH_REDIS_URL`, else
/// `LATCH_TEST_DATABASE_URL` / `LATCH_TEST_REDIS_URL`.
pub fn database_and_redis() -> (Option<String>, Option<String>) {
    let var = |bench: &str, test: &str| std::env::var(bench).or_else(|_| std::env::var(test)).ok();
    (
        var("LATCH_BENCH_DATABASE_URL", "LATCH_TEST_DATABASE_URL"),
        var("LATCH_BENCH_REDIS_URL", "LATCH_TEST_REDIS_URL"),
    )
}

/// Runs `run` on the embedded default (`sqlite+embedded`: a data directory and the admin
/// token), then on PostgreSQL + Redis (`postgres+redis`: a fresh schema and Redis prefix, the
/// secret key) when [`database_and_redis`] has both, else says it skipped that.
pub async fn each_backend<F, Fut>(mut run: F)
where
    F: FnMut(&'static str, Vec<(String, String)>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = TempDir::new();
    let env = vec![
        (
            "LATCH_DATA_DIR".to_owned(),
            dir.path().to_string_lossy().into_owned(),
        ),
        ("LATCH_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
    ];
    run("sqlite+embedded", env).await;
    match database_and_redis() {
        (Some(db), Some(redis)) => {
            let schema = tokio::task::spawn_blocking(move || PgSchema::create(&db))
                .await
                .expect("schema");
            let dir2 = TempDir::new();
            let env = vec![
                (
                    "LATCH_DATA_DIR".to_owned(),
                    dir2.path().to_string_lossy().into_owned(),
                ),
                ("LATCH_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
                ("LATCH_DATABASE_URL".to_owned(), schema.url.clone()),
                ("LATCH_REDIS_URL".to_owned(), redis),
                (
                    "LATCH_REDIS_PREFIX".to_owned(),
                    format!("latch-bench:{}:", unique()),
                ),
                ("LATCH_SECRET_KEY".to_owned(), SECRET_KEY.to_owned()),
            ];
            run("postgres+redis", env).await;
            drop(schema);
        }
        _ => println!(
            "SKIPPED postgres+redis: set LATCH_BENCH_DATABASE_URL and LATCH_BENCH_REDIS_URL (or the LATCH_TEST_* ones)"
        ),
    }
}

/// Latch in this process, started from `env`, behind a loopback HTTP server with 2 workers:
/// its state, its base URL and the server's handle (to stop it).
pub async fn serve(
    env: &[(String, String)],
) -> (
    latch_server::app::AppState,
    String,
    actix_web::dev::ServerHandle,
) {
    let config = latch_server::config::Config::from_sources(None, env).expect("config");
    let state = latch_server::bootstrap::start(config)
        .await
        .expect("start")
        .state;
    let s2 = state.clone();
    let server = HttpServer::new(move || latch_server::app::app(s2.clone()))
        .workers(2)
        .bind("127.0.0.1:0")
        .expect("bind");
    let addr = server.addrs()[0];
    let running = server.run();
    let handle = running.handle();
    tokio::spawn(running);
    (state, format!("http://{addr}"), handle)
}

/// A management API call with the admin `token`; panics on an error status (setup only).
pub async fn api(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Value {
    let res = http
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("management API");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The cookies a response sets, as a `Cookie` request header (`name=value; …`); a cookie set
/// to an empty value (a removal) is left out.
pub fn cookies(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .filter(|c| c.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a redirect points; panics when the response is not one.
pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_else(|| panic!("no redirect: {}", res.status()))
        .to_owned()
}

/// A URL's query parameters.
pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The app's code exchange, as an app does it: the code in `back` (where Latch sent the browser,
/// which must be at `callback`) redeemed at `/oauth/token` with HTTP Basic client
/// authentication; panics unless Latch answers 200.
pub async fn redeem(
    http: &reqwest::Client,
    base: &str,
    (cid, secret): (&str, &str),
    callback: &str,
    back: &str,
) {
    assert!(back.starts_with(callback), "not back at the app: {back}");
    let code = query(back).remove("code").expect("code");
    let res = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(cid, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", callback),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), 200, "code exchange");
}

/// A loopback upstream OpenID provider (an OIDC IdP, or an Okta org): discovery, JWKS, and a
/// token endpoint that answers a code with the ID token minted for it ([`Op::code_for`]).
pub struct Op {
    pub base: String,
    pub codes: Arc<Mutex<HashMap<String, String>>>,
    pub key: Arc<Signer>,
}

impl Op {
    /// Starts one with an RS256 key of its own. Its discovery document holds its `issuer` (its
    /// base URL), each of `endpoints` (a member, such as `token_endpoint`, and a path under the
    /// base URL, in that order), and that it does the code flow with public subjects and RS256
    /// ID tokens; it serves JWKS at the `jwks_uri` path and the token endpoint at the
    /// `token_endpoint` one. A token response holds `access_token` `upstream-at`, `token_type`
    /// `Bearer`, the members of `token_extra` and the `id_token`.
    pub fn start(endpoints: &[(&str, &str)], token_extra: Value) -> Self {
        let listener = free_listener();
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let key = Arc::new(Signer::generate(SigningAlg::RS256).expect("key"));
        let codes: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let mut discovery = serde_json::Map::new();
        discovery.insert("issuer".into(), json!(base));
        for (member, path) in endpoints {
            discovery.insert((*member).into(), json!(format!("{base}{path}")));
        }
        discovery.insert("response_types_supported".into(), json!(["code"]));
        discovery.insert("subject_types_supported".into(), json!(["public"]));
        discovery.insert(
            "id_token_signing_alg_values_supported".into(),
            json!(["RS256"]),
        );
        let path = |member: &str| {
            let (_, path) = endpoints
                .iter()
                .find(|(m, _)| *m == member)
                .unwrap_or_else(|| panic!("no {member}"));
            (*path).to_owned()
        };
        let (jwks_path, token_path) = (path("jwks_uri"), path("token_endpoint"));
        let discovery = Value::Object(discovery);
        let jwks = json!({"keys": [key.public_jwk(SigningAlg::RS256)]});
        let c = codes.clone();
        let server = HttpServer::new(move || {
            let (discovery, jwks, codes) = (discovery.clone(), jwks.clone(), c.clone());
            let token_extra = token_extra.clone();
            App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let d = discovery.clone();
                        async move { HttpResponse::Ok().json(d) }
                    }),
                )
                .route(
                    &jwks_path,
                    web::get().to(move || {
                        let j = jwks.clone();
                        async move { HttpResponse::Ok().json(j) }
                    }),
                )
                .route(
                    &token_path,
                    web::post().to(move |form: web::Form<HashMap<String, String>>| {
                        let (codes, token_extra) = (codes.clone(), token_extra.clone());
                        async move {
                            let token = form
                                .get("code")
                                .and_then(|c| codes.lock().expect("codes").remove(c));
                            match token {
                                Some(t) => {
                                    let mut body =
                                        json!({"access_token": "upstream-at", "token_type": "Bearer"});
                                    if let (Some(b), Value::Object(extra)) =
                                        (body.as_object_mut(), token_extra)
                                    {
                                        b.extend(extra);
                                        b.insert("id_token".into(), Value::String(t));
                                    }
                                    HttpResponse::Ok().json(body)
                                }
                                None => HttpResponse::BadRequest()
                                    .json(json!({"error": "invalid_grant"})),
                            }
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Op { base, codes, key }
    }

    /// An ID token with `claims`, signed with the provider's key (RS256, its thumbprint for
    /// `kid`), kept under a fresh code of `code_len` characters for the token endpoint to give;
    /// returns the code.
    pub fn code_for(&self, claims: &Value, code_len: usize) -> String {
        let token = sign_jws(
            &self.key,
            SigningAlg::RS256,
            &self.key.thumbprint(),
            "JWT",
            claims,
        )
        .expect("sign");
        let code = latch_jose::random_token(code_len);
        self.codes
            .lock()
            .expect("codes")
            .insert(code.clone(), token);
        code
    }
}

/// The body of one HTTP/1.1 request read off `sock` (`None` when the peer closed first).
pub async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    latch_testkit::http::read_request(sock)
        .await
        .map(|r| r.body)
}

/// A loopback "Okta org" for Global Token Revocation, holding `key`'s public half
/// (`latch_testkit::http::okta_org`). Returns its base URL.
pub async fn okta_org(key: &Signer) -> String {
    latch_testkit::http::okta_org(key.public_jwk(SigningAlg::RS256)).await
}
