//! The management API (`/api/v2/connections`, `/api/v2/clients`) on every backend pair.

use actix_web::http::{Method, StatusCode};
use actix_web::test;
use latch_core::model::LogQuery;
use serde_json::{Value, json};

use crate::support::{Harness, TOKEN, call};
use crate::{app, on_all_backends};

/// `call` with the admin token: `api!(app, GET "/path")`, `api!(app, POST "/path", body)`.
macro_rules! api {
    ($app:expr, $m:ident $uri:expr) => {
        call(&$app, stringify!($m), &$uri, None, Some(TOKEN)).await
    };
    ($app:expr, $m:ident $uri:expr, $body:expr) => {
        call(&$app, stringify!($m), &$uri, Some($body), Some(TOKEN)).await
    };
}

async fn connections_crud(h: Harness) {
    let app = app!(h);

    // The built-in database connection exists from the first start.
    let (s, list) = api!(app, GET "/api/v2/connections");
    assert_eq!(s, 200);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "database" && c["strategy"] == "auth0")
    );

    let (s, client) = api!(app, POST "/api/v2/clients", json!({"name": "Web", "callbacks": ["https://app.example.com/cb"]}));
    assert_eq!(s, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap().to_owned();

    let okta = json!({
        "name": "acme-okta", "strategy": "okta", "display_name": "Acme Okta",
        "options": {"domain": "acme.okta.com", "client_id": "0oa1abc", "client_secret": "very-secret-value",
                    "global_token_revocation_enabled": true},
        "enabled_clients": [client_id]
    });
    let (s, created) = api!(app, POST "/api/v2/connections", okta.clone());
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("con_"));
    assert_eq!(created["strategy"], "okta");
    assert_eq!(created["enabled_clients"], json!([client_id]));
    assert!(
        created["options"].get("client_secret").is_none(),
        "secret returned: {created}"
    );
    assert!(!created.to_string().contains("very-secret-value"));

    // The secret is stored (encrypted) and usable.
    let stored = h
        .state
        .store
        .get_connection(&latch_core::ConnectionId::new(&id))
        .await
        .unwrap();
    assert_eq!(
        stored.secrets["client_secret"].expose(),
        "very-secret-value"
    );

    let (s, got) = api!(app, GET format!("/api/v2/connections/{id}"));
    assert_eq!((s, got.clone()), (StatusCode::OK, created.clone()));
    let (s, by_strategy) = api!(app, GET "/api/v2/connections?strategy=okta&include_totals=true");
    assert_eq!(s, 200);
    assert_eq!(by_strategy["total"], 1);
    assert_eq!(by_strategy["connections"][0]["id"], id.as_str());

    // Duplicate name: 409, nothing created.
    let (s, err) = api!(app, POST "/api/v2/connections", okta.clone());
    assert_eq!(s, 409, "{err}");
    assert_eq!(err["field"], "name");
    let (_, list) = api!(app, GET "/api/v2/connections");
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == "acme-okta")
            .count(),
        1
    );

    // PATCH replaces options whole; a secret left out is kept.
    let (s, patched) = api!(app, PATCH format!("/api/v2/connections/{id}"),
        json!({"options": {"domain": "acme2.okta.com", "client_id": "0oa2"}, "enabled_clients": []}));
    assert_eq!(s, 200, "{patched}");
    assert_eq!(
        patched["options"],
        json!({"domain": "acme2.okta.com", "client_id": "0oa2"})
    );
    assert_eq!(patched["enabled_clients"], json!([]));
    let stored = h
        .state
        .store
        .get_connection(&latch_core::ConnectionId::new(&id))
        .await
        .unwrap();
    assert_eq!(
        stored.secrets["client_secret"].expose(),
        "very-secret-value"
    );

    // Name and strategy cannot change.
    let (s, err) =
        api!(app, PATCH format!("/api/v2/connections/{id}"), json!({"strategy": "oidc"}));
    assert_eq!(s, 400);
    assert_eq!(err["field"], "strategy");

    // Enabled clients.
    let (s, _) = api!(app, PATCH format!("/api/v2/connections/{id}/clients"), json!([{"client_id": client_id, "status": true}]));
    assert_eq!(s, 204);
    let (_, clients) = api!(app, GET format!("/api/v2/connections/{id}/clients"));
    assert_eq!(clients["clients"], json!([{"client_id": client_id}]));
    let (s, err) = api!(app, PATCH format!("/api/v2/connections/{id}/clients"), json!([{"client_id": "nope", "status": true}]));
    assert_eq!(s, 400, "{err}");

    // Delete.
    let (s, _) = api!(app, DELETE format!("/api/v2/connections/{id}"));
    assert_eq!(s, 204);
    let (s, err) = api!(app, GET format!("/api/v2/connections/{id}"));
    assert_eq!(s, 404);
    assert_eq!(err["statusCode"], 404);
    let (s, _) = api!(app, DELETE format!("/api/v2/connections/{id}"));
    assert_eq!(s, 404);

    // The built-in database connection stays.
    let db_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "database")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = api!(app, DELETE format!("/api/v2/connections/{db_id}"));
    assert_eq!(s, 400);

    // Every write is in the log with its actor.
    let logs = h
        .state
        .store
        .list_logs(&LogQuery {
            event_type: Some("sapi".into()),
            per_page: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        logs.iter()
            .any(|e| e.description == "Create a connection" && e.details["actor"] == "admin-token")
    );
    assert!(logs.iter().any(|e| e.description == "Delete a connection"));
    assert!(
        !serde_json::to_string(&logs.iter().map(|e| &e.details).collect::<Vec<_>>())
            .unwrap()
            .contains("very-secret-value")
    );
}
on_all_backends!(connections_crud, connections_crud);

