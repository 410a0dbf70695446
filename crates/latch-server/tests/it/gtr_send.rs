//! Latch sends Global Token Revocation to apps: Okta's request, verified by an independent JOSE
//! library (panva's `jose`, in peers/verify_gtr.mjs) against Latch's JWKS; retried on 5xx with
//! a fresh token, never on a 4xx, never following a redirect; listed and replayed by an
//! administrator; and two Latches chained (one is the other's "Okta").

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::browser::Browser;
use crate::oidc::{PASSWORD, authorize_uri, fixture, sign_in};
use crate::peers::{peers_dir, require_peers};
use crate::support::{Harness, TOKEN, Target, api, call, eventually, read_request};
use crate::{app, on_all_backends};

/// One request a [`Sink`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: String,
    pub content_type: String,
    pub body: String,
}

/// A status to answer, with a `Location` or not.
type Answer = (u16, Option<String>);

/// A loopback HTTP endpoint that records every request and answers with the queued answers
/// (status and optional `Location`), then 204.
#[derive(Clone)]
pub struct Sink {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub answers: Arc<Mutex<VecDeque<Answer>>>,
}

impl Sink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            got: Arc::default(),
            answers: Arc::default(),
        };
        let me = s.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let header = |name: &str| req.header(name).unwrap_or_default().to_owned();
                    let r = Received {
                        path: req.path.clone(),
                        authorization: header("authorization"),
                        content_type: header("content-type"),
                        body: req.body_text(),
                    };
                    me.got.lock().unwrap().push(r);
                    let (status, location) = me
                        .answers
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((204, None));
                    let location = location
                        .map(|l| format!("Location: {l}\r\n"))
                        .unwrap_or_default();
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
        s
    }

    pub fn answer(&self, answers: impl IntoIterator<Item = u16>) {
        self.answers
            .lock()
            .unwrap()
            .extend(answers.into_iter().map(|s| (s, None)));
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The verdicts of peers/verify_gtr.mjs (panva's `jose`) on `requests`, each sent to
/// `endpoint` for `client_id`.
pub async fn verify_with_jose(
    jwks: &Value,
    issuer: &str,
    requests: &[(Received, String, String)],
) -> Vec<Value> {
    require_peers();
    let input = json!({
        "jwks": jwks,
        "issuer": issuer,
        "requests": requests.iter().map(|(r, endpoint, client)| json!({
            "authorization": r.authorization,
            "content_type": r.content_type,
            "body": r.body,
            "endpoint": endpoint,
            "client_id": client,
        })).collect::<Vec<_>>(),
    });
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("node")
            .arg("verify_gtr.mjs")
            .current_dir(peers_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "verify_gtr.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn set_gtr(app: &impl Target, client: &str, endpoint: &str, format: &str) -> Value {
    api(
        app,
        "PATCH",
        &format!("/api/v2/clients/{client}"),
        Some(json!({"global_token_revocation": {"endpoint": endpoint, "subject_format": format}})),
    )
    .await
}

async fn logs(h: &Harness, kind: &str, user: &str) -> Vec<latch_core::model::LogEvent> {
    h.state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some(kind.into()),
            user_id: Some(latch_core::UserId::new(user)),
            per_page: 50,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// An administrator's clear with revoke sends both apps of the user Okta's request: one names
/// the user by `iss_sub` and is down twice (503) before it answers 204, the other by email.
async fn latch_sends_global_token_revocation(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let down = Sink::start().await;
    down.answer([503, 503]);
    let by_email = Sink::start().await;
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let f = fixture(&app).await;
    let (web_gtr, other_gtr) = (format!("{}/gtr", down.url), format!("{}/gtr", by_email.url));
    let shown = set_gtr(&app, &f.web.0, &web_gtr, "iss_sub").await;
    assert_eq!(
        shown["global_token_revocation"],
        json!({"endpoint": web_gtr, "subject_format": "iss_sub"})
    );
    set_gtr(&app, &f.other.0, &other_gtr, "email").await;

    // The user signs in to the first app; the second holds a grant from single sign-on.
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", ""),
        &f.email,
        PASSWORD,
    )
    .await;
    let sso = b
        .get(
            &app,
            &authorize_uri(&f.other.0, "http://127.0.0.1:4000/callback", ""),
        )
        .await;
    assert!(sso.param("code").is_some());

    // Only a verified email names the user.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{}", f.user_id),
        Some(json!({"email_verified": true})),
    )
    .await;
    let sessions = format!("/api/v2/users/{}/sessions?revoke_tokens=true", f.user_id);
    let (status, _) = call(&app, "DELETE", &sessions, None, Some(TOKEN)).await;
    assert_eq!(status, 204);

    let got = down.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "two 503s, then delivered: {got:?}");
    assert!(got.iter().all(|r| r.path == "/gtr"), "{got:?}");
    let mail = by_email.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1);
    let jwks = b.get(&app, "/.well-known/jwks.json").await.json();
    let mut requests: Vec<_> = got
        .iter()
        .map(|r| (r.clone(), web_gtr.clone(), f.web.0.clone()))
        .collect();
    requests.push((mail[0].clone(), other_gtr.clone(), f.other.0.clone()));
    let verdicts = verify_with_jose(&jwks, &issuer, &requests).await;
    for v in &verdicts {
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["header"]["typ"], "global-token-revocation+jwt");
        assert_eq!(v["header"]["alg"], "RS256");
        assert_eq!(v["claims"]["nbf"], v["claims"]["iat"]);
    }
    for v in &verdicts[..3] {
        assert_eq!(
            v["body"],
            json!({"subject": {"format": "iss_sub", "iss": issuer, "sub": f.user_id}})
        );
    }
    assert_eq!(
        verdicts[3]["body"],
        json!({"subject": {"format": "email", "email": f.email}})
    );
    // A fresh token for every attempt.
    let jtis: std::collections::HashSet<_> = verdicts
        .iter()
        .map(|v| v["claims"]["jti"].to_string())
        .collect();
    assert_eq!(jtis.len(), 4);

    // Each attempt is in the logs, with the endpoint.
    let ok = eventually("both GTR deliveries logged", async || {
        let l = logs(&h, "gtr_delivery_succeeded", &f.user_id).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    for e in &ok {
        let endpoint = if e.client_id.as_ref().unwrap().as_str() == f.web.0 {
            &web_gtr
        } else {
            &other_gtr
        };
        assert_eq!(e.details["endpoint"], endpoint.as_str());
        assert_eq!(e.details["kind"], "gtr");
        assert_eq!(e.details["initiator"], "session-revoked");
    }
    let failed = logs(&h, "gtr_delivery_failed", &f.user_id).await;
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e.details["state"] == "pending"));
    let slo = logs(&h, "slo", &f.user_id).await;
    assert_eq!(slo[0].details["TotalGtrRequests"], 2);
    for w in workers {
        w.abort();
    }
}
on_all_backends!(
    latch_sends_global_token_revocation,
    latch_sends_global_token_revocation
);

