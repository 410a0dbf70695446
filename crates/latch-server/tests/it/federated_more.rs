//! More of federated logout (issue 15), against the real `latch` binary and real peers on
//! loopback, on both backend pairs:
//!
//! - A SAML app's LogoutRequest when its session came through a `samlp` connection with
//!   `options.federated_logout: true` (the pysaml2 IdP peer, `peers/saml_idp.py`): Latch ends
//!   its session, sends the browser to the IdP with its signed LogoutRequest (pysaml2 verifies it
//!   and ends its session), takes the IdP's LogoutResponse at `/logout?connection=`, and only then
//!   gives the app its signed LogoutResponse (InResponseTo the app's request, Success, RelayState
//!   echoed). Without `federated_logout` the IdP hears nothing and the app is answered at once;
//!   nor does it when another browser (no cookie) brings an app's unsigned LogoutRequest (an app
//!   without signingCert) naming a session: that session ends, the app is answered at once.
//! - The upstream ID token of a sign-in through an `oidc` connection (npm oidc-provider,
//!   `peers/idp.mjs`) is nowhere at rest (the data dir's files, PostgreSQL, Redis), yet a
//!   federated logout still sends that very token as `id_token_hint`: it was sealed, not dropped.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latch_saml::idp::{HTTP_REDIRECT, Kind, Message, Outbound, STATUS_SUCCESS, new_id};
use latch_testkit::at_rest::{AtRest, contains};
use latch_testkit::saml::redirect_message;
use serde_json::{Value, json};

use crate::peers::{
    Agent, Hop, confirm_idp_logout, end_session_requests, jwt_claims, redeem, require_peers,
    start_idp_env,
};
use crate::process::{Latch, free_port};
use crate::saml::{SamlIdp, start_pysaml2};
use crate::samlp::sp::{
    ACS, Answer, RELAY, SP_SLO, Sp, assert_query_signature, attr, text, unsigned,
};
use crate::support::{Backends, Remote, TestEnv, api, env_for, eventually};
use crate::upstream_slo::{form_of, query};

const NAME: &str = "fed-saml-app";
const ALICE: &str = "alice@example.com";
const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// One Latch, the pysaml2 IdP behind its `samlp` connection [`NAME`] (created with
/// `options.federated_logout: true`), and a SAML app enabled on it whose SingleLogoutService is
/// [`SP_SLO`] (nothing listens there: the test reads where the browser is sent).
struct SamlWorld {
    latch: Latch,
    idp: SamlIdp,
    http: reqwest::Client,
    sp: Sp,
    conn_id: String,
    issuer: String,
    _env: TestEnv,
}

impl SamlWorld {
    async fn start(test: &str, backends: Backends) -> Option<Self> {
        let env = env_for(test, backends)?;
        let mut latch = Latch::start(&env.0, free_port());
        latch.wait_ready().await;
        let base = latch.base.clone();
        let idp = start_pysaml2(&format!("{base}/samlp/metadata?connection={NAME}")).await;
        let http = reqwest::Client::new();
        let at = Remote(&http, &base);
        let issuer = api(&at, "GET", "/.well-known/openid-configuration", None).await["issuer"]
            .as_str()
            .unwrap()
            .to_owned();
        let sp = Sp::create(&at, &issuer, true, json!({"logout": {"callback": SP_SLO}})).await;
        let conn = api(
            &at,
            "POST",
            "/api/v2/connections",
            Some(
                json!({"name": NAME, "strategy": "samlp", "enabled_clients": [sp.id],
                "options": {"metadataUrl": format!("{}/metadata", idp.base), "federated_logout": true}}),
            ),
        )
        .await;
        assert_eq!(conn["options"]["federated_logout"], true, "{conn}");
        let conn_id = conn["id"].as_str().unwrap().to_owned();
        Some(Self {
            latch,
            idp,
            http,
            sp,
            conn_id,
            issuer,
            _env: env,
        })
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        api(&Remote(&self.http, &self.latch.base), method, path, body).await
    }

