//! The management API's OpenAPI 3.1 document, served without authentication at
//! `GET /api/v2/openapi.json`. It is derived from the handlers' own request, query and response
//! types (utoipa); [`Conventions`] adds what every operation shares (the bearer scheme, the JSON
//! error answers). A test checks it lists exactly the routes `/api/v2` is built from.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::Method;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::api::{self, Op, op};

/// The document's path, under `/api/v2`.
pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch management API",
        version = "2",
        description = "Latch's management API, shaped as Auth0's Management API v2. Every \
            operation but this document's takes `Authorization: Bearer` with the operator's admin \
            token or a `client_credentials` access token for the audience `{issuer}/api/v2/` \
            holding the scope the operation names. Errors are JSON: `statusCode`, `error`, \
            `message`, `errorCode`, and `field` naming the input at fault."
    ),
    paths(
        api::connections::get_connections,
        api::connections::post_connection,
        api::connections::get_connection,
        api::connections::patch_connection,
        api::connections::delete_connection,
        api::connections::get_connection_clients,
        api::connections::patch_connection_clients,
        api::connections::scim::post_scim_configuration,
        api::connections::scim::get_scim_configuration,
        api::connections::scim::patch_scim_configuration,
        api::connections::scim::delete_scim_configuration,
        api::connections::scim::post_scim_token,
        api::connections::scim::get_scim_tokens,
        api::connections::scim::delete_scim_token,
        api::clients::get_clients,
        api::clients::post_client,
        api::clients::get_client,
        api::clients::patch_client,
        api::clients::delete_client,
        api::clients::post_rotate_secret,
        api::users::get_users,
        api::users::post_user,
        api::users::get_user,
        api::users::patch_user,
        api::users::delete_user,
        api::users::get_user_sessions,
        api::users::delete_user_sessions,
        api::users::one_session::delete_user_session,
        api::users::get_user_refresh_tokens,
        api::users::get_users_by_email,
        api::keys::get_keys,
        api::keys::post_rotate,
        api::client_grants::get_client_grants,
        api::client_grants::post_client_grant,
        api::client_grants::patch_client_grant,
        api::client_grants::delete_client_grant,
        api::logs::get_logs,
        api::log_streams::get_log_streams,
        api::log_streams::post_log_stream,
        api::log_streams::get_log_stream,
        api::log_streams::patch_log_stream,
        api::log_streams::delete_log_stream,
        api::deliveries::post_retry_delivery,
        api::deliveries::get_deliveries,
        api::deliveries::post_retry_logout_delivery,
        get_openapi,
    ),
    components(schemas(latch_http::error::ErrorBody)),
    modifiers(&Conventions)
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

static JSON: LazyLock<String> = LazyLock::new(|| document().to_json().unwrap_or_default());

pub(crate) fn routes() -> Vec<Op> {
    vec![op(Method::GET, PATH, get_openapi)]
}

/// This document (OpenAPI 3.1), without authentication.
#[utoipa::path(get, path = "/api/v2/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(JSON.as_str())
}

/// What every operation shares, so each handler's annotation names only what is its own.
struct Conventions;

const SCHEME: &str = "bearer";

fn error(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error(description).into());
}

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SCHEME,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The admin token, or an access token for the management API audience.",
                        ))
                        .build(),
                ),
            );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_input = !params.is_empty() || op.request_body.is_some();
                let has_id = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                if has_input {
                    add(
                        op,
                        "400",
                        "Invalid input; `field` names it (a member of the body, `body` itself, or a parameter).",
                    );
                }
                if has_id {
                    add(op, "404", "Nothing has this id.");
                }
                if op.request_body.is_some() {
                    add(op, "413", "The body is larger than 64 KiB.");
                    add(op, "415", "The body is not `application/json`.");
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(op, "401", "No valid bearer token.");
                    add(
                        op,
                        "403",
                        "The token lacks the operation's scope, or the change is refused.",
                    );
                    add(op, "500", "Internal error (logged).");
                    add(
                        op,
                        "503",
                        "The database or the session store is unavailable.",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn documented() -> (Value, BTreeSet<(String, String)>) {
        let doc: Value = serde_json::from_str(JSON.as_str()).unwrap();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
        (doc, ops)
    }

    /// Every route `/api/v2` is built from is in the document, and the document lists nothing
    /// else: a new route without an annotation, or an annotation with a wrong path or method,
    /// fails here.
    #[test]
    fn the_document_lists_exactly_the_registered_routes() {
        let registered: BTreeSet<(String, String)> = api::routes()
            .iter()
            .map(|o| (o.method.to_string(), format!("/api/v2{}", o.path)))
            .collect();
        let (_, documented) = documented();
        let missing: Vec<_> = registered.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "registered but not documented: {missing:?}; documented but not registered: {extra:?}"
        );
        assert!(registered.len() > 25, "{registered:?}");
    }

    #[test]
    fn every_authenticated_operation_names_its_scope_and_error_shape() {
        let (doc, _) = documented();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"][SCHEME]["scheme"],
            "bearer"
        );
        let error = &doc["components"]["schemas"]["ApiError"];
        for member in ["statusCode", "error", "message", "errorCode"] {
            assert!(
                error["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == member),
                "{member}: {error}"
            );
        }
        assert!(error["properties"]["field"].is_object(), "{error}");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let open = path == "/api/v2/openapi.json";
                let security = &op["security"];
                assert_eq!(security.is_null(), open, "{method} {path}: {security}");
                if open {
                    continue;
                }
                let scopes = security[0][SCHEME].as_array().unwrap();
                assert!(!scopes.is_empty(), "{method} {path}");
                let unauthorized = &op["responses"]["401"]["content"]["application/json"];
                assert_eq!(
                    unauthorized["schema"]["$ref"], "#/components/schemas/ApiError",
                    "{method} {path}"
                );
            }
        }
    }
}
