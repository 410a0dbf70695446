//! Latch's SAML 2.0 glue on `samael` (with its `xmlsec` signature verification).
//!
//! Service-provider side, for upstream `samlp` connections: the SP metadata Latch publishes, the
//! AuthnRequest sent over HTTP-Redirect, and the checks on the Response that comes back over
//! HTTP-POST. Everything a SAML answer must pass before Latch believes it happens in
//! [`verify_response`]:
//!
//! - no DTD anywhere (no entity expansion, no external entities);
//! - a valid XML signature by one of the IdP's configured certificates, with an RSA or ECDSA
//!   SHA-2 algorithm (SHA-1 refused), over the element that is read: samael reduces the document
//!   to the signed content before it is parsed, so an injected unsigned assertion is never seen;
//! - `Destination` and the bearer `SubjectConfirmationData` `Recipient` equal to the ACS URL;
//! - `InResponseTo` equal to the AuthnRequest this browser's login transaction sent (no
//!   IdP-initiated sign-in);
//! - the `Issuer` equal to the IdP's entity id, an `AudienceRestriction` naming Latch's entity id,
//!   `NotBefore`/`NotOnOrAfter` with a small skew, and a recent `IssueInstant`.
//!
//! Replay of an accepted assertion ID is refused by the caller, which remembers the ID in the
//! session store until the assertion expires (see [`VerifiedAssertion::replay_until`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, ReduceMode};
use samael::metadata::{
    EntityDescriptor, HTTP_POST_BINDING, HTTP_REDIRECT_BINDING, IndexedEndpoint, KeyDescriptor,
    SpSsoDescriptor,
};
use samael::schema::{Assertion, Issuer, NameIdPolicy};
use samael::service_provider::ServiceProvider;
use samael::traits::ToXml;
use thiserror::Error;
use time::OffsetDateTime;

pub use samael;

pub mod idp;
pub mod keys;

/// Signature algorithms Latch accepts on SAML answers (never SHA-1).
pub const ALLOWED_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Clock skew allowed on `NotBefore` / `NotOnOrAfter`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// How old an `IssueInstant` may be.
pub const MAX_ISSUE_DELAY_SECONDS: i64 = 300;
/// Largest SAML message Latch parses (decoded).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

#[derive(Debug, Error)]
pub enum SamlError {
    /// The connection's IdP settings cannot be used (bad metadata, no certificate, no SSO URL).
    #[error("SAML configuration: {0}")]
    Config(String),
    /// The message failed a check. The text is for logs, never for the browser.
    #[error("SAML response rejected: {0}")]
    Rejected(String),
    /// No signature by one of the IdP's certificates (with an allowed algorithm) covers the
    /// answer: the IdP may have rolled its certificate.
    #[error("SAML response rejected: {0}")]
    Signature(String),
}

fn rejected(s: impl Into<String>) -> SamlError {
    SamlError::Rejected(s.into())
}

/// Latch as a service provider for one connection.
#[derive(Debug, Clone)]
pub struct SpConfig {
    /// Latch's entity id for this connection (the `Audience` the IdP must name).
    pub entity_id: String,
    /// The HTTP-POST AssertionConsumerService URL.
    pub acs_url: String,
    /// Latch's SingleLogoutService for this connection (both bindings), when it has one.
    pub slo_url: Option<String>,
    /// The certificates Latch signs logout messages with (current first, then the next key's):
    /// published as `KeyDescriptor use="signing"`.
    pub signing_certs: Vec<CertificateDer>,
}

/// What Latch knows of the upstream IdP.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The IdP's entity id (`Issuer`); `None` when configured by endpoint and certificate only:
    /// the certificate then identifies the IdP and the signed assertion's `Issuer` is recorded.
    pub entity_id: Option<String>,
    /// SingleSignOnService, HTTP-Redirect binding.
    pub sso_url: String,
    /// SingleLogoutService, HTTP-Redirect binding, if the IdP offers it.
    pub slo_url: Option<String>,
    /// SingleLogoutService, HTTP-POST binding, if the IdP offers it.
    pub slo_post_url: Option<String>,
    /// Certificates whose keys may sign answers.
    pub certs: Vec<CertificateDer>,
}

