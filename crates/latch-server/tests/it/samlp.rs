//! Latch as a SAML 2.0 IdP for apps (`addons.samlp`) in-process, on both backend pairs: the
//! metadata, SP-initiated sign-in over HTTP-Redirect and HTTP-POST (signatures checked by the
//! independent `xmlsec1` and `openssl` programs against the metadata's certificate), SSO with an
//! OIDC app, hostile AuthnRequests and LogoutRequests, and Single Logout started by the SAML app
//! or by an OIDC app. The test plays the SP with its own RSA key ([`sp`]).

pub(crate) mod sp;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_saml::idp::{HTTP_POST, HTTP_REDIRECT, Kind, Message, Outbound, RSA_SHA256};
use latch_saml::idp::{STATUS_SUCCESS, logout_request_xml, logout_response_xml, new_id};
use latch_testkit::saml::redirect_message;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::backchannel::Receiver;
use crate::browser::Browser;
use crate::oidc::{CB, PASSWORD, authorize_uri, exchange, sign_in};
use crate::support::{Harness, api};
use crate::{app, on_all_backends};
use sp::*;

const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";
const RESPONSE: &str = "urn:oasis:names:tc:SAML:2.0:protocol:Response";
const LOGOUT_RESPONSE: &str = "urn:oasis:names:tc:SAML:2.0:protocol:LogoutResponse";
const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
const PARTIAL: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const FC: &str = "http://127.0.0.1:3000/fc";

async fn metadata(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let signed = Sp::create(&app, &issuer, true, json!({})).await;
    let open = Sp::create(&app, &issuer, false, json!({})).await;
    let mut b = Browser::new();
    for (sp, want) in [(&signed, "true"), (&open, "false")] {
        let md = b.get(&app, &format!("/samlp/metadata/{}", sp.id)).await;
        assert_eq!(md.status, 200, "{}", md.body);
        let ctype = md.headers.get("content-type").unwrap();
        assert_eq!(ctype, "application/samlmetadata+xml");
        let xml = &md.body;
        assert_eq!(
            attr(xml, "md:EntityDescriptor", "entityID"),
            Some(issuer.clone())
        );
        let want_signed = attr(xml, "md:IDPSSODescriptor", "WantAuthnRequestsSigned");
        assert_eq!(want_signed.as_deref(), Some(want));
        for (service, url) in [
            ("SingleSignOnService", sp.sso()),
            ("SingleLogoutService", sp.slo()),
        ] {
            let pair = |t: &&str| {
                (
                    attr_in(t, "Binding").unwrap(),
                    attr_in(t, "Location").unwrap(),
                )
            };
            let found: Vec<_> = tags(xml, &format!("md:{service}"))
                .iter()
                .map(pair)
                .collect();
            assert_eq!(
                found,
                [(HTTP_REDIRECT.into(), url.clone()), (HTTP_POST.into(), url)]
            );
        }
        assert_eq!(
            attr(xml, "md:KeyDescriptor", "use").as_deref(),
            Some("signing")
        );
        let der = STANDARD
            .decode(text(xml, "ds:X509Certificate").unwrap())
            .unwrap();
        assert_eq!(der[0], 0x30, "a DER certificate");
    }
    // Not a SAML app, or no app: 404.
    let (oidc, _) = oidc_app(&app, json!({})).await;
    for id in [oidc.as_str(), "no-such-client"] {
        for path in [format!("/samlp/metadata/{id}"), format!("/samlp/{id}")] {
            assert_eq!(b.get(&app, &path).await.status, 404, "{path}");
        }
    }
}
on_all_backends!(samlp_metadata, metadata);

