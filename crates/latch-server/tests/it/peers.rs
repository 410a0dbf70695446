//! Real peers nobody here wrote, against the real `latch` binary on loopback: the npm
//! `openid-client` relying party (installed by `scripts/install-peers.sh`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::process::{Latch, free_port};
use crate::support::{Backends, TOKEN, env_for};

pub(crate) fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../peers")
}

pub(crate) fn require_peers() {
    let dir = peers_dir().join("node_modules/openid-client");
    assert!(
        dir.exists(),
        "npm peers are missing: run scripts/install-peers.sh (cargo xtask test does)"
    );
}

async fn openid_client_full_flow(backends: Backends, test: &str) {
    require_peers();
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let redirect = "http://127.0.0.1:9/callback";
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "openid-client RP", "callbacks": [redirect]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let email = format!("rp-{}@example.com", latch_testkit::env::unique());
    let password = "Opaque-Passw0rd!";
    let u: Value = http
        .post(format!("{}/api/v2/users", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"connection": "database", "email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking({
        let (issuer, cid, secret, email) = (
            latch.base.clone(),
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap().to_owned(),
            email.clone(),
        );
        move || {
            Command::new("node")
                .arg("rp.mjs")
                .current_dir(peers_dir())
                .env("LATCH_ISSUER", issuer)
                .env("RP_CLIENT_ID", cid)
                .env("RP_CLIENT_SECRET", secret)
                .env("RP_REDIRECT_URI", redirect)
                .env("RP_EMAIL", email)
                .env("RP_PASSWORD", password)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "rp.mjs said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "openid-client failed: {report}");
    assert_eq!(report["discovered_issuer"], latch.base.as_str());
    assert_eq!(report["sub"], u["user_id"]);
    assert_eq!(report["email"], email.as_str());
    assert_eq!(report["userinfo_email"], email.as_str());
    assert!(report["sid"].is_string());
    assert_eq!(report["has_refresh_token"], true);
    assert_eq!(report["refreshed"], true);
    assert_eq!(report["refreshed_sub"], u["user_id"]);
    assert_eq!(report["refresh_after_revoke"], "invalid_grant", "{report}");
}

#[tokio::test]
async fn openid_client_on_the_embedded_default() {
    openid_client_full_flow(Backends::Embedded, "openid_client_on_the_embedded_default").await;
}

#[tokio::test]
async fn openid_client_on_postgres_and_redis() {
    openid_client_full_flow(Backends::Production, "openid_client_on_postgres_and_redis").await;
}

/// A user agent for the cross-site part of a flow: one cookie jar per origin, redirects
/// followed by hand.
pub(crate) struct Agent {
    pub(crate) http: reqwest::Client,
    jars: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
}

pub(crate) struct Hop {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Agent {
    pub(crate) fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: Default::default(),
        }
    }

    fn origin(u: &url::Url) -> String {
        format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        )
    }

    /// Forgets the cookie `name` for the origin of `url` (a browser that lost it).
    pub(crate) fn forget_cookie(&mut self, url: &str, name: &str) {
        let u = url::Url::parse(url).unwrap();
        if let Some(jar) = self.jars.get_mut(&Self::origin(&u)) {
            jar.remove(name);
        }
    }

    /// The cookie `name` the browser holds for the origin of `url`.
    pub(crate) fn cookie(&self, url: &str, name: &str) -> Option<&str> {
        let u = url::Url::parse(url).unwrap();
        self.jars
            .get(&Self::origin(&u))?
            .get(name)
            .map(String::as_str)
    }

    pub(crate) async fn send(&mut self, url: &str, form: Option<&[(String, String)]>) -> Hop {
        let u = url::Url::parse(url).unwrap();
        let jar = self.jars.entry(Self::origin(&u)).or_default();
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = match form {
            Some(f) => self.http.post(u.clone()).form(f),
            None => self.http.get(u.clone()),
        };
        let res = req.header("Cookie", cookie).send().await.unwrap();
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (name, rest) = c.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap_or("");
            let gone = c.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            let jar = self.jars.entry(Self::origin(&u)).or_default();
            if gone {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = res
            .headers()
            .get("location")
            .map(|l| u.join(l.to_str().unwrap()).unwrap().to_string());
        let body = res.text().await.unwrap_or_default();
        Hop {
            status,
            location,
            body,
            headers,
        }
    }

    /// Follows redirects and fills the IdP's sign-in form until the browser is sent to `stop`.
    pub(crate) async fn browse_until(&mut self, start: &str, stop: &str, login: &str) -> String {
        let mut next = start.to_owned();
        for _ in 0..20 {
            if next.starts_with(stop) {
                return next;
            }
            let hop = self.send(&next, None).await;
            if let Some(l) = hop.location {
                next = l;
                continue;
            }
            assert_eq!(hop.status, 200, "{next}: {}", hop.body);
            // The IdP's form: post its hidden fields with a login and password.
            let action = hop
                .body
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("a form")
                .to_owned();
            let action = url::Url::parse(&next)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            let mut fields: Vec<(String, String)> = hop
                .body
                .split("<input type=\"hidden\"")
                .skip(1)
                .filter_map(|s| {
                    let name = s.split("name=\"").nth(1)?.split('"').next()?;
                    let value = s.split("value=\"").nth(1)?.split('"').next()?;
                    Some((name.to_owned(), value.to_owned()))
                })
                .collect();
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "any".into()));
            let hop = self.send(&action, Some(&fields)).await;
            next = hop
                .location
                .unwrap_or_else(|| panic!("the form did not redirect: {}", hop.body));
        }
        panic!("too many hops");
    }
}

