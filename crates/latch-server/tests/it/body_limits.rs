//! Every route that takes a body refuses one just over its limit, with 413 and nothing changed;
//! a route that takes none never reads it. The route list is checked against the route table
//! in the sources, so a new POST/PUT/PATCH route fails this test until it is listed here.

use std::collections::BTreeMap;
use std::path::Path;

use actix_web::test;
use serde_json::{Value, json};

use crate::support::{Backends, TOKEN, harness_with};

pub(crate) const ADMIN_PASSWORD: &str = "Admin-Passw0rd-for-body-limits";

/// What a route reads, and up to how many bytes.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// `StrictJson` (`latch_http::json::MAX_BODY`).
    Json,
    /// `web::Form` with the route's `FormConfig` limit.
    Form(usize),
    /// Raw bytes with the route's `PayloadConfig` limit.
    Bytes(usize, &'static str),
    /// No body at all: it must not be read (the answer is the one without it).
    None,
}

/// Who calls: the management token, an admin's browser session, a SCIM client with its
/// connection's token, or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Token,
    Admin,
    Scim,
    Anonymous,
}

struct Route {
    method: &'static str,
    /// `{conn}`, `{client}`, `{user}`, `{grant}`, `{scim_token}` (a SCIM token's id),
    /// `{scim_user}` (a user SCIM provisioned into `{conn}`), `{stream}` (a log stream) are
    /// filled in with live objects.
    path: &'static str,
    body: Body,
    caller: Caller,
    /// Where the route is registered (for the staleness check).
    file: &'static str,
}

const KIB: usize = 1024;
const API_CONNECTIONS: &str = "crates/latch-admin/src/api/connections.rs";
const API_SCIM: &str = "crates/latch-admin/src/api/connections/scim.rs";
const API_CLIENTS: &str = "crates/latch-admin/src/api/clients.rs";
const API_USERS: &str = "crates/latch-admin/src/api/users.rs";
const API_KEYS: &str = "crates/latch-admin/src/api/keys.rs";
const API_GRANTS: &str = "crates/latch-admin/src/api/client_grants.rs";
const API_DELIVERIES: &str = "crates/latch-admin/src/api/deliveries.rs";
const API_LOG_STREAMS: &str = "crates/latch-admin/src/api/log_streams.rs";
const UI: &str = "crates/latch-admin/src/ui/mod.rs";
const UI_CONNECTIONS: &str = "crates/latch-admin/src/ui/connections.rs";
const UI_SCIM: &str = "crates/latch-admin/src/ui/connections/scim.rs";
const UI_APPLICATIONS: &str = "crates/latch-admin/src/ui/applications.rs";
const UI_USERS: &str = "crates/latch-admin/src/ui/users.rs";
const UI_KEYS: &str = "crates/latch-admin/src/ui/keys.rs";
const UI_LOGS: &str = "crates/latch-admin/src/ui/logs.rs";
const UI_LOG_STREAMS: &str = "crates/latch-admin/src/ui/log_streams.rs";
const OIDC: &str = "crates/latch-oidc/src/lib.rs";
const LOGIN: &str = "crates/latch-login/src/lib.rs";
const FEDERATION_BCL: &str = "crates/latch-federation/src/backchannel_in.rs";
const GTR: &str = "crates/latch-gtr/src/lib.rs";
const SAMLP: &str = "crates/latch-samlp/src/lib.rs";
const SCIM: &str = "crates/latch-scim/src/lib.rs";

