//! Latch as a SAML 2.0 identity provider for apps (Auth0's SAML2 Web App addon), and the Single
//! Logout messages both roles exchange.
//!
//! - [`IdpKey`]: an RSA signing key with a certificate made from it deterministically (every
//!   instance that holds the same key publishes the same certificate);
//! - [`idp_metadata`]: the IdP metadata an SP imports;
//! - [`Inbound`]: a message as a binding carried it (HTTP-Redirect: DEFLATE + base64 with the
//!   signature over the query string; HTTP-POST: base64 XML with an enveloped signature), checked
//!   by [`Inbound::verified_xml`] before it is read, then parsed by [`Message::parse`];
//! - [`signed_response`], [`logout_request_xml`], [`logout_response_xml`]: what Latch sends,
//!   signed with RSA-SHA256 and exclusive canonicalisation, and [`Outbound`] to carry it.
//!
//! Messages are written by hand rather than through samael's schema types: samael puts a
//! LogoutRequest's `SessionIndex` in an attribute (the schema has an element) and omits
//! `NotOnOrAfter`, and the hand-written form is both exact and cheap.

use std::collections::HashMap;
use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::pkey::{PKey, Private, Public};
use samael::crypto::{CertificateDer, Crypto, CryptoProvider, ReduceMode};
use time::OffsetDateTime;
use url::Url;

use crate::{ALLOWED_ALGORITHMS, MAX_MESSAGE_BYTES, SamlError, refuse_dtd, rejected};

pub const PROTOCOL_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const STATUS_NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
pub const STATUS_REQUEST_DENIED: &str = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const NAMEID_FORMATS: [&str; 3] = [
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
];

/// An RSA key Latch signs SAML with, and its certificate.
pub struct IdpKey {
    key: PKey<Private>,
    /// PKCS#1 DER, the form xmlsec loads.
    key_der: Vec<u8>,
    pub cert: CertificateDer,
}

impl std::fmt::Debug for IdpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpKey").finish_non_exhaustive()
    }
}

fn config(e: impl std::fmt::Display) -> SamlError {
    SamlError::Config(e.to_string())
}

impl IdpKey {
    /// The key from its PKCS#8 PEM, with a self-signed certificate that depends only on the key,
    /// `serial_seed` (its key id), `created_at` and `common_name`: RSA PKCS#1 v1.5 signatures are
    /// deterministic, so every instance makes the same bytes. Valid 20 years from `created_at`.
    pub fn from_pem(
        pem: &str,
        serial_seed: &str,
        created_at: OffsetDateTime,
        common_name: &str,
    ) -> Result<Self, SamlError> {
        use openssl::asn1::Asn1Time;
        use openssl::bn::BigNum;
        use openssl::hash::MessageDigest;
        use openssl::x509::{X509Builder, X509NameBuilder};
        let key = PKey::private_key_from_pem(pem.as_bytes()).map_err(config)?;
        let rsa = key
            .rsa()
            .map_err(|_| config("SAML signing needs an RSA key"))?;
        let key_der = rsa.private_key_to_der().map_err(config)?;
        let mut serial = openssl::sha::sha256(serial_seed.as_bytes())[..16].to_vec();
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let mut name = X509NameBuilder::new().map_err(config)?;
        let cn: String = common_name.chars().take(64).collect();
        name.append_entry_by_text("CN", &cn).map_err(config)?;
        let name = name.build();
        let mut b = X509Builder::new().map_err(config)?;
        b.set_version(2).map_err(config)?;
        let serial = BigNum::from_slice(&serial)
            .and_then(|n| n.to_asn1_integer())
            .map_err(config)?;
        b.set_serial_number(&serial).map_err(config)?;
        b.set_subject_name(&name).map_err(config)?;
        b.set_issuer_name(&name).map_err(config)?;
        let start = created_at.unix_timestamp();
        let not_before = Asn1Time::from_unix(start).map_err(config)?;
        let not_after = Asn1Time::from_unix(start + 20 * 365 * 86_400).map_err(config)?;
        b.set_not_before(&not_before).map_err(config)?;
        b.set_not_after(&not_after).map_err(config)?;
        b.set_pubkey(&key).map_err(config)?;
        b.sign(&key, MessageDigest::sha256()).map_err(config)?;
        let cert = CertificateDer::from(b.build().to_der().map_err(config)?);
        Ok(Self { key, key_der, cert })
    }

    pub fn cert_base64(&self) -> String {
        STANDARD.encode(self.cert.der_data())
    }

    /// The certificate as PEM (for an SP admin who pastes it).
    pub fn cert_pem(&self) -> String {
        pem_of(&self.cert)
    }

