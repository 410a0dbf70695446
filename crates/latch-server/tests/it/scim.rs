//! Inbound SCIM 2.0 per connection (issue 16), end to end:
//! - a compliance checker nobody here wrote (PyPI `scim2-tester`, through `peers/scim_check.py`)
//!   against the real `latch` binary, every Users check passing;
//! - Okta's provisioning lifecycle with the `oidc-provider` peer as the org: provision, sign in to
//!   two apps as one user, deactivate (everything ends, both apps told), reactivate, delete, and a
//!   GTR for a provisioned user who never signed in;
//! - hostile requests, each refused and changing nothing;
//! - a password Okta syncs is never served back nor kept.
//!
//! Each on both backend pairs.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test;
use latch_core::clock::ManualClock;
use serde_json::{Value, json};

use crate::backchannel::{Receiver, verify_logout_token};
use crate::peers::{Agent, Hop, jwt_claims, peers_dir, redeem, require_peers, start_idp_env};
use crate::process::{Latch, free_port};
use crate::support::{Backends, Harness, Remote, Target, api, call, env_for};
use crate::{app, on_all_backends};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCIM_JSON: &str = "application/scim+json";

/// The upstream app registration at the IdP (Okta's app instance id is the GTR `sub`).
const UPSTREAM_CLIENT: &str = "0oaSCIM";
const UPSTREAM_SECRET: &str = "upstream-client-secret";

/// The User resource Okta POSTs (its "Create Users" body, without a synced password): `userName`
/// the login, `externalId` Okta's subject for the user.
fn okta_user(sub: &str, given: &str, family: &str) -> Value {
    let email = format!("{sub}@example.com");
    json!({
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": sub,
        "groups": [],
        "active": true
    })
}

/// Okta's deactivation and reactivation: a PatchOp with a path-less `replace`.
fn okta_active(active: bool) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]})
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A collection answer: the array, or the array under `key` (Auth0's object form).
fn listed(v: &Value, key: &str) -> Vec<Value> {
    v.as_array()
        .or_else(|| v.get(key).and_then(Value::as_array))
        .unwrap_or_else(|| panic!("not a {key} list: {v}"))
        .clone()
}

/// Turns SCIM on for the connection (the default configuration: `externalId` is the subject).
async fn scim_on(at: &impl Target, conn_id: &str) {
    api(
        at,
        "POST",
        &format!("/api/v2/connections/{conn_id}/scim-configuration"),
        Some(json!({})),
    )
    .await;
}

/// A SCIM token of the connection (`token_request` as the API takes it: `scopes`,
/// `token_lifetime`): `(token_id, token)`.
async fn scim_token(at: &impl Target, conn_id: &str, token_request: Value) -> (String, String) {
    let t = api(
        at,
        "POST",
        &format!("/api/v2/connections/{conn_id}/scim-configuration/tokens"),
        Some(token_request),
    )
    .await;
    (
        t["token_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{t}"))
            .to_owned(),
        t["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{t}"))
            .to_owned(),
    )
}

