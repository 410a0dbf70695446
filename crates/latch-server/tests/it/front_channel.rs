//! OpenID Connect Front-Channel Logout in-process, on both backend pairs: the logout page's
//! frames, link and CSP, the `slo` event's counts, `frontchannel_logout_session_required`,
//! discovery and the management API's field.

use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::oidc::{CB, PASSWORD, authorize_uri, exchange, sign_in, urlencode};
use crate::support::{Harness, Target, api};
use crate::{app, on_all_backends};

const CB_B: &str = "http://127.0.0.1:4000/callback";
const BYE: &str = "http://127.0.0.1:3000/bye";
const FC_A: &str = "http://127.0.0.1:3000/fc";
const FC_B: &str = "http://127.0.0.1:4000/fc?tenant=t1";

/// The `src` of every `<iframe>` of a page, unescaped.
fn frames(page: &Page) -> Vec<url::Url> {
    page.body
        .split("<iframe")
        .skip(1)
        .map(|f| {
            let start = f.find("src=\"").expect("src") + 5;
            let end = f[start..].find('"').expect("end of src");
            url::Url::parse(&f[start..start + end].replace("&#38;", "&")).expect("a URL")
        })
        .collect()
}

fn query(u: &url::Url) -> Vec<(String, String)> {
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn directive<'a>(page: &'a Page, name: &str) -> Option<&'a str> {
    page.headers
        .get("content-security-policy")?
        .to_str()
        .ok()?
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name)?.strip_prefix(' '))
}

