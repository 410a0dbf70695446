//! A SAML Response at the ACS: `latch_saml::verify_response` with the fixture IdP's
//! certificate. First byte even → the rest is the XML (base64-encoded here, as the browser
//! posts it); odd → the rest is the `SAMLResponse` form value itself.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_fuzz::{SAML_ACS_URL, SAML_IDP_CERT, SAML_REQUEST_ID, SAML_SP_ENTITY_ID};
use latch_saml::{IdpConfig, SpConfig, parse_certificate, verify_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static CONFIG: std::sync::OnceLock<(SpConfig, IdpConfig)> = std::sync::OnceLock::new();
    let (sp, idp) = CONFIG.get_or_init(|| {
        let cert = parse_certificate(SAML_IDP_CERT).expect("fixtures/saml-idp.pem");
        (
            SpConfig {
                entity_id: SAML_SP_ENTITY_ID.into(),
                acs_url: SAML_ACS_URL.into(),
                slo_url: None,
                signing_certs: Vec::new(),
            },
            IdpConfig {
                entity_id: Some("https://idp.fuzz.example/saml".into()),
                sso_url: "https://idp.fuzz.example/sso".into(),
                slo_url: None,
                slo_post_url: None,
                certs: vec![cert],
            },
        )
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let posted = if mode & 1 == 0 {
        STANDARD.encode(rest)
    } else {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        }
    };
    let _ = verify_response(sp, idp, &posted, SAML_REQUEST_ID);
});