async fn sign_in_over_both_bindings(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let r = Sp::create(&app, &issuer, true, json!({"lifetimeInSeconds": 120})).await;
    let mappings = json!({"email": "urn:test:mail", "user_id": "urn:test:uid"});
    let addon = json!({"nameIdentifierFormat": EMAIL, "signResponse": true,
        "lifetimeInSeconds": 600, "mappings": mappings});
    let p = Sp::create(&app, &issuer, true, addon).await;
    let cert = idp_cert(&app, &r).await;
    // What every Response must say; the assertion lives `lifetime` seconds at most.
    let common = |a: &Answer, sp: &Sp, id: &str, acs: &str, lifetime: i64| {
        let x = &a.xml;
        assert_eq!(a.relay.as_deref(), Some(RELAY), "RelayState echoed");
        assert_eq!(
            attr(x, "samlp:Response", "InResponseTo").as_deref(),
            Some(id)
        );
        assert_eq!(
            attr(x, "samlp:Response", "Destination").as_deref(),
            Some(acs)
        );
        assert_eq!(
            attr(x, "samlp:StatusCode", "Value").as_deref(),
            Some(STATUS_SUCCESS)
        );
        assert_eq!(text(x, "saml:Issuer"), Some(issuer.clone()));
        assert_eq!(text(x, "saml:Audience"), Some(sp.audience.clone()));
        let scd = "saml:SubjectConfirmationData";
        assert_eq!(attr(x, scd, "Recipient").as_deref(), Some(acs));
        assert_eq!(attr(x, scd, "InResponseTo").as_deref(), Some(id));
        let issued = at(&attr(x, "saml:Assertion", "IssueInstant").unwrap());
        for el in ["saml:Conditions", scd] {
            let until = at(&attr(x, el, "NotOnOrAfter").unwrap());
            let ok = until > issued && until <= issued + Duration::seconds(lifetime);
            assert!(ok, "{el} NotOnOrAfter within {lifetime} s: {x}");
        }
        assert!(a.session_index.len() >= 16, "a SessionIndex: {x}");
        assert_eq!(tags(x, "ds:Signature").len(), 1, "one signature: {x}");
    };

    // HTTP-Redirect to the second callback; NameID unspecified: the user_id; default mappings.
    let mut b = Browser::new();
    let id = new_id();
    let out = r.signed(
        HTTP_REDIRECT,
        &r.sso(),
        true,
        &id,
        &r.authn_request(&id, ACS2),
    );
    let form = deliver(&app, &mut b, &out).await;
    let a = answer(&password(&app, &mut b, form, &email).await, ACS2);
    common(&a, &r, &id, ACS2, 120);
    assert_eq!(
        (a.name_id.as_str(), a.name_id_format.as_str()),
        (user_id.as_str(), UNSPECIFIED)
    );
    let attrs = attributes(&a.xml);
    let claims = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
    for (name, value) in [
        ("nameidentifier", &*user_id),
        ("emailaddress", &*email),
        ("name", "Ada"),
    ] {
        let want = (format!("{claims}/{name}"), value.to_owned());
        assert!(attrs.contains(&want), "{name}: {attrs:?}");
    }
    let signed_first = a.xml.find("<ds:Signature") < a.xml.find("<saml:Assertion ");
    assert!(!signed_first, "the assertion is signed, not the Response");
    assert_xmlsec1(&a.xml, &cert, ASSERTION);
    assert_eq!(sessions(&app, &user_id).await, [[&*r.id]]);

    // HTTP-POST; NameID emailAddress; the whole Response signed; the app's own mappings.
    let mut b = Browser::new();
    let id = new_id();
    let out = p.signed(HTTP_POST, &p.sso(), true, &id, &p.authn_request(&id, ACS));
    let form = deliver(&app, &mut b, &out).await;
    let a = answer(&password(&app, &mut b, form, &email).await, ACS);
    common(&a, &p, &id, ACS, 600);
    assert_eq!(
        (a.name_id.as_str(), a.name_id_format.as_str()),
        (email.as_str(), EMAIL)
    );
    let want = [("urn:test:mail", &email), ("urn:test:uid", &user_id)];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(attributes(&a.xml), want);
    let signed_first = a.xml.find("<ds:Signature") < a.xml.find("<saml:Assertion ");
    assert!(signed_first, "the Response is signed");
    assert_xmlsec1(&a.xml, &cert, RESPONSE);
}
on_all_backends!(samlp_sign_in_over_both_bindings, sign_in_over_both_bindings);

