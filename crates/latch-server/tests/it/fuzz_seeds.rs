//! The fuzz seeds (`fuzz/corpus/<target>/`) and the fixture keys they are made with
//! (`fuzz/fixtures/`). `LATCH_FUZZ_SEEDS=write cargo test -p latch-server --test it fuzz_seeds`
//! makes them anew (a new ES256 key, a new SAML IdP); every run checks that the committed seeds
//! still pass what a fuzzer cannot forge (signatures, well-formed encodings), so fuzzing keeps
//! reaching the checks behind them. `no_panic` replays them against the routes.
//!
//! The constants below are `fuzz/src/lib.rs`'s: the fuzz crate is not in this workspace.

use std::path::{Path, PathBuf};

use actix_web::FromRequest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use latch_core::model::SigningAlg;
use latch_jose::keys::Signer;
use serde_json::{Value, json};

pub const NOW: i64 = 1_800_000_000;
pub const ISSUER: &str = "https://idp.fuzz.example";
pub const CLIENT_ID: &str = "0oaFUZZAPP";
/// Latch's issuer in the fuzz fixtures.
pub const LATCH_ISSUER: &str = "https://fuzz.example";
pub const GTR_AUDIENCE: &str = "https://fuzz.example/oauth/global-token-revocation/connection/okta";
pub const SAML_IDP_ENTITY_ID: &str = "https://idp.fuzz.example/saml";
pub const SAML_SP_ENTITY_ID: &str = "urn:latch:fuzz.example:saml";
pub const SAML_ACS_URL: &str = "https://fuzz.example/login/callback?connection=saml";
pub const SAML_REQUEST_ID: &str = "_fuzz-authn-request";
/// The master key `jose_sealed`'s seeds are sealed under.
pub const SEALER_KEY: [u8; 32] = [7; 32];
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The seeds of one target, by file name.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// The fixture key.
pub struct Keys {
    pub signer: Signer,
    pub jwk: Jwk,
    pub key: DecodingKey,
}

impl Keys {
    pub fn load() -> Self {
        let pem = std::fs::read_to_string(fuzz_dir().join("fixtures/es256.pem")).unwrap();
        let signer = Signer::from_pem(SigningAlg::ES256, &pem).unwrap();
        let jwk: Jwk = serde_json::from_value(signer.public_jwk(SigningAlg::ES256)).unwrap();
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        Self { signer, jwk, key }
    }

    pub fn kid(&self) -> String {
        self.jwk.common.key_id.clone().unwrap()
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [serde_json::to_value(&self.jwk).unwrap()] })
    }

    /// `base64url(header).base64url(claims).signature`.
    pub fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let mut out = URL_SAFE_NO_PAD.encode(header);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let sig = self.signer.sign(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    /// A token target's input as `fuzz/src/lib.rs` reads it: first byte even → the rest is the
    /// token; odd → `header JSON` `\n` `claims JSON`, signed here.
    pub fn token_of(&self, data: &[u8]) -> Option<String> {
        let (&mode, rest) = data.split_first()?;
        if mode & 1 == 0 {
            return std::str::from_utf8(rest).ok().map(str::to_owned);
        }
        let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        Some(self.sign(&rest[..cut], rest.get(cut + 1..).unwrap_or_default()))
    }
}

fn gtr_claims(jti: &str) -> Value {
    json!({"iss": ISSUER, "sub": CLIENT_ID, "aud": GTR_AUDIENCE, "iat": NOW, "nbf": NOW - 300,
        "exp": NOW + 300, "jti": jti})
}

fn logout_claims(jti: &str) -> Value {
    json!({"iss": ISSUER, "aud": CLIENT_ID, "iat": NOW, "exp": NOW + 120, "jti": jti,
        "sub": "00uALICE", "sid": "upstream-sid-1", "events": {BACKCHANNEL_EVENT: {}}})
}

fn header(k: &Keys, typ: &str) -> Value {
    json!({"alg": "ES256", "kid": k.kid(), "typ": typ})
}

fn raw(token: &str) -> Vec<u8> {
    [b"T".as_slice(), token.as_bytes()].concat()
}

