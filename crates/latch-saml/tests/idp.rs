//! Latch's IdP-side SAML messages: certificates, signed Responses, Single Logout messages in
//! both bindings, and every check an inbound message must pass before it is read.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_saml::idp::*;
use latch_saml::samael::crypto::{Crypto, CryptoProvider, ReduceMode};
use time::{Duration, OffsetDateTime};
use url::Url;

fn key(seed: &str) -> IdpKey {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pem = openssl::pkey::PKey::from_rsa(rsa)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    IdpKey::from_pem(
        std::str::from_utf8(&pem).unwrap(),
        seed,
        OffsetDateTime::now_utc(),
        "latch.test",
    )
    .unwrap()
}

const SLO: &str = "https://sp.example/slo?tenant=1";

fn name_id() -> NameId {
    NameId {
        value: "auth0|alice".into(),
        format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into()),
        ..NameId::default()
    }
}

fn logout_request(now: OffsetDateTime) -> (String, String) {
    let id = new_id();
    let xml = logout_request_xml(
        &id,
        "https://sp.example/metadata",
        SLO,
        &name_id(),
        Some("_si-1"),
        now,
        Some(now + Duration::minutes(5)),
    );
    (id, xml)
}

fn redirect_query(out: &Outbound) -> String {
    match out {
        Outbound::Redirect(u) => u.query().unwrap().to_owned(),
        other => panic!("not a redirect: {other:?}"),
    }
}

/// The query Latch's endpoint sees: the SAML parameters only (the SLO URL's own `tenant` is
/// ignored by `from_redirect`).
fn inbound_redirect(out: &Outbound) -> Inbound {
    Inbound::from_redirect(&redirect_query(out), "SAMLRequest")
        .unwrap()
        .unwrap()
}