/// Refuses any XML with a document type declaration: SAML never needs one, and a DTD is how
/// entity-expansion and external-entity attacks start.
pub fn refuse_dtd(xml: &str) -> Result<(), SamlError> {
    if xml.len() > MAX_MESSAGE_BYTES {
        return Err(rejected("message too large"));
    }
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(rejected("XML with a DTD is not accepted"));
    }
    // libxml2 honours the declared encoding: in UTF-7 a DTD hides from the search above.
    if let Some(decl) = xml.trim_start().strip_prefix("<?xml")
        && let Some(end) = decl.find("?>")
        && let Some(at) = decl[..end].find("encoding")
    {
        let value: String = decl[at + "encoding".len()..end]
            .trim_start_matches([' ', '=', '\t', '\r', '\n'])
            .trim_start_matches(['"', '\''])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
            return Err(rejected("only UTF-8 XML is accepted"));
        }
    }
    Ok(())
}

const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// Canonicalisation and transform algorithms a signature may name: xmlsec runs whatever a
/// `Reference` lists (and fetches whatever `URI` it names) *before* it checks the signature
/// value, so anything else (XSLT, XPath, a remote or `file:` URI) is refused unread.
const SAFE_TRANSFORMS: [&[u8]; 5] = [
    b"http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    b"http://www.w3.org/2001/10/xml-exc-c14n#",
    b"http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    b"http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    b"http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
];

/// The shape every XML signature must have before xmlsec sees it: each `ds:Signature` has one
/// `SignedInfo` with a safe canonicalisation method and exactly one `Reference`, whose `URI` is
/// `#` + the `ID` of the signature's parent element (same document, the element that holds it)
/// and whose transforms are enveloped-signature and canonicalisation only; no `Object`,
/// `Manifest` or `RetrievalMethod` anywhere. With `root_only`, there must be exactly one
/// signature, a child of the root (a protocol message signed as a whole). The caller has
/// refused DTDs already.
pub fn check_signature_shape(xml: &str, root_only: bool) -> Result<(), SamlError> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let bad = |why: &str| SamlError::Signature(format!("signature refused: {why}"));
    let mut reader = quick_xml::NsReader::from_str(xml);
    // The `ID` of each open element, innermost last.
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut signatures = 0usize;
    // Inside a signature: the depth it opened at, the `ID` of its parent, references seen.
    let mut inside: Option<(usize, Option<String>, usize)> = None;
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|_| rejected("the message is not well-formed XML"))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let dsig = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == DSIG_NS);
                let local = e.local_name();
                let local = local.as_ref();
                let mut id = None;
                let mut algorithm = None;
                let mut uri = None;
                for a in e.attributes() {
                    let a = a.map_err(|_| rejected("the message is not well-formed XML"))?;
                    let v = a
                        .normalized_value(quick_xml::XmlVersion::default())
                        .map_err(|_| rejected("the message is not well-formed XML"))?
                        .into_owned();
                    match a.key.as_ref() {
                        b"ID" => id = Some(v),
                        b"Algorithm" => algorithm = Some(v),
                        b"URI" => uri = Some(v),
                        _ => {}
                    }
                }
                let depth = ids.len();
                if dsig {
                    match local {
                        b"Signature" => {
                            if inside.is_some() {
                                return Err(bad("a signature inside a signature"));
                            }
                            signatures += 1;
                            if root_only && (depth != 1 || signatures > 1) {
                                return Err(bad("exactly one signature, of the whole message"));
                            }
                            let parent = ids.last().cloned().flatten();
                            inside = Some((depth, parent, 0));
                        }
                        b"Object" | b"Manifest" | b"RetrievalMethod" => {
                            return Err(bad(
                                "Object, Manifest and RetrievalMethod are not accepted",
                            ));
                        }
                        b"Reference" => {
                            let Some((_, parent, refs)) = inside.as_mut() else {
                                return Err(bad("a Reference outside a signature"));
                            };
                            *refs += 1;
                            let want = parent.as_deref().map(|p| format!("#{p}"));
                            if *refs > 1 || uri.is_none() || uri != want {
                                return Err(bad(
                                    "one Reference, to the element that holds the signature",
                                ));
                            }
                        }
                        b"Transform" | b"CanonicalizationMethod" => {
                            let ok = algorithm
                                .as_deref()
                                .is_some_and(|a| SAFE_TRANSFORMS.contains(&a.as_bytes()));
                            if !ok {
                                return Err(bad(
                                    "a transform other than enveloped-signature and c14n",
                                ));
                            }
                        }
                        _ => {}
                    }
                } else if inside.is_some()
                    && !matches!(local, b"InclusiveNamespaces")
                    && !matches!(ns, ResolveResult::Bound(n) if n.as_ref() == b"http://www.w3.org/2001/10/xml-exc-c14n#")
                {
                    // Only XML Signature's own elements (and exc-c14n's InclusiveNamespaces)
                    // belong in a signature: XPath and XSLT bodies do not.
                    return Err(bad("foreign elements inside a signature"));
                }
                if empty {
                    if inside.as_ref().is_some_and(|(d, _, _)| *d == depth) {
                        inside = None;
                    }
                } else {
                    ids.push(id);
                }
            }
            Event::End(_) => {
                ids.pop();
                if let Some((d, _, refs)) = &inside
                    && *d == ids.len()
                {
                    if *refs != 1 {
                        return Err(bad("a signature must have exactly one Reference"));
                    }
                    inside = None;
                }
            }
            Event::DocType(_) => return Err(rejected("XML with a DTD is not accepted")),
            Event::Eof => break,
            _ => {}
        }
    }
    if root_only && signatures != 1 {
        return Err(bad("the message is not signed"));
    }
    Ok(())
}