async fn single_sign_on_after_an_oidc_app(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let (oidc, _) = oidc_app(&app, json!({})).await;
    // No signingCert: an unsigned AuthnRequest is taken.
    let s = Sp::create(&app, &issuer, false, json!({})).await;
    let mut b = Browser::new();
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&oidc, CB, ""),
        &email,
        PASSWORD,
    )
    .await;
    assert!(done.param("code").is_some(), "{:?}", done.location);
    let id = new_id();
    let xml = s.authn_request(&id, ACS);
    let out = unsigned(&s.signed(HTTP_REDIRECT, &s.sso(), true, &id, &xml), &xml);
    let page = deliver(&app, &mut b, &out).await;
    assert!(
        !page.body.contains("name=\"password\""),
        "no password form: {}",
        page.body
    );
    let a = answer(&page, ACS);
    assert_eq!(attr(&a.xml, "samlp:Response", "InResponseTo"), Some(id));
    assert_eq!(a.name_id, user_id);
    assert_eq!(sessions(&app, &user_id).await, [[&*oidc, &*s.id]]);
}
on_all_backends!(
    samlp_single_sign_on_after_an_oidc_app,
    single_sign_on_after_an_oidc_app
);

async fn hostile_authn_requests(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let (oidc, _) = oidc_app(&app, json!({})).await;
    let s = Sp::create(&app, &issuer, true, json!({})).await;
    let (other_key, _) = rsa_key();
    // A live session: a lax check would answer with an assertion at once.
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&oidc, CB, ""),
        &email,
        PASSWORD,
    )
    .await;
    let refused = async |b: &mut Browser, out: &Outbound, what: &str| {
        let page = deliver(&app, b, out).await;
        assert_eq!(page.status, 400, "{what}: {}", page.body);
        assert!(!page.body.contains("SAMLResponse"), "{what}");
        assert_eq!(
            sessions(&app, &user_id).await,
            [[&*oidc]],
            "{what}: no SAML app joined"
        );
    };
    let sso = s.sso();
    let good = |id: &str| s.authn_request(id, ACS);
    let signed = |id: &str, xml: &str| s.signed(HTTP_REDIRECT, &sso, true, id, xml);

    let id = new_id();
    let evil = s.authn_request(&id, "http://127.0.0.1:5000/evil");
    refused(&mut b, &signed(&id, &evil), "ACS not registered").await;
    for binding in [HTTP_REDIRECT, HTTP_POST] {
        let id = new_id();
        let out = s.signed(binding, &sso, true, &id, &good(&id));
        refused(
            &mut b,
            &unsigned(&out, &good(&id)),
            &format!("unsigned, {binding}"),
        )
        .await;
        let out = carry(&other_key, binding, &sso, (true, &id, &good(&id)), None);
        refused(&mut b, &out, &format!("another key, {binding}")).await;
    }
    let id = new_id();
    let xml = authn_request(&id, "urn:test:other", &sso, ACS);
    refused(&mut b, &signed(&id, &xml), "another Issuer").await;
    let id = new_id();
    let xml = authn_request(&id, &s.audience, &format!("{issuer}/samlp/{oidc}"), ACS);
    refused(&mut b, &signed(&id, &xml), "Destination elsewhere").await;
    let id = new_id();
    let xml = good(&id).replace(&format!(" Destination=\"{sso}\""), "");
    refused(&mut b, &signed(&id, &xml), "signed without a Destination").await;

    // Signature wrapping (HTTP-POST): a validly signed request (to ACS) inside an unsigned outer
    // one with another ID and ACS2, which is registered too; or its signature moved outside.
    let inner_id = new_id();
    let Outbound::Post { value, .. } = s.signed(HTTP_POST, &sso, true, &inner_id, &good(&inner_id))
    else {
        panic!("a form")
    };
    let inner = String::from_utf8(STANDARD.decode(value).unwrap()).unwrap();
    let inner = inner[inner.find("<samlp:AuthnRequest").unwrap()..]
        .trim_end()
        .to_owned();
    let (from, to) = (
        inner.find("<ds:Signature").unwrap(),
        inner.find("</ds:Signature>").unwrap(),
    );
    let signature = &inner[from..to + "</ds:Signature>".len()];
    let bare = inner.replace(signature, "");
    let outer = |signature: &str, ext: &str| {
        let head = authn_request(&new_id(), &s.audience, &sso, ACS2);
        let at = head.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        let (head, tail) = head.split_at(at);
        format!("{head}{signature}<samlp:Extensions>{ext}</samlp:Extensions>{tail}")
    };
    let inside = posted_as_is(&sso, &outer("", &inner));
    refused(&mut b, &inside, "a signed request inside an unsigned one").await;
    let moved = posted_as_is(&sso, &outer(signature, &bare));
    refused(&mut b, &moved, "the signature moved to the outer request").await;

    // IdP-initiated sign-in: refused while `allowIdpInitiated` is off.
    let idp_initiated = format!("/samlp/{}?RelayState=idp", s.id);
    assert_eq!(b.get(&app, &idp_initiated).await.status, 400);
    let form = [("RelayState", "idp")];
    assert_eq!(
        b.post_form(&app, &format!("/samlp/{}", s.id), &form)
            .await
            .status,
        400
    );
    assert_eq!(sessions(&app, &user_id).await, [[&*oidc]]);

    // The control: the same key, ACS and session with a good request: answered at once.
    let id = new_id();
    answer(&deliver(&app, &mut b, &signed(&id, &good(&id))).await, ACS);
    // IdP-initiated once allowed: a Response to the default ACS, answering no request.
    let cert = s.key.cert_pem();
    let addon = json!({"audience": s.audience, "signingCert": cert, "allowIdpInitiated": true});
    let patch = Some(json!({"addons": {"samlp": addon}}));
    api(&app, "PATCH", &format!("/api/v2/clients/{}", s.id), patch).await;
    let a = answer(&b.get(&app, &idp_initiated).await, ACS);
    assert_eq!(a.relay.as_deref(), Some("idp"));
    assert_eq!(attr(&a.xml, "samlp:Response", "InResponseTo"), None);
    assert_eq!(sessions(&app, &user_id).await, [[&*oidc, &*s.id]]);
}
on_all_backends!(samlp_hostile_authn_requests, hostile_authn_requests);