async fn connection_validation_changes_nothing(h: Harness) {
    let app = app!(h);
    let before = h.state.store.list_connections().await.unwrap();
    let cases = [
        (json!({"strategy": "okta"}), "name"),
        (json!({"name": "has space", "strategy": "oidc"}), "name"),
        (json!({"name": "ok-name", "strategy": "ldap"}), "strategy"),
        (
            json!({"name": "ok-name", "strategy": "okta", "options": {"client_id": "x", "client_secret": "y"}}),
            "options.domain",
        ),
        (
            json!({"name": "ok-name", "strategy": "okta", "options": {"domain": "http://acme.okta.com", "client_id": "x", "client_secret": "y"}}),
            "options.domain",
        ),
        (
            json!({"name": "ok-name", "strategy": "oidc", "options": {"client_id": "x", "client_secret": "y"}}),
            "options.discovery_url",
        ),
        (
            json!({"name": "ok-name", "strategy": "oidc", "options": {"issuer": "not a url", "client_id": "x", "client_secret": "y"}}),
            "options.issuer",
        ),
        (
            json!({"name": "ok-name", "strategy": "samlp", "options": {}}),
            "options.metadataUrl",
        ),
        (
            json!({"name": "ok-name", "strategy": "auth0", "options": {"passwordPolicy": "weak"}}),
            "options.passwordPolicy",
        ),
        (
            json!({"name": "ok-name", "strategy": "auth0", "options": {"nonsense": 1}}),
            "options.nonsense",
        ),
        (
            json!({"name": "ok-name", "strategy": "auth0", "enabled_clients": ["missing-client"]}),
            "enabled_clients[0]",
        ),
        (
            json!({"name": "ok-name", "strategy": "auth0", "extra": true}),
            "extra",
        ),
        (json!({"name": 5, "strategy": "auth0"}), "name"),
    ];
    for (body, field) in cases {
        let (s, err) = api!(app, POST "/api/v2/connections", body.clone());
        assert_eq!(s, 400, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
        assert_eq!(err["errorCode"], "invalid_body");
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
    }
    assert_eq!(h.state.store.list_connections().await.unwrap(), before);

    // Not JSON, wrong content type, too large.
    let req = test::TestRequest::post()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{not json")
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 400);
    let req = test::TestRequest::post()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("Content-Type", "text/plain"))
        .set_payload(r#"{"name":"x","strategy":"auth0"}"#)
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 415);
    let big = json!({"name": "big", "strategy": "auth0", "display_name": "x".repeat(100_000)});
    let (s, _) = api!(app, POST "/api/v2/connections", big);
    assert_eq!(s, 413);
    assert_eq!(h.state.store.list_connections().await.unwrap(), before);
}
on_all_backends!(
    connection_validation_changes_nothing,
    connection_validation_changes_nothing
);