    /// Signs every signature template in `xml` (enveloped, exclusive c14n, RSA-SHA256).
    pub fn sign_xml(&self, xml: &str) -> Result<String, SamlError> {
        Crypto::sign_xml(xml, &self.key_der).map_err(|e| config(format!("signing: {e}")))
    }

    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>, SamlError> {
        let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &self.key)
            .map_err(config)?;
        s.update(data).map_err(config)?;
        s.sign_to_vec().map_err(config)
    }
}

/// A certificate as PEM.
pub fn pem_of(cert: &CertificateDer) -> String {
    let b = STANDARD.encode(cert.der_data());
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// XML text and attribute escaping.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// A SAML ID: an NCName with 128 random bits.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        // openssl's CSPRNG does not fail once seeded; a second try is all that is sensible.
        let _ = openssl::rand::rand_bytes(&mut b);
    }
    let mut s = String::with_capacity(34);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// `xs:dateTime` in UTC, whole seconds.
pub fn instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn signature_template(id: &str, cert_b64: &str) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
            r#"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#
        ),
        id = id,
        cert = cert_b64
    )
}

/// Latch's IdP metadata for one SAML app.
pub struct IdpMetadata<'a> {
    pub entity_id: &'a str,
    /// SingleSignOnService (HTTP-Redirect and HTTP-POST).
    pub sso_url: &'a str,
    /// SingleLogoutService (HTTP-Redirect and HTTP-POST).
    pub slo_url: &'a str,
    /// Signing certificates, the one signing now first (then the next one, published early).
    pub certs: &'a [&'a CertificateDer],
    /// The SP's AuthnRequests must be signed.
    pub want_requests_signed: bool,
}

pub fn idp_metadata(m: &IdpMetadata<'_>) -> String {
    let mut keys = String::new();
    for c in m.certs {
        keys.push_str(&format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            STANDARD.encode(c.der_data())
        ));
    }
    let formats: String = NAMEID_FORMATS
        .iter()
        .map(|f| format!("<md:NameIDFormat>{f}</md:NameIDFormat>"))
        .collect();
    let slo = esc(m.slo_url);
    let sso = esc(m.sso_url);
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">"#,
            r#"<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="{want}">"#,
            "{keys}",
            r#"<md:SingleLogoutService Binding="{r}" Location="{slo}"/>"#,
            r#"<md:SingleLogoutService Binding="{p}" Location="{slo}"/>"#,
            "{formats}",
            r#"<md:SingleSignOnService Binding="{r}" Location="{sso}"/>"#,
            r#"<md:SingleSignOnService Binding="{p}" Location="{sso}"/>"#,
            r#"</md:IDPSSODescriptor></md:EntityDescriptor>"#
        ),
        entity = esc(m.entity_id),
        want = m.want_requests_signed,
        keys = keys,
        r = HTTP_REDIRECT,
        p = HTTP_POST,
        slo = slo,
        sso = sso,
        formats = formats,
    )
}

/// The assertion Latch issues to a SAML app, and the Response around it.
pub struct AssertionSpec<'a> {
    /// Latch's IdP entity id.
    pub issuer: &'a str,
    /// The SP's entity id.
    pub audience: &'a str,
    /// The ACS: the Response's `Destination` and the bearer confirmation's `Recipient`.
    pub acs_url: &'a str,
    /// The AuthnRequest's ID (`None`: IdP-initiated).
    pub in_response_to: Option<&'a str>,
    pub name_id: &'a str,
    pub name_id_format: &'a str,
    pub session_index: &'a str,
    pub authn_instant: OffsetDateTime,
    pub now: OffsetDateTime,
    /// `NotOnOrAfter` = `now` + this.
    pub lifetime_seconds: i64,
    /// SAML attribute name → value.
    pub attributes: &'a [(String, String)],
    /// Sign the whole Response instead of the assertion.
    pub sign_response: bool,
}

/// A character XML 1.0 allows, or U+FFFD for one it does not (control characters a profile
/// may hold would make the whole Response unreadable).
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
        c => c,
    }
}

/// Text as exclusive canonicalisation writes it (C14N §2.3): `&`, `<`, `>` and CR escaped.
fn c14n_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