/// A LogoutResponse from Latch to the SP's SLO, answering `request_id` with `status`, and the
/// RelayState echoed.
fn check_logout_response(xml: &str, relay: Option<&str>, issuer: &str, id: &str, status: &[&str]) {
    let m = Message::parse(xml).unwrap();
    assert_eq!(m.kind, Kind::LogoutResponse);
    assert_eq!(m.attr("InResponseTo"), Some(id));
    assert_eq!(m.attr("Destination"), Some(SP_SLO));
    assert_eq!(m.issuer.as_deref(), Some(issuer));
    assert_eq!(m.status, status);
    assert_eq!(relay, Some(RELAY), "RelayState echoed");
}

async fn sp_initiated_logout(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let s = Sp::create(&app, &issuer, true, json!({"logout": {"callback": SP_SLO}})).await;
    let cert = idp_cert(&app, &s).await;
    let gone = async |b: &mut Browser| {
        assert!(sessions(&app, &user_id).await.is_empty());
        assert!(
            !b.cookies.contains_key("latch_session"),
            "the cookie is cleared"
        );
        let again = deliver(&app, b, &s.sign_in_request(HTTP_REDIRECT).1).await;
        assert!(
            again.field("tx").is_some(),
            "the SAML app is asked to sign in again"
        );
    };
    let logout = |a: &Answer, binding: &str| {
        let id = new_id();
        let xml = s.logout_request(&id, a, Some(&a.session_index));
        (id.clone(), s.signed(binding, &s.slo(), true, &id, &xml))
    };

    // (a) HTTP-Redirect both ways, the SAML app alone: a redirect with a signed LogoutResponse.
    let mut b = Browser::new();
    let a = saml_sign_in(&app, &mut b, &s, &email).await;
    let (id, out) = logout(&a, HTTP_REDIRECT);
    let page = deliver(&app, &mut b, &out).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let to = page.location.unwrap();
    assert!(to.starts_with(&format!("{SP_SLO}?SAMLResponse=")), "{to}");
    let relay = raw_query(&to).get("RelayState").map(|v| form_decode(v));
    let xml = redirect_message(&to, "SAMLResponse");
    check_logout_response(&xml, relay.as_deref(), &issuer, &id, &[STATUS_SUCCESS]);
    assert_query_signature(&to, "SAMLResponse", &cert);
    gone(&mut b).await;

    // (b) HTTP-POST both ways: an auto-posted LogoutResponse with an enveloped signature.
    let addon = json!({"audience": s.audience, "signingCert": s.key.cert_pem(),
        "logout": {"callback": SP_SLO}, "binding": HTTP_POST});
    let patch = Some(json!({"addons": {"samlp": addon}}));
    api(&app, "PATCH", &format!("/api/v2/clients/{}", s.id), patch).await;
    let mut b = Browser::new();
    let a = saml_sign_in(&app, &mut b, &s, &email).await;
    let (id, out) = logout(&a, HTTP_POST);
    let page = deliver(&app, &mut b, &out).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (action, fields) = posted(&page);
    assert_eq!(action, SP_SLO);
    let xml = decoded(&fields, "SAMLResponse");
    let relay = field(&fields, "RelayState");
    check_logout_response(&xml, relay, &issuer, &id, &[STATUS_SUCCESS]);
    assert_xmlsec1(&xml, &cert, LOGOUT_RESPONSE);
    gone(&mut b).await;

    // (c) In the session too: an OIDC app with front- and back-channel logout, and a SAML app
    // without an SLO URL. The logout page frames the OIDC app's front-channel URL, its logout
    // token goes out, then the page posts the LogoutResponse: PartialLogout, for the mute app.
    let rx = Receiver::start().await;
    let logout_urls = json!({"frontchannel_logout_url": FC,
        "backchannel_logout_urls": [format!("{}/bc", rx.url)]});
    let oidc = oidc_app(&app, json!({"oidc_logout": logout_urls})).await;
    let mute = Sp::create(&app, &issuer, false, json!({})).await;
    let mut b = Browser::new();
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&oidc.0, CB, ""),
        &email,
        PASSWORD,
    )
    .await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &oidc)
        .await
        .json();
    let sid = claims(t["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = answer(
        &deliver(&app, &mut b, &s.sign_in_request(HTTP_REDIRECT).1).await,
        ACS,
    );
    answer(
        &deliver(&app, &mut b, &mute.sign_in_request(HTTP_REDIRECT).1).await,
        ACS,
    );
    assert_eq!(
        sessions(&app, &user_id).await,
        [[&*oidc.0, &*s.id, &*mute.id]]
    );
    let (id, out) = logout(&a, HTTP_REDIRECT);
    let page = deliver(&app, &mut b, &out).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let f = frames(&page);
    assert_eq!(f.len(), 1, "{}", page.body);
    let fc = url::Url::parse(&f[0]).unwrap();
    assert_eq!(fc.as_str().split('?').next(), Some(FC));
    let q: Vec<(String, String)> = fc
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    assert_eq!(
        q,
        [("iss".to_owned(), issuer.clone()), ("sid".to_owned(), sid)]
    );
    let (action, fields) = posted(&page);
    assert_eq!(action, SP_SLO);
    let xml = decoded(&fields, "SAMLResponse");
    check_logout_response(
        &xml,
        field(&fields, "RelayState"),
        &issuer,
        &id,
        &[RESPONDER, PARTIAL],
    );
    let delivered = rx.wait_for(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 1, "the logout token");
    let slo = events(&app, "slo", &format!("user_id={user_id}")).await;
    let d = &slo[0]["details"];
    assert_eq!(slo[0]["client_id"], s.id.as_str());
    assert_eq!(d["initiator"], "rp-logout", "{d}");
    assert_eq!(d["TotalOidcLogoutRequests"], 2, "1 front + 1 back: {d}");
    assert_eq!(d["TotalSamlLogoutRequests"], 0, "{d}");
    assert_eq!(d["logout_request_id"], id.as_str(), "{d}");
    assert_eq!(d["saml_unreachable"], json!([mute.id]), "{d}");
    let p = b
        .get(&app, &authorize_uri(&oidc.0, CB, "&prompt=none"))
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
    gone(&mut b).await;
}
on_all_backends!(samlp_sp_initiated_logout, sp_initiated_logout);