async fn clients_crud(h: Harness) {
    let app = app!(h);
    let body = json!({
        "name": "Store Front", "app_type": "regular_web",
        "callbacks": ["https://shop.example.com/callback", "http://127.0.0.1:3000/callback"],
        "allowed_logout_urls": ["https://shop.example.com/"],
        "jwt_configuration": {"alg": "ES256", "lifetime_in_seconds": 3600},
        "oidc_logout": {"backchannel_logout_urls": ["https://shop.example.com/backchannel"], "backchannel_logout_session_required": true}
    });
    let (s, c) = api!(app, POST "/api/v2/clients", body);
    assert_eq!(s, 201, "{c}");
    let id = c["client_id"].as_str().unwrap().to_owned();
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 64);
    assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        c["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(c["jwt_configuration"]["alg"], "ES256");
    assert_eq!(
        c["oidc_logout"]["backchannel_logout_urls"],
        json!(["https://shop.example.com/backchannel"])
    );

    // Stored as a digest only; never returned again.
    let stored = h
        .state
        .store
        .get_client(&latch_core::ClientId::new(&id))
        .await
        .unwrap();
    assert_eq!(stored.secrets.len(), 1);
    assert!(latch_jose::verify_token(&secret, &stored.secrets[0].digest));
    assert_ne!(stored.secrets[0].digest.as_str(), secret);
    let (s, got) = api!(app, GET format!("/api/v2/clients/{id}"));
    assert_eq!(s, 200);
    assert!(got.get("client_secret").is_none());
    let (_, all) = api!(app, GET "/api/v2/clients");
    assert!(!all.to_string().contains(&secret));

    // New clients get the database connection.
    let db = h
        .state
        .store
        .find_connection_by_name(&latch_core::ConnectionName::new("database"))
        .await
        .unwrap()
        .unwrap();
    assert!(db.enabled_clients.contains(&latch_core::ClientId::new(&id)));

    // Update.
    let (s, u) = api!(app, PATCH format!("/api/v2/clients/{id}"),
        json!({"name": "Shop", "callbacks": ["https://shop.example.com/cb2"], "oidc_logout": {"backchannel_logout_urls": []}}));
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["name"], "Shop");
    assert_eq!(u["callbacks"], json!(["https://shop.example.com/cb2"]));
    assert_eq!(u["oidc_logout"]["backchannel_logout_urls"], json!([]));
    assert_eq!(u["jwt_configuration"]["alg"], "ES256");

    // Rotate: the old secret stops matching.
    let (s, r) = api!(app, POST format!("/api/v2/clients/{id}/rotate-secret"), json!({}));
    assert_eq!(s, 200);
    let new_secret = r["client_secret"].as_str().unwrap();
    let stored = h
        .state
        .store
        .get_client(&latch_core::ClientId::new(&id))
        .await
        .unwrap();
    assert!(latch_jose::verify_token(
        new_secret,
        &stored.secrets[0].digest
    ));
    assert!(
        !stored
            .secrets
            .iter()
            .any(|s| latch_jose::verify_token(&secret, &s.digest))
    );

    // A public client: no secret, method none.
    let (s, spa) = api!(app, POST "/api/v2/clients", json!({"name": "SPA", "app_type": "spa"}));
    assert_eq!(s, 201);
    assert!(spa.get("client_secret").is_none());
    assert_eq!(spa["token_endpoint_auth_method"], "none");

    // Delete.
    let (s, _) = api!(app, DELETE format!("/api/v2/clients/{id}"));
    assert_eq!(s, 204);
    let (s, _) = api!(app, GET format!("/api/v2/clients/{id}"));
    assert_eq!(s, 404);
    let db = h
        .state
        .store
        .find_connection_by_name(&latch_core::ConnectionName::new("database"))
        .await
        .unwrap()
        .unwrap();
    assert!(!db.enabled_clients.contains(&latch_core::ClientId::new(&id)));
}
on_all_backends!(clients_crud, clients_crud);

