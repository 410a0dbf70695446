//! Universal Logout figures: Global Token Revocation requests/s and p50/p99 for users with 1 and
//! with 20 sessions, and the back-channel fan-out of 10,000 logout tokens to 100 local receiver
//! endpoints (time until all are delivered), each beside the raw signing/verification rate of
//! the algorithm measured in the same run; and the logout page of a session 5 apps of mixed
//! kinds joined (RP-initiated logout to the rendered page, median and p99; target ≤ 10 ms p99);
//! and SCIM (issue 16): bulk provisioning (10,000 `POST /Users`, target ≥ 1,000/s) and Okta's
//! deactivation `PATCH` of users with 5 sessions in 5 apps (target: within 20% of the 1-session
//! GTR rate at the same caller count).
//!
//! `cargo xtask bench` runs it on the embedded default, and on PostgreSQL + Redis when
//! `LATCH_BENCH_DATABASE_URL` / `LATCH_BENCH_REDIS_URL` (or the LATCH_TEST_* ones) are set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use latch_core::model::*;
use latch_core::session::{SESSION_COOKIE, SamlParticipant, SessionClient};
use latch_core::*;
use latch_jose::keys::{Signer, sign_jws};
use latch_server::AppState;
use latch_testkit::env::unique;
use latch_testkit::fixtures;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

/// Latch runs in this process: the same allocator as the `latch` binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 32;

