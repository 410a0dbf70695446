//! Every check on a SAML Response, one at a time: answers signed by xmlsec (through samael) by a
//! test IdP, right except in the one way each case says.

#![allow(clippy::unwrap_used)]

use latch_saml::{IdpConfig, SpConfig, parse_certificate, parse_idp_metadata, verify_response};
use latch_testkit::saml::{Sign, Spec, TestIdp, encode};

const REQ: &str = "_req-1";

fn sp() -> SpConfig {
    SpConfig {
        entity_id: "urn:latch:127.0.0.1:acme".into(),
        acs_url: "http://127.0.0.1:8080/login/callback?connection=acme".into(),
        slo_url: None,
        signing_certs: Vec::new(),
    }
}

fn idp_config(idp: &TestIdp) -> IdpConfig {
    parse_idp_metadata(&idp.metadata("http://127.0.0.1:9/sso")).unwrap()
}

fn good() -> Spec {
    let sp = sp();
    Spec {
        audience: sp.entity_id,
        acs_url: sp.acs_url,
        in_response_to: REQ.into(),
        ..Spec::default()
    }
}

#[test]
fn a_signed_assertion_is_accepted_with_its_subject_session_and_attributes() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let spec = good();
    let v = verify_response(&sp(), &idp_config(&idp), &idp.response(&spec), REQ).unwrap();
    assert_eq!(v.issuer, "https://idp.example.com/saml");
    assert_eq!(v.name_id, "alice@example.com");
    assert_eq!(
        v.name_id_format.as_deref(),
        Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
    );
    assert_eq!(
        v.session_index.as_deref(),
        Some(spec.session_index.as_str())
    );
    assert_eq!(v.assertion_id, spec.assertion_id);
    assert_eq!(v.attribute(&["givenName"]), Some("Alice"));
    assert!(v.replay_until > time::OffsetDateTime::now_utc());
}

#[test]
fn a_signed_response_is_accepted() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let spec = Spec {
        sign: Sign::Response,
        ..good()
    };
    let v = verify_response(&sp(), &idp_config(&idp), &idp.response(&spec), REQ).unwrap();
    assert_eq!(v.name_id, "alice@example.com");
}

#[test]
fn configured_by_certificate_only_the_signed_issuer_is_recorded() {
    let idp = TestIdp::new("https://idp.example.com/by-cert");
    let cfg = IdpConfig {
        entity_id: None,
        sso_url: "http://127.0.0.1:9/sso".into(),
        slo_url: None,
        slo_post_url: None,
        certs: vec![parse_certificate(&idp.cert_pem()).unwrap()],
    };
    let v = verify_response(&sp(), &cfg, &idp.response(&good()), REQ).unwrap();
    assert_eq!(v.issuer, "https://idp.example.com/by-cert");
    // …and another key's answer still fails.
    let other = TestIdp::new("https://idp.example.com/by-cert");
    assert!(verify_response(&sp(), &cfg, &other.response(&good()), REQ).is_err());
}

fn rejected(idp: &TestIdp, b64: &str) -> String {
    match verify_response(&sp(), &idp_config(idp), b64, REQ) {
        Ok(v) => panic!("accepted {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejections() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let other = TestIdp::new("https://idp.example.com/saml");
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "unsigned",
            "must be signed",
            idp.response(&Spec {
                sign: Sign::Nothing,
                ..good()
            }),
        ),
        (
            "signed by another key",
            "must be signed",
            other.response(&good()),
        ),
        (
            "wrong audience",
            "AudienceRequirement",
            idp.response(&Spec {
                audience: "urn:someone-else".into(),
                ..good()
            }),
        ),
        (
            "wrong recipient and destination",
            "Recipient",
            idp.response(&Spec {
                acs_url: "http://127.0.0.1:8080/login/callback?connection=other".into(),
                ..good()
            }),
        ),
        (
            "answer to another request",
            "InResponseTo",
            idp.response(&Spec {
                in_response_to: "_req-2".into(),
                ..good()
            }),
        ),
        (
            "expired",
            "expired",
            idp.response(&Spec {
                shift: -3600,
                ..good()
            }),
        ),
        (
            "not yet valid",
            "not valid until",
            idp.response(&Spec {
                shift: 3600,
                ..good()
            }),
        ),
        (
            "another issuer",
            "Issuer does not match",
            idp.response(&Spec {
                issuer: Some("https://evil.example.com".into()),
                ..good()
            }),
        ),
        (
            "SHA-1 digest",
            "must be signed",
            idp.response(&Spec {
                sha1: true,
                ..good()
            }),
        ),
        ("not base64", "not base64", "%%%".into()),
        ("not XML", "no assertion", encode("hello")),
    ];
    for (name, why, b64) in cases {
        let e = rejected(&idp, &b64);
        assert!(e.contains(why), "{name}: {e}");
    }
}