async fn client_validation_changes_nothing(h: Harness) {
    let app = app!(h);
    let before = h.state.store.list_clients().await.unwrap();
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (
            json!({"name": "x", "callbacks": ["http://app.example.com/cb"]}),
            "callbacks[0]",
        ),
        (
            json!({"name": "x", "callbacks": ["https://ok.example.com/cb", "javascript:alert(1)"]}),
            "callbacks[1]",
        ),
        (
            json!({"name": "x", "allowed_logout_urls": ["https://a.example.com/#frag"]}),
            "allowed_logout_urls[0]",
        ),
        (json!({"name": "x", "app_type": "mainframe"}), "app_type"),
        (
            json!({"name": "x", "grant_types": ["password"]}),
            "grant_types[0]",
        ),
        (
            json!({"name": "x", "app_type": "spa", "grant_types": ["client_credentials"]}),
            "grant_types",
        ),
        (
            json!({"name": "x", "app_type": "spa", "token_endpoint_auth_method": "client_secret_post"}),
            "token_endpoint_auth_method",
        ),
        (
            json!({"name": "x", "jwt_configuration": {"alg": "HS256"}}),
            "jwt_configuration.alg",
        ),
        (
            json!({"name": "x", "jwt_configuration": {"lifetime_in_seconds": 5}}),
            "jwt_configuration.lifetime_in_seconds",
        ),
        (
            json!({"name": "x", "refresh_token": {"rotation_type": "non-rotating"}}),
            "refresh_token.rotation_type",
        ),
        (
            json!({"name": "x", "oidc_logout": {"backchannel_logout_urls": ["https://a.example.com/1", "https://a.example.com/2"]}}),
            "oidc_logout.backchannel_logout_urls",
        ),
        (
            json!({"name": "x", "oidc_logout": {"backchannel_logout_urls": ["ftp://a.example.com/"]}}),
            "oidc_logout.backchannel_logout_urls[0]",
        ),
        (
            json!({"name": "x", "web_origins": ["https://a.example.com/path"]}),
            "web_origins[0]",
        ),
        (
            json!({"name": "x", "client_secret": "mine"}),
            "client_secret",
        ),
    ];
    for (body, field) in cases {
        let (s, err) = api!(app, POST "/api/v2/clients", body.clone());
        assert_eq!(s, 400, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
    }
    assert_eq!(h.state.store.list_clients().await.unwrap(), before);

    // A bad update changes nothing either.
    let (_, c) = api!(app, POST "/api/v2/clients", json!({"name": "Keep", "callbacks": ["https://keep.example.com/cb"]}));
    let id = c["client_id"].as_str().unwrap();
    let (s, _) = api!(app, PATCH format!("/api/v2/clients/{id}"), json!({"name": "Changed", "callbacks": ["http://evil.example.com/"]}));
    assert_eq!(s, 400);
    let (_, got) = api!(app, GET format!("/api/v2/clients/{id}"));
    assert_eq!(got["name"], "Keep");
    assert_eq!(got["callbacks"], json!(["https://keep.example.com/cb"]));
    let (s, _) = api!(app, PATCH "/api/v2/clients/no-such-client", json!({"name": "x"}));
    assert_eq!(s, 404);
}
on_all_backends!(
    client_validation_changes_nothing,
    client_validation_changes_nothing
);

async fn credentials_are_required(h: Harness) {
    let app = app!(h);
    let before = h.state.store.list_connections().await.unwrap();
    let body = json!({"name": "sneaky", "strategy": "auth0"});
    for token in [None, Some("wrong-token"), Some("")] {
        let (s, err) = call(
            &app,
            "POST",
            "/api/v2/connections",
            Some(body.clone()),
            token,
        )
        .await;
        assert_eq!(s, 401, "{token:?}");
        assert_eq!(err["statusCode"], 401);
        let (s, _) = call(&app, "GET", "/api/v2/clients", None, token).await;
        assert_eq!(s, 401);
    }
    // Other schemes are refused too.
    let req = test::TestRequest::get()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Basic {TOKEN}")))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(h.state.store.list_connections().await.unwrap(), before);
}
on_all_backends!(credentials_are_required, credentials_are_required);