#[rustfmt::skip]
fn routes() -> Vec<Route> {
    use Body::*;
    use Caller::*;
    let ui = Form(256 * KIB);
    let oidc_form = Form(16 * KIB);
    let gtr = Bytes(latch_gtr::MAX_BODY, "application/json");
    let scim = Bytes(latch_scim::MAX_BODY, latch_scim::CONTENT_TYPE);
    [
        ("POST", "/api/v2/connections", Json, Token, API_CONNECTIONS),
        ("PATCH", "/api/v2/connections/{conn}", Json, Token, API_CONNECTIONS),
        ("PATCH", "/api/v2/connections/{conn}/clients", Json, Token, API_CONNECTIONS),
        ("POST", "/api/v2/connections/{conn}/scim-configuration", Json, Token, API_SCIM),
        ("PATCH", "/api/v2/connections/{conn}/scim-configuration", Json, Token, API_SCIM),
        ("POST", "/api/v2/connections/{conn}/scim-configuration/tokens", Json, Token, API_SCIM),
        ("POST", "/api/v2/clients", Json, Token, API_CLIENTS),
        ("PATCH", "/api/v2/clients/{client}", Json, Token, API_CLIENTS),
        ("POST", "/api/v2/clients/{client}/rotate-secret", None, Anonymous, API_CLIENTS),
        ("POST", "/api/v2/users", Json, Token, API_USERS),
        ("PATCH", "/api/v2/users/{user}", Json, Token, API_USERS),
        ("POST", "/api/v2/keys/signing/rotate", None, Anonymous, API_KEYS),
        ("POST", "/api/v2/client-grants", Json, Token, API_GRANTS),
        ("PATCH", "/api/v2/client-grants/{grant}", Json, Token, API_GRANTS),
        ("POST", "/api/v2/logs/deliveries/d/retry", None, Anonymous, API_DELIVERIES),
        ("POST", "/api/v2/logout-deliveries/d/retry", None, Anonymous, API_DELIVERIES),
        ("POST", "/admin/logout", ui, Admin, UI),
        ("POST", "/admin/connections", ui, Admin, UI_CONNECTIONS),
        ("POST", "/admin/connections/{conn}", ui, Admin, UI_CONNECTIONS),
        ("POST", "/admin/connections/{conn}/delete", ui, Admin, UI_CONNECTIONS),
        ("POST", "/admin/connections/{conn}/scim", ui, Admin, UI_SCIM),
        ("POST", "/admin/connections/{conn}/scim/delete", ui, Admin, UI_SCIM),
        ("POST", "/admin/connections/{conn}/scim/tokens", ui, Admin, UI_SCIM),
        ("POST", "/admin/connections/{conn}/scim/tokens/{scim_token}/delete", ui, Admin, UI_SCIM),
        ("POST", "/admin/applications", ui, Admin, UI_APPLICATIONS),
        ("POST", "/admin/applications/{client}", ui, Admin, UI_APPLICATIONS),
        ("POST", "/admin/applications/{client}/rotate-secret", ui, Admin, UI_APPLICATIONS),
        ("POST", "/admin/applications/{client}/delete", ui, Admin, UI_APPLICATIONS),
        ("POST", "/admin/users", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/password", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/delete", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/sessions/s/end", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/clear-sessions", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/block", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/unblock", ui, Admin, UI_USERS),
        ("POST", "/admin/users/{user}/admin-role", ui, Admin, UI_USERS),
        ("POST", "/admin/keys/rotate", ui, Admin, UI_KEYS),
        ("POST", "/admin/deliveries/d/retry", ui, Admin, UI_LOGS),
        ("POST", "/api/v2/log-streams", Json, Token, API_LOG_STREAMS),
        ("PATCH", "/api/v2/log-streams/{stream}", Json, Token, API_LOG_STREAMS),
        ("POST", "/admin/log-streams", ui, Admin, UI_LOG_STREAMS),
        ("POST", "/admin/log-streams/{stream}/status", ui, Admin, UI_LOG_STREAMS),
        ("POST", "/admin/log-streams/{stream}/delete", ui, Admin, UI_LOG_STREAMS),
        ("POST", "/login", oidc_form, Anonymous, LOGIN),
        ("POST", "/login/callback?connection=saml", Form(512 * KIB), Anonymous, LOGIN),
        ("POST", "/logout?connection=saml", Form(64 * KIB), Anonymous, LOGIN),
        ("POST", "/oauth/token", oidc_form, Anonymous, OIDC),
        ("POST", "/userinfo", None, Anonymous, OIDC),
        ("POST", "/oauth/revoke", oidc_form, Anonymous, OIDC),
        ("POST", "/oauth/introspect", oidc_form, Anonymous, OIDC),
        ("POST", "/oidc/logout", oidc_form, Anonymous, OIDC),
        ("POST", "/login/backchannel-logout/oidc", oidc_form, Anonymous, FEDERATION_BCL),
        ("POST", "/oauth/global-token-revocation/connection/okta", gtr, Anonymous, GTR),
        ("POST", "/samlp/{client}", Form(latch_samlp::MAX_FORM), Anonymous, SAMLP),
        ("POST", "/samlp/{client}/logout", Form(latch_samlp::MAX_FORM), Anonymous, SAMLP),
        ("POST", "/scim/v2/connections/{conn}/Users", scim, Scim, SCIM),
        ("POST", "/scim/v2/connections/{conn}/.search", scim, Scim, SCIM),
        ("POST", "/scim/v2/connections/{conn}/Users/.search", scim, Scim, SCIM),
        ("PUT", "/scim/v2/connections/{conn}/Users/{scim_user}", scim, Scim, SCIM),
        ("PATCH", "/scim/v2/connections/{conn}/Users/{scim_user}", scim, Scim, SCIM),
    ]
    .into_iter()
    .map(|(method, path, body, caller, file)| Route { method, path, body, caller, file })
    .collect()
}

