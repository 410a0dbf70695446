//! The `samlp` strategy: Latch as a SAML service provider (on `latch-saml`, i.e. samael with
//! xmlsec). The AuthnRequest goes out over HTTP-Redirect with the login transaction's id as
//! `RelayState`; the Response comes back over HTTP-POST to the ACS, Auth0's
//! `/login/callback?connection={name}`. Latch's entity id is `options.entityId` or
//! `urn:latch:{host}:{connection}`, and its metadata is served at
//! `GET /samlp/metadata?connection={name}`.
//!
//! IdP settings come from `metadataXml`, `metadataUrl` (fetched on first use through the
//! outbound policy, at most 1 MiB, cached for an hour, refetched at most every 30 seconds when a
//! signature fails, as the IdP may have rolled its certificate, and after a failed fetch not
//! tried again for 30 seconds, longer as failures repeat) or `signInEndpoint` + `signingCert`.
//! What a failed fetch answered is never quoted in errors or logs.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use latch_core::connection_options::{SamlIdp, SamlOptions};
use latch_core::connector::{
    Arrived, FederationError, LogoutStart, RedirectConnector, RedirectStart, UpstreamAnswer,
    UpstreamIdentity, UpstreamLogout, UpstreamLogoutRequest,
};
use latch_core::logout::Continue;
use latch_core::model::{Connection, Strategy};
use latch_core::net::Fetch;
use latch_core::paths;
use latch_core::session::{SessionStore, UpstreamSession};
use latch_core::{Clock, ConnectionName};
use latch_http::client::Outbound;
use latch_remote::Cache;
use latch_saml::idp::{
    HTTP_POST, HTTP_REDIRECT, Inbound, Kind, Message, NameId, STATUS_SUCCESS, logout_request_xml,
    logout_response_xml, new_id,
};
use latch_saml::keys::IdpKeys;
use latch_saml::{IdpConfig, SamlError, SpConfig, VerifiedAssertion};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// IdP metadata from a URL is refreshed after `METADATA_MAX_AGE`, and refetched at most every
/// `REFETCH_EVERY` when an answer's signature does not verify or the last fetch failed.
pub use latch_remote::{MAX_AGE as METADATA_MAX_AGE, REFETCH_EVERY};

/// Replay cache scope for accepted assertion IDs.
const REPLAY_SCOPE: &str = "saml-assertion";

const EMAIL: &[&str] = &[
    "email",
    "mail",
    "emailaddress",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
];
const GIVEN_NAME: &[&str] = &[
    "given_name",
    "givenName",
    "firstName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "urn:oid:2.5.4.42",
];
const FAMILY_NAME: &[&str] = &[
    "family_name",
    "sn",
    "surname",
    "lastName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "urn:oid:2.5.4.4",
];
const NAME: &[&str] = &[
    "name",
    "displayName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "urn:oid:2.16.840.1.113730.3.1.241",
];
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

pub struct SamlConnector {
    http: Outbound,
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    /// Latch's SAML signing keys: its logout messages are signed, and its SP metadata publishes
    /// the certificates.
    keys: Arc<IdpKeys>,
    /// IdP metadata by URL: one fetch at a time, failures remembered with backoff.
    metadata: Cache<IdpConfig, String>,
}

/// A connection's options, or why it cannot sign anyone in.
fn options(c: &Connection) -> Result<SamlOptions, FederationError> {
    SamlOptions::from_connection(c).map_err(|e| FederationError::Misconfigured(e.to_string()))
}

/// Latch's SP settings for a connection, from Latch's issuer (no trailing slash): for sign-in
/// checks (no certificates needed).
pub fn sp_config(c: &Connection, issuer: &str) -> SpConfig {
    let sp = latch_core::connector::SamlSp::of(c, issuer);
    SpConfig {
        entity_id: sp.entity_id,
        acs_url: sp.acs_url,
        slo_url: Some(sp.slo_url),
        signing_certs: Vec::new(),
    }
}

/// Logout messages are small; a larger one is no IdP's.
const MAX_LOGOUT_MESSAGE: usize = 32 * 1024;

/// Replay cache scope for accepted LogoutRequest IDs.
const LOGOUT_REPLAY_SCOPE: &str = "saml-sp-logout-request";

/// How long the IdP may take to act on Latch's LogoutRequest (`NotOnOrAfter`).
const LOGOUT_REQUEST_LIFETIME: time::Duration = time::Duration::minutes(5);

fn rejected(e: impl std::fmt::Display) -> FederationError {
    FederationError::Rejected(e.to_string())
}