async fn rp_initiated_logout_tells_saml_apps(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let oidc = oidc_app(&app, json!({})).await;
    let s = Sp::create(&app, &issuer, true, json!({"logout": {"callback": SP_SLO}})).await;
    let mute = Sp::create(&app, &issuer, false, json!({})).await;
    let cert = idp_cert(&app, &s).await;
    let mut b = Browser::new();
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&oidc.0, CB, ""),
        &email,
        PASSWORD,
    )
    .await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &oidc)
        .await
        .json();
    let a = answer(
        &deliver(&app, &mut b, &s.sign_in_request(HTTP_REDIRECT).1).await,
        ACS,
    );
    answer(
        &deliver(&app, &mut b, &mute.sign_in_request(HTTP_REDIRECT).1).await,
        ACS,
    );

    let hint = t["id_token"].as_str().unwrap();
    let page = b
        .get(&app, &format!("/oidc/logout?id_token_hint={hint}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains("<script"),
        "no JavaScript needed: {}",
        page.body
    );
    let csp = page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-src http://127.0.0.1:5000"), "{csp}");
    let f = frames(&page);
    assert_eq!(
        f.len(),
        1,
        "one frame, for the app with an SLO URL: {}",
        page.body
    );
    assert!(
        f[0].starts_with(&format!("{SP_SLO}?SAMLRequest=")),
        "{}",
        f[0]
    );
    assert_query_signature(&f[0], "SAMLRequest", &cert);
    let m = Message::parse(&redirect_message(&f[0], "SAMLRequest")).unwrap();
    assert_eq!(m.kind, Kind::LogoutRequest);
    assert_eq!(m.issuer.as_deref(), Some(issuer.as_str()));
    assert_eq!(m.attr("Destination"), Some(SP_SLO));
    assert_eq!(m.name_id, Some(a.name()));
    assert_eq!(m.session_indexes, [a.session_index.as_str()]);
    let until = at(m.attr("NotOnOrAfter").expect("NotOnOrAfter"));
    let issued = at(m.attr("IssueInstant").unwrap());
    assert!(until > OffsetDateTime::now_utc() && until <= issued + Duration::minutes(5));
    let request_id = m.id().unwrap().to_owned();
    assert!(sessions(&app, &user_id).await.is_empty());
    let slo = events(&app, "slo", &format!("user_id={user_id}")).await;
    let d = &slo[0]["details"];
    assert_eq!(d["initiator"], "rp-logout", "{d}");
    assert_eq!(d["TotalSamlLogoutRequests"], 1, "{d}");
    assert_eq!(
        d["saml"],
        json!([{"client_id": s.id, "request_id": request_id}]),
        "{d}"
    );
    assert_eq!(d["saml_unreachable"], json!([mute.id]), "{d}");

    // The app's LogoutResponse: refused unsigned, then taken and logged.
    let rid = new_id();
    let now = OffsetDateTime::now_utc();
    let irt = Some(request_id.as_str());
    let xml = logout_response_xml(&rid, &s.audience, &s.slo(), irt, STATUS_SUCCESS, None, now);
    let out = s.signed(HTTP_REDIRECT, &s.slo(), false, &rid, &xml);
    assert_eq!(
        deliver(&app, &mut b, &unsigned(&out, &xml)).await.status,
        400
    );
    let filter = format!("client_id={}", s.id);
    assert!(
        events(&app, "saml_logout_response", &filter)
            .await
            .is_empty()
    );
    assert_eq!(deliver(&app, &mut b, &out).await.status, 200);
    let e = events(&app, "saml_logout_response", &filter).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["details"]["in_response_to"], request_id.as_str());
    assert_eq!(e[0]["details"]["acknowledged"], true);
}
on_all_backends!(
    samlp_rp_initiated_logout_tells_saml_apps,
    rp_initiated_logout_tells_saml_apps
);

