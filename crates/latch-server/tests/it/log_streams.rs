//! Log streams end to end: a real HTTP sink on 127.0.0.1 receives the events that pass a
//! stream's filters, as `GET /api/v2/logs` shows them, in order, with the stream's authorization
//! and format; nothing is lost while the sink is down; a paused stream holds its events; a
//! stream failing too long is suspended until resumed; the API checks what it is given and never
//! answers the authorization.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use latch_core::model::SigningAlg;
use latch_testkit::at_rest::contains;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::browser::Browser;
use crate::oidc::{CB, PASSWORD, authorize_uri, exchange, fixture, sign_in};
use crate::support::{Harness, Target, api, call, eventually, read_request};
use crate::{app, on_all_backends};

/// How the sink answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// 200.
    Up,
    /// This status.
    Status(u16),
    /// Closes the connection without answering.
    Drop,
}

/// One request the sink got.
#[derive(Clone, Debug)]
struct Request {
    authorization: Option<String>,
    content_type: Option<String>,
    /// `X-Api-Key` (a custom header).
    api_key: Option<String>,
    body: String,
    /// What it answered (0: nothing, the connection was dropped).
    answered: u16,
}

/// A loopback log sink that records every request.
#[derive(Clone)]
struct Sink {
    url: String,
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Sink {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            url: format!("http://{}/logs", listener.local_addr().unwrap()),
            mode: Arc::new(Mutex::new(mode)),
            got: Arc::default(),
        };
        let me = sink.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let mode = *me.mode.lock().unwrap();
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let value = |name: &str| req.header(name).map(str::to_owned);
                    let answered = match mode {
                        Mode::Up => 200,
                        Mode::Status(s) => s,
                        Mode::Drop => 0,
                    };
                    me.got.lock().unwrap().push(Request {
                        authorization: value("authorization"),
                        content_type: value("content-type"),
                        api_key: value("x-api-key"),
                        body: req.body_text(),
                        answered,
                    });
                    if answered != 0 {
                        let _ = sock
                            .write_all(format!("HTTP/1.1 {answered} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes())
                            .await;
                    }
                });
            }
        });
        sink
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// The batches it accepted (answered 2xx), each as its items, in the order received.
    fn batches(&self) -> Vec<Vec<Value>> {
        self.requests()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| items(&r.body))
            .collect()
    }

    /// The events it accepted, each once: a batch seen again whole (a retry of a batch whose
    /// answer was lost) is skipped; any other repeat fails the test.
    fn events(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for batch in self.batches() {
            let ids: Vec<String> = batch.iter().map(|i| log_id(i).to_owned()).collect();
            let repeated = ids.iter().filter(|i| seen.contains(*i)).count();
            if repeated == ids.len() {
                continue;
            }
            assert_eq!(repeated, 0, "a partial repeat: {ids:?}");
            for (id, item) in ids.into_iter().zip(batch) {
                seen.insert(id);
                out.push(item);
            }
        }
        out
    }
}

