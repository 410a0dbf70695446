//! The SP's side of the SAML tests: its key and app, the messages it sends, what it reads of
//! Latch's answers, and signature checks by the independent `xmlsec1` and `openssl` programs.

use std::collections::HashMap;
use std::process::{Command, Output};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_saml::idp::{HTTP_POST, IdpKey, NameId, Outbound, RSA_SHA256, instant};
use latch_saml::idp::{logout_request_xml, new_id};
use latch_testkit::env::{TempDir, unique};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::browser::{Browser, Page};
use crate::oidc::{CB, PASSWORD};
use crate::support::{Target, api};

pub const ACS: &str = "http://127.0.0.1:5000/acs";
pub const ACS2: &str = "http://127.0.0.1:5000/acs2";
pub const SP_SLO: &str = "http://127.0.0.1:5000/slo";
/// Every message the SP sends carries it; every answer must echo it.
pub const RELAY: &str = "back to <\"/deep?a=1&b=2\">";

/// The in-process app, as the helpers take it.
pub trait App<B>:
    Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>
{
}
impl<S, B> App<B> for S where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>
{
}

/// An RSA key for an SP (or an attacker), and its PKCS#8 PEM.
pub fn rsa_key() -> (IdpKey, String) {
    let alg = latch_core::model::SigningAlg::RS256;
    let signer = latch_jose::keys::Signer::generate(alg).unwrap();
    let pem = signer.to_pem().unwrap().expose().to_owned();
    let key = IdpKey::from_pem(&pem, &unique(), OffsetDateTime::now_utc(), "sp").unwrap();
    (key, pem)
}

/// A SAML app as its SP sees it.
pub struct Sp {
    pub key: IdpKey,
    pub pem: String,
    pub id: String,
    pub audience: String,
    issuer: String,
}

impl Sp {
    /// A SAML app with `addon` (`audience` added; `signingCert` too when `signed`), ACS and
    /// ACS2 as callbacks.
    pub async fn create(app: &impl Target, issuer: &str, signed: bool, mut addon: Value) -> Self {
        let (key, pem) = rsa_key();
        let audience = format!("urn:test:sp:{}", unique());
        addon["audience"] = json!(audience);
        if signed {
            addon["signingCert"] = json!(key.cert_pem());
        }
        let body =
            json!({"name": "SAML app", "callbacks": [ACS, ACS2], "addons": {"samlp": addon}});
        let c = api(app, "POST", "/api/v2/clients", Some(body)).await;
        assert_eq!(c["addons"]["samlp"]["audience"], audience.as_str(), "{c}");
        let id = c["client_id"].as_str().unwrap().to_owned();
        let issuer = issuer.to_owned();
        Self {
            key,
            pem,
            id,
            audience,
            issuer,
        }
    }

    pub fn sso(&self) -> String {
        format!("{}/samlp/{}", self.issuer, self.id)
    }

    pub fn slo(&self) -> String {
        format!("{}/samlp/{}/logout", self.issuer, self.id)
    }

    pub fn authn_request(&self, id: &str, acs: &str) -> String {
        authn_request(id, &self.audience, &self.sso(), acs)
    }

    /// A LogoutRequest for `a`'s NameID (and `session_index`), issued now, valid 5 minutes.
    pub fn logout_request(&self, id: &str, a: &Answer, session_index: Option<&str>) -> String {
        let now = OffsetDateTime::now_utc();
        let until = Some(now + Duration::minutes(5));
        logout_request_xml(
            id,
            &self.audience,
            &self.slo(),
            &a.name(),
            session_index,
            now,
            until,
        )
    }

    /// `xml` (root ID `id`) carried to `to` in `binding` with [`RELAY`], signed with the SP's key.
    pub fn signed(&self, binding: &str, to: &str, request: bool, id: &str, xml: &str) -> Outbound {
        carry(&self.key, binding, to, (request, id, xml), Some(RELAY))
    }

    /// A new AuthnRequest to ACS in `binding`, signed.
    pub fn sign_in_request(&self, binding: &str) -> (String, Outbound) {
        let id = new_id();
        let out = self.signed(
            binding,
            &self.sso(),
            true,
            &id,
            &self.authn_request(&id, ACS),
        );
        (id, out)
    }
}

/// `Outbound::carry` of `(request, id, xml)`.
pub fn carry(
    key: &IdpKey,
    binding: &str,
    to: &str,
    (request, id, xml): (bool, &str, &str),
    relay: Option<&str>,
) -> Outbound {
    let to = url::Url::parse(to).unwrap();
    Outbound::carry(key, binding, &to, request, xml, id, relay).unwrap()
}