/// Every `web::post()`, `web::put()`, `web::patch()`, `op(Method::POST, …)` (the management
/// API's table) and `#[post(…)]`-style macro in the crates' sources, by file.
fn registered_routes() -> BTreeMap<String, usize> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, usize>) {
        for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                // Whitespace out, so a call split over lines still matches.
                let text: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let n: usize = [
                    "web::post()",
                    "web::put()",
                    "web::patch()",
                    "op(Method::POST",
                    "op(Method::PUT",
                    "op(Method::PATCH",
                    "#[post(",
                    "#[put(",
                    "#[patch(",
                ]
                .iter()
                .map(|pat| text.matches(pat).count())
                .sum();
                if n > 0 {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, n);
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = BTreeMap::new();
    for c in std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(Result::unwrap)
    {
        let src = c.path().join("src");
        if src.is_dir() {
            walk(&src, &root, &mut out);
        }
    }
    out
}

// `test` is actix-web's module here: the attribute is the built-in one.
#[core::prelude::v1::test]
fn the_route_list_matches_the_route_table() {
    let mut listed: BTreeMap<String, usize> = BTreeMap::new();
    for r in routes() {
        *listed.entry(r.file.to_owned()).or_default() += 1;
    }
    assert_eq!(
        registered_routes(),
        listed,
        "POST/PUT/PATCH routes registered in the sources (left) differ from the ones \
         body_limits.rs checks (right): list the new route in `routes()` with its body limit"
    );
}

/// Cookies set by the answers, sent back as a browser would (names and values only).
#[derive(Default)]
pub(crate) struct Jar(BTreeMap<String, String>);

