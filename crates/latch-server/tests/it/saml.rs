//! SAML connections against the real `latch` binary: a real SAML IdP (PyPI `pysaml2`, signing
//! with the `xmlsec1` program) signs a user in to an app through Latch; then a test IdP signs
//! answers that are wrong in one way each, and none of them leaves a session or a user.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::peers::{Agent, peers_dir};
use crate::process::{Latch, free_port};
use crate::support::{Backends, TOKEN, env_for};
use latch_testkit::saml::{Sign, Spec, TestIdp};

pub(crate) struct SamlIdp {
    child: Child,
    pub(crate) base: String,
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_pysaml2(sp_metadata_url: &str) -> SamlIdp {
    let python = peers_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the pysaml2 peer is missing: run scripts/install-peers.sh (cargo xtask test does)"
    );
    let port = free_port();
    let child = Command::new(python)
        .arg("saml_idp.py")
        .current_dir(peers_dir())
        .env("SAML_IDP_PORT", port.to_string())
        .env("SAML_SP_METADATA_URL", sp_metadata_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut idp = SamlIdp { child, base };
    for _ in 0..100 {
        if reqwest::get(format!("{}/metadata", idp.base))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return idp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = idp.child.kill();
    panic!("the SAML IdP did not start");
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The HTTP-POST binding form: its action and hidden fields.
fn post_form(html: &str) -> (String, Vec<(String, String)>) {
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(unescape)
        .expect("a form");
    let fields = html
        .split("<input type=\"hidden\"")
        .skip(1)
        .filter_map(|s| {
            let name = s.split("name=\"").nth(1)?.split('"').next()?;
            let value = s.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), unescape(value)))
        })
        .collect();
    (action, fields)
}

