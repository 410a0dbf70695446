//! How a SAML app is answered once the user is signed in: a signed Response POSTed to its ACS.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use latch_core::model::{SamlpAddon, User, name_id_format};
use latch_core::session::{SamlParticipant, Session, SessionClient};
use latch_core::{ConnectionName, Sid};
use latch_login::{Completion, Issued, LoginRequest, Refusal};
use latch_saml::idp::{
    AssertionSpec, STATUS_NO_PASSIVE, STATUS_REQUEST_DENIED, STATUS_RESPONDER, new_id,
    signed_error_response, signed_response,
};
use latch_saml::keys::IdpKeys;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What the SSO endpoint keeps in the login request for the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SamlState {
    /// The AuthnRequest's ID (`None`: IdP-initiated).
    pub request_id: Option<String>,
    pub relay_state: Option<String>,
    /// The addon as it was when the request came.
    pub addon: SamlpAddon,
    /// The request again as a GET path and query (the chooser's "Continue with …").
    pub restart: String,
}

/// Auth0's default mappings when an app names none (claim type URIs SPs commonly read).
const DEFAULT_MAPPINGS: [(&str, &str); 5] = [
    (
        "user_id",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    ),
    (
        "email",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ),
    (
        "name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    ),
    (
        "given_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ),
    (
        "family_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ),
];

fn user_attribute(u: &User, name: &str) -> Option<String> {
    match name {
        "user_id" => Some(u.user_id.as_str().to_owned()),
        "email" => u.email.clone(),
        "email_verified" => Some(u.email_verified.to_string()),
        "name" => u.name.clone(),
        "given_name" => u.given_name.clone(),
        "family_name" => u.family_name.clone(),
        "nickname" => u.nickname.clone(),
        "picture" => u.picture.clone(),
        _ => None,
    }
}

/// The attributes the assertion carries, per the addon's mappings (or Auth0's defaults).
pub(crate) fn attributes(addon: &SamlpAddon, u: &User) -> Vec<(String, String)> {
    let pairs: Vec<(&str, &str)> = if addon.mappings.is_empty() {
        DEFAULT_MAPPINGS.to_vec()
    } else {
        addon
            .mappings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    pairs
        .into_iter()
        .filter_map(|(from, to)| user_attribute(u, from).map(|v| (to.to_owned(), v)))
        .collect()
}

/// The NameID and its format for `u` per the addon: the email for `emailAddress` (the
/// `user_id` with `unspecified` when the user has none), else the `user_id`.
pub(crate) fn name_id(addon: &SamlpAddon, u: &User) -> (String, String) {
    if addon.name_identifier_format == name_id_format::EMAIL
        && let Some(email) = &u.email
    {
        return (email.clone(), name_id_format::EMAIL.to_owned());
    }
    let format = if addon.name_identifier_format == name_id_format::EMAIL {
        name_id_format::UNSPECIFIED
    } else {
        addon.name_identifier_format.as_str()
    };
    (u.user_id.as_str().to_owned(), format.to_owned())
}

pub struct SamlpCompletion {
    /// Latch's IdP entity id (the issuer).
    pub issuer: String,
    pub keys: Arc<IdpKeys>,
}

impl SamlpCompletion {
    fn state(r: &LoginRequest) -> Option<SamlState> {
        serde_json::from_value(r.protocol_state.clone()).ok()
    }

    fn post(&self, r: &LoginRequest, st: &SamlState, xml: String) -> HttpResponse {
        let Ok(acs) = url::Url::parse(&r.return_to) else {
            return latch_login::pages::expired();
        };
        let mut fields = vec![(
            "SAMLResponse".to_owned(),
            latch_saml::idp::base64(xml.as_bytes()),
        )];
        if let Some(rs) = &st.relay_state {
            fields.push(("RelayState".to_owned(), rs.clone()));
        }
        latch_login::pages::post_page("Signing in", &acs, &fields)
    }
}

fn failed(e: impl std::fmt::Display) -> Box<HttpResponse> {
    tracing::error!(error = %e, "SAML Response not made");
    Box::new(latch_login::pages::error(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "Sign-in failed",
        "The answer to the application could not be signed. Try again later.",
    ))
}

impl Completion for SamlpCompletion {
    fn join(&self, r: &LoginRequest, sid: &Sid, user: &User, now: OffsetDateTime) -> SessionClient {
        let saml = Self::state(r).map(|st| {
            let (name_id, name_id_format) = name_id(&st.addon, user);
            SamlParticipant {
                name_id,
                name_id_format,
                session_index: new_id(),
            }
        });
        SessionClient {
            saml,
            ..SessionClient::oidc(r.client_id.clone(), sid.clone(), now)
        }
    }

    fn issue(
        &self,
        r: &LoginRequest,
        session: &Session,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Issued, Box<HttpResponse>> {
        let Some(st) = Self::state(r) else {
            return Err(Box::new(latch_login::pages::expired()));
        };
        // The app's entry as the session keeps it: the NameID and SessionIndex its
        // LogoutRequests will name. An app that joined this session over OpenID Connect first
        // has none; it gets one for this answer (Single Logout then goes by NameID alone).
        let participant = session
            .clients
            .iter()
            .find(|c| c.client_id == r.client_id)
            .and_then(|c| c.saml.clone())
            .unwrap_or_else(|| {
                let (name_id, name_id_format) = name_id(&st.addon, user);
                SamlParticipant {
                    name_id,
                    name_id_format,
                    session_index: new_id(),
                }
            });
        let keys = self.keys.snapshot().map_err(failed)?;
        let attrs = attributes(&st.addon, user);
        let xml = signed_response(
            &keys.signing,
            &AssertionSpec {
                issuer: &self.issuer,
                audience: &st.addon.audience,
                acs_url: &r.return_to,
                in_response_to: st.request_id.as_deref(),
                name_id: &participant.name_id,
                name_id_format: &participant.name_id_format,
                session_index: &participant.session_index,
                authn_instant: session.auth_time,
                now,
                lifetime_seconds: st.addon.lifetime_in_seconds,
                attributes: &attrs,
                sign_response: st.addon.sign_response,
            },
        )
        .map_err(failed)?;
        Ok(Issued {
            code: None,
            response: self.post(r, &st, xml),
        })
    }

    fn refuse(&self, r: &LoginRequest, why: Refusal) -> HttpResponse {
        let Some(st) = Self::state(r) else {
            return latch_login::pages::expired();
        };
        let (second, message) = match &why {
            Refusal::LoginRequired => (STATUS_NO_PASSIVE, "The user is not signed in."),
            Refusal::InvalidRequest(d) => (STATUS_REQUEST_DENIED, d.as_str()),
        };
        let keys = match self.keys.snapshot() {
            Ok(k) => k,
            Err(e) => return *failed(e),
        };
        match signed_error_response(
            &keys.signing,
            &self.issuer,
            &r.return_to,
            st.request_id.as_deref(),
            STATUS_RESPONDER,
            Some(second),
            message,
            OffsetDateTime::now_utc(),
        ) {
            Ok(xml) => self.post(r, &st, xml),
            Err(e) => *failed(e),
        }
    }

    fn restart_with(
        &self,
        _req: &HttpRequest,
        r: &LoginRequest,
        connection: &ConnectionName,
    ) -> String {
        let Some(st) = Self::state(r) else {
            return crate::paths::sso(r.client_id.as_str());
        };
        let sep = if st.restart.contains('?') { '&' } else { '?' };
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("connection", connection.as_str());
        format!("{}{sep}{}", st.restart, q.finish())
    }
}
