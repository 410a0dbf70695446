//! SAML Single Logout end to end, with peers nobody here wrote: a real SAML SP (PyPI `pysaml2`,
//! `peers/saml_sp.py`) signs a user in through Latch's SAML IdP (`/samlp/{client_id}`), the user
//! signs in to an OpenID Connect app by SSO, and Chromium (npm `playwright-core`,
//! `peers/samlp-e2e.mjs`) runs both Single Logouts against the real `latch` binary on loopback:
//!
//! - SP-initiated: the SP's LogoutRequest ends the session; Latch's logout page loads the OIDC
//!   app's front-channel URL in a hidden frame (its back-channel URL gets a logout token) and
//!   continues to the SP's `/slo` with a LogoutResponse the SP verifies;
//! - RP-initiated, the reverse: the OIDC app's `/oidc/logout` with its ID token; the logout page
//!   carries the SP's signed LogoutRequest in a hidden frame, the SP verifies it, ends its
//!   session and answers Latch with a LogoutResponse, and the page continues to the app's
//!   post-logout redirect.
//!
//! The `slo` events must count exactly what was sent. Skipped, loudly, when node, Chromium,
//! playwright-core or the pysaml2 venv are missing.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::oidc::{PASSWORD, urlencode};
use crate::peers::peers_dir;
use crate::process::{Latch, free_port};
use crate::support::{Backends, Remote, api, env_for, eventually, read_request};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// What is missing to run the browser and the SP, if anything.
fn missing_tools() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let peers = peers_dir();
    [
        (!node, "node".to_owned()),
        (!Path::new(&chromium).exists(), chromium),
        (
            !peers.join("node_modules/playwright-core").exists(),
            "peers/node_modules/playwright-core (scripts/install-peers.sh)".to_owned(),
        ),
        (
            !peers.join(".venv/bin/python").exists(),
            "peers/.venv with pysaml2 (scripts/install-peers.sh)".to_owned(),
        ),
    ]
    .into_iter()
    .filter(|(gone, _)| *gone)
    .map(|(_, what)| what)
    .reduce(|a, b| format!("{a}, {b}"))
}