async fn hostile_logout_requests(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let callback = json!({"logout": {"callback": SP_SLO}});
    let s = Sp::create(&app, &issuer, true, callback.clone()).await;
    let stranger = Sp::create(&app, &issuer, true, callback).await;
    let (other_key, _) = rsa_key();
    let mut b = Browser::new();
    let a = saml_sign_in(&app, &mut b, &s, &email).await;
    let (slo, si) = (s.slo(), Some(a.session_index.as_str()));
    let live = async |what: &str| {
        let now = sessions(&app, &user_id).await;
        assert_eq!(now, [[&*s.id]], "{what} ended nothing");
    };
    let refused = async |b: &mut Browser, out: &Outbound, what: &str| {
        let page = deliver(&app, b, out).await;
        assert_eq!(
            page.status, 400,
            "{what}: {:?} {}",
            page.location, page.body
        );
        live(what).await;
    };
    let answered = async |b: &mut Browser, out: &Outbound, what: &str| {
        let page = deliver(&app, b, out).await;
        assert_eq!(page.status, 302, "{what}: {}", page.body);
        let xml = redirect_message(&page.location.unwrap(), "SAMLResponse");
        assert_eq!(
            Message::parse(&xml).unwrap().status,
            [STATUS_SUCCESS],
            "{what}"
        );
    };
    let sign = |id: &str, xml: &str| s.signed(HTTP_REDIRECT, &slo, true, id, xml);
    let now = OffsetDateTime::now_utc();

    let id = new_id();
    let xml = s.logout_request(&id, &a, si);
    refused(&mut b, &unsigned(&sign(&id, &xml), &xml), "unsigned").await;
    let out = carry(&other_key, HTTP_POST, &slo, (true, &id, &xml), None);
    refused(&mut b, &out, "signed by another key").await;
    let name = a.name();
    let stale = |issued: OffsetDateTime, until: OffsetDateTime| {
        let id = new_id();
        let xml = logout_request_xml(&id, &s.audience, &slo, &name, si, issued, Some(until));
        sign(&id, &xml)
    };
    let expired = stale(now - Duration::minutes(6), now - Duration::minutes(3));
    refused(&mut b, &expired, "expired (NotOnOrAfter)").await;
    let old = stale(now - Duration::minutes(10), now + Duration::minutes(5));
    refused(&mut b, &old, "issued too long ago").await;
    let id = new_id();
    let xml = logout_request_xml(&id, "urn:test:other", &slo, &name, si, now, None);
    refused(&mut b, &sign(&id, &xml), "another Issuer").await;
    let id = new_id();
    let xml = s
        .logout_request(&id, &a, si)
        .replace(&format!(" Destination=\"{slo}\""), "");
    refused(&mut b, &sign(&id, &xml), "signed without a Destination").await;
    let id = new_id();
    let body = s.logout_request(&id, &a, si).replace(&a.name_id, "&x;");
    let dtd = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>"#;
    refused(
        &mut b,
        &sign(&id, &format!("<?xml version=\"1.0\"?>{dtd}{body}")),
        "a DTD",
    )
    .await;

    // Another app's signed LogoutRequest for the same NameID: it has no part in the session.
    let id = new_id();
    let xml = stranger.logout_request(&id, &a, None);
    let out = stranger.signed(HTTP_REDIRECT, &stranger.slo(), true, &id, &xml);
    answered(&mut b, &out, "another app").await;
    live("another app").await;

    // Another SessionIndex: answered, ends nothing; the same request again is a replay.
    let id = new_id();
    let other = sign(
        &id,
        &s.logout_request(&id, &a, Some("_not-a-session-index")),
    );
    answered(&mut b, &other, "another SessionIndex").await;
    live("another SessionIndex").await;
    refused(&mut b, &other, "a replay").await;

    // SHA-1: refused. The same request signed by openssl with SHA-256 (another SessionIndex, so
    // it ends nothing) is taken: the refusal is the algorithm's.
    let id = new_id();
    let out = sign(&id, &s.logout_request(&id, &a, si));
    if let Some(sha1) = resigned(&s.pem, &out, "-sha1", RSA_SHA1) {
        refused(&mut b, &sha1, "SHA-1").await;
        let id = new_id();
        let out = sign(&id, &s.logout_request(&id, &a, Some("_other")));
        let sha256 = resigned(&s.pem, &out, "-sha256", RSA_SHA256).unwrap();
        answered(&mut b, &sha256, "SHA-256 signed by openssl").await;
    }

    // NameID alone ends the session; replayed, it ends nothing, even in a new session.
    let id = new_id();
    let by_name = sign(&id, &s.logout_request(&id, &a, None));
    answered(&mut b, &by_name, "NameID alone").await;
    assert!(
        sessions(&app, &user_id).await.is_empty(),
        "NameID alone ends the session"
    );
    saml_sign_in(&app, &mut b, &s, &email).await;
    refused(&mut b, &by_name, "a replayed logout").await;

    // An app without a certificate: its unsigned LogoutRequest must name the SessionIndex it
    // was issued (the NameID is no secret); the logout URL of a client that is no SAML app is
    // not found, whatever it carries.
    let open = Sp::create(
        &app,
        &issuer,
        false,
        json!({"logout": {"callback": SP_SLO}}),
    )
    .await;
    let mut ob = Browser::new();
    let oa = saml_sign_in(&app, &mut ob, &open, &email).await;
    let before = sessions(&app, &user_id).await.len();
    let id = new_id();
    let xml = open.logout_request(&id, &oa, None);
    let page = deliver(&app, &mut ob, &posted_as_is(&open.slo(), &xml)).await;
    assert_eq!(page.status, 400, "unsigned NameID alone: {}", page.body);
    assert_eq!(sessions(&app, &user_id).await.len(), before);
    let (plain, _) = oidc_app(&app, json!({})).await;
    let page = deliver(
        &app,
        &mut ob,
        &posted_as_is(&format!("{issuer}/samlp/{plain}/logout"), &xml),
    )
    .await;
    assert_eq!(page.status, 404, "{}", page.body);
    let id = new_id();
    let xml = open.logout_request(&id, &oa, Some(oa.session_index.as_str()));
    let page = deliver(&app, &mut ob, &posted_as_is(&open.slo(), &xml)).await;
    assert_eq!(
        page.status, 302,
        "unsigned with its SessionIndex: {}",
        page.body
    );
    assert_eq!(sessions(&app, &user_id).await.len(), before - 1);
}
on_all_backends!(samlp_hostile_logout_requests, hostile_logout_requests);