async fn logs_api(h: Harness) {
    let app = app!(h);
    let (_, c) = api!(app, POST "/api/v2/clients", json!({"name": "Logged"}));
    let cid = c["client_id"].as_str().unwrap().to_owned();
    let (s, logs) = api!(app, GET "/api/v2/logs?type=sapi&per_page=100");
    assert_eq!(s, 200);
    let all = logs.as_array().unwrap();
    assert!(all.iter().all(|e| e["type"] == "sapi"));
    assert!(
        all.iter()
            .any(|e| e["client_id"] == cid.as_str() && e["description"] == "Create a client")
    );
    // Newest first, filters, paging, totals.
    let (_, mine) = api!(app, GET format!("/api/v2/logs?client_id={cid}&include_totals=true"));
    assert_eq!(mine["logs"].as_array().unwrap().len(), 1);
    assert_eq!(mine["logs"][0]["details"]["actor"], "admin-token");
    let (_, none) =
        api!(app, GET format!("/api/v2/logs?client_id={cid}&from=2999-01-01T00:00:00Z"));
    assert!(none.as_array().unwrap().is_empty());
    let (s, err) = api!(app, GET "/api/v2/logs?from=yesterday");
    assert_eq!(
        (s, err["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("from"))
    );
    let (s, _) = api!(app, GET "/api/v2/logs?per_page=1000");
    assert_eq!(s, 400);
    let (s, _) = call(&app, "GET", "/api/v2/logs", None, None).await;
    assert_eq!(s, 401);
}
on_all_backends!(logs_api, logs_api);

/// Sends `body` as written, with a JSON content type; the status, the headers and the body as
/// JSON (`Null` when it is not JSON).
async fn raw<S, B>(
    app: &S,
    method: Method,
    uri: &str,
    body: &'static str,
) -> (StatusCode, actix_web::http::header::HeaderMap, Value)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let req = test::TestRequest::default()
        .method(method)
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body)
        .to_request();
    let res = test::call_service(app, req).await;
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = test::read_body(res).await;
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The one JSON error shape: status repeated, reason, message, code, and the field at fault.
fn assert_error(status: StatusCode, err: &Value, want: u16, field: Option<&str>) {
    assert_eq!(status.as_u16(), want, "{err}");
    assert_eq!(err["statusCode"], want, "{err}");
    assert!(
        err["error"].is_string() && err["message"].is_string(),
        "{err}"
    );
    assert!(err["errorCode"].is_string(), "{err}");
    match field {
        Some(f) => assert_eq!(err["field"], f, "{err}"),
        None => assert!(err.get("field").is_none(), "{err}"),
    }
}

/// Redirect and logout URLs are matched exactly, so a wildcard host is refused wherever an app
/// URL goes, naming the field, and nothing is written.
async fn wildcard_hosts_are_refused(h: Harness) {
    let app = app!(h);
    let before = h.state.store.list_clients().await.unwrap();
    for (body, field) in [
        (
            json!({"name": "W", "callbacks": ["https://ok.example.com/cb", "https://*.example.com/cb"]}),
            "callbacks[1]",
        ),
        (
            json!({"name": "W", "callbacks": ["https://%2A.example.com/cb"]}),
            "callbacks[0]",
        ),
        (
            json!({"name": "W", "allowed_logout_urls": ["https://*.example.com/"]}),
            "allowed_logout_urls[0]",
        ),
        (
            json!({"name": "W", "oidc_logout": {"backchannel_logout_urls": ["https://*.example.com/bc"]}}),
            "oidc_logout.backchannel_logout_urls[0]",
        ),
        (
            json!({"name": "W", "oidc_logout": {"frontchannel_logout_url": "https://app.*.example.com/fc"}}),
            "oidc_logout.frontchannel_logout_url",
        ),
    ] {
        let (s, err) = api!(app, POST "/api/v2/clients", body.clone());
        assert_error(s, &err, 400, Some(field));
        assert!(err["message"].as_str().unwrap().contains('*'), "{err}");
    }
    assert_eq!(h.state.store.list_clients().await.unwrap(), before);

    // An update is refused the same way and leaves the client as it was.
    let (_, c) = api!(app, POST "/api/v2/clients", json!({"name": "W", "callbacks": ["https://w.example.com/cb"]}));
    let id = c["client_id"].as_str().unwrap();
    let (s, err) = api!(app, PATCH format!("/api/v2/clients/{id}"), json!({"callbacks": ["https://*.example.com/cb"]}));
    assert_error(s, &err, 400, Some("callbacks[0]"));
    let (_, now) = api!(app, GET format!("/api/v2/clients/{id}"));
    assert_eq!(now["callbacks"], json!(["https://w.example.com/cb"]));
}
on_all_backends!(wildcard_hosts_are_refused, wildcard_hosts_are_refused);

/// A body that is not JSON names `body` and says where it broke; a wrong member names the member.
async fn malformed_json_names_the_body(h: Harness) {
    let app = app!(h);
    let before = h.state.store.list_clients().await.unwrap();
    for body in [
        "{\"name\": \"x\",",
        "{\"name\": \"x\", \"callbacks\": [\"https://a.example.com\"",
        "{\"name\": \"x\"\n  \"app_type\": \"spa\"}",
        "not json",
        "",
    ] {
        let (s, _, err) = raw(&app, Method::POST, "/api/v2/clients", body).await;
        assert_error(s, &err, 400, Some("body"));
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("line ") && message.contains("column "),
            "{body:?}: {message}"
        );
    }
    let (s, _, err) = raw(
        &app,
        Method::POST,
        "/api/v2/clients",
        "{\"name\": \"x\", \"callbacks\": [1]}",
    )
    .await;
    assert_error(s, &err, 400, Some("callbacks[0]"));
    assert_eq!(h.state.store.list_clients().await.unwrap(), before);
}
on_all_backends!(malformed_json_names_the_body, malformed_json_names_the_body);