/// Parses IdP metadata (an `EntityDescriptor` with an `IDPSSODescriptor`).
pub fn parse_idp_metadata(xml: &str) -> Result<IdpConfig, SamlError> {
    refuse_dtd(xml).map_err(|e| SamlError::Config(e.to_string()))?;
    let md: EntityDescriptor = xml
        .parse()
        .map_err(|e| SamlError::Config(format!("metadata is not a SAML EntityDescriptor: {e}")))?;
    let entity_id = md
        .entity_id
        .clone()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SamlError::Config("metadata has no entityID".into()))?;
    let descriptors = md
        .idp_sso_descriptors
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| SamlError::Config("metadata has no IDPSSODescriptor".into()))?;
    let endpoint = |binding: &str, slo: bool| {
        descriptors.iter().find_map(|d| {
            let list = if slo {
                &d.single_logout_services
            } else {
                &d.single_sign_on_services
            };
            list.iter()
                .find(|e| e.binding == binding)
                .map(|e| e.location.clone())
        })
    };
    let sso_url = endpoint(HTTP_REDIRECT_BINDING, false).ok_or_else(|| {
        SamlError::Config(
            "metadata has no SingleSignOnService with the HTTP-Redirect binding".into(),
        )
    })?;
    let slo_url = endpoint(HTTP_REDIRECT_BINDING, true);
    let slo_post_url = endpoint(HTTP_POST_BINDING, true);
    let mut certs = Vec::new();
    for d in descriptors {
        for k in &d.key_descriptors {
            if matches!(k.key_use.as_deref(), None | Some("") | Some("signing")) {
                certs.extend(certificates(k)?);
            }
        }
    }
    if certs.is_empty() {
        return Err(SamlError::Config(
            "metadata has no signing certificate".into(),
        ));
    }
    Ok(IdpConfig {
        entity_id: Some(entity_id),
        sso_url,
        slo_url,
        slo_post_url,
        certs,
    })
}