/// The message named `field` as it arrived, decoded and bounded, not yet believed.
fn inbound(arrived: Arrived<'_>, field: &str) -> Result<Inbound, FederationError> {
    let i = match arrived {
        Arrived::Query(q) => Inbound::from_redirect(q, field)
            .map_err(rejected)?
            .ok_or_else(|| rejected(format!("no {field}")))?,
        Arrived::Form(f) => {
            let v = f
                .get(field)
                .ok_or_else(|| rejected(format!("no {field}")))?;
            Inbound::from_post(v, f.get("RelayState").cloned()).map_err(rejected)?
        }
    };
    if i.xml.len() > MAX_LOGOUT_MESSAGE {
        return Err(rejected("the logout message is too large"));
    }
    if i.relay_state
        .as_ref()
        .is_some_and(|r| r.len() > MAX_RELAY_STATE)
    {
        return Err(rejected("the RelayState is too long"));
    }
    Ok(i)
}

/// The longest RelayState Latch carries back (as for SAML apps: SAML bindings say 80 bytes, some
/// IdPs send more, none needs more than this).
pub const MAX_RELAY_STATE: usize = 1024;

/// An IdP endpoint Latch sends the browser to: the URL rule of every app URL (https, or http on
/// a loopback host), so a logout message never travels in the clear or to a `javascript:` URL.
fn endpoint(raw: &str) -> Option<url::Url> {
    latch_core::validate::app_url("SingleLogoutService", raw).ok()
}

/// The IdP's SingleLogoutService for `posted` (HTTP-POST) or not, else the other binding's:
/// `signOutEndpoint` first (HTTP-Redirect), then the metadata's.
fn idp_slo(o: &SamlOptions, idp: &IdpConfig, posted: bool) -> Option<(url::Url, &'static str)> {
    let redirect = o
        .sign_out
        .clone()
        .or_else(|| idp.slo_url.clone())
        .and_then(|u| endpoint(&u))
        .map(|u| (u, HTTP_REDIRECT));
    let post = idp
        .slo_post_url
        .as_deref()
        .and_then(endpoint)
        .map(|u| (u, HTTP_POST));
    if posted {
        post.or(redirect)
    } else {
        redirect.or(post)
    }
}

impl SamlConnector {
    pub fn new(
        http: Outbound,
        sessions: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        keys: Arc<IdpKeys>,
    ) -> Self {
        Self {
            http,
            sessions,
            metadata: Cache::new(clock.clone()),
            clock,
            keys,
        }
    }

    /// The IdP and the XML of a signed message from the connection's IdP, once one of its
    /// certificates verifies it (HTTP-Redirect: the query signature; HTTP-POST: the enveloped
    /// one, which must cover the root). A failure refetches `metadataUrl` once (the IdP may have
    /// rolled its key).
    async fn believed(
        &self,
        o: &SamlOptions,
        m: &Inbound,
    ) -> Result<(IdpConfig, String), FederationError> {
        if !m.is_signed() {
            return Err(rejected(
                "the identity provider's logout messages must be signed",
            ));
        }
        let idp = self.idp(o, false).await?;
        if let Some(xml) = idp.certs.iter().find_map(|c| m.verified_xml(c).ok()) {
            return Ok((idp, xml));
        }
        if matches!(o.idp, SamlIdp::MetadataUrl(_)) {
            let fresh = self.idp(o, true).await?;
            if let Some(xml) = fresh.certs.iter().find_map(|c| m.verified_xml(c).ok()) {
                return Ok((fresh, xml));
            }
        }
        Err(rejected(
            "the signature is not the identity provider's (or uses a refused algorithm)",
        ))
    }

    /// Parses a believed message and checks what every logout message from the IdP must pass:
    /// its kind, version, ID, recent IssueInstant, NotOnOrAfter, a Destination that is this
    /// connection's SingleLogoutService, and the IdP's Issuer.
    fn checked(
        &self,
        c: &Connection,
        latch: &str,
        idp: &IdpConfig,
        xml: &str,
        kind: Kind,
    ) -> Result<Message, FederationError> {
        let m = Message::parse(xml).map_err(rejected)?;
        if m.kind != kind {
            return Err(rejected(
                "the message is not the logout message its field names",
            ));
        }
        let here = paths::upstream_logout_url(latch, c.name.as_str());
        m.check_common(&here, self.clock.now()).map_err(rejected)?;
        // SAML bindings §3.4.5.2, §3.5.5.2: a signed message names where it is going.
        if m.attr("Destination").is_none() {
            return Err(rejected("a signed message must carry a Destination"));
        }
        match (&idp.entity_id, m.issuer.as_deref()) {
            (_, None | Some("")) => return Err(rejected("the message has no Issuer")),
            (Some(e), Some(i)) if e != i => {
                return Err(rejected("the Issuer is not the identity provider's"));
            }
            _ => {}
        }
        Ok(m)
    }