fn signed(header: &Value, claims: &Value) -> Vec<u8> {
    format!("S{header}\n{claims}").into_bytes()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// Writes `fuzz/fixtures/` and every target's seeds.
fn write_seeds() {
    let dir = fuzz_dir();
    let signer = Signer::generate(SigningAlg::ES256).unwrap();
    std::fs::write(
        dir.join("fixtures/es256.pem"),
        signer.to_pem().unwrap().expose(),
    )
    .unwrap();
    let idp = latch_testkit::saml::TestIdp::new(SAML_IDP_ENTITY_ID);
    std::fs::write(dir.join("fixtures/saml-idp.pem"), idp.cert_pem()).unwrap();
    let k = Keys::load();

    let gtr_token = k.sign(
        header(&k, "global-token-revocation+jwt")
            .to_string()
            .as_bytes(),
        gtr_claims("jti-gtr-1").to_string().as_bytes(),
    );
    let logout_token = k.sign(
        header(&k, "logout+jwt").to_string().as_bytes(),
        logout_claims("jti-bcl-1").to_string().as_bytes(),
    );
    let id_token = k.sign(
        header(&k, "JWT").to_string().as_bytes(),
        json!({"iss": ISSUER, "sub": "00uALICE", "aud": CLIENT_ID, "iat": NOW, "exp": NOW + 3600,
            "nonce": "n-1", "sid": "upstream-sid-1"})
        .to_string()
        .as_bytes(),
    );
    let rsa = Signer::generate(SigningAlg::RS256).unwrap();
    let ed = Signer::generate(SigningAlg::EdDSA).unwrap();
    let sealed = latch_jose::TokenSealer::derive(&SEALER_KEY).seal(&json!({
        "iss": LATCH_ISSUER, "sub": "auth0|alice", "aud": [format!("{LATCH_ISSUER}/userinfo")],
        "iat": NOW, "exp": NOW + 86400, "scope": "openid profile email", "client_id": "app",
        "gid": "grant-1"}));
    let saml_spec = |sign| latch_testkit::saml::Spec {
        audience: SAML_SP_ENTITY_ID.into(),
        acs_url: SAML_ACS_URL.into(),
        in_response_to: SAML_REQUEST_ID.into(),
        sign,
        ..Default::default()
    };
    let saml_xml = idp.response_xml(&saml_spec(latch_testkit::saml::Sign::Assertion));
    let saml_signed_response = idp.response_xml(&saml_spec(latch_testkit::saml::Sign::Response));
    let saml_b64_wrapped = STANDARD
        .encode(&saml_xml)
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let metadata = idp.metadata("https://idp.fuzz.example/sso");
    let metadata_slo = metadata.replace(
        "<md:SingleSignOnService",
        r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.fuzz.example/slo"/><md:SingleSignOnService"#,
    );
    let pem = idp.cert_pem();

    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        ("gtr_body", "okta-iss-sub.json", json!({"subject": {"format": "iss_sub", "iss": ISSUER, "sub": "00uALICE"}}).to_string().into_bytes()),
        ("gtr_body", "okta-email.json", json!({"subject": {"format": "email", "email": "alice@example.com"}}).to_string().into_bytes()),
        ("gtr_body", "draft-sub-id.json", json!({"sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": "00uALICE"}}).to_string().into_bytes()),
        ("gtr_token", "okta-token", raw(&gtr_token)),
        ("gtr_token", "okta-claims-signed", signed(&header(&k, "global-token-revocation+jwt"), &gtr_claims("jti-gtr-2"))),
        ("backchannel_logout_token", "logout-token", raw(&logout_token)),
        ("backchannel_logout_token", "logout-claims-signed", signed(&header(&k, "logout+jwt"), &logout_claims("jti-bcl-2"))),
        ("backchannel_logout_token", "sid-only-signed", signed(&header(&k, "logout+jwt"), &json!({"iss": ISSUER, "aud": [CLIENT_ID], "iat": NOW, "jti": "jti-bcl-3", "sid": "upstream-sid-1", "events": {BACKCHANNEL_EVENT: {}}}))),
        ("jose_jwks", "id-token", raw(&id_token)),
        ("jose_jwks", "jwks-es256", [b"K".as_slice(), k.jwks().to_string().as_bytes()].concat()),
        ("jose_jwks", "jwks-rs256-eddsa", [b"K".as_slice(), json!({"keys": [rsa.public_jwk(SigningAlg::RS256), ed.public_jwk(SigningAlg::EdDSA), serde_json::to_value(&k.jwk).unwrap()]}).to_string().as_bytes()].concat()),
        ("jose_sealed", "access-token", sealed.clone().into_bytes()),
        ("saml_response", "assertion-signed.xml", [b"X".as_slice(), saml_xml.as_bytes()].concat()),
        ("saml_response", "response-signed.xml", [b"X".as_slice(), saml_signed_response.as_bytes()].concat()),
        ("saml_response", "posted-base64", [b"Y".as_slice(), saml_b64_wrapped.as_bytes()].concat()),
        ("saml_idp_metadata", "idp.xml", metadata.clone().into_bytes()),
        ("saml_idp_metadata", "idp-slo.xml", metadata_slo.into_bytes()),
        ("saml_certificate", "cert.pem", pem.clone().into_bytes()),
        ("saml_certificate", "cert.b64", idp.cert_base64().into_bytes()),
        ("saml_certificate", "auth0-pem.b64", STANDARD.encode(&pem).into_bytes()),
        ("form_login", "sign-in", form(&[("tx", "tx-0123456789abcdef"), ("email", "alice@example.com"), ("password", "Correct-Horse-9")])),
        ("form_token", "authorization-code", form(&[("grant_type", "authorization_code"), ("code", "c0de"), ("redirect_uri", "https://app.example/cb"), ("code_verifier", "v3rifier-0123456789-0123456789-0123456789-abc"), ("client_id", "app"), ("client_secret", "s3cret")])),
        ("form_token", "refresh-token", form(&[("grant_type", "refresh_token"), ("refresh_token", "rt-0123456789"), ("scope", "openid offline_access"), ("client_id", "app")])),
        ("form_token", "client-credentials", form(&[("grant_type", "client_credentials"), ("audience", "https://fuzz.example/api/v2/"), ("scope", "read:users"), ("client_id", "app"), ("client_secret", "s3cret")])),
        ("form_logout", "rp-logout", form(&[("id_token_hint", &id_token), ("client_id", "app"), ("post_logout_redirect_uri", "https://app.example/bye"), ("state", "st-1"), ("ui_locales", "en")])),
        ("form_logout", "confirm", form(&[("confirm", "confirm-0123456789"), ("state", "st-1")])),
        ("form_revoke", "refresh-token", form(&[("token", "rt-0123456789"), ("token_type_hint", "refresh_token"), ("client_id", "app"), ("client_secret", "s3cret")])),
        ("form_revoke", "access-token", form(&[("token", &sealed), ("token_type_hint", "access_token"), ("client_id", "app"), ("client_secret", "s3cret")])),
        ("form_saml_callback", "acs", form(&[("SAMLResponse", &STANDARD.encode(&saml_xml)), ("RelayState", "tx-0123456789abcdef")])),
        ("form_backchannel_logout", "logout-token", form(&[("logout_token", &logout_token)])),
    ];
    for (target, name, data) in seeds {
        let d = dir.join("corpus").join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), data).unwrap();
    }
}