/// A 400 is not retried and a redirect is not followed; an administrator lists the failed
/// deliveries and replays one: a fresh token, delivered, the replay logged as theirs.
async fn refused_gtr_is_not_retried_and_an_admin_replays_it(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let refusing = Sink::start().await;
    refusing.answer([400]);
    let redirecting = Sink::start().await;
    let elsewhere = Sink::start().await;
    redirecting
        .answers
        .lock()
        .unwrap()
        .push_back((302, Some(format!("{}/gtr", elsewhere.url))));
    let app = app!(h);
    let f = fixture(&app).await;
    set_gtr(&app, &f.web.0, &format!("{}/gtr", refusing.url), "iss_sub").await;
    set_gtr(
        &app,
        &f.other.0,
        &format!("{}/gtr", redirecting.url),
        "iss_sub",
    )
    .await;
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", ""),
        &f.email,
        PASSWORD,
    )
    .await;
    b.get(
        &app,
        &authorize_uri(&f.other.0, "http://127.0.0.1:4000/callback", ""),
    )
    .await;

    // Blocking the user is a user-wide logout too.
    let (status, _) = call(
        &app,
        "PATCH",
        &format!("/api/v2/users/{}", f.user_id),
        Some(json!({"blocked": true})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let listed = eventually("both GTR deliveries failed", async || {
        let (s, v) = call(
            &app,
            "GET",
            &format!(
                "/api/v2/logout-deliveries?user_id={}&state=failed",
                f.user_id
            ),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        (v.as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    assert_eq!(refusing.received().len(), 1, "a 400 is not retried");
    assert_eq!(redirecting.received().len(), 1);
    assert!(
        elsewhere.received().is_empty(),
        "a redirect is not followed"
    );
    for d in listed.as_array().unwrap() {
        assert_eq!(d["kind"], "gtr");
        assert_eq!(d["user_id"], f.user_id.as_str());
        assert_eq!(d["initiator"], "account-deactivated");
        assert_eq!(d["attempts"], 1);
    }
    let refused = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["client_id"] == f.web.0.as_str())
        .unwrap()
        .clone();
    assert_eq!(refused["last_error"], "HTTP 400");
    // Filters: by app, and a state no delivery is in.
    let (_, one) = call(
        &app,
        "GET",
        &format!(
            "/api/v2/logout-deliveries?user_id={}&client_id={}",
            f.user_id, f.web.0
        ),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let (s, none) = call(
        &app,
        "GET",
        &format!(
            "/api/v2/logout-deliveries?user_id={}&state=delivered",
            f.user_id
        ),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(none, json!([]));
    let (s, bad) = call(
        &app,
        "GET",
        "/api/v2/logout-deliveries?state=lost",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 400, "{bad}");

    // Replay: the app answers 204 now.
    let retry = format!(
        "/api/v2/logout-deliveries/{}/retry",
        refused["id"].as_str().unwrap()
    );
    let (s, again) = call(&app, "POST", &retry, None, Some(TOKEN)).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["state"], "pending");
    let got = refusing.wait_for(2, Duration::from_secs(10)).await;
    // At least once: the 400 above was not retried (exactly one request then), but a replay
    // whose answer the sender did not see within its timeout (a loaded CI machine stalling this
    // test's one runtime thread, which serves the receiver too) is sent again.
    assert!(got.len() >= 2, "the replay arrived: {}", got.len());
    let jti = |r: &Received| {
        let t = r.authorization.strip_prefix("Bearer ").unwrap();
        jsonwebtoken::dangerous::insecure_decode::<Value>(t)
            .unwrap()
            .claims["jti"]
            .clone()
    };
    assert_ne!(jti(&got[0]), jti(&got[1]), "a fresh token");
    eventually("the replay delivered", async || {
        let (_, v) = call(
            &app,
            "GET",
            &format!(
                "/api/v2/logout-deliveries?user_id={}&state=delivered",
                f.user_id
            ),
            None,
            Some(TOKEN),
        )
        .await;
        (v.as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    let sapi = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some("sapi".into()),
            per_page: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        sapi.iter()
            .any(|e| e.description == "Retry a logout delivery"
                && e.details["request"]["path"] == retry.as_str()),
        "the replay is logged as the administrator's action"
    );
    // Delivered already: a second replay is a conflict and sends nothing.
    let (s, _) = call(&app, "POST", &retry, None, Some(TOKEN)).await;
    assert_eq!(s, 409);

    // The administrator corrects the redirecting app's endpoint and replays its delivery: it
    // goes where the app takes GTR now, with that endpoint as `aud`.
    let corrected = format!("{}/gtr", elsewhere.url);
    set_gtr(&app, &f.other.0, &corrected, "iss_sub").await;
    let moved = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["client_id"] == f.other.0.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = call(
        &app,
        "POST",
        &format!("/api/v2/logout-deliveries/{moved}/retry"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    let got = elsewhere.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let t = got[0].authorization.strip_prefix("Bearer ").unwrap();
    assert_eq!(
        jsonwebtoken::dangerous::insecure_decode::<Value>(t)
            .unwrap()
            .claims["aud"],
        corrected.as_str()
    );

    for w in workers {
        w.abort();
    }
}
on_all_backends!(
    refused_gtr_is_not_retried_and_an_admin_replays_it,
    refused_gtr_is_not_retried_and_an_admin_replays_it
);

/// An app that names users by email is not sent an unverified email (it may be someone
/// else's); an `iss_sub` app of the same user is.
async fn unverified_email_names_nobody(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let (by_email, by_sub) = (Sink::start().await, Sink::start().await);
    let app = app!(h);
    let f = fixture(&app).await;
    set_gtr(&app, &f.web.0, &format!("{}/gtr", by_email.url), "email").await;
    set_gtr(&app, &f.other.0, &format!("{}/gtr", by_sub.url), "iss_sub").await;
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", ""),
        &f.email,
        PASSWORD,
    )
    .await;
    b.get(
        &app,
        &authorize_uri(&f.other.0, "http://127.0.0.1:4000/callback", ""),
    )
    .await;
    let (status, _) = call(
        &app,
        "DELETE",
        &format!("/api/v2/users/{}", f.user_id),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 204);
    let got = by_sub.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].body.contains("\"iss_sub\""), "{}", got[0].body);
    let (_, listed) = call(
        &app,
        "GET",
        &format!("/api/v2/logout-deliveries?user_id={}", f.user_id),
        None,
        Some(TOKEN),
    )
    .await;
    let gtr: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "gtr")
        .collect();
    assert_eq!(gtr.len(), 1, "{listed}");
    assert_eq!(gtr[0]["client_id"], f.other.0.as_str());
    assert_eq!(gtr[0]["initiator"], "account-deleted");
    assert!(by_email.received().is_empty());
    for w in workers {
        w.abort();
    }
}
on_all_backends!(unverified_email_names_nobody, unverified_email_names_nobody);

/// What the API refuses for the field, naming it, and the removal with `null`.
async fn gtr_field_is_validated(h: Harness) {
    let app = app!(h);
    let c = api(
        &app,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "GTR app", "callbacks": ["https://app.example.com/cb"],
            "global_token_revocation": {"endpoint": "https://app.example.com/gtr"}}),
        ),
    )
    .await;
    assert_eq!(
        c["global_token_revocation"],
        json!({"endpoint": "https://app.example.com/gtr", "subject_format": "iss_sub"})
    );
    let path = format!("/api/v2/clients/{}", c["client_id"].as_str().unwrap());
    for (body, field) in [
        (
            json!({"endpoint": "http://app.example.com/gtr"}),
            "global_token_revocation.endpoint",
        ),
        (
            json!({"endpoint": "https://app.example.com/gtr?x=1"}),
            "global_token_revocation.endpoint",
        ),
        (
            json!({"endpoint": "https://169.254.169.254/gtr"}),
            "global_token_revocation.endpoint",
        ),
        (
            json!({"endpoint": "https://app.example.com/gtr", "subject_format": "phone"}),
            "global_token_revocation.subject_format",
        ),
    ] {
        let (s, e) = call(
            &app,
            "PATCH",
            &path,
            Some(json!({"global_token_revocation": body})),
            Some(TOKEN),
        )
        .await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(e.to_string().contains(field), "{body}: {e}");
    }
    let (s, e) = call(
        &app,
        "PATCH",
        &path,
        Some(
            json!({"global_token_revocation": {"endpoint": "https://a.example.com/g", "extra": 1}}),
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    // Unchanged by the refusals; removed by null.
    let (_, now) = call(&app, "GET", &path, None, Some(TOKEN)).await;
    assert_eq!(
        now["global_token_revocation"]["endpoint"],
        "https://app.example.com/gtr"
    );
    let gone = api(
        &app,
        "PATCH",
        &path,
        Some(json!({"global_token_revocation": null})),
    )
    .await;
    assert!(gone.get("global_token_revocation").is_none(), "{gone}");
}
on_all_backends!(gtr_field_is_validated, gtr_field_is_validated);

/// Two Latch processes chained: B signs users in through an `oidc` connection to A, with
/// Universal Logout on and A as the GTR issuer. An administrator clears the user's sessions
/// with revoke at A; A sends B Okta's request; B accepts it, ends the user's session there and
/// tells its own app by back-channel logout.
async fn two_latches_chained(backends: crate::support::Backends, test: &str) {
    use crate::peers::{Agent, redeem};
    use crate::process::{Latch, free_port};
    use crate::support::{Remote, env_for};

    let Some((env_a, _dir_a, _schema_a)) = env_for(&format!("{test}-a"), backends) else {
        return;
    };
    let Some((env_b, _dir_b, _schema_b)) = env_for(&format!("{test}-b"), backends) else {
        return;
    };
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Latch::start(&env_a, port_a);
    let mut b = Latch::start(&env_b, port_b);
    a.wait_ready().await;
    b.wait_ready().await;
    let http = reqwest::Client::new();
    let (at_a, at_b) = (Remote(&http, &a.base), Remote(&http, &b.base));
    let connection = "upstream-latch";
    let gtr_at_b = format!(
        "{}/oauth/global-token-revocation/connection/{connection}",
        b.base
    );

    // A: B is one of its apps, told by GTR; a user in A's database.
    let b_at_a = api(
        &at_a,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "Latch B", "callbacks": [format!("{}/login/callback", b.base)],
            "global_token_revocation": {"endpoint": gtr_at_b}}),
        ),
    )
    .await;
    let email = format!("chain-{}@example.com", latch_testkit::env::unique());
    let user_a = api(
        &at_a,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;
    let user_a = user_a["user_id"].as_str().unwrap().to_owned();

    // B: an app with a back-channel URL, signing in through A.
    let rx = crate::backchannel::Receiver::start().await;
    let app_cb = "http://127.0.0.1:9/cb";
    let app = api(
        &at_b,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "App at B", "callbacks": [app_cb],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/app", rx.url)]}})),
    )
    .await;
    let app_id = app["client_id"].as_str().unwrap().to_owned();
    let conn = api(
        &at_b,
        "POST",
        "/api/v2/connections",
        Some(
            json!({"name": connection, "strategy": "oidc", "enabled_clients": [app_id],
            "options": {"issuer": a.base, "client_id": b_at_a["client_id"],
                "client_secret": b_at_a["client_secret"],
                "global_token_revocation_enabled": true,
                "global_token_revocation_jwt_iss": a.base}}),
        ),
    )
    .await;
    assert_eq!(
        conn["options"]["global_token_revocation_enabled"], true,
        "{conn}"
    );

    // Sign in at B's app through A's form.
    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let mut next = format!(
        "{}/authorize?response_type=code&client_id={app_id}&redirect_uri={cbq}&scope=openid%20email&state=st&nonce=no&connection={connection}",
        b.base
    );
    let mut hops = 0;
    while !next.starts_with(app_cb) {
        hops += 1;
        assert!(hops < 12, "too many hops at {next}");
        let hop = agent.send(&next, None).await;
        if let Some(l) = hop.location {
            next = l;
            continue;
        }
        assert_eq!(hop.status, 200, "{next}: {}", hop.body);
        let tx = hop
            .body
            .split("name=\"tx\"")
            .nth(1)
            .and_then(|s| s.split("value=\"").nth(1))
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("A's sign-in form: {}", hop.body))
            .to_owned();
        let form = [
            ("tx".to_owned(), tx),
            ("email".to_owned(), email.clone()),
            ("password".to_owned(), PASSWORD.to_owned()),
        ];
        let posted = agent.send(&format!("{}/login", a.base), Some(&form)).await;
        next = posted
            .location
            .unwrap_or_else(|| panic!("A's form did not redirect: {}", posted.body));
    }
    let code = url::Url::parse(&next)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code for B's app");
    let tokens = redeem(
        &http,
        &b.base,
        (&app_id, app["client_secret"].as_str().unwrap()),
        &code,
        app_cb,
    )
    .await;
    let id =
        jsonwebtoken::dangerous::insecure_decode::<Value>(tokens["id_token"].as_str().unwrap())
            .unwrap()
            .claims;
    let user_b = id["sub"].as_str().unwrap().to_owned();
    let (_, sessions) = call(
        &at_b,
        "GET",
        &format!("/api/v2/users/{user_b}/sessions"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );

    // A's administrator clears the user's sessions with revoke.
    let (s, _) = call(
        &at_a,
        "DELETE",
        &format!("/api/v2/users/{user_a}/sessions?revoke_tokens=true"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 204);

    // B's app is told; B has no session left for the user, and logged the GTR it accepted.
    let told = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(told.len(), 1, "B's app gets its logout token");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&told[0].1)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], user_b.as_str());
    assert_eq!(claims["iss"], b.base.as_str());
    let (_, sessions) = call(
        &at_b,
        "GET",
        &format!("/api/v2/users/{user_b}/sessions"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(sessions["sessions"], json!([]));
    let (_, accepted) = call(
        &at_b,
        "GET",
        &format!("/api/v2/logs?type=universal_logout_succeeded&user_id={user_b}"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(accepted.as_array().unwrap().len(), 1, "{accepted}");
    let (_, sent) = eventually("A logged its delivery", async || {
        let (s, v) = call(
            &at_a,
            "GET",
            &format!("/api/v2/logs?type=gtr_delivery_succeeded&user_id={user_a}"),
            None,
            Some(TOKEN),
        )
        .await;
        (v.as_array().is_some_and(|a| a.len() == 1)).then_some((s, v))
    })
    .await;
    assert_eq!(sent[0]["details"]["endpoint"], gtr_at_b.as_str());
}

#[tokio::test]
async fn two_latches_chained_on_the_embedded_default() {
    two_latches_chained(
        crate::support::Backends::Embedded,
        "two_latches_chained_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn two_latches_chained_on_postgres_and_redis() {
    two_latches_chained(
        crate::support::Backends::Production,
        "two_latches_chained_on_postgres_and_redis",
    )
    .await;
}