/// Latch's log events matching `query`, newest first.
async fn logs(at: &impl Target, query: &str) -> Vec<Value> {
    listed(
        &api(
            at,
            "GET",
            &format!("/api/v2/logs?per_page=100&{query}"),
            None,
        )
        .await,
        "logs",
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Compliance: scim2-tester against the real binary.

/// Runs `peers/scim_check.py` (scim2-tester's `check_server`) against `url` with `token`: its
/// JSON report.
async fn run_scim2_tester(url: &str, token: &str) -> Value {
    let python = peers_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python peers are missing: run scripts/install-peers.sh (cargo xtask test does)"
    );
    let (url, token) = (url.to_owned(), token.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("scim_check.py")
            .current_dir(peers_dir())
            .env("SCIM_URL", url)
            .env("SCIM_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scim_check.py could not run the checker ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "scim_check.py said something else than its report ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A check passed: it found the server conforming (scim2-tester's SUCCESS for a MUST, COMPLIANT
/// for a SHOULD, ACCEPTABLE for a MAY the server uses). The one skip accepted is POST `/.search`
/// at the service provider's root, which RFC 7644 §3.4.3 leaves optional (the server answers
/// 501 and the checker skips it); any other skip means the server kept a check from running.
fn passed(r: &Value) -> bool {
    match r["status"].as_str() {
        Some("SUCCESS" | "COMPLIANT" | "ACCEPTABLE") => true,
        Some("SKIPPED") => {
            r["title"] == "search_with_attributes"
                && r["reason"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("POST /.search"))
        }
        _ => false,
    }
}

async fn scim2_tester_compliance(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let at = Remote(&http, &latch.base);
    let conn = api(
        &at,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": "scim-compliance", "strategy": "okta",
            "options": {"domain": "acme.okta.example.com", "client_id": UPSTREAM_CLIENT,
                        "client_secret": UPSTREAM_SECRET}})),
    )
    .await;
    let conn_id = conn["id"].as_str().unwrap().to_owned();
    scim_on(&at, &conn_id).await;
    let (token_id, token) = scim_token(&at, &conn_id, json!({})).await;

    let base = format!("{}/scim/v2/connections/{conn_id}", latch.base);
    let report = run_scim2_tester(&base, &token).await;
    let results = report["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));

    // Latch serves Users and no Groups: every check is a discovery one or a Users one.
    let types: BTreeSet<Option<&str>> = results
        .iter()
        .map(|r| r["resource_type"].as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([None, Some("User")]),
        "resource types checked: {types:?}"
    );
    // The checker ran its whole suite: discovery, and each kind of Users check.
    let titles: BTreeSet<&str> = results.iter().filter_map(|r| r["title"].as_str()).collect();
    for want in [
        "service_provider_config_endpoint",
        "query_all_resource_types",
        "query_all_schemas",
        "random_url",
        "object_creation",
        "object_query",
        "object_query_without_id",
        "object_query_with_attributes",
        "object_list_with_attributes",
        "search_with_attributes",
        "object_replacement",
        "object_deletion",
        "check_add_attribute",
        "check_remove_attribute",
        "check_replace_attribute",
    ] {
        assert!(
            titles.contains(want),
            "scim2-tester did not run {want}: {titles:?}"
        );
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !passed(r))
        .map(|r| {
            format!(
                "{} {} [{}]: {}\n    {}",
                r["status"].as_str().unwrap_or("?"),
                r["title"].as_str().unwrap_or("?"),
                r["resource_type"].as_str().unwrap_or("discovery"),
                r["reason"].as_str().unwrap_or(""),
                r["data"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "scim2-tester {}: {} of {} checks did not pass:\n{}",
        report["scim2_tester"],
        failed.len(),
        results.len(),
        failed.join("\n")
    );

    // The checker's writes went through its token, each logged once as `sscim` naming it.
    let events = logs(&at, "type=sscim").await;
    assert!(
        !events.is_empty(),
        "no sscim event for the checker's writes"
    );
    for e in &events {
        assert_eq!(e["details"]["token_id"], token_id.as_str(), "{e}");
        assert_eq!(e["connection"], "scim-compliance", "{e}");
    }
}

#[tokio::test]
async fn scim2_tester_passes_on_the_embedded_default() {
    scim2_tester_compliance(
        Backends::Embedded,
        "scim2_tester_passes_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn scim2_tester_passes_on_postgres_and_redis() {
    scim2_tester_compliance(
        Backends::Production,
        "scim2_tester_passes_on_postgres_and_redis",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Okta's lifecycle with the oidc-provider peer as the org.

/// A SCIM call as Okta makes it (`application/scim+json`, the bearer token): the status and the
/// JSON answer (`Null` when empty). Any answer with a body is SCIM's media type.
async fn scim(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(token)
        .header("Accept", SCIM_JSON);
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/scim+json; charset=utf-8")
            .body(b.to_string());
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap();
    if !text.is_empty() {
        assert!(
            ct.starts_with(SCIM_JSON),
            "{method} {url}: {status} answered {ct:?}: {text}"
        );
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct App {
    id: String,
    secret: String,
    cb: String,
    /// Where its back-channel logout tokens arrive at the receiver.
    path: String,
}

/// The tokens an app got at the end of a sign-in.
struct Tokens {
    access: String,
    refresh: String,
    claims: Value,
}

/// `key` of `url`'s query.
fn param(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A sign-in from `start` in `agent`: redirects followed, the IdP's sign-in form filled as `login`
/// if it asks. `Ok(the URL the browser reached at `stop`)`, or `Err` with the URL and answer of
/// the page it stopped at.
async fn sign_in(
    agent: &mut Agent,
    start: &str,
    stop: &str,
    idp: &str,
    login: &str,
) -> Result<String, (String, Hop)> {
    let mut next = start.to_owned();
    for _ in 0..20 {
        if next.starts_with(stop) {
            return Ok(next);
        }
        let hop = agent.send(&next, None).await;
        if let Some(l) = hop.location {
            next = l;
            continue;
        }
        if !(next.starts_with(idp) && hop.status == 200 && hop.body.contains("name=\"login\"")) {
            return Err((next, hop));
        }
        // The IdP's form: its hidden fields, a login and a password.
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
        let hop = agent.send(&action, Some(&fields)).await;
        next = hop
            .location
            .unwrap_or_else(|| panic!("the IdP's form did not redirect: {}", hop.body));
    }
    panic!("too many hops from {start}");
}

/// Everything the lifecycle test drives.
struct Org {
    http: reqwest::Client,
    base: String,
    idp: String,
    name: String,
    users: String,
    token: String,
    apps: Vec<App>,
    rx: Receiver,
}

impl Org {
    fn at(&self) -> Remote<'_> {
        Remote(&self.http, &self.base)
    }

    fn authorize(&self, app: &App, extra: &str) -> String {
        format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20email%20profile%20offline_access&state=s&nonce=n&connection={}{extra}",
            self.base,
            app.id,
            enc(&app.cb),
            self.name
        )
    }

    /// Signs `login` in to `app` through the connection (the IdP's form if it asks) and redeems
    /// the code.
    async fn sign_in(&self, agent: &mut Agent, app: &App, login: &str) -> Tokens {
        let back = sign_in(agent, &self.authorize(app, ""), &app.cb, &self.idp, login)
            .await
            .unwrap_or_else(|(at, hop)| {
                panic!("the sign-in stopped at {at}: {} {}", hop.status, hop.body)
            });
        let code = param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
        let t = redeem(
            &self.http,
            &self.base,
            (&app.id, &app.secret),
            &code,
            &app.cb,
        )
        .await;
        Tokens {
            access: t["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{t}"))
                .to_owned(),
            refresh: t["refresh_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh token: {t}"))
                .to_owned(),
            claims: jwt_claims(t["id_token"].as_str().unwrap()),
        }
    }

    /// `prompt=none` for `app`: whether Latch still has a session for this browser.
    async fn silent(&self, agent: &mut Agent, app: &App) -> String {
        let hop = agent.send(&self.authorize(app, "&prompt=none"), None).await;
        let to = hop.location.unwrap_or_default();
        assert!(to.starts_with(&app.cb), "prompt=none went to {to}");
        to
    }

    /// The app's refresh exchange: the status and the answer.
    async fn refresh(&self, app: &App, refresh_token: &str) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(&app.id, Some(&app.secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn userinfo(&self, access_token: &str) -> u16 {
        self.http
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn sessions(&self, user_id: &str) -> Vec<Value> {
        listed(
            &api(
                &self.at(),
                "GET",
                &format!("/api/v2/users/{user_id}/sessions"),
                None,
            )
            .await,
            "sessions",
        )
    }

    /// Both apps get exactly one logout token each for `user_id`'s session `sid` (verified as an
    /// RP verifies it), and each delivery's log event names `initiator`.
    async fn both_apps_told(&self, user_id: &str, sid: &Value, initiator: &str) {
        let got = self.rx.wait_for(2, Duration::from_secs(10)).await;
        let jwks: Value = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paths: BTreeSet<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            (got.len(), paths),
            (2, self.apps.iter().map(|a| a.path.as_str()).collect()),
            "{initiator}: {got:?}"
        );
        for (path, token) in &got {
            let app = self.apps.iter().find(|a| &a.path == path).unwrap();
            let claims = verify_logout_token(&jwks, token, &app.id, &self.base);
            assert_eq!(claims["sub"], user_id, "{initiator}: {claims}");
            assert_eq!(&claims["sid"], sid, "{initiator}: {claims}");
        }
        self.rx.tokens.lock().unwrap().clear();
        let at = self.at();
        // Each delivery's log event (written after it) names the initiator.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let told = loop {
            let all = logs(&at, "type=oidc_backchannel_logout_succeeded").await;
            let told: Vec<Value> = all
                .iter()
                .filter(|e| &e["details"]["sid"] == sid)
                .cloned()
                .collect();
            if told.len() >= 2 {
                break told;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{initiator}: no delivery event for the session {sid}: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let clients: BTreeSet<&str> = told
            .iter()
            .filter_map(|e| e["client_id"].as_str())
            .collect();
        assert_eq!(
            (told.len(), clients),
            (2, self.apps.iter().map(|a| a.id.as_str()).collect()),
            "{told:?}"
        );
        for e in &told {
            assert_eq!(
                (&e["user_id"], &e["details"]["initiator"]),
                (&json!(user_id), &json!(initiator)),
                "{e}"
            );
        }
    }

    /// A GTR (Okta's Universal Logout) for the IdP's subject `sub`, signed by the IdP: the status.
    async fn gtr(&self, sub: &str) -> u16 {
        let endpoint = format!(
            "{}/oauth/global-token-revocation/connection/{}",
            self.base, self.name
        );
        let jwt = self
            .http
            .get(format!("{}/test/gtr-token", self.idp))
            .query(&[("aud", endpoint.as_str()), ("sub", UPSTREAM_CLIENT)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        self.http
            .post(&endpoint)
            .bearer_auth(jwt)
            .json(&json!({"subject": {"format": "iss_sub", "iss": self.idp, "sub": sub}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn okta_lifecycle(backends: Backends, test: &str) {
    require_peers();
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let base = latch.base.clone();
    let idp = start_idp_env(
        UPSTREAM_CLIENT,
        UPSTREAM_SECRET,
        &format!("{base}/login/callback"),
        &[],
    )
    .await;
    let rx = Receiver::start().await;
    let at = Remote(&http, &base);
    let mut apps = Vec::new();
    for (i, alg) in [(1, "RS256"), (2, "ES256")] {
        let cb = format!("http://127.0.0.1:9/cb{i}");
        let path = format!("/app{i}");
        let c = api(
            &at,
            "POST",
            "/api/v2/clients",
            Some(json!({"name": format!("App {i}"), "callbacks": [cb],
                "jwt_configuration": {"alg": alg},
                "oidc_logout": {"backchannel_logout_urls": [format!("{}{path}", rx.url)]}})),
        )
        .await;
        apps.push(App {
            id: c["client_id"].as_str().unwrap().to_owned(),
            secret: c["client_secret"].as_str().unwrap().to_owned(),
            cb,
            path,
        });
    }
    let name = "acme-okta";
    let conn = api(
        &at,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": "okta", "enabled_clients": [apps[0].id, apps[1].id],
            "options": {"domain": idp.base, "client_id": UPSTREAM_CLIENT, "client_secret": UPSTREAM_SECRET,
                        "global_token_revocation_enabled": true}})),
    )
    .await;
    let conn_id = conn["id"].as_str().unwrap().to_owned();
    scim_on(&at, &conn_id).await;
    let (token_id, token) = scim_token(&at, &conn_id, json!({})).await;
    let org = Org {
        http: http.clone(),
        base: base.clone(),
        idp: idp.base.clone(),
        name: name.to_owned(),
        users: format!("{base}/scim/v2/connections/{conn_id}/Users"),
        token,
        apps,
        rx,
    };
    let (app1, app2) = (&org.apps[0], &org.apps[1]);
    let by_user_name = format!(
        "{}?filter={}&startIndex=1&count=100",
        org.users,
        enc(r#"userName eq "dave@example.com""#)
    );

    // Okta looks the user up, then creates them: externalId is the IdP's subject ("dave").
    let (s, found) = scim(&http, "GET", &by_user_name, &org.token, None).await;
    assert_eq!((s, &found["totalResults"]), (200, &json!(0)), "{found}");
    let (s, dave) = scim(
        &http,
        "POST",
        &org.users,
        &org.token,
        Some(okta_user("dave", "Dave", "Doe")),
    )
    .await;
    assert_eq!(s, 201, "{dave}");
    let dave_id = dave["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&dave["externalId"], &dave["active"], &dave["userName"]),
        (&json!("dave"), &json!(true), &json!("dave@example.com")),
        "{dave}"
    );
    let dave_url = format!("{}/{dave_id}", org.users);
    for filter in [
        r#"userName eq "dave@example.com""#,
        r#"externalId eq "dave""#,
    ] {
        let (s, found) = scim(
            &http,
            "GET",
            &format!("{}?filter={}", org.users, enc(filter)),
            &org.token,
            None,
        )
        .await;
        assert_eq!(s, 200, "{found}");
        assert_eq!(found["totalResults"], 1, "{filter}: {found}");
        assert_eq!(found["Resources"][0]["id"], dave_id.as_str(), "{found}");
    }

    // Dave signs in through the connection to both apps: the user Okta provisioned, not a new one.
    let mut agent = Agent::new();
    let t1 = org.sign_in(&mut agent, app1, "dave").await;
    let t2 = org.sign_in(&mut agent, app2, "dave").await;
    assert_eq!(t1.claims["sub"], dave_id.as_str(), "{}", t1.claims);
    assert_eq!(t2.claims["sub"], dave_id.as_str(), "{}", t2.claims);
    assert_eq!(
        t1.claims["sid"], t2.claims["sid"],
        "one session for both apps"
    );
    let everyone = listed(
        &api(&at, "GET", "/api/v2/users?per_page=100", None).await,
        "users",
    );
    let via_connection: Vec<&Value> = everyone
        .iter()
        .filter(|u| {
            u["identities"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i["connection"] == name))
        })
        .collect();
    assert_eq!(via_connection.len(), 1, "one user, not two: {everyone:?}");
    let user = via_connection[0];
    assert_eq!(user["user_id"], dave_id.as_str(), "{user}");
    assert_eq!(
        user["identities"].as_array().unwrap().len(),
        1,
        "one identity: {user}"
    );
    let identity = &user["identities"][0];
    assert_eq!(
        (&identity["user_id"], &identity["provider"]),
        (&json!("dave"), &json!("okta")),
        "{user}"
    );
    assert_eq!(identity["issuer"], idp.base.as_str(), "{user}");
    let sessions = org.sessions(&dave_id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let joined: BTreeSet<&str> = sessions[0]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    assert_eq!(
        joined,
        BTreeSet::from([app1.id.as_str(), app2.id.as_str()]),
        "{sessions:?}"
    );
    // The tokens work: access tokens at /userinfo, and app 2's refresh token (rotated here, so
    // what is refused later is the live one).
    assert_eq!(org.userinfo(&t1.access).await, 200);
    assert_eq!(org.userinfo(&t2.access).await, 200);
    let (s, rotated) = org.refresh(app2, &t2.refresh).await;
    assert_eq!(s, 200, "{rotated}");
    let t2_refresh = rotated["refresh_token"]
        .as_str()
        .unwrap_or(&t2.refresh)
        .to_owned();
    assert!(param(&org.silent(&mut agent, app1).await, "code").is_some());

    // Okta deactivates the user: signed out everywhere.
    let (s, read) = scim(&http, "GET", &dave_url, &org.token, None).await;
    assert_eq!((s, &read["active"]), (200, &json!(true)), "{read}");
    let (s, off) = scim(
        &http,
        "PATCH",
        &dave_url,
        &org.token,
        Some(okta_active(false)),
    )
    .await;
    assert_eq!((s, &off["active"]), (200, &json!(false)), "{off}");
    org.both_apps_told(&dave_id, &t1.claims["sid"], "account-deactivated")
        .await;
    assert_eq!(org.sessions(&dave_id).await, Vec::<Value>::new());
    for app in [app1, app2] {
        let to = org.silent(&mut agent, app).await;
        assert_eq!(
            param(&to, "error").as_deref(),
            Some("login_required"),
            "{to}"
        );
    }
    for (app, rt) in [(app1, &t1.refresh), (app2, &t2_refresh)] {
        let (s, e) = org.refresh(app, rt).await;
        assert_eq!((s, &e["error"]), (400, &json!("invalid_grant")), "{e}");
    }
    assert_eq!(org.userinfo(&t1.access).await, 401);
    assert_eq!(org.userinfo(&t2.access).await, 401);
    let shown = api(&at, "GET", &format!("/api/v2/users/{dave_id}"), None).await;
    assert_eq!(shown["blocked"], true, "{shown}");
    let (s, read) = scim(&http, "GET", &dave_url, &org.token, None).await;
    assert_eq!((s, &read["active"]), (200, &json!(false)), "{read}");
    // Signing in is refused while inactive, though the IdP still signs Dave in.
    let refused = sign_in(
        &mut agent,
        &org.authorize(app1, ""),
        &app1.cb,
        &idp.base,
        "dave",
    )
    .await;
    let (stopped_at, hop) = refused.expect_err("an inactive user signed in");
    assert!(
        stopped_at.starts_with(&format!("{base}/login/callback")) && hop.status == 400,
        "{stopped_at}: {} {}",
        hop.status,
        hop.body
    );
    assert_eq!(org.sessions(&dave_id).await, Vec::<Value>::new());
    assert!(org.rx.received().is_empty(), "{:?}", org.rx.received());

    // Okta reactivates: Dave signs in again (the old tokens stay dead).
    let (s, on) = scim(
        &http,
        "PATCH",
        &dave_url,
        &org.token,
        Some(okta_active(true)),
    )
    .await;
    assert_eq!((s, &on["active"]), (200, &json!(true)), "{on}");
    let shown = api(&at, "GET", &format!("/api/v2/users/{dave_id}"), None).await;
    assert_eq!(shown["blocked"], false, "{shown}");
    let (s, e) = org.refresh(app1, &t1.refresh).await;
    assert_eq!((s, &e["error"]), (400, &json!("invalid_grant")), "{e}");
    assert_eq!(org.userinfo(&t1.access).await, 401);
    let t1 = org.sign_in(&mut agent, app1, "dave").await;
    let t2 = org.sign_in(&mut agent, app2, "dave").await;
    assert_eq!(t1.claims["sub"], dave_id.as_str());
    assert_eq!(t2.claims["sub"], dave_id.as_str());
    assert_eq!(org.userinfo(&t1.access).await, 200);
    assert_eq!(org.userinfo(&t2.access).await, 200);

    // A user Okta provisioned who never signed in: Okta's Universal Logout finds them by the
    // subject it provisioned (and only them: Dave's session is untouched).
    let (s, erin) = scim(
        &http,
        "POST",
        &org.users,
        &org.token,
        Some(okta_user("erin", "Erin", "Example")),
    )
    .await;
    assert_eq!(s, 201, "{erin}");
    let erin_id = erin["id"].as_str().unwrap().to_owned();
    assert_eq!(org.gtr("nobody-provisioned").await, 404);
    assert_eq!(org.gtr("erin").await, 204);
    let ul = logs(&at, "type=universal_logout_succeeded").await;
    assert_eq!(ul.len(), 1, "{ul:?}");
    assert_eq!(ul[0]["user_id"], erin_id.as_str(), "{ul:?}");
    assert!(param(&org.silent(&mut agent, app1).await, "code").is_some());
    assert!(org.rx.received().is_empty(), "{:?}", org.rx.received());

    // Okta deletes Dave: everything ends, and the resource is gone.
    let (s, gone) = scim(&http, "DELETE", &dave_url, &org.token, None).await;
    assert_eq!(s, 204, "{gone}");
    org.both_apps_told(&dave_id, &t1.claims["sid"], "account-deleted")
        .await;
    let (s, e) = scim(&http, "GET", &dave_url, &org.token, None).await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["schemas"], json!([ERROR_SCHEMA]), "{e}");
    let (s, _) = call(
        &at,
        "GET",
        &format!("/api/v2/users/{dave_id}"),
        None,
        Some(crate::support::TOKEN),
    )
    .await;
    assert_eq!(s.as_u16(), 404);
    let (s, found) = scim(&http, "GET", &by_user_name, &org.token, None).await;
    assert_eq!((s, &found["totalResults"]), (200, &json!(0)), "{found}");
    for app in [app1, app2] {
        let to = org.silent(&mut agent, app).await;
        assert_eq!(
            param(&to, "error").as_deref(),
            Some("login_required"),
            "{to}"
        );
    }
    for (app, t) in [(app1, &t1), (app2, &t2)] {
        let (s, e) = org.refresh(app, &t.refresh).await;
        assert_eq!((s, &e["error"]), (400, &json!("invalid_grant")), "{e}");
        assert_eq!(org.userinfo(&t.access).await, 401);
    }

    // Each SCIM write is one sscim event naming the token: the two creations, the two PATCHes
    // and the deletion (reads log nothing).
    let events = logs(&at, "type=sscim").await;
    let mut written: Vec<&str> = events
        .iter()
        .map(|e| {
            assert_eq!(e["details"]["token_id"], token_id.as_str(), "{e}");
            assert_eq!(e["connection"], name, "{e}");
            e["user_id"].as_str().unwrap_or("")
        })
        .collect();
    written.sort_unstable();
    let mut want = vec![
        dave_id.as_str(),
        dave_id.as_str(),
        dave_id.as_str(),
        dave_id.as_str(),
        erin_id.as_str(),
    ];
    want.sort_unstable();
    assert_eq!(written, want, "{events:?}");
}

#[tokio::test]
async fn okta_provisioning_lifecycle_on_the_embedded_default() {
    okta_lifecycle(
        Backends::Embedded,
        "okta_provisioning_lifecycle_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn okta_provisioning_lifecycle_on_postgres_and_redis() {
    okta_lifecycle(
        Backends::Production,
        "okta_provisioning_lifecycle_on_postgres_and_redis",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile requests, each refused and changing nothing.

/// A request to the in-process app: `body` as (content type, bytes), the content type left out
/// when empty. The status and the JSON answer (`Null` when empty or not JSON).
async fn send<S, B>(
    app: &S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, Value)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    if let Some((ct, bytes)) = body {
        if !ct.is_empty() {
            req = req.insert_header(("Content-Type", ct));
        }
        req = req.set_payload(bytes);
    }
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status().as_u16();
    let bytes = test::read_body(res).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn scim_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some((SCIM_JSON, v.to_string().into_bytes()))
}

/// A SCIM error answer (RFC 7644 §3.12) with `status` and, when given, `scim_type`.
fn assert_scim_error(got: &(u16, Value), status: u16, scim_type: Option<&str>, what: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert_eq!(body["schemas"], json!([ERROR_SCHEMA]), "{what}: {body}");
    assert_eq!(body["status"], json!(status.to_string()), "{what}: {body}");
    if let Some(t) = scim_type {
        assert_eq!(body["scimType"], t, "{what}: {body}");
    }
}

async fn hostile_requests_change_nothing(h: Harness) {
    // The test moves the clock: an expiring token expires.
    let clock = ManualClock::new(h.state.clock.now());
    let mut state = h.state.clone();
    state.clock = Arc::new(clock.clone());
    let app = test::init_service(latch_server::app::app(state)).await;
    let mut conns = Vec::new();
    for name in ["scim-hostile-a", "scim-hostile-b"] {
        let c = api(
            &app,
            "POST",
            "/api/v2/connections",
            Some(json!({"name": name, "strategy": "oidc",
                "options": {"issuer": format!("https://{name}.example.com"), "client_id": "c", "client_secret": "s"}})),
        )
        .await;
        let id = c["id"].as_str().unwrap().to_owned();
        scim_on(&app, &id).await;
        conns.push(id);
    }
    let (a, b) = (
        format!("/scim/v2/connections/{}", conns[0]),
        format!("/scim/v2/connections/{}", conns[1]),
    );
    let (_, full) = scim_token(&app, &conns[0], json!({})).await;
    let (_, read_only) = scim_token(&app, &conns[0], json!({"scopes": ["get:users"]})).await;
    let (revoked_id, revoked) = scim_token(&app, &conns[0], json!({})).await;
    let (_, expiring) = scim_token(&app, &conns[0], json!({"token_lifetime": 60})).await;
    let (_, other) = scim_token(&app, &conns[1], json!({})).await;

    // Ursula and Victor in A; in B, someone with Ursula's userName (unique per connection).
    let post = async |base: &str, token: &str, body: Value| -> String {
        let (s, u) = send(
            &app,
            "POST",
            &format!("{base}/Users"),
            Some(token),
            scim_body(&body),
        )
        .await;
        assert_eq!(s, 201, "{u}");
        u["id"].as_str().unwrap().to_owned()
    };
    let u = post(&a, &full, okta_user("ursula", "Ursula", "Ui")).await;
    let v = post(&a, &full, okta_user("victor", "Victor", "Vo")).await;
    let w = post(&b, &other, okta_user("ursula", "Ursula", "Elsewhere")).await;
    assert_ne!(u, w);
    let (u_path, v_path) = (format!("{a}/Users/{u}"), format!("{a}/Users/{v}"));

    // What must not change: both connections' users as SCIM serves them, the users as the
    // management API shows them, and the sscim events.
    let snapshot = async || -> Value {
        let list = async |base: &str, token: &str| {
            let (s, l) = send(&app, "GET", &format!("{base}/Users"), Some(token), None).await;
            assert_eq!(s, 200, "{l}");
            l
        };
        let mut users = Vec::new();
        for id in [&u, &v, &w] {
            users.push(api(&app, "GET", &format!("/api/v2/users/{id}"), None).await);
        }
        json!({
            "a": list(&a, &full).await,
            "b": list(&b, &other).await,
            "users": users,
            "sscim": logs(&app, "type=sscim").await.len(),
        })
    };
    let before = snapshot().await;
    assert_eq!(before["a"]["totalResults"], 2, "{before}");
    assert_eq!(before["sscim"], 3, "{before}");
    let unchanged = async |what: &str| {
        let now = snapshot().await;
        assert_eq!(now, before, "{what} changed something");
    };

    // Every operation on Ursula, as a token that may not make it.
    let replacement = {
        let mut r = okta_user("ursula", "Ursula", "Replaced");
        r["displayName"] = json!("Replaced");
        r
    };
    let every_operation: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("{a}/Users"), None),
        ("GET", u_path.clone(), None),
        ("GET", format!("{a}/ServiceProviderConfig"), None),
        (
            "POST",
            format!("{a}/Users"),
            Some(okta_user("mallory", "Mal", "Lory")),
        ),
        ("PUT", u_path.clone(), Some(replacement.clone())),
        ("PATCH", u_path.clone(), Some(okta_active(false))),
        ("DELETE", u_path.clone(), None),
    ];
    let refused_all = async |token: Option<&str>, status: u16, what: &str| {
        for (method, path, body) in &every_operation {
            let got = send(&app, method, path, token, body.as_ref().and_then(scim_body)).await;
            assert_scim_error(&got, status, None, &format!("{what}: {method} {path}"));
        }
        unchanged(what).await;
    };

    // No token, or not a bearer one, or one Latch never issued.
    refused_all(None, 401, "no token").await;
    refused_all(Some("not-a-scim-token"), 401, "an unknown token").await;
    let basic = {
        let req = test::TestRequest::get()
            .uri(&format!("{a}/Users"))
            .insert_header(("Authorization", format!("Basic {full}")))
            .to_request();
        test::call_service(&app, req).await.status().as_u16()
    };
    assert_eq!(basic, 401, "a token sent as Basic");

    // A revoked token: it worked until revoked.
    assert_eq!(
        send(&app, "GET", &u_path, Some(&revoked), None).await.0,
        200
    );
    api(
        &app,
        "DELETE",
        &format!(
            "/api/v2/connections/{}/scim-configuration/tokens/{revoked_id}",
            conns[0]
        ),
        None,
    )
    .await;
    refused_all(Some(&revoked), 401, "a revoked token").await;

    // An expired token: it worked until its lifetime ran out.
    assert_eq!(
        send(&app, "GET", &u_path, Some(&expiring), None).await.0,
        200
    );
    clock.advance(time::Duration::seconds(61));
    refused_all(Some(&expiring), 401, "an expired token").await;

    // Another connection's token: 401 at this connection; at its own, this connection's users
    // are not there (Ursula's namesake in B is another user).
    refused_all(Some(&other), 401, "another connection's token").await;
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(replacement.clone())),
        ("PATCH", Some(okta_active(false))),
        ("DELETE", None),
    ] {
        let got = send(
            &app,
            method,
            &format!("{b}/Users/{u}"),
            Some(&other),
            body.as_ref().and_then(scim_body),
        )
        .await;
        assert_scim_error(&got, 404, None, &format!("{method} A's user through B"));
    }
    let (s, found) = send(
        &app,
        "GET",
        &format!(
            "{b}/Users?filter={}",
            enc(r#"userName eq "ursula@example.com""#)
        ),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], w.as_str(), "{found}");
    unchanged("another connection's token at its own connection").await;

    // A token without the operation's scope: reads work, writes are 403.
    assert_eq!(
        send(&app, "GET", &u_path, Some(&read_only), None).await.0,
        200
    );
    for (method, path, body) in &every_operation[3..] {
        let got = send(
            &app,
            method,
            path,
            Some(&read_only),
            body.as_ref().and_then(scim_body),
        )
        .await;
        assert_scim_error(&got, 403, None, &format!("get:users only: {method} {path}"));
    }
    unchanged("a token without the scope").await;

    // Duplicates within the connection: userName (whatever its case) and externalId.
    let mut same_case = okta_user("ursula2", "U", "Two");
    same_case["userName"] = json!("ursula@example.com");
    let mut other_case = okta_user("ursula3", "U", "Three");
    other_case["userName"] = json!("URSULA@Example.COM");
    let mut same_external = okta_user("ursula4", "U", "Four");
    same_external["externalId"] = json!("ursula");
    for (what, body) in [
        ("the same userName", same_case),
        ("the userName in another case", other_case),
        ("the same externalId", same_external),
    ] {
        let got = send(
            &app,
            "POST",
            &format!("{a}/Users"),
            Some(&full),
            scim_body(&body),
        )
        .await;
        assert_scim_error(&got, 409, Some("uniqueness"), what);
        unchanged(what).await;
    }
    let mut victor_as_ursula = okta_user("victor", "Victor", "Vo");
    victor_as_ursula["userName"] = json!("Ursula@example.com");
    let got = send(
        &app,
        "PUT",
        &v_path,
        Some(&full),
        scim_body(&victor_as_ursula),
    )
    .await;
    assert_scim_error(&got, 409, Some("uniqueness"), "PUT to Ursula's userName");
    let rename = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "userName", "value": "URSULA@EXAMPLE.COM"}]});
    let got = send(&app, "PATCH", &v_path, Some(&full), scim_body(&rename)).await;
    assert_scim_error(&got, 409, Some("uniqueness"), "PATCH to Ursula's userName");
    unchanged("renaming Victor to Ursula").await;

    // Malformed filters are 400 invalidFilter; a well-formed one matches userName in any case.
    for filter in [
        "userName eq",
        r#"userName zz "ursula@example.com""#,
        r#"(userName eq "ursula@example.com""#,
        r#"userName eq "ursula@example.com" and"#,
        r#"emails[type eq "work""#,
        r#""ursula@example.com" eq userName"#,
    ] {
        let got = send(
            &app,
            "GET",
            &format!("{a}/Users?filter={}", enc(filter)),
            Some(&full),
            None,
        )
        .await;
        assert_scim_error(&got, 400, Some("invalidFilter"), filter);
    }
    let (s, found) = send(
        &app,
        "GET",
        &format!(
            "{a}/Users?filter={}",
            enc(r#"userName eq "URSULA@EXAMPLE.COM""#)
        ),
        Some(&full),
        None,
    )
    .await;
    assert_eq!((s, &found["totalResults"]), (200, &json!(1)), "{found}");
    assert_eq!(found["Resources"][0]["id"], u.as_str(), "{found}");
    unchanged("filters").await;

    // A body over 1 MiB, however valid, is 413.
    let mut huge = okta_user("hugh", "Hugh", "Large");
    huge["displayName"] = json!("x".repeat(1024 * 1024 + 1));
    let mut huge_patch = okta_active(false);
    huge_patch["Operations"][0]["value"]["displayName"] = json!("x".repeat(1024 * 1024 + 1));
    for (method, path, body) in [
        ("POST", format!("{a}/Users"), &huge),
        ("PUT", u_path.clone(), &huge),
        ("PATCH", u_path.clone(), &huge_patch),
    ] {
        let got = send(&app, method, &path, Some(&full), scim_body(body)).await;
        assert_scim_error(&got, 413, None, &format!("{method} over 1 MiB"));
    }
    // …also when the client names no length (a chunked body): Latch counts what it reads.
    let mut unsized_req = test::TestRequest::post()
        .uri(&format!("{a}/Users"))
        .insert_header(("Authorization", format!("Bearer {full}")))
        .insert_header(("Content-Type", SCIM_JSON))
        .set_payload(huge.to_string())
        .to_request();
    unsized_req
        .headers_mut()
        .remove(actix_web::http::header::CONTENT_LENGTH);
    let res = test::call_service(&app, unsized_req).await;
    let status = res.status().as_u16();
    let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap_or(Value::Null);
    assert_scim_error(
        &(status, body),
        413,
        None,
        "POST over 1 MiB without a length",
    );
    unchanged("bodies over 1 MiB").await;

    // A body that is not JSON by its content type is 415, even when it parses as JSON.
    for (method, path, ct, body) in [
        (
            "POST",
            format!("{a}/Users"),
            "text/plain",
            okta_user("tess", "T", "P"),
        ),
        (
            "POST",
            format!("{a}/Users"),
            "application/x-www-form-urlencoded",
            okta_user("fran", "F", "U"),
        ),
        ("PUT", u_path.clone(), "", replacement.clone()),
        ("PATCH", u_path.clone(), "text/xml", okta_active(false)),
    ] {
        let got = send(
            &app,
            method,
            &path,
            Some(&full),
            Some((ct, body.to_string().into_bytes())),
        )
        .await;
        assert_scim_error(&got, 415, None, &format!("{method} as {ct:?}"));
    }
    unchanged("wrong content types").await;

    // `id` is immutable: PATCH (with a path, without one, or after a valid operation) and PUT
    // naming another id are 400 mutability, and the whole request is refused.
    for ops in [
        json!([{"op": "replace", "path": "id", "value": "oidc|someone-else"}]),
        json!([{"op": "replace", "value": {"id": "oidc|someone-else"}}]),
        json!([{"op": "add", "path": "id", "value": "oidc|someone-else"}]),
        json!([{"op": "remove", "path": "id"}]),
        json!([
            {"op": "replace", "path": "displayName", "value": "Changed first"},
            {"op": "replace", "path": "id", "value": "oidc|someone-else"}
        ]),
    ] {
        let body = json!({"schemas": [PATCH_OP], "Operations": ops});
        let got = send(&app, "PATCH", &u_path, Some(&full), scim_body(&body)).await;
        assert_scim_error(&got, 400, Some("mutability"), &format!("PATCH {ops}"));
    }
    let mut moved = replacement.clone();
    moved["id"] = json!(v);
    let got = send(&app, "PUT", &u_path, Some(&full), scim_body(&moved)).await;
    assert_scim_error(&got, 400, Some("mutability"), "PUT naming another id");
    unchanged("writing id").await;

    // After all that, Ursula is as she was, and a valid write still works.
    let (s, ursula) = send(&app, "GET", &u_path, Some(&full), None).await;
    assert_eq!((s, &ursula["active"]), (200, &json!(true)), "{ursula}");
    let (s, replaced) = send(&app, "PUT", &u_path, Some(&full), scim_body(&replacement)).await;
    assert_eq!(
        (s, &replaced["displayName"]),
        (200, &json!("Replaced")),
        "{replaced}"
    );
}
on_all_backends!(
    hostile_scim_requests_change_nothing,
    hostile_requests_change_nothing
);

// ---------------------------------------------------------------------------------------------
// 4. Okta's password sync.

/// Okta sends the user's password when the app syncs passwords (RFC 7643 §4.1.1: `password` is
/// `writeOnly`, `returned: never`). Latch signs enterprise users in upstream: it never serves the
/// password back and keeps it nowhere (database, data dir, session store).
async fn oktas_synced_password_is_never_served_or_kept(h: Harness) {
    let app = app!(h);
    let c = api(
        &app,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": "scim-password", "strategy": "okta",
            "options": {"domain": "acme.okta.example.com", "client_id": "c", "client_secret": "s"}})),
    )
    .await;
    let conn = c["id"].as_str().unwrap().to_owned();
    scim_on(&app, &conn).await;
    let (_, token) = scim_token(&app, &conn, json!({})).await;
    let users = format!("/scim/v2/connections/{conn}/Users");
    let password = format!("Okta-Synced-{}", latch_testkit::env::unique());
    let no_password = |what: &str, v: &Value| {
        assert!(
            !v.to_string().contains(&password) && v.get("password").is_none(),
            "{what} shows the password: {v}"
        );
    };

    let mut body = okta_user("pat", "Pat", "Lee");
    body["password"] = json!(password);
    let (s, pat) = send(&app, "POST", &users, Some(&token), scim_body(&body)).await;
    assert_eq!(s, 201, "{pat}");
    no_password("POST", &pat);
    let pat_path = format!("{users}/{}", pat["id"].as_str().unwrap());
    let (s, put) = send(&app, "PUT", &pat_path, Some(&token), scim_body(&body)).await;
    assert_eq!(s, 200, "{put}");
    no_password("PUT", &put);
    let change = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "password", "value": format!("{password}-2")}]});
    let (s, patched) = send(&app, "PATCH", &pat_path, Some(&token), scim_body(&change)).await;
    assert_eq!(s, 200, "{patched}");
    no_password("PATCH", &patched);
    let (s, got) = send(&app, "GET", &pat_path, Some(&token), None).await;
    assert_eq!(s, 200, "{got}");
    no_password("GET", &got);
    let (s, list) = send(&app, "GET", &users, Some(&token), None).await;
    assert_eq!((s, &list["totalResults"]), (200, &json!(1)), "{list}");
    no_password("the list", &list);
    let (s, attrs) = send(
        &app,
        "GET",
        &format!("{pat_path}?attributes=password,userName"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{attrs}");
    no_password("attributes=password", &attrs);
    no_password(
        "the management API",
        &api(
            &app,
            "GET",
            &format!("/api/v2/users/{}", pat["id"].as_str().unwrap()),
            None,
        )
        .await,
    );
    for place in h.at_rest() {
        assert!(
            !place.contains(&password).await,
            "the synced password is at rest in {}",
            match &place {
                latch_testkit::at_rest::AtRest::Dir(d) => d.display().to_string(),
                latch_testkit::at_rest::AtRest::Postgres { schema, .. } =>
                    format!("PostgreSQL {schema}"),
                latch_testkit::at_rest::AtRest::Redis { prefix, .. } => format!("Redis {prefix}"),
                latch_testkit::at_rest::AtRest::Memory(_) => "memory".into(),
            }
        );
    }
}
on_all_backends!(
    oktas_synced_password_is_never_kept,
    oktas_synced_password_is_never_served_or_kept
);