    /// The IdP's metadata at `url`. Errors say what failed, never what was answered (an
    /// internal service's page must not reach the log through a parse error).
    async fn fetch_metadata(&self, url: &str) -> Result<IdpConfig, String> {
        let body = self
            .http
            .get(
                url,
                "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8",
            )
            .await
            .map_err(|e| format!("metadata {url}: {e}"))?;
        let xml = String::from_utf8(body).map_err(|_| format!("metadata {url}: not UTF-8 text"))?;
        latch_saml::parse_idp_metadata(&xml)
            .map_err(|_| format!("metadata {url}: not usable SAML IdP metadata"))
    }

    /// The IdP as the connection's options describe it. `force` refetches `metadataUrl` unless
    /// it was fetched in the last [`REFETCH_EVERY`].
    async fn idp(&self, o: &SamlOptions, force: bool) -> Result<IdpConfig, FederationError> {
        let cfg = |e: SamlError| FederationError::Misconfigured(e.to_string());
        match &o.idp {
            SamlIdp::MetadataXml(xml) => latch_saml::parse_idp_metadata(xml).map_err(cfg),
            SamlIdp::MetadataUrl(url) => self
                .metadata
                .get(url, |_| !force, || self.fetch_metadata(url))
                .await
                .map_err(FederationError::Unavailable),
            SamlIdp::Direct {
                sign_in,
                signing_cert,
                sign_out,
            } => Ok(IdpConfig {
                entity_id: None,
                sso_url: sign_in.clone(),
                slo_url: sign_out.clone(),
                slo_post_url: None,
                certs: vec![latch_saml::parse_certificate(signing_cert).map_err(cfg)?],
            }),
        }
    }

    fn identity(&self, o: &SamlOptions, a: VerifiedAssertion) -> UpstreamIdentity {
        let subject = o
            .user_id_attribute
            .as_deref()
            .and_then(|n| a.attribute(&[n]))
            .map(str::to_owned)
            .unwrap_or_else(|| a.name_id.clone());
        let email = a.attribute(EMAIL).map(str::to_owned).or_else(|| {
            (a.name_id_format.as_deref() == Some(NAMEID_EMAIL) && a.name_id.contains('@'))
                .then(|| a.name_id.clone())
        });
        let given_name = a.attribute(GIVEN_NAME).map(str::to_owned);
        let family_name = a.attribute(FAMILY_NAME).map(str::to_owned);
        let name =
            a.attribute(NAME)
                .map(str::to_owned)
                .or_else(|| match (&given_name, &family_name) {
                    (Some(g), Some(f)) => Some(format!("{g} {f}")),
                    (Some(g), None) => Some(g.clone()),
                    _ => None,
                });
        let mut profile = Map::new();
        for at in &a.attributes {
            let v = if at.values.len() == 1 {
                json!(at.values[0])
            } else {
                json!(at.values)
            };
            profile.insert(at.name.clone(), v);
        }
        profile.insert("nameid".into(), json!(a.name_id));
        UpstreamIdentity {
            issuer: a.issuer,
            subject,
            email,
            // A SAML IdP vouches for the address it sends; Auth0 does not mark it verified.
            email_verified: false,
            name,
            given_name,
            family_name,
            nickname: None,
            picture: None,
            profile,
            session: UpstreamSession {
                name_id: Some(a.name_id),
                name_id_format: a.name_id_format,
                session_index: a.session_index,
                ..UpstreamSession::default()
            },
        }
    }
}

#[async_trait]
impl RedirectConnector for SamlConnector {
    async fn start(
        &self,
        connection: &Connection,
        latch: &str,
        state: &str,
    ) -> Result<RedirectStart, FederationError> {
        let sp = sp_config(connection, latch);
        let idp = self.idp(&options(connection)?, false).await?;
        let id = format!("_{}", latch_jose::random_token(24));
        let r = latch_saml::authn_request(&sp, &idp, &id, state, false)
            .map_err(|e| FederationError::Misconfigured(e.to_string()))?;
        Ok(RedirectStart {
            url: r.url,
            saved: json!({ "request_id": r.request_id }),
        })
    }

