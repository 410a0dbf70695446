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
    // Federated logout switched on in the browser; the sign-out redirect URI it showed is the
    // one the API gives.
    assert_eq!(conns[0]["options"]["federated_logout"], true, "{conns}");
    assert_eq!(
        report["steps"][2]["federated_logout_return_url"], conns[0]["federated_logout_return_url"],
        "{report:#}"
    );
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
    // The deliveries page lists it, failed, with its error and "Retry now".
    let listed = eventually("listed as failed", async || {
        let p = admin
            .send(
                &format!("{base}/admin/deliveries?client_id={cid}&state=failed"),
                None,
            )
            .await;
        p.body
            .contains(&format!("/admin/deliveries/{delivery}/retry"))
            .then_some(p)
    })
    .await;
    assert!(
        listed.body.contains("backchannel_logout") && listed.body.contains("HTTP 400"),
        "{}",
        listed.body
    );
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
    assert_ne!(
        claims(&got[2].1)["jti"],
        claims(&got[3].1)["jti"],
        "a fresh logout token: an app that saw the old jti would refuse it as a replay"
    );
    assert_eq!(claims(&got[2].1)["sid"], claims(&got[3].1)["sid"]);
    let page = eventually("delivered", async || {
        let p = admin.send(&event_page, None).await;
        p.body.contains(">delivered<").then_some(p)
    })
    .await;
    assert!(!page.body.contains("Retry now"));
    let listed = admin
        .send(
            &format!("{base}/admin/deliveries?client_id={cid}&state=delivered"),
            None,
        )
        .await;
    assert!(
        listed.body.contains(&delivery)
            && !listed
                .body
                .contains(&format!("/admin/deliveries/{delivery}/retry")),
        "{}",
        listed.body
    );
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

/// An OpenID provider on loopback in the test's hands: discovery (with an
/// `end_session_endpoint` that is never fetched, only sent to), its key, and a token endpoint
/// answering whatever ID token the test set.
#[derive(Clone)]
struct OidcIdp {
    base: String,
    jwks: Value,
    id_token: std::sync::Arc<std::sync::Mutex<String>>,
}

impl OidcIdp {
    async fn start(key: &latch_jose::keys::Signer) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            jwks: json!({"keys": [key.public_jwk(latch_core::model::SigningAlg::RS256)]}),
            id_token: std::sync::Arc::default(),
        };
        let idp = me.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let idp = idp.clone();
                tokio::spawn(async move {
                    // The whole request (head, then the body its Content-Length announces).
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if n == 0 || buf.len() >= end + 4 + length {
                                break text;
                            }
                        } else if n == 0 {
                            break text;
                        }
                    };
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_owned();
                    let body = match path.as_str() {
                        "/.well-known/openid-configuration" => json!({
                            "issuer": idp.base,
                            "authorization_endpoint": format!("{}/authorize", idp.base),
                            "token_endpoint": format!("{}/token", idp.base),
                            "jwks_uri": format!("{}/jwks", idp.base),
                            "end_session_endpoint": format!("{}/end-session", idp.base),
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }),
                        "/jwks" => idp.jwks.clone(),
                        "/token" => json!({"access_token": "upstream-at", "token_type": "Bearer",
                            "expires_in": 300, "id_token": idp.id_token.lock().unwrap().clone()}),
                        _ => json!({}),
                    }
                    .to_string();
                    let _ = sock
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                });
            }
        });
        me
    }
}

/// The fieldset `section-{id}` of a form page.
fn section<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("<fieldset id=\"section-{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}: {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</fieldset>").unwrap()]
}