#[test]
fn certificates_depend_only_on_the_key_and_its_id() {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pem = openssl::pkey::PKey::from_rsa(rsa)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    let pem = std::str::from_utf8(&pem).unwrap();
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let a = IdpKey::from_pem(pem, "kid-1", at, "latch.test").unwrap();
    let b = IdpKey::from_pem(pem, "kid-1", at, "latch.test").unwrap();
    let c = IdpKey::from_pem(pem, "kid-2", at, "latch.test").unwrap();
    assert_eq!(a.cert, b.cert, "two instances publish the same bytes");
    assert_ne!(a.cert, c.cert, "another key id, another serial");
    let x509 = openssl::x509::X509::from_der(a.cert.der_data()).unwrap();
    assert_eq!(x509.not_before().to_string(), "Nov 14 22:13:20 2023 GMT");
    assert!(a.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    // An EC key cannot sign SAML here.
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let ec_pem = openssl::pkey::PKey::from_ec_key(ec)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    assert!(IdpKey::from_pem(std::str::from_utf8(&ec_pem).unwrap(), "k", at, "x").is_err());
}

#[test]
fn a_signed_response_verifies_and_says_what_the_app_checks() {
    let k = key("k1");
    let now = OffsetDateTime::now_utc();
    // Values exclusive canonicalisation escapes (the Response is written in canonical form).
    let attrs = vec![
        ("email".to_owned(), "a<b>&c@example.com".to_owned()),
        (
            "odd \"name\"\t&<>".to_owned(),
            "quote\" cr\r lf\n tab\t é ' >".to_owned(),
        ),
    ];
    for sign_response in [false, true] {
        let xml = signed_response(
            &k,
            &AssertionSpec {
                issuer: "https://latch.test",
                audience: "urn:sp",
                acs_url: "https://sp.example/acs",
                in_response_to: Some("_req"),
                name_id: "auth0|alice & <bob>\r",
                name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                session_index: "_si",
                authn_instant: now,
                now,
                lifetime_seconds: 600,
                attributes: &attrs,
                sign_response,
            },
        )
        .unwrap();
        let reduced = Crypto::reduce_xml_to_signed(
            &xml,
            std::slice::from_ref(&k.cert),
            ReduceMode::ValidateAndMarkNoAncestors,
        )
        .unwrap();
        let root = if sign_response {
            "<samlp:Response"
        } else {
            "<saml:Assertion"
        };
        assert!(reduced.contains(root), "{reduced}");
        for want in [
            "<saml:Audience>urn:sp</saml:Audience>",
            r#"Recipient="https://sp.example/acs""#,
            r#"InResponseTo="_req""#,
            r#"SessionIndex="_si""#,
            "a&lt;b&gt;&amp;c@example.com",
            "xml-exc-c14n",
            "rsa-sha256",
        ] {
            assert!(xml.contains(want), "{want} missing in {xml}");
        }
        assert!(!xml.contains("sha1"));
        // Another key's certificate does not verify it.
        assert!(
            Crypto::reduce_xml_to_signed(
                &xml,
                std::slice::from_ref(&key("k2").cert),
                ReduceMode::ValidateAndMarkNoAncestors,
            )
            .is_err()
        );
    }
}

#[test]
fn a_redirect_logout_request_round_trips_and_verifies() {
    let k = key("sp");
    let now = OffsetDateTime::now_utc();
    let (id, xml) = logout_request(now);
    let out = Outbound::carry(
        &k,
        HTTP_REDIRECT,
        &Url::parse(SLO).unwrap(),
        true,
        &xml,
        &id,
        Some("relay state/&="),
    )
    .unwrap();
    let q = redirect_query(&out);
    assert!(q.starts_with("tenant=1&SAMLRequest="), "{q}");
    let inbound = inbound_redirect(&out);
    assert_eq!(inbound.relay_state.as_deref(), Some("relay state/&="));
    assert!(inbound.is_signed());
    let m = Message::parse(&inbound.verified_xml(&k.cert).unwrap()).unwrap();
    assert_eq!(m.kind, Kind::LogoutRequest);
    assert_eq!(m.id(), Some(id.as_str()));
    assert_eq!(m.issuer.as_deref(), Some("https://sp.example/metadata"));
    assert_eq!(m.name_id, Some(name_id()));
    assert_eq!(m.session_indexes, ["_si-1"]);
    m.check_common(SLO, now).unwrap();
    // Another key, a changed RelayState, no signature: refused.
    assert!(inbound.verified_xml(&key("other").cert).is_err());
    let tampered = q.replace("RelayState=relay", "RelayState=Relay");
    let t = Inbound::from_redirect(&tampered, "SAMLRequest")
        .unwrap()
        .unwrap();
    assert!(t.verified_xml(&k.cert).is_err());
    let unsigned: String = q
        .split('&')
        .filter(|p| !p.starts_with("SigAlg=") && !p.starts_with("Signature="))
        .collect::<Vec<_>>()
        .join("&");
    let u = Inbound::from_redirect(&unsigned, "SAMLRequest")
        .unwrap()
        .unwrap();
    assert!(!u.is_signed());
    assert!(u.verified_xml(&k.cert).is_err());
    // A parameter twice is refused.
    assert!(Inbound::from_redirect(&format!("{q}&RelayState=x"), "SAMLRequest").is_err());
}

#[test]
fn a_sha1_query_signature_is_refused() {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let pem = pkey.private_key_to_pem_pkcs8().unwrap();
    let k = IdpKey::from_pem(
        std::str::from_utf8(&pem).unwrap(),
        "s",
        OffsetDateTime::now_utc(),
        "sp",
    )
    .unwrap();
    let (_, xml) = logout_request(OffsetDateTime::now_utc());
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflate, xml.as_bytes()).unwrap();
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let signed = format!(
        "SAMLRequest={}&SigAlg={}",
        enc(&STANDARD.encode(deflate.finish().unwrap())),
        enc("http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    );
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &pkey).unwrap();
    signer.update(signed.as_bytes()).unwrap();
    let sig = STANDARD.encode(signer.sign_to_vec().unwrap());
    let q = format!("{signed}&Signature={}", enc(&sig));
    let inbound = Inbound::from_redirect(&q, "SAMLRequest").unwrap().unwrap();
    let err = inbound.verified_xml(&k.cert).unwrap_err().to_string();
    assert!(err.contains("SHA-1"), "{err}");
}

#[test]
fn a_posted_logout_request_verifies_and_a_wrapped_one_does_not() {
    let k = key("sp");
    let now = OffsetDateTime::now_utc();
    let (id, xml) = logout_request(now);
    let Outbound::Post { value, field, .. } = Outbound::carry(
        &k,
        HTTP_POST,
        &Url::parse(SLO).unwrap(),
        true,
        &xml,
        &id,
        None,
    )
    .unwrap() else {
        panic!("not a POST")
    };
    assert_eq!(field, "SAMLRequest");
    let inbound = Inbound::from_post(&value, None).unwrap();
    let m = Message::parse(&inbound.verified_xml(&k.cert).unwrap()).unwrap();
    assert_eq!(m.id(), Some(id.as_str()));
    assert_eq!(m.name_id, Some(name_id()));

    // Wrapping: the signed request hidden inside an unsigned one with another ID and NameID.
    let signed = String::from_utf8(STANDARD.decode(&value).unwrap()).unwrap();
    let inner = signed.trim_start_matches(|c| c != '<');
    let outer = format!(
        r#"<samlp:LogoutRequest xmlns:samlp="{PROTOCOL_NS}" xmlns:saml="{ASSERTION_NS}" ID="_evil" Version="2.0" IssueInstant="{}" Destination="{SLO}"><saml:Issuer>https://sp.example/metadata</saml:Issuer><samlp:Extensions>{inner}</samlp:Extensions><saml:NameID>auth0|bob</saml:NameID></samlp:LogoutRequest>"#,
        instant(now)
    );
    let wrapped = Inbound::from_post(&STANDARD.encode(&outer), None).unwrap();
    assert!(wrapped.is_signed());
    assert!(wrapped.verified_xml(&k.cert).is_err());
}

#[test]
fn dtds_are_refused_before_anything_is_parsed() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a" Version="2.0">&x;</samlp:LogoutRequest>"#;
    assert!(Inbound::from_post(&STANDARD.encode(xxe), None).is_err());
    assert!(Message::parse(xxe).is_err());
}