/// An attribute value as exclusive canonicalisation writes it: `&`, `<`, `"`, TAB, LF, CR.
fn c14n_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '"' => o.push_str("&quot;"),
            '\t' => o.push_str("&#x9;"),
            '\n' => o.push_str("&#xA;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

/// An enveloped signature over the element with ID `id` whose exclusive canonical form (the
/// signature removed) is `canonical`: SHA-256 digest, RSA-SHA256 over the canonical
/// `SignedInfo`.
fn enveloped_signature(key: &IdpKey, id: &str, canonical: &str) -> Result<String, SamlError> {
    let digest = STANDARD.encode(openssl::sha::sha256(canonical.as_bytes()));
    let signed_info = format!(
        concat!(
            r#"<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:CanonicalizationMethod>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"></ds:SignatureMethod>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"></ds:Transform>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></ds:Transform></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></ds:DigestMethod>"#,
            "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        ),
        id = c14n_attr(id),
        digest = digest
    );
    let value = STANDARD.encode(key.sign_bytes(signed_info.as_bytes())?);
    Ok(format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">{si}"#,
            "<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>",
            "<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"
        ),
        si = signed_info,
        value = value,
        cert = key.cert_base64()
    ))
}

/// A signed Response with one assertion, as XML.
///
/// Written directly in exclusive canonical form (C14N: attributes in order, namespaces declared
/// where first used, no empty-element tags, canonical escaping), so the digest is taken over
/// the text as written and the signature made with the key already loaded: no XML parse and no
/// key decoding per sign-in. Every signature is checked by xmlsec in this crate's tests and by
/// the `xmlsec1` program and pysaml2 in the end-to-end tests.
pub fn signed_response(key: &IdpKey, s: &AssertionSpec<'_>) -> Result<String, SamlError> {
    let response_id = new_id();
    let assertion_id = new_id();
    let now = instant(s.now);
    let until = instant(s.now + time::Duration::seconds(s.lifetime_seconds));
    let not_before = instant(s.now - time::Duration::seconds(crate::CLOCK_SKEW_SECONDS));
    let irt = s
        .in_response_to
        .map(|i| format!(r#" InResponseTo="{}""#, c14n_attr(i)))
        .unwrap_or_default();
    let mut attrs = String::new();
    if !s.attributes.is_empty() {
        attrs.push_str("<saml:AttributeStatement>");
        for (name, value) in s.attributes {
            attrs.push_str(&format!(
                r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue>{}</saml:AttributeValue></saml:Attribute>"#,
                c14n_attr(name),
                c14n_text(value)
            ));
        }
        attrs.push_str("</saml:AttributeStatement>");
    }
    let issuer = c14n_text(s.issuer);
    let assertion_open = format!(
        r#"<saml:Assertion xmlns:saml="{ASSERTION_NS}" ID="{assertion_id}" IssueInstant="{now}" Version="2.0"><saml:Issuer>{issuer}</saml:Issuer>"#
    );
    let assertion_rest = format!(
        concat!(
            r#"<saml:Subject><saml:NameID Format="{fmt}">{name_id}</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">"#,
            r#"<saml:SubjectConfirmationData{irt} NotOnOrAfter="{until}" Recipient="{acs}"></saml:SubjectConfirmationData>"#,
            "</saml:SubjectConfirmation></saml:Subject>",
            r#"<saml:Conditions NotBefore="{nb}" NotOnOrAfter="{until}">"#,
            "<saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>",
            r#"<saml:AuthnStatement AuthnInstant="{ai}" SessionIndex="{si}">"#,
            "<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef></saml:AuthnContext>",
            "</saml:AuthnStatement>{attrs}</saml:Assertion>"
        ),
        fmt = c14n_attr(s.name_id_format),
        name_id = c14n_text(s.name_id),
        irt = irt,
        until = until,
        acs = c14n_attr(s.acs_url),
        nb = not_before,
        aud = c14n_text(s.audience),
        ai = instant(s.authn_instant),
        si = c14n_attr(s.session_index),
        attrs = attrs,
    );
    let assertion = if s.sign_response {
        format!("{assertion_open}{assertion_rest}")
    } else {
        let canonical = format!("{assertion_open}{assertion_rest}");
        let sig = enveloped_signature(key, &assertion_id, &canonical)?;
        format!("{assertion_open}{sig}{assertion_rest}")
    };
    // Exclusive canonicalisation declares `saml` where it is used: on the Issuer and the
    // Assertion, not on the Response.
    let response_open = format!(
        r#"<samlp:Response xmlns:samlp="{PROTOCOL_NS}" Destination="{acs}" ID="{response_id}"{irt} IssueInstant="{now}" Version="2.0"><saml:Issuer xmlns:saml="{ASSERTION_NS}">{issuer}</saml:Issuer>"#,
        acs = c14n_attr(s.acs_url),
    );
    let response_rest = format!(
        r#"<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"></samlp:StatusCode></samlp:Status>{assertion}</samlp:Response>"#
    );
    if s.sign_response {
        let canonical = format!("{response_open}{response_rest}");
        let sig = enveloped_signature(key, &response_id, &canonical)?;
        Ok(format!("{response_open}{sig}{response_rest}"))
    } else {
        Ok(format!("{response_open}{response_rest}"))
    }
}

/// A signed Response without an assertion: the sign-in did not happen (`top` and `second`
/// status codes, e.g. Responder / NoPassive).
#[allow(clippy::too_many_arguments)]
pub fn signed_error_response(
    key: &IdpKey,
    issuer: &str,
    acs_url: &str,
    in_response_to: Option<&str>,
    top: &str,
    second: Option<&str>,
    message: &str,
    now: OffsetDateTime,
) -> Result<String, SamlError> {
    let id = new_id();
    let code = match second {
        Some(s) => format!(
            r#"<samlp:StatusCode Value="{}"><samlp:StatusCode Value="{}"/></samlp:StatusCode>"#,
            esc(top),
            esc(s)
        ),
        None => format!(r#"<samlp:StatusCode Value="{}"/>"#, esc(top)),
    };
    let xml = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="{pns}" xmlns:saml="{ans}" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{acs}"{irt}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{sig}<samlp:Status>{code}<samlp:StatusMessage>{msg}</samlp:StatusMessage></samlp:Status></samlp:Response>"
        ),
        pns = PROTOCOL_NS,
        ans = ASSERTION_NS,
        id = id,
        now = instant(now),
        acs = esc(acs_url),
        irt = in_response_to
            .map(|i| format!(r#" InResponseTo="{}""#, esc(i)))
            .unwrap_or_default(),
        issuer = esc(issuer),
        sig = signature_template(&id, &key.cert_base64()),
        code = code,
        msg = esc(message),
    );
    key.sign_xml(&xml)
}

/// The NameID a LogoutRequest names, as it was issued.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameId {
    pub value: String,
    pub format: Option<String>,
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
}

/// A LogoutRequest (unsigned; [`Outbound`] signs it for its binding).
pub fn logout_request_xml(
    id: &str,
    issuer: &str,
    destination: &str,
    name_id: &NameId,
    session_index: Option<&str>,
    now: OffsetDateTime,
    not_on_or_after: Option<OffsetDateTime>,
) -> String {
    let q = |k: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| format!(r#" {k}="{}""#, esc(v)))
            .unwrap_or_default()
    };
    format!(
        concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="{pns}" xmlns:saml="{ans}" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"{noa}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer>",
            "<saml:NameID{fmt}{nq}{spq}>{value}</saml:NameID>{si}</samlp:LogoutRequest>"
        ),
        pns = PROTOCOL_NS,
        ans = ASSERTION_NS,
        id = esc(id),
        now = instant(now),
        dest = esc(destination),
        noa = not_on_or_after
            .map(|t| format!(r#" NotOnOrAfter="{}""#, instant(t)))
            .unwrap_or_default(),
        issuer = esc(issuer),
        fmt = q("Format", &name_id.format),
        nq = q("NameQualifier", &name_id.name_qualifier),
        spq = q("SPNameQualifier", &name_id.sp_name_qualifier),
        value = esc(&name_id.value),
        si = session_index
            .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(s)))
            .unwrap_or_default(),
    )
}

/// A LogoutResponse (unsigned; [`Outbound`] signs it). `status` is the top-level code,
/// `second` an optional second-level one (`PartialLogout`).
pub fn logout_response_xml(
    id: &str,
    issuer: &str,
    destination: &str,
    in_response_to: Option<&str>,
    status: &str,
    second: Option<&str>,
    now: OffsetDateTime,
) -> String {
    let code = match second {
        Some(s) => format!(
            r#"<samlp:StatusCode Value="{}"><samlp:StatusCode Value="{}"/></samlp:StatusCode>"#,
            esc(status),
            esc(s)
        ),
        None => format!(r#"<samlp:StatusCode Value="{}"/>"#, esc(status)),
    };
    format!(
        concat!(
            r#"<samlp:LogoutResponse xmlns:samlp="{pns}" xmlns:saml="{ans}" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"{irt}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer><samlp:Status>{code}</samlp:Status></samlp:LogoutResponse>"
        ),
        pns = PROTOCOL_NS,
        ans = ASSERTION_NS,
        id = esc(id),
        now = instant(now),
        dest = esc(destination),
        irt = in_response_to
            .map(|i| format!(r#" InResponseTo="{}""#, esc(i)))
            .unwrap_or_default(),
        issuer = esc(issuer),
        code = code,
    )
}

/// Inserts an enveloped signature template after the root's `Issuer` and signs.
fn sign_protocol_message(key: &IdpKey, xml: &str, id: &str) -> Result<String, SamlError> {
    let Some(at) = xml.find("</saml:Issuer>") else {
        return Err(config("a protocol message without an Issuer"));
    };
    let at = at + "</saml:Issuer>".len();
    let mut out = String::with_capacity(xml.len() + 1600);
    out.push_str(&xml[..at]);
    out.push_str(&signature_template(id, &key.cert_base64()));
    out.push_str(&xml[at..]);
    key.sign_xml(&out)
}

/// A message on its way to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Send the browser here (HTTP-Redirect; signed query string).
    Redirect(Url),
    /// POST these fields to `action` from an auto-submitting form (HTTP-POST; signed XML).
    Post {
        action: Url,
        /// `SAMLRequest` or `SAMLResponse`.
        field: &'static str,
        value: String,
        relay_state: Option<String>,
    },
}

impl Outbound {
    /// Carries the protocol message `xml` (whose root has ID `id`) to `endpoint` in `binding`
    /// (`HTTP_REDIRECT` or `HTTP_POST`), signed with `key`. `request`: `SAMLRequest`, else
    /// `SAMLResponse`.
    pub fn carry(
        key: &IdpKey,
        binding: &str,
        endpoint: &Url,
        request: bool,
        xml: &str,
        id: &str,
        relay_state: Option<&str>,
    ) -> Result<Self, SamlError> {
        let field = if request {
            "SAMLRequest"
        } else {
            "SAMLResponse"
        };
        if binding == HTTP_POST {
            let signed = sign_protocol_message(key, xml, id)?;
            return Ok(Self::Post {
                action: endpoint.clone(),
                field,
                value: STANDARD.encode(signed),
                relay_state: relay_state.map(str::to_owned),
            });
        }
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(xml.as_bytes()).map_err(config)?;
        let deflated = deflate.finish().map_err(config)?;
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let mut signed = format!("{field}={}", enc(&STANDARD.encode(deflated)));
        if let Some(rs) = relay_state {
            signed.push_str(&format!("&RelayState={}", enc(rs)));
        }
        signed.push_str(&format!("&SigAlg={}", enc(RSA_SHA256)));
        let sig = STANDARD.encode(key.sign_bytes(signed.as_bytes())?);
        let query = match endpoint.query() {
            Some(q) if !q.is_empty() => format!("{q}&{signed}&Signature={}", enc(&sig)),
            _ => format!("{signed}&Signature={}", enc(&sig)),
        };
        let mut url = endpoint.clone();
        url.set_query(Some(&query));
        Ok(Self::Redirect(url))
    }
}

impl Outbound {
    /// Where a logout page or answer sends the browser next: the signed redirect, or the form
    /// (the message field, then `RelayState` when there is one).
    pub fn into_continue(self) -> latch_core::logout::Continue {
        use latch_core::logout::Continue;
        match self {
            Self::Redirect(u) => Continue::Get(u.into()),
            Self::Post {
                action,
                field,
                value,
                relay_state,
            } => {
                let mut fields = vec![(field.to_owned(), value)];
                if let Some(rs) = relay_state {
                    fields.push(("RelayState".to_owned(), rs));
                }
                Continue::Post { action, fields }
            }
        }
    }
}

/// How a message came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Redirect,
    Post,
}

/// A message as it arrived, not yet believed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub binding: Binding,
    /// The decoded XML (DTD-free, size-bounded).
    pub xml: String,
    pub relay_state: Option<String>,
    /// HTTP-Redirect: the signed octets, `SigAlg` and the signature, when signed.
    query_signature: Option<(String, String, Vec<u8>)>,
}

fn inflate(bytes: &[u8]) -> Result<String, SamlError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| rejected("the message is not DEFLATE-compressed"))?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(rejected("message too large"));
    }
    String::from_utf8(out).map_err(|_| rejected("the message is not UTF-8"))
}

