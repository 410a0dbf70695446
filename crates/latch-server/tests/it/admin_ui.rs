//! The admin UI: end to end in real headless Chromium (Debian's `chromium`, driven by npm
//! `playwright-core`, both installed by the project's scripts), and its refusals over HTTP
//! (non-admins, forms without a CSRF token, markup in user data).

use std::process::Command;

use serde_json::{Value, json};

use crate::peers::{Agent, Hop, peers_dir};
use crate::process::{Latch, free_port};
use crate::support::{Backends, api, env_for};

const ADMIN_PASSWORD: &str = "Admin-Passw0rd-for-tests";
const APP_CB: &str = "http://127.0.0.1:9/app-cb";

fn start(test: &str, backends: Backends) -> Option<(Latch, crate::support::TestEnv)> {
    let (mut env, dir, schema) = env_for(test, backends)?;
    env.push(("LATCH_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    let latch = Latch::start(&env, free_port());
    Some((latch, (env, dir, schema)))
}

/// Follows redirects (at most 10) from `url`; the last hop and its URL.
async fn follow(agent: &mut Agent, url: &str) -> (String, Hop) {
    let mut next = url.to_owned();
    for _ in 0..10 {
        let hop = agent.send(&next, None).await;
        match &hop.location {
            Some(l) if (300..400).contains(&hop.status) => next = l.clone(),
            _ => return (next, hop),
        }
    }
    panic!("too many redirects from {url}");
}

fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    Some(body.split(&marker).nth(1)?.split('"').next()?.to_owned())
}

/// Signs in on Latch's sign-in page reached from `start`; follows what comes after.
async fn sign_in(
    agent: &mut Agent,
    base: &str,
    start: &str,
    login: &str,
    password: &str,
) -> (String, Hop) {
    let (_, form) = follow(agent, start).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let tx = hidden(&form.body, "tx").expect("the sign-in form");
    let hop = agent
        .send(
            &format!("{base}/login"),
            Some(&[
                ("tx".into(), tx),
                ("email".into(), login.into()),
                ("password".into(), password.into()),
            ]),
        )
        .await;
    let to = hop
        .location
        .clone()
        .unwrap_or_else(|| panic!("no redirect after sign-in: {}", hop.body));
    if to.starts_with(APP_CB) {
        return (to, hop);
    }
    follow(agent, &to).await
}

#[tokio::test]
async fn admin_ui_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists()
            && peers_dir().join("node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run scripts/install-deps.sh and scripts/install-peers.sh (cargo xtask test does the latter)"
    );
    let Some((mut latch, _env)) = start("admin_ui_in_a_real_browser", Backends::Embedded) else {
        return;
    };
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let base = latch.base.clone();
    // An app and a user signed in to it (with an offline refresh token), for the admin to find.
    let rx = crate::backchannel::Receiver::start().await;
    let app = api(
        &http,
        &base,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Existing app", "callbacks": [APP_CB],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/existing", rx.url)]}})),
    )
    .await;
    let (cid, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    let email = format!("ada-{}@example.com", latch_testkit::env::unique());
    let user = api(&http, &base, "POST", "/api/v2/users", Some(json!({"connection": "database", "email": email, "password": "Correct-Horse-9", "name": "Ada Lovelace"}))).await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(APP_CB.as_bytes()).collect();
    let (back, _) = sign_in(
        &mut agent,
        &base,
        &format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20offline_access&state=s"),
        &email,
        "Correct-Horse-9",
    )
    .await;
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&cid, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_CB),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/admin-ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::task::spawn_blocking({
        let (base, email, shots) = (base.clone(), email.clone(), shots.clone());
        move || {
            Command::new("node")
                .arg("admin-e2e.mjs")
                .current_dir(peers_dir())
                .env("LATCH_URL", base)
                .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("USER_EMAIL", email)
                .env("SHOTS_DIR", shots)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "admin-e2e.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "the browser run failed: {report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "sign-in",
            "okta-connection",
            "connections-list",
            "application",
            "user-search",
            "user-detail",
            "clear-sessions",
            "logs",
            "log-detail",
            "keys"
        ]
    );
    assert_eq!(
        report["consoleErrors"],
        json!([]),
        "the pages logged errors (CSP?)"
    );
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, 10, "one screenshot per page in {}", shots.display());

    // The app in the cleared session got its logout token.
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        1,
        "one back-channel logout for the cleared session"
    );
    assert_eq!(
        report["steps"][8]["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );

    // What the browser did, seen through the API.
    let conns = api(
        &http,
        &base,
        "GET",
        "/api/v2/connections?name=acme-okta",
        None,
    )
    .await;
    assert_eq!(conns[0]["options"]["global_token_revocation_enabled"], true);
    assert_eq!(conns[0]["options"]["domain"], "acme.okta.com");
    let sessions = api(
        &http,
        &base,
        "GET",
        &format!("/api/v2/users/{user_id}/sessions"),
        None,
    )
    .await;
    assert_eq!(
        sessions["sessions"].as_array().map(Vec::len),
        Some(0),
        "{sessions}"
    );
    let r = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&cid, Some(&secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "the offline refresh token was revoked by the clear"
    );
    let created = report["steps"][3]["client_id"].as_str().unwrap();
    let app = api(
        &http,
        &base,
        "GET",
        &format!("/api/v2/clients/{created}"),
        None,
    )
    .await;
    assert_eq!(
        app["oidc_logout"]["backchannel_logout_urls"],
        json!(["http://127.0.0.1:9/backchannel"])
    );
    // Every admin action names the acting admin.
    let logs = api(
        &http,
        &base,
        "GET",
        "/api/v2/logs?type=sapi&per_page=100",
        None,
    )
    .await;
    let admin_id =
        api(&http, &base, "GET", "/api/v2/users?q=administrator", None).await[0]["user_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let descriptions: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["actor"] == admin_id.as_str())
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    for d in [
        "Create a connection",
        "Create a client",
        "Clear user sessions",
    ] {
        assert!(
            descriptions.contains(&d),
            "{d} not logged as the admin: {descriptions:?}"
        );
    }
}

/// Signs the admin in over HTTP; returns the agent holding the session.
async fn admin_agent(base: &str) -> Agent {
    let mut agent = Agent::new();
    let (url, hop) = sign_in(
        &mut agent,
        base,
        &format!("{base}/admin"),
        "admin",
        ADMIN_PASSWORD,
    )
    .await;
    assert_eq!(hop.status, 200, "{url}: {}", hop.body);
    assert!(url.ends_with("/admin/connections"), "{url}");
    agent
}

async fn refusals(backends: Backends, test: &str) {
    let Some((mut latch, _env)) = start(test, backends) else {
        return;
    };
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();

    // Not signed in: sent to sign in, keeping where it was going.
    let mut anon = Agent::new();
    let hop = anon.send(&format!("{base}/admin/users?q=x"), None).await;
    assert_eq!(hop.status, 303);
    assert_eq!(
        hop.location.as_deref(),
        Some(format!("{base}/admin/login?next=%2Fadmin%2Fusers%3Fq%3Dx").as_str())
    );

    // A user without the admin role signs in fine, and is refused.
    let email = format!("not-admin-{}@example.com", latch_testkit::env::unique());
    api(
        &http,
        &base,
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": "Correct-Horse-9"})),
    )
    .await;
    let mut plain = Agent::new();
    let (_, hop) = sign_in(
        &mut plain,
        &base,
        &format!("{base}/admin"),
        &email,
        "Correct-Horse-9",
    )
    .await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("Not an administrator"));
    let again = plain.send(&format!("{base}/admin/connections"), None).await;
    assert_eq!(again.status, 403);

    // The admin: pages carry a strict CSP and no framing.
    let mut admin = admin_agent(&base).await;
    let page = admin.send(&format!("{base}/admin/keys"), None).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");

    // Forms without the CSRF token, or with another, change nothing.
    let keys_before = api(&http, &base, "GET", "/api/v2/keys/signing", None).await;
    for csrf in [None, Some("forged-token")] {
        let mut fields = vec![];
        if let Some(c) = csrf {
            fields.push(("csrf".to_owned(), c.to_owned()));
        }
        let hop = admin
            .send(&format!("{base}/admin/keys/rotate"), Some(&fields))
            .await;
        assert_eq!(hop.status, 403, "{csrf:?}");
        fields.push(("name".into(), "sneaky".into()));
        fields.push(("domain".into(), "evil.okta.com".into()));
        let hop = admin
            .send(
                &format!("{base}/admin/connections?strategy=okta"),
                Some(&fields),
            )
            .await;
        assert_eq!(hop.status, 403, "{csrf:?}");
    }
    assert_eq!(
        api(&http, &base, "GET", "/api/v2/keys/signing", None).await,
        keys_before
    );
    let sneaky = api(&http, &base, "GET", "/api/v2/connections?name=sneaky", None).await;
    assert_eq!(sneaky, json!([]));
    // …and with it, the action happens, logged with the admin as actor.
    let csrf = hidden(&page.body, "csrf").unwrap();
    let hop = admin
        .send(
            &format!("{base}/admin/keys/rotate"),
            Some(&[("csrf".into(), csrf.clone())]),
        )
        .await;
    assert_eq!(hop.status, 303);
    assert_ne!(
        api(&http, &base, "GET", "/api/v2/keys/signing", None).await,
        keys_before
    );

    // A validation error is shown on its field, and nothing is created.
    let hop = admin
        .send(
            &format!("{base}/admin/connections?strategy=okta"),
            Some(&[
                ("csrf".into(), csrf.clone()),
                ("name".into(), "acme".into()),
                ("domain".into(), "not a domain".into()),
                ("client_id".into(), "x".into()),
                ("client_secret".into(), "y".into()),
            ]),
        )
        .await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("class=\"field-error\""), "{}", hop.body);
    assert_eq!(
        api(&http, &base, "GET", "/api/v2/connections?name=acme", None).await,
        json!([])
    );

    // A SAML connection through the form: Latch's SP settings are shown for the IdP.
    let idp = latch_testkit::saml::TestIdp::new("https://idp.example.com/ui");
    let hop = admin
        .send(
            &format!("{base}/admin/connections?strategy=samlp"),
            Some(&[
                ("csrf".into(), csrf.clone()),
                ("name".into(), "acme-saml".into()),
                (
                    "signInEndpoint".into(),
                    "https://idp.example.com/sso".into(),
                ),
                ("signingCert".into(), idp.cert_pem()),
                ("global_token_revocation_enabled".into(), "true".into()),
                (
                    "global_token_revocation_jwt_iss".into(),
                    "https://acme.okta.com".into(),
                ),
                (
                    "global_token_revocation_jwt_sub".into(),
                    "0oaSAMLAPP".into(),
                ),
            ]),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let edit = admin.send(&hop.location.unwrap(), None).await;
    assert_eq!(edit.status, 200);
    for shown in [
        format!("{base}/samlp/metadata?connection=acme-saml"),
        format!("{base}/login/callback?connection=acme-saml"),
        format!("{base}/oauth/global-token-revocation/connection/acme-saml"),
        "SP metadata URL".to_owned(),
    ] {
        assert!(
            edit.body.contains(&shown),
            "{shown} is not on the SAML connection page"
        );
    }
    let saml = api(
        &http,
        &base,
        "GET",
        "/api/v2/connections?name=acme-saml",
        None,
    )
    .await;
    assert_eq!(
        saml[0]["options"]["global_token_revocation_jwt_sub"],
        "0oaSAMLAPP"
    );

    // Markup in a user's name is shown as text.
    let evil = "<script>alert(1)</script>";
    let u = api(&http, &base, "POST", "/api/v2/users", Some(json!({"connection": "database", "email": format!("mallory-{}@example.com", latch_testkit::env::unique()), "password": "Correct-Horse-9", "name": evil}))).await;
    for path in [
        "/admin/users?q=mallory".to_owned(),
        format!("/admin/users/{}", u["user_id"].as_str().unwrap()),
    ] {
        let hop = admin.send(&format!("{base}{path}"), None).await;
        assert_eq!(hop.status, 200, "{path}");
        assert!(
            !hop.body.contains(evil),
            "{path} renders the name as markup"
        );
        assert!(
            hop.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || hop.body.contains("&#60;script&#62;"),
            "{path}: {}",
            hop.body
        );
    }

    // Signing out ends the Latch session: the admin pages ask to sign in again.
    let page = admin.send(&format!("{base}/admin/keys"), None).await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let hop = admin
        .send(
            &format!("{base}/admin/logout"),
            Some(&[("csrf".into(), csrf)]),
        )
        .await;
    assert_eq!(hop.status, 303);
    let hop = admin.send(&format!("{base}/admin/keys"), None).await;
    assert_eq!(hop.status, 303, "signed out");
}

#[tokio::test]
async fn admin_ui_refusals_on_the_embedded_default() {
    refusals(
        Backends::Embedded,
        "admin_ui_refusals_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn admin_ui_refusals_on_postgres_and_redis() {
    refusals(
        Backends::Production,
        "admin_ui_refusals_on_postgres_and_redis",
    )
    .await;
}