#[test]
fn common_checks_refuse_stale_misdirected_and_expired_messages() {
    let now = OffsetDateTime::now_utc();
    let parse = |xml: &str| Message::parse(xml).unwrap();
    let (_, fresh) = logout_request(now);
    parse(&fresh).check_common(SLO, now).unwrap();
    assert!(
        parse(&fresh)
            .check_common("https://elsewhere/slo", now)
            .is_err()
    );
    let (_, old) = logout_request(now - Duration::minutes(10));
    assert!(parse(&old).check_common(SLO, now).is_err());
    let (_, future) = logout_request(now + Duration::minutes(5));
    assert!(parse(&future).check_common(SLO, now).is_err());
    let id = new_id();
    let expired = logout_request_xml(
        &id,
        "sp",
        SLO,
        &name_id(),
        None,
        now - Duration::minutes(3),
        Some(now - Duration::minutes(2)),
    );
    let err = parse(&expired)
        .check_common(SLO, now)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NotOnOrAfter"), "{err}");
    assert!(
        parse(&fresh.replace("Version=\"2.0\"", "Version=\"1.1\""))
            .check_common(SLO, now)
            .is_err()
    );
}

#[test]
fn logout_responses_carry_nested_status_codes() {
    let now = OffsetDateTime::now_utc();
    let xml = logout_response_xml(
        &new_id(),
        "https://latch.test",
        SLO,
        Some("_req"),
        STATUS_RESPONDER,
        Some(STATUS_PARTIAL_LOGOUT),
        now,
    );
    let m = Message::parse(&xml).unwrap();
    assert_eq!(m.kind, Kind::LogoutResponse);
    assert_eq!(m.attr("InResponseTo"), Some("_req"));
    assert_eq!(m.status, [STATUS_RESPONDER, STATUS_PARTIAL_LOGOUT]);
    // Only protocol messages are read.
    assert!(Message::parse("<Response/>").is_err());
    assert!(
        Message::parse("<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>")
            .is_err()
    );
}

