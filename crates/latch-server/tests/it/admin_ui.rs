//! The admin UI: end to end in real headless Chromium (Debian's `chromium`, driven by npm
//! `playwright-core`, both installed by the project's scripts), and its refusals over HTTP
//! (non-admins, forms without a CSRF token, markup in user data).

use std::process::Command;

use serde_json::{Value, json};

use crate::peers::{Agent, Hop, peers_dir};
use crate::process::{Latch, free_port};
use crate::support::{Backends, Remote, api, env_for, eventually};

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

/// Posts Latch's sign-in form reached from `start`; the answer to the post.
async fn submit(agent: &mut Agent, base: &str, start: &str, login: &str, password: &str) -> Hop {
    let (_, form) = follow(agent, start).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let tx = hidden(&form.body, "tx").expect("the sign-in form");
    agent
        .send(
            &format!("{base}/login"),
            Some(&[
                ("tx".into(), tx),
                ("email".into(), login.into()),
                ("password".into(), password.into()),
            ]),
        )
        .await
}

/// Signs in on Latch's sign-in page reached from `start`; follows what comes after.
async fn sign_in(
    agent: &mut Agent,
    base: &str,
    start: &str,
    login: &str,
    password: &str,
) -> (String, Hop) {
    let hop = submit(agent, base, start, login, password).await;
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
        &Remote(&http, &base),
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
    let user = api(&Remote(&http, &base), "POST", "/api/v2/users", Some(json!({"connection": "database", "email": email, "password": "Correct-Horse-9", "name": "Ada Lovelace"}))).await;
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    // Someone without the admin role, for the refusal page.
    let plain = format!("plain-{}@example.com", latch_testkit::env::unique());
    api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": plain, "password": "Correct-Horse-9"})),
    )
    .await;
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

    let sp_cert = latch_testkit::saml::TestIdp::new("https://sp.example/browser").cert_pem();
    let shots = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/admin-ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::task::spawn_blocking({
        let (base, email, plain, shots, sp_cert) = (
            base.clone(),
            email.clone(),
            plain.clone(),
            shots.clone(),
            sp_cert.clone(),
        );
        move || {
            Command::new("node")
                .arg("admin-e2e.mjs")
                .current_dir(peers_dir())
                .env("LATCH_URL", base)
                .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("USER_EMAIL", email)
                .env("PLAIN_EMAIL", plain)
                .env("PLAIN_PASSWORD", "Correct-Horse-9")
                .env("SP_CERT", sp_cert)
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
            "form-errors",
            "okta-connection",
            "connections-list",
            "saml-form",
            "application",
            "saml-app",
            "user-search",
            "user-detail",
            "clear-sessions",
            "logs",
            "log-detail",
            "keys",
            "keyboard",
            "narrow",
            "signed-out",
            "not-an-admin"
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
    assert_eq!(pngs, 17, "one screenshot per page in {}", shots.display());

    // The app in the cleared session got its logout token.
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(
        got.len(),
        1,
        "one back-channel logout for the cleared session"
    );
    assert_eq!(
        report["steps"][11]["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );

    // What the browser did, seen through the API.
    let conns = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/connections?name=acme-okta",
        None,
    )
    .await;
    assert_eq!(conns[0]["options"]["global_token_revocation_enabled"], true);
    assert_eq!(conns[0]["options"]["domain"], "acme.okta.com");
    let sessions = api(
        &Remote(&http, &base),
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
    let created = report["steps"][5]["client_id"].as_str().unwrap();
    let app = api(
        &Remote(&http, &base),
        "GET",
        &format!("/api/v2/clients/{created}"),
        None,
    )
    .await;
    assert_eq!(
        app["oidc_logout"]["backchannel_logout_urls"],
        json!(["http://127.0.0.1:9/backchannel"])
    );
    // Made a SAML app in the browser, its certificate loaded from a DER file (stored as base64).
    assert_eq!(report["steps"][6]["client_id"], created);
    let samlp = &app["addons"]["samlp"];
    assert_eq!(samlp["audience"], "urn:acme:portal", "{app}");
    let der: String = sp_cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(samlp["signingCert"], der.as_str());
    // Every admin action names the acting admin.
    let logs = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/logs?type=sapi&per_page=100",
        None,
    )
    .await;
    let admin_id = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/users?q=administrator",
        None,
    )
    .await[0]["user_id"]
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
        &Remote(&http, &base),
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
    let keys_before = api(&Remote(&http, &base), "GET", "/api/v2/keys/signing", None).await;
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
        api(&Remote(&http, &base), "GET", "/api/v2/keys/signing", None).await,
        keys_before
    );
    let sneaky = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/connections?name=sneaky",
        None,
    )
    .await;
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
        api(&Remote(&http, &base), "GET", "/api/v2/keys/signing", None).await,
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
        api(
            &Remote(&http, &base),
            "GET",
            "/api/v2/connections?name=acme",
            None
        )
        .await,
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
        &Remote(&http, &base),
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
    let u = api(&Remote(&http, &base), "POST", "/api/v2/users", Some(json!({"connection": "database", "email": format!("mallory-{}@example.com", latch_testkit::env::unique()), "password": "Correct-Horse-9", "name": evil}))).await;
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

/// The reviewer's escalation: a machine client granted only `update:users` made an ordinary user
/// an administrator (and could set any password). Roles and passwords now need their own scopes.
async fn update_users_alone_cannot_make_an_admin(backends: Backends, test: &str) {
    let Some((mut latch, _env)) = start(test, backends) else {
        return;
    };
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let email = format!("plain-{}@example.com", latch_testkit::env::unique());
    let user = api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/users",
        Some(json!({"connection": "database", "email": email, "password": "Correct-Horse-9"})),
    )
    .await;
    let user_path = format!("/api/v2/users/{}", user["user_id"].as_str().unwrap());
    let m2m = api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Provisioner", "app_type": "non_interactive"})),
    )
    .await;
    let (id, secret) = (
        m2m["client_id"].as_str().unwrap().to_owned(),
        m2m["client_secret"].as_str().unwrap().to_owned(),
    );
    let audience = format!("{base}/api/v2/");
    let grant = api(&Remote(&http, &base), "POST", "/api/v2/client-grants", Some(
            json!({"client_id": id, "audience": audience,
                "scope": ["read:users", "update:users", "update:client_grants", "update:client_keys"]}),
        ))
    .await;
    let token = |http: reqwest::Client| {
        let (id, secret, audience, base) =
            (id.clone(), secret.clone(), audience.clone(), base.clone());
        async move {
            let res = http
                .post(format!("{base}/oauth/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("audience", &audience),
                ])
                .send()
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let patch = |token: String, body: Value| {
        let (http, url) = (http.clone(), format!("{base}{user_path}"));
        async move {
            let res = http
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let t = token(http.clone()).await;

    // `update:users` alone: roles and passwords are refused, and nothing changes.
    let (status, body) = patch(t.clone(), json!({"app_metadata": {"roles": ["admin"]}})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errorCode"], "insufficient_scope");
    let (status, _) = patch(
        t.clone(),
        json!({"app_metadata": {"roles": ["admin"]}, "name": "Sneaky"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = patch(t.clone(), json!({"password": "Attacker-Chosen-1"})).await;
    assert_eq!(status, 403);
    let now = api(&Remote(&http, &base), "GET", &user_path, None).await;
    assert_eq!(now["app_metadata"].get("roles"), None, "{now}");
    assert_ne!(now["name"], "Sneaky");
    // What `update:users` is for still works.
    let (status, body) = patch(t.clone(), json!({"name": "Renamed"})).await;
    assert_eq!((status, &body["name"]), (200, &json!("Renamed")), "{body}");
    // The old password still signs in; the target is still no administrator.
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
    // Nor can it take over the admin UI's own client.
    let res = http
        .patch(format!("{base}/api/v2/clients/latch-admin"))
        .bearer_auth(crate::support::TOKEN)
        .json(&json!({"callbacks": ["https://attacker.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Nor can it grant itself the scopes it lacks…
    let grant_path = format!("/api/v2/client-grants/{}", grant["id"].as_str().unwrap());
    let res = http
        .patch(format!("{base}{grant_path}"))
        .bearer_auth(&t)
        .json(&json!({"scope": ["read:users", "update:users", "update:roles"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "self-escalation through its own grant");
    // …or take over a client that holds them by rotating its secret.
    let strong = api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Strong", "app_type": "non_interactive"})),
    )
    .await;
    let strong_id = strong["client_id"].as_str().unwrap();
    api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/client-grants",
        Some(json!({"client_id": strong_id, "audience": audience, "scope": ["update:roles"]})),
    )
    .await;
    let res = http
        .post(format!("{base}/api/v2/clients/{strong_id}/rotate-secret"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "rotating a stronger client's secret");

    // Granted explicitly, each works.
    api(
        &Remote(&http, &base),
        "PATCH",
        &format!("/api/v2/client-grants/{}", grant["id"].as_str().unwrap()),
        Some(json!({"scope": ["read:users", "update:users", "update:roles", "update:passwords"]})),
    )
    .await;
    let t = token(http.clone()).await;
    let (status, body) = patch(t.clone(), json!({"app_metadata": {"roles": ["admin"]}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = patch(t, json!({"password": "Another-Horse-7"})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn update_users_alone_cannot_make_an_admin_on_the_embedded_default() {
    update_users_alone_cannot_make_an_admin(
        Backends::Embedded,
        "update_users_alone_cannot_make_an_admin_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn update_users_alone_cannot_make_an_admin_on_postgres_and_redis() {
    update_users_alone_cannot_make_an_admin(
        Backends::Production,
        "update_users_alone_cannot_make_an_admin_on_postgres_and_redis",
    )
    .await;
}

/// The admin UI's CSP (`style-src 'self'`) drops `style` attributes: a page that relied on one
/// rendered as a collapsed card (the signed-out and "not an administrator" pages did).
#[test]
fn admin_templates_use_no_style_attributes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/admin");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("style=\""),
            "{} uses a style attribute, which the CSP ignores",
            path.display()
        );
    }
}

/// Whether `login`/`password` signs in on Latch's sign-in page (reached through the admin UI):
/// a redirect after the form, not the form again.
async fn signs_in(base: &str, login: &str, password: &str) -> bool {
    let mut agent = Agent::new();
    submit(&mut agent, base, &format!("{base}/admin"), login, password)
        .await
        .location
        .is_some()
}

/// A browser signed in to the app `cid` (its callback is `APP_CB`) as `email`.
async fn app_session(base: &str, cid: &str, email: &str) -> Agent {
    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(APP_CB.as_bytes()).collect();
    let (back, _) = sign_in(
        &mut agent,
        base,
        &format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid&state=s"),
        email,
        "Correct-Horse-9",
    )
    .await;
    assert!(back.starts_with(APP_CB), "{back}");
    agent
}

/// The claims of a JWT, unverified (the test only reads which session a logout token names).
fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The admin UI's actions beyond the first release: create a user (every error of the form at
/// once), reset a password, end one session, delete a user, delete an application (not the UI's
/// own), choose an application's connections, and retry a failed back-channel delivery. Each
/// works, and without the CSRF token changes nothing.
async fn actions(backends: Backends, test: &str) {
    let Some((mut latch, _env)) = start(test, backends) else {
        return;
    };
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let mut admin = admin_agent(&base).await;
    let csrf = hidden(
        &admin.send(&format!("{base}/admin/users"), None).await.body,
        "csrf",
    )
    .unwrap();
    let with = |csrf: Option<&str>, fields: &[(&str, &str)]| -> Vec<(String, String)> {
        csrf.map(|c| ("csrf".to_owned(), c.to_owned()))
            .into_iter()
            .chain(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect()
    };
    let by_email = async |email: &str| {
        api(
            &Remote(&http, &base),
            "GET",
            &format!("/api/v2/users-by-email?email={email}"),
            None,
        )
        .await
    };

    // Create a user: refused without the token; every problem of the form at once, each on its
    // field and in words; then created.
    let email = format!("grace-{}@example.com", latch_testkit::env::unique());
    let good = [
        ("connection", "database"),
        ("email", email.as_str()),
        ("password", "Correct-Horse-9"),
        ("name", "Grace Hopper"),
    ];
    for csrf in [None, Some("forged")] {
        let hop = admin
            .send(&format!("{base}/admin/users"), Some(&with(csrf, &good)))
            .await;
        assert_eq!(hop.status, 403, "{csrf:?}");
    }
    assert_eq!(by_email(&email).await, json!([]));
    let hop = admin
        .send(
            &format!("{base}/admin/users"),
            Some(&with(
                Some(&csrf),
                &[
                    ("connection", "database"),
                    ("email", "not-an-email"),
                    ("password", "short"),
                ],
            )),
        )
        .await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    for field in ["email", "password"] {
        assert!(
            hop.body
                .contains(&format!("<p class=\"field-error\" id=\"f-{field}-error\">")),
            "no error on {field}: {}",
            hop.body
        );
        assert!(
            hop.body
                .contains(&format!("aria-describedby=\"f-{field}-error")),
            "{field}'s error is not tied to it"
        );
    }
    assert!(
        hop.body.contains("These 2 things need fixing"),
        "{}",
        hop.body
    );
    assert!(hop.body.contains("Email must be an email address"));
    assert_eq!(
        api(
            &Remote(&http, &base),
            "GET",
            "/api/v2/users?q=not-an-email",
            None
        )
        .await,
        json!([])
    );
    let hop = admin
        .send(
            &format!("{base}/admin/users"),
            Some(&with(Some(&csrf), &good)),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let created = by_email(&email).await;
    assert_eq!(created[0]["name"], "Grace Hopper");
    let uid = created[0]["user_id"].as_str().unwrap().to_owned();
    let user_page = format!("{base}/admin/users/{uid}");
    let to = hop.location.unwrap();
    assert!(
        to.ends_with(&format!(
            "/admin/users/{}?done=created",
            uid.replace('|', "%7C")
        )),
        "{to}"
    );
    assert!(signs_in(&base, &email, "Correct-Horse-9").await);

    // Reset the password: refused without the token; the policy's error on the field; then set.
    let hop = admin
        .send(
            &format!("{user_page}/password"),
            Some(&with(None, &[("password", "Another-Horse-7")])),
        )
        .await;
    assert_eq!(hop.status, 403);
    let hop = admin
        .send(
            &format!("{user_page}/password"),
            Some(&with(Some(&csrf), &[("password", "weak")])),
        )
        .await;
    assert_eq!(hop.status, 400);
    assert!(
        hop.body
            .contains("id=\"f-password-error\">New password must be"),
        "{}",
        hop.body
    );
    assert!(signs_in(&base, &email, "Correct-Horse-9").await);
    let hop = admin
        .send(
            &format!("{user_page}/password"),
            Some(&with(Some(&csrf), &[("password", "Another-Horse-7")])),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert!(signs_in(&base, &email, "Another-Horse-7").await);
    assert!(!signs_in(&base, &email, "Correct-Horse-9").await);
    api(
        &Remote(&http, &base),
        "PATCH",
        &format!("/api/v2/users/{uid}"),
        Some(json!({"password": "Correct-Horse-9"})),
    )
    .await;

    // End one session: the user is signed in to an app on two browsers; one session ends, its
    // app is told about that one only, the other goes on.
    let rx = crate::backchannel::Receiver::start().await;
    let app = api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Two sessions app", "callbacks": [APP_CB],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/bc", rx.url)]}})),
    )
    .await;
    let cid = app["client_id"].as_str().unwrap().to_owned();
    let sessions_path = format!("/api/v2/users/{uid}/sessions");
    // (The sign-ins above left sessions of the admin UI's client, which has no back-channel URL.)
    api(&Remote(&http, &base), "DELETE", &sessions_path, None).await;
    let _one = app_session(&base, &cid, &email).await;
    let _two = app_session(&base, &cid, &email).await;
    let sids = async || -> Vec<String> {
        api(&Remote(&http, &base), "GET", &sessions_path, None).await["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let both = sids().await;
    assert_eq!(both.len(), 2);
    let end = format!("{user_page}/sessions/{}/end", both[0]);
    let hop = admin.send(&end, Some(&with(None, &[]))).await;
    assert_eq!(hop.status, 403);
    assert_eq!(sids().await.len(), 2);
    let hop = admin.send(&end, Some(&with(Some(&csrf), &[]))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let to = hop.location.unwrap();
    assert!(to.contains("done=ended&event=log_"), "{to}");
    assert_eq!(sids().await, [both[1].clone()]);
    let told = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(told.len(), 1);
    assert_eq!(claims(&told[0].1)["sid"], both[0].as_str());
    let page = admin.send(&to, None).await;
    assert!(page.body.contains("Session ended"), "{}", page.body);
    assert!(page.body.contains("See the logout event"), "{}", page.body);
    // The API route itself: the other one, then nothing left to end.
    let path = format!("{base}{sessions_path}/{}", both[1]);
    let status = |r: reqwest::Response| r.status().as_u16();
    let del = || http.delete(&path).bearer_auth(crate::support::TOKEN).send();
    assert_eq!(status(del().await.unwrap()), 204);
    assert_eq!(status(del().await.unwrap()), 404);
    assert!(sids().await.is_empty());
    assert_eq!(
        rx.wait_for(2, std::time::Duration::from_secs(10))
            .await
            .len(),
        2
    );
    assert_eq!(
        status(http.delete(&path).send().await.unwrap()),
        401,
        "the API route needs the token"
    );

    // Retry a failed delivery: the app answers 400 (never retried by itself), then 200.
    rx.statuses.lock().unwrap().push_back(400);
    let _three = app_session(&base, &cid, &email).await;
    api(&Remote(&http, &base), "DELETE", &sessions_path, None).await;
    let failed = eventually("a failed delivery", async || {
        let logs = api(
            &Remote(&http, &base),
            "GET",
            &format!("/api/v2/logs?type=oidc_backchannel_logout_failed&client_id={cid}"),
            None,
        )
        .await;
        logs.as_array()?
            .iter()
            .find(|e| e["details"]["state"] == "failed")
            .cloned()
    })
    .await;
    let delivery = failed["details"]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event_page = format!("{base}/admin/logs/{}", failed["log_id"].as_str().unwrap());
    // (Attempts' outcomes are written in batches, just after their log events.)
    eventually("the failure recorded", async || {
        let p = admin.send(&event_page, None).await;
        p.body.contains("Retry now").then_some(())
    })
    .await;
    let retry = format!("{base}/admin/deliveries/{delivery}/retry");
    let hop = admin.send(&retry, Some(&with(None, &[]))).await;
    assert_eq!(hop.status, 403);
    let page = admin.send(&event_page, None).await;
    assert!(
        page.body.contains(">failed<"),
        "still failed: {}",
        page.body
    );
    assert_eq!(rx.received().len(), 3, "no attempt without the token");
    let hop = admin
        .send(
            &retry,
            Some(&with(
                Some(&csrf),
                &[("event", failed["log_id"].as_str().unwrap())],
            )),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert!(hop.location.unwrap().ends_with("?done=retried"));
    let got = rx.wait_for(4, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 4, "retried at once");
    assert_eq!(
        claims(&got[2].1)["jti"],
        claims(&got[3].1)["jti"],
        "the same logout token again"
    );
    let page = eventually("delivered", async || {
        let p = admin.send(&event_page, None).await;
        p.body.contains(">delivered<").then_some(p)
    })
    .await;
    assert!(!page.body.contains("Retry now"));
    // The log folds the two attempts of that delivery into one row, and names the user and app.
    let logs = admin
        .send(
            &format!("{base}/admin/logs?type=oidc_backchannel_logout_failed"),
            None,
        )
        .await;
    assert_eq!(
        logs.body.matches("<summary>").count(),
        0,
        "one attempt each"
    );
    let logs = admin
        .send(&format!("{base}/admin/logs?client_id={cid}"), None)
        .await;
    assert_eq!(
        logs.body.matches("<summary>2 attempts</summary>").count(),
        1,
        "{}",
        logs.body
    );
    assert_eq!(
        logs.body
            .matches(&format!(
                "/admin/logs/{}",
                failed["log_id"].as_str().unwrap()
            ))
            .count(),
        0,
        "the failed attempt is folded under the delivered one"
    );
    assert!(logs.body.contains("Grace Hopper &#60;"), "{}", logs.body);
    assert!(logs.body.contains("Two sessions app<br>"), "{}", logs.body);
    // Delivered: a retry through the API is a conflict; an unknown delivery is not found.
    let retry_api = |id: &str| {
        http.post(format!("{base}/api/v2/logs/deliveries/{id}/retry"))
            .bearer_auth(crate::support::TOKEN)
            .send()
    };
    assert_eq!(status(retry_api(&delivery).await.unwrap()), 409);
    assert_eq!(status(retry_api("dlv_nope").await.unwrap()), 404);

    // An application's connections: chosen on its form (the database one off, an IdP on).
    let idp = api(&Remote(&http, &base), "POST", "/api/v2/connections", Some(json!({"name": format!("idp-{}", latch_testkit::env::unique()), "strategy": "oidc",
            "options": {"issuer": "https://idp.example.com", "client_id": "x", "client_secret": "y"}})))
    .await;
    let idp_id = idp["id"].as_str().unwrap().to_owned();
    let app_form = |csrf: Option<&str>| {
        with(
            csrf,
            &[
                ("name", "Two sessions app"),
                ("app_type", "regular_web"),
                ("callbacks", APP_CB),
                ("backchannel_logout_url", &format!("{}/bc", rx.url)),
                ("frontchannel_logout_url", "http://127.0.0.1:9/fc2"),
                ("grant_types", "authorization_code"),
                ("token_endpoint_auth_method", "client_secret_basic"),
                ("alg", "RS256"),
                ("connections", &idp_id),
            ],
        )
    };
    let app_page = format!("{base}/admin/applications/{cid}");
    let enabled = async |conn: &str| -> bool {
        api(
            &Remote(&http, &base),
            "GET",
            &format!("/api/v2/connections/{conn}"),
            None,
        )
        .await["enabled_clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == cid.as_str())
    };
    let db_id = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/connections?name=database",
        None,
    )
    .await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(enabled(&db_id).await && !enabled(&idp_id).await);
    // A front-channel URL set through the API shows in the form; saving the form sets it.
    api(
        &Remote(&http, &base),
        "PATCH",
        &format!("/api/v2/clients/{cid}"),
        Some(json!({"oidc_logout": {"frontchannel_logout_url": "http://127.0.0.1:9/fc"}})),
    )
    .await;
    let page = admin.send(&app_page, None).await;
    assert!(
        page.body.contains("name=\"frontchannel_logout_url\"")
            && page.body.contains("value=\"http://127.0.0.1:9/fc\""),
        "{}",
        page.body
    );
    let hop = admin.send(&app_page, Some(&app_form(None))).await;
    assert_eq!(hop.status, 403);
    assert!(enabled(&db_id).await && !enabled(&idp_id).await);
    let hop = admin.send(&app_page, Some(&app_form(Some(&csrf)))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert!(!enabled(&db_id).await && enabled(&idp_id).await);
    let page = admin.send(&app_page, None).await;
    assert!(
        page.body.contains(&format!("value=\"{idp_id}\" checked")),
        "{}",
        page.body
    );
    // The front-channel field shows the saved value, and the API has it (the session-required
    // box was left unchecked).
    assert!(page.body.contains("value=\"http://127.0.0.1:9/fc2\""));
    let saved = api(
        &Remote(&http, &base),
        "GET",
        &format!("/api/v2/clients/{cid}"),
        None,
    )
    .await;
    assert_eq!(
        saved["oidc_logout"]["frontchannel_logout_url"],
        "http://127.0.0.1:9/fc2"
    );
    assert_eq!(
        saved["oidc_logout"]["frontchannel_logout_session_required"],
        false
    );

    // A connection's options set through the API that its form does not show (here
    // `discovery_url`) survive a save of the form.
    let discovery = "https://idp.example.com/.well-known/openid-configuration";
    api(
        &Remote(&http, &base),
        "PATCH",
        &format!("/api/v2/connections/{idp_id}"),
        Some(json!({"options": {"issuer": "https://idp.example.com", "client_id": "x", "discovery_url": discovery}})),
    )
    .await;
    let hop = admin
        .send(
            &format!("{base}/admin/connections/{idp_id}"),
            Some(&with(
                Some(&csrf),
                &[
                    ("display_name", "The IdP"),
                    ("issuer", "https://idp.example.com"),
                    ("client_id", "x2"),
                    ("enabled_clients", cid.as_str()),
                ],
            )),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let saved = api(
        &Remote(&http, &base),
        "GET",
        &format!("/api/v2/connections/{idp_id}"),
        None,
    )
    .await;
    assert_eq!(saved["options"]["client_id"], "x2", "{saved}");
    assert_eq!(saved["options"]["discovery_url"], discovery, "{saved}");

    // Delete an application: not the admin UI's own; not without the token; then gone.
    let hop = admin
        .send(
            &format!("{base}/admin/applications/latch-admin/delete"),
            Some(&with(Some(&csrf), &[])),
        )
        .await;
    assert_eq!(hop.status, 403);
    api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/clients/latch-admin",
        None,
    )
    .await;
    let delete_app = format!("{app_page}/delete");
    let hop = admin.send(&delete_app, Some(&with(None, &[]))).await;
    assert_eq!(hop.status, 403);
    api(
        &Remote(&http, &base),
        "GET",
        &format!("/api/v2/clients/{cid}"),
        None,
    )
    .await;
    let hop = admin.send(&delete_app, Some(&with(Some(&csrf), &[]))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let gone = http
        .get(format!("{base}/api/v2/clients/{cid}"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Delete a user: not without the token, not oneself; then gone.
    let delete_user = format!("{user_page}/delete");
    let hop = admin.send(&delete_user, Some(&with(None, &[]))).await;
    assert_eq!(hop.status, 403);
    assert_eq!(by_email(&email).await.as_array().map(Vec::len), Some(1));
    let me = api(
        &Remote(&http, &base),
        "GET",
        "/api/v2/users?q=administrator",
        None,
    )
    .await[0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hop = admin
        .send(
            &format!("{base}/admin/users/{me}/delete"),
            Some(&with(Some(&csrf), &[])),
        )
        .await;
    assert_eq!(hop.status, 400);
    let hop = admin
        .send(&delete_user, Some(&with(Some(&csrf), &[])))
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(by_email(&email).await, json!([]));
    assert!(!signs_in(&base, &email, "Correct-Horse-9").await);
}

#[tokio::test]
async fn admin_ui_actions_on_the_embedded_default() {
    actions(
        Backends::Embedded,
        "admin_ui_actions_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn admin_ui_actions_on_postgres_and_redis() {
    actions(
        Backends::Production,
        "admin_ui_actions_on_postgres_and_redis",
    )
    .await;
}

/// A SAML app through the admin UI: the switch and the addon's fields store `addons.samlp` (seen
/// through the API), Latch's IdP URLs are shown for the SP, a refused form (the API's checks, or
/// a value that is not even a URL or a number) shows each error on its field and stores nothing,
/// and switching SAML off removes the addon.
async fn saml_apps(backends: Backends, test: &str) {
    let Some((mut latch, _env)) = start(test, backends) else {
        return;
    };
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let mut admin = admin_agent(&base).await;
    const ACS: &str = "http://127.0.0.1:9/sp/acs";
    const ACS2: &str = "http://127.0.0.1:9/sp/acs2";
    let app = api(
        &Remote(&http, &base),
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Service provider", "callbacks": [ACS, ACS2]})),
    )
    .await;
    let cid = app["client_id"].as_str().unwrap().to_owned();
    let app_page = format!("{base}/admin/applications/{cid}");
    let stored = async || {
        api(
            &Remote(&http, &base),
            "GET",
            &format!("/api/v2/clients/{cid}"),
            None,
        )
        .await
    };

    // Not a SAML app yet: the switch is off; Latch's IdP URLs for it are there to copy.
    let page = admin.send(&app_page, None).await;
    assert_eq!(page.status, 200);
    let csrf = hidden(&page.body, "csrf").unwrap();
    assert!(
        page.body
            .contains("name=\"samlp\" id=\"f-samlp\" value=\"true\"  role=\"switch\""),
        "the switch, off: {}",
        page.body
    );
    for (id, url) in [
        ("saml_metadata_url", format!("{base}/samlp/metadata/{cid}")),
        ("saml_sso_url", format!("{base}/samlp/{cid}")),
        ("saml_slo_url", format!("{base}/samlp/{cid}/logout")),
    ] {
        assert!(
            page.body
                .contains(&format!("id=\"f-{id}\" value=\"{url}\" readonly")),
            "{id} is not shown as {url}"
        );
        assert!(
            page.body.contains(&format!("data-copy=\"f-{id}\"")),
            "{id} has no copy button"
        );
    }
    // The SP certificate may be loaded from a file (by admin.js; the file is never posted).
    assert!(
        page.body
            .contains("<input type=\"file\" id=\"f-signingCert-file\" data-into=\"f-signingCert\""),
        "{}",
        page.body
    );

    let sp_cert = latch_testkit::saml::TestIdp::new("https://sp.example/ui").cert_pem();
    // As a browser posts a textarea: CRLF lines.
    let sp_cert_posted = sp_cert.trim().replace('\n', "\r\n");
    let saml_fields: Vec<(&str, &str)> = vec![
        ("samlp", "true"),
        ("audience", "urn:test:sp"),
        ("recipient", ACS2),
        (
            "nameIdentifierFormat",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        ),
        ("signResponse", "true"),
        ("signatureAlgorithm", "rsa-sha256"),
        ("digestAlgorithm", "sha256"),
        ("lifetimeInSeconds", "600"),
        (
            "mappings",
            "email=urn:oid:0.9.2342.19200300.100.1.3\r\nname = displayName\r\n",
        ),
        ("signingCert", sp_cert_posted.as_str()),
        ("callback", "http://127.0.0.1:9/sp/slo"),
        ("slo_enabled", "true"),
        ("binding", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
        ("allowIdpInitiated", "true"),
    ];
    let form = |csrf: Option<&str>, fields: &[(&str, &str)]| app_form(csrf, fields);
    let with_saml = |over: &[(&'static str, &'static str)]| overriding(&saml_fields, over);

    // Without the CSRF token: nothing changes.
    let hop = admin
        .send(&app_page, Some(&form(None, &with_saml(&[]))))
        .await;
    assert_eq!(hop.status, 403);
    assert_eq!(stored().await["addons"], json!({}));

    // The API's checks refuse: the ACS is not a callback, SHA-1, a mapping from a user attribute
    // that does not exist; each is shown on its field, and nothing is stored (the name neither).
    let hop = admin
        .send(
            &app_page,
            Some(&form(
                Some(&csrf),
                &with_saml(&[
                    ("name", "Renamed"),
                    ("recipient", "http://127.0.0.1:9/elsewhere"),
                    ("signatureAlgorithm", "rsa-sha1"),
                    ("mappings", "email=mail\npassword=pw"),
                ]),
            )),
        )
        .await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    for (field, says) in [
        (
            "recipient",
            "ACS URL (recipient) must be one of the application&#39;s callbacks",
        ),
        (
            "signatureAlgorithm",
            "Signature algorithm must be rsa-sha256",
        ),
        (
            "mappings",
            "Attribute mappings: password is not a user attribute",
        ),
    ] {
        let error = format!("<p class=\"field-error\" id=\"f-{field}-error\">");
        let shown = hop
            .body
            .split(&error)
            .nth(1)
            .and_then(|r| r.split("</p>").next())
            .unwrap_or_else(|| panic!("no error on {field}: {}", hop.body));
        assert!(
            shown.replace("&#x27;", "&#39;").starts_with(says),
            "{field}: {shown}"
        );
    }
    assert!(
        hop.body.contains("These 3 things need fixing"),
        "{}",
        hop.body
    );
    // What was posted is shown again, the switch on.
    assert!(hop.body.contains("value=\"http://127.0.0.1:9/elsewhere\""));
    assert!(
        hop.body
            .contains("name=\"samlp\" id=\"f-samlp\" value=\"true\" checked")
    );
    let now = stored().await;
    assert_eq!(now["addons"], json!({}), "{now}");
    assert_eq!(now["name"], "Service provider");

    // A value that is not a URL or a number never reaches the API; the rest of the form is still
    // judged by its checks (the entity id is required); nothing is stored.
    let hop = admin
        .send(
            &app_page,
            Some(&form(
                Some(&csrf),
                &with_saml(&[
                    ("audience", ""),
                    ("callback", "not a url"),
                    ("lifetimeInSeconds", "an hour"),
                ]),
            )),
        )
        .await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    for (field, says) in [
        (
            "callback",
            "Single logout URL of the service provider is not a URL",
        ),
        (
            "lifetimeInSeconds",
            "Assertion lifetime (seconds) must be a whole number of seconds",
        ),
        ("audience", "Audience (SP entity ID) is required"),
    ] {
        assert!(
            hop.body.contains(&format!(
                "<p class=\"field-error\" id=\"f-{field}-error\">{says}"
            )),
            "{field}: {}",
            hop.body
        );
    }
    assert_eq!(stored().await["addons"], json!({}));

    // Made a SAML app: the addon is stored as the form says.
    let hop = admin
        .send(&app_page, Some(&form(Some(&csrf), &with_saml(&[]))))
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let want = json!({
        "audience": "urn:test:sp",
        "recipient": ACS2,
        "nameIdentifierFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "signResponse": true,
        "signatureAlgorithm": "rsa-sha256",
        "digestAlgorithm": "sha256",
        "lifetimeInSeconds": 600,
        "mappings": {"email": "urn:oid:0.9.2342.19200300.100.1.3", "name": "displayName"},
        "signingCert": sp_cert.trim(),
        "logout": {"callback": "http://127.0.0.1:9/sp/slo", "slo_enabled": true},
        "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        "allowIdpInitiated": true,
    });
    assert_eq!(stored().await["addons"]["samlp"], want);
    // The metadata URL the page shows is Latch's IdP metadata for the app, naming the SSO and
    // SLO URLs the page shows.
    let metadata = http
        .get(format!("{base}/samlp/metadata/{cid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    let metadata = metadata.text().await.unwrap();
    for url in [
        format!("Location=\"{base}/samlp/{cid}\""),
        format!("Location=\"{base}/samlp/{cid}/logout\""),
    ] {
        assert!(metadata.contains(&url), "{url} not in {metadata}");
    }
    // The page shows it back; saving it unchanged changes nothing.
    let page = admin.send(&app_page, None).await;
    for shown in [
        "name=\"samlp\" id=\"f-samlp\" value=\"true\" checked",
        "value=\"urn:test:sp\"",
        "email=urn:oid:0.9.2342.19200300.100.1.3\nname=displayName</textarea>",
        "<option value=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" selected>",
        "<option value=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\" selected>",
        "value=\"600\"",
        "-----BEGIN CERTIFICATE-----",
    ] {
        assert!(page.body.contains(shown), "{shown} is not on the page");
    }
    let hop = admin
        .send(&app_page, Some(&form(Some(&csrf), &with_saml(&[]))))
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(stored().await["addons"]["samlp"], want);
    // The list says which apps are SAML apps.
    let list = admin
        .send(&format!("{base}/admin/applications"), None)
        .await;
    assert!(
        list.body
            .contains("Regular web application <span class=\"tag\">SAML</span>"),
        "{}",
        list.body
    );

    // Switched off: the addon is removed.
    let off: Vec<(&str, &str)> = with_saml(&[])
        .into_iter()
        .filter(|(k, _)| *k != "samlp")
        .collect();
    let hop = admin.send(&app_page, Some(&form(Some(&csrf), &off))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(stored().await["addons"], json!({}));
    let page = admin.send(&app_page, None).await;
    assert!(
        page.body
            .contains("name=\"samlp\" id=\"f-samlp\" value=\"true\"  role=\"switch\"")
    );

    // A new application made a SAML app on its creation form (the ACS defaults to the first
    // callback); a refused one is not created.
    let new_app = |name: &'static str, audience: &'static str| {
        form(
            Some(&csrf),
            &[
                ("name", name),
                ("callbacks", ACS),
                ("samlp", "true"),
                ("audience", audience),
                ("slo_enabled", "true"),
            ],
        )
    };
    let hop = admin
        .send(
            &format!("{base}/admin/applications"),
            Some(&new_app("Refused SP", "")),
        )
        .await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(hop.body.contains("id=\"f-audience-error\""), "{}", hop.body);
    let hop = admin
        .send(
            &format!("{base}/admin/applications"),
            Some(&new_app("New SP", "urn:test:new-sp")),
        )
        .await;
    assert_eq!(hop.status, 201, "{}", hop.body);
    let all = api(&Remote(&http, &base), "GET", "/api/v2/clients", None).await;
    let named = |n: &str| -> Vec<Value> {
        all.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == n)
            .cloned()
            .collect()
    };
    assert!(named("Refused SP").is_empty());
    let created = &named("New SP")[0];
    assert_eq!(
        created["addons"]["samlp"],
        json!({
            "audience": "urn:test:new-sp",
            "nameIdentifierFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
            "signResponse": false,
            "signatureAlgorithm": "rsa-sha256",
            "digestAlgorithm": "sha256",
            "lifetimeInSeconds": 3600,
            "mappings": {},
            "logout": {"slo_enabled": true},
            "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
            "allowIdpInitiated": false,
        })
    );
    // Its page, answered on creation, shows its metadata URL.
    let id = created["client_id"].as_str().unwrap();
    assert!(
        hop.body
            .contains(&format!("value=\"{base}/samlp/metadata/{id}\" readonly")),
        "{}",
        hop.body
    );
}

/// `fields`, with `over` replacing (or adding) the members of the same name.
fn overriding<'a>(
    fields: &[(&'a str, &'a str)],
    over: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    fields
        .iter()
        .filter(|(k, _)| over.iter().all(|(o, _)| o != k))
        .chain(over)
        .copied()
        .collect()
}

/// An application's form as posted: a regular web app with two callbacks, then `fields`
/// (replacing those of the same name).
fn app_form(csrf: Option<&str>, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = [
        ("name", "Service provider"),
        ("app_type", "regular_web"),
        (
            "callbacks",
            "http://127.0.0.1:9/sp/acs\r\nhttp://127.0.0.1:9/sp/acs2",
        ),
        ("grant_types", "authorization_code"),
        ("token_endpoint_auth_method", "client_secret_basic"),
        ("alg", "RS256"),
        ("frontchannel_logout_session_required", "true"),
    ];
    csrf.map(|c| ("csrf", c))
        .into_iter()
        .chain(overriding(&base, fields))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn admin_ui_saml_apps_on_the_embedded_default() {
    saml_apps(
        Backends::Embedded,
        "admin_ui_saml_apps_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn admin_ui_saml_apps_on_postgres_and_redis() {
    saml_apps(
        Backends::Production,
        "admin_ui_saml_apps_on_postgres_and_redis",
    )
    .await;
}