/// What the security review found, each now refused or handled: a signature whose Reference
/// points outside the message (xmlsec would fetch it before checking anything), a far-future
/// `NotOnOrAfter` (an overflow, not a panic), a NameID sent back without its Format, and a POSTed
/// request, which goes on as a GET so the session cookie comes with it.
async fn review_cases(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let (email, user_id) = user(&app).await;
    let signed = Sp::create(&app, &issuer, true, json!({})).await;

    // 1. An AuthnRequest whose enveloped signature references `file:///dev/zero`, as a GET:
    //    refused before xmlsec runs (the test would hang or run out of memory otherwise).
    let id = new_id();
    let xml = signed.authn_request(&id, ACS);
    let Outbound::Post { value, .. } = signed.signed(HTTP_POST, &signed.sso(), true, &id, &xml)
    else {
        panic!("POST")
    };
    let body = String::from_utf8(STANDARD.decode(&value).unwrap()).unwrap();
    let evil = body.replace(&format!("URI=\"#{id}\""), "URI=\"file:///dev/zero\"");
    assert_ne!(evil, body);
    let mut b = Browser::new();
    let page = deliver(&app, &mut b, &posted_as_is(&signed.sso(), &evil)).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("signature refused"), "{}", page.body);

    // 2. A POSTed AuthnRequest is answered with a 303 to the same message as a GET.
    let (_, out) = signed.sign_in_request(HTTP_POST);
    let Outbound::Post { value, .. } = &out else {
        panic!("POST")
    };
    let page = Browser::new()
        .post_form(
            &app,
            &format!("/samlp/{}", signed.id),
            &[("SAMLRequest", value)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let to = page.location.clone().unwrap();
    assert!(
        to.starts_with(&format!("/samlp/{}?SAMLRequest=", signed.id)),
        "{to}"
    );
    assert!(
        !to.contains("Signature="),
        "the enveloped signature travels inside: {to}"
    );

    // 3. An app without a certificate: a year-9999 NotOnOrAfter is refused, not a panic.
    let open = Sp::create(
        &app,
        &issuer,
        false,
        json!({"logout": {"callback": SP_SLO}}),
    )
    .await;
    let mut ob = Browser::new();
    let first = saml_sign_in(&app, &mut ob, &open, &email).await;
    let far = OffsetDateTime::parse(
        "9999-12-31T23:59:59Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let id = new_id();
    let xml = logout_request_xml(
        &id,
        &open.audience,
        &open.slo(),
        &first.name(),
        Some(&first.session_index),
        OffsetDateTime::now_utc(),
        Some(far),
    );
    let page = deliver(&app, &mut ob, &posted_as_is(&open.slo(), &xml)).await;
    assert_eq!(page.status, 400, "{}", page.body);

    // 4. The NameID sent back without its Format still names the session.
    let mut name = first.name();
    name.format = None;
    let id = new_id();
    let now = OffsetDateTime::now_utc();
    let xml = logout_request_xml(
        &id,
        &open.audience,
        &open.slo(),
        &name,
        Some(&first.session_index),
        now,
        Some(now + Duration::minutes(5)),
    );
    let before = sessions(&app, &user_id).await.len();
    let page = deliver(&app, &mut ob, &posted_as_is(&open.slo(), &xml)).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(sessions(&app, &user_id).await.len(), before - 1);
}
on_all_backends!(samlp_review_cases, review_cases);