async fn front_channel_logout(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();

    // Discovery says so.
    let mut b = Browser::new();
    let disc = b
        .get(&app, "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(disc["frontchannel_logout_supported"], true);
    assert_eq!(disc["frontchannel_logout_session_supported"], true);

    // Two apps with front-channel URLs; session_required defaults to true.
    let mk = |name: &str, cb: &str, fc: &str| {
        json!({"name": name, "callbacks": [cb], "allowed_logout_urls": [BYE],
            "oidc_logout": {"frontchannel_logout_url": fc}})
    };
    let a = api(&app, "POST", "/api/v2/clients", Some(mk("A", CB, FC_A))).await;
    let bb = api(&app, "POST", "/api/v2/clients", Some(mk("B", CB_B, FC_B))).await;
    assert_eq!(bb["oidc_logout"]["frontchannel_logout_url"], FC_B);
    assert_eq!(
        bb["oidc_logout"]["frontchannel_logout_session_required"],
        true
    );
    let pair = |v: &Value| {
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    };
    let (a, bb) = (pair(&a), pair(&bb));
    // The URL is validated like other app URLs.
    for bad in [
        "http://app.example.com/fc",
        "https://app.example.com/fc#x",
        "ftp://app.example.com/fc",
    ] {
        let (status, body) = app
            .send(
                "PATCH",
                &format!("/api/v2/clients/{}", bb.0),
                Some(json!({"oidc_logout": {"frontchannel_logout_url": bad}})),
                Some(crate::support::TOKEN),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "oidc_logout.frontchannel_logout_url");
    }
    let email = format!("u{}@example.com", latch_testkit::env::unique());
    let user = api(
        &app,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();

    // Signs in to A with the form and to B by SSO; A's ID token and B's sid.
    let sign_in_both = async |b: &mut Browser| -> (String, String) {
        let done = sign_in(&app, b, &authorize_uri(&a.0, CB, ""), &email, PASSWORD).await;
        let t = exchange(&app, b, &done.param("code").unwrap(), CB, &a)
            .await
            .json();
        let sso = b.get(&app, &authorize_uri(&bb.0, CB_B, "")).await;
        let tb = exchange(&app, b, &sso.param("code").expect("SSO code"), CB_B, &bb)
            .await
            .json();
        let claims = |t: &Value| -> Value {
            let payload = t["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
            use base64::Engine;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            serde_json::from_slice(&raw).unwrap()
        };
        let sid_b = claims(&tb)["sid"].as_str().unwrap().to_owned();
        assert_eq!(claims(&t)["sid"], sid_b.as_str(), "one session, one sid");
        (t["id_token"].as_str().unwrap().to_owned(), sid_b)
    };

    // (a) A logs out with its ID token: a page framing B's URL only, then on to A's redirect.
    let (id_token, sid_b) = sign_in_both(&mut b).await;
    let page = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
                urlencode(BYE)
            ),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !b.cookies.contains_key("latch_session"),
        "the cookie is cleared"
    );
    let f = frames(&page);
    assert_eq!(f.len(), 1, "{}", page.body);
    assert_eq!(f[0].origin().ascii_serialization(), "http://127.0.0.1:4000");
    assert_eq!(f[0].path(), "/fc");
    assert_eq!(
        query(&f[0]),
        [
            ("tenant".to_owned(), "t1".to_owned()),
            ("iss".to_owned(), issuer.clone()),
            ("sid".to_owned(), sid_b.clone()),
        ]
    );
    assert!(
        page.body
            .contains(&format!("href=\"{BYE}?state=bye\">Continue</a>")),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("content=\"5;url={BYE}?state=bye\""))
    );
    assert_eq!(directive(&page, "frame-src"), Some("http://127.0.0.1:4000"));
    assert_eq!(directive(&page, "default-src"), Some("'none'"));
    let nonce = directive(&page, "script-src").expect("script-src");
    assert!(nonce.starts_with("'nonce-"), "{nonce}");
    assert!(page.body.contains(&format!(
        "<script nonce=\"{}\">",
        nonce.trim_start_matches("'nonce-").trim_end_matches('\'')
    )));
    assert_eq!(page.headers.get("cache-control").unwrap(), "no-store");
    // The session is gone.
    let p = b.get(&app, &authorize_uri(&a.0, CB, "&prompt=none")).await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
    let slo = || async {
        h.state
            .store
            .list_logs(&latch_core::model::LogQuery {
                event_type: Some("slo".into()),
                user_id: Some(latch_core::UserId::new(&user_id)),
                per_page: 10,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let logs = slo().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].details["TotalOidcLogoutRequests"], 1);
    assert_eq!(logs[0].details["frontchannel"], json!([bb.0]));

    // (c) B without `sid`: `iss` only; without a redirect the page says the user is signed out.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/clients/{}", bb.0),
        Some(json!({"oidc_logout": {"frontchannel_logout_session_required": false}})),
    )
    .await;
    let mut b = Browser::new();
    let (id_token, _) = sign_in_both(&mut b).await;
    let page = b
        .get(&app, &format!("/oidc/logout?id_token_hint={id_token}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You are signed out."), "{}", page.body);
    assert!(!page.body.contains("<script"));
    let f = frames(&page);
    assert_eq!(f.len(), 1);
    assert_eq!(
        query(&f[0]),
        [
            ("tenant".to_owned(), "t1".to_owned()),
            ("iss".to_owned(), issuer.clone()),
        ]
    );

    // Logging out without naming the app (the confirmation form) frames both.
    let mut b = Browser::new();
    sign_in_both(&mut b).await;
    let confirm = b.get(&app, "/oidc/logout").await;
    let page = b
        .post_form(
            &app,
            "/oidc/logout",
            &[("confirm", &confirm.field("confirm").unwrap())],
        )
        .await;
    assert_eq!(page.status, 200);
    let f = frames(&page);
    assert_eq!(f.len(), 2, "{}", page.body);
    assert_eq!(
        directive(&page, "frame-src"),
        Some("http://127.0.0.1:3000 http://127.0.0.1:4000")
    );
    let logs = slo().await;
    assert_eq!(logs[0].details["TotalOidcLogoutRequests"], 2);

    // (b) No other app with a front-channel URL: the redirect, as before.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/clients/{}", bb.0),
        Some(json!({"oidc_logout": {"frontchannel_logout_url": null}})),
    )
    .await;
    let mut b = Browser::new();
    let (id_token, _) = sign_in_both(&mut b).await;
    let out = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
                urlencode(BYE)
            ),
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert_eq!(out.location.as_deref(), Some(&*format!("{BYE}?state=bye")));
    assert_eq!(slo().await[0].details["TotalOidcLogoutRequests"], 0);
}
on_all_backends!(front_channel_logout, front_channel_logout);