fn certificates(k: &KeyDescriptor) -> Result<Vec<CertificateDer>, SamlError> {
    let Some(data) = &k.key_info.x509_data else {
        return Ok(Vec::new());
    };
    data.certificates
        .iter()
        .map(|c| parse_certificate(c))
        .collect()
}

/// A certificate as an admin pastes it: PEM, bare base64 DER, or base64 of a PEM (Auth0's
/// `signingCert`).
pub fn parse_certificate(text: &str) -> Result<CertificateDer, SamlError> {
    let bad = || SamlError::Config("signing certificate is not PEM or base64 DER".into());
    let text = text.trim();
    let der = if text.starts_with("-----BEGIN") {
        pem_body(text).ok_or_else(bad)?
    } else {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let raw = STANDARD.decode(compact).map_err(|_| bad())?;
        match std::str::from_utf8(&raw) {
            Ok(s) if s.trim_start().starts_with("-----BEGIN") => pem_body(s).ok_or_else(bad)?,
            _ => raw,
        }
    };
    // An X.509 certificate is a DER SEQUENCE.
    if der.first() != Some(&0x30) || der.len() < 64 {
        return Err(bad());
    }
    Ok(CertificateDer::from(der))
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let begin = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[begin..].find("-----END CERTIFICATE-----")? + begin;
    let compact: String = pem[begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(compact).ok()
}

/// Latch's SP metadata for one connection: entity id, the HTTP-POST ACS, signed assertions
/// wanted, unsigned AuthnRequests, and, for Single Logout, the SingleLogoutService in both
/// bindings and the certificates Latch's logout messages are signed with.
pub fn sp_metadata(sp: &SpConfig) -> Result<String, SamlError> {
    let slo = sp.slo_url.as_ref().map(|u| {
        [HTTP_REDIRECT_BINDING, HTTP_POST_BINDING]
            .iter()
            .map(|b| samael::metadata::Endpoint {
                binding: (*b).to_owned(),
                location: u.clone(),
                response_location: None,
            })
            .collect::<Vec<_>>()
    });
    // One KeyDescriptor per key (an X509Data with several certificates is one key's chain).
    let keys = (!sp.signing_certs.is_empty()).then(|| {
        sp.signing_certs
            .iter()
            .map(|c| KeyDescriptor {
                key_use: Some("signing".into()),
                key_info: samael::key_info::KeyInfo {
                    id: None,
                    x509_data: Some(samael::key_info::X509Data {
                        certificates: vec![STANDARD.encode(c.der_data())],
                    }),
                },
                encryption_methods: None,
            })
            .collect()
    });
    let descriptor = SpSsoDescriptor {
        key_descriptors: keys,
        single_logout_services: slo,
        protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
        authn_requests_signed: Some(false),
        want_assertions_signed: Some(true),
        name_id_formats: Some(vec![
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
            "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
            NAMEID_UNSPECIFIED.into(),
        ]),
        assertion_consumer_services: vec![IndexedEndpoint {
            binding: HTTP_POST_BINDING.into(),
            location: sp.acs_url.clone(),
            index: 0,
            is_default: Some(true),
            ..IndexedEndpoint::default()
        }],
        ..SpSsoDescriptor::default()
    };
    let md = EntityDescriptor {
        entity_id: Some(sp.entity_id.clone()),
        sp_sso_descriptors: Some(vec![descriptor]),
        ..EntityDescriptor::default()
    };
    md.to_string()
        .map_err(|e| SamlError::Config(format!("metadata: {e}")))
}

/// An AuthnRequest to send over HTTP-Redirect, and its ID (kept in the login transaction).
#[derive(Debug, Clone)]
pub struct AuthnRedirect {
    pub url: String,
    pub request_id: String,
}

/// Builds the AuthnRequest (HTTP-POST answer wanted at the ACS) and the IdP URL carrying it
/// (DEFLATE + base64 in `SAMLRequest`, with `RelayState`).
pub fn authn_request(
    sp: &SpConfig,
    idp: &IdpConfig,
    request_id: &str,
    relay_state: &str,
    force_authn: bool,
) -> Result<AuthnRedirect, SamlError> {
    let mut req = provider(sp, idp, None)
        .make_authentication_request(&idp.sso_url)
        .map_err(|e| SamlError::Config(format!("AuthnRequest: {e}")))?;
    req.id = request_id.to_owned();
    req.issuer = Some(Issuer {
        value: Some(sp.entity_id.clone()),
        ..Issuer::default()
    });
    req.name_id_policy = Some(NameIdPolicy {
        allow_create: Some(true),
        format: Some(NAMEID_UNSPECIFIED.into()),
        ..NameIdPolicy::default()
    });
    req.force_authn = force_authn.then_some(true);
    let url = req
        .redirect(relay_state)
        .map_err(|e| SamlError::Config(format!("AuthnRequest: {e}")))?
        .ok_or_else(|| SamlError::Config("AuthnRequest has no destination".into()))?;
    Ok(AuthnRedirect {
        url: url.to_string(),
        request_id: request_id.to_owned(),
    })
}

fn provider(sp: &SpConfig, idp: &IdpConfig, issuer: Option<String>) -> ServiceProvider {
    let key_descriptors = idp
        .certs
        .iter()
        .map(|c| KeyDescriptor {
            key_use: Some("signing".into()),
            key_info: samael::key_info::KeyInfo {
                id: None,
                x509_data: Some(samael::key_info::X509Data {
                    certificates: vec![STANDARD.encode(c.der_data())],
                }),
            },
            encryption_methods: None,
        })
        .collect();
    let idp_metadata = EntityDescriptor {
        entity_id: idp.entity_id.clone().or(issuer),
        idp_sso_descriptors: Some(vec![samael::metadata::IdpSsoDescriptor {
            id: None,
            valid_until: None,
            cache_duration: None,
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            error_url: None,
            signature: None,
            key_descriptors,
            organization: None,
            contact_people: Vec::new(),
            artifact_resolution_service: Vec::new(),
            single_logout_services: Vec::new(),
            manage_name_id_services: Vec::new(),
            name_id_formats: Vec::new(),
            want_authn_requests_signed: None,
            single_sign_on_services: vec![samael::metadata::Endpoint {
                binding: HTTP_REDIRECT_BINDING.into(),
                location: idp.sso_url.clone(),
                response_location: None,
            }],
            name_id_mapping_services: Vec::new(),
            assertion_id_request_services: Vec::new(),
            attribute_profiles: Vec::new(),
            attributes: Vec::new(),
        }]),
        ..EntityDescriptor::default()
    };
    ServiceProvider {
        entity_id: Some(sp.entity_id.clone()),
        acs_url: Some(sp.acs_url.clone()),
        metadata_url: None,
        slo_url: None,
        idp_metadata,
        allow_idp_initiated: false,
        max_clock_skew: chrono::Duration::seconds(CLOCK_SKEW_SECONDS),
        max_issue_delay: chrono::Duration::seconds(MAX_ISSUE_DELAY_SECONDS),
        allowed_signature_algorithms: Some(ALLOWED_ALGORITHMS.to_vec()),
        ..ServiceProvider::default()
    }
}

/// One SAML attribute and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAttribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// An assertion that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub issuer: String,
    pub assertion_id: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub attributes: Vec<SamlAttribute>,
    /// Remember the assertion ID until then to refuse a replay.
    pub replay_until: OffsetDateTime,
}