fn base64_field(v: &str) -> Result<Vec<u8>, SamlError> {
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() > MAX_MESSAGE_BYTES * 4 / 3 + 4 {
        return Err(rejected("message too large"));
    }
    STANDARD
        .decode(compact)
        .map_err(|_| rejected("the message is not base64"))
}

impl Inbound {
    /// From an HTTP-Redirect query string as received (`field` is `SAMLRequest` or
    /// `SAMLResponse`). `None` when the field is absent.
    pub fn from_redirect(raw_query: &str, field: &str) -> Result<Option<Self>, SamlError> {
        let mut raw: HashMap<&str, &str> = HashMap::new();
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if matches!(
                k,
                "SAMLRequest" | "SAMLResponse" | "RelayState" | "SigAlg" | "Signature"
            ) && raw.insert(k, v).is_some()
            {
                return Err(rejected(format!("{k} appears twice")));
            }
        }
        let Some(msg) = raw.get(field) else {
            return Ok(None);
        };
        let decode = |v: &str| -> String {
            url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let xml = inflate(&base64_field(&decode(msg))?)?;
        refuse_dtd(&xml)?;
        let relay_state = raw.get("RelayState").map(|v| decode(v));
        let query_signature = match (raw.get("SigAlg"), raw.get("Signature")) {
            (Some(alg), Some(sig)) => {
                let mut signed = format!("{field}={msg}");
                if let Some(rs) = raw.get("RelayState") {
                    signed.push_str(&format!("&RelayState={rs}"));
                }
                signed.push_str(&format!("&SigAlg={alg}"));
                let sig = base64_field(&decode(sig))
                    .map_err(|_| rejected("the Signature parameter is not base64"))?;
                Some((signed, decode(alg), sig))
            }
            (None, None) => None,
            _ => return Err(rejected("SigAlg and Signature must come together")),
        };
        Ok(Some(Self {
            binding: Binding::Redirect,
            xml,
            relay_state,
            query_signature,
        }))
    }