/// The value of the field `name` (an input or a read-only field), and its `data-template` when
/// it follows the name being typed; `None` when the field is not there.
fn field(body: &str, name: &str) -> Option<(String, Option<String>)> {
    let tag = body.split(&format!("id=\"f-{name}\" value=\"")).nth(1)?;
    let value = tag.split('"').next()?.to_owned();
    let template = tag
        .split('>')
        .next()?
        .split("data-template=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .map(str::to_owned);
    Some((value, template))
}

/// Whether the checkbox `name` is checked; `None` when it is not there.
fn ticked(body: &str, name: &str) -> Option<bool> {
    let marker =
        format!("<input type=\"checkbox\" name=\"{name}\" id=\"f-{name}\" value=\"true\" ");
    Some(body.split(&marker).nth(1)?.starts_with("checked"))
}

/// Follows redirects (at most 10) from `url` until the browser is sent to the app's callback;
/// that URL.
async fn to_the_app(agent: &mut Agent, url: &str) -> String {
    let mut next = url.to_owned();
    for _ in 0..10 {
        if next.starts_with(APP_CB) {
            return next;
        }
        let hop = agent.send(&next, None).await;
        next = hop.location.unwrap_or_else(|| {
            panic!(
                "{next} did not lead to the app: {} {}",
                hop.status, hop.body
            )
        });
    }
    panic!("too many redirects from {url}");
}

/// The app's tokens for the code in `back` (its callback URL); the ID token.
async fn id_token_of(
    http: &reqwest::Client,
    base: &str,
    (cid, secret): (&str, &str),
    back: &str,
) -> String {
    assert!(back.starts_with(APP_CB), "{back}");
    let code = url::Url::parse(back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap_or_else(|| panic!("no code: {back}"))
        .1
        .into_owned();
    let tokens: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(cid, Some(secret))
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
    tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no ID token: {tokens}"))
        .to_owned()
}

/// Issue 15 in the admin UI, on one Latch: the okta, oidc and samlp forms show the URL the IdP
/// sends logouts back to (computed from the name typed, then as stored) and the Single Logout
/// section (`federated_logout`; for SAML also `signOutEndpoint` and `disableSignout`), which the
/// form stores and clears; a user's page shows each session's upstream session (SAML NameID and
/// SessionIndex, OpenID Connect `sid`) as the sessions API does, and never the upstream ID token;
/// a logout event's page shows the IdP's part: Latch's LogoutResponse to an IdP's LogoutRequest
/// with the status it answered, a federated logout not sent and why, one sent to the
/// `end_session_endpoint` and whether the IdP's answer came back. The sessions and events are
/// made by real flows: a SAML IdP and an OpenID provider played by the test.
async fn upstream_logout(backends: Backends, test: &str) {
    use latch_core::model::SigningAlg;
    use latch_saml::idp::{AssertionSpec, HTTP_REDIRECT, IdpKey, NameId, Outbound, STATUS_SUCCESS};
    use time::{Duration, OffsetDateTime};
    const BYE: &str = "http://127.0.0.1:9/bye";
    const IDP_SSO: &str = "http://127.0.0.1:9/idp/sso";
    const IDP_SLO: &str = "http://127.0.0.1:9/idp/slo";
    const IDP_ENTITY: &str = "https://idp.admin-ui.test/saml";
    const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
    const SAM: &str = "sam@example.com";
    const UPSTREAM_CLIENT: &str = "latch-at-upstream";

    let Some((mut latch, _env)) = start(test, backends) else {
        return;
    };
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let at = Remote(&http, &base);
    let issuer = api(&at, "GET", "/.well-known/openid-configuration", None).await["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "Federating app", "callbacks": [APP_CB], "allowed_logout_urls": [BYE]}),
        ),
    )
    .await;
    let cid = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let oidc_key = latch_jose::keys::Signer::generate(SigningAlg::RS256).unwrap();
    let upstream = OidcIdp::start(&oidc_key).await;
    let saml_key = {
        let signer = latch_jose::keys::Signer::generate(SigningAlg::RS256).unwrap();
        let pem = signer.to_pem().unwrap().expose().to_owned();
        IdpKey::from_pem(
            &pem,
            &latch_testkit::env::unique(),
            OffsetDateTime::now_utc(),
            "idp",
        )
        .unwrap()
    };
    let mut admin = admin_agent(&base).await;
    let csrf = hidden(
        &admin
            .send(&format!("{base}/admin/connections/new?strategy=okta"), None)
            .await
            .body,
        "csrf",
    )
    .unwrap();
    let form = |fields: &[(&str, &str)]| -> Vec<(String, String)> {
        std::iter::once(("csrf", csrf.as_str()))
            .chain(fields.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let by_name = async |name: &str| -> Value {
        let found = api(
            &at,
            "GET",
            &format!("/api/v2/connections?name={name}"),
            None,
        )
        .await;
        found[0].clone()
    };
    let not_on = |v: &Value| matches!(v, Value::Null | Value::Bool(false));
    let template = format!("{issuer}/logout?connection={{name}}");

    // okta and oidc: the sign-out redirect URI and the federated logout switch.
    let mut return_urls = std::collections::HashMap::new();
    for (strategy, name, idp_field, idp_value) in [
        ("okta", "okta-slo", "domain", "acme.okta.com"),
        ("oidc", "oidc-slo", "issuer", upstream.base.as_str()),
    ] {
        let new = admin
            .send(
                &format!("{base}/admin/connections/new?strategy={strategy}"),
                None,
            )
            .await;
        assert_eq!(new.status, 200, "{}", new.body);
        // Before a name is typed: the placeholder, to be filled in as the name is typed.
        let for_idp = section(&new.body, "for-your-idp");
        assert!(
            for_idp.contains(
                "<label for=\"f-federated_logout_return_url\">Sign-out redirect URI</label>"
            ),
            "{strategy}: {for_idp}"
        );
        assert_eq!(
            field(for_idp, "federated_logout_return_url"),
            Some((template.clone(), Some(template.clone()))),
            "{strategy}"
        );
        let single = section(&new.body, "single-logout");
        assert!(
            single.contains("<legend>Single Logout</legend>"),
            "{single}"
        );
        assert_eq!(
            ticked(single, "federated_logout"),
            Some(false),
            "{strategy}: {single}"
        );
        assert!(
            !single.contains("signOutEndpoint") && !single.contains("disableSignout"),
            "{strategy}: SAML's fields on an OpenID Connect form: {single}"
        );
        // Refused (no client secret): the URI is computed from the name typed; the switch is
        // shown as posted; nothing is stored.
        let fields = [
            ("name", name),
            (idp_field, idp_value),
            ("client_id", UPSTREAM_CLIENT),
            ("federated_logout", "true"),
            ("enabled_clients", cid.as_str()),
        ];
        let hop = admin
            .send(
                &format!("{base}/admin/connections?strategy={strategy}"),
                Some(&form(&fields)),
            )
            .await;
        assert_eq!(hop.status, 400, "{strategy}: {}", hop.body);
        assert!(
            hop.body.contains("id=\"f-client_secret-error\""),
            "{}",
            hop.body
        );
        let want = format!("{issuer}/logout?connection={name}");
        assert_eq!(
            field(
                section(&hop.body, "for-your-idp"),
                "federated_logout_return_url"
            ),
            Some((want.clone(), Some(template.clone()))),
            "{strategy}: computed from the name typed"
        );
        assert_eq!(
            ticked(section(&hop.body, "single-logout"), "federated_logout"),
            Some(true)
        );
        assert_eq!(
            api(
                &at,
                "GET",
                &format!("/api/v2/connections?name={name}"),
                None
            )
            .await,
            json!([])
        );
        // Created with the switch on: stored; the page shows the URI as the API does.
        let mut fields = fields.to_vec();
        fields.push(("client_secret", "upstream-secret"));
        let hop = admin
            .send(
                &format!("{base}/admin/connections?strategy={strategy}"),
                Some(&form(&fields)),
            )
            .await;
        assert_eq!(hop.status, 303, "{strategy}: {}", hop.body);
        let stored = by_name(name).await;
        assert_eq!(stored["options"]["federated_logout"], true, "{stored}");
        assert_eq!(
            stored["federated_logout_return_url"],
            want.as_str(),
            "{stored}"
        );
        let edit_url = format!(
            "{base}/admin/connections/{}",
            stored["id"].as_str().unwrap()
        );
        let edit = admin.send(&edit_url, None).await;
        assert_eq!(edit.status, 200);
        assert_eq!(
            field(
                section(&edit.body, "for-your-idp"),
                "federated_logout_return_url"
            ),
            Some((want.clone(), None)),
            "{strategy}: as stored"
        );
        assert_eq!(
            ticked(section(&edit.body, "single-logout"), "federated_logout"),
            Some(true)
        );
        // Unchecked and saved: cleared.
        let fields: Vec<(&str, &str)> = fields
            .into_iter()
            .filter(|(k, _)| !["name", "federated_logout", "client_secret"].contains(k))
            .collect();
        let hop = admin.send(&edit_url, Some(&form(&fields))).await;
        assert_eq!(hop.status, 303, "{strategy}: {}", hop.body);
        let stored = by_name(name).await;
        assert!(not_on(&stored["options"]["federated_logout"]), "{stored}");
        let edit = admin.send(&edit_url, None).await;
        assert_eq!(
            ticked(section(&edit.body, "single-logout"), "federated_logout"),
            Some(false)
        );
        return_urls.insert(name, want);
    }

    // samlp: Latch's Single Logout URL, and the three Single Logout settings.
    const SAML: &str = "saml-slo";
    let new = admin
        .send(
            &format!("{base}/admin/connections/new?strategy=samlp"),
            None,
        )
        .await;
    let for_idp = section(&new.body, "for-your-idp");
    assert!(
        for_idp.contains("<label for=\"f-sp_single_logout_url\">Single Logout URL"),
        "{for_idp}"
    );
    assert_eq!(
        field(for_idp, "sp_single_logout_url"),
        Some((template.clone(), Some(template.clone())))
    );
    let single = section(&new.body, "single-logout");
    assert!(
        single.contains("<legend>Single Logout</legend>"),
        "{single}"
    );
    assert_eq!(ticked(single, "federated_logout"), Some(false), "{single}");
    assert_eq!(ticked(single, "disableSignout"), Some(false), "{single}");
    assert!(
        single.contains(
            "<input type=\"url\" name=\"signOutEndpoint\" id=\"f-signOutEndpoint\" value=\"\""
        ),
        "{single}"
    );
    let cert = saml_key.cert_pem();
    let saml_fields = [
        ("signInEndpoint", IDP_SSO),
        ("signingCert", cert.as_str()),
        ("signOutEndpoint", IDP_SLO),
        ("federated_logout", "true"),
        ("disableSignout", "true"),
        ("enabled_clients", cid.as_str()),
    ];
    // Refused (the IdP's logout URL is not a URL): the error on its field, the Single Logout
    // URL computed from the name typed, the switches as posted; nothing stored.
    let hop = admin
        .send(
            &format!("{base}/admin/connections?strategy=samlp"),
            Some(&form(&overriding(
                &saml_fields,
                &[("name", SAML), ("signOutEndpoint", "not a url")],
            ))),
        )
        .await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(
        hop.body.contains("id=\"f-signOutEndpoint-error\""),
        "{}",
        hop.body
    );
    let want_slo = format!("{issuer}/logout?connection={SAML}");
    assert_eq!(
        field(section(&hop.body, "for-your-idp"), "sp_single_logout_url"),
        Some((want_slo.clone(), Some(template.clone())))
    );
    let single = section(&hop.body, "single-logout");
    assert_eq!(ticked(single, "federated_logout"), Some(true));
    assert_eq!(ticked(single, "disableSignout"), Some(true));
    assert_eq!(
        api(
            &at,
            "GET",
            &format!("/api/v2/connections?name={SAML}"),
            None
        )
        .await,
        json!([])
    );
    // Created: stored as the form says; the page shows it back.
    let hop = admin
        .send(
            &format!("{base}/admin/connections?strategy=samlp"),
            Some(&form(&overriding(&saml_fields, &[("name", SAML)]))),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let conn = by_name(SAML).await;
    let opts = &conn["options"];
    assert_eq!(opts["signOutEndpoint"], IDP_SLO, "{conn}");
    assert_eq!(opts["disableSignout"], true, "{conn}");
    assert_eq!(opts["federated_logout"], true, "{conn}");
    assert_eq!(opts["sp_single_logout_url"], want_slo.as_str(), "{conn}");
    let saml_edit = format!("{base}/admin/connections/{}", conn["id"].as_str().unwrap());
    let edit = admin.send(&saml_edit, None).await;
    assert_eq!(
        field(section(&edit.body, "for-your-idp"), "sp_single_logout_url"),
        Some((want_slo.clone(), None))
    );
    let single = section(&edit.body, "single-logout");
    assert_eq!(
        field(single, "signOutEndpoint"),
        Some((IDP_SLO.to_owned(), None))
    );
    assert_eq!(ticked(single, "federated_logout"), Some(true));
    assert_eq!(ticked(single, "disableSignout"), Some(true));
    let sp_entity = opts["sp_entity_id"].as_str().unwrap().to_owned();

    // A sign-in through the SAML IdP (played by the test): the session keeps the NameID and
    // SessionIndex the IdP issued.
    let saml_sign_in = async |browser: &mut Agent, session_index: &str| -> String {
        let cbq: String = url::form_urlencoded::byte_serialize(APP_CB.as_bytes()).collect();
        let hop = browser
            .send(&format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid&state=s&connection={SAML}"), None)
            .await;
        let to_idp = hop
            .location
            .unwrap_or_else(|| panic!("to the IdP: {}", hop.body));
        assert!(to_idp.starts_with(IDP_SSO), "{to_idp}");
        let relay = url::Url::parse(&to_idp)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "RelayState")
            .unwrap()
            .1
            .into_owned();
        let acs = format!("{base}/login/callback?connection={SAML}");
        let request_id = latch_testkit::saml::authn_request_id(&to_idp);
        let now = OffsetDateTime::now_utc();
        let response = latch_saml::idp::signed_response(
            &saml_key,
            &AssertionSpec {
                issuer: IDP_ENTITY,
                audience: &sp_entity,
                acs_url: &acs,
                in_response_to: Some(&request_id),
                name_id: SAM,
                name_id_format: EMAIL_FORMAT,
                session_index,
                authn_instant: now,
                now,
                lifetime_seconds: 300,
                attributes: &[("email".to_owned(), SAM.to_owned())],
                sign_response: false,
            },
        )
        .unwrap();
        let hop = browser
            .send(
                &acs,
                Some(&[
                    (
                        "SAMLResponse".into(),
                        latch_testkit::saml::encode(&response),
                    ),
                    ("RelayState".into(), relay),
                ]),
            )
            .await;
        assert_eq!(hop.status, 303, "{}", hop.body);
        let back = to_the_app(browser, &hop.location.unwrap()).await;
        id_token_of(&http, &base, (&cid, &secret), &back).await
    };
    let mut browser = Agent::new();
    let first_index = format!("_si-{}", latch_testkit::env::unique());
    let id_token = saml_sign_in(&mut browser, &first_index).await;
    let uid = claims(&id_token)["sub"].as_str().unwrap().to_owned();
    let sessions_path = format!("/api/v2/users/{uid}/sessions");
    let sessions = api(&at, "GET", &sessions_path, None).await;
    let up = &sessions["sessions"][0]["upstream"];
    assert_eq!(up["name_id"], SAM, "{sessions}");
    assert_eq!(up["name_id_format"], EMAIL_FORMAT, "{sessions}");
    assert_eq!(up["session_index"], first_index.as_str(), "{sessions}");
    let user_page = format!("{base}/admin/users/{uid}");
    let page = admin.send(&user_page, None).await;
    assert_eq!(page.status, 200);
    let shown = format!(
        "<td>{SAML}<br><small>NameID {}, SessionIndex {}</small></td>",
        up["name_id"].as_str().unwrap(),
        up["session_index"].as_str().unwrap()
    );
    assert!(page.body.contains(&shown), "{shown} not in {}", page.body);

    // Federated logout with disableSignout: nothing is sent, the browser goes to the app; the
    // event's page says the IdP was not told, and why.
    let logout = |id_token: &str, state: &str| {
        let byeq: String = url::form_urlencoded::byte_serialize(BYE.as_bytes()).collect();
        format!(
            "{base}/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={byeq}&state={state}&federated"
        )
    };
    let hop = browser.send(&logout(&id_token, "st1"), None).await;
    assert_eq!(hop.status, 302, "{}", hop.body);
    assert_eq!(
        hop.location.as_deref(),
        Some(format!("{BYE}?state=st1").as_str())
    );
    let slo_event = async |what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        eventually(what, async || {
            let logs = api(&at, "GET", "/api/v2/logs?type=slo&per_page=100", None).await;
            logs.as_array()?
                .iter()
                .find(|e| e["details"]["upstream"].is_object() && f(&e["details"]["upstream"]))
                .cloned()
        })
        .await
    };
    let event = slo_event("the federated logout's event", &|u| u["connection"] == SAML).await;
    let told = &event["details"]["upstream"];
    assert_eq!(told["told"], false, "{event}");
    let reason = told["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .expect("a reason");
    let page = admin
        .send(
            &format!("{base}/admin/logs/{}", event["log_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(page.status, 200);
    let row = format!(
        "<tr><td>{SAML}</td><td>federated logout</td><td></td><td>not sent: {reason}</td></tr>"
    );
    assert!(page.body.contains(&row), "{row} not in {}", page.body);

    // Unchecked and saved: disableSignout and federated_logout are cleared; the IdP's logout URL
    // stays.
    let kept: Vec<(&str, &str)> = saml_fields
        .iter()
        .copied()
        .filter(|(k, _)| !["federated_logout", "disableSignout"].contains(k))
        .collect();
    let hop = admin.send(&saml_edit, Some(&form(&kept))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let conn = by_name(SAML).await;
    assert!(not_on(&conn["options"]["disableSignout"]), "{conn}");
    assert!(not_on(&conn["options"]["federated_logout"]), "{conn}");
    assert_eq!(conn["options"]["signOutEndpoint"], IDP_SLO, "{conn}");
    let single_now = admin.send(&saml_edit, None).await;
    let single = section(&single_now.body, "single-logout");
    assert_eq!(ticked(single, "federated_logout"), Some(false));
    assert_eq!(ticked(single, "disableSignout"), Some(false));

    // The IdP ends the session (its signed LogoutRequest, HTTP-Redirect, at the Single Logout
    // URL the page shows): Latch answers Success at the IdP's logout URL; the event's page shows
    // that answer, to that request.
    let second_index = format!("_si-{}", latch_testkit::env::unique());
    saml_sign_in(&mut browser, &second_index).await;
    let request_id = latch_saml::idp::new_id();
    let now = OffsetDateTime::now_utc();
    let xml = latch_saml::idp::logout_request_xml(
        &request_id,
        IDP_ENTITY,
        &want_slo,
        &NameId {
            value: SAM.into(),
            format: Some(EMAIL_FORMAT.into()),
            ..NameId::default()
        },
        Some(&second_index),
        now,
        Some(now + Duration::minutes(5)),
    );
    let Outbound::Redirect(to_latch) = Outbound::carry(
        &saml_key,
        HTTP_REDIRECT,
        &url::Url::parse(&want_slo).unwrap(),
        true,
        &xml,
        &request_id,
        None,
    )
    .unwrap() else {
        panic!("HTTP-Redirect");
    };
    let hop = browser.send(to_latch.as_str(), None).await;
    assert_eq!(hop.status, 302, "{}", hop.body);
    let answer = hop.location.unwrap();
    assert!(answer.starts_with(&format!("{IDP_SLO}?")), "{answer}");
    let response = latch_testkit::saml::redirect_message(&answer, "SAMLResponse");
    assert!(
        response.contains(&format!("InResponseTo=\"{request_id}\"")),
        "{response}"
    );
    let sessions = api(&at, "GET", &sessions_path, None).await;
    assert_eq!(sessions["sessions"], json!([]), "the IdP ended the session");
    let event = slo_event("the IdP's logout's event", &|u| {
        u["protocol"] == "saml" && u["logout_request_id"] == request_id.as_str()
    })
    .await;
    let answered = event["details"]["upstream"]["answered"].as_str().unwrap();
    assert_eq!(answered, STATUS_SUCCESS, "{event}");
    assert!(
        response.contains(&format!("Value=\"{answered}\"")),
        "{response}"
    );
    let page = admin
        .send(
            &format!("{base}/admin/logs/{}", event["log_id"].as_str().unwrap()),
            None,
        )
        .await;
    let row = format!(
        "<tr><td>{SAML}</td><td>SAML LogoutResponse to the IdP</td><td><code>{request_id}</code></td><td>answered {answered}</td></tr>"
    );
    assert!(page.body.contains(&row), "{row} not in {}", page.body);

    // The IdP's logout URL emptied and saved: cleared.
    let emptied = overriding(&kept, &[("signOutEndpoint", "")]);
    let hop = admin.send(&saml_edit, Some(&form(&emptied))).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let conn = by_name(SAML).await;
    assert_eq!(conn["options"].get("signOutEndpoint"), None, "{conn}");

    // A sign-in through the OpenID provider: the session shows the upstream sid, never the
    // upstream ID token.
    let cbq: String = url::form_urlencoded::byte_serialize(APP_CB.as_bytes()).collect();
    let mut browser = Agent::new();
    let hop = browser
        .send(&format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid&state=s&connection=oidc-slo"), None)
        .await;
    let to_idp = url::Url::parse(&hop.location.expect("to the OpenID provider")).unwrap();
    assert!(
        to_idp
            .as_str()
            .starts_with(&format!("{}/authorize", upstream.base)),
        "{to_idp}"
    );
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    let upstream_sid = format!("upstream-sid-{}", latch_testkit::env::unique());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let upstream_token = latch_jose::keys::sign_jws(
        &oidc_key,
        SigningAlg::RS256,
        &oidc_key.thumbprint(),
        "JWT",
        &json!({"iss": upstream.base, "sub": "olive", "aud": UPSTREAM_CLIENT, "iat": now,
            "exp": now + 300, "nonce": q["nonce"], "sid": upstream_sid, "email": "olive@example.com"}),
    )
    .unwrap();
    *upstream.id_token.lock().unwrap() = upstream_token.clone();
    let back = to_the_app(
        &mut browser,
        &format!("{base}/login/callback?code=any&state={}", q["state"]),
    )
    .await;
    let id_token = id_token_of(&http, &base, (&cid, &secret), &back).await;
    let uid = claims(&id_token)["sub"].as_str().unwrap().to_owned();
    let sessions = api(&at, "GET", &format!("/api/v2/users/{uid}/sessions"), None).await;
    let up = &sessions["sessions"][0]["upstream"];
    assert_eq!(up["sid"], upstream_sid.as_str(), "{sessions}");
    let page = admin.send(&format!("{base}/admin/users/{uid}"), None).await;
    assert_eq!(page.status, 200);
    let shown = format!("<td>oidc-slo<br><small>sid {upstream_sid}</small></td>");
    assert!(page.body.contains(&shown), "{shown} not in {}", page.body);
    for (what, body) in [
        ("the user's page", &page.body),
        ("the sessions API", &sessions.to_string()),
    ] {
        for part in upstream_token.split('.').skip(1) {
            assert!(!body.contains(part), "{what} shows the upstream ID token");
        }
        assert!(
            !body.contains("id_token"),
            "{what} names an upstream ID token"
        );
    }

    // Federated logout through the end_session_endpoint, with the sign-out redirect URI the
    // connection's page shows: told, no answer yet; then the IdP sends the browser back, and the
    // event's page says it ended its session.
    let hop = browser.send(&logout(&id_token, "st2"), None).await;
    assert_eq!(hop.status, 302, "{}", hop.body);
    let to_idp = url::Url::parse(&hop.location.unwrap()).unwrap();
    assert!(
        to_idp
            .as_str()
            .starts_with(&format!("{}/end-session?", upstream.base)),
        "{to_idp}"
    );
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    assert_eq!(q.get("id_token_hint"), Some(&upstream_token));
    assert_eq!(
        q.get("post_logout_redirect_uri"),
        return_urls.get("oidc-slo")
    );
    let event = slo_event("the OpenID provider's federated logout's event", &|u| {
        u["connection"] == "oidc-slo"
    })
    .await;
    assert_eq!(event["details"]["upstream"]["told"], true, "{event}");
    assert_eq!(
        event["details"]["upstream"]["via"], "end_session_endpoint",
        "{event}"
    );
    let event_page = format!("{base}/admin/logs/{}", event["log_id"].as_str().unwrap());
    let row = |outcome: &str| {
        format!(
            "<tr><td>oidc-slo</td><td>federated logout (end_session_endpoint)</td><td></td><td>{outcome}</td></tr>"
        )
    };
    let page = admin.send(&event_page, None).await;
    let waiting = row("no answer yet (the browser has not come back)");
    assert!(
        page.body.contains(&waiting),
        "{waiting} not in {}",
        page.body
    );
    let back = format!("{}&state={}", q["post_logout_redirect_uri"], q["state"]);
    let hop = browser.send(&back, None).await;
    assert_eq!(hop.status, 302, "{}", hop.body);
    assert_eq!(
        hop.location.as_deref(),
        Some(format!("{BYE}?state=st2").as_str())
    );
    let ended = row("ended its session");
    eventually("the IdP's answer on the event's page", async || {
        let page = admin.send(&event_page, None).await;
        page.body.contains(&ended).then_some(())
    })
    .await;
}

#[tokio::test]
async fn admin_ui_upstream_logout_on_the_embedded_default() {
    upstream_logout(
        Backends::Embedded,
        "admin_ui_upstream_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn admin_ui_upstream_logout_on_postgres_and_redis() {
    upstream_logout(
        Backends::Production,
        "admin_ui_upstream_logout_on_postgres_and_redis",
    )
    .await;
}