impl VerifiedAssertion {
    /// The first value of the first attribute called any of `names` (by Name or FriendlyName).
    pub fn attribute(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| {
            self.attributes
                .iter()
                .find(|a| a.name == *n || a.friendly_name.as_deref() == Some(*n))
                .and_then(|a| a.values.first())
                .map(String::as_str)
        })
    }
}

/// Checks a base64 `SAMLResponse` from the ACS POST against the AuthnRequest `request_id`.
pub fn verify_response(
    sp: &SpConfig,
    idp: &IdpConfig,
    saml_response: &str,
    request_id: &str,
) -> Result<VerifiedAssertion, SamlError> {
    if idp.certs.is_empty() {
        return Err(SamlError::Config("no IdP signing certificate".into()));
    }
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if compact.len() > MAX_MESSAGE_BYTES * 4 / 3 + 4 {
        return Err(rejected("message too large"));
    }
    let bytes = STANDARD
        .decode(compact)
        .map_err(|_| rejected("SAMLResponse is not base64"))?;
    let xml = std::str::from_utf8(&bytes).map_err(|_| rejected("SAMLResponse is not UTF-8"))?;
    refuse_dtd(xml)?;
    check_signature_shape(xml, false)?;
    exactly_one_assertion(xml)?;
    answers_this_request(xml, request_id)?;
    // Configured by certificate only: the issuer is whatever the (verified) assertion says; peek
    // at it so samael's issuer check has something to compare with. The signature check that
    // follows is what makes it trustworthy.
    let peeked = if idp.entity_id.is_none() {
        Some(peek_issuer(xml).ok_or_else(|| rejected("the response names no issuer"))?)
    } else {
        None
    };
    let provider = provider(sp, idp, peeked);
    let assertion = provider
        .parse_xml_response_with_mode(
            xml,
            Some(&[request_id]),
            ReduceMode::ValidateAndMarkNoAncestors,
        )
        .map_err(|e| match e {
            samael::service_provider::Error::FailedToValidateSignature => {
                SamlError::Signature(e.to_string())
            }
            other => rejected(other.to_string()),
        })?;
    check_assertion(sp, &assertion)
}