async fn create_app(http: &reqwest::Client, base: &str, callback: &str) -> (String, String) {
    let c: Value = http
        .post(format!("{base}/api/v2/clients"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "SAML app", "callbacks": [callback]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    )
}

pub(crate) fn authorize_url(base: &str, cid: &str, callback: &str, connection: &str) -> String {
    let cbq: String = url::form_urlencoded::byte_serialize(callback.as_bytes()).collect();
    format!(
        "{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope=openid%20email%20profile&state=app-state&nonce=app-nonce&connection={connection}"
    )
}

async fn pysaml2_full_flow(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let name = "acme-saml";
    let idp = start_pysaml2(&format!("{}/samlp/metadata?connection={name}", latch.base)).await;
    let http = reqwest::Client::new();
    let app_cb = "http://127.0.0.1:9/cb";
    let (cid, secret) = create_app(&http, &latch.base, app_cb).await;
    let r = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": name, "strategy": "samlp", "enabled_clients": [cid],
            "options": {"metadataUrl": format!("{}/metadata", idp.base)}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let conn: Value = r.json().await.unwrap();
    let metadata_url = format!("{}/samlp/metadata?connection={name}", latch.base);
    assert_eq!(conn["options"]["sp_metadata_url"], metadata_url.as_str());

    // Latch's SP metadata, as the IdP reads it.
    let md = http.get(&metadata_url).send().await.unwrap();
    assert_eq!(md.status(), 200);
    let md = md.text().await.unwrap();
    let acs = format!("{}/login/callback?connection={name}", latch.base);
    assert!(md.contains(&acs), "{md}");

    // app -> Latch -> IdP (HTTP-Redirect) -> Latch ACS (HTTP-POST) -> Latch -> app.
    let mut agent = Agent::new();
    let hop = agent
        .send(&authorize_url(&latch.base, &cid, app_cb, name), None)
        .await;
    let to_idp = hop.location.expect("a redirect to the IdP");
    assert!(
        to_idp.starts_with(&format!("{}/sso?SAMLRequest=", idp.base)),
        "{to_idp}"
    );
    let hop = agent.send(&to_idp, None).await;
    assert_eq!(hop.status, 200, "{}", hop.body);
    let (action, fields) = post_form(&hop.body);
    assert_eq!(action, acs);
    let hop = agent.send(&action, Some(&fields)).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let back = agent.send(&hop.location.unwrap(), None).await;
    let back = back.location.expect("a redirect to the app");
    assert!(back.starts_with(app_cb), "{back}");
    let q: std::collections::HashMap<_, _> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["state"], "app-state");
    let tokens: Value = http
        .post(format!("{}/oauth/token", latch.base))
        .basic_auth(&cid, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", app_cb),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id =
        jsonwebtoken::dangerous::insecure_decode::<Value>(tokens["id_token"].as_str().unwrap())
            .unwrap()
            .claims;
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["nonce"], "app-nonce");
    let user_id = id["sub"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("samlp|"), "{user_id}");
    let user: Value = http
        .get(format!("{}/api/v2/users/{user_id}", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let identity = &user["identities"][0];
    assert_eq!(identity["connection"], name);
    assert_eq!(identity["provider"], "samlp");
    assert_eq!(identity["user_id"], "alice@example.com");
    assert_eq!(
        identity["issuer"],
        format!("{}/metadata", idp.base).as_str()
    );
    // The session keeps what SAML single logout will need.
    let sessions: Value = http
        .get(format!("{}/api/v2/users/{user_id}/sessions", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upstream = &sessions["sessions"][0]["upstream"];
    assert_eq!(upstream["name_id"], "alice@example.com", "{sessions}");
    assert_eq!(
        upstream["name_id_format"],
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    );
    assert!(upstream["session_index"].is_string(), "{sessions}");

    // The same answer posted again finds its login transaction gone.
    let replay = agent.send(&action, Some(&fields)).await;
    assert_eq!(replay.status, 400);

    // A later sign-in updates the profile (JIT provisioning keeps one user).
    idp_set_user(&idp, "Alicia").await;
    let mut agent = Agent::new();
    let hop = agent
        .send(&authorize_url(&latch.base, &cid, app_cb, name), None)
        .await;
    let hop = agent.send(&hop.location.unwrap(), None).await;
    let (action, fields) = post_form(&hop.body);
    let hop = agent.send(&action, Some(&fields)).await;
    let back = agent.send(&hop.location.unwrap(), None).await;
    assert!(back.location.unwrap().starts_with(app_cb));
    let user: Value = http
        .get(format!("{}/api/v2/users/{user_id}", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["given_name"], "Alicia", "{user}");
}

async fn idp_set_user(idp: &SamlIdp, given: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/test/user", idp.base))
        .json(&json!({"name_id": "alice@example.com",
            "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "attributes": {"email": ["alice@example.com"], "givenName": [given], "sn": ["Liddell"],
                           "displayName": [format!("{given} Liddell")]}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

#[tokio::test]
async fn pysaml2_sign_in_on_the_embedded_default() {
    pysaml2_full_flow(
        Backends::Embedded,
        "pysaml2_sign_in_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn pysaml2_sign_in_on_postgres_and_redis() {
    pysaml2_full_flow(
        Backends::Production,
        "pysaml2_sign_in_on_postgres_and_redis",
    )
    .await;
}

/// Starts a SAML sign-in; returns the agent, the AuthnRequest ID and the RelayState.
async fn begin(latch: &str, cid: &str, app_cb: &str, name: &str) -> (Agent, String, String) {
    let mut agent = Agent::new();
    let hop = agent
        .send(&authorize_url(latch, cid, app_cb, name), None)
        .await;
    let to_idp = hop.location.expect("a redirect to the IdP");
    let relay = url::Url::parse(&to_idp)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .expect("RelayState");
    (agent, latch_testkit::saml::authn_request_id(&to_idp), relay)
}

async fn hostile_answers(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let port = free_port();
    let mut latch = Latch::start(&env, port);
    latch.wait_ready().await;
    let http = reqwest::Client::new();
    let app_cb = "http://127.0.0.1:9/cb";
    let (cid, _) = create_app(&http, &latch.base, app_cb).await;
    let idp = TestIdp::new("https://idp.example.com/hostile");
    let other = TestIdp::new("https://idp.example.com/hostile");
    let name = "hostile-saml";
    let r = http
        .post(format!("{}/api/v2/connections", latch.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": name, "strategy": "samlp", "enabled_clients": [cid],
            "options": {"signInEndpoint": "http://127.0.0.1:9/sso", "signingCert": idp.cert_pem(),
                        "entityId": "urn:latch:test:hostile"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let acs = format!("{}/login/callback?connection={name}", latch.base);
    // SP metadata: no connection named → 400; unknown, or not a SAML connection → 404.
    for (query, status) in [
        ("", 400),
        ("?connection=", 400),
        ("?connection=no-such", 404),
        ("?connection=database", 404),
        (&*format!("?connection={name}"), 200),
    ] {
        let r = http
            .get(format!("{}/samlp/metadata{query}", latch.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "metadata{query}");
    }
    // The ACS without a SAMLResponse: 400, nothing happens.
    let r = http
        .post(&acs)
        .form(&[("RelayState", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let spec = |request_id: &str| Spec {
        audience: "urn:latch:test:hostile".into(),
        acs_url: acs.clone(),
        in_response_to: request_id.to_owned(),
        ..Spec::default()
    };
    type Make<'a> = Box<dyn Fn(Spec) -> String + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "unsigned",
            Box::new(|s| {
                idp.response(&Spec {
                    sign: Sign::Nothing,
                    ..s
                })
            }),
        ),
        ("signed by another key", Box::new(|s| other.response(&s))),
        (
            "wrong audience",
            Box::new(|s| {
                idp.response(&Spec {
                    audience: "urn:other".into(),
                    ..s
                })
            }),
        ),
        (
            "expired",
            Box::new(|s| idp.response(&Spec { shift: -3600, ..s })),
        ),
        (
            "answer to another request",
            Box::new(|s| {
                idp.response(&Spec {
                    in_response_to: "_other".into(),
                    ..s
                })
            }),
        ),
        (
            "SHA-1",
            Box::new(|s| idp.response(&Spec { sha1: true, ..s })),
        ),
        (
            "signed assertion plus an injected unsigned one",
            Box::new(|s| {
                let signed = idp.response_xml(&s);
                let evil = idp.response_xml(&Spec {
                    name_id: "mallory@example.com".into(),
                    sign: Sign::Nothing,
                    ..s
                });
                let a = |x: &str| {
                    let i = x.find("<saml2:Assertion").unwrap();
                    let j = x.find("</saml2:Assertion>").unwrap() + "</saml2:Assertion>".len();
                    x[i..j].to_owned()
                };
                let genuine = a(&signed);
                latch_testkit::saml::encode(&signed.replacen(
                    &genuine,
                    &format!("{}{genuine}", a(&evil)),
                    1,
                ))
            }),
        ),
        (
            "a DTD with an external entity",
            Box::new(|s| {
                let signed = idp.response_xml(&s);
                let body = signed.split_once("?>").map_or(signed.as_str(), |(_, b)| b);
                latch_testkit::saml::encode(&format!(
                    "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{body}"
                ))
            }),
        ),
    ];
    for (why, make) in &cases {
        let (mut agent, request_id, relay) = begin(&latch.base, &cid, app_cb, name).await;
        let fields = vec![
            ("SAMLResponse".to_owned(), make(spec(&request_id))),
            ("RelayState".to_owned(), relay),
        ];
        let hop = agent.send(&acs, Some(&fields)).await;
        assert_eq!(hop.status, 400, "{why}: {}", hop.body);
        assert!(hop.body.contains("Sign-in failed"), "{why}: {}", hop.body);
        assert!(hop.location.is_none(), "{why}");
    }
    // No RelayState (IdP-initiated) and an unknown one are refused too.
    let (mut agent, request_id, _) = begin(&latch.base, &cid, app_cb, name).await;
    for relay in ["", "no-such-transaction"] {
        let hop = agent
            .send(
                &acs,
                Some(&[
                    ("SAMLResponse".to_owned(), idp.response(&spec(&request_id))),
                    ("RelayState".to_owned(), relay.to_owned()),
                ]),
            )
            .await;
        assert_eq!(hop.status, 400, "relay state {relay:?}");
    }
    // None of it made a user.
    let users: Value = http
        .get(format!("{}/api/v2/users", latch.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let through_saml: Vec<&Value> = users
        .as_array()
        .or_else(|| users["users"].as_array())
        .unwrap()
        .iter()
        .filter(|u| u["identities"][0]["connection"] == name)
        .collect();
    assert!(through_saml.is_empty(), "{through_saml:?}");
    let failed: Value = http
        .get(format!(
            "{}/api/v2/logs?type=f&connection={name}",
            latch.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed = failed
        .as_array()
        .or_else(|| failed["logs"].as_array())
        .unwrap()
        .clone();
    assert!(failed.len() >= cases.len(), "{failed:?}");

    // A good answer signs in; the same assertion (same ID) in answer to a new request does not.
    let (mut agent, request_id, relay) = begin(&latch.base, &cid, app_cb, name).await;
    let good = spec(&request_id);
    let assertion_id = good.assertion_id.clone();
    let hop = agent
        .send(
            &acs,
            Some(&[
                ("SAMLResponse".to_owned(), idp.response(&good)),
                ("RelayState".to_owned(), relay),
            ]),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let back = agent.send(&hop.location.unwrap(), None).await;
    assert!(back.location.unwrap().starts_with(app_cb));
    let (mut agent, request_id, relay) = begin(&latch.base, &cid, app_cb, name).await;
    let replayed = Spec {
        assertion_id,
        ..spec(&request_id)
    };
    let hop = agent
        .send(
            &acs,
            Some(&[
                ("SAMLResponse".to_owned(), idp.response(&replayed)),
                ("RelayState".to_owned(), relay),
            ]),
        )
        .await;
    assert_eq!(hop.status, 400, "a replayed assertion ID was accepted");
}

#[tokio::test]
async fn hostile_saml_answers_leave_no_session_on_the_embedded_default() {
    hostile_answers(
        Backends::Embedded,
        "hostile_saml_answers_leave_no_session_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn hostile_saml_answers_leave_no_session_on_postgres_and_redis() {
    hostile_answers(
        Backends::Production,
        "hostile_saml_answers_leave_no_session_on_postgres_and_redis",
    )
    .await;
}

/// Serves one JSON document at every path (an Okta org's JWKS, for Universal Logout).
async fn serve_json(doc: Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = doc.to_string();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    url
}

/// Okta Universal Logout for a SAML connection: the issuer and app instance id are the
/// connection's `global_token_revocation_jwt_iss` / `_sub`, the key comes from its `jwks_uri`,
/// and the `iss_sub` subject is the SAML IdP's entity id and the user's NameID.
async fn saml_universal_logout(backends: Backends, test: &str) {
    use latch_core::model::SigningAlg;
    use latch_jose::keys::{Signer, sign_jws};
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let rx = crate::backchannel::Receiver::start().await;
    let app_cb = "http://127.0.0.1:9/cb";
    let app = crate::support::api(&crate::support::Remote(&http, &base), "POST", "/api/v2/clients", Some(json!({"name": "SAML app",
        "callbacks": [app_cb], "oidc_logout": {"backchannel_logout_urls": [format!("{}/saml-app", rx.url)]}}))).await;
    let (cid, secret) = (
        app["client_id"].as_str().unwrap().to_owned(),
        app["client_secret"].as_str().unwrap().to_owned(),
    );
    let org_key = Signer::generate(SigningAlg::RS256).unwrap();
    let jwks = serve_json(json!({"keys": [org_key.public_jwk(SigningAlg::RS256)]})).await;
    let org = "https://acme.okta.example";
    let idp = TestIdp::new("http://www.okta.com/exkSAMLAPP");
    let name = "okta-saml";
    crate::support::api(&crate::support::Remote(&http, &base), "POST", "/api/v2/connections", Some(json!({"name": name, "strategy": "samlp",
        "enabled_clients": [cid], "options": {"signInEndpoint": "https://acme.okta.example/app/sso/saml",
        "signingCert": idp.cert_pem(), "entityId": "urn:latch:test:okta-saml",
        "global_token_revocation_enabled": true, "global_token_revocation_jwt_iss": org,
        "global_token_revocation_jwt_sub": "0oaSAMLAPP", "jwks_uri": format!("{jwks}/keys")}}))).await;

    // Sign in through SAML, and get an offline refresh token for the app.
    let mut agent = Agent::new();
    let back = sign_in_through(
        &mut agent,
        &base,
        &cid,
        app_cb,
        "openid%20offline_access",
        name,
        &idp,
        "urn:latch:test:okta-saml",
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
            ("redirect_uri", app_cb),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let users = crate::support::api(
        &crate::support::Remote(&http, &base),
        "GET",
        "/api/v2/users?q=alice",
        None,
    )
    .await;
    let user_id = users[0]["user_id"].as_str().unwrap().to_owned();

    // Okta calls the revocation endpoint.
    let endpoint = format!("{base}/oauth/global-token-revocation/connection/{name}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = sign_jws(&org_key, SigningAlg::RS256, &org_key.thumbprint(), "global-token-revocation+jwt",
        &json!({"iss": org, "sub": "0oaSAMLAPP", "aud": endpoint, "iat": now, "exp": now + 300, "jti": latch_testkit::env::unique()})).unwrap();
    let r = http
        .post(&endpoint)
        .bearer_auth(token)
        .json(&json!({"subject": {"format": "iss_sub", "iss": "http://www.okta.com/exkSAMLAPP", "sub": "alice@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let sessions = crate::support::api(
        &crate::support::Remote(&http, &base),
        "GET",
        &format!("/api/v2/users/{user_id}/sessions"),
        None,
    )
    .await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(0));
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
        "the offline refresh token died with the GTR"
    );
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the app got its logout token");
}

#[tokio::test]
async fn saml_universal_logout_on_the_embedded_default() {
    saml_universal_logout(
        Backends::Embedded,
        "saml_universal_logout_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn saml_universal_logout_on_postgres_and_redis() {
    saml_universal_logout(
        Backends::Production,
        "saml_universal_logout_on_postgres_and_redis",
    )
    .await;
}

/// Signs `agent` in to the app `cid` through the `samlp` connection `name`, whose IdP `idp`
/// answers for the audience `audience`: `/authorize` → the IdP → the ACS → the same-site GET →
/// the app. Returns where the browser was sent back to (the app's callback with its code).
#[allow(clippy::too_many_arguments)]
async fn sign_in_through(
    agent: &mut Agent,
    base: &str,
    cid: &str,
    app_cb: &str,
    scope: &str,
    name: &str,
    idp: &TestIdp,
    audience: &str,
) -> String {
    let cbq: String = url::form_urlencoded::byte_serialize(app_cb.as_bytes()).collect();
    let hop = agent
        .send(&format!("{base}/authorize?response_type=code&client_id={cid}&redirect_uri={cbq}&scope={scope}&state=s&connection={name}"), None)
        .await;
    let to_idp = hop.location.expect("to the IdP");
    let relay = url::Url::parse(&to_idp)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned();
    let acs = format!("{base}/login/callback?connection={name}");
    let response = idp.response(&Spec {
        audience: audience.into(),
        acs_url: acs.clone(),
        in_response_to: latch_testkit::saml::authn_request_id(&to_idp),
        ..Spec::default()
    });
    let hop = agent
        .send(
            &acs,
            Some(&[
                ("SAMLResponse".into(), response),
                ("RelayState".into(), relay),
            ]),
        )
        .await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    agent
        .send(&hop.location.unwrap(), None)
        .await
        .location
        .unwrap()
}

/// Deleting a connection ends the sessions that came through it: the app is told, the session
/// is gone, and an `slo` event counts it.
async fn deleting_a_connection_ends_its_sessions(backends: Backends, test: &str) {
    let Some((env, _dir, _schema)) = env_for(test, backends) else {
        return;
    };
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let base = latch.base.clone();
    let http = reqwest::Client::new();
    let remote = crate::support::Remote(&http, &base);
    let rx = crate::backchannel::Receiver::start().await;
    let app_cb = "http://127.0.0.1:9/cb";
    let app = crate::support::api(&remote, "POST", "/api/v2/clients", Some(json!({"name": "App",
        "callbacks": [app_cb], "oidc_logout": {"backchannel_logout_urls": [format!("{}/app", rx.url)]}}))).await;
    let cid = app["client_id"].as_str().unwrap().to_owned();
    let idp = TestIdp::new("http://www.okta.com/exkGOING");
    let name = "going-saml";
    let conn = crate::support::api(&remote, "POST", "/api/v2/connections", Some(json!({"name": name, "strategy": "samlp",
        "enabled_clients": [cid], "options": {"signInEndpoint": "https://acme.okta.example/app/sso/saml",
        "signingCert": idp.cert_pem(), "entityId": "urn:latch:test:going-saml"}}))).await;
    let conn_id = conn["id"].as_str().unwrap().to_owned();

    let mut agent = Agent::new();
    let back = sign_in_through(
        &mut agent,
        &base,
        &cid,
        app_cb,
        "openid",
        name,
        &idp,
        "urn:latch:test:going-saml",
    )
    .await;
    assert!(back.starts_with(app_cb), "{back}");
    let users = crate::support::api(&remote, "GET", "/api/v2/users?q=alice", None).await;
    let user_id = users[0]["user_id"].as_str().unwrap().to_owned();
    let sessions = format!("/api/v2/users/{user_id}/sessions");
    let live = crate::support::api(&remote, "GET", &sessions, None).await;
    assert_eq!(live["sessions"].as_array().map(Vec::len), Some(1));

    let (status, _) = crate::support::call(
        &remote,
        "DELETE",
        &format!("/api/v2/connections/{conn_id}"),
        None,
        Some(crate::support::TOKEN),
    )
    .await;
    assert_eq!(status, 204);
    let live = crate::support::api(&remote, "GET", &sessions, None).await;
    assert_eq!(live["sessions"].as_array().map(Vec::len), Some(0));
    let got = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the app got its logout token");
    let logs = crate::support::api(
        &remote,
        "GET",
        &format!("/api/v2/logs?type=slo&connection={name}"),
        None,
    )
    .await;
    let slo = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["connection"] == name)
        .unwrap_or_else(|| panic!("an slo event for the connection: {logs}"));
    assert_eq!(slo["details"]["sessions_ended"], 1, "{slo}");
    assert_eq!(slo["details"]["TotalOidcLogoutRequests"], 1, "{slo}");
}

#[tokio::test]
async fn deleting_a_connection_ends_its_sessions_on_the_embedded_default() {
    deleting_a_connection_ends_its_sessions(
        Backends::Embedded,
        "deleting_a_connection_ends_its_sessions_on_the_embedded_default",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_connection_ends_its_sessions_on_postgres_and_redis() {
    deleting_a_connection_ends_its_sessions(
        Backends::Production,
        "deleting_a_connection_ends_its_sessions_on_postgres_and_redis",
    )
    .await;
}