/// A query parameter of the wrong type or a missing one is the JSON error naming it, not
/// actix's `text/plain` "Query deserialize error".
async fn bad_query_parameters_name_the_parameter(h: Harness) {
    let app = app!(h);
    for (uri, param) in [
        ("/api/v2/users?page=abc", "page"),
        ("/api/v2/users?per_page=-1", "per_page"),
        ("/api/v2/users?include_totals=maybe", "include_totals"),
        ("/api/v2/users-by-email", "email"),
        ("/api/v2/logs?page=1.5", "page"),
        ("/api/v2/clients?include_totals=2", "include_totals"),
        ("/api/v2/connections?include_totals=yes", "include_totals"),
    ] {
        let req = test::TestRequest::get()
            .uri(uri)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status();
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/json",
            "{uri}"
        );
        let err: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_error(status, &err, 400, Some(param));
        assert_eq!(err["errorCode"], "invalid_query_string", "{err}");
    }
    let req = test::TestRequest::delete()
        .uri("/api/v2/users/nobody/sessions?revoke_tokens=please")
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .to_request();
    let res = test::call_service(&app, req).await;
    let status = res.status();
    let err: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_error(status, &err, 400, Some("revoke_tokens"));
}
on_all_backends!(
    bad_query_parameters_name_the_parameter,
    bad_query_parameters_name_the_parameter
);