/// One SAML answer, one assertion: a second one, wherever it hides (beside the signed one, in
/// `Extensions`, in a signature's `Object`), is a wrapping attempt even if the verified part
/// looks fine. Encrypted assertions are refused too (Latch publishes no encryption key).
fn exactly_one_assertion(xml: &str) -> Result<(), SamlError> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut assertions = 0usize;
    loop {
        match reader.read_resolved_event() {
            Ok((ns, Event::Start(e) | Event::Empty(e))) => {
                let local = e.local_name();
                if local.as_ref() == b"EncryptedAssertion" {
                    return Err(rejected("encrypted assertions are not supported"));
                }
                if local.as_ref() == b"Assertion" {
                    if !matches!(ns, ResolveResult::Bound(n) if n.as_ref() == ASSERTION_NS) {
                        return Err(rejected("an Assertion outside the SAML namespace"));
                    }
                    assertions += 1;
                }
            }
            Ok((_, Event::DocType(_))) => {
                return Err(rejected("XML with a DTD is not accepted"));
            }
            Ok((_, Event::Eof)) => break,
            Ok(_) => {}
            Err(_) => return Err(rejected("the response is not well-formed XML")),
        }
    }
    match assertions {
        1 => Ok(()),
        // No assertion: usually the IdP refused (Requester/AuthnFailed, …); say what it said.
        0 => Err(rejected(match xml.parse::<samael::schema::Response>() {
            Ok(r) => match r.status {
                Some(st) => format!(
                    "the identity provider answered {}{}",
                    st.status_code.value.unwrap_or_default(),
                    st.status_message
                        .and_then(|m| m.value)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                None => "the response carries no assertion".to_owned(),
            },
            Err(_) => "the response carries no assertion".to_owned(),
        })),
        n => Err(rejected(format!(
            "the response carries {n} assertions; exactly one is accepted"
        ))),
    }
}