#[test]
fn tampering_after_signing_breaks_the_signature() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let xml = idp.response_xml(&good());
    let tampered = xml.replace("alice@example.com", "mallory@example.com");
    assert_ne!(xml, tampered);
    rejected(&idp, &encode(&tampered));
}

/// The classic wrapping attacks: keep the signed assertion so the signature verifies, and
/// slip in an unsigned one for the parser to read.
#[test]
fn signature_wrapping_variants_are_refused() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let spec = good();
    let signed = idp.response_xml(&spec);
    let evil_spec = Spec {
        name_id: "mallory@example.com".into(),
        sign: Sign::Nothing,
        ..good()
    };
    let unsigned = idp.response_xml(&evil_spec);
    let evil = extract_assertion(&unsigned);
    let genuine = extract_assertion(&signed);

    // 1. An unsigned assertion injected before the signed one.
    let injected_before = signed.replacen(&genuine, &format!("{evil}{genuine}"), 1);
    // 2. …after it.
    let injected_after = signed.replacen(&genuine, &format!("{genuine}{evil}"), 1);
    // 3. The evil assertion in the normal place, the signed one hidden in Extensions.
    let hidden = signed.replacen(
        &genuine,
        &format!(
            "<saml2p:Extensions>{genuine}</saml2p:Extensions>{}",
            evil.replace(&evil_spec.assertion_id, &spec.assertion_id)
        ),
        1,
    );
    // 4. The evil assertion carrying the signed one's ID (duplicate IDs).
    let same_id = signed.replacen(
        &genuine,
        &format!(
            "{genuine}{}",
            evil.replace(&evil_spec.assertion_id, &spec.assertion_id)
        ),
        1,
    );
    for (name, xml) in [
        ("injected before", injected_before),
        ("injected after", injected_after),
        ("signed one hidden in Extensions", hidden),
        ("duplicate ID", same_id),
    ] {
        assert_ne!(xml, signed, "{name}: the variant was not built");
        let e = rejected(&idp, &encode(&xml));
        assert!(e.contains("2 assertions"), "{name}: {e}");
    }
}

fn extract_assertion(xml: &str) -> String {
    let start = xml.find("<saml2:Assertion").expect("assertion start");
    let end_tag = "</saml2:Assertion>";
    let end = xml.find(end_tag).expect("assertion end") + end_tag.len();
    xml[start..end].to_owned()
}

#[test]
fn xml_with_a_dtd_or_entities_is_refused() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let signed = idp.response_xml(&good());
    let body = signed
        .trim_start()
        .trim_start_matches(|c| c != '>')
        .trim_start_matches('>');
    let external = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>{body}"#
    );
    let e = rejected(&idp, &encode(&external));
    assert!(e.contains("DTD"), "{e}");
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>{body}"#
    );
    assert!(rejected(&idp, &encode(&laughs)).contains("DTD"));
}

#[test]
fn certificates_in_every_accepted_shape() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let pem = idp.cert_pem();
    let der = idp.cert_base64();
    let b64_pem = encode(&pem);
    for text in [&pem, &der, &b64_pem] {
        assert_eq!(
            parse_certificate(text).unwrap().der_data(),
            idp.cert.der_data()
        );
    }
    assert!(parse_certificate("not a certificate").is_err());
}

#[test]
fn metadata_without_a_signing_certificate_is_refused() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let md = idp.metadata("http://127.0.0.1:9/sso");
    let start = md.find("<md:KeyDescriptor").unwrap();
    let end = md.find("</md:KeyDescriptor>").unwrap() + "</md:KeyDescriptor>".len();
    let stripped = format!("{}{}", &md[..start], &md[end..]);
    assert!(parse_idp_metadata(&stripped).is_err());
    assert!(parse_idp_metadata("<!DOCTYPE x><x/>").is_err());
}