fn form_ok<T: serde::de::DeserializeOwned + 'static>(body: &[u8]) -> bool {
    let (req, mut payload) = actix_web::test::TestRequest::post()
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(body.to_vec())
        .to_http_parts();
    futures_util::FutureExt::now_or_never(actix_web::web::Form::<T>::from_request(
        &req,
        &mut payload,
    ))
    .is_some_and(|r| r.is_ok())
}

#[test]
fn fuzz_seeds_pass_what_a_fuzzer_cannot_forge() {
    if std::env::var("LATCH_FUZZ_SEEDS").as_deref() == Ok("write") {
        write_seeds();
    }
    let k = Keys::load();
    for (name, data) in corpus("gtr_body") {
        let r = latch_gtr::parse_body(Some("application/json"), &data);
        assert!(r.is_ok(), "gtr_body/{name}: {r:?}");
    }
    let want = latch_gtr::Expected {
        iss: ISSUER,
        aud: GTR_AUDIENCE,
        sub: CLIENT_ID,
    };
    for (name, data) in corpus("gtr_token") {
        let t = k.token_of(&data).unwrap();
        let r = latch_gtr::check_header(&t)
            .and_then(|h| latch_gtr::check_token(&t, &h, &k.jwk, &k.key, &want, NOW));
        assert!(r.is_ok(), "gtr_token/{name}: {r:?}");
    }
    use latch_federation::backchannel_in::{check_header, check_token};
    for (name, data) in corpus("backchannel_logout_token") {
        let t = k.token_of(&data).unwrap();
        let r = check_header(&t).and_then(|h| check_token(&t, &h, &k.key, ISSUER, CLIENT_ID, NOW));
        assert!(r.is_ok(), "backchannel_logout_token/{name}: {r:?}");
    }
    let jwks = JwkSet {
        keys: vec![k.jwk.clone()],
    };
    for (name, data) in corpus("jose_jwks") {
        let (mode, rest) = data.split_first().unwrap();
        if mode & 1 == 0 {
            let r = latch_remote::verify_with_jwks(
                std::str::from_utf8(rest).unwrap(),
                &jwks,
                latch_remote::REMOTE_ALGORITHMS,
            );
            assert!(r.is_ok(), "jose_jwks/{name}: {r:?}");
        } else {
            let set: JwkSet = serde_json::from_slice(rest).unwrap();
            assert!(
                set.keys.iter().all(|j| DecodingKey::from_jwk(j).is_ok()),
                "jose_jwks/{name}"
            );
        }
    }
    let sealer = latch_jose::TokenSealer::derive(&SEALER_KEY);
    for (name, data) in corpus("jose_sealed") {
        assert!(
            sealer.open(std::str::from_utf8(&data).unwrap()).is_some(),
            "jose_sealed/{name}"
        );
    }
    let cert = std::fs::read_to_string(fuzz_dir().join("fixtures/saml-idp.pem")).unwrap();
    let idp = latch_saml::IdpConfig {
        entity_id: Some(SAML_IDP_ENTITY_ID.into()),
        sso_url: "https://idp.fuzz.example/sso".into(),
        slo_url: None,
        slo_post_url: None,
        certs: vec![latch_saml::parse_certificate(&cert).unwrap()],
    };
    let sp = latch_saml::SpConfig {
        entity_id: SAML_SP_ENTITY_ID.into(),
        acs_url: SAML_ACS_URL.into(),
        slo_url: None,
        signing_certs: Vec::new(),
    };
    for (name, data) in corpus("saml_response") {
        let (mode, rest) = data.split_first().unwrap();
        let posted = if mode & 1 == 0 {
            STANDARD.encode(rest)
        } else {
            String::from_utf8(rest.to_vec()).unwrap()
        };
        // The signature verifies; only time (the seed was signed when it was made) may fail.
        match latch_saml::verify_response(&sp, &idp, &posted, SAML_REQUEST_ID) {
            Ok(_) => {}
            Err(latch_saml::SamlError::Rejected(why))
                if why.contains("expired") || why.contains("not valid until") => {}
            Err(e) => panic!("saml_response/{name}: {e}"),
        }
    }
    for (name, data) in corpus("saml_idp_metadata") {
        let r = latch_saml::parse_idp_metadata(std::str::from_utf8(&data).unwrap());
        assert!(r.is_ok(), "saml_idp_metadata/{name}: {r:?}");
    }
    for (name, data) in corpus("saml_certificate") {
        let r = latch_saml::parse_certificate(std::str::from_utf8(&data).unwrap());
        assert!(r.is_ok(), "saml_certificate/{name}: {r:?}");
    }
    // A SAML app's messages: each decodes in its binding and reads as a protocol message.
    for (name, data) in corpus("saml_app_message") {
        use latch_saml::idp::{Inbound, Message};
        let (mode, rest) = data.split_first().unwrap();
        let text = std::str::from_utf8(rest).unwrap();
        let xml = match mode % 3 {
            0 => {
                Inbound::from_redirect(text, "SAMLRequest")
                    .unwrap()
                    .unwrap()
                    .xml
            }
            1 => Inbound::from_post(text, None).unwrap().xml,
            _ => text.to_owned(),
        };
        let r = Message::parse(&xml);
        assert!(r.is_ok(), "saml_app_message/{name}: {r:?}");
    }
    use latch_oidc::endpoints::{logout, revoke, token};
    type Parses = fn(&[u8]) -> bool;
    let forms: [(&str, Parses); 6] = [
        ("form_login", form_ok::<latch_login::LoginForm>),
        ("form_token", form_ok::<token::TokenForm>),
        ("form_logout", form_ok::<logout::LogoutParams>),
        ("form_revoke", form_ok::<revoke::TokenForm>),
        ("form_saml_callback", form_ok::<latch_login::AcsForm>),
        (
            "form_backchannel_logout",
            form_ok::<latch_federation::backchannel_in::Form>,
        ),
    ];
    for (target, ok) in forms {
        for (name, data) in corpus(target) {
            assert!(ok(&data), "{target}/{name} is not a form of its route");
        }
    }
}
