//! A SAML IdP in a test's hands: a key and certificate, metadata, and signed Responses built to
//! order (right or wrong in exactly one way), signed by xmlsec through samael.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, Utc};
use samael::attribute::{Attribute, AttributeValue};
use samael::crypto::{CertificateDer, Crypto, CryptoProvider};
use samael::idp::{CertificateParams, IdentityProvider, KeyType, Rsa};
use samael::schema::{
    Assertion, AttributeStatement, AudienceRestriction, AuthnContext, AuthnContextClassRef,
    AuthnStatement, Conditions, Issuer, Response, Status, StatusCode, Subject, SubjectConfirmation,
    SubjectConfirmationData, SubjectNameID,
};
use samael::signature::{DigestAlgorithm, Signature};
use samael::traits::ToXml;

pub struct TestIdp {
    idp: IdentityProvider,
    pub cert: CertificateDer,
    pub entity_id: String,
}

/// Which element carries the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Assertion,
    Response,
    Nothing,
}

/// One Response. `Default` is a good one except for the fields a test must fill in
/// (`audience`, `acs_url`, `in_response_to`).
#[derive(Debug, Clone)]
pub struct Spec {
    pub name_id: String,
    pub name_id_format: String,
    pub audience: String,
    pub acs_url: String,
    pub in_response_to: String,
    /// Overrides the IdP's entity id as `Issuer`.
    pub issuer: Option<String>,
    pub sign: Sign,
    /// Seconds added to "now" for every instant (negative: an old answer).
    pub shift: i64,
    /// Lifetime of the assertion from its issue instant.
    pub lifetime: i64,
    pub assertion_id: String,
    pub session_index: String,
    pub attributes: Vec<(String, String)>,
    /// Sign with SHA-1 digests (refused by Latch).
    pub sha1: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            name_id: "alice@example.com".into(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
            audience: String::new(),
            acs_url: String::new(),
            in_response_to: String::new(),
            issuer: None,
            sign: Sign::Assertion,
            shift: 0,
            lifetime: 300,
            assertion_id: format!("_a{}", crate::env::unique()),
            session_index: format!("_s{}", crate::env::unique()),
            attributes: vec![
                ("email".into(), "alice@example.com".into()),
                ("givenName".into(), "Alice".into()),
                ("sn".into(), "Liddell".into()),
            ],
            sha1: false,
        }
    }
}

impl TestIdp {
    pub fn new(entity_id: &str) -> Self {
        let idp = IdentityProvider::generate_new(KeyType::Rsa(Rsa::Rsa2048)).expect("key");
        let cert = idp
            .create_certificate(&CertificateParams {
                common_name: "latch-test-idp",
                issuer_name: "latch-test-idp",
                days_until_expiration: 30,
            })
            .expect("certificate");
        Self {
            idp,
            cert,
            entity_id: entity_id.to_owned(),
        }
    }

    pub fn cert_base64(&self) -> String {
        STANDARD.encode(self.cert.der_data())
    }

    pub fn cert_pem(&self) -> String {
        let b = self.cert_base64();
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// IdP metadata with this IdP's certificate and an HTTP-Redirect SSO endpoint.
    pub fn metadata(&self, sso_url: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{e}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{s}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
            e = self.entity_id,
            c = self.cert_base64(),
            s = sso_url
        )
    }