    async fn finish(
        &self,
        connection: &Connection,
        latch: &str,
        params: &HashMap<String, String>,
        saved: &Value,
    ) -> Result<UpstreamIdentity, FederationError> {
        let sp = sp_config(connection, latch);
        let response = params
            .get("SAMLResponse")
            .ok_or_else(|| FederationError::Rejected("no SAMLResponse".into()))?;
        let request_id = saved["request_id"]
            .as_str()
            .ok_or_else(|| FederationError::Rejected("no AuthnRequest on record".into()))?;
        let o = options(connection)?;
        let idp = self.idp(&o, false).await?;
        let verified = match latch_saml::verify_response(&sp, &idp, response, request_id) {
            Ok(v) => v,
            // The IdP may have rolled its certificate: refetch its metadata once and retry.
            Err(SamlError::Signature(_)) if matches!(o.idp, SamlIdp::MetadataUrl(_)) => {
                let fresh = self.idp(&o, true).await?;
                latch_saml::verify_response(&sp, &fresh, response, request_id)
                    .map_err(|e| FederationError::Rejected(e.to_string()))?
            }
            Err(e) => return Err(FederationError::Rejected(e.to_string())),
        };
        let now = self.clock.now();
        let key = format!(
            "{}:{}:{}",
            connection.name, verified.issuer, verified.assertion_id
        );
        let first = self
            .sessions
            .remember_once(REPLAY_SCOPE, &key, verified.replay_until, now)
            .await
            .map_err(|e| FederationError::Unavailable(e.to_string()))?;
        if !first {
            return Err(FederationError::Rejected(format!(
                "assertion {} was already used",
                verified.assertion_id
            )));
        }
        Ok(self.identity(&o, verified))
    }
}

/// What the SP metadata endpoint needs.
#[derive(Clone)]
pub struct MetadataDeps {
    pub store: Arc<dyn latch_core::store::Store>,
    pub issuer: String,
    /// Latch's SAML keys: the metadata publishes their certificates.
    pub keys: Arc<IdpKeys>,
}

#[derive(Deserialize)]
pub struct MetadataQuery {
    connection: Option<String>,
}

/// `GET /samlp/metadata?connection={name}`: Latch's SP metadata for a SAML connection.
pub async fn get_sp_metadata(
    deps: web::Data<MetadataDeps>,
    q: web::Query<MetadataQuery>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let not_found = || {
        latch_http::ApiError::new(
            StatusCode::NOT_FOUND,
            "inexistent_connection",
            "No SAML connection with that name.",
        )
    };
    let Some(name) = q.into_inner().connection.filter(|n| !n.is_empty()) else {
        return Err(latch_http::ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The connection parameter is required.",
        ));
    };
    let c = deps
        .store
        .find_connection_by_name(&ConnectionName::new(name))
        .await?
        .filter(|c| c.strategy == Strategy::Samlp)
        .ok_or_else(not_found)?;
    let mut sp = sp_config(&c, &deps.issuer);
    sp.signing_certs = deps
        .keys
        .snapshot()
        .map(|k| k.published.clone())
        .unwrap_or_default();
    let xml = latch_saml::sp_metadata(&sp).map_err(|e| {
        latch_http::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(xml))
}

/// Mounts `GET /samlp/metadata`.
pub fn configure(deps: MetadataDeps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(deps))
            .route(paths::SP_METADATA, web::get().to(get_sp_metadata));
    }
}

#[async_trait]
impl UpstreamLogout for SamlConnector {
    async fn logout_request(
        &self,
        c: &Connection,
        latch: &str,
        arrived: Arrived<'_>,
    ) -> Result<UpstreamLogoutRequest, FederationError> {
        let o = options(c)?;
        let m = inbound(arrived, "SAMLRequest")?;
        let (idp, xml) = self.believed(&o, &m).await?;
        let msg = self.checked(c, latch, &idp, &xml, Kind::LogoutRequest)?;
        let name_id = msg
            .name_id
            .as_ref()
            .map(|n| n.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| rejected("the LogoutRequest names no NameID"))?;
        let request_id = msg.id().unwrap_or_default().to_owned();
        // Accepted once: the ID is remembered as long as the request could be valid.
        let now = self.clock.now();
        let until = now
            + time::Duration::seconds(
                latch_saml::MAX_ISSUE_DELAY_SECONDS + 2 * latch_saml::CLOCK_SKEW_SECONDS,
            );
        let first = self
            .sessions
            .remember_once(
                LOGOUT_REPLAY_SCOPE,
                &format!("{} {request_id}", c.name),
                until,
                now,
            )
            .await
            .map_err(|e| FederationError::Unavailable(e.to_string()))?;
        if !first {
            return Err(rejected("this LogoutRequest was already used"));
        }
        Ok(UpstreamLogoutRequest {
            request_id,
            name_id,
            session_indexes: msg.session_indexes,
            relay_state: m.relay_state,
            posted: m.binding == latch_saml::idp::Binding::Post,
        })
    }

