//! SAML Single Logout with an upstream SAML IdP (issue 15), against the real `latch` binary and
//! the pysaml2 IdP peer (`peers/saml_idp.py`, signing with `xmlsec1`) on loopback, on both backend
//! pairs:
//!
//! - IdP-initiated, over HTTP-Redirect and HTTP-POST: a LogoutRequest naming one of two sessions
//!   of the same user (NameID + SessionIndex) ends that one only, every app of it is told
//!   (front-channel frame, back-channel logout token), and the browser carries Latch's signed
//!   LogoutResponse back to the IdP, which verifies it; NameID alone then ends the other one.
//! - Federated logout (`/oidc/logout?…&federated`): Latch's signed LogoutRequest reaches the IdP,
//!   which verifies it and answers; the answer brings the browser back to the app with its
//!   `state`. With `disableSignout`, or without `federated`, the IdP hears nothing.
//! - Hostile LogoutRequests from the IdP side (unsigned, another key, wrong Issuer, another
//!   Destination, expired, DTD, SHA-1, replayed), each refused with a 400 page and ending nothing;
//!   another user's NameID with this user's SessionIndex ends neither session. A validly signed
//!   query with a parameter repeated or named percent-encoded, a RelayState over 1024 bytes, a
//!   `state` over 200 characters: refused. Latch's own trouble (unreachable metadata) is shown
//!   as a generic message; past 20 refusals a minute a connection logs no more `flo` events.
//! - Latch's answer (page or form) to an accepted LogoutRequest may be framed by the IdP's
//!   origin exactly (`frame-ancestors`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::backchannel::{Receiver, verify_logout_token};
use crate::peers::{Agent, Hop};
use crate::process::{Latch, free_port};
use crate::saml::{SamlIdp, authorize_url, start_pysaml2};
use crate::support::{Backends, Remote, TestEnv, api, env_for};

const NAME: &str = "upstream-saml";
const APP_CB: &str = "http://127.0.0.1:9/cb";
const BYE: &str = "http://127.0.0.1:9/bye";
const FC: &str = "http://127.0.0.1:9/fc";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// One Latch, the pysaml2 IdP behind its `samlp` connection [`NAME`], and an OIDC app enabled on
/// it whose back-channel logout URL is [`Receiver`] (and, when asked, front-channel URL [`FC`]).
struct World {
    latch: Latch,
    idp: SamlIdp,
    http: reqwest::Client,
    rx: Receiver,
    cid: String,
    secret: String,
    conn_id: String,
    issuer: String,
    _env: TestEnv,
}

/// A sign-in through the IdP: Latch's ID token for the app, its `sid` and `sub`, and the
/// SessionIndex the IdP issued.
struct SignedIn {
    id_token: String,
    sid: String,
    user_id: String,
    session_index: String,
}