    /// From an HTTP-POST form's base64 field.
    pub fn from_post(value: &str, relay_state: Option<String>) -> Result<Self, SamlError> {
        let xml = String::from_utf8(base64_field(value)?)
            .map_err(|_| rejected("the message is not UTF-8"))?;
        refuse_dtd(&xml)?;
        Ok(Self {
            binding: Binding::Post,
            xml,
            relay_state,
            query_signature: None,
        })
    }

    /// Whether the sender signed it (verified or not): a query signature (HTTP-Redirect) or an
    /// enveloped one in the XML (HTTP-POST, or a POSTed request carried on in a redirect).
    pub fn is_signed(&self) -> bool {
        self.query_signature.is_some() || self.xml.contains("SignatureValue")
    }

    /// The XML to read, once a signature by `cert` covers it: a query signature (SHA-2
    /// algorithms only) when there is one; else the document is reduced to what its enveloped
    /// signature covers, and that must be the root element itself (no wrapping).
    pub fn verified_xml(&self, cert: &CertificateDer) -> Result<String, SamlError> {
        if let Some((signed, alg, sig)) = &self.query_signature {
            verify_query_signature(cert, signed, alg, sig)?;
            return Ok(self.xml.clone());
        }
        if !self.xml.contains("SignatureValue") {
            return Err(SamlError::Signature("the message is not signed".into()));
        }
        let before = Message::parse(&self.xml)?;
        crate::check_signature_shape(&self.xml, true)?;
        let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            &self.xml,
            std::slice::from_ref(cert),
            ReduceMode::ValidateAndMarkNoAncestors,
            Some(&ALLOWED_ALGORITHMS),
        )
        .map_err(|e| SamlError::Signature(e.to_string()))?;
        let after = Message::parse(&reduced)?;
        // The signature must be the message's own (a child of its root), and what it covers
        // must be that message: a signed element smuggled into another reduces to itself, with
        // its own ID.
        if !before.signed || after.kind != before.kind || after.id() != before.id() {
            return Err(SamlError::Signature(
                "the signature does not cover the message".into(),
            ));
        }
        Ok(reduced)
    }

    /// The message again as an HTTP-Redirect query (`field=…&RelayState=…`), without a query
    /// signature: an enveloped signature in the XML still covers it.
    pub fn as_redirect_query(&self, field: &str) -> Result<String, SamlError> {
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(self.xml.as_bytes()).map_err(config)?;
        let deflated = deflate.finish().map_err(config)?;
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair(field, &STANDARD.encode(deflated));
        if let Some(rs) = &self.relay_state {
            q.append_pair("RelayState", rs);
        }
        Ok(q.finish())
    }
}

