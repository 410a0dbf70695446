//! `GET /metrics` on the real `latch` binary (one process, so its counters are the scenario's
//! alone): the token, then a scrape before and after a scripted scenario, each read by the
//! reference parser of PyPI `prometheus-client` (peers/metrics_check.py, in `peers/.venv`), and
//! every pinned counter moved by exactly what the scenario did.
//!
//! The scenario: 2 failed and 3 successful database sign-ins of one user (three browsers, three
//! sessions, one app joined to each), a GTR refused for want of a token, then one accepted from a
//! loopback "Okta org", which ends the 3 sessions and has the app told: 3 back-channel logout
//! tokens and 1 GTR request, delivered to a loopback receiver.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latch_core::model::{Identity, SigningAlg};
use latch_core::store::UserRepo;
use latch_core::{ConnectionId, UserId};
use latch_jose::keys::{Signer, sign_jws};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peers::peers_dir;
use crate::process::{Latch, free_port};
use crate::support::{Backends, Remote, TOKEN, api, env_for, eventually};

const METRICS_TOKEN: &str = "metrics-scrape-token-0123456789";
const PASSWORD: &str = "Metrics-Pass-42";
const FAILED: usize = 2;
const SIGNED_IN: usize = 3;

/// One sample as the parser read it.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape as the parser read it.
#[derive(Debug)]
struct Scrape {
    /// Family name (counters without `_total`, as the parser names them) to its type.
    families: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` carrying every label of `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// The python of `peers/.venv`, or `None` (loudly) when the peers are not installed.
fn parser() -> Option<std::path::PathBuf> {
    let python = peers_dir().join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPING metrics tests: peers/.venv is missing; run scripts/install-peers.sh (cargo xtask test does)"
        );
        return None;
    }
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "prometheus-client is missing from peers/.venv: run scripts/install-peers.sh"
    );
    Some(python)
}