/// A known path with a method it does not have is a 405 naming the methods it has (`Allow`);
/// an unknown path a 404; both in the JSON error shape, neither touching anything.
async fn unknown_methods_and_paths(h: Harness) {
    let app = app!(h);
    let (_, c) = api!(app, POST "/api/v2/clients", json!({"name": "M"}));
    let id = c["client_id"].as_str().unwrap().to_owned();
    for (method, uri, allow) in [
        (Method::PUT, "/api/v2/clients".to_owned(), "GET, POST"),
        (Method::DELETE, "/api/v2/clients".to_owned(), "GET, POST"),
        (
            Method::PUT,
            format!("/api/v2/clients/{id}"),
            "GET, PATCH, DELETE",
        ),
        (
            Method::GET,
            format!("/api/v2/clients/{id}/rotate-secret"),
            "POST",
        ),
        (Method::POST, "/api/v2/openapi.json".to_owned(), "GET"),
    ] {
        let req = test::TestRequest::default()
            .method(method.clone())
            .uri(&uri)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status();
        assert_eq!(
            res.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {uri}"
        );
        let err: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_error(status, &err, 405, None);
        assert_eq!(err["errorCode"], "method_not_allowed");
    }
    for uri in ["/api/v2/nothing-here", "/api/v2/clients/x/y/z", "/api/v2"] {
        let (s, err) = api!(app, GET uri);
        assert_error(s, &err, 404, None);
    }
    let (_, still) = api!(app, GET format!("/api/v2/clients/{id}"));
    assert_eq!(still["name"], "M");
}
on_all_backends!(unknown_methods_and_paths, unknown_methods_and_paths);

/// `include_totals=true` answers Auth0's `{start, limit, length, total, <items>}`, `total`
/// counting every page.
async fn totals_count_every_page(h: Harness) {
    let app = app!(h);
    let tag = latch_testkit::env::unique();
    for n in 0..3 {
        let (s, u) = api!(app, POST "/api/v2/users", json!({
            "connection": "database", "email": format!("totals-{tag}-{n}@example.com"),
            "password": "Totals-Passw0rd!", "name": format!("Totals {tag} {n}")}));
        assert_eq!(s, 201, "{u}");
    }
    let (s, p0) =
        api!(app, GET format!("/api/v2/users?q=totals+{tag}&per_page=2&include_totals=true"));
    assert_eq!(s, 200, "{p0}");
    assert_eq!(
        (&p0["start"], &p0["limit"], &p0["length"], &p0["total"]),
        (&json!(0), &json!(2), &json!(2), &json!(3)),
        "{p0}"
    );
    assert_eq!(p0["users"].as_array().unwrap().len(), 2);
    let (_, p1) = api!(app, GET format!("/api/v2/users?q=totals+{tag}&per_page=2&page=1&include_totals=true"));
    assert_eq!(
        (&p1["start"], &p1["length"], &p1["total"]),
        (&json!(2), &json!(1), &json!(3)),
        "{p1}"
    );
    // Far past the end: an empty page, the same total, no overflow.
    let (s, far) = api!(app, GET format!("/api/v2/users?q=totals+{tag}&per_page=100&page=4294967295&include_totals=true"));
    assert_eq!(s, 200, "{far}");
    assert_eq!(far["start"], json!(429_496_729_500u64));
    assert_eq!((&far["length"], &far["total"]), (&json!(0), &json!(3)));

    // Logs: three `sapi` events at least (one per user created); the total is what paging finds.
    let (_, all) = api!(app, GET "/api/v2/logs?type=sapi&per_page=100");
    let n = all.as_array().unwrap().len();
    assert!(n >= 3, "{all}");
    let (_, page) = api!(app, GET "/api/v2/logs?type=sapi&per_page=1&page=1&include_totals=true");
    assert_eq!(
        (
            &page["start"],
            &page["limit"],
            &page["length"],
            &page["total"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(n)),
        "{page}"
    );
    assert_eq!(page["logs"][0]["log_id"], all[1]["log_id"]);

    // Unpaged collections say so too.
    for (uri, key) in [
        ("/api/v2/clients?include_totals=true", "clients"),
        ("/api/v2/connections?include_totals=true", "connections"),
    ] {
        let (_, list) = api!(app, GET uri);
        let items = list[key].as_array().unwrap().len();
        assert_eq!(
            (&list["start"], &list["length"], &list["total"]),
            (&json!(0), &json!(items), &json!(items)),
            "{list}"
        );
    }
}
on_all_backends!(totals_count_every_page, totals_count_every_page);

/// One database user per email: a second `POST /api/v2/users` with the same email (in another
/// case) is a 409 naming `email`, and no user is written (`latch_core::users::create`).
async fn a_duplicate_user_is_refused_writing_nothing(h: Harness) {
    let app = app!(h);
    let email = format!("twice-{}@example.com", latch_testkit::env::unique());
    let (s, u) = api!(app, POST "/api/v2/users", json!({
        "connection": "database", "email": email, "password": "Twice-Passw0rd!"}));
    assert_eq!(s, 201, "{u}");
    let count = || async {
        h.state
            .store
            .count_users(&Default::default())
            .await
            .unwrap()
    };
    let before = count().await;
    let (s, err) = api!(app, POST "/api/v2/users", json!({
        "connection": "database", "email": email.to_uppercase(), "password": "Other-Passw0rd!"}));
    assert_error(s, &err, 409, Some("email"));
    assert_eq!(err["message"], "The user already exists.");
    assert_eq!(count().await, before);
    let (_, found) = api!(app, GET format!("/api/v2/users-by-email?email={email}"));
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["user_id"], u["user_id"]);
}
on_all_backends!(
    a_duplicate_user_is_refused_writing_nothing,
    a_duplicate_user_is_refused_writing_nothing
);