fn verify_query_signature(
    cert: &CertificateDer,
    signed: &str,
    alg: &str,
    sig: &[u8],
) -> Result<(), SamlError> {
    use openssl::hash::MessageDigest;
    let digest = match alg {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => MessageDigest::sha512(),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
        | "http://www.w3.org/2000/09/xmldsig#dsa-sha1" => {
            return Err(SamlError::Signature("SHA-1 signatures are refused".into()));
        }
        other => {
            return Err(SamlError::Signature(format!(
                "signature algorithm {other} is not accepted"
            )));
        }
    };
    let key: PKey<Public> = openssl::x509::X509::from_der(cert.der_data())
        .and_then(|c| c.public_key())
        .map_err(|_| SamlError::Config("the SP certificate cannot be read".into()))?;
    let ok = openssl::sign::Verifier::new(digest, &key)
        .and_then(|mut v| {
            v.update(signed.as_bytes())?;
            v.verify(sig)
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(SamlError::Signature(
            "the query signature does not verify".into(),
        ))
    }
}

/// The protocol messages Latch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AuthnRequest,
    LogoutRequest,
    LogoutResponse,
}

/// What Latch reads of a protocol message.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    /// The root's attributes by local name (`ID`, `Version`, `IssueInstant`, `Destination`,
    /// `InResponseTo`, `NotOnOrAfter`, `AssertionConsumerServiceURL`, `ProtocolBinding`, …).
    pub attrs: HashMap<String, String>,
    pub issuer: Option<String>,
    pub name_id: Option<NameId>,
    pub session_indexes: Vec<String>,
    /// `NameIDPolicy/@Format`.
    pub name_id_policy: Option<String>,
    /// Status codes, outermost first.
    pub status: Vec<String>,
    /// A `ds:Signature` is a child of the root.
    pub signed: bool,
}