/// Before any signature is checked: every `InResponseTo` in the document (the Response's, the
/// bearer `SubjectConfirmationData`'s) that is there must name this sign-in's AuthnRequest.
/// samael checks the signed values again afterwards; this early look keeps a validly signed
/// answer from replaying against other sign-ins through xmlsec, whose reduction of a verified
/// document leaks it (libxml 0.3.3 and samael 0.0.22 free neither the namespace list nor the
/// unlinked wrapper): one leak per sign-in the IdP really made, not per request (fuzzed).
fn answers_this_request(xml: &str, request_id: &str) -> Result<(), SamlError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let local = e.local_name();
                if !matches!(local.as_ref(), b"Response" | b"SubjectConfirmationData") {
                    continue;
                }
                for a in e.attributes() {
                    let a = a.map_err(|_| rejected("the response is not well-formed XML"))?;
                    if a.key.local_name().as_ref() == b"InResponseTo"
                        && a.normalized_value(quick_xml::XmlVersion::default())
                            .ok()
                            .as_deref()
                            != Some(request_id)
                    {
                        return Err(rejected(
                            "InResponseTo does not name this sign-in's AuthnRequest",
                        ));
                    }
                }
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(rejected("the response is not well-formed XML")),
        }
    }
}

fn peek_issuer(xml: &str) -> Option<String> {
    if let Ok(r) = xml.parse::<samael::schema::Response>() {
        if let Some(v) = r.assertion.as_ref().and_then(|a| a.issuer.value.clone()) {
            return Some(v);
        }
        return r.issuer.and_then(|i| i.value);
    }
    xml.parse::<Assertion>().ok().and_then(|a| a.issuer.value)
}

/// What samael leaves to the caller: an audience restriction must exist (samael accepts an
/// assertion without one), a NameID must exist, and the expiry for the replay cache.
fn check_assertion(sp: &SpConfig, a: &Assertion) -> Result<VerifiedAssertion, SamlError> {
    let conditions = a
        .conditions
        .as_ref()
        .ok_or_else(|| rejected("the assertion has no Conditions"))?;
    let audience_ok = conditions
        .audience_restrictions
        .as_deref()
        .is_some_and(|rs| {
            !rs.is_empty()
                && rs
                    .iter()
                    .all(|r| r.audience.iter().any(|x| x == &sp.entity_id))
        });
    if !audience_ok {
        return Err(rejected(format!(
            "the assertion's audience is not {}",
            sp.entity_id
        )));
    }
    let subject = a
        .subject
        .as_ref()
        .ok_or_else(|| rejected("the assertion has no Subject"))?;
    let name_id = subject
        .name_id
        .as_ref()
        .filter(|n| !n.value.trim().is_empty())
        .ok_or_else(|| rejected("the assertion has no NameID"))?;
    let issuer = a
        .issuer
        .value
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| rejected("the assertion names no issuer"))?;
    // Remember the ID as long as any part of the assertion could still be accepted.
    let mut until = a.issue_instant + chrono::Duration::seconds(MAX_ISSUE_DELAY_SECONDS);
    if let Some(t) = conditions.not_on_or_after {
        until = until.max(t);
    }
    for c in subject.subject_confirmations.iter().flatten() {
        if let Some(t) = c
            .subject_confirmation_data
            .as_ref()
            .and_then(|d| d.not_on_or_after)
        {
            until = until.max(t);
        }
    }
    until += chrono::Duration::seconds(CLOCK_SKEW_SECONDS);
    let replay_until = OffsetDateTime::from_unix_timestamp(until.timestamp())
        .map_err(|_| rejected("assertion times out of range"))?;
    let session_index = a
        .authn_statements
        .iter()
        .flatten()
        .find_map(|s| s.session_index.clone());
    let attributes = a
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .filter_map(|at| {
            Some(SamlAttribute {
                name: at.name.clone()?,
                friendly_name: at.friendly_name.clone(),
                values: at.values.iter().filter_map(|v| v.value.clone()).collect(),
            })
        })
        .collect();
    Ok(VerifiedAssertion {
        issuer,
        assertion_id: a.id.clone(),
        name_id: name_id.value.trim().to_owned(),
        name_id_format: name_id.format.clone(),
        session_index,
        attributes,
        replay_until,
    })
}
