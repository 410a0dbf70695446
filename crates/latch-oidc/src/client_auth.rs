//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, or `none` (public clients, PKCE), exactly as the
//! client registered; one method per request.

use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_core::ClientId;
use latch_core::model::{Client, TokenEndpointAuthMethod};
use latch_http::OAuthError;

use crate::Deps;

/// `application/x-www-form-urlencoded` decoding of one Basic credential part (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn basic(req: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Some(b64) = h.to_str().ok().and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    }) else {
        return Ok(None);
    };
    let bad = || {
        let mut e = OAuthError::invalid_client();
        e.basic_challenge = true;
        e
    };
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

/// The authenticated client, or `invalid_client`.
pub async fn authenticate(
    deps: &Deps,
    req: &HttpRequest,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Client, OAuthError> {
    let basic = basic(req)?;
    let (id, secret, method) = match (basic, form_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "Use one client authentication method per request.",
            ));
        }
        (Some((id, secret)), None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the authenticated client.",
                ));
            }
            (id, Some(secret), TokenEndpointAuthMethod::ClientSecretBasic)
        }
        (None, Some(secret)) => {
            let id =
                form_id.ok_or_else(|| OAuthError::invalid_request("client_id is required."))?;
            (
                id.to_owned(),
                Some(secret.to_owned()),
                TokenEndpointAuthMethod::ClientSecretPost,
            )
        }
        (None, None) => {
            let id = form_id.ok_or_else(OAuthError::invalid_client)?;
            (id.to_owned(), None, TokenEndpointAuthMethod::None)
        }
    };
    let challenge = method == TokenEndpointAuthMethod::ClientSecretBasic;
    let fail = |detail: &str| {
        let mut e = OAuthError::invalid_client().detail(detail.to_owned());
        e.basic_challenge = challenge;
        e
    };
    let client = deps
        .store
        .find_client(&ClientId::new(id))
        .await?
        .ok_or_else(|| fail("unknown client"))?;
    if client.token_endpoint_auth_method != method {
        return Err(fail(
            "authentication method differs from the registered one",
        ));
    }
    if let Some(secret) = secret
        && !client
            .secrets
            .iter()
            .any(|s| latch_jose::verify_token(&secret, &s.digest))
    {
        return Err(fail("wrong client secret"));
    }
    Ok(client)
}