impl World {
    async fn start(test: &str, backends: Backends, front_channel: bool) -> Option<Self> {
        let env = env_for(test, backends)?;
        let mut latch = Latch::start(&env.0, free_port());
        latch.wait_ready().await;
        let base = latch.base.clone();
        let idp = start_pysaml2(&format!("{base}/samlp/metadata?connection={NAME}")).await;
        let http = reqwest::Client::new();
        let rx = Receiver::start().await;
        let at = Remote(&http, &base);
        let issuer = api(&at, "GET", "/.well-known/openid-configuration", None).await["issuer"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut logout = json!({"backchannel_logout_urls": [format!("{}/app", rx.url)],
            "backchannel_logout_session_required": true});
        if front_channel {
            logout["frontchannel_logout_url"] = json!(FC);
        }
        let app = api(
            &at,
            "POST",
            "/api/v2/clients",
            Some(
                json!({"name": "OIDC app", "callbacks": [APP_CB], "allowed_logout_urls": [BYE],
                "oidc_logout": logout}),
            ),
        )
        .await;
        let cid = app["client_id"].as_str().unwrap().to_owned();
        let secret = app["client_secret"].as_str().unwrap().to_owned();
        let conn = api(
            &at,
            "POST",
            "/api/v2/connections",
            Some(
                json!({"name": NAME, "strategy": "samlp", "enabled_clients": [cid],
                "options": {"metadataUrl": format!("{}/metadata", idp.base)}}),
            ),
        )
        .await;
        let conn_id = conn["id"].as_str().unwrap().to_owned();
        Some(Self {
            latch,
            idp,
            http,
            rx,
            cid,
            secret,
            conn_id,
            issuer,
            _env: env,
        })
    }

    /// Latch's SingleLogoutService for the connection.
    fn slo_url(&self) -> String {
        format!("{}/logout?connection={NAME}", self.latch.base)
    }

    /// The IdP's SingleLogoutService.
    fn idp_slo(&self) -> String {
        format!("{}/slo", self.idp.base)
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        api(&Remote(&self.http, &self.latch.base), method, path, body).await
    }

    /// Log events, newest first.
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

    /// The user the IdP signs in from now on.
    async fn idp_user(&self, name_id: &str) {
        let r = self
            .http
            .post(format!("{}/test/user", self.idp.base))
            .json(&json!({"name_id": name_id, "name_id_format": EMAIL,
                "attributes": {"email": [name_id], "givenName": ["Test"], "sn": ["User"]}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// An IdP-initiated LogoutRequest built by the IdP (`POST /test/logout`), not yet sent.
    async fn idp_logout(&self, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}/test/logout", self.idp.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "the IdP could not build {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The browser brings an IdP-initiated LogoutRequest to Latch: the signed URL (HTTP-Redirect),
    /// or the IdP's auto-posting page, then its form (HTTP-POST). Latch's answer.
    async fn deliver(&self, agent: &mut Agent, out: &Value) -> Hop {
        if let Some(url) = out["url"].as_str() {
            assert!(
                url.starts_with(&format!("{}&SAMLRequest=", self.slo_url())),
                "the IdP sends it to Latch's SingleLogoutService from the SP metadata: {url}"
            );
            return agent.send(url, None).await;
        }
        let page = agent
            .send(out["page_url"].as_str().expect("url or page_url"), None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let (action, fields) = form_of(&page.body).expect("the IdP's auto-posting form");
        assert_eq!(action, self.slo_url());
        agent.send(&action, Some(&fields)).await
    }

    /// Follows Latch's answer to an accepted LogoutRequest that came in `binding` back to the
    /// IdP's SingleLogoutService, in the same binding: HTTP-Redirect, a 302 or the logout page's
    /// continue link; HTTP-POST, an auto-posting form. The IdP's answer.
    async fn back_to_idp(&self, agent: &mut Agent, hop: &Hop, binding: &str) -> Hop {
        let slo = self.idp_slo();
        if binding == "redirect" {
            let to = match (hop.status, &hop.location) {
                (302 | 303, Some(l)) => l.clone(),
                (200, None) => continue_link(&hop.body)
                    .unwrap_or_else(|| panic!("a continue link on the page: {}", hop.body)),
                _ => panic!(
                    "neither a redirect nor a logout page: {} {:?} {}",
                    hop.status, hop.location, hop.body
                ),
            };
            assert!(
                to.starts_with(&format!("{slo}?SAMLResponse=")),
                "a LogoutResponse over HTTP-Redirect to the IdP: {to}"
            );
            return agent.send(&to, None).await;
        }
        assert_eq!(hop.status, 200, "{:?} {}", hop.location, hop.body);
        let (action, fields) = form_of(&hop.body)
            .unwrap_or_else(|| panic!("a form posting the LogoutResponse: {}", hop.body));
        assert_eq!(action, slo, "{}", hop.body);
        assert!(
            fields.iter().any(|(k, _)| k == "SAMLResponse"),
            "{fields:?}"
        );
        agent.send(&action, Some(&fields)).await
    }

    /// Signs `agent` in to the app through the IdP: `/authorize` → IdP `/sso` → its auto-post form
    /// → Latch's ACS → the app's callback; the code redeemed.
    async fn sign_in(&self, agent: &mut Agent) -> SignedIn {
        let hop = agent
            .send(
                &authorize_url(&self.latch.base, &self.cid, APP_CB, NAME),
                None,
            )
            .await;
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
        let hop = agent.send(&acs, Some(&fields)).await;
        assert_eq!(hop.status, 303, "{}", hop.body);
        let back = agent
            .send(&hop.location.unwrap(), None)
            .await
            .location
            .expect("a redirect to the app");
        assert!(back.starts_with(APP_CB), "{back}");
        let code = query(&back)
            .remove("code")
            .unwrap_or_else(|| panic!("{back}"));
        let tokens: Value = self
            .http
            .post(format!("{}/oauth/token", self.latch.base))
            .basic_auth(&self.cid, Some(&self.secret))
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
        let id_token = tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{tokens}"))
            .to_owned();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&id_token)
            .unwrap()
            .claims;
        let state = self.idp_state().await;
        let issued = state["sessions"].as_array().unwrap().last().unwrap();
        SignedIn {
            sid: claims["sid"].as_str().expect("sid").to_owned(),
            user_id: claims["sub"].as_str().unwrap().to_owned(),
            session_index: issued["session_index"]
                .as_str()
                .expect("a SessionIndex")
                .to_owned(),
            id_token,
        }
    }

    /// Whether `agent`'s Latch session still serves a `prompt=none` authorization.
    async fn alive(&self, agent: &mut Agent) -> bool {
        let url = format!(
            "{}&prompt=none",
            authorize_url(&self.latch.base, &self.cid, APP_CB, NAME)
        );
        let hop = agent.send(&url, None).await;
        let to = hop
            .location
            .unwrap_or_else(|| panic!("prompt=none: {} {}", hop.status, hop.body));
        assert!(to.starts_with(APP_CB), "{to}");
        let q = query(&to);
        match (q.get("code"), q.get("error").map(String::as_str)) {
            (Some(_), None) => true,
            (None, Some("login_required")) => false,
            _ => panic!("prompt=none answered {to}"),
        }
    }

    /// The claims of the back-channel logout token number `n` (0-based) the app received.
    async fn logout_token(&self, n: usize) -> Value {
        let got = self.rx.wait_for(n + 1, Duration::from_secs(10)).await;
        assert!(got.len() > n, "logout token {n}: the app got {got:?}");
        let jwks = self.api("GET", "/.well-known/jwks.json", None).await;
        verify_logout_token(&jwks, &got[n].1, &self.cid, &self.issuer)
    }

    /// The SP entity id Latch signs in with (the AuthnRequests' Issuer, as the IdP saw it).
    async fn sp_entity_id(&self) -> String {
        let state = self.idp_state().await;
        state["sessions"][0]["sp_entity_id"]
            .as_str()
            .expect("a sign-in first")
            .to_owned()
    }
}

/// A URL's query, decoded (the last value of each name).
pub(crate) fn query(u: &str) -> HashMap<String, String> {
    url::Url::parse(u)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Undoes HTML escaping: askama's (`&#38;`, `&#34;`, `&#39;`…) and Python's (`&amp;`, `&#x27;`…).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity.strip_prefix('#').and_then(|n| {
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    };
                    code.and_then(char::from_u32)
                }),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every start tag of an element whose local name is `local` (any namespace prefix).
fn start_tags<'a>(doc: &'a str, local: &str) -> Vec<&'a str> {
    doc.match_indices('<')
        .filter_map(|(i, _)| {
            let tag = &doc[i..i + doc[i..].find('>')? + 1];
            let name = tag[1..].split([' ', '>', '/', '\n', '\t', '\r']).next()?;
            (name.rsplit(':').next() == Some(local)).then_some(tag)
        })
        .collect()
}

/// An attribute of a start tag, unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(unescape(tag[i..].split('"').next()?))
}

/// A page's (first) form: its action and hidden fields.
pub(crate) fn form_of(body: &str) -> Option<(String, Vec<(String, String)>)> {
    let form = *start_tags(body, "form").first()?;
    let after = &body[body.find(form)?..];
    let fields = start_tags(after, "input")
        .into_iter()
        .filter(|t| attr(t, "type").as_deref() == Some("hidden"))
        .filter_map(|t| Some((attr(t, "name")?, attr(t, "value")?)))
        .collect();
    Some((attr(form, "action")?, fields))
}

/// The logout page's continue link.
fn continue_link(body: &str) -> Option<String> {
    start_tags(body, "a")
        .into_iter()
        .find(|t| attr(t, "id").as_deref() == Some("continue"))
        .and_then(|t| attr(t, "href"))
}

/// The `src` of every `<iframe>` of a page.
fn frames(body: &str) -> Vec<String> {
    start_tags(body, "iframe")
        .into_iter()
        .filter_map(|t| attr(t, "src"))
        .collect()
}

/// The sources of every `frame-ancestors` directive of `hop`'s Content-Security-Policy headers.
fn frame_ancestors(hop: &Hop) -> Vec<Vec<String>> {
    hop.headers
        .get_all("content-security-policy")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .filter_map(|d| {
                    let mut words = d.split_whitespace();
                    words
                        .next()
                        .filter(|n| n.eq_ignore_ascii_case("frame-ancestors"))?;
                    Some(words.map(str::to_owned).collect())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Latch's answer (a page or a form) to an IdP-initiated LogoutRequest may be framed by the
/// IdP's origin, and by it only.
fn assert_framed_by_idp_only(w: &World, hop: &Hop, why: &str) {
    let origin = url::Url::parse(&w.idp.base)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert_eq!(
        frame_ancestors(hop),
        [vec![origin]],
        "{why}: frame-ancestors is the IdP's origin exactly: {:?}",
        hop.headers.get_all("content-security-policy")
    );
}

/// The newest `slo` event of the user.
async fn last_slo(w: &World, user_id: &str) -> Value {
    let slo = w.logs(&format!("type=slo&user_id={user_id}")).await;
    slo.first()
        .unwrap_or_else(|| panic!("an slo event for {user_id}"))
        .clone()
}

/// One round of IdP-initiated SLO in `binding`: two sessions of alice (two browsers, two
/// SessionIndexes); NameID + SessionIndex ends the first only, delivered by `carrier` (browser 1
/// or 2: the request names the session, the cookie does not); NameID alone ends the second,
/// delivered by browser 1. `tokens` counts the logout tokens the app got before.
async fn idp_initiated_round(
    w: &World,
    binding: &str,
    relay: Option<&str>,
    carrier_is_first: bool,
    tokens: usize,
) {
    let (mut a1, mut a2) = (Agent::new(), Agent::new());
    let s1 = w.sign_in(&mut a1).await;
    let s2 = w.sign_in(&mut a2).await;
    let sp_entity_id = w.sp_entity_id().await;
    assert_eq!(s1.user_id, s2.user_id, "one user");
    assert_ne!(s1.sid, s2.sid, "two Latch sessions");
    assert_ne!(s1.session_index, s2.session_index, "two IdP sessions");
    let user_id = s1.user_id.clone();

    // The sessions API shows what the IdP issued each session.
    let sessions = w.sessions(&user_id).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in [&s1, &s2] {
        let v = sessions
            .iter()
            .find(|v| v["id"] == s.sid.as_str())
            .unwrap_or_else(|| panic!("session {} in {sessions:?}", s.sid));
        assert_eq!(v["connection"], NAME, "{v}");
        let up = &v["upstream"];
        assert_eq!(up["name_id"], ALICE, "{v}");
        assert_eq!(up["name_id_format"], EMAIL, "{v}");
        assert_eq!(up["session_index"], s.session_index.as_str(), "{v}");
        assert!(
            up.get("id_token").is_none(),
            "never the upstream ID token: {v}"
        );
    }

    // (1) NameID + SessionIndex of session 1.
    let mut body = json!({"name_id": ALICE, "session_index": s1.session_index, "binding": binding});
    if let Some(r) = relay {
        body["relay_state"] = json!(r);
    }
    let out = w.idp_logout(&body).await;
    let request_id = out["id"].as_str().unwrap().to_owned();
    let carrier = if carrier_is_first { &mut a1 } else { &mut a2 };
    let page = w.deliver(carrier, &out).await;
    // The app has a front-channel URL: a logout page framing it with session 1's sid.
    assert_eq!(
        page.status, 200,
        "{binding}: {:?} {}",
        page.location, page.body
    );
    assert_framed_by_idp_only(w, &page, &format!("{binding}, NameID + SessionIndex"));
    let f = frames(&page.body);
    assert_eq!(f.len(), 1, "{}", page.body);
    let fc = url::Url::parse(&f[0]).unwrap();
    assert_eq!(fc.as_str().split('?').next(), Some(FC), "{fc}");
    let fq: Vec<(String, String)> = fc.query_pairs().into_owned().collect();
    assert_eq!(
        fq,
        [
            ("iss".to_owned(), w.issuer.clone()),
            ("sid".to_owned(), s1.sid.clone())
        ]
    );
    let at_idp = w.back_to_idp(carrier, &page, binding).await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    let state = w.idp_state().await;
    let answer = state["logout_responses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(answer["verified"], true, "pysaml2 verified it: {answer}");
    assert_eq!(answer["status"], SUCCESS, "{answer}");
    assert_eq!(answer["in_response_to"], request_id.as_str(), "{answer}");
    assert_eq!(answer["issuer"], sp_entity_id.as_str(), "{answer}");
    assert_eq!(
        answer["binding"], binding,
        "answered in the request's binding"
    );
    assert_eq!(answer["relay_state"], json!(relay), "RelayState echoed");

    // Session 1 is over; session 2 is not, whichever browser carried the request.
    assert!(!w.alive(&mut a1).await, "session 1 ended");
    assert!(w.alive(&mut a2).await, "session 2 survives");
    let left = w.sessions(&user_id).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], s2.sid.as_str());
    let claims = w.logout_token(tokens).await;
    assert_eq!(claims["sid"], s1.sid.as_str(), "{claims}");
    assert_eq!(claims["sub"], user_id.as_str(), "{claims}");
    let slo = last_slo(w, &user_id).await;
    let d = &slo["details"];
    assert_eq!(d["initiator"], "idp-logout", "{slo}");
    assert_eq!(d["upstream"]["protocol"], "saml", "{slo}");
    assert_eq!(d["upstream"]["name_id"], ALICE, "{slo}");
    assert_eq!(
        d["upstream"]["session_indexes"],
        json!([s1.session_index]),
        "{slo}"
    );
    assert_eq!(
        d["upstream"]["logout_request_id"],
        request_id.as_str(),
        "{slo}"
    );
    assert_eq!(d["upstream"]["answered"], SUCCESS, "{slo}");

    // (2) NameID alone, carried by browser 1 (its own session is already gone): session 2 ends.
    let out = w
        .idp_logout(&json!({"name_id": ALICE, "binding": binding}))
        .await;
    let request_id = out["id"].as_str().unwrap().to_owned();
    let page = w.deliver(&mut a1, &out).await;
    assert_eq!(page.status, 200, "{:?} {}", page.location, page.body);
    assert_framed_by_idp_only(w, &page, &format!("{binding}, NameID alone"));
    let f = frames(&page.body);
    assert_eq!(f.len(), 1, "{}", page.body);
    assert_eq!(query(&f[0]).get("sid"), Some(&s2.sid), "{}", f[0]);
    let at_idp = w.back_to_idp(&mut a1, &page, binding).await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    let state = w.idp_state().await;
    let answer = state["logout_responses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(answer["verified"], true, "pysaml2 verified it: {answer}");
    assert_eq!(answer["status"], SUCCESS, "{answer}");
    assert_eq!(answer["in_response_to"], request_id.as_str(), "{answer}");
    assert_eq!(answer["relay_state"], Value::Null, "{answer}");
    assert!(!w.alive(&mut a2).await, "session 2 ended by NameID alone");
    assert!(w.sessions(&user_id).await.is_empty());
    let claims = w.logout_token(tokens + 1).await;
    assert_eq!(claims["sid"], s2.sid.as_str(), "{claims}");
    let slo = last_slo(w, &user_id).await;
    let d = &slo["details"];
    assert_eq!(d["initiator"], "idp-logout", "{slo}");
    assert_eq!(d["upstream"]["session_indexes"], json!([]), "{slo}");
    assert_eq!(
        d["upstream"]["logout_request_id"],
        request_id.as_str(),
        "{slo}"
    );
    assert_eq!(
        w.rx.received().len(),
        tokens + 2,
        "one logout token per ended session"
    );
}

async fn idp_initiated_slo(backends: Backends, test: &str) {
    let Some(w) = World::start(test, backends, true).await else {
        return;
    };
    // The connection shows Latch's SingleLogoutService, and its SP metadata lists it for both
    // bindings with a signing certificate.
    let conn = w
        .api("GET", &format!("/api/v2/connections/{}", w.conn_id), None)
        .await;
    assert_eq!(
        conn["options"]["sp_single_logout_url"],
        w.slo_url().as_str(),
        "{conn}"
    );
    let md = w
        .http
        .get(format!("{}/samlp/metadata?connection={NAME}", w.latch.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let slo: Vec<(Option<String>, Option<String>)> = start_tags(&md, "SingleLogoutService")
        .into_iter()
        .map(|t| (attr(t, "Binding"), attr(t, "Location")))
        .collect();
    for binding in [REDIRECT, POST] {
        assert!(
            slo.contains(&(Some(binding.to_owned()), Some(w.slo_url()))),
            "{binding} at {}: {md}",
            w.slo_url()
        );
    }
    assert!(
        start_tags(&md, "KeyDescriptor")
            .iter()
            .any(|t| attr(t, "use").as_deref() == Some("signing")),
        "{md}"
    );

    // HTTP-Redirect, carried by the other browser; then HTTP-POST, carried by session 1's own.
    idp_initiated_round(&w, "redirect", Some("idp relay <&> 1"), false, 0).await;
    idp_initiated_round(&w, "post", Some("idp relay <&> 2"), true, 2).await;
}

#[tokio::test]
async fn upstream_saml_idp_initiated_slo_on_the_embedded_default() {
    idp_initiated_slo(
        Backends::Embedded,
        "upstream_saml_idp_initiated_slo_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn upstream_saml_idp_initiated_slo_on_postgres_and_redis() {
    idp_initiated_slo(
        Backends::Production,
        "upstream_saml_idp_initiated_slo_on_postgres_and_redis",
    )
    .await;
}

/// `/oidc/logout` with the app's ID token, `post_logout_redirect_uri` [`BYE`], `state` and, when
/// asked, `federated`.
fn oidc_logout(w: &World, id_token: &str, state: &str, federated: bool) -> String {
    let bye: String = url::form_urlencoded::byte_serialize(BYE.as_bytes()).collect();
    format!(
        "{}/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={bye}&state={state}{}",
        w.latch.base,
        if federated { "&federated" } else { "" }
    )
}

async fn federated_logout(backends: Backends, test: &str) {
    let Some(w) = World::start(test, backends, false).await else {
        return;
    };
    let requests_at_idp = async || {
        w.idp_state().await["logout_requests"]
            .as_array()
            .unwrap()
            .clone()
    };

    // Without `federated`, the IdP hears nothing.
    let mut a = Agent::new();
    let s = w.sign_in(&mut a).await;
    let sp_entity_id = w.sp_entity_id().await;
    let out = a
        .send(&oidc_logout(&w, &s.id_token, "plain", false), None)
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert_eq!(
        out.location.as_deref(),
        Some(&*format!("{BYE}?state=plain"))
    );
    assert!(!w.alive(&mut a).await);
    assert!(requests_at_idp().await.is_empty());
    let state = w.idp_state().await;
    assert_eq!(state["sessions"][0]["active"], true, "{state}");

    // With it: Latch's own session ends, then a signed LogoutRequest over HTTP-Redirect to the
    // IdP, which verifies it and ends the session it names.
    let mut a = Agent::new();
    let s = w.sign_in(&mut a).await;
    let out = a
        .send(&oidc_logout(&w, &s.id_token, "xyz", true), None)
        .await;
    assert_eq!(out.status, 302, "no frame to load: {}", out.body);
    let to_idp = out.location.unwrap();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", w.idp_slo())),
        "{to_idp}"
    );
    let q = query(&to_idp);
    assert!(
        q.contains_key("Signature") && q.contains_key("SigAlg"),
        "{to_idp}"
    );
    let handle = q.get("RelayState").expect("RelayState: Latch's handle");
    assert!(!w.alive(&mut a).await, "Latch's session is over already");
    let hop = a.send(&to_idp, None).await;
    let requests = requests_at_idp().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["verified"], true, "pysaml2 verified it: {r}");
    assert_eq!(r["issuer"], sp_entity_id.as_str(), "{r}");
    assert_eq!(r["binding"], "redirect", "{r}");
    assert_eq!(r["name_id"], ALICE, "{r}");
    assert_eq!(r["name_id_format"], EMAIL, "{r}");
    assert_eq!(r["session_indexes"], json!([s.session_index]), "{r}");
    assert_eq!(r["relay_state"], handle.as_str(), "{r}");
    assert_eq!(r["sessions_ended"], 1, "{r}");
    let state = w.idp_state().await;
    let ended = state["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["session_index"] == s.session_index.as_str())
        .unwrap();
    assert_eq!(ended["active"], false, "{ended}");
    // The IdP's LogoutResponse brings the browser to Latch's SLO, and on to the app with `state`.
    assert_eq!(hop.status, 302, "{}", hop.body);
    let to_latch = hop.location.unwrap();
    assert!(
        to_latch.starts_with(&format!("{}&SAMLResponse=", w.slo_url())),
        "{to_latch}"
    );
    let back = a.send(&to_latch, None).await;
    assert_eq!(back.status, 302, "{}", back.body);
    assert_eq!(back.location.as_deref(), Some(&*format!("{BYE}?state=xyz")));
    let ok = w.logs("type=federated_logout_succeeded").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert!(w.logs("type=federated_logout_failed").await.is_empty());
    let slo = last_slo(&w, &s.user_id).await;
    let up = &slo["details"]["upstream"];
    assert_eq!(slo["details"]["initiator"], "rp-logout", "{slo}");
    assert_eq!(up["connection"], NAME, "{slo}");
    assert_eq!(up["strategy"], "samlp", "{slo}");
    assert_eq!(up["told"], true, "{slo}");
    assert_eq!(up["via"], "saml_logout_request", "{slo}");
    // The IdP's answer is used up.
    let again = a.send(&to_latch, None).await;
    assert_eq!(again.status, 400, "{:?} {}", again.location, again.body);

    // disableSignout (PATCH replaces the options whole): nothing goes to the IdP; straight to the
    // app.
    w.api(
        "PATCH",
        &format!("/api/v2/connections/{}", w.conn_id),
        Some(
            json!({"options": {"metadataUrl": format!("{}/metadata", w.idp.base), "disableSignout": true}}),
        ),
    )
    .await;
    let mut a = Agent::new();
    let s = w.sign_in(&mut a).await;
    let out = a
        .send(&oidc_logout(&w, &s.id_token, "xyz", true), None)
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert_eq!(out.location.as_deref(), Some(&*format!("{BYE}?state=xyz")));
    assert!(!w.alive(&mut a).await);
    assert_eq!(requests_at_idp().await.len(), 1, "nothing more was sent");
    let state = w.idp_state().await;
    let live = state["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["session_index"] == s.session_index.as_str())
        .unwrap();
    assert_eq!(live["active"], true, "the IdP session stays: {live}");
    let slo = last_slo(&w, &s.user_id).await;
    let up = &slo["details"]["upstream"];
    assert_eq!(up["connection"], NAME, "{slo}");
    assert_eq!(up["told"], false, "{slo}");
    assert!(
        up["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{slo}"
    );
}

#[tokio::test]
async fn upstream_saml_federated_logout_on_the_embedded_default() {
    federated_logout(
        Backends::Embedded,
        "upstream_saml_federated_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn upstream_saml_federated_logout_on_postgres_and_redis() {
    federated_logout(
        Backends::Production,
        "upstream_saml_federated_logout_on_postgres_and_redis",
    )
    .await;
}

/// `base` with the fields of `more` added.
fn with(base: &Value, more: Value) -> Value {
    let mut v = base.clone();
    for (k, x) in more.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

async fn hostile_logout_requests(backends: Backends, test: &str) {
    let Some(w) = World::start(test, backends, false).await else {
        return;
    };
    // Alice and Bob, each with a live session.
    let mut a = Agent::new();
    let sa = w.sign_in(&mut a).await;
    w.idp_user(BOB).await;
    let mut b = Agent::new();
    let sb = w.sign_in(&mut b).await;
    w.idp_user(ALICE).await;
    assert_ne!(sa.user_id, sb.user_id);
    let both_alive = async |a: &mut Agent, b: &mut Agent, why: &str| {
        assert!(w.alive(a).await, "{why}: Alice's session ended");
        assert!(w.alive(b).await, "{why}: Bob's session ended");
    };

    // Each would end Alice's session but for its one flaw.
    let alice = json!({"name_id": ALICE, "session_index": sa.session_index});
    let post = json!({"binding": "post"});
    let cases = [
        ("unsigned (HTTP-Redirect)", json!({"sign": false})),
        ("unsigned (HTTP-POST)", with(&post, json!({"sign": false}))),
        (
            "signed by another key (HTTP-Redirect)",
            json!({"wrong_key": true}),
        ),
        (
            "signed by another key (HTTP-POST)",
            with(&post, json!({"wrong_key": true})),
        ),
        (
            "wrong Issuer",
            json!({"issuer": "http://127.0.0.1:9/not-the-idp"}),
        ),
        (
            "another Destination",
            json!({"destination": "http://127.0.0.1:9/elsewhere"}),
        ),
        ("expired NotOnOrAfter", json!({"expires_in": -3600})),
        (
            "a DTD with an external entity (HTTP-Redirect)",
            json!({"dtd": true}),
        ),
        (
            "a DTD with an external entity (HTTP-POST)",
            with(&post, json!({"dtd": true})),
        ),
        ("SHA-1 (HTTP-Redirect)", json!({"sig_alg": "rsa-sha1"})),
        (
            "SHA-1 (HTTP-POST)",
            with(&post, json!({"sig_alg": "rsa-sha1"})),
        ),
    ];
    for (why, flaw) in &cases {
        let out = w.idp_logout(&with(&alice, flaw.clone())).await;
        let hop = w.deliver(&mut a, &out).await;
        assert_eq!(hop.status, 400, "{why}: {:?} {}", hop.location, hop.body);
        assert!(hop.location.is_none(), "{why}");
        let ctype = hop
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            ctype.as_deref().is_some_and(|c| c.starts_with("text/html")),
            "{why}: a page, {ctype:?}"
        );
        both_alive(&mut a, &mut b, *why).await;
    }
    assert!(
        w.idp_state().await["logout_responses"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no LogoutResponse went to the IdP"
    );

    // Bob's NameID with Alice's SessionIndex: valid and signed, but it names no live session, so
    // it ends neither (and is answered Success, as for any request naming no live session).
    let out = w
        .idp_logout(&json!({"name_id": BOB, "session_index": sa.session_index}))
        .await;
    let hop = w.deliver(&mut a, &out).await;
    let at_idp = w.back_to_idp(&mut a, &hop, "redirect").await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    let state = w.idp_state().await;
    let answer = state["logout_responses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["in_response_to"], out["id"], "{answer}");
    assert_eq!(answer["status"], SUCCESS, "{answer}");
    both_alive(&mut a, &mut b, "another user's NameID").await;
    assert_eq!(w.sessions(&sa.user_id).await.len(), 1);
    assert_eq!(w.sessions(&sb.user_id).await.len(), 1);
    assert!(w.rx.received().is_empty(), "no app was told anything");

    // Replayed: the first use of a signed URL (NameID alone) ends Alice's session; after she signs
    // in again, the same URL would end the new one, and is refused.
    let out = w
        .idp_logout(&json!({"name_id": ALICE, "relay_state": "replay"}))
        .await;
    let hop = w.deliver(&mut a, &out).await;
    let at_idp = w.back_to_idp(&mut a, &hop, "redirect").await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    assert!(!w.alive(&mut a).await, "the first use ends Alice's session");
    assert!(w.alive(&mut b).await, "not Bob's");
    let sa2 = w.sign_in(&mut a).await;
    assert_ne!(sa2.sid, sa.sid);
    let hop = w.deliver(&mut a, &out).await;
    assert_eq!(hop.status, 400, "replayed: {:?} {}", hop.location, hop.body);
    both_alive(&mut a, &mut b, "replayed").await;
    assert_eq!(
        w.logout_token(0).await["sid"],
        sa.sid.as_str(),
        "one logout token, for the session the first use ended"
    );
    assert_eq!(w.rx.received().len(), 1, "{:?}", w.rx.received());

    // Every refusal is logged.
    let flo = w.logs("type=flo").await;
    assert!(flo.len() > cases.len(), "{} flo events: {flo:?}", flo.len());

    // A query naming a parameter twice, or by a percent-encoded name, is refused whole though
    // its signed part is valid (what is read must be what was verified): the same URL untouched
    // is accepted below. Its RelayState is 1024 bytes, the longest Latch carries.
    let alice = json!({"name_id": ALICE, "session_index": sa2.session_index});
    let longest = "r".repeat(1024);
    let good = w
        .idp_logout(&with(&alice, json!({"relay_state": longest})))
        .await;
    let good_url = good["url"].as_str().unwrap().to_owned();
    let bare = w.idp_logout(&alice).await;
    let bare_url = bare["url"].as_str().unwrap();
    assert!(!bare_url.contains("RelayState"), "{bare_url}");
    let tampered = [
        ("RelayState repeated", format!("{good_url}&RelayState=evil")),
        (
            "RelayState repeated ahead of the signed one",
            good_url.replacen("&SAMLRequest=", "&RelayState=evil&SAMLRequest=", 1),
        ),
        (
            "a percent-encoded RelayState name, beside the signed one",
            format!("{good_url}&Relay%53tate=evil"),
        ),
        (
            "a percent-encoded RelayState name, alone",
            format!("{bare_url}&Relay%53tate=evil"),
        ),
        (
            "connection repeated",
            format!("{good_url}&connection={NAME}"),
        ),
    ];
    for (why, url) in &tampered {
        let hop = a.send(url, None).await;
        assert_eq!(hop.status, 400, "{why}: {:?} {}", hop.location, hop.body);
        assert!(hop.location.is_none(), "{why}");
        both_alive(&mut a, &mut b, why).await;
    }

    // A RelayState over 1024 bytes is refused, in either binding; bytes, not characters.
    let too_long = [
        (
            "1025 bytes (HTTP-Redirect)",
            json!({"relay_state": "r".repeat(1025)}),
        ),
        (
            "600 two-byte characters (HTTP-Redirect)",
            json!({"relay_state": "é".repeat(600)}),
        ),
        (
            "1025 bytes (HTTP-POST)",
            json!({"relay_state": "r".repeat(1025), "binding": "post"}),
        ),
    ];
    for (why, more) in &too_long {
        let out = w.idp_logout(&with(&alice, more.clone())).await;
        let hop = w.deliver(&mut a, &out).await;
        assert_eq!(
            hop.status, 400,
            "a RelayState of {why}: {:?} {}",
            hop.location, hop.body
        );
        both_alive(&mut a, &mut b, why).await;
    }

    // A `state` (or a LogoutResponse's RelayState) over 200 characters is refused for its length,
    // not looked up: its page is not the page of an unknown one, and does not echo it.
    let unknown = a
        .send(&format!("{}&state={}", w.slo_url(), "s".repeat(200)), None)
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    for q in [
        format!("state={}", "s".repeat(201)),
        format!("SAMLResponse=x&RelayState={}", "s".repeat(201)),
    ] {
        let hop = a.send(&format!("{}&{q}", w.slo_url()), None).await;
        assert_eq!(hop.status, 400, "{q}: {:?} {}", hop.location, hop.body);
        assert!(hop.location.is_none(), "{q}");
        assert!(
            hop.body != unknown.body,
            "{q}: refused for its length, not with the page of an unknown sign-out"
        );
        assert!(!hop.body.contains(&"s".repeat(201)), "{q}: {}", hop.body);
    }
    both_alive(&mut a, &mut b, "long states").await;

    // The untouched URL: accepted, its 1024-byte RelayState echoed; Alice's session ends.
    let hop = w.deliver(&mut a, &good).await;
    let at_idp = w.back_to_idp(&mut a, &hop, "redirect").await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    let state = w.idp_state().await;
    let answer = state["logout_responses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["in_response_to"], good["id"], "{answer}");
    assert_eq!(answer["status"], SUCCESS, "{answer}");
    assert_eq!(answer["relay_state"], longest.as_str(), "{answer}");
    assert!(
        !w.alive(&mut a).await,
        "the untouched URL ends Alice's session"
    );
    assert!(w.alive(&mut b).await, "not Bob's");

    // Over HTTP-POST, naming no live session any more: no frame to load, Latch's answer is an
    // auto-posting form alone, and the IdP's origin (only) may frame it too.
    let out = w
        .idp_logout(&json!({"name_id": ALICE, "binding": "post"}))
        .await;
    let hop = w.deliver(&mut a, &out).await;
    assert_eq!(hop.status, 200, "{:?} {}", hop.location, hop.body);
    assert!(frames(&hop.body).is_empty(), "{}", hop.body);
    assert_framed_by_idp_only(&w, &hop, "the auto-posting LogoutResponse");
    let at_idp = w.back_to_idp(&mut a, &hop, "post").await;
    assert_eq!(at_idp.status, 200, "{}", at_idp.body);
    let state = w.idp_state().await;
    let answer = state["logout_responses"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["in_response_to"], out["id"], "{answer}");
    assert_eq!(answer["status"], SUCCESS, "{answer}");
    assert!(w.alive(&mut b).await, "not Bob's");

    // Latch's own trouble (a samlp connection whose metadataUrl is a closed loopback port) is a
    // 400 page with a generic message: neither the URL nor the error.
    const DEAD: &str = "upstream-dead";
    let dead_port = free_port();
    let dead_md = format!("http://127.0.0.1:{dead_port}/metadata");
    w.api(
        "POST",
        "/api/v2/connections",
        Some(json!({"name": DEAD, "strategy": "samlp", "options": {"metadataUrl": dead_md}})),
    )
    .await;
    let dead_slo = format!("{}/logout?connection={DEAD}", w.latch.base);
    let to_dead = |out: &Value| {
        let url = out["url"].as_str().unwrap();
        let rest = url
            .strip_prefix(&w.slo_url())
            .unwrap_or_else(|| panic!("{url}"));
        format!("{dead_slo}{rest}")
    };
    let signed = to_dead(
        &w.idp_logout(&json!({"name_id": BOB, "session_index": sb.session_index}))
            .await,
    );
    let started = std::time::Instant::now();
    let hop = b.send(&signed, None).await;
    assert_eq!(hop.status, 400, "{:?} {}", hop.location, hop.body);
    let body = hop.body.to_ascii_lowercase();
    for secret in [
        dead_md.as_str(),
        &format!("127.0.0.1:{dead_port}"),
        "connection refused",
        "error sending request",
        "unavailable",
    ] {
        assert!(
            !body.contains(&secret.to_ascii_lowercase()),
            "the page shows {secret:?}: {}",
            hop.body
        );
    }
    assert!(w.alive(&mut b).await, "Bob's session stays");

    // More than 20 refused requests for one connection within a minute: at most 20 flo events.
    let unsigned = to_dead(&w.idp_logout(&json!({"name_id": BOB, "sign": false})).await);
    let sent = 25;
    for n in 1..sent {
        let hop = b.send(&unsigned, None).await;
        assert_eq!(
            hop.status, 400,
            "refusal {n}: {:?} {}",
            hop.location, hop.body
        );
    }
    let elapsed = started.elapsed();
    let flo = w.logs(&format!("type=flo&connection={DEAD}")).await;
    assert!(flo.iter().all(|e| e["connection"] == DEAD), "{flo:?}");
    assert!(
        elapsed < Duration::from_secs(60),
        "{sent} requests took {elapsed:?}: no longer within one minute"
    );
    assert_eq!(
        flo.len(),
        20,
        "{sent} refusals within {elapsed:?}: the first 20 logged, no more"
    );
    assert!(w.alive(&mut b).await, "Bob's session stays");
}

#[tokio::test]
async fn upstream_saml_hostile_logout_requests_on_the_embedded_default() {
    hostile_logout_requests(
        Backends::Embedded,
        "upstream_saml_hostile_logout_requests_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn upstream_saml_hostile_logout_requests_on_postgres_and_redis() {
    hostile_logout_requests(
        Backends::Production,
        "upstream_saml_hostile_logout_requests_on_postgres_and_redis",
    )
    .await;
}