/// A body's items: JSON lines or a JSON array.
fn items(body: &str) -> Vec<Value> {
    if body.starts_with('[') {
        serde_json::from_str::<Vec<Value>>(body).unwrap()
    } else {
        assert!(body.ends_with('\n'), "JSON lines end with a line break");
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn log_id(item: &Value) -> &str {
    item["log_id"].as_str().unwrap()
}

/// The log, oldest first, of `type` (any when empty), as `GET /api/v2/logs` answers it.
async fn log(app: &impl Target, kind: &str) -> Vec<Value> {
    let q = if kind.is_empty() {
        String::new()
    } else {
        format!("&type={kind}")
    };
    let mut all = api(app, "GET", &format!("/api/v2/logs?per_page=100{q}"), None)
        .await
        .as_array()
        .unwrap()
        .clone();
    all.reverse();
    all
}

/// A worker of this test's own, quick to retry (the server's is started by `spawn_workers`).
fn worker(h: &Harness, suspend_after: time::Duration) -> tokio::task::JoinHandle<()> {
    let streams = latch_logstream::LogStreams::new(
        h.state.store.clone(),
        h.state.clock.clone(),
        latch_logstream::Settings {
            batch: 4,
            poll: Duration::from_millis(50),
            first_backoff: time::Duration::milliseconds(50),
            max_backoff: time::Duration::milliseconds(200),
            request_timeout: Duration::from_secs(2),
            suspend_after,
            outbound: h.state.config.outbound_policy(),
            ..Default::default()
        },
    );
    tokio::spawn(Arc::new(streams).run())
}

async fn create_stream(app: &impl Target, sink: &Sink, body: Value) -> Value {
    let mut body = body;
    body["type"] = json!("http");
    body["sink"]["httpEndpoint"] = json!(sink.url);
    let (status, s) = call(
        app,
        "POST",
        "/api/v2/log-streams",
        Some(body),
        Some(crate::support::TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["status"], "active");
    s
}

/// `n` management writes (`sapi`, category `management.success`).
async fn writes(app: &impl Target, n: usize, tag: &str) {
    for i in 0..n {
        api(
            app,
            "POST",
            "/api/v2/clients",
            Some(json!({"name": format!("{tag} {i}"), "callbacks": [CB]})),
        )
        .await;
    }
}

/// The `sapi` events from the stream's own creation on, oldest first.
async fn writes_since_creation(app: &impl Target) -> Vec<Value> {
    let all = log(app, "sapi").await;
    let from = all
        .iter()
        .position(|e| e["description"] == "Create a log stream")
        .unwrap();
    all[from..].to_vec()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["log_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn sign_in_and_out_in_order(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let app = app!(h);
    let lines = Sink::start(Mode::Up).await;
    let array = Sink::start(Mode::Up).await;
    let filters = json!([
        {"type": "category", "name": "auth.login.success"},
        {"type": "category", "name": "auth.logout.success"}
    ]);
    create_stream(
        &app,
        &lines,
        json!({"name": "lines", "sink": {"httpContentFormat": "JSONLINES",
            "httpContentType": "application/x-ndjson", "httpAuthorization": "Bearer lines-s3cret",
            "httpCustomHeaders": [{"header": "X-Api-Key", "value": "Key-s3cret"}]},
            "filters": filters, "isPriority": true}),
    )
    .await;
    create_stream(
        &app,
        &array,
        json!({"name": "array", "sink": {"httpContentFormat": "JSONARRAY",
            "httpAuthorization": "Basic YXJyYXk6czNjcmV0"}, "filters": filters}),
    )
    .await;

    let f = fixture(&app).await;
    let mut b = Browser::new();
    // A failed sign-in (`f`) passes neither stream's filters.
    let refused = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        "wrong",
    )
    .await;
    assert_eq!(refused.status, 200);
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let out = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={}",
                t["id_token"].as_str().unwrap()
            ),
        )
        .await;
    assert!((200..400).contains(&out.status), "{}", out.status);

    let expected: Vec<Value> = log(&app, "")
        .await
        .into_iter()
        .filter(|e| e["type"] == "s" || e["type"] == "slo")
        .collect();
    assert_eq!(
        expected
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["s", "slo"]
    );
    for (sink, auth, ct, key) in [
        (
            &lines,
            "Bearer lines-s3cret",
            "application/x-ndjson",
            Some("Key-s3cret"),
        ),
        (&array, "Basic YXJyYXk6czNjcmV0", "application/json", None),
    ] {
        let got = eventually("the sink has both events", async || {
            let got = sink.events();
            (got.len() >= 2).then_some(got)
        })
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        for (item, event) in got.iter().zip(&expected) {
            assert_eq!(item["log_id"], event["log_id"]);
            assert_eq!(
                item["data"], *event,
                "data is the event as GET /api/v2/logs shows it"
            );
            assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
        }
        for r in sink.requests() {
            assert_eq!(r.authorization.as_deref(), Some(auth));
            assert_eq!(r.content_type.as_deref(), Some(ct));
            assert_eq!(r.api_key.as_deref(), key);
        }
    }
    assert!(array.requests().iter().all(|r| r.body.starts_with('[')));
    assert!(lines.requests().iter().all(|r| !r.body.starts_with('[')));
    for w in workers {
        w.abort();
    }
}
on_all_backends!(sign_in_and_out_in_order, sign_in_and_out_in_order);

async fn nothing_lost_while_the_sink_is_down(h: Harness) {
    let w = worker(&h, time::Duration::hours(24));
    let app = app!(h);
    let sink = Sink::start(Mode::Status(503)).await;
    let s = create_stream(
        &app,
        &sink,
        json!({"name": "siem", "sink": {}, "filters": [{"type": "category", "name": "management.success"}]}),
    )
    .await;
    writes(&app, 6, "down").await;
    eventually("a few 503s", async || {
        (sink.requests().len() >= 3).then_some(())
    })
    .await;
    sink.set(Mode::Drop);
    let before = sink.requests().len();
    eventually("connections dropped", async || {
        (sink.requests().len() >= before + 2).then_some(())
    })
    .await;
    // The failing streak is recorded on the stream.
    let seen = api(
        &app,
        "GET",
        &format!("/api/v2/log-streams/{}", s["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(seen["status"], "active");
    assert!(seen["last_error"].is_string(), "{seen}");
    sink.set(Mode::Up);
    writes(&app, 5, "up").await;
    let expected = ids(&writes_since_creation(&app).await);
    assert_eq!(expected.len(), 1 + 6 + 5);
    let got = eventually("everything delivered", async || {
        let got = sink.events();
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(
        got.iter().map(|i| log_id(i).to_owned()).collect::<Vec<_>>(),
        expected
    );
    // Batches of at most 4, and the failed ones were the same first batch each time.
    assert!(sink.batches().iter().all(|b| b.len() <= 4));
    let failed: Vec<Vec<String>> = sink
        .requests()
        .iter()
        .filter(|r| r.answered == 503)
        .map(|r| {
            items(&r.body)
                .iter()
                .map(|i| log_id(i).to_owned())
                .collect()
        })
        .collect();
    assert!(failed.iter().all(|b| b[0] == expected[0]), "{failed:?}");
    // One failure event for the streak, not one per retry.
    let failures = log(&app, "log_stream_failed").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["details"]["status"], "active");
    assert_eq!(failures[0]["details"]["stream_id"], s["id"]);
    assert_eq!(failures[0]["details"]["error"], "HTTP 503");
    let seen = api(
        &app,
        "GET",
        &format!("/api/v2/log-streams/{}", s["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(seen.get("last_error").is_none(), "{seen}");
    w.abort();
}
on_all_backends!(
    nothing_lost_while_the_sink_is_down,
    nothing_lost_while_the_sink_is_down
);

async fn paused_holds_resumed_sends(h: Harness) {
    let w = worker(&h, time::Duration::hours(24));
    let app = app!(h);
    let held = Sink::start(Mode::Up).await;
    let witness = Sink::start(Mode::Up).await;
    let filters = json!([{"type": "category", "name": "management.success"}]);
    let s = create_stream(
        &app,
        &held,
        json!({"name": "held", "sink": {}, "filters": filters}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let paused = api(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"status": "paused"})),
    )
    .await;
    assert_eq!(paused["status"], "paused");
    // Anything sent before the pause is done with before the witness starts.
    let before = held.events().len();
    create_stream(
        &app,
        &witness,
        json!({"name": "witness", "sink": {}, "filters": filters}),
    )
    .await;
    writes(&app, 5, "paused").await;
    let all = ids(&writes_since_creation(&app).await);
    // The witness (created after the pause) got every write from its creation on (and perhaps
    // the pause's, recorded within the same millisecond)...
    let last = all.last().unwrap().clone();
    let witnessed = eventually("the witness has the writes", async || {
        let got = witness.events();
        got.iter().any(|i| log_id(i) == last).then_some(got)
    })
    .await;
    let witnessed: Vec<String> = witnessed.iter().map(|i| log_id(i).to_owned()).collect();
    assert!(
        witnessed.len() >= 6 && witnessed.ends_with(&all[all.len() - 6..]),
        "{witnessed:?}"
    );
    // ... and the paused stream none, its events held.
    assert_eq!(held.events().len(), before);
    let waiting = h.state.store.count_log_stream_events(&id).await.unwrap();
    assert_eq!(waiting as usize, all.len() - before);
    let resumed = api(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(resumed["status"], "active");
    // Everything since its creation, the pause's own write and the resume's included.
    let expected = ids(&writes_since_creation(&app).await);
    assert_eq!(expected.len(), all.len() + 1);
    let got = eventually("the backlog is sent", async || {
        let got = held.events();
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(
        got.iter().map(|i| log_id(i).to_owned()).collect::<Vec<_>>(),
        expected
    );
    w.abort();
}
on_all_backends!(paused_holds_resumed_sends, paused_holds_resumed_sends);

async fn failing_too_long_suspends(h: Harness) {
    let w = worker(&h, time::Duration::milliseconds(500));
    let app = app!(h);
    let sink = Sink::start(Mode::Status(500)).await;
    let s = create_stream(
        &app,
        &sink,
        json!({"name": "flaky", "sink": {}, "filters": [{"type": "category", "name": "management.success"}]}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    writes(&app, 2, "failing").await;
    let suspended = eventually("suspended", async || {
        let s = api(&app, "GET", &format!("/api/v2/log-streams/{id}"), None).await;
        (s["status"] == "suspended").then_some(s)
    })
    .await;
    assert_eq!(suspended["suspended_reason"], "HTTP 500");
    // The worker records the suspension, then logs it: the event may follow the status a moment
    // later.
    let failures = eventually("the suspension is logged", async || {
        let f = log(&app, "log_stream_failed").await;
        (f.len() >= 2).then_some(f)
    })
    .await;
    assert_eq!(
        failures
            .iter()
            .map(|e| e["details"]["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["active", "suspended"]
    );
    // Suspended: no more attempts.
    let tried = sink.requests().len();
    sink.set(Mode::Up);
    writes(&app, 1, "while suspended").await;
    let listed = api(&app, "GET", "/api/v2/log-streams", None).await;
    assert_eq!(listed[0]["status"], "suspended");
    assert_eq!(sink.requests().len(), tried);
    // An admin resumes it: the held events go out, in order.
    let resumed = api(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(resumed["status"], "active");
    assert!(resumed.get("suspended_reason").is_none(), "{resumed}");
    let expected = ids(&writes_since_creation(&app).await);
    assert_eq!(expected.len(), 1 + 2 + 1 + 1);
    let got = eventually("the backlog is sent", async || {
        let got = sink.events();
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(
        got.iter().map(|i| log_id(i).to_owned()).collect::<Vec<_>>(),
        expected
    );
    w.abort();
}
on_all_backends!(failing_too_long_suspends, failing_too_long_suspends);

/// A `client_credentials` access token for the management API holding `scope`.
fn management_token(h: &Harness, scope: &str) -> String {
    let issuer = h.state.config.issuer_str();
    let now = h.state.clock.now().unix_timestamp();
    h.state
        .keys
        .sign(
            SigningAlg::RS256,
            "at+jwt",
            &json!({
                "iss": issuer, "sub": "m2m@clients", "aud": format!("{issuer}/api/v2/"),
                "client_id": "m2m", "iat": now, "exp": now + 600, "jti": format!("ls-{scope}"),
                "scope": scope, "gty": "client-credentials",
            }),
        )
        .unwrap()
}

async fn api_checks_and_redacts(h: Harness) {
    let app = app!(h);
    let token = Some(crate::support::TOKEN);
    let good = || {
        json!({"name": "SIEM", "type": "http",
            "sink": {"httpEndpoint": "https://siem.example.com/in", "httpAuthorization": "Bearer top-s3cret-value"},
            "filters": [{"type": "category", "name": "auth.login.fail"}]})
    };
    let refused = async |body: Value, field: &str| {
        let (status, e) = call(&app, "POST", "/api/v2/log-streams", Some(body), token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {e}");
        assert_eq!(e["field"], field, "{e}");
    };
    let with = |path: &[&str], v: Value| {
        let mut b = good();
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        b
    };
    refused(
        with(&["sink", "httpEndpoint"], json!("ftp://siem.example.com/")),
        "sink.httpEndpoint",
    )
    .await;
    refused(
        with(&["sink", "httpEndpoint"], json!("http://siem.example.com/")),
        "sink.httpEndpoint",
    )
    .await;
    refused(
        with(&["sink", "httpEndpoint"], json!("https://10.1.2.3/in")),
        "sink.httpEndpoint",
    )
    .await;
    refused(
        with(&["sink", "httpEndpoint"], json!("https://169.254.169.254/")),
        "sink.httpEndpoint",
    )
    .await;
    refused(
        with(&["sink", "httpContentFormat"], json!("JSONOBJECT")),
        "sink.httpContentFormat",
    )
    .await;
    refused(
        with(&["sink", "httpContentType"], json!("json")),
        "sink.httpContentType",
    )
    .await;
    refused(
        with(
            &["sink", "httpAuthorization"],
            json!("Bearer a\r\nX-Evil: 1"),
        ),
        "sink.httpAuthorization",
    )
    .await;
    refused(
        with(
            &["filters"],
            json!([{"type": "category", "name": "auth.login"}]),
        ),
        "filters[0].name",
    )
    .await;
    refused(
        with(
            &["filters"],
            json!([{"type": "event", "name": "auth.login.fail"}]),
        ),
        "filters[0].type",
    )
    .await;
    for (headers, field) in [
        (
            json!([{"header": "Authorization", "value": "x"}]),
            "sink.httpCustomHeaders[0].header",
        ),
        (
            json!([{"header": "X-Ok", "value": "1"}, {"header": "host", "value": "x"}]),
            "sink.httpCustomHeaders[1].header",
        ),
        (
            json!([{"header": "Bad Name", "value": "x"}]),
            "sink.httpCustomHeaders[0].header",
        ),
        (
            json!([{"header": "X-A", "value": "1"}, {"header": "x-a", "value": "2"}]),
            "sink.httpCustomHeaders[1].header",
        ),
        (
            json!([{"header": "X-A", "value": "a\r\nX-Evil: 1"}]),
            "sink.httpCustomHeaders[0].value",
        ),
        (
            json!(
                (0..21)
                    .map(|i| json!({"header": format!("X-{i}"), "value": "v"}))
                    .collect::<Vec<_>>()
            ),
            "sink.httpCustomHeaders",
        ),
    ] {
        refused(with(&["sink", "httpCustomHeaders"], headers), field).await;
    }
    refused(with(&["type"], json!("datadog")), "type").await;
    refused(with(&["name"], json!("")), "name").await;
    let mut no_endpoint = good();
    no_endpoint["sink"]
        .as_object_mut()
        .unwrap()
        .remove("httpEndpoint");
    refused(no_endpoint, "sink.httpEndpoint").await;
    let (status, _) = call(
        &app,
        "POST",
        "/api/v2/log-streams",
        Some(with(&["extra"], json!(1))),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        api(&app, "GET", "/api/v2/log-streams", None)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Created: the authorization is never answered.
    let (status, s) = call(&app, "POST", "/api/v2/log-streams", Some(good()), token).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("lst_"));
    assert_eq!(s["type"], "http");
    assert_eq!(
        s["sink"],
        json!({"httpEndpoint": "https://siem.example.com/in",
        "httpContentType": "application/json", "httpContentFormat": "JSONLINES"})
    );
    assert_eq!(
        s["filters"],
        json!([{"type": "category", "name": "auth.login.fail"}])
    );
    let one = api(&app, "GET", &format!("/api/v2/log-streams/{id}"), None).await;
    assert_eq!(one, s);
    let list = api(&app, "GET", "/api/v2/log-streams", None).await;
    assert_eq!(list, json!([s]));
    let patched = api(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"name": "SIEM 2", "sink": {"httpContentFormat": "JSONARRAY"}, "filters": []})),
    )
    .await;
    assert_eq!(patched["name"], "SIEM 2");
    assert_eq!(patched["sink"]["httpContentFormat"], "JSONARRAY");
    assert_eq!(patched["filters"], json!([]));
    for answer in [&s, &one, &list, &patched] {
        assert!(!answer.to_string().contains("top-s3cret-value"), "{answer}");
        assert!(
            !answer.to_string().contains("httpAuthorization"),
            "{answer}"
        );
    }
    // Kept through the PATCH that left it out, and encrypted at rest.
    let stored = h.state.store.find_log_stream(&id).await.unwrap().unwrap();
    assert_eq!(
        stored
            .sink
            .authorization
            .as_ref()
            .map(|a| a.expose().to_owned())
            .as_deref(),
        Some("Bearer top-s3cret-value")
    );
    let mut at_rest = Vec::new();
    for place in h.at_rest() {
        at_rest.extend(place.read().await);
    }
    assert!(
        !contains(&at_rest, "top-s3cret-value"),
        "the authorization is stored as it is"
    );
    // `null` removes it.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"sink": {"httpAuthorization": null}})),
    )
    .await;
    let stored = h.state.store.find_log_stream(&id).await.unwrap().unwrap();
    assert!(stored.sink.authorization.is_none());
    // Suspended is Latch's to set.
    let (status, e) = call(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"status": "suspended"})),
        token,
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let (status, e) = call(
        &app,
        "PATCH",
        &format!("/api/v2/log-streams/{id}"),
        Some(json!({"sink": {"httpEndpoint": "https://192.168.0.1/"}})),
        token,
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sink.httpEndpoint"))
    );

    // 404s.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"name": "x"}))),
        ("DELETE", None),
    ] {
        let (status, _) = call(&app, method, "/api/v2/log-streams/lst_nope", body, token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }

    // Scopes.
    let read = management_token(&h, "read:log_streams");
    let t = Some(read.as_str());
    assert_eq!(
        call(&app, "GET", "/api/v2/log-streams", None, t).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "/api/v2/log-streams", Some(good()), t)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let path = format!("/api/v2/log-streams/{id}");
    assert_eq!(
        call(&app, "PATCH", &path, Some(json!({"name": "y"})), t)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "DELETE", &path, None, t).await.0,
        StatusCode::FORBIDDEN
    );
    let other = management_token(
        &h,
        "read:logs create:log_streams update:log_streams delete:log_streams",
    );
    let t = Some(other.as_str());
    assert_eq!(
        call(&app, "GET", &path, None, t).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "PATCH", &path, Some(json!({"status": "paused"})), t)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "DELETE", &path, None, t).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, "DELETE", &path, None, t).await.0,
        StatusCode::NOT_FOUND
    );

    // Each write is a `sapi` event naming its caller and the stream; a PATCH's names the
    // members it gave, never a value.
    let sapi: Vec<Value> = log(&app, "sapi")
        .await
        .into_iter()
        .filter(|e| e["description"].as_str().unwrap().contains("log stream"))
        .collect();
    assert_eq!(
        sapi.iter()
            .map(|e| e["description"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "Create a log stream",
            "Update a log stream",
            "Update a log stream",
            "Update a log stream",
            "Delete a log stream"
        ]
    );
    for e in &sapi {
        assert_eq!(e["details"]["stream_id"], id.as_str(), "{e}");
        assert!(!e.to_string().contains("top-s3cret-value"), "{e}");
    }
    assert!(sapi[0]["details"].get("changed").is_none());
    assert_eq!(
        sapi[1]["details"]["changed"],
        json!(["name", "sink.httpContentFormat", "filters"])
    );
    assert_eq!(
        sapi[2]["details"]["changed"],
        json!(["sink.httpAuthorization"])
    );
    assert_eq!(sapi[3]["details"]["changed"], json!(["status"]));
    assert!(sapi[4]["details"].get("changed").is_none());
}
on_all_backends!(api_checks_and_redacts, api_checks_and_redacts);

/// A PATCH that moves the endpoint to another origin must say what becomes of the stored
/// authorization (so it is never sent to a host it was not given for); a PATCH that gives no
/// status leaves the one the workers set.
async fn patches_guard_the_secret_and_the_status(h: Harness) {
    let app = app!(h);
    let token = Some(crate::support::TOKEN);
    let (status, s) = call(
        &app,
        "POST",
        "/api/v2/log-streams",
        Some(json!({"name": "SIEM", "type": "http",
            "sink": {"httpEndpoint": "https://siem.example.com/in",
                "httpAuthorization": "Bearer kept-s3cret"}})),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/log-streams/{id}");
    let stored = async || h.state.store.find_log_stream(&id).await.unwrap().unwrap();
    let authorization = async || {
        stored()
            .await
            .sink
            .authorization
            .map(|a| a.expose().to_owned())
    };

    // Another host or port, the authorization left out: refused, nothing changed.
    for endpoint in [
        "https://attacker.example/in",
        "https://siem.example.com:8443/in",
        "https://siem.example.com.attacker.example/in",
    ] {
        let (status, e) = call(
            &app,
            "PATCH",
            &path,
            Some(json!({"name": "moved", "sink": {"httpEndpoint": endpoint}})),
            token,
        )
        .await;
        assert_eq!(
            (status, e["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("sink.httpAuthorization")),
            "{endpoint}: {e}"
        );
    }
    let kept = stored().await;
    assert_eq!(
        (kept.name.as_str(), kept.sink.endpoint.as_str()),
        ("SIEM", "https://siem.example.com/in")
    );
    // The same origin (another path, the host in capitals, the default port spelled out): the
    // authorization stays.
    for endpoint in [
        "https://SIEM.example.com/v2/in",
        "https://siem.example.com:443/in",
    ] {
        api(
            &app,
            "PATCH",
            &path,
            Some(json!({"sink": {"httpEndpoint": endpoint}})),
        )
        .await;
        assert_eq!(authorization().await.as_deref(), Some("Bearer kept-s3cret"));
    }
    assert_eq!(stored().await.sink.endpoint, "https://siem.example.com/in");
    // Another host with its own authorization, or with none.
    let moved = api(
        &app,
        "PATCH",
        &path,
        Some(
            json!({"sink": {"httpEndpoint": "https://logs.example.net/in",
            "httpAuthorization": "Bearer new-s3cret"}}),
        ),
    )
    .await;
    assert_eq!(moved["sink"]["httpEndpoint"], "https://logs.example.net/in");
    assert_eq!(authorization().await.as_deref(), Some("Bearer new-s3cret"));
    api(
        &app,
        "PATCH",
        &path,
        Some(
            json!({"sink": {"httpEndpoint": "https://siem.example.com/in",
            "httpAuthorization": null}}),
        ),
    )
    .await;
    assert_eq!(authorization().await, None);
    assert_eq!(stored().await.sink.endpoint, "https://siem.example.com/in");

    // A worker suspends the stream (it has failed for a day). A PATCH with no status keeps that,
    // reason and all; `active` resumes it.
    assert!(h.state.store.count_log_stream_events(&id).await.unwrap() > 0);
    let now = h.state.clock.now();
    let lease = now + time::Duration::seconds(60);
    let (claimed, _) = h
        .state
        .store
        .claim_log_stream(now, lease, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    assert!(
        h.state
            .store
            .fail_log_stream(
                &id,
                lease,
                &latch_core::model::LogStreamFailure {
                    failures: 1,
                    failing_since: now - time::Duration::days(1),
                    error: "HTTP 500".into(),
                    next_attempt_at: now,
                    suspend: true,
                },
            )
            .await
            .unwrap()
    );
    let renamed = api(
        &app,
        "PATCH",
        &path,
        Some(json!({"name": "renamed", "filters": [], "sink": {"httpContentFormat": "JSONARRAY"}})),
    )
    .await;
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(renamed["status"], "suspended", "{renamed}");
    assert_eq!(renamed["suspended_reason"], "HTTP 500");
    let resumed = api(&app, "PATCH", &path, Some(json!({"status": "active"}))).await;
    assert_eq!(resumed["status"], "active");
    assert!(
        resumed.get("suspended_reason").is_none() && resumed.get("last_error").is_none(),
        "{resumed}"
    );
    let back = stored().await;
    assert_eq!((back.failures, back.next_attempt_at), (0, None));

    // Custom headers: their names are answered, their values never (nor stored as they are);
    // moving the endpoint needs them restated too.
    let with_headers = api(
        &app,
        "PATCH",
        &path,
        Some(json!({"isPriority": false, "sink": {"httpCustomHeaders": [
            {"header": "X-Api-Key", "value": "hdr-s3cret-value"},
            {"header": "X-Tenant", "value": "acme"}]}})),
    )
    .await;
    let one = api(&app, "GET", &path, None).await;
    for answer in [&with_headers, &one] {
        assert_eq!(
            answer["sink"]["httpCustomHeaders"],
            json!([{"header": "X-Api-Key"}, {"header": "X-Tenant"}]),
            "{answer}"
        );
        assert!(!answer.to_string().contains("hdr-s3cret-value"));
    }
    let headers = stored().await.sink.headers;
    assert_eq!(
        headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect::<Vec<_>>(),
        [("X-Api-Key", "hdr-s3cret-value"), ("X-Tenant", "acme")]
    );
    let mut at_rest = Vec::new();
    for place in h.at_rest() {
        at_rest.extend(place.read().await);
    }
    assert!(
        !contains(&at_rest, "hdr-s3cret-value"),
        "a custom header's value is stored as it is"
    );
    let (status, e) = call(
        &app,
        "PATCH",
        &path,
        Some(
            json!({"sink": {"httpEndpoint": "https://logs.example.net/in",
            "httpAuthorization": null}}),
        ),
        token,
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sink.httpCustomHeaders")),
        "{e}"
    );
    assert_eq!(stored().await.sink.headers.len(), 2);
    let moved = api(
        &app,
        "PATCH",
        &path,
        Some(
            json!({"sink": {"httpEndpoint": "https://logs.example.net/in",
            "httpAuthorization": null, "httpCustomHeaders": null}}),
        ),
    )
    .await;
    assert!(moved["sink"].get("httpCustomHeaders").is_none(), "{moved}");
    assert!(stored().await.sink.headers.is_empty());
}
on_all_backends!(
    patches_guard_the_secret_and_the_status,
    patches_guard_the_secret_and_the_status
);

/// An admin's request to the UI: the status, the `Location` and the page.
async fn ui<S, B>(
    app: &S,
    jar: &crate::body_limits::Jar,
    uri: &str,
    form: Option<&[(&str, &str)]>,
) -> (u16, Option<String>, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    use actix_web::test;
    let req = match form {
        Some(f) => test::TestRequest::post().uri(uri).set_form(f),
        None => test::TestRequest::get().uri(uri),
    };
    let res = test::call_service(
        app,
        req.insert_header(("cookie", jar.header())).to_request(),
    )
    .await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let page = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    (status, location, page)
}

async fn admin_ui_page(test_name: &str, backends: crate::support::Backends) {
    use crate::body_limits::{ADMIN_PASSWORD, admin_cookies};
    let Some(h) = crate::support::harness_with(
        test_name,
        backends,
        &[("LATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await
    else {
        return;
    };
    let app = app!(h);
    let jar = admin_cookies(&app).await;
    let (s, _, page) = ui(&app, &jar, "/admin/log-streams", None).await;
    assert_eq!(s, 200);
    assert!(page.contains("No log stream yet"), "{page}");
    assert!(
        page.contains("aria-current=\"page\">Log streams</a>"),
        "the nav names the page"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let form = |endpoint: &'static str| {
        vec![
            ("name", "SIEM"),
            ("endpoint", endpoint),
            ("authorization", "Bearer ui-s3cret"),
            ("content_type", "application/json"),
            ("format", "JSONARRAY"),
            ("filters", "auth.login.fail"),
            ("filters", "scim.event"),
        ]
    };
    // Without the CSRF token: refused, nothing created.
    let (s, _, _) = ui(
        &app,
        &jar,
        "/admin/log-streams",
        Some(&form("https://siem.example.com/in")),
    )
    .await;
    assert_eq!(s, 403);
    // A refused URL lands on its field, the values kept (but the authorization).
    let mut bad = form("http://siem.example.com/in");
    bad.push(("csrf", &csrf));
    let (s, _, page) = ui(&app, &jar, "/admin/log-streams", Some(&bad)).await;
    assert_eq!(s, 400);
    assert!(page.contains("id=\"f-endpoint-error\""), "{page}");
    assert!(page.contains("value=\"http://siem.example.com/in\""));
    assert!(!page.contains("ui-s3cret"));
    assert!(
        api(&app, "GET", "/api/v2/log-streams", None)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Created.
    let mut good = form("https://siem.example.com/in");
    good.push(("csrf", &csrf));
    let (s, to, _) = ui(&app, &jar, "/admin/log-streams", Some(&good)).await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some("/admin/log-streams?done=created"))
    );
    let list = api(&app, "GET", "/api/v2/log-streams", None).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["sink"]["httpContentFormat"], "JSONARRAY");
    assert_eq!(
        list[0]["filters"],
        json!([{"type": "category", "name": "auth.login.fail"}, {"type": "category", "name": "scim.event"}])
    );
    let (_, _, page) = ui(&app, &jar, "/admin/log-streams?done=created", None).await;
    assert!(page.contains("Log stream created."));
    assert!(page.contains("https://siem.example.com/in") && page.contains(&id));
    assert!(
        !page.contains("ui-s3cret"),
        "the authorization is never shown"
    );
    // Pause, resume, delete.
    let status = format!("/admin/log-streams/{id}/status");
    let (s, _, _) = ui(
        &app,
        &jar,
        &status,
        Some(&[("csrf", &csrf), ("status", "paused")]),
    )
    .await;
    assert_eq!(s, 303);
    assert_eq!(
        api(&app, "GET", &format!("/api/v2/log-streams/{id}"), None).await["status"],
        "paused"
    );
    let (_, _, page) = ui(&app, &jar, "/admin/log-streams", None).await;
    assert!(page.contains(">Resume</button>"), "{page}");
    let (s, _, _) = ui(
        &app,
        &jar,
        &status,
        Some(&[("csrf", &csrf), ("status", "active")]),
    )
    .await;
    assert_eq!(s, 303);
    assert_eq!(
        api(&app, "GET", &format!("/api/v2/log-streams/{id}"), None).await["status"],
        "active"
    );
    let delete = format!("/admin/log-streams/{id}/delete");
    let (s, _, _) = ui(&app, &jar, &delete, Some(&[("status", "x")])).await;
    assert_eq!(s, 403);
    let (s, _, _) = ui(&app, &jar, &delete, Some(&[("csrf", &csrf)])).await;
    assert_eq!(s, 303);
    assert!(
        api(&app, "GET", "/api/v2/log-streams", None)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Each change names the admin who made it.
    let sapi = log(&app, "sapi").await;
    let mine: Vec<&Value> = sapi
        .iter()
        .filter(|e| e["description"].as_str().unwrap().contains("log stream"))
        .collect();
    assert_eq!(mine.len(), 4);
    assert!(
        mine.iter().all(|e| e["details"]["actor"] != "admin-token"),
        "{mine:?}"
    );
}

#[actix_web::test]
async fn admin_ui_page_embedded() {
    admin_ui_page(
        "log_streams_admin_ui_embedded",
        crate::support::Backends::Embedded,
    )
    .await;
}

#[actix_web::test]
async fn admin_ui_page_postgres_redis() {
    admin_ui_page(
        "log_streams_admin_ui_postgres_redis",
        crate::support::Backends::Production,
    )
    .await;
}