/// A loopback app that answers every GET with a small page and records the request targets.
struct Recorder {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(target) = head.split_whitespace().nth(1) {
                        log.lock().unwrap().push(target.to_owned());
                    }
                    let body = "<!doctype html><title>app</title><p>app";
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Self { url, seen }
    }
}

/// (f) In Chromium: app B's front-channel URL is really loaded (with `iss` and the session's
/// `sid`) and the browser lands on A's post-logout redirect, before the 5 s fallback.
#[tokio::test]
async fn front_channel_logout_in_a_real_browser() {
    use crate::peers::peers_dir;
    use crate::process::{Latch, free_port};
    use crate::support::{Backends, Remote, TOKEN, env_for};

    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists()
            && peers_dir().join("node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run scripts/install-deps.sh and scripts/install-peers.sh"
    );
    let Some(env) = env_for("front_channel_logout_in_a_real_browser", Backends::Embedded) else {
        return;
    };
    let mut latch = Latch::start(&env.0, free_port());
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let base = latch.base.clone();
    let latch_api = Remote(&http, &base);
    let issuer = api(&latch_api, "GET", "/.well-known/openid-configuration", None).await["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let (app_a, app_b) = (Recorder::start().await, Recorder::start().await);
    let (a_cb, bye, b_cb) = (
        format!("{}/cb", app_a.url),
        format!("{}/bye", app_a.url),
        format!("{}/cb", app_b.url),
    );
    let a = api(
        &latch_api,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "A", "callbacks": [a_cb], "allowed_logout_urls": [bye],
            "oidc_logout": {"frontchannel_logout_url": format!("{}/fc", app_a.url)}}),
        ),
    )
    .await;
    let b = api(
        &latch_api,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "B", "callbacks": [b_cb],
            "oidc_logout": {"frontchannel_logout_url": format!("{}/fc?tenant=t1", app_b.url)}})),
    )
    .await;
    let email = format!("fc-{}@example.com", latch_testkit::env::unique());
    let user = api(
        &latch_api,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": PASSWORD})),
    )
    .await;

    let vars = [
        ("LATCH_URL", base.clone()),
        ("TOKEN", TOKEN.to_owned()),
        ("USER_ID", user["user_id"].as_str().unwrap().to_owned()),
        ("USER_EMAIL", email.clone()),
        ("PASSWORD", PASSWORD.to_owned()),
        ("A_ID", a["client_id"].as_str().unwrap().to_owned()),
        ("A_CB", a_cb.clone()),
        ("B_ID", b["client_id"].as_str().unwrap().to_owned()),
        ("B_CB", b_cb.clone()),
        ("BYE", bye.clone()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg("front-channel-e2e.mjs")
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
            "front-channel-e2e.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "the browser run failed: {report:#}");
    assert_eq!(report["finalUrl"], format!("{bye}?state=bye"), "{report:#}");
    assert!(
        report["elapsedMs"].as_u64().unwrap() < 4500,
        "continued once the frame loaded, not by the 5 s fallback: {report:#}"
    );
    assert_eq!(report["consoleErrors"], json!([]), "{report:#}");
    // B's front-channel URL was loaded, with iss and the session's sid; A's was not (it initiated).
    let sid = report["sid"].as_str().unwrap();
    let b_seen = app_b.seen.lock().unwrap().clone();
    let frames: Vec<url::Url> = b_seen
        .iter()
        .filter(|t| t.starts_with("/fc"))
        .map(|t| url::Url::parse(&format!("{}{t}", app_b.url)).unwrap())
        .collect();
    assert_eq!(frames.len(), 1, "{b_seen:?}");
    assert_eq!(
        query(&frames[0]),
        [
            ("tenant".to_owned(), "t1".to_owned()),
            ("iss".to_owned(), issuer),
            ("sid".to_owned(), sid.to_owned()),
        ]
    );
    let a_seen = app_a.seen.lock().unwrap().clone();
    assert!(!a_seen.iter().any(|t| t.starts_with("/fc")), "{a_seen:?}");
    assert!(a_seen.contains(&"/bye?state=bye".to_owned()), "{a_seen:?}");
}