pub fn authn_request(id: &str, issuer: &str, destination: &str, acs: &str) -> String {
    let now = instant(OffsetDateTime::now_utc());
    let ns = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;
    format!(
        r#"<samlp:AuthnRequest {ns} ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{destination}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="{HTTP_POST}"><saml:Issuer>{issuer}</saml:Issuer><samlp:NameIDPolicy AllowCreate="true"/></samlp:AuthnRequest>"#
    )
}

/// The same message unsigned (HTTP-Redirect: without `SigAlg` and `Signature`; HTTP-POST:
/// `xml` as it is).
pub fn unsigned(out: &Outbound, xml: &str) -> Outbound {
    match out {
        Outbound::Redirect(u) => {
            let q = u.query().unwrap().split('&');
            let q: Vec<&str> = q.filter(|p| !p.starts_with("Sig")).collect();
            let mut u = u.clone();
            u.set_query(Some(&q.join("&")));
            Outbound::Redirect(u)
        }
        Outbound::Post {
            action,
            field,
            relay_state,
            ..
        } => Outbound::Post {
            action: action.clone(),
            field,
            value: STANDARD.encode(xml),
            relay_state: relay_state.clone(),
        },
    }
}

/// An HTTP-POST `SAMLRequest` of `xml` as it is to `to`.
pub fn posted_as_is(to: &str, xml: &str) -> Outbound {
    let action = url::Url::parse(to).unwrap();
    let value = STANDARD.encode(xml);
    Outbound::Post {
        action,
        field: "SAMLRequest",
        value,
        relay_state: None,
    }
}

/// The browser carries `out` to Latch.
pub async fn deliver<B: MessageBody>(app: &impl App<B>, b: &mut Browser, out: &Outbound) -> Page {
    match out {
        Outbound::Redirect(u) => {
            b.get(app, &format!("{}?{}", u.path(), u.query().unwrap()))
                .await
        }
        Outbound::Post {
            action,
            field,
            value,
            relay_state,
        } => {
            let mut form = vec![(*field, value.as_str())];
            form.extend(relay_state.as_deref().map(|rs| ("RelayState", rs)));
            let page = b.post_form(app, action.path(), &form).await;
            // A posted request goes on as a same-site GET (so the session cookie comes with it):
            // the browser follows the 303.
            match (&page.location, page.status) {
                (Some(to), 303) if to.starts_with("/samlp/") => b.get(app, to).await,
                _ => page,
            }
        }
    }
}

/// The password step of a sign-in form.
pub async fn password<B: MessageBody>(
    app: &impl App<B>,
    b: &mut Browser,
    form: Page,
    email: &str,
) -> Page {
    assert_eq!(form.status, 200, "{}", form.body);
    let tx = form
        .field("tx")
        .unwrap_or_else(|| panic!("a sign-in form: {}", form.body));
    let fields = [
        ("tx", tx.as_str()),
        ("email", email),
        ("password", PASSWORD),
    ];
    b.post_form(app, "/login", &fields).await
}

/// Signs `email` in to `sp` with the password form (an HTTP-Redirect AuthnRequest).
pub async fn saml_sign_in<B: MessageBody>(
    app: &impl App<B>,
    b: &mut Browser,
    sp: &Sp,
    email: &str,
) -> Answer {
    let form = deliver(
        app,
        b,
        &sp.sign_in_request(latch_saml::idp::HTTP_REDIRECT).1,
    )
    .await;
    answer(&password(app, b, form, email).await, ACS)
}

/// A user of the database connection named Ada: its email and `user_id`.
pub async fn user(app: &impl Target) -> (String, String) {
    let email = format!("u{}@example.com", unique());
    let body =
        json!({"connection": "database", "email": email, "password": PASSWORD, "name": "Ada"});
    let u = api(app, "POST", "/api/v2/users", Some(body)).await;
    (email, u["user_id"].as_str().unwrap().to_owned())
}

