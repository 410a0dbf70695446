//! `GET /samlp/metadata/{client_id}`: Latch's IdP metadata for one SAML app.

use actix_web::{HttpResponse, web};
use latch_saml::idp::{IdpMetadata, idp_metadata};

use crate::{Deps, not_a_saml_app, paths};

pub(crate) async fn get_metadata(
    deps: web::Data<Deps>,
    client_id: web::Path<String>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let Some((client, addon)) = deps.saml_app(&client_id).await? else {
        return Ok(not_a_saml_app());
    };
    let keys = deps.keys.snapshot().map_err(|e| {
        tracing::error!(error = %e, "SAML keys unavailable");
        latch_http::ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "signing keys are not loaded",
        )
    })?;
    let certs: Vec<_> = keys.published.iter().collect();
    let xml = idp_metadata(&IdpMetadata {
        entity_id: &deps.issuer,
        sso_url: &deps.url(&paths::sso(client.client_id.as_str())),
        slo_url: &deps.url(&paths::slo(client.client_id.as_str())),
        certs: &certs,
        want_requests_signed: addon.signing_cert.is_some(),
    });
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(xml))
}