#[test]
fn idp_metadata_lists_both_bindings_and_every_certificate() {
    let (a, b) = (key("a"), key("b"));
    let md = idp_metadata(&IdpMetadata {
        entity_id: "https://latch.test",
        sso_url: "https://latch.test/samlp/c1",
        slo_url: "https://latch.test/samlp/c1/logout",
        certs: &[&a.cert, &b.cert],
        want_requests_signed: true,
    });
    let parsed: latch_saml::samael::metadata::EntityDescriptor = md.parse().unwrap();
    assert_eq!(parsed.entity_id.as_deref(), Some("https://latch.test"));
    let idp = &parsed.idp_sso_descriptors.unwrap()[0];
    assert_eq!(idp.key_descriptors.len(), 2);
    assert_eq!(idp.single_sign_on_services.len(), 2);
    assert_eq!(idp.single_logout_services.len(), 2);
    assert_eq!(idp.want_authn_requests_signed, Some(true));
}

/// xmlsec fetches a Reference's URI and runs its transforms before it checks the signature
/// value: a message whose signature is not shaped like Latch's own is refused before xmlsec
/// sees it (a `file:///dev/zero` URI would never return; an `http:` one would be fetched).
#[test]
fn signatures_of_any_other_shape_are_refused_unread() {
    let k = key("sp");
    let now = OffsetDateTime::now_utc();
    let (id, xml) = logout_request(now);
    let Outbound::Post { value, .. } = Outbound::carry(
        &k,
        HTTP_POST,
        &Url::parse(SLO).unwrap(),
        true,
        &xml,
        &id,
        None,
    )
    .unwrap() else {
        panic!("not a POST")
    };
    let signed = String::from_utf8(STANDARD.decode(&value).unwrap()).unwrap();
    let xslt = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/></ds:Transform>"#;
    let cases = [
        ("a file: URI", signed.replace(&format!("URI=\"#{id}\""), "URI=\"file:///dev/zero\"")),
        ("an http: URI", signed.replace(&format!("URI=\"#{id}\""), "URI=\"http://127.0.0.1:9/x\"")),
        ("another element", signed.replace(&format!("URI=\"#{id}\""), "URI=\"#_other\"")),
        ("an XSLT transform", signed.replace("<ds:Transforms>", &format!("<ds:Transforms>{xslt}"))),
        (
            "an XPath transform",
            signed.replace(
                "<ds:Transforms>",
                r#"<ds:Transforms><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>1</ds:XPath></ds:Transform>"#,
            ),
        ),
        (
            "a second Reference",
            signed.replace("</ds:SignedInfo>", &format!(r##"<ds:Reference URI="#{id}"></ds:Reference></ds:SignedInfo>"##)),
        ),
        (
            "a RetrievalMethod",
            signed.replace("<ds:KeyInfo>", r#"<ds:KeyInfo><ds:RetrievalMethod URI="file:///dev/zero"/>"#),
        ),
        (
            "an Object",
            signed.replace("</ds:Signature>", "<ds:Object>x</ds:Object></ds:Signature>"),
        ),
    ];
    for (what, xml) in cases {
        assert_ne!(xml, signed, "{what}: the case changed nothing");
        let inbound = Inbound::from_post(&STANDARD.encode(&xml), None).unwrap();
        let err = inbound.verified_xml(&k.cert).unwrap_err().to_string();
        assert!(err.contains("signature refused"), "{what}: {err}");
    }
    // An encoding other than UTF-8 (a DTD could hide in UTF-7) is refused before parsing.
    let utf7 = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>{}",
        signed.trim_start_matches(|c| c != '<')
    );
    assert!(Inbound::from_post(&STANDARD.encode(utf7), None).is_err());
    let declared = format!("<?xml version=\"1.0\" encoding='utf-8'?>{signed}");
    assert!(Inbound::from_post(&STANDARD.encode(declared), None).is_ok());
    // A far-future NotOnOrAfter is refused, not a panic.
    let far = logout_request_xml(
        &new_id(),
        "sp",
        SLO,
        &name_id(),
        None,
        now,
        Some(
            OffsetDateTime::parse(
                "9999-12-31T23:59:59Z",
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap(),
        ),
    );
    assert!(
        Message::parse(&far)
            .unwrap()
            .check_common(SLO, now)
            .is_err()
    );
}