/// An OpenID Connect app at `CB` with `extra` fields: its id and secret.
pub async fn oidc_app(app: &impl Target, extra: Value) -> (String, String) {
    let mut body = json!({"name": "OIDC app", "callbacks": [CB]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let c = api(app, "POST", "/api/v2/clients", Some(body)).await;
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    (s("client_id"), s("client_secret"))
}

/// The user's live sessions, each as the client ids that joined it.
pub async fn sessions(app: &impl Target, user_id: &str) -> Vec<Vec<String>> {
    let v = api(
        app,
        "GET",
        &format!("/api/v2/users/{user_id}/sessions"),
        None,
    )
    .await;
    let ids = |s: &Value| -> Vec<String> {
        let clients = s["clients"].as_array().unwrap().iter();
        clients
            .map(|c| c["client_id"].as_str().unwrap().to_owned())
            .collect()
    };
    v["sessions"].as_array().unwrap().iter().map(ids).collect()
}

/// Log events of `kind` matching `filter` (`user_id=…`), newest first.
pub async fn events(app: &impl Target, kind: &str, filter: &str) -> Vec<Value> {
    let v = api(
        app,
        "GET",
        &format!("/api/v2/logs?type={kind}&{filter}"),
        None,
    )
    .await;
    v.as_array().unwrap().clone()
}

/// Undoes askama's (and XML's) escaping.
pub fn unescape(s: &str) -> String {
    let named = [
        ("&quot;", "\""),
        ("&apos;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
    ];
    let numeric = [
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&#60;", "<"),
        ("&#62;", ">"),
    ];
    let s = named
        .iter()
        .chain(&numeric)
        .fold(s.to_owned(), |s, (f, t)| s.replace(f, t));
    s.replace("&#38;", "&").replace("&amp;", "&")
}

/// Every start tag `<{name} …>` (`name` with its prefix) of `xml`.
pub fn tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    xml.match_indices(&open)
        .filter(|(i, _)| xml[i + open.len()..].starts_with([' ', '>', '/']))
        .map(|(i, _)| &xml[i..i + xml[i..].find('>').unwrap() + 1])
        .collect()
}

pub fn attr_in(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(unescape(tag[i..].split('"').next()?))
}

/// An attribute of the first `name` element.
pub fn attr(xml: &str, name: &str, attribute: &str) -> Option<String> {
    attr_in(tags(xml, name).first()?, attribute)
}

/// The text of the first `name` element.
pub fn text(xml: &str, name: &str) -> Option<String> {
    let t = *tags(xml, name).first()?;
    let start = xml.find(t)? + t.len();
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(unescape(&xml[start..start + end]))
}

pub fn at(v: &str) -> OffsetDateTime {
    OffsetDateTime::parse(v, &Rfc3339).unwrap()
}

/// The form a page posts: its action and hidden fields, unescaped.
pub fn posted(page: &Page) -> (String, Vec<(String, String)>) {
    let form = tags(&page.body, "form");
    let form = form
        .first()
        .unwrap_or_else(|| panic!("a form: {}", page.body));
    let hidden = tags(&page.body, "input")
        .into_iter()
        .filter(|t| t.contains("type=\"hidden\""));
    let fields = hidden.map(|t| (attr_in(t, "name").unwrap(), attr_in(t, "value").unwrap()));
    (attr_in(form, "action").unwrap(), fields.collect())
}

/// The form's `field`, base64-decoded.
pub fn decoded(fields: &[(String, String)], name: &str) -> String {
    let v = field(fields, name).unwrap_or_else(|| panic!("{name} in {fields:?}"));
    String::from_utf8(STANDARD.decode(v).unwrap()).unwrap()
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `src` of every `<iframe>` of a page, unescaped.
pub fn frames(page: &Page) -> Vec<String> {
    tags(&page.body, "iframe")
        .iter()
        .filter_map(|t| attr_in(t, "src"))
        .collect()
}

/// A Response POSTed to an ACS, and what the SP reads of it.
pub struct Answer {
    pub xml: String,
    pub relay: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub session_index: String,
}

impl Answer {
    pub fn name(&self) -> NameId {
        let format = Some(self.name_id_format.clone());
        NameId {
            value: self.name_id.clone(),
            format,
            ..NameId::default()
        }
    }
}

/// The auto-posting page that answers a sign-in with a Response to `acs`.
pub fn answer(page: &Page, acs: &str) -> Answer {
    assert_eq!(page.status, 200, "{}", page.body);
    let (action, fields) = posted(page);
    assert_eq!(action, acs);
    let csp = page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    // No `form-action`: the ACS may redirect anywhere after the post.
    assert!(!csp.contains("form-action"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let xml = decoded(&fields, "SAMLResponse");
    Answer {
        relay: field(&fields, "RelayState").map(str::to_owned),
        name_id: text(&xml, "saml:NameID").unwrap(),
        name_id_format: attr(&xml, "saml:NameID", "Format").unwrap(),
        session_index: attr(&xml, "saml:AuthnStatement", "SessionIndex").unwrap(),
        xml,
    }
}

/// The SAML attributes of an assertion, in order.
pub fn attributes(xml: &str) -> Vec<(String, String)> {
    let one = |t: &&str| {
        let value = text(&xml[xml.find(*t).unwrap()..], "saml:AttributeValue").unwrap();
        (attr_in(t, "Name").unwrap(), value)
    };
    tags(xml, "saml:Attribute").iter().map(one).collect()
}

/// Latch's signing certificate (PEM) from the app's metadata.
pub async fn idp_cert<B: MessageBody>(app: &impl App<B>, sp: &Sp) -> String {
    let md = Browser::new()
        .get(app, &format!("/samlp/metadata/{}", sp.id))
        .await;
    let b64 = text(&md.body, "ds:X509Certificate").expect("a certificate");
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let body = lines.join("\n");
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}

/// Runs a command line (no quoting: the paths are temporary files); `None`, said loudly, when
/// the program is not installed.
fn run(line: &str) -> Option<Output> {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    match Command::new(program).args(words).output() {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED a signature check: `{program}` is not installed");
            None
        }
        Err(e) => panic!("{program}: {e}"),
    }
}

/// Files in a fresh temporary directory.
struct Files(TempDir);

impl Files {
    fn new() -> Self {
        Self(TempDir::new())
    }
    fn put(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }
}

/// `xmlsec1` verifies the enveloped signature of the `node` element (`{namespace}:{name}`, its
/// ID attribute `ID`) of `xml` with `cert`, and not once the last `Issuer` (signed) changes.
pub fn assert_xmlsec1(xml: &str, cert: &str, node: &str) {
    let f = Files::new();
    let cert = f.put("cert.pem", cert);
    let verify = |doc: &str| {
        let doc = f.put("msg.xml", doc);
        run(&format!(
            "xmlsec1 --verify --pubkey-cert-pem {cert} --id-attr:ID {node} {doc}"
        ))
    };
    let Some(out) = verify(xml) else { return };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xmlsec1: {stderr}\n{xml}");
    let i = xml.rfind("</saml:Issuer>").unwrap();
    let tampered = format!("{}x{}", &xml[..i], &xml[i..]);
    assert!(
        !verify(&tampered).unwrap().status.success(),
        "xmlsec1 tells changes apart"
    );
}

pub fn form_decode(v: &str) -> String {
    let mut pairs = url::form_urlencoded::parse(v.as_bytes());
    pairs
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

fn form_encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The raw query parameters of `url`.
pub fn raw_query(url: &str) -> HashMap<&str, &str> {
    let q = url.split_once('?').unwrap().1;
    q.split('&').filter_map(|p| p.split_once('=')).collect()
}

/// `openssl` verifies the HTTP-Redirect query signature (RSA-SHA256) of `url` over its raw
/// `field`, `RelayState` and `SigAlg` parameters with `cert`, and not over changed octets.
pub fn assert_query_signature(url: &str, field: &str, cert: &str) {
    let raw = raw_query(url);
    assert_eq!(form_decode(raw["SigAlg"]), RSA_SHA256);
    let mut signed = format!("{field}={}", raw[field]);
    if let Some(rs) = raw.get("RelayState") {
        signed.push_str(&format!("&RelayState={rs}"));
    }
    signed.push_str(&format!("&SigAlg={}", raw["SigAlg"]));
    let f = Files::new();
    let cert = f.put("cert.pem", cert);
    let sig = f.put(
        "sig",
        STANDARD.decode(form_decode(raw["Signature"])).unwrap(),
    );
    let public = f.put("pub.pem", "");
    let Some(o) = run(&format!(
        "openssl x509 -pubkey -noout -in {cert} -out {public}"
    )) else {
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verify = |data: &str| {
        let data = f.put("data", data);
        let line = format!("openssl dgst -sha256 -verify {public} -signature {sig} {data}");
        run(&line).unwrap().status.success()
    };
    assert!(
        verify(&signed),
        "openssl verifies the query signature of {url}"
    );
    assert!(
        !verify(&format!("{signed}x")),
        "openssl tells changed octets apart"
    );
}

/// `out` (an HTTP-Redirect request) signed again by `openssl` with `digest` (`-sha1`, …) and
/// named `sig_alg`; `None` when openssl is missing.
pub fn resigned(pem: &str, out: &Outbound, digest: &str, sig_alg: &str) -> Option<Outbound> {
    let Outbound::Redirect(u) = out else {
        panic!("a redirect")
    };
    let request = raw_query(u.as_str())["SAMLRequest"];
    let signed = format!("SAMLRequest={request}&SigAlg={}", form_encode(sig_alg));
    let f = Files::new();
    let (key, data, sig) = (
        f.put("key.pem", pem),
        f.put("data", &signed),
        f.put("sig", ""),
    );
    let o = run(&format!(
        "openssl dgst {digest} -sign {key} -out {sig} {data}"
    ))?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sig = STANDARD.encode(std::fs::read(sig).unwrap());
    let mut u = u.clone();
    u.set_query(Some(&format!("{signed}&Signature={}", form_encode(&sig))));
    Some(Outbound::Redirect(u))
}

/// The payload of an ID token.
pub fn claims(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}
