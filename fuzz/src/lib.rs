//! What the fuzz targets share: the fixture keys (test-only, made by
//! `crates/latch-server/tests/it/fuzz_seeds.rs` together with the seed corpus), the fixed "now"
//! the seed tokens are valid at, and the two ways a target turns its input into a token.
//!
//! Token targets read their input as: first byte even → the rest is the token as sent; first
//! byte odd → the rest is `header JSON` `\n` `claims JSON`, base64url-encoded and signed here
//! with the fixture ES256 key, so mutations of the claims get past the signature check and
//! reach the claim checks behind it.

use actix_web::FromRequest;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::test::TestRequest;
use actix_web::web;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use latch_core::model::SigningAlg;
use latch_jose::keys::Signer;
use serde::de::DeserializeOwned;

/// The instant (Unix seconds) the seed tokens were issued at; targets check tokens against it.
pub const NOW: i64 = 1_800_000_000;
/// The fixture ES256 private key (PKCS#8 PEM). A test key, nothing else.
pub const ES256_PEM: &str = include_str!("../fixtures/es256.pem");
/// The certificate of the SAML IdP that signed the `saml_response` seeds.
pub const SAML_IDP_CERT: &str = include_str!("../fixtures/saml-idp.pem");
/// The SP values the `saml_response` seeds were made for.
pub const SAML_SP_ENTITY_ID: &str = "urn:latch:fuzz.example:saml";
pub const SAML_ACS_URL: &str = "https://fuzz.example/login/callback?connection=saml";
pub const SAML_REQUEST_ID: &str = "_fuzz-authn-request";
/// What the GTR and back-channel seeds carry.
pub const ISSUER: &str = "https://idp.fuzz.example";
pub const CLIENT_ID: &str = "0oaFUZZAPP";
pub const GTR_AUDIENCE: &str = "https://fuzz.example/oauth/global-token-revocation/connection/okta";

pub struct Keys {
    pub signer: Signer,
    pub jwk: Jwk,
    pub jwks: JwkSet,
    pub key: DecodingKey,
}

/// The fixture key, parsed once per process.
pub fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = Signer::from_pem(SigningAlg::ES256, ES256_PEM).expect("fixtures/es256.pem");
        let public = signer.public_jwk(SigningAlg::ES256);
        let jwk: Jwk = serde_json::from_value(public).expect("a JWK");
        let key = DecodingKey::from_jwk(&jwk).expect("a verifying key");
        Keys {
            signer,
            jwks: JwkSet {
                keys: vec![jwk.clone()],
            },
            jwk,
            key,
        }
    })
}

/// The token an input stands for (see the module docs), or `None` for input that is not UTF-8.
pub fn token(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let (header, claims) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
    Some(sign(header, claims))
}

/// `base64url(header).base64url(claims).signature` with the fixture key.
pub fn sign(header: &[u8], claims: &[u8]) -> String {
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let sig = keys().signer.sign(out.as_bytes()).expect("ES256 signs");
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    out
}

/// Runs actix-web's own `web::Form<T>` extractor over `body`, as the route does (content type
/// `application/x-www-form-urlencoded`, the route's `FormConfig` limit).
pub fn form<T: DeserializeOwned + 'static>(body: &[u8], limit: usize) -> Option<T> {
    thread_local! {
        static RT: actix_web::rt::SystemRunner = actix_web::rt::System::new();
    }
    let (req, mut payload) = TestRequest::post()
        .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"))
        .app_data(web::FormConfig::default().limit(limit))
        .set_payload(body.to_vec())
        .to_http_parts();
    RT.with(|rt| rt.block_on(web::Form::<T>::from_request(&req, &mut payload)))
        .ok()
        .map(web::Form::into_inner)
}