    async fn logout_response(
        &self,
        c: &Connection,
        latch: &str,
        request: &UpstreamLogoutRequest,
        status: &str,
        second: Option<&str>,
    ) -> Result<Continue, FederationError> {
        let o = options(c)?;
        let idp = self.idp(&o, false).await?;
        let (to, binding) = idp_slo(&o, &idp, request.posted).ok_or_else(|| {
            FederationError::Misconfigured("the IdP has no SingleLogoutService".into())
        })?;
        let keys = self
            .keys
            .snapshot()
            .map_err(|e| FederationError::Misconfigured(e.to_string()))?;
        let id = new_id();
        let xml = logout_response_xml(
            &id,
            &sp_config(c, latch).entity_id,
            to.as_str(),
            Some(&request.request_id),
            status,
            second,
            self.clock.now(),
        );
        let out = latch_saml::idp::Outbound::carry(
            &keys.signing,
            binding,
            &to,
            false,
            &xml,
            &id,
            request.relay_state.as_deref(),
        )
        .map_err(|e| FederationError::Misconfigured(e.to_string()))?;
        Ok(out.into_continue())
    }

    /// A signed LogoutRequest naming the upstream session (NameID with its Format, and the
    /// SessionIndex, as the IdP issued them) to the IdP's SingleLogoutService, HTTP-Redirect
    /// preferred, `state` as RelayState.
    async fn start_logout(
        &self,
        c: &Connection,
        latch: &str,
        upstream: &UpstreamSession,
        state: &str,
    ) -> Result<LogoutStart, FederationError> {
        let o = options(c)?;
        if o.disable_signout {
            return Ok(LogoutStart::NotSent("disableSignout is set".into()));
        }
        let Some(name_id) = upstream.name_id.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(LogoutStart::NotSent(
                "no SAML NameID is kept for the session".into(),
            ));
        };
        let idp = self.idp(&o, false).await?;
        let Some((to, binding)) = idp_slo(&o, &idp, false) else {
            return Ok(LogoutStart::NotSent(
                "the IdP has no SingleLogoutService".into(),
            ));
        };
        let keys = self
            .keys
            .snapshot()
            .map_err(|e| FederationError::Misconfigured(e.to_string()))?;
        let now = self.clock.now();
        let id = new_id();
        let xml = logout_request_xml(
            &id,
            &sp_config(c, latch).entity_id,
            to.as_str(),
            &NameId {
                value: name_id.to_owned(),
                format: upstream.name_id_format.clone(),
                ..NameId::default()
            },
            upstream.session_index.as_deref(),
            now,
            Some(now + LOGOUT_REQUEST_LIFETIME),
        );
        let out = latch_saml::idp::Outbound::carry(
            &keys.signing,
            binding,
            &to,
            true,
            &xml,
            &id,
            Some(state),
        )
        .map_err(|e| FederationError::Misconfigured(e.to_string()))?;
        Ok(LogoutStart::Send {
            to: out.into_continue(),
            saved: json!({ "request_id": id }),
            via: "saml_logout_request",
        })
    }

    /// The IdP's LogoutResponse: signed by it, to this endpoint, from its Issuer, in response
    /// to the LogoutRequest Latch sent.
    async fn finish_logout(
        &self,
        c: &Connection,
        latch: &str,
        arrived: Arrived<'_>,
        saved: &Value,
    ) -> Result<UpstreamAnswer, FederationError> {
        let o = options(c)?;
        let m = inbound(arrived, "SAMLResponse")?;
        let (idp, xml) = self.believed(&o, &m).await?;
        let msg = self.checked(c, latch, &idp, &xml, Kind::LogoutResponse)?;
        let sent = saved["request_id"].as_str().unwrap_or_default();
        if sent.is_empty() || msg.attr("InResponseTo") != Some(sent) {
            return Err(rejected(
                "the LogoutResponse does not answer Latch's LogoutRequest",
            ));
        }
        Ok(UpstreamAnswer {
            ok: msg.status.first().map(String::as_str) == Some(STATUS_SUCCESS),
            status: msg.status,
        })
    }
}