    /// Log events of `query`, newest first.
    async fn logs(&self, query: &str) -> Vec<Value> {
        let v = self
            .api("GET", &format!("/api/v2/logs?{query}&per_page=100"), None)
            .await;
        v.as_array()
            .or_else(|| v["logs"].as_array())
            .unwrap_or_else(|| panic!("logs: {v}"))
            .clone()
    }

    async fn sessions(&self, user_id: &str) -> Vec<Value> {
        let v = self
            .api("GET", &format!("/api/v2/users/{user_id}/sessions"), None)
            .await;
        v["sessions"]
            .as_array()
            .unwrap_or_else(|| panic!("sessions: {v}"))
            .clone()
    }

    async fn idp_state(&self) -> Value {
        reqwest::get(format!("{}/test/state", self.idp.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The LogoutRequests the IdP received.
    async fn requests_at_idp(&self) -> Vec<Value> {
        self.idp_state().await["logout_requests"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The IdP's SingleLogoutService.
    fn idp_slo(&self) -> String {
        format!("{}/slo", self.idp.base)
    }

    /// Latch's SingleLogoutService for the connection.
    fn slo_url(&self) -> String {
        format!("{}/logout?connection={NAME}", self.latch.base)
    }

    /// Latch's signing certificate (PEM), from the SAML app's IdP metadata.
    async fn latch_cert(&self) -> String {
        let md = self
            .http
            .get(format!("{}/samlp/metadata/{}", self.latch.base, self.sp.id))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let b64 = text(&md, "ds:X509Certificate").unwrap_or_else(|| panic!("{md}"));
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// The SAML app signs `agent` in through the IdP: its signed AuthnRequest at
    /// `/samlp/{client_id}?…&connection=` → the IdP's `/sso` → its auto-posting Response to
    /// Latch's ACS → Latch's auto-posting Response to the app's ACS. What the app got, and the
    /// SessionIndex the IdP issued.
    async fn sign_in(&self, agent: &mut Agent) -> (Answer, String) {
        self.sign_in_with(&self.sp, agent).await
    }

    /// [`Self::sign_in`] through the SAML app `sp` (enabled on the connection).
    async fn sign_in_with(&self, sp: &Sp, agent: &mut Agent) -> (Answer, String) {
        let Outbound::Redirect(u) = sp.sign_in_request(HTTP_REDIRECT).1 else {
            panic!("an HTTP-Redirect AuthnRequest")
        };
        let hop = agent.send(&format!("{u}&connection={NAME}"), None).await;
        let to_idp = hop
            .location
            .unwrap_or_else(|| panic!("to the IdP: {} {}", hop.status, hop.body));
        assert!(
            to_idp.starts_with(&format!("{}/sso?", self.idp.base)),
            "{to_idp}"
        );
        let page = agent.send(&to_idp, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let (acs, fields) = form_of(&page.body).expect("the IdP's auto-posting Response");
        let mut hop = agent.send(&acs, Some(&fields)).await;
        for _ in 0..5 {
            match &hop.location {
                Some(l) if l.starts_with(&self.latch.base) => {
                    let l = l.clone();
                    hop = agent.send(&l, None).await;
                }
                _ => break,
            }
        }
        assert_eq!(hop.status, 200, "{:?} {}", hop.location, hop.body);
        let (action, fields) = form_of(&hop.body)
            .unwrap_or_else(|| panic!("Latch's auto-posting Response: {}", hop.body));
        assert_eq!(action, ACS, "{}", hop.body);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let xml = String::from_utf8(
            STANDARD
                .decode(field("SAMLResponse").expect("SAMLResponse"))
                .unwrap(),
        )
        .unwrap();
        let answer = Answer {
            relay: field("RelayState"),
            name_id: text(&xml, "saml:NameID").unwrap(),
            name_id_format: attr(&xml, "saml:NameID", "Format").unwrap(),
            session_index: attr(&xml, "saml:AuthnStatement", "SessionIndex").unwrap(),
            xml,
        };
        assert_eq!(answer.relay.as_deref(), Some(RELAY));
        let state = self.idp_state().await;
        let issued = state["sessions"].as_array().unwrap().last().unwrap();
        let idp_session_index = issued["session_index"]
            .as_str()
            .expect("a SessionIndex")
            .to_owned();
        (answer, idp_session_index)
    }

    /// The app's signed LogoutRequest (HTTP-Redirect, NameID and SessionIndex of `a`, RelayState
    /// [`RELAY`]) carried by `agent` to `/samlp/{client_id}/logout`: its ID and Latch's answer.
    async fn app_logout(&self, agent: &mut Agent, a: &Answer) -> (String, Hop) {
        let id = new_id();
        let xml = self.sp.logout_request(&id, a, Some(&a.session_index));
        let Outbound::Redirect(u) = self
            .sp
            .signed(HTTP_REDIRECT, &self.sp.slo(), true, &id, &xml)
        else {
            panic!("an HTTP-Redirect LogoutRequest")
        };
        (id, agent.send(u.as_str(), None).await)
    }

    /// `to` is the app's SingleLogoutService with Latch's LogoutResponse to `request_id`
    /// (HTTP-Redirect, signed with Latch's key, Success, RelayState echoed).
    async fn assert_app_answered(&self, to: &str, request_id: &str) {
        assert!(
            to.starts_with(&format!("{SP_SLO}?SAMLResponse=")),
            "the app's LogoutResponse at its logout.callback: {to}"
        );
        let m = Message::parse(&redirect_message(to, "SAMLResponse")).unwrap();
        assert_eq!(m.kind, Kind::LogoutResponse, "{to}");
        assert_eq!(m.attr("InResponseTo"), Some(request_id), "{to}");
        assert_eq!(m.attr("Destination"), Some(SP_SLO), "{to}");
        assert_eq!(m.issuer.as_deref(), Some(self.issuer.as_str()), "{to}");
        assert_eq!(m.status, [STATUS_SUCCESS], "{to}");
        assert_eq!(
            query(to).get("RelayState").map(String::as_str),
            Some(RELAY),
            "RelayState echoed: {to}"
        );
        assert_query_signature(to, "SAMLResponse", &self.latch_cert().await);
    }
}

/// The newest `slo` event of the user.
async fn last_slo(w: &SamlWorld, user_id: &str) -> Value {
    let slo = w.logs(&format!("type=slo&user_id={user_id}")).await;
    slo.first()
        .unwrap_or_else(|| panic!("an slo event for {user_id}"))
        .clone()
}

async fn saml_app_federated_logout(backends: Backends, test: &str) {
    let Some(w) = SamlWorld::start(test, backends).await else {
        return;
    };

    // The SAML app signs alice in through the IdP; the session shows what the IdP issued.
    let mut a = Agent::new();
    let (s, idp_si) = w.sign_in(&mut a).await;
    let user_id = s.name_id.clone();
    let sp_entity_id = w.idp_state().await["sessions"][0]["sp_entity_id"]
        .as_str()
        .expect("the SP entity id Latch signs in with")
        .to_owned();
    let sessions = w.sessions(&user_id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["connection"], NAME, "{sessions:?}");
    assert_eq!(sessions[0]["upstream"]["name_id"], ALICE, "{sessions:?}");
    assert_eq!(
        sessions[0]["upstream"]["session_index"],
        idp_si.as_str(),
        "{sessions:?}"
    );

    // The app's LogoutRequest: Latch's session ends at once, and the browser goes to the IdP
    // with Latch's signed LogoutRequest (no frame to load: a plain 302), RelayState Latch's
    // handle.
    let (request_id, out) = w.app_logout(&mut a, &s).await;
    assert_eq!(out.status, 302, "{:?} {}", out.location, out.body);
    let to_idp = out.location.unwrap();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", w.idp_slo())),
        "not the app's answer yet, the IdP first: {to_idp}"
    );
    let q = query(&to_idp);
    assert!(
        q.contains_key("Signature") && q.contains_key("SigAlg"),
        "{to_idp}"
    );
    let handle = q.get("RelayState").expect("RelayState: Latch's handle");
    assert_ne!(handle, RELAY, "the app's RelayState stays with Latch");
    let sent = Message::parse(&redirect_message(&to_idp, "SAMLRequest")).unwrap();
    assert_eq!(sent.kind, Kind::LogoutRequest);
    assert_eq!(sent.attr("Destination"), Some(w.idp_slo().as_str()));
    assert_eq!(sent.session_indexes, [idp_si.as_str()]);
    assert!(
        w.sessions(&user_id).await.is_empty(),
        "Latch's session is over before the IdP is asked"
    );
    assert!(w.requests_at_idp().await.is_empty(), "nothing sent yet");

    // The IdP verifies it, ends the session it names, and answers at Latch's SLO.
    let hop = a.send(&to_idp, None).await;
    let requests = w.requests_at_idp().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["verified"], true, "pysaml2 verified it: {r}");
    assert_eq!(r["issuer"], sp_entity_id.as_str(), "{r}");
    assert_eq!(r["binding"], "redirect", "{r}");
    assert_eq!(r["name_id"], ALICE, "{r}");
    assert_eq!(r["name_id_format"], EMAIL, "{r}");
    assert_eq!(r["session_indexes"], json!([idp_si]), "{r}");
    assert_eq!(r["relay_state"], handle.as_str(), "{r}");
    assert_eq!(r["sessions_ended"], 1, "{r}");
    assert_eq!(hop.status, 302, "{}", hop.body);
    let to_latch = hop.location.unwrap();
    assert!(
        to_latch.starts_with(&format!("{}&SAMLResponse=", w.slo_url())),
        "{to_latch}"
    );

    // Then, and only then, the app's LogoutResponse to its own request.
    let back = a.send(&to_latch, None).await;
    assert_eq!(back.status, 302, "{}", back.body);
    let to_app = back.location.unwrap();
    w.assert_app_answered(&to_app, &request_id).await;
    let ok = eventually("federated_logout_succeeded", async || {
        let e = w.logs("type=federated_logout_succeeded").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["connection"], NAME, "{ok:?}");
    assert!(w.logs("type=federated_logout_failed").await.is_empty());
    let slo = last_slo(&w, &user_id).await;
    let d = &slo["details"];
    assert_eq!(slo["client_id"], w.sp.id.as_str(), "{slo}");
    assert_eq!(d["protocol"], "samlp", "{slo}");
    assert_eq!(d["initiator"], "rp-logout", "{slo}");
    assert_eq!(d["logout_request_id"], request_id.as_str(), "{slo}");
    assert_eq!(d["status"], STATUS_SUCCESS, "{slo}");
    let up = &d["upstream"];
    assert_eq!(up["connection"], NAME, "{slo}");
    assert_eq!(up["strategy"], "samlp", "{slo}");
    assert_eq!(up["told"], true, "{slo}");
    assert_eq!(up["via"], "saml_logout_request", "{slo}");
    // The IdP's answer is used up.
    let again = a.send(&to_latch, None).await;
    assert_eq!(again.status, 400, "{:?} {}", again.location, again.body);
    assert!(again.location.is_none());

    // A SAML app without a signingCert: its unsigned LogoutRequest (NameID + the SessionIndex
    // Latch issued it) ends the session it names; brought by another browser (no cookie), the
    // IdP hears nothing though the connection asks for federated logout: Latch signs no upstream
    // LogoutRequest for a session not the browser's own. The app is answered at once.
    let sp2 = Sp::create(
        &Remote(&w.http, &w.latch.base),
        &w.issuer,
        false,
        json!({"logout": {"callback": SP_SLO}}),
    )
    .await;
    let conn = w
        .api(
            "PATCH",
            &format!("/api/v2/connections/{}", w.conn_id),
            Some(json!({"enabled_clients": [w.sp.id, sp2.id]})),
        )
        .await;
    assert_eq!(conn["options"]["federated_logout"], true, "{conn}");
    let mut b = Agent::new();
    let (s2, idp_si2) = w.sign_in_with(&sp2, &mut b).await;
    let user2 = s2.name_id.clone();
    assert_eq!(w.sessions(&user2).await.len(), 1);
    let id2 = new_id();
    let xml = sp2.logout_request(&id2, &s2, Some(&s2.session_index));
    let Outbound::Redirect(u) = unsigned(
        &sp2.signed(HTTP_REDIRECT, &sp2.slo(), true, &id2, &xml),
        &xml,
    ) else {
        panic!("an HTTP-Redirect LogoutRequest")
    };
    assert!(!u.as_str().contains("Signature="), "unsigned: {u}");
    let out = Agent::new().send(u.as_str(), None).await;
    assert_eq!(
        out.status, 302,
        "another browser's unsigned LogoutRequest: {:?} {}",
        out.location, out.body
    );
    let to = out.location.unwrap();
    assert!(
        !to.starts_with(&w.idp.base),
        "the other browser is not sent to the IdP: {to}"
    );
    w.assert_app_answered(&to, &id2).await;
    assert!(
        w.sessions(&user2).await.is_empty(),
        "the session the request names ended"
    );
    assert_eq!(
        w.requests_at_idp().await.len(),
        1,
        "the IdP heard no LogoutRequest for it"
    );
    let state = w.idp_state().await;
    let live = state["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["session_index"] == idp_si2.as_str())
        .unwrap();
    assert_eq!(live["active"], true, "the IdP session stays: {live}");
    let slo = last_slo(&w, &user2).await;
    assert_eq!(slo["client_id"], sp2.id.as_str(), "{slo}");
    assert_eq!(slo["details"]["logout_request_id"], id2.as_str(), "{slo}");
    assert_eq!(
        slo["details"]["upstream"]["told"], false,
        "the IdP was not told: {slo}"
    );
    assert_eq!(
        w.logs("type=federated_logout_succeeded").await.len(),
        1,
        "no second federated logout"
    );

    // Without federated_logout (PATCH replaces the options whole): the app is answered at once,
    // and the IdP hears nothing.
    w.api(
        "PATCH",
        &format!("/api/v2/connections/{}", w.conn_id),
        Some(json!({"options": {"metadataUrl": format!("{}/metadata", w.idp.base)}})),
    )
    .await;
    let conn = w
        .api("GET", &format!("/api/v2/connections/{}", w.conn_id), None)
        .await;
    assert_ne!(conn["options"]["federated_logout"], true, "{conn}");
    let mut a = Agent::new();
    let (s, idp_si) = w.sign_in(&mut a).await;
    assert_eq!(w.sessions(&user_id).await.len(), 1);
    let (request_id, out) = w.app_logout(&mut a, &s).await;
    assert_eq!(out.status, 302, "{:?} {}", out.location, out.body);
    w.assert_app_answered(&out.location.unwrap(), &request_id)
        .await;
    assert!(w.sessions(&user_id).await.is_empty());
    assert_eq!(w.requests_at_idp().await.len(), 1, "nothing more was sent");
    let state = w.idp_state().await;
    let live = state["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["session_index"] == idp_si.as_str())
        .unwrap();
    assert_eq!(live["active"], true, "the IdP session stays: {live}");
    let slo = last_slo(&w, &user_id).await;
    assert_eq!(
        slo["details"]["logout_request_id"],
        request_id.as_str(),
        "{slo}"
    );
    assert_ne!(
        slo["details"]["upstream"]["told"], true,
        "the IdP was not told: {slo}"
    );
    assert_eq!(
        w.logs("type=federated_logout_succeeded").await.len(),
        1,
        "no second federated logout"
    );
}

#[tokio::test]
async fn saml_app_federated_logout_on_the_embedded_default() {
    saml_app_federated_logout(
        Backends::Embedded,
        "saml_app_federated_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn saml_app_federated_logout_on_postgres_and_redis() {
    saml_app_federated_logout(
        Backends::Production,
        "saml_app_federated_logout_on_postgres_and_redis",
    )
    .await;
}

/// What `env`'s Latch keeps at rest, place by place: each file of the data dir by name, the
/// PostgreSQL schema and the Redis prefix when it runs on them.
async fn at_rest(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    let (vars, dir, schema) = env;
    let var = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    if let (Some(url), Some(s)) = (var("LATCH_DATABASE_URL"), schema) {
        let place = AtRest::Postgres {
            url,
            schema: s.name.clone(),
        };
        out.push(("PostgreSQL".to_owned(), place.read().await));
    }
    if let (Some(url), Some(prefix)) = (var("LATCH_REDIS_URL"), var("LATCH_REDIS_PREFIX")) {
        let place = AtRest::Redis { url, prefix };
        out.push(("Redis".to_owned(), place.read().await));
    }
    out
}

/// Every JWT-shaped run (`eyJ….….…`) of `bytes` whose payload's `iss` is `issuer`.
fn jwts_from(bytes: &[u8], issuer: &str) -> Vec<String> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(off) = bytes[i..].windows(3).position(|w| w == b"eyJ") {
        let start = i + off;
        let len = bytes[start..]
            .iter()
            .take_while(|&&b| is_b64(b) || b == b'.')
            .count();
        let run = String::from_utf8_lossy(&bytes[start..start + len]).into_owned();
        let parts: Vec<&str> = run.split('.').collect();
        if parts.len() >= 3
            && let Some(claims) = URL_SAFE_NO_PAD
                .decode(parts[1])
                .ok()
                .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            && claims["iss"] == issuer
        {
            found.push(run.clone());
        }
        i = start + len.max(3);
    }
    found
}

/// Nothing in `places` holds the upstream ID token `token` (whole, its payload or its
/// signature) or any other JWT `issuer` issued.
fn assert_not_at_rest(places: &[(String, Vec<u8>)], token: &str, issuer: &str, when: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    for (place, bytes) in places {
        for (what, needle) in [
            ("the upstream ID token", token),
            ("its payload", parts[1]),
            ("its signature", parts[2]),
        ] {
            assert!(
                !contains(bytes, needle),
                "{when}: {what} is stored in the clear in {place}"
            );
        }
        let jwts = jwts_from(bytes, issuer);
        assert!(
            jwts.is_empty(),
            "{when}: {place} holds JWTs the IdP issued: {jwts:?}"
        );
    }
}

/// The bytes of the places that make up the session store: the embedded store's file and its
/// WAL (embedded default), or Redis.
fn session_store(places: &[(String, Vec<u8>)], backends: Backends) -> Vec<u8> {
    let names: &[&str] = match backends {
        Backends::Embedded => &["sessions.db", "sessions.db-wal"],
        Backends::Production => &["Redis"],
    };
    let mut out = Vec::new();
    for n in names {
        let (_, bytes) = places.iter().find(|(p, _)| p == n).unwrap_or_else(|| {
            let have: Vec<&String> = places.iter().map(|(p, _)| p).collect();
            panic!("{n} is not at rest: {have:?}")
        });
        out.extend_from_slice(bytes);
    }
    out
}

/// The IdP signed `token` (its JWKS) for `aud`; its claims.
async fn verified_by_idp(http: &reqwest::Client, idp_base: &str, token: &str, aud: &str) -> Value {
    let disc: Value = http
        .get(format!("{idp_base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = http
        .get(disc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} in the IdP's JWKS {jwks}"))
        .clone();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[idp_base]);
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp", "sub"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .unwrap_or_else(|e| panic!("the IdP's signature on the id_token_hint: {e}"))
    .claims
}

async fn upstream_id_token_sealed_at_rest(backends: Backends, test: &str) {
    require_peers();
    let Some(env) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env.0, free_port());
    latch.wait_ready().await;
    let name = "sealed-oidc";
    let (upstream_client, upstream_secret) = ("0oaSEALED", "upstream-client-secret");
    let return_url = format!("{}/logout?connection={name}", latch.base);
    // With a back-channel URI registered, the IdP puts `sid` in its ID tokens.
    let bcl = format!("{}/login/backchannel-logout/{name}", latch.base);
    let idp = start_idp_env(
        upstream_client,
        upstream_secret,
        &format!("{}/login/callback", latch.base),
        &[
            ("IDP_POST_LOGOUT_REDIRECT_URI", return_url.as_str()),
            ("IDP_BACKCHANNEL_URI", bcl.as_str()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let at = Remote(&http, &latch.base);
    let (app_cb, app_bye) = ("http://127.0.0.1:9/cb", "http://127.0.0.1:9/bye");
    let c = api(
        &at,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "App", "callbacks": [app_cb], "allowed_logout_urls": [app_bye]})),
    )
    .await;
    let (cid, csecret) = (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    );
    api(
        &at,
        "POST",
        "/api/v2/connections",
        Some(
            json!({"name": name, "strategy": "oidc", "enabled_clients": [cid],
            "options": {"issuer": idp.base, "client_id": upstream_client,
                        "client_secret": upstream_secret}}),
        ),
    )
    .await;

    // Sign in through the IdP; the nonce Latch sent it binds the ID token to this sign-in.
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let byeq: String = url::form_urlencoded::byte_serialize(app_bye.as_bytes()).collect();
    let start = format!(
        "{}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20email&state=s&nonce=n&connection={name}",
        latch.base
    );
    let mut agent = Agent::new();
    let hop = agent.send(&start, None).await;
    let to_idp = hop
        .location
        .unwrap_or_else(|| panic!("to the IdP: {} {}", hop.status, hop.body));
    assert!(to_idp.starts_with(&idp.base), "{to_idp}");
    let upstream_nonce = query(&to_idp).remove("nonce").expect("a nonce");
    let back = agent.browse_until(&to_idp, app_cb, "erin").await;
    let code = query(&back)
        .remove("code")
        .unwrap_or_else(|| panic!("{back}"));
    let tokens = redeem(&http, &latch.base, (&cid, &csecret), &code, app_cb).await;
    let id_token = tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{tokens}"))
        .to_owned();
    let user_id = jwt_claims(&id_token)["sub"].as_str().unwrap().to_owned();
    let sessions = api(
        &at,
        "GET",
        &format!("/api/v2/users/{user_id}/sessions"),
        None,
    )
    .await;
    let upstream_sid = sessions["sessions"][0]["upstream"]["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no upstream sid: {sessions}"))
        .to_owned();

    // What is at rest now. The session store holds the session (its upstream sid): the scan
    // sees it. The sealed ID token rides in the browser's `latch_upstream` cookie, and the
    // session keeps that value's digest, not the token.
    let after_sign_in = at_rest(&env).await;
    let store = session_store(&after_sign_in, backends);
    assert!(
        contains(&store, &upstream_sid),
        "the scan does not see the session's upstream sid"
    );
    let carried = agent
        .cookie(&latch.base, "latch_upstream")
        .unwrap_or_else(|| panic!("the browser carries no upstream ID token cookie"))
        .to_owned();
    assert!(carried.starts_with("lat1."), "{carried}");
    assert!(
        contains(
            &store,
            &latch_core::session::upstream_cookie_digest(&carried)
        ),
        "the session does not keep the cookie's digest"
    );
    for sealed in ["id_token_sealed", "\0k", &carried[5..40]] {
        assert!(
            !contains(&store, sealed),
            "the session store keeps the sealed ID token too ({sealed})"
        );
    }

    // The federated logout sends the IdP the ID token it issued at this sign-in.
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
    let sent = query(&to_idp);
    let hint = sent
        .get("id_token_hint")
        .unwrap_or_else(|| panic!("an id_token_hint: {to_idp}"))
        .clone();
    assert!(hint.starts_with("eyJ"), "{hint}");
    let claims = verified_by_idp(&http, &idp.base, &hint, upstream_client).await;
    assert_eq!(claims["sub"], "erin", "{claims}");
    assert_eq!(claims["sid"], upstream_sid.as_str(), "{claims}");
    assert_eq!(
        claims["nonce"],
        upstream_nonce.as_str(),
        "the ID token of this sign-in: {claims}"
    );
    assert_eq!(sent.get("post_logout_redirect_uri"), Some(&return_url));

    // It was nowhere at rest after the sign-in (the scan would find it, as it is sent, in JSON).
    assert_eq!(
        jwts_from(json!({"id_token": hint}).to_string().as_bytes(), &idp.base),
        std::slice::from_ref(&hint)
    );
    assert_not_at_rest(&after_sign_in, &hint, &idp.base, "after the sign-in");

    // The IdP takes it, signs the user out and sends the browser back, on to the app.
    let page = agent.send(&to_idp, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let recorded = end_session_requests(&http, &idp).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["params"]["id_token_hint"], hint.as_str());
    assert_eq!(recorded[0]["error"], Value::Null, "{recorded:?}");
    let done = confirm_idp_logout(&mut agent, &idp.base, &page).await;
    let back = done
        .location
        .unwrap_or_else(|| panic!("the IdP did not redirect ({}): {}", done.status, done.body));
    assert!(back.starts_with(&return_url), "{back}");
    let onward = agent.send(&back, None).await;
    assert_eq!(onward.status, 302, "{}", onward.body);
    assert_eq!(
        onward.location.as_deref(),
        Some(format!("{app_bye}?state=app-state").as_str())
    );

    // The logout removed the cookie with the session's. Nor is it at rest after the whole
    // logout.
    assert_eq!(agent.cookie(&latch.base, "latch_upstream"), None);
    let after_logout = at_rest(&env).await;
    assert_not_at_rest(&after_logout, &hint, &idp.base, "after the logout");

    // A browser that lost the token's cookie (but kept the session's): the federated logout
    // ends Latch's session and goes on to the app, telling the IdP nothing and saying why.
    let back = agent.browse_until(&start, app_cb, "erin").await;
    let code = query(&back)
        .remove("code")
        .unwrap_or_else(|| panic!("{back}"));
    let tokens = redeem(&http, &latch.base, (&cid, &csecret), &code, app_cb).await;
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    assert!(agent.cookie(&latch.base, "latch_upstream").is_some());
    agent.forget_cookie(&latch.base, "latch_upstream");
    let out = agent
        .send(
            &format!(
                "{}/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={byeq}&state=again&federated",
                latch.base
            ),
            None,
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert_eq!(
        out.location.as_deref(),
        Some(format!("{app_bye}?state=again").as_str()),
        "the browser goes on to the app, not to the IdP"
    );
    assert_eq!(end_session_requests(&http, &idp).await.len(), 1);
    let logs = api(
        &at,
        "GET",
        &format!("/api/v2/logs?type=slo&user_id={user_id}&per_page=10"),
        None,
    )
    .await;
    let logs = logs
        .as_array()
        .or_else(|| logs["logs"].as_array())
        .unwrap_or_else(|| panic!("logs: {logs}"))
        .clone();
    let upstream = &logs[0]["details"]["upstream"];
    assert_eq!(upstream["told"], false, "{logs:?}");
    assert_eq!(
        upstream["reason"], "the browser did not bring the session's upstream ID token cookie",
        "{upstream}"
    );
    assert!(
        api(
            &at,
            "GET",
            &format!("/api/v2/users/{user_id}/sessions"),
            None
        )
        .await["sessions"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "Latch's session ended"
    );
}

#[tokio::test]
async fn upstream_id_token_sealed_at_rest_on_the_embedded_default() {
    upstream_id_token_sealed_at_rest(
        Backends::Embedded,
        "upstream_id_token_sealed_at_rest_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn upstream_id_token_sealed_at_rest_on_postgres_and_redis() {
    upstream_id_token_sealed_at_rest(
        Backends::Production,
        "upstream_id_token_sealed_at_rest_on_postgres_and_redis",
    )
    .await;
}