impl Message {
    pub fn id(&self) -> Option<&str> {
        self.attr("ID")
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    /// `IssueInstant` or another instant attribute.
    pub fn instant(&self, name: &str) -> Result<Option<OffsetDateTime>, SamlError> {
        self.attr(name)
            .map(|v| {
                OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| rejected(format!("{name} is not a dateTime")))
            })
            .transpose()
    }

    /// Parses the root and the children Latch reads; anything it does not know is ignored, an
    /// encrypted NameID is refused.
    pub fn parse(xml: &str) -> Result<Self, SamlError> {
        use quick_xml::events::Event;
        use quick_xml::name::ResolveResult;
        refuse_dtd(xml)?;
        let bad = || rejected("the message is not well-formed SAML");
        let mut reader = quick_xml::NsReader::from_str(xml);
        let mut depth = 0usize;
        let mut m = Message {
            kind: Kind::AuthnRequest,
            attrs: HashMap::new(),
            issuer: None,
            name_id: None,
            session_indexes: Vec::new(),
            name_id_policy: None,
            status: Vec::new(),
            signed: false,
        };
        // The element whose text is being read, at depth 2.
        let mut text_of: Option<&'static str> = None;
        let mut text = String::new();
        let mut in_status = false;
        let mut seen_root = false;
        loop {
            let (ns, ev) = reader.read_resolved_event().map_err(|_| bad())?;
            let ns = match ns {
                ResolveResult::Bound(n) => std::str::from_utf8(n.as_ref()).unwrap_or("").to_owned(),
                _ => String::new(),
            };
            let empty = matches!(ev, Event::Empty(_));
            match ev {
                Event::Start(e) | Event::Empty(e) => {
                    let local = std::str::from_utf8(e.local_name().as_ref())
                        .unwrap_or("")
                        .to_owned();
                    let attrs = || -> Result<HashMap<String, String>, SamlError> {
                        let mut out = HashMap::new();
                        for a in e.attributes() {
                            let a = a.map_err(|_| bad())?;
                            if a.key.as_ref().starts_with(b"xmlns") {
                                continue;
                            }
                            let k = std::str::from_utf8(a.key.local_name().as_ref())
                                .map_err(|_| bad())?
                                .to_owned();
                            let v = a
                                .normalized_value(quick_xml::XmlVersion::default())
                                .map_err(|_| bad())?
                                .into_owned();
                            out.insert(k, v);
                        }
                        Ok(out)
                    };
                    depth += 1;
                    if depth == 1 {
                        if seen_root || ns != PROTOCOL_NS {
                            return Err(bad());
                        }
                        seen_root = true;
                        m.kind = match local.as_str() {
                            "AuthnRequest" => Kind::AuthnRequest,
                            "LogoutRequest" => Kind::LogoutRequest,
                            "LogoutResponse" => Kind::LogoutResponse,
                            other => {
                                return Err(rejected(format!("unexpected message {other}")));
                            }
                        };
                        m.attrs = attrs()?;
                    } else if depth == 2 {
                        match (ns.as_str(), local.as_str()) {
                            (ASSERTION_NS, "Issuer") => text_of = Some("Issuer"),
                            (ASSERTION_NS, "NameID") => {
                                let a = attrs()?;
                                m.name_id = Some(NameId {
                                    value: String::new(),
                                    format: a.get("Format").cloned(),
                                    name_qualifier: a.get("NameQualifier").cloned(),
                                    sp_name_qualifier: a.get("SPNameQualifier").cloned(),
                                });
                                text_of = Some("NameID");
                            }
                            (ASSERTION_NS, "EncryptedID") => {
                                return Err(rejected("encrypted NameIDs are not supported"));
                            }
                            (PROTOCOL_NS, "SessionIndex") => text_of = Some("SessionIndex"),
                            (PROTOCOL_NS, "NameIDPolicy") => {
                                m.name_id_policy = attrs()?.get("Format").cloned();
                            }
                            (PROTOCOL_NS, "Status") => in_status = true,
                            ("http://www.w3.org/2000/09/xmldsig#", "Signature") => m.signed = true,
                            _ => {}
                        }
                        text.clear();
                    } else if in_status
                        && ns == PROTOCOL_NS
                        && local == "StatusCode"
                        && let Some(v) = attrs()?.get("Value")
                    {
                        m.status.push(v.clone());
                    }
                    if empty {
                        Self::close(&mut m, &mut depth, &mut text_of, &text, &mut in_status);
                    }
                }
                Event::Text(t) if text_of.is_some() && depth == 2 => {
                    let s = t
                        .xml_content(quick_xml::XmlVersion::default())
                        .map_err(|_| bad())?;
                    text.push_str(&s);
                }
                Event::GeneralRef(r) if text_of.is_some() && depth == 2 => {
                    let name = std::str::from_utf8(r.as_ref()).map_err(|_| bad())?;
                    let entity = format!("&{name};");
                    let s = quick_xml::escape::unescape(&entity).map_err(|_| bad())?;
                    text.push_str(&s);
                }
                Event::CData(c) if text_of.is_some() && depth == 2 => {
                    text.push_str(std::str::from_utf8(c.as_ref()).map_err(|_| bad())?);
                }
                Event::End(_) => {
                    Self::close(&mut m, &mut depth, &mut text_of, &text, &mut in_status);
                }
                Event::DocType(_) => return Err(rejected("XML with a DTD is not accepted")),
                Event::Eof => break,
                _ => {}
            }
        }
        if !seen_root || depth != 0 {
            return Err(bad());
        }
        Ok(m)
    }

