//! A SAML app's message to Latch's IdP endpoints (`/samlp/{client_id}`, `/samlp/{client_id}/logout`):
//! the binding decoders `latch_saml::idp::Inbound`, the message reader `Message::parse` and its
//! common checks, and signature verification against the fixture certificate. First byte mod 3:
//! 0 → the rest is an HTTP-Redirect query string; 1 → an HTTP-POST form value (base64 XML);
//! 2 → the XML itself.
#![no_main]

use latch_fuzz::{NOW, SAML_IDP_CERT};
use latch_saml::idp::{Inbound, Message};
use latch_saml::parse_certificate;
use libfuzzer_sys::fuzz_target;

const ENDPOINT: &str = "https://fuzz.example/samlp/app/logout";

fuzz_target!(|data: &[u8]| {
    static CERT: std::sync::OnceLock<latch_saml::samael::crypto::CertificateDer> =
        std::sync::OnceLock::new();
    let cert = CERT.get_or_init(|| parse_certificate(SAML_IDP_CERT).expect("fixtures/saml-idp.pem"));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let now = time::OffsetDateTime::from_unix_timestamp(NOW).expect("NOW");
    let inbound = match mode % 3 {
        0 => match Inbound::from_redirect(text, "SAMLRequest") {
            Ok(Some(i)) => i,
            _ => return,
        },
        1 => match Inbound::from_post(text, None) {
            Ok(i) => i,
            Err(_) => return,
        },
        _ => {
            if let Ok(m) = Message::parse(text) {
                let _ = m.check_common(ENDPOINT, now);
            }
            return;
        }
    };
    if let Ok(m) = Message::parse(&inbound.xml) {
        let _ = m.check_common(ENDPOINT, now);
    }
    if inbound.is_signed() {
        let _ = inbound.verified_xml(cert);
    }
    let _ = inbound.as_redirect_query("SAMLRequest");
});