impl Jar {
    pub(crate) fn take<B>(&mut self, res: &actix_web::dev::ServiceResponse<B>) {
        for c in res.response().cookies() {
            if c.value().is_empty() {
                self.0.remove(c.name());
            } else {
                self.0.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    pub(crate) fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn path_of(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(u) => format!("{}?{}", u.path(), u.query().unwrap_or("")),
        Err(_) => location.to_owned(),
    }
}

fn location<B>(res: &actix_web::dev::ServiceResponse<B>) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no redirect: {}", res.status()))
        .to_owned()
}

/// Signs in to the admin UI as the bootstrap `admin` (password [`ADMIN_PASSWORD`]), through the
/// real pages.
pub(crate) async fn admin_cookies<S, B>(app: &S) -> Jar
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut jar = Jar::default();
    let get = |uri: String, jar: &Jar| {
        test::TestRequest::get()
            .uri(&uri)
            .insert_header(("cookie", jar.header()))
            .to_request()
    };
    let res = test::call_service(app, get("/admin/login".into(), &jar)).await;
    jar.take(&res);
    let to = path_of(&location(&res));
    let res = test::call_service(app, get(to, &jar)).await;
    jar.take(&res);
    let page = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    let tx = page
        .split("name=\"tx\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the sign-in form")
        .to_owned();
    let res = test::call_service(
        app,
        test::TestRequest::post()
            .uri("/login")
            .insert_header(("cookie", jar.header()))
            .set_form([
                ("tx", tx.as_str()),
                ("email", "admin"),
                ("password", ADMIN_PASSWORD),
            ])
            .to_request(),
    )
    .await;
    jar.take(&res);
    let to = path_of(&location(&res));
    assert!(to.starts_with("/admin/callback"), "{to}");
    let res = test::call_service(app, get(to, &jar)).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    jar.take(&res);
    jar
}

async fn each_route_refuses_a_body_over_its_limit(test: &str, backends: Backends) {
    // The shared harness, whose start also publishes the next signing keys a start leaves to the
    // background: published during the loop, they would read as a change a refused body made.
    let Some(latch) =
        harness_with(test, backends, &[("LATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)]).await
    else {
        return;
    };
    let app = test::init_service(latch_server::app::app(latch.state.clone())).await;
    let api = |method: &str, path: &str, body: Option<Value>| {
        let mut r = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")));
        if let Some(b) = body {
            r = r.set_json(b);
        }
        r.to_request()
    };
    macro_rules! call_json {
        ($method:expr, $path:expr, $body:expr) => {{
            let res = test::call_service(&app, api($method, $path, $body)).await;
            let status = res.status();
            let body: Value =
                serde_json::from_slice(&test::read_body(res).await).unwrap_or(Value::Null);
            assert!(
                status.is_success(),
                "{} {}: {status} {body}",
                $method,
                $path
            );
            body
        }};
    }
    // Something for every route to change, were it to accept the body.
    let client = call_json!(
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "App", "callbacks": ["https://app.example/cb"],
            "grant_types": ["authorization_code", "client_credentials"]})
        )
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let conn = call_json!(
        "POST",
        "/api/v2/connections",
        Some(
            json!({"name": "oidc", "strategy": "oidc", "enabled_clients": [client_id],
            "options": {"issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}})
        )
    );
    let conn_id = conn["id"].as_str().unwrap().to_owned();
    let user = call_json!(
        "POST",
        "/api/v2/users",
        Some(
            json!({"connection": "database", "email": "alice@example.com",
            "password": "Correct-Horse-9", "name": "Alice"})
        )
    );
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    let grant = call_json!(
        "POST",
        "/api/v2/client-grants",
        Some(
            json!({"client_id": client_id, "audience": format!("{}/api/v2/",
            latch.state.config.issuer_str()), "scope": ["read:users"]})
        )
    );
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    // SCIM on, with a token: a refused body must neither turn it off nor revoke the token.
    call_json!(
        "POST",
        &format!("/api/v2/connections/{conn_id}/scim-configuration"),
        None
    );
    let scim_token = call_json!(
        "POST",
        &format!("/api/v2/connections/{conn_id}/scim-configuration/tokens"),
        None
    );
    let scim_token_id = scim_token["token_id"].as_str().unwrap().to_owned();
    let scim_secret = scim_token["token"].as_str().unwrap().to_owned();
    // A user the SCIM client provisioned, for the PUT and PATCH a refused body must not change.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri(&format!("/scim/v2/connections/{conn_id}/Users"))
            .insert_header(("Authorization", format!("Bearer {scim_secret}")))
            .insert_header(("content-type", latch_scim::CONTENT_TYPE))
            .set_payload(
                json!({"schemas": [latch_scim::USER_SCHEMA], "userName": "bob@example.com",
                    "externalId": "00u-bob", "displayName": "Bob"})
                .to_string(),
            )
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 201);
    let scim_user: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    let scim_user_id = scim_user["id"].as_str().unwrap().to_owned();
    // A log stream: a refused body must neither change nor pause nor delete it.
    let stream = call_json!(
        "POST",
        "/api/v2/log-streams",
        Some(json!({"name": "SIEM", "type": "http",
            "sink": {"httpEndpoint": "https://siem.example.com/in"}}))
    );
    let stream_id = stream["id"].as_str().unwrap().to_owned();
    let jar = admin_cookies(&app).await;

    // Everything a refused request could have changed.
    let admin_sessions = |jar: &Jar| jar.header();
    let snapshot = async || {
        let mut all = Vec::new();
        for path in [
            "/api/v2/connections".to_owned(),
            "/api/v2/clients".to_owned(),
            "/api/v2/users".to_owned(),
            "/api/v2/client-grants".to_owned(),
            "/api/v2/keys/signing".to_owned(),
            "/api/v2/logs?per_page=100".to_owned(),
            format!("/api/v2/users/{user_id}/sessions"),
            format!("/api/v2/connections/{conn_id}/scim-configuration"),
            format!("/api/v2/connections/{conn_id}/scim-configuration/tokens"),
            format!("/api/v2/users/{scim_user_id}"),
            "/api/v2/log-streams".to_owned(),
        ] {
            all.push(call_json!("GET", &path, None));
        }
        all
    };

    for route in routes() {
        let path = route
            .path
            .replace("{conn}", &conn_id)
            .replace("{client}", &client_id)
            .replace("{user}", &user_id)
            .replace("{grant}", &grant_id)
            .replace("{scim_token}", &scim_token_id)
            .replace("{scim_user}", &scim_user_id)
            .replace("{stream}", &stream_id);
        let what = format!("{} {}", route.method, route.path);
        let request = |body: Vec<u8>, content_type: &str| {
            let mut r = test::TestRequest::default()
                .method(route.method.parse().unwrap())
                .uri(&path)
                .insert_header(("content-type", content_type.to_owned()))
                .set_payload(body);
            match route.caller {
                Caller::Token => {
                    r = r.insert_header(("Authorization", format!("Bearer {TOKEN}")));
                }
                Caller::Admin => r = r.insert_header(("cookie", admin_sessions(&jar))),
                Caller::Scim => {
                    r = r.insert_header(("Authorization", format!("Bearer {scim_secret}")));
                }
                Caller::Anonymous => {}
            }
            r.to_request()
        };
        // A body of `n` bytes of the route's kind.
        let filler = |n: usize, prefix: &str, suffix: &str| {
            let mut b = prefix.as_bytes().to_vec();
            b.resize(n - suffix.len(), b'a');
            b.extend_from_slice(suffix.as_bytes());
            assert_eq!(b.len(), n);
            b
        };
        let before = snapshot().await;
        match route.body {
            Body::None => {
                // The limit the app sets for any body it reads, plus one.
                let big = filler(latch_http::json::MAX_BODY + 1, "a=", "");
                let without = test::call_service(&app, request(Vec::new(), "text/plain")).await;
                let with = test::call_service(&app, request(big, "text/plain")).await;
                assert!(
                    !with.status().is_server_error(),
                    "{what}: {}",
                    with.status()
                );
                assert_eq!(
                    with.status(),
                    without.status(),
                    "{what} takes no body: a large one must not change its answer"
                );
            }
            Body::Json | Body::Form(_) | Body::Bytes(..) => {
                let (limit, prefix, ct) = match route.body {
                    Body::Json => (
                        latch_http::json::MAX_BODY,
                        "{\"name\":\"",
                        "application/json",
                    ),
                    Body::Form(limit) => (limit, "name=", "application/x-www-form-urlencoded"),
                    Body::Bytes(limit, ct) => (limit, "{\"subject\":\"", ct),
                    Body::None => unreachable!(),
                };
                let res =
                    test::call_service(&app, request(filler(limit + 1, prefix, ""), ct)).await;
                let status = res.status();
                let text = test::read_body(res).await;
                assert_eq!(status, 413, "{what}: {}", String::from_utf8_lossy(&text));
                assert!(!text.is_empty(), "{what}: a 413 says why");
            }
        }
        let after = snapshot().await;
        if let Some((b, a)) = before.iter().zip(&after).find(|(b, a)| b != a) {
            panic!("{what}: a refused body changed something:\nbefore: {b}\nafter:  {a}");
        }
        // And the limit is the one listed, not lower: a body of exactly that size is read (and
        // refused for what it says; it is no valid request).
        let limit = match route.body {
            Body::Json => Some((latch_http::json::MAX_BODY, "application/json")),
            Body::Form(limit) => Some((limit, "application/x-www-form-urlencoded")),
            Body::Bytes(limit, ct) => Some((limit, ct)),
            Body::None => Option::None,
        };
        if let Some((limit, ct)) = limit {
            let res = test::call_service(&app, request(filler(limit, "{\"", ""), ct)).await;
            assert!(
                res.status() != 413 && !res.status().is_server_error(),
                "{what}: a body of exactly {limit} bytes got {}",
                res.status()
            );
        }
    }
    // The admin session is still there (its logout form was refused, not run).
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/admin/keys")
            .insert_header(("cookie", jar.header()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn each_route_refuses_a_body_over_its_limit_embedded() {
    each_route_refuses_a_body_over_its_limit(
        "each_route_refuses_a_body_over_its_limit_embedded",
        Backends::Embedded,
    )
    .await;
}

#[actix_web::test]
async fn each_route_refuses_a_body_over_its_limit_postgres_redis() {
    each_route_refuses_a_body_over_its_limit(
        "each_route_refuses_a_body_over_its_limit_postgres_redis",
        Backends::Production,
    )
    .await;
}