/// The pysaml2 SP: its base URL; its log (stderr) is kept in a file for failure messages.
struct SamlSp {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for SamlSp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SamlSp {
    /// Starts the SP on a free port and waits for its `ready` line. The IdP metadata URL is set
    /// later (`/test/idp-metadata-url`), once the Latch app exists.
    async fn start(dir: &Path) -> Self {
        let log = dir.join("saml_sp.log");
        let mut child = Command::new(peers_dir().join(".venv/bin/python"))
            .arg("saml_sp.py")
            .current_dir(peers_dir())
            .env("SAML_SP_PORT", "0")
            .env("SAML_IDP_METADATA_URL", "http://127.0.0.1:9/not-yet")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await
        .unwrap();
        let mut sp = Self {
            child,
            base: String::new(),
            log,
        };
        match line.trim().strip_prefix("ready ") {
            Some(base) => sp.base = base.to_owned(),
            None => panic!("saml_sp.py did not start: {line:?}\n{}", sp.log_text()),
        }
        sp
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn state(&self) -> Value {
        reqwest::get(format!("{}/test/state", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// One request a [`Recorder`] answered.
#[derive(Clone, Debug)]
struct Hit {
    method: String,
    target: String,
    body: String,
}

/// The OIDC app on loopback: its callback, post-logout redirect, front-channel and back-channel
/// logout URLs. Every request is recorded and answered 200 with a small page.
struct Recorder {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Recorder {
    async fn start() -> Self {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let log = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let hit = Hit {
                        body: req.body_text(),
                        method: req.method,
                        target: req.path,
                    };
                    log.lock().unwrap().push(hit);
                    let body = "<!doctype html><title>app</title><p>app";
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Self { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The query pairs of every GET of `path`.
    fn gets(&self, path: &str) -> Vec<Vec<(String, String)>> {
        self.hits()
            .iter()
            .filter(|h| h.method == "GET")
            .filter_map(|h| url::Url::parse(&format!("{}{}", self.url, h.target)).ok())
            .filter(|u| u.path() == path)
            .map(|u| u.query_pairs().map(|(k, v)| (k.into(), v.into())).collect())
            .collect()
    }

    /// Every `logout_token` POSTed to `path`.
    fn logout_tokens(&self, path: &str) -> Vec<String> {
        self.hits()
            .iter()
            .filter(|h| h.method == "POST" && h.target == path)
            .filter_map(|h| {
                url::form_urlencoded::parse(h.body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
            })
            .collect()
    }
}

/// `binding`: how the SP sends its AuthnRequest and LogoutRequest, and how Latch sends the SAML
/// app its LogoutRequest and LogoutResponse (the app's `binding`).
async fn samlp_single_logout(backends: Backends, test: &str, binding: &str) {
    if let Some(missing) = missing_tools() {
        eprintln!("SKIPPED {test}: missing {missing}");
        return;
    }
    let Some((env, dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let at = Remote(&http, &base);
    let disc = api(&at, "GET", "/.well-known/openid-configuration", None).await;
    let issuer = disc["issuer"].as_str().unwrap().to_owned();
    let sp = SamlSp::start(dir.path()).await;
    let app = Recorder::start().await;

    // The SAML app: the SP's ACS, entity id, certificate and SLO; then the SP imports Latch's
    // metadata for it.
    let cert = reqwest::get(format!("{}/cert", sp.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let saml = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "pysaml2 SP", "callbacks": [format!("{}/acs", sp.base)],
            "addons": {"samlp": {"audience": format!("{}/metadata", sp.base), "signingCert": cert,
                "binding": binding, "logout": {"callback": format!("{}/slo", sp.base)}}}}),
        ),
    )
    .await;
    let saml_id = saml["client_id"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{}/test/idp-metadata-url", sp.base))
        .form(&[("url", format!("{base}/samlp/metadata/{saml_id}"))])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // The OIDC app, with front- and back-channel logout URLs.
    let (cb, bye) = (format!("{}/cb", app.url), format!("{}/bye", app.url));
    let oidc = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "OIDC app", "callbacks": [cb], "allowed_logout_urls": [bye],
            "oidc_logout": {"frontchannel_logout_url": format!("{}/fc", app.url),
                "backchannel_logout_urls": [format!("{}/bc", app.url)],
                "backchannel_logout_session_required": true}}),
        ),
    )
    .await;
    let oidc_id = oidc["client_id"].as_str().unwrap().to_owned();
    let email = format!("samlp-{}@example.com", latch_testkit::env::unique());
    let user = api(
        &at,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();

    let vars = [
        ("LATCH_URL", base.clone()),
        ("SP_URL", sp.base.clone()),
        ("SAML_ID", saml_id.clone()),
        ("USER_EMAIL", email.clone()),
        ("PASSWORD", PASSWORD.to_owned()),
        ("OIDC_ID", oidc_id.clone()),
        (
            "OIDC_SECRET",
            oidc["client_secret"].as_str().unwrap().to_owned(),
        ),
        ("OIDC_CB", cb.clone()),
        ("BYE", bye.clone()),
        (
            "SP_BINDING",
            if binding == POST { "post" } else { "redirect" }.to_owned(),
        ),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("samlp-e2e.mjs")
            .current_dir(peers_dir())
            .envs(vars)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "samlp-e2e.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let state = sp.state().await;
    let ctx = format!(
        "report: {report:#}\nSP state: {state:#}\nSP log:\n{}",
        sp.log_text()
    );
    assert!(out.status.success(), "the browser run failed\n{ctx}");
    let (fwd, rev) = (&report["forward"], &report["reverse"]);

    // Sign-ins: the SP's ACS page both times; the OIDC app by SSO, no page in between.
    for run in [fwd, rev] {
        assert_eq!(run["acsText"], format!("Signed in as {user_id}"), "{ctx}");
        let sso = run["ssoNavigations"].as_array().unwrap();
        assert_eq!(sso.len(), 1, "{ctx}");
        assert!(sso[0].as_str().unwrap().starts_with(&cb), "{ctx}");
        assert_eq!(run["sub"], user_id.as_str());
    }
    let (fwd_sid, rev_sid) = (fwd["sid"].as_str().unwrap(), rev["sid"].as_str().unwrap());
    assert_ne!(fwd_sid, rev_sid, "two sessions");
    let signed_in = state["signed_in"].as_array().unwrap();
    assert_eq!(signed_in.len(), 2, "{ctx}");
    for s in signed_in {
        assert_eq!(s["name_id"], user_id.as_str());
        assert_eq!(s["name_id_format"], UNSPECIFIED);
        assert_eq!(s["issuer"], issuer.as_str());
        assert_eq!(s["active"], false, "both sessions ended at the SP: {ctx}");
    }
    assert_eq!(state["errors"], json!([]), "{ctx}");

    // SP-initiated: the page loaded the OIDC app's front-channel URL (in the browser, with iss
    // and the session's sid), then went on to the SP's /slo, which verified Latch's
    // LogoutResponse (Success) to its LogoutRequest.
    let frames = fwd["logoutFrames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "{ctx}");
    assert!(
        frames[0]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/fc?", app.url)),
        "{ctx}"
    );
    assert_eq!(frames[0]["status"], 200, "{ctx}");
    assert!(
        fwd["finalUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/slo", sp.base)),
        "{ctx}"
    );
    assert!(
        fwd["finalText"].as_str().unwrap().contains("Signed out"),
        "{ctx}"
    );
    assert!(
        fwd["elapsedMs"].as_u64().unwrap() < 4500,
        "continued once the frame loaded, not by the 5 s fallback: {ctx}"
    );
    let responses = state["logout_responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{ctx}");
    let lr = &responses[0];
    assert_eq!(lr["verified"], true, "{ctx}");
    assert_eq!(lr["status"], SUCCESS, "{ctx}");
    assert_eq!(lr["issuer"], issuer.as_str());
    assert_eq!(lr["binding"], binding);
    assert_ne!(lr["pysaml2_verified"], false, "pysaml2's own check: {ctx}");
    let sp_request_id = lr["in_response_to"].as_str().expect("InResponseTo");
    let fc = app.gets("/fc");
    assert_eq!(
        fc.len(),
        1,
        "only the SP-initiated logout frames it: {fc:?}"
    );
    assert_eq!(
        fc[0],
        [
            ("iss".to_owned(), issuer.clone()),
            ("sid".to_owned(), fwd_sid.to_owned()),
        ]
    );

    // RP-initiated: the page went on to the post-logout redirect; the SP got Latch's signed
    // LogoutRequest in the frame, verified it and ended the session it names.
    assert_eq!(rev["finalUrl"], format!("{bye}?state=bye"), "{ctx}");
    assert!(
        rev["elapsedMs"].as_u64().unwrap() < 4500,
        "continued once the frame loaded, not by the 5 s fallback: {ctx}"
    );
    assert!(
        app.gets("/bye")
            .contains(&vec![("state".to_owned(), "bye".to_owned())])
    );
    let requests = state["logout_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{ctx}");
    let lq = &requests[0];
    assert_eq!(lq["verified"], true, "{ctx}");
    assert_eq!(lq["matched"], true, "{ctx}");
    assert_eq!(lq["issuer"], issuer.as_str());
    assert_eq!(lq["binding"], binding);
    assert_eq!(lq["name_id"], user_id.as_str());
    assert_eq!(lq["name_id_format"], UNSPECIFIED);
    assert_eq!(
        lq["session_indexes"],
        json!([signed_in[1]["session_index"]])
    );
    assert_ne!(lq["pysaml2_verified"], false, "pysaml2's own check: {ctx}");
    assert_eq!(lq["response_binding"], binding, "{ctx}");
    let latch_request_id = lq["id"].as_str().unwrap();

    // Back-channel: one logout token per logout, for that logout's session.
    let jwks = api(&at, "GET", "/.well-known/jwks.json", None).await;
    let tokens = eventually("the back-channel logout tokens", async || {
        let t = app.logout_tokens("/bc");
        (t.len() >= 2).then_some(t)
    })
    .await;
    let sids: Vec<String> = tokens
        .iter()
        .map(|t| {
            let c = crate::backchannel::verify_logout_token(&jwks, t, &oidc_id, &issuer);
            assert_eq!(c["sub"], user_id.as_str());
            c["sid"].as_str().unwrap().to_owned()
        })
        .collect();
    let sent_to = |sid: &str| sids.iter().filter(|s| *s == sid).count();
    let (bc_fwd, bc_rev) = (sent_to(fwd_sid), sent_to(rev_sid));
    assert_eq!(bc_fwd, 1, "{sids:?}");
    assert_eq!(bc_fwd + bc_rev, sids.len(), "{sids:?}");

    // The slo events count exactly what was sent.
    let logs = api(
        &at,
        "GET",
        &format!("/api/v2/logs?type=slo&user_id={}", urlencode(&user_id)),
        None,
    )
    .await;
    let logs = logs.as_array().unwrap();
    assert_eq!(logs.len(), 2, "{logs:#?}");
    let by = |cid: &str| {
        logs.iter()
            .find(|l| l["client_id"] == cid)
            .unwrap_or_else(|| panic!("no slo event from {cid}: {logs:#?}"))["details"]
            .clone()
    };
    let (d_fwd, d_rev) = (by(&saml_id), by(&oidc_id));
    assert_eq!(d_fwd["protocol"], "samlp");
    assert_eq!(d_fwd["logout_request_id"], sp_request_id);
    assert_eq!(d_fwd["status"], SUCCESS);
    assert_eq!(
        d_fwd["TotalOidcLogoutRequests"],
        fc.len() + bc_fwd,
        "{d_fwd:#}"
    );
    assert_eq!(d_fwd["TotalSamlLogoutRequests"], 0, "{d_fwd:#}");
    assert_eq!(d_fwd["frontchannel"], json!([oidc_id]));
    assert_eq!(d_rev["TotalOidcLogoutRequests"], bc_rev, "{d_rev:#}");
    assert_eq!(
        d_rev["TotalSamlLogoutRequests"],
        requests.len(),
        "{d_rev:#}"
    );
    assert_eq!(
        d_rev["saml"],
        json!([{"client_id": saml_id, "request_id": latch_request_id}])
    );
    let sessions = api(
        &at,
        "GET",
        &format!("/api/v2/users/{}/sessions", urlencode(&user_id)),
        None,
    )
    .await;
    assert_eq!(sessions["sessions"], json!([]), "{sessions:#}");

    // The SP's LogoutResponse (a redirect inside the hidden frame) reached Latch, which logged
    // it as acknowledged, and nothing on the way was refused by the browser.
    let frames = rev["logoutFrames"].as_array().unwrap();
    let to_latch = frames
        .iter()
        .find(|f| {
            f["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{base}/samlp/{saml_id}/logout"))
        })
        .unwrap_or_else(|| panic!("the SP's LogoutResponse never reached Latch: {ctx}"));
    assert_eq!(to_latch["status"], 200, "{ctx}");
    let acks = api(
        &at,
        "GET",
        &format!("/api/v2/logs?type=saml_logout_response&client_id={saml_id}"),
        None,
    )
    .await;
    assert_eq!(acks.as_array().unwrap().len(), 1, "{acks:#}");
    assert_eq!(acks[0]["details"]["in_response_to"], latch_request_id);
    assert_eq!(acks[0]["details"]["acknowledged"], true);
    assert_eq!(report["consoleErrors"], json!([]), "{ctx}");
}

#[tokio::test]
async fn samlp_e2e_single_logout_on_the_embedded_default() {
    samlp_single_logout(
        Backends::Embedded,
        "samlp_e2e_single_logout_on_the_embedded_default",
        REDIRECT,
    )
    .await;
}

#[tokio::test]
async fn samlp_e2e_single_logout_on_postgres_and_redis() {
    samlp_single_logout(
        Backends::Production,
        "samlp_e2e_single_logout_on_postgres_and_redis",
        REDIRECT,
    )
    .await;
}

/// The same over HTTP-POST: the SP posts its AuthnRequest and LogoutRequest (Latch answers each
/// with a 303 to the same message as a GET), Latch's LogoutRequest to the SP is a form its frame
/// posts, and the LogoutResponses go back and forth as forms.
#[tokio::test]
async fn samlp_e2e_single_logout_over_http_post() {
    samlp_single_logout(
        Backends::Embedded,
        "samlp_e2e_single_logout_over_http_post",
        POST,
    )
    .await;
}
