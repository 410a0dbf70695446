//! `GET|POST /samlp/{client_id}`: the SingleSignOnService. Checks the AuthnRequest (or, when the
//! addon allows it, starts an IdP-initiated sign-in) and hands over to `latch-login`.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::ConnectionName;
use latch_core::model::{Client, SamlpAddon};
use latch_login::{Begin, Prompt, Protocol};
use latch_saml::idp::{HTTP_POST, Inbound, Kind, Message};

use crate::completion::SamlState;
use crate::{Deps, not_a_saml_app, paths, refused};

pub(crate) async fn get_sso(
    deps: web::Data<Deps>,
    req: HttpRequest,
    client_id: web::Path<String>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let Some((client, addon)) = deps.saml_app(&client_id).await? else {
        return Ok(not_a_saml_app());
    };
    let raw = req.query_string();
    let query: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let connection = query.get("connection").cloned();
    let inbound = match Inbound::from_redirect(raw, "SAMLRequest") {
        Ok(i) => i,
        Err(e) => return Ok(refused(&client_id, &e.to_string())),
    };
    let restart = format!(
        "{}?{}",
        paths::sso(client.client_id.as_str()),
        strip_connection(raw)
    );
    match inbound {
        Some(inbound) => begin(&deps, &req, client, addon, inbound, connection, restart).await,
        None => {
            idp_initiated(
                &deps,
                &req,
                client,
                addon,
                query.get("RelayState").cloned(),
                connection,
            )
            .await
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct SsoForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
    connection: Option<String>,
}

pub(crate) async fn post_sso(
    deps: web::Data<Deps>,
    req: HttpRequest,
    client_id: web::Path<String>,
    form: web::Form<SsoForm>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let Some((client, addon)) = deps.saml_app(&client_id).await? else {
        return Ok(not_a_saml_app());
    };
    let form = form.into_inner();
    let Some(value) = form.saml_request else {
        return idp_initiated(
            &deps,
            &req,
            client,
            addon,
            form.relay_state,
            form.connection,
        )
        .await;
    };
    let inbound = match Inbound::from_post(&value, form.relay_state) {
        Ok(i) => i,
        Err(e) => return Ok(refused(&client_id, &e.to_string())),
    };
    // The SP's page posts across sites, and the `SameSite=Lax` session cookie does not come
    // with a cross-site POST: the same message goes on as a GET (a top-level GET brings the
    // cookie, so single sign-on works), its enveloped signature still covering it. The GET is
    // where it is checked.
    Ok(crate::see_other_with(
        &paths::sso(client.client_id.as_str()),
        &inbound,
        "SAMLRequest",
        form.connection.as_deref(),
    ))
}

/// An AuthnRequest is a few kilobytes; a larger one is no SP's (and would sit in the login
/// transaction for its lifetime).
const MAX_AUTHN_REQUEST: usize = 32 * 1024;

fn strip_connection(raw: &str) -> String {
    raw.split('&')
        .filter(|p| !p.starts_with("connection=") && *p != "connection")
        .collect::<Vec<_>>()
        .join("&")
}

/// The ACS the Response goes to: the request's `AssertionConsumerServiceURL` when it names the
/// addon's `recipient` or one of `callbacks` exactly, else (none named) the default.
fn acs(client: &Client, requested: Option<&str>) -> Result<String, String> {
    let default = client
        .saml_acs()
        .map(|u| u.as_str().to_owned())
        .ok_or_else(|| "the application has no AssertionConsumerService URL".to_owned())?;
    match requested {
        None => Ok(default),
        Some(u) if u == default || client.callbacks.iter().any(|c| c.as_str() == u) => {
            Ok(u.to_owned())
        }
        Some(u) => Err(format!(
            "AssertionConsumerServiceURL {u} is not registered for this application"
        )),
    }
}

async fn begin(
    deps: &Deps,
    req: &HttpRequest,
    client: Client,
    addon: SamlpAddon,
    inbound: Inbound,
    connection: Option<String>,
    restart: String,
) -> Result<HttpResponse, latch_http::ApiError> {
    let id = client.client_id.as_str().to_owned();
    if let Err(why) = crate::bounded(&inbound, MAX_AUTHN_REQUEST) {
        return Ok(refused(&id, why));
    }
    // 1. Believe nothing before the signature, when the app has a certificate.
    let xml = match crate::believed(&inbound, &addon, "AuthnRequests") {
        Ok(x) => x,
        Err(why) => return Ok(refused(&id, &why)),
    };
    let m = match Message::parse(&xml) {
        Ok(m) if m.kind == Kind::AuthnRequest => m,
        Ok(_) => return Ok(refused(&id, "SAMLRequest is not an AuthnRequest")),
        Err(e) => return Ok(refused(&id, &e.to_string())),
    };
    let now = deps.clock.now();
    if let Err(e) = m.check_common(&deps.url(&paths::sso(&id)), now) {
        return Ok(refused(&id, &e.to_string()));
    }
    // SAML bindings §3.4.5.2, §3.5.5.2: a signed message names where it is going.
    if addon.signing_cert.is_some() && m.attr("Destination").is_none() {
        return Ok(refused(
            &id,
            "a signed AuthnRequest must carry a Destination",
        ));
    }
    // 2. Who asks, and where the answer goes.
    if m.issuer.as_deref() != Some(addon.audience.as_str()) {
        return Ok(refused(
            &id,
            "the AuthnRequest's Issuer is not this application's audience",
        ));
    }
    if m.attr("ProtocolBinding").is_some_and(|b| b != HTTP_POST) {
        return Ok(refused(
            &id,
            "only the HTTP-POST binding is offered for the Response",
        ));
    }
    let acs = match acs(&client, m.attr("AssertionConsumerServiceURL")) {
        Ok(a) => a,
        Err(why) => return Ok(refused(&id, &why)),
    };
    let flag = |name: &str| matches!(m.attr(name), Some("true" | "1"));
    let prompt = Prompt {
        none: flag("IsPassive"),
        login: flag("ForceAuthn"),
    };
    let state = SamlState {
        request_id: m.id().map(str::to_owned),
        relay_state: inbound.relay_state.clone(),
        addon,
        restart,
    };
    start(deps, req, client, acs, prompt, connection, state).await
}

async fn idp_initiated(
    deps: &Deps,
    req: &HttpRequest,
    client: Client,
    addon: SamlpAddon,
    relay_state: Option<String>,
    connection: Option<String>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let id = client.client_id.as_str().to_owned();
    if relay_state
        .as_ref()
        .is_some_and(|r| r.len() > crate::MAX_RELAY_STATE)
    {
        return Ok(refused(&id, "RelayState is too long"));
    }
    if !addon.allow_idp_initiated {
        return Ok(refused(
            &id,
            "this application accepts sign-in only through its own AuthnRequest (IdP-initiated sign-in is off)",
        ));
    }
    let acs = match acs(&client, None) {
        Ok(a) => a,
        Err(why) => return Ok(refused(&id, &why)),
    };
    let state = SamlState {
        request_id: None,
        relay_state,
        addon,
        restart: paths::sso(&id),
    };
    start(deps, req, client, acs, Prompt::default(), connection, state).await
}

async fn start(
    deps: &Deps,
    req: &HttpRequest,
    client: Client,
    acs: String,
    prompt: Prompt,
    connection: Option<String>,
    state: SamlState,
) -> Result<HttpResponse, latch_http::ApiError> {
    let protocol_state = serde_json::to_value(&state).map_err(|e| {
        latch_http::ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })?;
    deps.login
        .begin(
            req,
            Begin {
                protocol: Protocol::Samlp,
                client,
                return_to: acs,
                prompt,
                max_age: None,
                login_hint: None,
                connection: connection
                    .filter(|c| !c.is_empty())
                    .map(ConnectionName::new),
                protocol_state,
            },
        )
        .await
}