    fn close(
        m: &mut Message,
        depth: &mut usize,
        text_of: &mut Option<&'static str>,
        text: &str,
        in_status: &mut bool,
    ) {
        if *depth == 2 {
            match text_of.take() {
                Some("Issuer") => m.issuer = Some(text.trim().to_owned()),
                Some("NameID") => {
                    if let Some(n) = &mut m.name_id {
                        n.value = text.trim().to_owned();
                    }
                }
                Some("SessionIndex") => m.session_indexes.push(text.trim().to_owned()),
                _ => {}
            }
            *in_status = false;
        }
        *depth = depth.saturating_sub(1);
    }

    /// The checks every message gets whoever sent it: SAML 2.0, a recent `IssueInstant` (a
    /// minute ahead at most, [`crate::MAX_ISSUE_DELAY_SECONDS`] behind), `Destination` (when
    /// present) equal to where it arrived, and `NotOnOrAfter` (when present) not passed.
    pub fn check_common(&self, arrived_at: &str, now: OffsetDateTime) -> Result<(), SamlError> {
        if self.attr("Version") != Some("2.0") {
            return Err(rejected("Version must be 2.0"));
        }
        if self.id().is_none_or(str::is_empty) {
            return Err(rejected("the message has no ID"));
        }
        let skew = time::Duration::seconds(crate::CLOCK_SKEW_SECONDS);
        let Some(issued) = self.instant("IssueInstant")? else {
            return Err(rejected("the message has no IssueInstant"));
        };
        if issued > now + skew {
            return Err(rejected("IssueInstant is in the future"));
        }
        if issued < now - time::Duration::seconds(crate::MAX_ISSUE_DELAY_SECONDS) - skew {
            return Err(rejected("the message is too old"));
        }
        if let Some(d) = self.attr("Destination")
            && d != arrived_at
        {
            return Err(rejected(format!(
                "Destination {d} is not this endpoint ({arrived_at})"
            )));
        }
        if let Some(t) = self.instant("NotOnOrAfter")?
            && t.checked_add(skew).is_none_or(|end| now >= end)
        {
            return Err(rejected("the message has expired (NotOnOrAfter)"));
        }
        Ok(())
    }
}

/// Standard base64 (a form field's `SAMLResponse`).
pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