/// `text` read by peers/metrics_check.py; fails the test when the parser refuses it.
fn parse(python: &std::path::Path, text: &str) -> Scrape {
    let mut child = Command::new(python)
        .arg(peers_dir().join("metrics_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let families = v["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, f)| (k.clone(), f["type"].as_str().unwrap().to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect();
    Scrape { families, samples }
}

/// `GET /metrics` with `token` as the bearer token: the status, `WWW-Authenticate`, the body.
async fn get_metrics(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut r = http.get(format!("{base}/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status == 200 {
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    }
    (status, challenge, res.text().await.unwrap())
}

async fn scrape(python: &std::path::Path, http: &reqwest::Client, base: &str) -> Scrape {
    let (status, _, body) = get_metrics(http, base, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    parse(python, &body)
}

/// Posts the database sign-in form in a fresh browser; the status of the form's answer (302 to
/// the app on success, 200 with the form again on a wrong password).
async fn sign_in(base: &str, client_id: &str, callback: &str, email: &str, password: &str) -> u16 {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cb: String = url::form_urlencoded::byte_serialize(callback.as_bytes()).collect();
    let res = http
        .get(format!(
            "{base}/authorize?response_type=code&client_id={client_id}&redirect_uri={cb}&scope=openid&state=s"
        ))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    let html = res.text().await.unwrap();
    let start = html.find("name=\"tx\" value=\"").unwrap() + 17;
    let tx = &html[start..start + html[start..].find('"').unwrap()];
    http.post(format!("{base}/login"))
        .header("Cookie", cookies.join("; "))
        .form(&[("tx", tx), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A loopback "Okta org": its discovery document and JWKS.
async fn org(key: &Signer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let docs: Arc<Mutex<HashMap<String, Value>>> = Arc::new(Mutex::new(HashMap::from([
        (
            "/.well-known/openid-configuration".to_owned(),
            json!({"issuer": url, "jwks_uri": format!("{url}/oauth2/v1/keys")}),
        ),
        (
            "/oauth2/v1/keys".to_owned(),
            json!({"keys": [key.public_jwk(SigningAlg::RS256)]}),
        ),
    ])));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let docs = docs.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let doc = docs.lock().unwrap().get(&path).cloned();
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
    url
}

/// Gives `user` an identity in the connection `conn` (what a sign-in through Okta would have
/// made), written beside the running Latch into its database.
async fn add_identity(env: &[(String, String)], user: &str, conn: &str, issuer: &str, sub: &str) {
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let url = var("LATCH_DATABASE_URL").unwrap_or_else(|| {
        let dir = std::path::PathBuf::from(var("LATCH_DATA_DIR").unwrap());
        dir.join("latch.db").to_string_lossy().into_owned()
    });
    let mut opts = latch_store::StoreOptions::new(url);
    opts.max_connections = 1;
    // An identity holds nothing encrypted: any key writes it.
    let store = latch_store::SqlStore::open(opts, latch_store::Cipher::new(&[0; 32]).unwrap())
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    store
        .insert_identity(&Identity {
            user_id: UserId::new(user),
            connection_id: ConnectionId::new(conn),
            issuer: issuer.to_owned(),
            subject: sub.to_owned(),
            password_hash: None,
            profile: serde_json::Map::new(),
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
}

/// The counters of `names` moved between `a` and `b` by exactly `want` (label sets to deltas;
/// every other series of those names did not move).
fn assert_moved(a: &Scrape, b: &Scrape, name: &str, want: &[(&[(&str, &str)], f64)]) {
    let series: HashSet<BTreeMap<String, String>> = a
        .samples
        .iter()
        .chain(&b.samples)
        .filter(|s| s.name == name)
        .map(|s| s.labels.clone())
        .collect();
    assert!(!series.is_empty(), "no series of {name}");
    for labels in series {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let delta = b.value(name, &l) - a.value(name, &l);
        let expected = want
            .iter()
            .find(|(w, _)| w.iter().all(|p| l.contains(p)))
            .map_or(0.0, |(_, d)| *d);
        assert_eq!(delta, expected, "{name}{labels:?} moved by {delta}");
    }
}

async fn scenario(backends: Backends, test: &str) {
    let Some(python) = parser() else {
        return;
    };
    let Some((mut env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    env.push(("LATCH_METRICS_TOKEN".into(), METRICS_TOKEN.into()));
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let at = Remote(&http, &base);

    // The token: none, a wrong one, the admin token (a good token, for something else).
    for token in [None, Some("metrics-scrape-token-wrong-wrong"), Some(TOKEN)] {
        let (status, challenge, _) = get_metrics(&http, &base, token).await;
        assert_eq!(status, 401, "{token:?}");
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    }

    // An app told by back-channel logout and by GTR, at one loopback receiver.
    let rx = crate::backchannel::Receiver::start().await;
    let callback = "http://127.0.0.1:9/cb";
    let app = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Metered", "callbacks": [callback],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/bc", rx.url)]},
            "global_token_revocation": {"endpoint": format!("{}/gtr", rx.url)}})),
    )
    .await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let email = format!("m{}@example.com", latch_testkit::env::unique());
    let user = api(
        &at,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    // An Okta connection taking GTR, and the user's identity in it.
    let key = Signer::generate(SigningAlg::RS256).unwrap();
    let org = org(&key).await;
    let name = format!("okta-{}", latch_testkit::env::unique());
    let conn = api(
        &at,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": "okta", "options": {
            "domain": org, "client_id": "0oaMETRICS", "client_secret": "upstream-secret",
            "global_token_revocation_enabled": true }})),
    )
    .await;
    add_identity(
        &env,
        &user_id,
        conn["id"].as_str().unwrap(),
        &org,
        "00uMETRICS",
    )
    .await;

    let before = scrape(&python, &http, &base).await;

    for _ in 0..FAILED {
        let status = sign_in(&base, &client_id, callback, &email, "wrong-password-1").await;
        assert_eq!(status, 200, "a wrong password shows the form again");
    }
    for _ in 0..SIGNED_IN {
        assert_eq!(
            sign_in(&base, &client_id, callback, &email, PASSWORD).await,
            302
        );
    }
    // Ids in paths: one route template each.
    api(&at, "GET", &format!("/api/v2/users/{user_id}"), None).await;
    let (status, _) =
        crate::support::call(&at, "GET", &format!("/no/such/{user_id}"), None, None).await;
    assert_eq!(status, 404);

    let gtr_path = format!("/oauth/global-token-revocation/connection/{name}");
    let endpoint = format!("{base}{gtr_path}");
    let body = json!({"subject": {"format": "iss_sub", "iss": org, "sub": "00uMETRICS"}});
    let refused = http
        .post(&endpoint)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(refused, 401);
    // Refused before the handler runs, and counted all the same.
    let too_big = http
        .post(&endpoint)
        .header("Content-Type", "application/json")
        .body(vec![b' '; latch_gtr::MAX_BODY + 1])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(too_big, 413);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": org, "sub": "0oaMETRICS", "aud": endpoint, "iat": now,
        "exp": now + 300, "jti": latch_testkit::env::unique()});
    let token = sign_jws(
        &key,
        SigningAlg::RS256,
        &key.thumbprint(),
        "global-token-revocation+jwt",
        &claims,
    )
    .unwrap();
    let accepted = http
        .post(&endpoint)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(accepted, 204);
    let told = rx.wait_for(SIGNED_IN, Duration::from_secs(20)).await;
    assert_eq!(told.len(), SIGNED_IN, "one logout token per session");

    // Deliveries are counted when their outcome is known: wait for them, then compare.
    let delivered = |s: &Scrape, channel: &str| {
        s.value(
            "latch_logout_deliveries_total",
            &[("channel", channel), ("outcome", "delivered")],
        )
    };
    let after = eventually("the deliveries counted", async || {
        let s = scrape(&python, &http, &base).await;
        (delivered(&s, "backchannel") - delivered(&before, "backchannel") >= SIGNED_IN as f64
            && delivered(&s, "gtr") - delivered(&before, "gtr") >= 1.0)
            .then_some(s)
    })
    .await;

    // Every family is Latch's, and the pinned ones are there with their types.
    for (family, kind) in &after.families {
        assert!(family.starts_with("latch_"), "{family} ({kind})");
    }
    for (family, kind) in [
        ("latch_http_requests", "counter"),
        ("latch_http_request_duration_seconds", "histogram"),
        ("latch_gtr_requests", "counter"),
        ("latch_logout_deliveries", "counter"),
        ("latch_outbox_pending", "gauge"),
        ("latch_sessions_ended", "counter"),
        ("latch_signins", "counter"),
        ("latch_db_pool_connections", "gauge"),
        ("latch_db_pool_max_connections", "gauge"),
        ("latch_process_resident_memory_bytes", "gauge"),
        ("latch_process_open_fds", "gauge"),
        ("latch_process_cpu_seconds", "counter"),
    ] {
        assert_eq!(
            after.families.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    if let Backends::Production = backends {
        assert_eq!(
            after.families.get("latch_redis_errors").map(String::as_str),
            Some("counter")
        );
    }

    assert_moved(
        &before,
        &after,
        "latch_signins_total",
        &[
            (
                &[("strategy", "auth0"), ("result", "failure")],
                FAILED as f64,
            ),
            (
                &[("strategy", "auth0"), ("result", "success")],
                SIGNED_IN as f64,
            ),
        ],
    );
    assert_moved(
        &before,
        &after,
        "latch_sessions_ended_total",
        &[(&[("initiator", "idp-logout")], SIGNED_IN as f64)],
    );
    assert_moved(
        &before,
        &after,
        "latch_gtr_requests_total",
        &[
            (&[("result", "accepted")], 1.0),
            (&[("result", "rejected")], 2.0),
        ],
    );
    assert_moved(
        &before,
        &after,
        "latch_logout_deliveries_total",
        &[
            (
                &[("channel", "backchannel"), ("outcome", "delivered")],
                SIGNED_IN as f64,
            ),
            (&[("channel", "gtr"), ("outcome", "delivered")], 1.0),
        ],
    );
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let gtr_route = "/oauth/global-token-revocation/connection/{connection_name}";
    let requests = "latch_http_requests_total";
    for (route, status, n) in [
        ("/login", "200", FAILED),
        ("/login", "302", SIGNED_IN),
        (gtr_route, "204", 1),
        (gtr_route, "401", 1),
        (gtr_route, "413", 1),
        ("unmatched", "404", 1),
    ] {
        let got = moved(requests, &[("route", route), ("status", status)]);
        assert_eq!(got, n as f64, "{route} {status}");
    }
    assert!(after.has(
        requests,
        &[("route", "/api/v2/users/{id}"), ("status", "200")]
    ));
    // The histogram: a count per request, buckets up to +Inf.
    let duration = "latch_http_request_duration_seconds";
    assert_eq!(
        moved(&format!("{duration}_count"), &[("route", "/login")]),
        (FAILED + SIGNED_IN) as f64
    );
    assert_eq!(
        after.value(
            &format!("{duration}_bucket"),
            &[("route", "/login"), ("le", "+Inf")]
        ),
        after.value(&format!("{duration}_count"), &[("route", "/login")])
    );
    // No route label holds an id, or any path: templates, or "unmatched".
    for s in after.samples.iter().filter(|s| {
        s.family.starts_with("latch_http_") && s.family != "latch_http_requests_in_flight"
    }) {
        let route = &s.labels["route"];
        assert!(
            !route.contains(&user_id) && !route.contains(&name) && !route.contains(&client_id),
            "{route}"
        );
        assert!(route == "unmatched" || route.starts_with('/'), "{route}");
    }
    // Gauges read at scrape time.
    assert!(after.value("latch_db_pool_max_connections", &[]) >= 1.0);
    // The scrape itself is never counted in flight (probes and metrics are never shed).
    assert_eq!(after.value("latch_http_requests_in_flight", &[]), 0.0);
    assert_eq!(after.value("latch_log_events_dropped_total", &[]), 0.0);
    assert!(after.has("latch_db_pool_connections", &[("state", "in_use")]));
    assert!(after.has("latch_db_pool_connections", &[("state", "idle")]));
    assert!(after.value("latch_process_resident_memory_bytes", &[]) > 1e6);
    assert!(after.value("latch_process_open_fds", &[]) >= 3.0);
    // Nothing left in the outbox once delivered (the count is reused for up to 5 s).
    eventually("the outbox drained", async || {
        let s = scrape(&python, &http, &base).await;
        (s.value("latch_outbox_pending", &[]) == 0.0).then_some(())
    })
    .await;
    drop(latch);
}

#[tokio::test]
async fn metrics_count_a_scenario_on_the_embedded_default() {
    scenario(
        Backends::Embedded,
        "metrics_count_a_scenario_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn metrics_count_a_scenario_on_postgres_and_redis() {
    scenario(
        Backends::Production,
        "metrics_count_a_scenario_on_postgres_and_redis",
    )
    .await;
}