    /// The Response as XML, signed as `spec.sign` says.
    pub fn response_xml(&self, spec: &Spec) -> String {
        let now = Utc::now() + Duration::seconds(spec.shift);
        let issuer = Issuer {
            value: Some(
                spec.issuer
                    .clone()
                    .unwrap_or_else(|| self.entity_id.clone()),
            ),
            ..Issuer::default()
        };
        let response_id = format!("_r{}", crate::env::unique());
        let template = |id: &str| {
            let mut s = Signature::template(id, &self.cert);
            let digest = if spec.sha1 {
                DigestAlgorithm::Sha1
            } else {
                DigestAlgorithm::Sha256
            };
            for r in &mut s.signed_info.reference {
                r.digest_method.algorithm = digest.clone();
            }
            s
        };
        let assertion = Assertion {
            id: spec.assertion_id.clone(),
            issue_instant: now,
            version: "2.0".into(),
            issuer: issuer.clone(),
            signature: (spec.sign == Sign::Assertion).then(|| template(&spec.assertion_id)),
            subject: Some(Subject {
                name_id: Some(SubjectNameID {
                    format: Some(spec.name_id_format.clone()),
                    value: spec.name_id.clone(),
                }),
                subject_confirmations: Some(vec![SubjectConfirmation {
                    method: Some("urn:oasis:names:tc:SAML:2.0:cm:bearer".into()),
                    name_id: None,
                    subject_confirmation_data: Some(SubjectConfirmationData {
                        not_before: None,
                        not_on_or_after: Some(now + Duration::seconds(spec.lifetime)),
                        recipient: Some(spec.acs_url.clone()),
                        in_response_to: Some(spec.in_response_to.clone()),
                        address: None,
                        content: None,
                    }),
                }]),
            }),
            conditions: Some(Conditions {
                not_before: Some(now - Duration::seconds(5)),
                not_on_or_after: Some(now + Duration::seconds(spec.lifetime)),
                audience_restrictions: Some(vec![AudienceRestriction {
                    audience: vec![spec.audience.clone()],
                }]),
                one_time_use: None,
                proxy_restriction: None,
            }),
            authn_statements: Some(vec![AuthnStatement {
                authn_instant: Some(now),
                session_index: Some(spec.session_index.clone()),
                session_not_on_or_after: None,
                subject_locality: None,
                authn_context: Some(AuthnContext {
                    value: Some(AuthnContextClassRef {
                        value: Some(
                            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
                                .into(),
                        ),
                    }),
                }),
            }]),
            attribute_statements: Some(vec![AttributeStatement {
                attributes: spec
                    .attributes
                    .iter()
                    .map(|(n, v)| Attribute {
                        friendly_name: None,
                        name: Some(n.clone()),
                        name_format: Some(
                            "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".into(),
                        ),
                        values: vec![AttributeValue {
                            attribute_type: Some("xs:string".into()),
                            value: Some(v.clone()),
                        }],
                    })
                    .collect(),
            }]),
        };
        let response = Response {
            id: response_id.clone(),
            in_response_to: Some(spec.in_response_to.clone()),
            version: "2.0".into(),
            issue_instant: now,
            destination: Some(spec.acs_url.clone()),
            consent: None,
            issuer: Some(issuer),
            signature: (spec.sign == Sign::Response).then(|| template(&response_id)),
            status: Some(Status {
                status_code: StatusCode {
                    value: Some("urn:oasis:names:tc:SAML:2.0:status:Success".into()),
                },
                status_message: None,
                status_detail: None,
            }),
            encrypted_assertion: None,
            assertion: Some(assertion),
        };
        let xml = response.to_string().expect("response XML");
        if spec.sign == Sign::Nothing {
            return xml;
        }
        let key = self.idp.export_private_key_der().expect("key DER");
        Crypto::sign_xml(xml.as_str(), &key).expect("xmlsec signs")
    }

    /// The Response, base64 as the HTTP-POST binding carries it.
    pub fn response(&self, spec: &Spec) -> String {
        STANDARD.encode(self.response_xml(spec))
    }
}

/// Base64 of any XML (for hand-made variants).
pub fn encode(xml: &str) -> String {
    STANDARD.encode(xml)
}

/// The AuthnRequest in an HTTP-Redirect URL (`SAMLRequest`: DEFLATE + base64), as XML.
pub fn authn_request_xml(redirect_url: &str) -> String {
    redirect_message(redirect_url, "SAMLRequest")
}

/// The message in an HTTP-Redirect URL's `field` (`SAMLRequest` or `SAMLResponse`: DEFLATE +
/// base64), as XML.
pub fn redirect_message(redirect_url: &str, field: &str) -> String {
    let url = url::Url::parse(redirect_url).expect("redirect URL");
    let (_, v) = url
        .query_pairs()
        .find(|(k, _)| k == field)
        .unwrap_or_else(|| panic!("{field} in {redirect_url}"));
    let deflated = STANDARD.decode(v.as_bytes()).expect("base64");
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .expect("DEFLATE");
    xml
}

/// The `ID` attribute of the AuthnRequest in an HTTP-Redirect URL.
pub fn authn_request_id(redirect_url: &str) -> String {
    let xml = authn_request_xml(redirect_url);
    let req: samael::schema::AuthnRequest = xml.parse().expect("AuthnRequest");
    req.id
}