#[test]
fn sp_metadata_names_the_entity_and_the_post_acs() {
    let xml = latch_saml::sp_metadata(&sp()).unwrap();
    assert!(
        xml.contains(r#"entityID="urn:latch:127.0.0.1:acme""#),
        "{xml}"
    );
    assert!(
        xml.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
        "{xml}"
    );
    assert!(
        xml.contains("http://127.0.0.1:8080/login/callback?connection=acme"),
        "{xml}"
    );
}

#[test]
fn the_authn_request_names_latch_and_its_acs() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let r = latch_saml::authn_request(&sp(), &idp_config(&idp), "_abc", "tx-1", false).unwrap();
    assert!(r.url.starts_with("http://127.0.0.1:9/sso?SAMLRequest="));
    assert!(r.url.ends_with("&RelayState=tx-1"));
    let xml = latch_testkit::saml::authn_request_xml(&r.url);
    assert!(xml.contains(r#"ID="_abc""#), "{xml}");
    assert!(xml.contains("urn:latch:127.0.0.1:acme"), "{xml}");
    assert_eq!(latch_testkit::saml::authn_request_id(&r.url), "_abc");
}

#[test]
fn an_idp_refusal_is_reported_with_its_status() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let refusal = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" IssueInstant="2026-12-05T00:00:00Z" InResponseTo="_req-1"><saml:Issuer>https://idp.example.com/saml</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Requester"/><samlp:StatusMessage>User is not assigned to this application</samlp:StatusMessage></samlp:Status></samlp:Response>"#;
    let e = rejected(&idp, &encode(refusal));
    assert!(
        e.contains("status:Requester") && e.contains("not assigned"),
        "{e}"
    );
}

/// A signature failure is its own error, so a caller can refetch the IdP's metadata (a rolled
/// certificate) for that case alone.
#[test]
fn a_signature_failure_is_told_apart() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let other = TestIdp::new("https://idp.example.com/saml");
    let signed_by_other = verify_response(&sp(), &idp_config(&idp), &other.response(&good()), REQ);
    assert!(matches!(
        signed_by_other,
        Err(latch_saml::SamlError::Signature(_))
    ));
    let wrong_audience = Spec {
        audience: "urn:someone-else".into(),
        ..good()
    };
    let other_failure = verify_response(
        &sp(),
        &idp_config(&idp),
        &idp.response(&wrong_audience),
        REQ,
    );
    assert!(matches!(
        other_failure,
        Err(latch_saml::SamlError::Rejected(_))
    ));
}

/// A validly signed answer to another sign-in is refused before xmlsec runs: the fuzz target
/// `saml_response` found that reducing a verified document leaks it (libxml/samael), so a
/// captured answer replayed against fresh sign-ins must never reach the signature check. Shown
/// by a copy whose signature is broken too: it is refused for its `InResponseTo`, not its
/// signature.
#[test]
fn an_answer_to_another_request_is_refused_before_its_signature_is_checked() {
    let idp = TestIdp::new("https://idp.example.com/saml");
    let other_request = Spec {
        in_response_to: "_req-other".into(),
        ..good()
    };
    let xml = idp.response_xml(&other_request);
    for (name, doc) in [
        ("signed", xml.clone()),
        (
            "signed, then tampered",
            xml.replace("alice@example.com", "mallory@example.com"),
        ),
    ] {
        let e = verify_response(&sp(), &idp_config(&idp), &encode(&doc), REQ);
        match e {
            Err(latch_saml::SamlError::Rejected(why)) => assert!(
                why.contains("InResponseTo does not name this sign-in's AuthnRequest"),
                "{name}: {why}"
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    // The same answer for its own request still passes.
    verify_response(&sp(), &idp_config(&idp), &encode(&xml), "_req-other").unwrap();
}

#[test]
fn sp_metadata_lists_single_logout_and_signing_certificates() {
    let idp = TestIdp::new("https://idp.example.com/md");
    let cert = parse_certificate(&idp.cert_pem()).unwrap();
    let mut sp = sp();
    sp.slo_url = Some("http://127.0.0.1:8080/logout?connection=acme".into());
    sp.signing_certs = vec![cert.clone(), cert];
    let xml = latch_saml::sp_metadata(&sp).unwrap();
    for binding in ["HTTP-Redirect", "HTTP-POST"] {
        assert!(
            xml.contains(&format!(
                r#"SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="http://127.0.0.1:8080/logout?connection=acme""#
            )) || xml.contains(&format!(
                r#"SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="http://127.0.0.1:8080/logout?connection=acme""#
            ).replace('&', "&amp;")),
            "{xml}"
        );
    }
    // One KeyDescriptor per key, for signing.
    assert_eq!(
        xml.matches(r#"KeyDescriptor use="signing""#).count(),
        2,
        "{xml}"
    );
    // Without them, neither is listed.
    let bare = latch_saml::sp_metadata(&self::sp()).unwrap();
    assert!(!bare.contains("SingleLogoutService") && !bare.contains("KeyDescriptor"));
}