pub(crate) struct Idp {
    child: std::process::Child,
    pub(crate) base: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_idp(client_id: &str, secret: &str, redirect: &str) -> Idp {
    start_idp_with(client_id, secret, redirect, None).await
}

async fn start_idp_with(
    client_id: &str,
    secret: &str,
    redirect: &str,
    backchannel: Option<&str>,
) -> Idp {
    let env: Vec<(&str, &str)> = backchannel
        .map(|b| ("IDP_BACKCHANNEL_URI", b))
        .into_iter()
        .collect();
    start_idp_env(client_id, secret, redirect, &env).await
}

/// The IdP with extra settings (`peers/idp.mjs` names them).
pub(crate) async fn start_idp_env(
    client_id: &str,
    secret: &str,
    redirect: &str,
    extra: &[(&str, &str)],
) -> Idp {
    let port = free_port();
    let mut cmd = Command::new("node");
    cmd.envs(extra.iter().copied());
    let mut child = cmd
        .arg("idp.mjs")
        .current_dir(peers_dir())
        .env("IDP_PORT", port.to_string())
        .env("IDP_CLIENT_ID", client_id)
        .env("IDP_CLIENT_SECRET", secret)
        .env("IDP_REDIRECT_URI", redirect)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Idp { child, base };
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the IdP did not start");
}

/// The whole story with real peers: an upstream OpenID provider (npm oidc-provider, set up like
/// an Okta org) signs the user in to an app through Latch; then the test plays Okta and sends a
/// Global Token Revocation signed with the IdP's key; the user is signed out everywhere.
async fn okta_sign_in_then_universal_logout(backends: Backends, test: &str) {
    require_peers();
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let callback = format!("{}/login/callback", latch.base);
    let idp = start_idp("0oaLATCH", "upstream-client-secret", &callback).await;
    let http = reqwest::Client::new();
    let app_cb = "http://127.0.0.1:9/cb";
    let rx = crate::backchannel::Receiver::start().await;
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "App", "callbacks": [app_cb],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/app1", rx.url)]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (cid, csecret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let app2_cb = "http://127.0.0.1:9/cb2";
    let c2: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "App 2", "callbacks": [app2_cb], "jwt_configuration": {"alg": "ES256"},
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/app2", rx.url)]}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cid2 = c2["client_id"].as_str().unwrap().to_owned();
    let name = "acme-okta";
    let conn = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "strategy": "okta", "enabled_clients": [cid, cid2],
            "options": {"domain": idp.base, "client_id": "0oaLATCH", "client_secret": "upstream-client-secret",
                        "global_token_revocation_enabled": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(conn.status(), 201);

    // Sign in: app -> Latch -> IdP -> Latch -> app.
    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20email%20profile%20offline_access&state=app-state&nonce=app-nonce&connection={name}",
        latch.base
    );
    let back = agent.browse_until(&start, app_cb, "alice").await;
    let back = url::Url::parse(&back).unwrap();
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("app-state"));
    let tokens = redeem(&http, &latch.base, (&cid, &csecret), &q["code"], app_cb).await;
    let id =
        jsonwebtoken::dangerous::insecure_decode::<Value>(tokens["id_token"].as_str().unwrap())
            .unwrap()
            .claims;
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["nonce"], "app-nonce");
    let user_id = id["sub"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("okta|"), "{user_id}");
    let user: Value = http
        .get(format!("{}/api/v2/users/{user_id}", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["identities"][0]["issuer"], idp.base.as_str());
    assert_eq!(user["identities"][0]["user_id"], "alice");
    assert_eq!(user["identities"][0]["provider"], "okta");
    // SSO: a second authorization needs no IdP round trip; the second app joins the session.
    let again = agent.send(&start, None).await;
    assert!(again.location.unwrap().starts_with(app_cb));
    let cb2q: String = url::form_urlencoded::byte_serialize(app2_cb.as_bytes()).collect();
    let second = agent
        .send(&format!("{}/authorize?response_type=code&client_id={cid2}&redirect_uri={cb2q}&scope=openid&state=s2&connection={name}", latch.base), None)
        .await;
    assert!(second.location.unwrap().starts_with(app2_cb));
    // SSO when the app does not name the connection (Latch would choose `database`): the Okta
    // session serves every app its connection is enabled for, with or without prompt=none…
    let unnamed = format!(
        "{}/authorize?response_type=code&client_id={cid2}&redirect_uri={cb2q}&scope=openid&state=s3",
        latch.base
    );
    for uri in [format!("{unnamed}&prompt=none"), unnamed.clone()] {
        let hop = agent.send(&uri, None).await;
        let to = hop.location.unwrap_or_default();
        assert!(
            to.starts_with(app2_cb) && to.contains("code="),
            "{uri} → {to}"
        );
    }
    // …but not an app that explicitly asks for another connection.
    let other = agent
        .send(&format!("{unnamed}&prompt=none&connection=database"), None)
        .await;
    assert!(
        other
            .location
            .unwrap_or_default()
            .contains("error=login_required")
    );

    // Okta Universal Logout.
    let endpoint = format!(
        "{}/oauth/global-token-revocation/connection/{name}",
        latch.base
    );
    let gtr = http
        .get(format!("{}/test/gtr-token", idp.base))
        .query(&[("aud", endpoint.as_str()), ("sub", "0oaLATCH")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = http
        .post(&endpoint)
        .bearer_auth(&gtr)
        .json(&json!({"subject": {"format": "iss_sub", "iss": idp.base, "sub": "alice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // Both apps get a valid logout token for the user.
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", latch.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = rx.wait_for(2, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for (path, token) in &got {
        let aud = if path == "/app1" { &cid } else { &cid2 };
        let claims = crate::backchannel::verify_logout_token(&jwks, token, aud, &latch.base);
        assert_eq!(claims["sub"], user_id.as_str());
        assert_eq!(claims["sid"], id["sid"]);
    }
    // Signed out everywhere: no session, the refresh token is dead.
    let none = agent.send(&format!("{start}&prompt=none"), None).await;
    assert!(none.location.unwrap().contains("error=login_required"));
    let refresh = http
        .post(format!("{}/oauth/token", latch.base))
        .basic_auth(&cid, Some(&csecret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 400);
    // The same GTR token again is refused (replay).
    let res = http
        .post(&endpoint)
        .bearer_auth(&gtr)
        .json(&json!({"subject": {"format": "iss_sub", "iss": idp.base, "sub": "alice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn okta_sign_in_then_universal_logout_on_the_embedded_default() {
    okta_sign_in_then_universal_logout(
        Backends::Embedded,
        "okta_sign_in_then_universal_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn okta_sign_in_then_universal_logout_on_postgres_and_redis() {
    okta_sign_in_then_universal_logout(
        Backends::Production,
        "okta_sign_in_then_universal_logout_on_postgres_and_redis",
    )
    .await;
}

/// Callbacks that must not sign anyone in: the IdP's error, an unknown state, another browser.
#[tokio::test]
async fn upstream_failures_end_on_a_page() {
    require_peers();
    let Some((env, _dir, _schema)) = env_for("upstream_failures_end_on_a_page", Backends::Embedded)
    else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let idp = start_idp(
        "0oaLATCH",
        "s3cret-value",
        &format!("{}/login/callback", latch.base),
    )
    .await;
    let http = reqwest::Client::new();
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "App", "callbacks": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cid = c["client_id"].as_str().unwrap();
    http.post(format!("{}/api/v2/connections", latch.base)).bearer_auth(TOKEN)
        .json(&json!({"name": "idp", "strategy": "oidc", "enabled_clients": [cid],
            "options": {"issuer": idp.base, "client_id": "0oaLATCH", "client_secret": "s3cret-value"}}))
        .send().await.unwrap();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&connection=idp",
        latch.base
    );
    let state_of = |loc: &str| {
        url::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned()
    };

    // The IdP says no.
    let mut agent = Agent::new();
    let hop = agent.send(&start, None).await;
    let to_idp = hop.location.unwrap();
    assert!(to_idp.starts_with(&idp.base), "{to_idp}");
    assert!(to_idp.contains("code_challenge_method=S256") && to_idp.contains("nonce="));
    let state = state_of(&to_idp);
    let denied = agent
        .send(
            &format!(
                "{}/login/callback?error=access_denied&error_description=no&state={state}",
                latch.base
            ),
            None,
        )
        .await;
    assert_eq!(denied.status, 400);
    assert!(!agent.jars.values().any(|j| j.contains_key("latch_session")));
    // The transaction is used up: the same state cannot be completed afterwards.
    let again = agent
        .send(
            &format!("{}/login/callback?code=x&state={state}", latch.base),
            None,
        )
        .await;
    assert_eq!(again.status, 400);

    // An unknown state, and a callback in another browser (login CSRF), are refused.
    let unknown = agent
        .send(
            &format!("{}/login/callback?code=x&state=nope", latch.base),
            None,
        )
        .await;
    assert_eq!(unknown.status, 400);
    let mut victim = Agent::new();
    let hop = agent.send(&start, None).await;
    let state = state_of(&hop.location.unwrap());
    let forged = victim
        .send(
            &format!("{}/login/callback?code=x&state={state}", latch.base),
            None,
        )
        .await;
    assert_eq!(forged.status, 400);
    assert!(
        !victim
            .jars
            .values()
            .any(|j| j.contains_key("latch_session"))
    );
    // And a code the IdP never issued fails the exchange.
    let hop = agent.send(&start, None).await;
    let state = state_of(&hop.location.unwrap());
    let bad = agent
        .send(
            &format!(
                "{}/login/callback?code=not-a-code&state={state}",
                latch.base
            ),
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(!agent.jars.values().any(|j| j.contains_key("latch_session")));
}

/// Which connection a sign-in goes through when the app names none: the email domain decides
/// (login hint, or the address typed in the form), else the form offers the others.
#[actix_web::test]
async fn choosing_the_connection() {
    require_peers();
    let Some(h) = crate::support::harness("choosing_the_connection", Backends::Embedded).await
    else {
        return;
    };
    let idp = start_idp("0oaLATCH", "s3cret-value", "http://127.0.0.1:9/unused").await;
    let app = crate::app!(h);
    let f = crate::oidc::fixture(&app).await;
    let mk = |name: &str, label: &str, aliases: Value, clients: Value| {
        actix_web::test::TestRequest::post()
            .uri("/api/v2/connections")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .set_json(json!({"name": name, "display_name": label, "strategy": "oidc", "enabled_clients": clients,
                "options": {"issuer": idp.base, "client_id": "0oaLATCH", "client_secret": "s3cret-value", "domain_aliases": aliases}}))
            .to_request()
    };
    let web = f.web.0.clone();
    for req in [
        mk(
            "acme",
            "Acme",
            json!(["example.org"]),
            json!([web, f.other.0]),
        ),
        mk(
            "globex",
            "Globex",
            json!(["globex.com"]),
            json!([f.other.0]),
        ),
    ] {
        assert_eq!(actix_web::test::call_service(&app, req).await.status(), 201);
    }
    let mut b = crate::browser::Browser::new();
    let base = |client: &str, cb: &str| {
        let cb: String = url::form_urlencoded::byte_serialize(cb.as_bytes()).collect();
        format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={cb}&scope=openid&state=s"
        )
    };
    // The form, and a way to the enterprise connection.
    let page = b
        .get(&app, &base(&web, "http://127.0.0.1:3000/callback"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));
    assert!(
        page.body.contains("Continue with Acme") && page.body.contains("connection=acme"),
        "{}",
        page.body
    );
    // A login hint of a federated domain goes straight to the IdP.
    let hinted = b
        .get(
            &app,
            &format!(
                "{}&login_hint=bob%40example.org",
                base(&web, "http://127.0.0.1:3000/callback")
            ),
        )
        .await;
    assert_eq!(hinted.status, 302);
    assert!(hinted.location.as_ref().unwrap().starts_with(&idp.base));
    // So does such an email typed in the form (no password needed).
    let tx = page.field("tx").unwrap();
    let typed = b
        .post_form(
            &app,
            "/login",
            &[
                ("tx", &tx),
                ("email", "alice@EXAMPLE.org"),
                ("password", ""),
            ],
        )
        .await;
    // A page that navigates on (meta refresh and a link), not a redirect of the form's POST,
    // which browsers would hold to the form's `form-action` (Latch and the app only).
    assert_eq!(typed.status, 200, "{}", typed.body);
    let host = idp.base.trim_start_matches("http://");
    assert!(
        typed.body.contains("http-equiv=\"refresh\"") && typed.body.contains(host),
        "{}",
        typed.body
    );
    assert!(typed.body.contains("Continue to Acme"));
    // An app without the database connection and two IdPs: a chooser, no password form.
    let db = h
        .state
        .store
        .find_connection_by_name(&latch_core::ConnectionName::new("database"))
        .await
        .unwrap()
        .unwrap();
    let mut off = db.clone();
    off.enabled_clients.retain(|c| c.as_str() != f.other.0);
    h.state.store.update_connection(&off).await.unwrap();
    let chooser = b
        .get(&app, &base(&f.other.0, "http://127.0.0.1:4000/callback"))
        .await;
    assert_eq!(chooser.status, 200);
    assert!(!chooser.body.contains("name=\"password\""));
    assert!(
        chooser.body.contains("Continue with Acme")
            && chooser.body.contains("Continue with Globex"),
        "{}",
        chooser.body
    );
}

/// The IdP signs the user out and tells Latch over the back channel; Latch ends the session it
/// started through that IdP and tells its own app.
#[tokio::test]
async fn upstream_backchannel_logout_ends_latch_sessions() {
    require_peers();
    let test = "upstream_backchannel_logout_ends_latch_sessions";
    let Some((env, _dir, _schema)) = env_for(test, Backends::Embedded) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let name = "upstream";
    let bcl = format!("{}/login/backchannel-logout/{name}", latch.base);
    let idp = start_idp_with(
        "0oaLATCH",
        "s3cret-value",
        &format!("{}/login/callback", latch.base),
        Some(&bcl),
    )
    .await;
    let rx = crate::backchannel::Receiver::start().await;
    let http = reqwest::Client::new();
    let app_cb = "http://127.0.0.1:9/cb";
    let c: Value = http.post(format!("{}/api/v2/clients", latch.base)).bearer_auth(TOKEN)
        .json(&json!({"name": "App", "callbacks": [app_cb], "oidc_logout": {"backchannel_logout_urls": [format!("{}/app", rx.url)]}}))
        .send().await.unwrap().json().await.unwrap();
    let cid = c["client_id"].as_str().unwrap().to_owned();
    let conn: Value = http.post(format!("{}/api/v2/connections", latch.base)).bearer_auth(TOKEN)
        .json(&json!({"name": name, "strategy": "oidc", "enabled_clients": [cid],
            "options": {"issuer": idp.base, "client_id": "0oaLATCH", "client_secret": "s3cret-value"}}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(conn["backchannel_logout_url"], bcl.as_str());

    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid&state=s&connection={name}",
        latch.base
    );
    agent.browse_until(&start, app_cb, "carol").await;
    assert!(
        agent
            .send(&format!("{start}&prompt=none"), None)
            .await
            .location
            .unwrap()
            .contains("code=")
    );

    // Sign out at the IdP (its own logout page and confirmation form).
    let page = agent.send(&format!("{}/session/end", idp.base), None).await;
    let done = confirm_idp_logout(&mut agent, &idp.base, &page).await;
    assert!(
        done.status == 303 || done.status == 302 || done.status == 200,
        "{}",
        done.status
    );

    // Latch's session is gone, and its app heard about it.
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the app got a logout token");
    let none = agent.send(&format!("{start}&prompt=none"), None).await;
    assert!(none.location.unwrap().contains("error=login_required"));

    // A forged logout token is refused.
    let res = http
        .post(&bcl)
        .form(&[("logout_token", "eyJhbGciOiJub25lIn0.e30.")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// Submits the IdP's sign-out confirmation (oidc-provider's end_session page: a form with its
/// `xsrf`) with `logout=yes`, as its user would: the IdP's answer.
pub(crate) async fn confirm_idp_logout(agent: &mut Agent, idp_base: &str, page: &Hop) -> Hop {
    let field = |marker: &str, what: &str| {
        page.body
            .split(marker)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| {
                panic!(
                    "no {what} in the IdP's page ({}): {}",
                    page.status, page.body
                )
            })
            .to_owned()
    };
    let xsrf = field("name=\"xsrf\" value=\"", "xsrf");
    let action = field("action=\"", "form action");
    let action = url::Url::parse(idp_base)
        .unwrap()
        .join(&action)
        .unwrap()
        .to_string();
    agent
        .send(
            &action,
            Some(&[("xsrf".into(), xsrf), ("logout".into(), "yes".into())]),
        )
        .await
}

/// What the IdP's end_session endpoint was sent (`peers/idp.mjs` records every request).
pub(crate) async fn end_session_requests(http: &reqwest::Client, idp: &Idp) -> Vec<Value> {
    http.get(format!("{}/test/end-session-requests", idp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A sign-in through the connection, following redirects only: `Some(the app's callback URL)`
/// when the IdP signed the user in without asking (it has a session), `None` when it stopped at
/// its sign-in form.
async fn silent_upstream_sign_in(
    agent: &mut Agent,
    start: &str,
    idp_base: &str,
    app_cb: &str,
) -> Option<String> {
    let mut next = start.to_owned();
    for _ in 0..10 {
        if next.starts_with(app_cb) {
            return Some(next);
        }
        let hop = agent.send(&next, None).await;
        match hop.location {
            Some(l) => next = l,
            None => {
                assert!(
                    next.starts_with(idp_base)
                        && hop.status == 200
                        && hop.body.contains("name=\"login\""),
                    "expected the IdP's sign-in form at {next}: {} {}",
                    hop.status,
                    hop.body
                );
                return None;
            }
        }
    }
    panic!("too many hops from {start}");
}

/// The claims of a JWT, unverified (the test reads what was sent, the IdP verifies).
pub(crate) fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// Federated logout through an upstream OpenID provider (Auth0's `federated` parameter): the
/// app's logout ends Latch's session, then sends the browser to the IdP's end_session endpoint
/// with the ID token the IdP issued at that sign-in and `post_logout_redirect_uri` =
/// `{latch}/logout?connection={name}`; the user confirms at the IdP, which ends its session and
/// sends the browser back to Latch, which sends it on to the app with the app's `state`. A plain
/// logout (no `federated`) never contacts the IdP, whose session then survives.
async fn federated_logout_through_the_idp(backends: Backends, test: &str, strategy: &str) {
    require_peers();
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let name = format!("fed-{strategy}");
    let (upstream_client, upstream_secret) = ("0oaFEDERATED", "upstream-client-secret");
    let return_url = format!("{}/logout?connection={name}", latch.base);
    let callback = format!("{}/login/callback", latch.base);
    // With a back-channel URI registered, the IdP puts `sid` in its ID tokens.
    let bcl = format!("{}/login/backchannel-logout/{name}", latch.base);
    let idp = start_idp_env(
        upstream_client,
        upstream_secret,
        &callback,
        &[
            ("IDP_POST_LOGOUT_REDIRECT_URI", return_url.as_str()),
            ("IDP_BACKCHANNEL_URI", bcl.as_str()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let (app_cb, app_bye) = ("http://127.0.0.1:9/cb", "http://127.0.0.1:9/bye");
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "App", "callbacks": [app_cb], "allowed_logout_urls": [app_bye]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (cid, csecret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let mut options = json!({"client_id": upstream_client, "client_secret": upstream_secret});
    options[if strategy == "okta" {
        "domain"
    } else {
        "issuer"
    }] = json!(idp.base);
    let res = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": name, "strategy": strategy, "enabled_clients": [cid], "options": options}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let conn: Value = res.json().await.unwrap();
    assert_eq!(
        conn["federated_logout_return_url"],
        return_url.as_str(),
        "{conn}"
    );
    let shown: Value = http
        .get(format!(
            "{}/api/v2/connections/{}",
            latch.base,
            conn["id"].as_str().unwrap()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["federated_logout_return_url"],
        return_url.as_str(),
        "{shown}"
    );

    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let byeq: String = url::form_urlencoded::byte_serialize(app_bye.as_bytes()).collect();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20email&state=s&nonce=n&connection={name}",
        latch.base
    );
    // The app's ID token for the sign-in that came back to `back`.
    let id_token_of = async |back: &str| -> String {
        let back = url::Url::parse(back).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code: {back}"))
            .1
            .into_owned();
        let t = redeem(&http, &latch.base, (&cid, &csecret), &code, app_cb).await;
        t["id_token"].as_str().unwrap().to_owned()
    };
    let latch_session_over = async |agent: &mut Agent| {
        let none = agent.send(&format!("{start}&prompt=none"), None).await;
        let to = none.location.unwrap_or_default();
        assert!(
            to.starts_with(app_cb) && to.contains("error=login_required"),
            "{to}"
        );
    };

    // Sign in through the IdP (its form).
    let mut agent = Agent::new();
    let back = agent.browse_until(&start, app_cb, "dave").await;
    let id_token = id_token_of(&back).await;
    let user_id = jwt_claims(&id_token)["sub"].as_str().unwrap().to_owned();

    // The session shows the IdP's sid, never the IdP's ID token.
    let sessions: Value = http
        .get(format!("{}/api/v2/users/{user_id}/sessions", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = sessions
        .get("sessions")
        .unwrap_or(&sessions)
        .as_array()
        .unwrap_or_else(|| panic!("{sessions}"));
    assert_eq!(list.len(), 1, "{sessions}");
    let upstream_sid = list[0]["upstream"]["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no upstream sid: {sessions}"))
        .to_owned();
    assert!(!upstream_sid.is_empty());
    assert!(
        !sessions.to_string().contains("eyJ"),
        "a token in the sessions API: {sessions}"
    );

    // A plain logout: straight back to the app, the IdP hears nothing, its session survives.
    let plain = agent
        .send(
            &format!(
                "{}/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={byeq}&state=app-state",
                latch.base
            ),
            None,
        )
        .await;
    assert_eq!(plain.status, 302, "{}", plain.body);
    assert_eq!(
        plain.location.as_deref(),
        Some(format!("{app_bye}?state=app-state").as_str())
    );
    latch_session_over(&mut agent).await;
    assert_eq!(end_session_requests(&http, &idp).await, Vec::<Value>::new());
    let back = silent_upstream_sign_in(&mut agent, &start, &idp.base, app_cb)
        .await
        .expect("the IdP's session survives a plain logout: no form");
    let id_token = id_token_of(&back).await;
    assert_eq!(end_session_requests(&http, &idp).await, Vec::<Value>::new());

    // The federated logout: Latch's session ends at once, then a plain 302 to the IdP.
    let out = agent
        .send(
            &format!(
                "{}/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={byeq}&state=app-state&federated",
                latch.base
            ),
            None,
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    let to_idp = out.location.unwrap();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", idp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let end_session = discovery["end_session_endpoint"].as_str().unwrap();
    assert!(
        to_idp.starts_with(&format!("{end_session}?")),
        "{to_idp} is not at {end_session}"
    );
    let sent: std::collections::HashMap<String, String> = url::Url::parse(&to_idp)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        sent.get("post_logout_redirect_uri"),
        Some(&return_url),
        "{to_idp}"
    );
    assert_eq!(
        sent.get("client_id").map(String::as_str),
        Some(upstream_client),
        "{to_idp}"
    );
    let state = sent.get("state").cloned().unwrap_or_default();
    assert!(!state.is_empty(), "no state: {to_idp}");
    // The hint is the ID token the IdP issued at the sign-in this session came from.
    let hint = jwt_claims(sent.get("id_token_hint").expect("an id_token_hint"));
    assert_eq!(hint["iss"], idp.base.as_str(), "{hint}");
    assert!(
        hint["aud"] == upstream_client
            || hint["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == upstream_client)),
        "{hint}"
    );
    assert_eq!(hint["sub"], "dave", "{hint}");
    assert_eq!(hint["sid"], upstream_sid.as_str(), "{hint}");
    latch_session_over(&mut agent).await;

    // The IdP gets exactly that, asks its user, signs them out, and sends the browser back.
    let page = agent.send(&to_idp, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let recorded = end_session_requests(&http, &idp).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["method"], "GET");
    assert_eq!(recorded[0]["params"], json!(sent));
    assert_eq!(recorded[0]["error"], Value::Null, "{recorded:?}");
    let done = confirm_idp_logout(&mut agent, &idp.base, &page).await;
    let back = done
        .location
        .unwrap_or_else(|| panic!("the IdP did not redirect ({}): {}", done.status, done.body));
    let back_url = url::Url::parse(&back).unwrap();
    let back_q: std::collections::HashMap<String, String> =
        back_url.query_pairs().into_owned().collect();
    assert_eq!(
        (
            format!(
                "{}{}",
                back_url.origin().ascii_serialization(),
                back_url.path()
            ),
            back_q.get("connection"),
            back_q.get("state"),
        ),
        (format!("{}/logout", latch.base), Some(&name), Some(&state)),
        "{back}"
    );
    let onward = agent.send(&back, None).await;
    assert_eq!(onward.status, 302, "{}", onward.body);
    assert_eq!(
        onward.location.as_deref(),
        Some(format!("{app_bye}?state=app-state").as_str())
    );
    // The handle is used up, and one Latch never issued leads nowhere.
    let again = agent.send(&back, None).await;
    assert_eq!(
        (again.status, again.location.as_deref()),
        (400, None),
        "{}",
        again.body
    );
    let unknown = agent
        .send(&format!("{return_url}&state=not-a-handle"), None)
        .await;
    assert_eq!(
        (unknown.status, unknown.location.as_deref()),
        (400, None),
        "{}",
        unknown.body
    );

    // Both sessions are over: the IdP asks again, Latch too.
    assert_eq!(
        silent_upstream_sign_in(&mut agent, &start, &idp.base, app_cb).await,
        None,
        "the IdP still had a session"
    );
    latch_session_over(&mut agent).await;
    assert_eq!(end_session_requests(&http, &idp).await.len(), 1);

    // The log: one federated_logout_succeeded, and the logout's slo says the IdP was told.
    let logs = async |query: &str| -> Vec<Value> {
        http.get(format!("{}/api/v2/logs?{query}", latch.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let mut succeeded = Vec::new();
    for _ in 0..50 {
        succeeded = logs("type=federated_logout_succeeded").await;
        if !succeeded.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(succeeded.len(), 1, "{succeeded:?}");
    assert_eq!(
        (&succeeded[0]["connection"], &succeeded[0]["user_id"]),
        (&json!(name), &json!(user_id)),
        "{succeeded:?}"
    );
    assert_eq!(
        logs("type=federated_logout_failed").await,
        Vec::<Value>::new()
    );
    let slo = logs(&format!("type=slo&user_id={user_id}")).await;
    let told: Vec<&Value> = slo
        .iter()
        .filter(|e| e["details"]["upstream"]["told"] == true)
        .collect();
    assert_eq!(told.len(), 1, "{slo:?}");
    let upstream = &told[0]["details"]["upstream"];
    assert_eq!(upstream["connection"], name.as_str(), "{upstream}");
    assert_eq!(upstream["strategy"], strategy, "{upstream}");
    assert_eq!(upstream["via"], "end_session_endpoint", "{upstream}");
}

#[tokio::test]
async fn federated_logout_through_an_oidc_idp_on_the_embedded_default() {
    federated_logout_through_the_idp(
        Backends::Embedded,
        "federated_logout_through_an_oidc_idp_on_the_embedded_default",
        "oidc",
    )
    .await;
}

#[tokio::test]
async fn federated_logout_through_an_oidc_idp_on_postgres_and_redis() {
    federated_logout_through_the_idp(
        Backends::Production,
        "federated_logout_through_an_oidc_idp_on_postgres_and_redis",
        "oidc",
    )
    .await;
}

#[tokio::test]
async fn federated_logout_through_okta_on_the_embedded_default() {
    federated_logout_through_the_idp(
        Backends::Embedded,
        "federated_logout_through_okta_on_the_embedded_default",
        "okta",
    )
    .await;
}

#[tokio::test]
async fn federated_logout_through_okta_on_postgres_and_redis() {
    federated_logout_through_the_idp(
        Backends::Production,
        "federated_logout_through_okta_on_postgres_and_redis",
        "okta",
    )
    .await;
}

/// An IdP whose userinfo answers are signed JWTs (`application/jwt`): Latch verifies them with the
/// keys of the IdP's JWKS and takes the email from there (the ID token has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_userinfo_is_verified() {
    require_peers();
    let Some((env, _dir, _schema)) = env_for("signed_userinfo_is_verified", Backends::Embedded)
    else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let callback = format!("{}/login/callback", latch.base);
    let idp = start_idp_env(
        "0oaSIGNED",
        "upstream-client-secret",
        &callback,
        &[("IDP_USERINFO_SIGNED", "1")],
    )
    .await;
    let http = reqwest::Client::new();
    let app_cb = "http://127.0.0.1:9/cb";
    let c: Value = http
        .post(format!("{}/api/v2/clients", latch.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "App", "callbacks": [app_cb]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (cid, csecret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    let conn = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "signed-userinfo", "strategy": "oidc", "enabled_clients": [cid],
            "options": {"issuer": idp.base, "client_id": "0oaSIGNED",
                        "client_secret": "upstream-client-secret"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(conn.status(), 201);
    let mut agent = Agent::new();
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20email&state=s&nonce=n&connection=signed-userinfo",
        latch.base
    );
    let back = url::Url::parse(&agent.browse_until(&start, app_cb, "carol").await).unwrap();
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    let tokens = redeem(&http, &latch.base, (&cid, &csecret), &q["code"], app_cb).await;
    let id =
        jsonwebtoken::dangerous::insecure_decode::<Value>(tokens["id_token"].as_str().unwrap())
            .unwrap()
            .claims;
    assert_eq!(id["email"], "carol@example.com", "{id}");
}

/// The app's code exchange at Latch's token endpoint (`client_secret_basic`): the token answer.
pub(crate) async fn redeem(
    http: &reqwest::Client,
    base: &str,
    (cid, secret): (&str, &str),
    code: &str,
    redirect_uri: &str,
) -> Value {
    http.post(format!("{base}/oauth/token"))
        .basic_auth(cid, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
