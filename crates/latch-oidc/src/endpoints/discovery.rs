//! `/.well-known/openid-configuration` and `/.well-known/jwks.json`. Discovery lists only what
//! Latch does today.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{Deps, paths};

pub async fn get_discovery(deps: web::Data<Deps>) -> HttpResponse {
    let u = |p: &str| deps.url(p);
    HttpResponse::Ok().insert_header(("Cache-Control", "public, max-age=300")).json(json!({
        "issuer": deps.issuer,
        "authorization_endpoint": u(paths::AUTHORIZE),
        "token_endpoint": u(paths::TOKEN),
        "userinfo_endpoint": u(paths::USERINFO),
        "jwks_uri": u(paths::JWKS),
        "end_session_endpoint": u(paths::LOGOUT),
        "revocation_endpoint": u(paths::REVOKE),
        "introspection_endpoint": u(paths::INTROSPECT),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "email", "email_verified", "name", "nickname", "picture", "given_name", "family_name", "updated_at"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    }))
}

pub async fn get_jwks(deps: web::Data<Deps>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .json(deps.keys.jwks())
}