/// The OpenAPI document is served without credentials and describes the bearer scheme.
async fn openapi_document_is_public(h: Harness) {
    let app = app!(h);
    let (s, doc) = call(&app, "GET", "/api/v2/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for path in [
        "/api/v2/users",
        "/api/v2/clients/{id}/rotate-secret",
        "/api/v2/logs",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    // Nothing else opens without the token.
    let (s, _) = call(&app, "GET", "/api/v2/users", None, None).await;
    assert_eq!(s, 401);
}
on_all_backends!(openapi_document_is_public, openapi_document_is_public);

/// A NUL character (U+0000) in a body member, a query parameter or a path id is a 400 naming
/// it, on every backend (PostgreSQL cannot store or even compare text holding one: it was a 500
/// there), and nothing is written.
async fn nul_characters_are_refused_naming_the_field(h: Harness) {
    let app = app!(h);
    let users = h
        .state
        .store
        .count_users(&Default::default())
        .await
        .unwrap();
    for (body, field) in [
        (
            r#"{"connection": "data\u0000base", "email": "a@example.com", "password": "Nul-Passw0rd!"}"#,
            "connection",
        ),
        (
            r#"{"connection": "database", "email": "a\u0000@example.com", "password": "Nul-Passw0rd!"}"#,
            "email",
        ),
    ] {
        let (s, _, err) = raw(&app, Method::POST, "/api/v2/users", body).await;
        assert_error(s, &err, 400, Some(field));
    }
    let (s, _, err) = raw(
        &app,
        Method::POST,
        "/api/v2/clients",
        r#"{"name": "N", "callbacks": ["https://ok.example.com/", "https://a.example.com/\u0000"]}"#,
    )
    .await;
    assert_error(s, &err, 400, Some("callbacks[1]"));
    // An escaped backslash followed by `u0000` is no NUL.
    let (s, _, c) = raw(
        &app,
        Method::POST,
        "/api/v2/clients",
        r#"{"name": "back\\u0000slash"}"#,
    )
    .await;
    assert_eq!(
        (s, &c["name"]),
        (StatusCode::CREATED, &json!("back\\u0000slash"))
    );

    for (uri, field) in [
        ("/api/v2/users?q=a%00b", "q"),
        ("/api/v2/users-by-email?email=a%00@example.com", "email"),
        ("/api/v2/users/auth0%7Cx%00y", "id"),
        ("/api/v2/users/auth0%7Cx%00y/sessions", "id"),
        ("/api/v2/clients/x%00", "id"),
        ("/api/v2/connections/con_%00", "id"),
    ] {
        let (s, err) = api!(app, GET uri);
        assert_error(s, &err, 400, Some(field));
    }
    assert_eq!(
        h.state
            .store
            .count_users(&Default::default())
            .await
            .unwrap(),
        users
    );
}
on_all_backends!(
    nul_characters_are_refused_naming_the_field,
    nul_characters_are_refused_naming_the_field
);