/// A tiny HTTP server answering every request with `body` (or 200 and counting).
async fn serve(body: Option<String>, count: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (body, count) = (body.clone(), count.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    // Keep-alive: one response per request on the connection.
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let b = body.clone().unwrap_or_default();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// With `LATCH_BENCH_ONLY` set (profiling one part), a line a profiler started from outside
/// can wait for.
fn marker(line: &str) {
    if std::env::var_os("LATCH_BENCH_ONLY").is_some() {
        println!("{line}");
    }
}

fn rate(f: impl Fn() + Send + Sync + 'static, threads: usize, dur: Duration) -> f64 {
    let f = Arc::new(f);
    let n = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (f, n, stop) = (f.clone(), n.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f();
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().expect("join");
    }
    n.load(Ordering::Relaxed) as f64 / dur.as_secs_f64()
}

/// GTR of `users` users with `sessions_per_user` sessions each, `callers` callers: prints and
/// returns the requests/s. With `apps` empty the sessions are joined by one app without a
/// back-channel logout URL (nothing to deliver); else session `i` is joined by `apps[i]`.
async fn gtr(
    label: &str,
    state: &AppState,
    base: &str,
    sessions_per_user: usize,
    users: usize,
    callers: usize,
    apps: &[ClientId],
) -> f64 {
    // The "Okta org": discovery and JWKS on loopback.
    let key = Arc::new(Signer::generate(SigningAlg::RS256).expect("key"));
    // The "Okta org": one loopback server answering every path with a document that is both
    // its discovery (issuer, jwks_uri) and its JWKS (keys).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let org = format!("http://{}", listener.local_addr().expect("addr"));
    let doc = json!({"issuer": org, "jwks_uri": format!("{org}/keys"), "keys": [key.public_jwk(SigningAlg::RS256)]}).to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}", doc.len()).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let now = state.clock.now();
    let name = ConnectionName::new(format!("okta-{}", unique()));
    let mut options = serde_json::Map::new();
    options.insert("domain".into(), json!(org));
    options.insert("client_id".into(), json!("0oaBENCH"));
    options.insert("global_token_revocation_enabled".into(), json!(true));
    let conn = Connection {
        id: ConnectionId::new(format!("con_{}", unique())),
        name: name.clone(),
        display_name: None,
        strategy: Strategy::Okta,
        options,
        secrets: [("client_secret".to_owned(), SecretString::new("x"))]
            .into_iter()
            .collect(),
        enabled_clients: vec![],
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .insert_connection(&conn)
        .await
        .expect("connection");
    let client = fixtures::client();
    let mut client = client;
    client.oidc_logout.backchannel_logout_urls.clear();
    state.store.insert_client(&client).await.expect("client");
    let mut subjects = Vec::new();
    for i in 0..users {
        let user = fixtures::user();
        state.store.insert_user(&user).await.expect("user");
        let mut id = fixtures::identity(&user, &conn);
        id.issuer = org.clone();
        id.subject = format!("00u{i}");
        state.store.insert_identity(&id).await.expect("identity");
        for k in 0..sessions_per_user {
            let mut s = fixtures::session(&user.user_id);
            s.connection = name.clone();
            s.clients = vec![SessionClient {
                client_id: apps
                    .get(k % apps.len().max(1))
                    .unwrap_or(&client.client_id)
                    .clone(),
                sid: s.sid.clone(),
                joined_at: now,
                saml: None,
            }];
            state.sessions.insert_session(&s).await.expect("session");
        }
        subjects.push(id.subject);
    }
    // Tokens signed ahead of time: the figure is Latch's work, not the caller's.
    let endpoint = latch_gtr::endpoint_url(state.config.issuer_str(), &name);
    let iat = time::OffsetDateTime::now_utc().unix_timestamp();
    let work: Vec<(String, String)> = subjects
        .iter()
        .map(|sub| {
            let claims = json!({"iss": org, "sub": "0oaBENCH", "aud": endpoint, "iat": iat, "exp": iat + 300, "jti": latch_jose::random_token(16)});
            let t = sign_jws(&key, SigningAlg::RS256, &key.thumbprint(), "global-token-revocation+jwt", &claims).expect("sign");
            (t, json!({"subject": {"format": "iss_sub", "iss": org, "sub": sub}}).to_string())
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(callers)
        .build()
        .expect("client");
    let url = format!("{base}/oauth/global-token-revocation/connection/{name}");
    // Warm-up (a tenth of the calls, not measured): the issuer's JWKS is fetched and cached, the
    // database pool opens its connections, the allocator and caches settle.
    let mut work = work;
    let measured = work.split_off(work.len() / 10);
    drive(&http, &url, work, callers).await;
    let n = measured.len();
    marker(&format!("{label:<16} GTR starting ({callers} callers)"));
    let (hist, bad, secs) = drive(&http, &url, measured, callers).await;
    let per_sec = n as f64 / secs;
    println!(
        "{label:<16} GTR, {sessions_per_user:>2} session(s)/user{}, {callers:>2} callers: {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({n} users after {} warm-up{})",
        if apps.is_empty() {
            String::new()
        } else {
            format!(
                " in {} apps with back-channel logout",
                apps.len().min(sessions_per_user)
            )
        },
        per_sec,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        users - n,
        if bad > 0 {
            format!(", {bad} not 204")
        } else {
            String::new()
        }
    );
    per_sec
}

/// `callers` concurrent callers work through `work` (token, body) against the GTR endpoint:
/// latencies, the calls not answered 204, and the seconds it took.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    work: Vec<(String, String)>,
    callers: usize,
) -> (Histogram<u64>, u64, f64) {
    let (http, url) = (http.clone(), url.to_owned());
    drive_with(work, callers, 204, move |(token, body)| {
        http.post(&url)
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
    })
    .await
}

/// `callers` concurrent callers work through `work`, each item made a request by `request`
/// (sent, its whole answer read): latencies, the calls not answered `expect`, and the seconds it
/// took.
async fn drive_with<W: Send + 'static>(
    work: Vec<W>,
    callers: usize,
    expect: u16,
    request: impl Fn(W) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> (Histogram<u64>, u64, f64) {
    let work = Arc::new(std::sync::Mutex::new(work));
    let request = Arc::new(request);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (work, request) = (work.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("hist");
            let mut bad = 0u64;
            loop {
                let Some(item) = work.lock().expect("lock").pop() else {
                    break;
                };
                let t0 = Instant::now();
                let status = match request(item).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        // The whole answer: the connection goes back to the pool for the next.
                        let _ = r.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                if status != expect {
                    bad += 1;
                }
                let _ = h.record(t0.elapsed().as_micros() as u64);
            }
            (h, bad)
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("hist");
    let mut bad = 0;
    for t in tasks {
        let (h, b) = t.await.expect("task");
        hist.add(h).expect("merge");
        bad += b;
    }
    (hist, bad, start.elapsed().as_secs_f64())
}

async fn fanout(label: &str, state: &AppState) {
    // 100 receivers, 100 clients (one each), 100 users whose session every client joined:
    // ending the 100 users' sessions records 10,000 deliveries.
    let received = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..100 {
        let url = serve(None, received.clone()).await;
        let mut c = fixtures::client();
        c.oidc_logout.backchannel_logout_urls =
            vec![url::Url::parse(&format!("{url}/bc")).expect("url")];
        c.signing_alg = SigningAlg::RS256;
        state.store.insert_client(&c).await.expect("client");
        clients.push(c.client_id);
    }
    let now = state.clock.now();
    let mut users = Vec::new();
    for _ in 0..100 {
        let u = fixtures::user();
        state.store.insert_user(&u).await.expect("user");
        let mut s = fixtures::session(&u.user_id);
        s.clients = clients
            .iter()
            .map(|c| SessionClient {
                client_id: c.clone(),
                sid: s.sid.clone(),
                joined_at: now,
                saml: None,
            })
            .collect();
        state.sessions.insert_session(&s).await.expect("session");
        users.push(u.user_id);
    }
    // The signing limit, measured before the fan-out so it does not compete with it.
    let signs = {
        let st = state.clone();
        tokio::task::spawn_blocking(move || {
            let claims = json!({"iss": "x", "aud": "y", "iat": 1, "exp": 2, "jti": "z", "sub": "s", "events": {}});
            rate(move || { st.keys.sign(SigningAlg::RS256, "logout+jwt", &claims).expect("sign"); }, 2, Duration::from_secs(2))
        })
        .await
        .expect("rate")
    };
    marker(&format!("{label:<16} fan-out starting"));
    let workers = latch_server::app::spawn_workers(state);
    let logout = state.logout();
    let start = Instant::now();
    for u in &users {
        // As the GTR and admin paths do: this instance's workers send them at once.
        logout
            .end(
                latch_core::logout::Target::User(u.clone()),
                latch_core::logout::TokenPolicy::AllOfUser,
                LogoutInitiator::SessionRevoked,
                latch_core::logout::Urgency::Background,
            )
            .await
            .expect("logout");
    }
    let recorded = start.elapsed();
    while received.load(Ordering::Relaxed) < 10_000 && start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = start.elapsed();
    for w in workers {
        w.abort();
    }
    let n = received.load(Ordering::Relaxed);
    let limit = Duration::from_secs_f64(10_000.0 / signs);
    println!(
        "{label:<16} fan-out: {n} logout tokens to 100 endpoints in {:.2} s ({:.0}/s; recorded in {:.2} s) | RS256 {:.0} signs/s (2 threads) -> signing limit {:.2} s | {:.2}x the limit",
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64(),
        recorded.as_secs_f64(),
        signs,
        limit.as_secs_f64(),
        all.as_secs_f64() / limit.as_secs_f64()
    );
}

/// Sessions the logout page is measured over, after `PAGE_WARMUP` unmeasured ones.
const PAGE_SESSIONS: usize = 1000;
const PAGE_WARMUP: usize = 50;

/// RP-initiated logout of a session 5 apps joined: 2 OpenID Connect apps with front-channel
/// logout URLs, 1 with a back-channel logout URL (a loopback receiver answering 200 at once), 2
/// SAML apps with Single Logout (one HTTP-Redirect, one HTTP-POST binding). The back-channel app
/// signs the user out at `/oidc/logout` with an `id_token_hint` and a `post_logout_redirect_uri`;
/// the time is from the request to the whole 200 logout page (its back-channel logout delivered
/// first, as for every browser-facing logout; the page carries 2 front-channel frames and 2
/// signed LogoutRequests, whose loads are the browser's and not fetched here). One logout at a
/// time, each on its own session.
async fn page(label: &str, state: &AppState, base: &str) {
    let received = Arc::new(AtomicU64::new(0));
    let receiver = serve(None, received.clone()).await;
    let plain = |c: &mut Client| c.oidc_logout.backchannel_logout_urls.clear();
    // Frame and SLO URLs are never loaded (no browser): distinct loopback origins.
    let mut front = Vec::new();
    for i in 1..=2 {
        let mut c = fixtures::client();
        plain(&mut c);
        c.oidc_logout.frontchannel_logout_url =
            Some(url::Url::parse(&format!("http://127.0.0.1:910{i}/front-channel")).expect("url"));
        c.oidc_logout.frontchannel_logout_session_required = true;
        state.store.insert_client(&c).await.expect("client");
        front.push(c);
    }
    let mut back = fixtures::client();
    back.oidc_logout.backchannel_logout_urls =
        vec![url::Url::parse(&format!("{receiver}/backchannel")).expect("url")];
    back.signing_alg = SigningAlg::RS256;
    state.store.insert_client(&back).await.expect("client");
    let mut saml = Vec::new();
    for (i, binding) in [
        model::saml_binding::HTTP_REDIRECT,
        model::saml_binding::HTTP_POST,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = fixtures::client();
        plain(&mut c);
        let mut addon = SamlpAddon::new(format!("urn:bench:sp{i}"));
        addon.logout.callback =
            Some(url::Url::parse(&format!("http://127.0.0.1:920{i}/slo")).expect("url"));
        addon.binding = binding.to_owned();
        c.addons.samlp = Some(addon);
        state.store.insert_client(&c).await.expect("client");
        saml.push(c);
    }
    // The sessions, as the sign-in flows leave them: every app joined, the SAML ones with the
    // NameID and SessionIndex their Responses carried.
    let redirect = back.allowed_logout_urls[0].to_string();
    let now = state.clock.now();
    let mut work = Vec::new();
    for _ in 0..PAGE_WARMUP + PAGE_SESSIONS {
        let user = fixtures::user();
        state.store.insert_user(&user).await.expect("user");
        let secret = latch_jose::random_token(32);
        let mut s = fixtures::session(&user.user_id);
        s.id = SessionSecret::new(secret.clone()).id();
        let oidc = |c: &Client| SessionClient::oidc(c.client_id.clone(), s.sid.clone(), now);
        let mut clients: Vec<SessionClient> = front.iter().chain([&back]).map(oidc).collect();
        clients.extend(saml.iter().map(|c| SessionClient {
            saml: Some(SamlParticipant {
                name_id: user.user_id.as_str().to_owned(),
                name_id_format: model::name_id_format::UNSPECIFIED.to_owned(),
                session_index: latch_saml::idp::new_id(),
            }),
            ..oidc(c)
        }));
        s.clients = clients;
        state.sessions.insert_session(&s).await.expect("session");
        // The ID token the back-channel app got at sign-in.
        let iat = now.unix_timestamp();
        let id_token = state
            .keys
            .sign(
                SigningAlg::RS256,
                "JWT",
                &json!({"iss": state.config.issuer_str(), "sub": user.user_id, "aud": back.client_id,
                        "iat": iat, "exp": iat + 3600, "auth_time": iat, "sid": s.sid}),
            )
            .expect("id token");
        let url = url::Url::parse_with_params(
            &format!("{base}/oidc/logout"),
            [
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", redirect.as_str()),
                ("state", "s"),
            ],
        )
        .expect("url");
        work.push((url, format!("{SESSION_COOKIE}={secret}")));
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let measured = work.split_off(PAGE_WARMUP);
    let logout = |(url, cookie): (url::Url, String)| {
        let http = http.clone();
        async move {
            let t0 = Instant::now();
            let res = http
                .get(url)
                .header("Cookie", cookie)
                .send()
                .await
                .expect("logout");
            let status = res.status();
            let html = res.text().await.expect("page");
            let took = t0.elapsed();
            assert_eq!(status, 200, "{html}");
            // 2 front-channel frames, the Redirect-binding LogoutRequest's frame, the POST one.
            assert_eq!(html.matches("<iframe").count(), 4, "{html}");
            assert_eq!(html.matches("SAMLRequest").count(), 2, "{html}");
            took
        }
    };
    for w in work {
        logout(w).await;
    }
    marker(&format!("{label:<16} logout page starting"));
    let before = received.load(Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).expect("hist");
    let start = Instant::now();
    for w in measured {
        let _ = hist.record(logout(w).await.as_micros() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    // Each logout's back-channel token reached the receiver before its page was answered.
    assert_eq!(
        received.load(Ordering::Relaxed) - before,
        PAGE_SESSIONS as u64,
        "back-channel logouts"
    );
    let p99 = hist.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "{label:<16} logout page, 5 apps (2 front-channel, 1 back-channel, 2 SAML): {PAGE_SESSIONS} RP-initiated logouts, median {:.2} ms  p99 {p99:.2} ms  max {:.2} ms{} ({:.0}/s one at a time, after {PAGE_WARMUP} warm-up)",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        if p99 <= 10.0 {
            " (target p99 <= 10 ms: met)"
        } else {
            " (target p99 <= 10 ms: NOT met)"
        },
        PAGE_SESSIONS as f64 / secs,
    );
}

/// SCIM's media type, the core User schema and the PatchOp message schema.
const SCIM_JSON: &str = "application/scim+json";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Users bulk-provisioned (measured), after a tenth as many unmeasured.
const SCIM_POSTS: usize = 10_000;
/// Users deactivated per caller count (the first tenth unmeasured), each with
/// `SCIM_SESSIONS` sessions, one in each of as many apps.
const SCIM_PATCH_USERS: usize = 2_000;
const SCIM_SESSIONS: usize = 5;

/// SCIM on an `okta` connection, set up through the store port (not the management API): the
/// connection, its SCIM configuration (`user_id_attribute` `externalId`) and a bearer token
/// holding every scope (stored as its digest only); and the apps the users' sessions are in.
struct ScimSetup {
    conn: Connection,
    token: String,
    /// `{base}/scim/v2/connections/{connection_id}`.
    url: String,
    /// `SCIM_SESSIONS` apps (RS256), each with its own loopback back-channel receiver...
    apps: Vec<ClientId>,
    /// ...counting the logout tokens they all received.
    received: Arc<AtomicU64>,
}

async fn scim_setup(state: &AppState, base: &str) -> ScimSetup {
    let now = state.clock.now();
    let mut options = serde_json::Map::new();
    options.insert("domain".into(), json!("bench.okta.example"));
    options.insert("client_id".into(), json!("0oaSCIMBENCH"));
    let conn = Connection {
        id: ConnectionId::new(format!("con_{}", unique())),
        name: ConnectionName::new(format!("okta-scim-{}", unique())),
        display_name: None,
        strategy: Strategy::Okta,
        options,
        secrets: [("client_secret".to_owned(), SecretString::new("x"))]
            .into_iter()
            .collect(),
        enabled_clients: vec![],
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .insert_connection(&conn)
        .await
        .expect("connection");
    state
        .store
        .put_scim_config(&ScimConfig {
            connection_id: conn.id.clone(),
            user_id_attribute: DEFAULT_SCIM_USER_ID_ATTRIBUTE.to_owned(),
            mapping: json!([]),
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("scim configuration");
    let token = latch_jose::random_token(32);
    state
        .store
        .insert_scim_token(&ScimToken {
            token_id: format!("tok_{}", unique()),
            connection_id: conn.id.clone(),
            digest: latch_jose::token_digest(&token),
            scopes: SCIM_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            created_at: now,
            valid_until: None,
        })
        .await
        .expect("scim token");
    let url = format!("{base}/scim/v2/connections/{}", conn.id);
    let received = Arc::new(AtomicU64::new(0));
    let mut apps = Vec::new();
    for _ in 0..SCIM_SESSIONS {
        let receiver = serve(None, received.clone()).await;
        let mut c = fixtures::client();
        c.oidc_logout.backchannel_logout_urls =
            vec![url::Url::parse(&format!("{receiver}/backchannel")).expect("url")];
        c.signing_alg = SigningAlg::RS256;
        state.store.insert_client(&c).await.expect("client");
        apps.push(c.client_id);
    }
    ScimSetup {
        conn,
        token,
        url,
        apps,
        received,
    }
}

/// The User resource Okta POSTs ("Create Users"): `userName` the login, `externalId` Okta's id
/// of the user.
fn okta_user(n: &str) -> Value {
    let email = format!("user.{n}@bench.example.com");
    json!({
        "schemas": [USER_SCHEMA],
        "userName": email,
        "externalId": format!("00u{n}"),
        "name": {"givenName": "Bench", "familyName": format!("User {n}")},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "active": true
    })
}

/// Bulk provisioning: `SCIM_POSTS` `POST /Users` of new users, 32 callers, after a tenth as
/// many unmeasured (token lookup, pools, caches). Counts the answers that are not 201 and the
/// users the connection then has.
async fn scim_provisioning(label: &str, state: &AppState, scim: &ScimSetup) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(TASKS)
        .build()
        .expect("client");
    let run = unique();
    let mut work: Vec<String> = (0..SCIM_POSTS + SCIM_POSTS / 10)
        .map(|i| okta_user(&format!("{run}x{i}")).to_string())
        .collect();
    let measured = work.split_off(SCIM_POSTS / 10);
    let post = {
        let (http, url, token) = (
            http.clone(),
            format!("{}/Users", scim.url),
            scim.token.clone(),
        );
        move |body: String| {
            http.post(&url)
                .bearer_auth(&token)
                .header("Content-Type", SCIM_JSON)
                .body(body)
        }
    };
    let (_, warm_bad, _) = drive_with(work, TASKS, 201, post.clone()).await;
    marker(&format!("{label:<16} SCIM provisioning starting"));
    let (hist, bad, secs) = drive_with(measured, TASKS, 201, post).await;
    let (_, total) = state
        .store
        .list_scim_users(&scim.conn.id, &ScimLookup::All, 0, 1)
        .await
        .expect("count");
    let per_sec = SCIM_POSTS as f64 / secs;
    println!(
        "{label:<16} SCIM POST /Users (bulk provisioning), {TASKS} callers: {per_sec:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({SCIM_POSTS} users after {} warm-up; {total} users in the connection{}) (target >= 1,000/s: {})",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        SCIM_POSTS / 10,
        if bad + warm_bad > 0 {
            format!(", {} not 201", bad + warm_bad)
        } else {
            String::new()
        },
        if per_sec >= 1000.0 { "met" } else { "NOT met" },
    );
}

/// `users` provisioned users of the connection (written through the store port as a SCIM
/// `POST` leaves them), each with `SCIM_SESSIONS` live sessions, session `i` joined by app `i`.
async fn scim_users_with_sessions(state: &AppState, scim: &ScimSetup, users: usize) -> Vec<UserId> {
    let now = state.clock.now();
    let run = unique();
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let n = format!("{run}p{i}");
        let Value::Object(mut resource) = okta_user(&n) else {
            unreachable!("an object")
        };
        resource.remove("schemas");
        let user_name = resource["userName"].as_str().expect("userName").to_owned();
        let external_id = resource["externalId"]
            .as_str()
            .expect("externalId")
            .to_owned();
        let user = User {
            user_id: UserId::new(format!(
                "okta|{}",
                latch_jose::random_alnum(24).to_lowercase()
            )),
            email: Some(user_name.clone()),
            email_verified: false,
            name: Some(format!("Bench User {n}")),
            given_name: Some("Bench".into()),
            family_name: Some(format!("User {n}")),
            nickname: None,
            picture: None,
            profile: serde_json::Map::new(),
            blocked: false,
            created_at: now,
            updated_at: now,
            last_login: None,
            logins_count: 0,
            app_metadata: serde_json::Map::new(),
        };
        let identity = Identity {
            user_id: user.user_id.clone(),
            connection_id: scim.conn.id.clone(),
            issuer: SCIM_ISSUER.to_owned(),
            subject: external_id.clone(),
            password_hash: None,
            profile: serde_json::Map::new(),
            created_at: now,
            updated_at: now,
        };
        let record = ScimUser {
            connection_id: scim.conn.id.clone(),
            user_id: user.user_id.clone(),
            user_name,
            external_id: Some(external_id),
            active: true,
            resource,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        state
            .store
            .insert_scim_user(&user, &identity, &record)
            .await
            .expect("scim user");
        for app in &scim.apps {
            let mut s = fixtures::session(&user.user_id);
            s.connection = scim.conn.name.clone();
            s.clients = vec![SessionClient {
                client_id: app.clone(),
                sid: s.sid.clone(),
                joined_at: now,
                saml: None,
            }];
            state.sessions.insert_session(&s).await.expect("session");
        }
        ids.push(user.user_id);
    }
    ids
}

/// Deactivation: Okta's `PATCH /Users/{id}` (`replace` `{"active": false}`, no `path`) of users
/// each holding `SCIM_SESSIONS` sessions in as many apps whose back-channel logout URLs are
/// loopback receivers (the workers deliver every logout token), `callers` callers; beside the
/// 1-session GTR rate `gtr_rate` and the rate `gtr_same` of GTRs of users with the same
/// sessions in the same apps, both measured just before at the same caller count.
async fn scim_deactivation(
    label: &str,
    state: &AppState,
    scim: &ScimSetup,
    callers: usize,
    gtr_rate: f64,
    gtr_same: f64,
) {
    let received = &*scim.received;
    let users = scim_users_with_sessions(state, scim, SCIM_PATCH_USERS).await;
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]})
        .to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(callers)
        .build()
        .expect("client");
    let patch = {
        let (http, base, token) = (http.clone(), scim.url.clone(), scim.token.clone());
        move |user: UserId| {
            http.patch(format!("{base}/Users/{user}"))
                .bearer_auth(&token)
                .header("Content-Type", SCIM_JSON)
                .body(body.clone())
        }
    };
    let before = received.load(Ordering::Relaxed);
    let mut work = users.clone();
    let measured = work.split_off(SCIM_PATCH_USERS / 10);
    let n = measured.len();
    let (_, warm_bad, _) = drive_with(work, callers, 200, patch.clone()).await;
    marker(&format!(
        "{label:<16} SCIM deactivation starting ({callers} callers)"
    ));
    let start = Instant::now();
    let (hist, bad, secs) = drive_with(measured, callers, 200, patch).await;
    // Every logout token delivered (the warm-up's too): the time from the measured start.
    delivered(received, before + (SCIM_PATCH_USERS * SCIM_SESSIONS) as u64).await;
    let delivered_in = start.elapsed().as_secs_f64();
    let tokens = received.load(Ordering::Relaxed) - before;
    // Every session ended.
    let now = state.clock.now();
    let mut left = 0;
    for u in &users {
        left += state
            .sessions
            .list_user_sessions(u, now)
            .await
            .expect("sessions")
            .len();
    }
    let per_sec = n as f64 / secs;
    let ratio = per_sec / gtr_rate;
    println!(
        "{label:<16} SCIM PATCH active:false, {SCIM_SESSIONS} sessions in {SCIM_SESSIONS} apps, {callers:>2} callers: {per_sec:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({n} users after {} warm-up{}) | GTR 1 session, {callers} callers: {gtr_rate:.0} req/s -> ratio {ratio:.2} (target >= 0.80: {}) | GTR of the same {SCIM_SESSIONS} sessions in {SCIM_SESSIONS} apps: {gtr_same:.0} req/s -> ratio {:.2} | {tokens} logout tokens delivered {:.2} s after the start{}",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        SCIM_PATCH_USERS - n,
        if bad + warm_bad > 0 {
            format!(", {} not 200", bad + warm_bad)
        } else {
            String::new()
        },
        if ratio >= 0.8 { "met" } else { "NOT met" },
        per_sec / gtr_same,
        delivered_in,
        if left > 0 {
            format!(", {left} sessions NOT ended")
        } else {
            String::new()
        },
    );
}

/// Waits (at most 2 minutes) until `received` reaches `expected`.
async fn delivered(received: &AtomicU64, expected: u64) {
    let start = Instant::now();
    while received.load(Ordering::Relaxed) < expected && start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Issue 16's SCIM figures: bulk provisioning, then deactivation at 32, 16 and 8 callers, each
/// beside a 1-session GTR run at the same caller count (the target's reference) and a GTR of
/// users with the same sessions in the same apps (the same logout, its tokens delivered too).
async fn scim(label: &str, state: &AppState, base: &str) {
    let setup = scim_setup(state, base).await;
    scim_provisioning(label, state, &setup).await;
    let received = &setup.received;
    // The deliveries are real: this instance's workers send them (idle during the 1-session
    // GTR runs, which record none).
    let workers = latch_server::app::spawn_workers(state);
    for callers in [32, 16, 8] {
        let gtr_rate = gtr(label, state, base, 1, 4000, callers, &[]).await;
        // The same logout as the PATCH's, started by a GTR: its logout tokens delivered
        // before the PATCH run starts.
        let before = received.load(Ordering::Relaxed);
        let gtr_same = gtr(
            label,
            state,
            base,
            SCIM_SESSIONS,
            SCIM_PATCH_USERS,
            callers,
            &setup.apps,
        )
        .await;
        delivered(received, before + (SCIM_PATCH_USERS * SCIM_SESSIONS) as u64).await;
        scim_deactivation(label, state, &setup, callers, gtr_rate, gtr_same).await;
    }
    for w in workers {
        w.abort();
    }
}

/// Verification rate of the GTR tokens' algorithm.
fn verification_rate(label: &str) {
    let key = Signer::generate(SigningAlg::RS256).expect("key");
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value::<Value>(key.public_jwk(SigningAlg::RS256))
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .expect("jwk");
    let token = sign_jws(
        &key,
        SigningAlg::RS256,
        &key.thumbprint(),
        "JWT",
        &json!({"exp": 9_999_999_999i64}),
    )
    .expect("sign");
    let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("dk");
    let verify = rate(
        move || {
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            v.validate_aud = false;
            let _ = jsonwebtoken::decode::<Value>(&token, &dk, &v).expect("verify");
        },
        2,
        Duration::from_secs(2),
    );
    println!("{label:<16} RS256 verification: {verify:.0}/s (2 threads)");
}

async fn run(label: &str, env: Vec<(String, String)>) {
    let (state, base, handle) = common::serve(&env).await;
    // LATCH_BENCH_ONLY=gtr, =fanout, =page or =scim runs one part (for profiling); unset runs all.
    let only = std::env::var("LATCH_BENCH_ONLY").unwrap_or_default();
    let wants = |part: &str| only.is_empty() || only == part;
    if wants("page") {
        page(label, &state, &base).await;
    }
    if wants("gtr") || wants("fanout") {
        verification_rate(label);
    }
    // Closed-loop load: latency is roughly callers / throughput, so the figures are given for
    // several caller counts.
    if wants("gtr") {
        for callers in [32, 16, 8] {
            gtr(label, &state, &base, 1, 4000, callers, &[]).await;
        }
        gtr(label, &state, &base, 20, 500, TASKS, &[]).await;
    }
    if wants("fanout") {
        fanout(label, &state).await;
    }
    if wants("scim") {
        scim(label, &state, &base).await;
    }
    handle.stop(true).await;
}

#[tokio::main]
async fn main() {
    common::each_backend(run).await;
}
