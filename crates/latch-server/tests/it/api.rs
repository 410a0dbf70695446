//! The management API (`/api/v2/connections`, `/api/v2/clients`) on every backend pair.

use actix_web::http::{Method, StatusCode};
use actix_web::test;
use latch_core::model::LogQuery;
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::{Harness, TOKEN};

/// Sends a request and returns the status and the JSON body (`Null` when empty).
async fn call<S, B>(
    app: &S,
    method: Method,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::default().method(method).uri(uri);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let bytes = test::read_body(res).await;
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    (status, v)
}

macro_rules! api {
    ($app:expr, $m:ident $uri:expr) => {
        call(&$app, Method::$m, &$uri, None, Some(TOKEN)).await
    };
    ($app:expr, $m:ident $uri:expr, $body:expr) => {
        call(&$app, Method::$m, &$uri, Some($body), Some(TOKEN)).await
    };
}

async fn connections_crud(h: Harness) {
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;

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
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;
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
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;
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
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;
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
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;
    let before = h.state.store.list_connections().await.unwrap();
    let body = json!({"name": "sneaky", "strategy": "auth0"});
    for token in [None, Some("wrong-token"), Some("")] {
        let (s, err) = call(
            &app,
            Method::POST,
            "/api/v2/connections",
            Some(body.clone()),
            token,
        )
        .await;
        assert_eq!(s, 401, "{token:?}");
        assert_eq!(err["statusCode"], 401);
        let (s, _) = call(&app, Method::GET, "/api/v2/clients", None, token).await;
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
    let app = test::init_service(latch_server::app::app(h.state.clone())).await;
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
    let (s, _) = call(&app, Method::GET, "/api/v2/logs", None, None).await;
    assert_eq!(s, 401);
}
on_all_backends!(logs_api, logs_api);
