//! SCIM configuration and tokens (`/api/v2/connections/{id}/scim-configuration[/tokens]`, Auth0's
//! API) and the connection's SCIM tab in the admin UI, in-process on every backend pair: the
//! round trip, the refusals (each changing nothing), the token shown once and kept as a digest,
//! turning SCIM off revoking every token, and the management scopes each operation needs.

use actix_web::http::StatusCode;
use actix_web::test;
use latch_core::ConnectionId;
use latch_core::model::SigningAlg;
use latch_testkit::at_rest::contains;
use serde_json::{Value, json};

use crate::body_limits::{ADMIN_PASSWORD, Jar, admin_cookies};
use crate::support::{Backends, Harness, TOKEN, Target, api, call, harness_with};
use crate::{app, on_all_backends};

const ALL_SCOPES: [&str; 5] = [
    "get:users",
    "post:users",
    "put:users",
    "patch:users",
    "delete:users",
];

fn config_path(id: &str) -> String {
    format!("/api/v2/connections/{id}/scim-configuration")
}

fn tokens_path(id: &str) -> String {
    format!("/api/v2/connections/{id}/scim-configuration/tokens")
}

/// The SCIM server's base path for a connection, from `latch_scim::base_url`.
fn scim_base(h: &Harness, id: &str) -> String {
    let issuer = h.state.config.issuer_str();
    latch_scim::base_url(issuer, &ConnectionId::new(id))
        .strip_prefix(issuer)
        .unwrap()
        .to_owned()
}

/// `GET {base}/ServiceProviderConfig` with `token`: the status.
async fn scim_status(app: &impl Target, h: &Harness, id: &str, token: &str) -> StatusCode {
    let path = format!("{}/ServiceProviderConfig", scim_base(h, id));
    call(app, "GET", &path, None, Some(token)).await.0
}

async fn connection(app: &impl Target, name: &str, strategy: &str) -> String {
    let options = match strategy {
        "okta" => {
            json!({"domain": "acme.okta.com", "client_id": "0oa1", "client_secret": "s3cret-value"})
        }
        "oidc" => {
            json!({"issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s3cret-value"})
        }
        "samlp" => json!({"metadataUrl": "https://idp.example.com/saml/metadata"}),
        _ => json!({}),
    };
    let c = api(
        app,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": strategy, "options": options})),
    )
    .await;
    c["id"].as_str().unwrap().to_owned()
}

async fn database_id(app: &impl Target) -> String {
    let list = api(app, "GET", "/api/v2/connections?name=database", None).await;
    list[0]["id"].as_str().unwrap().to_owned()
}

/// A `client_credentials` access token for the management API holding `scope`, as Latch's token
/// endpoint signs them.
fn management_token(h: &Harness, scope: &str) -> String {
    let issuer = h.state.config.issuer_str();
    let now = h.state.clock.now().unix_timestamp();
    h.state
        .keys
        .sign(
            SigningAlg::RS256,
            "at+jwt",
            &json!({
                "iss": issuer, "sub": "m2m@clients", "aud": format!("{issuer}/api/v2/"),
                "client_id": "m2m", "iat": now, "exp": now + 600, "jti": "scim-api-test",
                "scope": scope, "gty": "client-credentials",
            }),
        )
        .unwrap()
}

async fn sapi_descriptions(app: &impl Target) -> Vec<String> {
    let logs = api(app, "GET", "/api/v2/logs?type=sapi&per_page=100", None).await;
    let items = logs
        .as_array()
        .or_else(|| logs["logs"].as_array())
        .unwrap()
        .clone();
    items
        .iter()
        .map(|e| e["description"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn round_trip(h: Harness) {
    let app = app!(h);
    let oidc = connection(&app, "acme-oidc", "oidc").await;
    let database = database_id(&app).await;

    // Only enterprise connections take SCIM.
    let (s, e) = call(&app, "POST", &config_path(&database), None, Some(TOKEN)).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("id")),
        "{e}"
    );
    let (s, _) = call(&app, "GET", &config_path(&database), None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, "POST", &config_path("con_nope"), None, Some(TOKEN)).await;
    assert_eq!(s, 404);

    // Off: nothing to read, no tokens to create.
    for (m, p) in [
        ("GET", config_path(&oidc)),
        ("PATCH", config_path(&oidc)),
        ("DELETE", config_path(&oidc)),
        ("GET", tokens_path(&oidc)),
        ("POST", tokens_path(&oidc)),
    ] {
        let body = (m == "PATCH").then(|| json!({}));
        let (s, e) = call(&app, m, &p, body, Some(TOKEN)).await;
        assert_eq!(s, 404, "{m} {p}: {e}");
    }

    // Invalid bodies are refused naming the field, and turn nothing on.
    for (body, field) in [
        (
            json!({"user_id_attribute": "emails[type eq"}),
            "user_id_attribute",
        ),
        (json!({"user_id_attribute": ""}), "user_id_attribute"),
        (json!({"user_id_attribute": "id"}), "user_id_attribute"),
        (
            json!({"user_id_attribute": "password"}),
            "user_id_attribute",
        ),
        (json!({"user_id_attribute": 7}), "user_id_attribute"),
        (
            json!({"mapping": [{"auth0": "user_id", "scim": "userName"}]}),
            "mapping[0].auth0",
        ),
        (
            json!({"mapping": [{"auth0": "email", "scim": "emails[type"}]}),
            "mapping[0].scim",
        ),
        (
            json!({"mapping": [{"auth0": "email", "scim": "emails.value", "x": 1}]}),
            "mapping[0]",
        ),
        (json!({"mapping": "given_name"}), "mapping"),
        (json!({"tenant_name": "acme"}), "tenant_name"),
    ] {
        let (s, e) = call(
            &app,
            "POST",
            &config_path(&oidc),
            Some(body.clone()),
            Some(TOKEN),
        )
        .await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(
            e["field"].as_str().unwrap().starts_with(field),
            "{body}: {e}"
        );
    }
    let (s, _) = call(&app, "GET", &config_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 404, "a refused body turned SCIM on");

    // On, without a body: Auth0's fields, the defaults.
    let (s, created) = call(&app, "POST", &config_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["connection_id"], oidc.as_str());
    assert_eq!(created["connection_name"], "acme-oidc");
    assert_eq!(created["strategy"], "oidc");
    assert_eq!(created["user_id_attribute"], "externalId");
    assert_eq!(created["mapping"], json!([]));
    let created_at = created["created_at"].as_str().unwrap().to_owned();
    assert!(
        time::OffsetDateTime::parse(&created_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{created}"
    );
    assert!(created["updated_on"].is_string(), "{created}");
    assert_eq!(api(&app, "GET", &config_path(&oidc), None).await, created);

    // Twice on: 409, the configuration unchanged.
    let (s, e) = call(
        &app,
        "POST",
        &config_path(&oidc),
        Some(json!({"user_id_attribute": "userName"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(api(&app, "GET", &config_path(&oidc), None).await, created);

    // PATCH: user_id_attribute and mapping; created_at kept.
    let mapping = json!([{"auth0": "given_name", "scim": "name.givenName"},
        {"auth0": "email", "scim": "emails[type eq \"work\"].value"}]);
    let patched = api(
        &app,
        "PATCH",
        &config_path(&oidc),
        Some(json!({"user_id_attribute": "userName", "mapping": mapping})),
    )
    .await;
    assert_eq!(patched["user_id_attribute"], "userName");
    assert_eq!(patched["mapping"], mapping);
    assert_eq!(patched["created_at"], created_at.as_str());
    assert_eq!(api(&app, "GET", &config_path(&oidc), None).await, patched);
    let stored = h
        .state
        .store
        .find_scim_config(&ConnectionId::new(&oidc))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.user_id_attribute, "userName");
    // A PATCH naming one member keeps the other; a refused one changes nothing.
    let again = api(
        &app,
        "PATCH",
        &config_path(&oidc),
        Some(json!({"user_id_attribute": "externalId"})),
    )
    .await;
    assert_eq!(
        (again["user_id_attribute"].clone(), again["mapping"].clone()),
        (json!("externalId"), mapping.clone())
    );
    let (s, e) = call(
        &app,
        "PATCH",
        &config_path(&oidc),
        Some(
            json!({"user_id_attribute": "userName", "mapping": [{"auth0": "name", "scim": "a b"}]}),
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("mapping[0].scim"))
    );
    assert_eq!(api(&app, "GET", &config_path(&oidc), None).await, again);

    // Token refusals name the field and create nothing.
    for (body, field) in [
        (json!({"scopes": ["get:users", "read:users"]}), "scopes"),
        (json!({"scopes": []}), "scopes"),
        (json!({"scopes": "get:users"}), "scopes"),
        (json!({"token_lifetime": 0}), "token_lifetime"),
        (json!({"token_lifetime": -5}), "token_lifetime"),
        (json!({"token_lifetime": 315_360_001}), "token_lifetime"),
        (json!({"token_lifetime": 1.5}), "token_lifetime"),
        (json!({"token": "mine"}), "token"),
    ] {
        let (s, e) = call(
            &app,
            "POST",
            &tokens_path(&oidc),
            Some(body.clone()),
            Some(TOKEN),
        )
        .await;
        assert_eq!(
            (s, e["field"].clone()),
            (StatusCode::BAD_REQUEST, json!(field)),
            "{body}: {e}"
        );
    }
    assert_eq!(api(&app, "GET", &tokens_path(&oidc), None).await, json!([]));

    // A token with every scope that does not expire; one narrower that does.
    let (s, full) = call(&app, "POST", &tokens_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 201, "{full}");
    let full_token = full["token"].as_str().unwrap().to_owned();
    assert!(
        full_token.len() >= 43
            && full_token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{full}"
    );
    assert_eq!(full["scopes"], json!(ALL_SCOPES));
    assert!(full["valid_until"].is_null(), "{full}");
    assert!(full["created_at"].is_string(), "{full}");
    let (s, narrow) = call(
        &app,
        "POST",
        &tokens_path(&oidc),
        Some(json!({"scopes": ["patch:users", "get:users", "get:users"], "token_lifetime": 3600})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 201, "{narrow}");
    assert_eq!(narrow["scopes"], json!(["get:users", "patch:users"]));
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        parse(&narrow["valid_until"]) - parse(&narrow["created_at"]),
        time::Duration::seconds(3600)
    );
    let narrow_token = narrow["token"].as_str().unwrap().to_owned();
    assert_ne!(narrow_token, full_token);

    // Listed, oldest first, never with the token.
    let listed = api(&app, "GET", &tokens_path(&oidc), None).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            full["token_id"].as_str().unwrap(),
            narrow["token_id"].as_str().unwrap()
        ]
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none()),
        "{listed}"
    );
    for t in [&full_token, &narrow_token] {
        assert!(!listed.to_string().contains(t.as_str()));
    }
    assert_eq!(listed[1]["valid_until"], narrow["valid_until"]);
    assert_eq!(listed[1]["scopes"], narrow["scopes"]);

    // Kept as its digest: found by it, and the token itself is nowhere at rest or in the logs.
    let found = h
        .state
        .store
        .find_scim_token(&latch_jose::token_digest(&full_token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.connection_id.as_str(), oidc);
    let mut stored = Vec::new();
    for place in h.at_rest() {
        stored.extend(place.read().await);
    }
    assert!(contains(
        &stored,
        latch_jose::token_digest(&full_token).as_str()
    ));
    for t in [&full_token, &narrow_token] {
        assert!(!contains(&stored, t), "a SCIM token is stored as it is");
    }

    // The tokens open this connection's SCIM server, and no other's.
    assert_eq!(scim_status(&app, &h, &oidc, &full_token).await, 200);
    assert_eq!(scim_status(&app, &h, &oidc, &narrow_token).await, 200);
    let okta = connection(&app, "acme-okta", "okta").await;
    api(&app, "POST", &config_path(&okta), Some(json!({}))).await;
    let other = api(&app, "POST", &tokens_path(&okta), Some(json!({}))).await;
    let other_token = other["token"].as_str().unwrap().to_owned();
    let other_id = other["token_id"].as_str().unwrap().to_owned();
    assert_eq!(scim_status(&app, &h, &okta, &other_token).await, 200);
    assert_eq!(scim_status(&app, &h, &oidc, &other_token).await, 401);
    assert_eq!(scim_status(&app, &h, &okta, &full_token).await, 401);

    // Another connection's token id, or an unknown one, is not this connection's: 404, kept.
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("{}/{other_id}", tokens_path(&oidc)),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("{}/tok_unknown", tokens_path(&oidc)),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(scim_status(&app, &h, &okta, &other_token).await, 200);
    assert_eq!(
        api(&app, "GET", &tokens_path(&okta), None).await[0]["token_id"],
        other_id.as_str()
    );

    // Revoking one token: gone from the list, refused by the SCIM server; the other works.
    let narrow_path = format!(
        "{}/{}",
        tokens_path(&oidc),
        narrow["token_id"].as_str().unwrap()
    );
    let (s, _) = call(&app, "DELETE", &narrow_path, None, Some(TOKEN)).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, "DELETE", &narrow_path, None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    let listed = api(&app, "GET", &tokens_path(&oidc), None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(scim_status(&app, &h, &oidc, &narrow_token).await, 401);
    assert_eq!(scim_status(&app, &h, &oidc, &full_token).await, 200);

    // Off: the configuration and every token of the connection go; the other connection's stay.
    let (s, _) = call(&app, "DELETE", &config_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, "GET", &config_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, "DELETE", &config_path(&oidc), None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    assert!(
        h.state
            .store
            .list_scim_tokens(&ConnectionId::new(&oidc))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(scim_status(&app, &h, &oidc, &full_token).await, 401);
    assert_eq!(scim_status(&app, &h, &okta, &other_token).await, 200);
    // On again: no old token comes back.
    let (s, on) = call(
        &app,
        "POST",
        &config_path(&oidc),
        Some(json!({})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 201, "{on}");
    assert_eq!(
        on["user_id_attribute"], "externalId",
        "a fresh configuration"
    );
    assert_eq!(api(&app, "GET", &tokens_path(&oidc), None).await, json!([]));
    assert_eq!(scim_status(&app, &h, &oidc, &full_token).await, 401);

    // A samlp connection takes SCIM too.
    let saml = connection(&app, "acme-saml", "samlp").await;
    let (s, c) = call(&app, "POST", &config_path(&saml), None, Some(TOKEN)).await;
    assert_eq!(
        (s, c["strategy"].clone()),
        (StatusCode::CREATED, json!("samlp")),
        "{c}"
    );

    // Every write is a `sapi` event; no event holds a token.
    let d = sapi_descriptions(&app).await;
    let n = |what: &str| d.iter().filter(|x| *x == what).count();
    assert_eq!(n("Create a SCIM configuration"), 4, "{d:?}");
    assert_eq!(n("Update a SCIM configuration"), 2, "{d:?}");
    assert_eq!(n("Delete a SCIM configuration"), 1, "{d:?}");
    assert_eq!(n("Create a SCIM token"), 3, "{d:?}");
    assert_eq!(n("Delete a SCIM token"), 1, "{d:?}");
    let logs = api(&app, "GET", "/api/v2/logs?per_page=100", None)
        .await
        .to_string();
    for t in [&full_token, &narrow_token, &other_token] {
        assert!(!logs.contains(t.as_str()));
    }

    // Deleting the connection takes its SCIM configuration and tokens along.
    api(&app, "DELETE", &format!("/api/v2/connections/{okta}"), None).await;
    assert!(
        h.state
            .store
            .find_scim_token(&latch_jose::token_digest(&other_token))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(scim_status(&app, &h, &okta, &other_token).await, 401);
}
on_all_backends!(scim_api_round_trip, round_trip);

/// Each operation needs its own Auth0 scope; the connections scopes do not stand in for them.
async fn scopes(h: Harness) {
    let app = app!(h);
    let id = connection(&app, "acme-okta", "okta").await;
    api(&app, "POST", &config_path(&id), None).await;
    let token = api(&app, "POST", &tokens_path(&id), None).await;
    let token_id = token["token_id"].as_str().unwrap().to_owned();
    let one = format!("{}/{token_id}", tokens_path(&id));
    let ops: [(&str, String, Option<Value>, &str); 7] = [
        ("POST", config_path(&id), None, "create:scim_config"),
        ("GET", config_path(&id), None, "read:scim_config"),
        (
            "PATCH",
            config_path(&id),
            Some(json!({"user_id_attribute": "userName"})),
            "update:scim_config",
        ),
        ("DELETE", config_path(&id), None, "delete:scim_config"),
        ("POST", tokens_path(&id), None, "create:scim_token"),
        ("GET", tokens_path(&id), None, "read:scim_token"),
        ("DELETE", one.clone(), None, "delete:scim_token"),
    ];
    let every_connections_scope = management_token(
        &h,
        "read:connections create:connections update:connections delete:connections",
    );
    let config_before = api(&app, "GET", &config_path(&id), None).await;
    for (m, p, body, scope) in &ops {
        let (s, e) = call(&app, m, p, body.clone(), Some(&every_connections_scope)).await;
        assert_eq!(s, 403, "{m} {p}: {e}");
        assert!(e["message"].as_str().unwrap().contains(scope), "{e}");
    }
    // Nothing changed.
    assert_eq!(
        api(&app, "GET", &config_path(&id), None).await,
        config_before
    );
    assert_eq!(
        api(&app, "GET", &tokens_path(&id), None)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Reading scopes read, and only that.
    let reader = management_token(&h, "read:scim_config read:scim_token");
    let (s, got) = call(&app, "GET", &config_path(&id), None, Some(&reader)).await;
    assert_eq!((s, got), (StatusCode::OK, config_before.clone()));
    let (s, _) = call(&app, "GET", &tokens_path(&id), None, Some(&reader)).await;
    assert_eq!(s, 200);
    for (m, p, body, _) in ops.iter().filter(|o| o.0 != "GET") {
        let (s, _) = call(&app, m, p, body.clone(), Some(&reader)).await;
        assert_eq!(s, 403, "{m} {p}");
    }
    // Each write with its own scope.
    let writer = management_token(&h, "create:scim_token delete:scim_token update:scim_config");
    let (s, _) = call(&app, "POST", &tokens_path(&id), None, Some(&writer)).await;
    assert_eq!(s, 201);
    let (s, _) = call(&app, "DELETE", &one, None, Some(&writer)).await;
    assert_eq!(s, 204);
    let (s, c) = call(
        &app,
        "PATCH",
        &config_path(&id),
        Some(json!({"user_id_attribute": "userName"})),
        Some(&writer),
    )
    .await;
    assert_eq!(
        (s, c["user_id_attribute"].clone()),
        (StatusCode::OK, json!("userName"))
    );
    let (s, _) = call(&app, "DELETE", &config_path(&id), None, Some(&writer)).await;
    assert_eq!(s, 403);
    // Without any token: 401.
    let (s, _) = call(&app, "GET", &config_path(&id), None, None).await;
    assert_eq!(s, 401);
    // The events name the client that acted.
    let logs = api(&app, "GET", "/api/v2/logs?type=sapi&per_page=100", None).await;
    assert!(logs.to_string().contains("m2m@clients"), "{logs}");
}
on_all_backends!(scim_api_scopes, scopes);

/// An optional body may be absent, empty, or JSON; anything else is refused as for any body.
async fn optional_bodies(h: Harness) {
    let app = app!(h);
    let id = connection(&app, "acme-oidc", "oidc").await;
    let send = |method: &str, path: String, ct: Option<&str>, body: &str| {
        let mut r = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(&path)
            .insert_header(("Authorization", format!("Bearer {TOKEN}")));
        if let Some(ct) = ct {
            r = r.insert_header(("content-type", ct.to_owned()));
        }
        r.set_payload(body.to_owned()).to_request()
    };
    let res = test::call_service(
        &app,
        send("POST", config_path(&id), Some("text/plain"), "x"),
    )
    .await;
    assert_eq!(res.status(), 415);
    let res = test::call_service(
        &app,
        send("POST", config_path(&id), Some("application/json"), "{"),
    )
    .await;
    assert_eq!(res.status(), 400);
    let (s, _) = call(&app, "GET", &config_path(&id), None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    // An empty body with or without a content type: the defaults.
    let res = test::call_service(
        &app,
        send("POST", config_path(&id), Some("application/json"), ""),
    )
    .await;
    assert_eq!(res.status(), 201);
    let res = test::call_service(&app, send("POST", tokens_path(&id), None, "")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap(),
        "no-store"
    );
    let created: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(created["scopes"], json!(ALL_SCOPES));
    let res = test::call_service(
        &app,
        send(
            "POST",
            tokens_path(&id),
            Some("application/json"),
            r#"{"scopes":["get:users"],"token_lifetime":null}"#,
        ),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert!(created["valid_until"].is_null(), "{created}");
    // The OpenAPI document lists the operations with their scopes.
    let doc = api(&app, "GET", "/api/v2/openapi.json", None).await;
    let tokens = &doc["paths"]["/api/v2/connections/{id}/scim-configuration/tokens"];
    assert_eq!(
        tokens["post"]["security"][0]["bearer"],
        json!(["create:scim_token"])
    );
    assert_eq!(
        doc["paths"]["/api/v2/connections/{id}/scim-configuration/tokens/{token_id}"]["delete"]["security"]
            [0]["bearer"],
        json!(["delete:scim_token"])
    );
}
on_all_backends!(scim_api_optional_bodies, optional_bodies);

/// Admin UI pages, in-process, with the admin's cookies.
async fn get_page<S, B>(app: &S, jar: &Jar, uri: &str) -> (u16, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let res = test::call_service(
        app,
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("cookie", jar.header()))
            .to_request(),
    )
    .await;
    let status = res.status().as_u16();
    (
        status,
        String::from_utf8(test::read_body(res).await.to_vec()).unwrap(),
    )
}

/// Posts a form; the status, the `Location` (if any) and the page.
async fn post_form<S, B>(
    app: &S,
    jar: &Jar,
    uri: &str,
    fields: &[(&str, &str)],
) -> (u16, Option<String>, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let res = test::call_service(
        app,
        test::TestRequest::post()
            .uri(uri)
            .insert_header(("cookie", jar.header()))
            .set_form(fields)
            .to_request(),
    )
    .await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        location,
        String::from_utf8(test::read_body(res).await.to_vec()).unwrap(),
    )
}

fn value_of(page: &str, id: &str) -> Option<String> {
    let tag = page.split(&format!("id=\"{id}\"")).nth(1)?;
    let tag = tag.split('>').next()?;
    Some(tag.split("value=\"").nth(1)?.split('"').next()?.to_owned())
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form with a CSRF token")
        .to_owned()
}

async fn admin_ui(test_name: &str, backends: Backends) {
    let Some(h) = harness_with(
        test_name,
        backends,
        &[("LATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .await
    else {
        return;
    };
    let app = app!(h);
    let id = connection(&app, "acme-okta", "okta").await;
    let database = database_id(&app).await;
    let jar = admin_cookies(&app).await;
    let scim_page = format!("/admin/connections/{id}/scim");

    // The connection's page has the SCIM tab; the database connection's has none, nor a SCIM page.
    let (s, settings) = get_page(&app, &jar, &format!("/admin/connections/{id}")).await;
    assert_eq!(s, 200);
    assert!(
        settings.contains(&format!("href=\"{scim_page}\"")),
        "no SCIM tab"
    );
    let (s, db) = get_page(&app, &jar, &format!("/admin/connections/{database}")).await;
    assert_eq!(s, 200);
    assert!(
        !db.contains("/scim\""),
        "a SCIM tab on the database connection"
    );
    let (s, _) = get_page(&app, &jar, &format!("/admin/connections/{database}/scim")).await;
    assert_eq!(s, 404);

    // Off.
    let (s, off) = get_page(&app, &jar, &scim_page).await;
    assert_eq!(s, 200);
    assert!(off.contains("Turn on SCIM"), "{off}");
    let base = latch_scim::base_url(h.state.config.issuer_str(), &ConnectionId::new(&id));
    assert!(!off.contains(&base), "the base URL while SCIM is off");
    let csrf = csrf_of(&off);

    // Without the CSRF token, or with an invalid attribute: refused, still off.
    let (s, _, _) = post_form(
        &app,
        &jar,
        &scim_page,
        &[("user_id_attribute", "externalId")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, refused) = post_form(
        &app,
        &jar,
        &scim_page,
        &[("csrf", &csrf), ("user_id_attribute", "emails[type eq")],
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        refused.contains("id=\"f-user_id_attribute-error\""),
        "{refused}"
    );
    assert_eq!(
        value_of(&refused, "f-user_id_attribute").as_deref(),
        Some("emails[type eq")
    );
    let (s, _) = call(&app, "GET", &config_path(&id), None, Some(TOKEN)).await;
    assert_eq!(s, 404);

    // On.
    let (s, to, _) = post_form(
        &app,
        &jar,
        &scim_page,
        &[("csrf", &csrf), ("user_id_attribute", "userName")],
    )
    .await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some(format!("{scim_page}?done=on").as_str()))
    );
    let config = api(&app, "GET", &config_path(&id), None).await;
    assert_eq!(config["user_id_attribute"], "userName");
    let (_, on) = get_page(&app, &jar, &format!("{scim_page}?done=on")).await;
    assert_eq!(
        value_of(&on, "f-scim_base_url").as_deref(),
        Some(base.as_str())
    );
    assert!(
        on.contains("data-copy=\"f-scim_base_url\""),
        "no copy button"
    );
    assert_eq!(
        value_of(&on, "f-user_id_attribute").as_deref(),
        Some("userName")
    );
    assert!(!on.contains("shown-token"));

    // A token: shown once, with a copy button; the SCIM server takes it.
    let (s, _, refused) = post_form(
        &app,
        &jar,
        &format!("{scim_page}/tokens"),
        &[
            ("csrf", &csrf),
            ("scopes", "get:users"),
            ("lifetime_days", "0"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        refused.contains("id=\"f-lifetime_days-error\""),
        "{refused}"
    );
    let (s, _, refused) = post_form(
        &app,
        &jar,
        &format!("{scim_page}/tokens"),
        &[("csrf", &csrf), ("lifetime_days", "a year")],
    )
    .await;
    assert_eq!(s, 400);
    // Both problems at once, each on its field; what was typed is kept.
    assert!(refused.contains("id=\"f-scopes-error\""), "{refused}");
    assert!(
        refused.contains("id=\"f-lifetime_days-error\""),
        "{refused}"
    );
    assert_eq!(
        value_of(&refused, "f-lifetime_days").as_deref(),
        Some("a year")
    );
    assert_eq!(api(&app, "GET", &tokens_path(&id), None).await, json!([]));
    let (s, _, created) = post_form(
        &app,
        &jar,
        &format!("{scim_page}/tokens"),
        &[
            ("csrf", &csrf),
            ("scopes", "get:users"),
            ("scopes", "patch:users"),
            ("lifetime_days", "30"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{created}");
    let token = value_of(&created, "shown-token").expect("the new token on the page");
    assert!(created.contains("data-copy=\"shown-token\""));
    assert!(created.contains("shown only now"));
    assert_eq!(scim_status(&app, &h, &id, &token).await, 200);
    let listed = api(&app, "GET", &tokens_path(&id), None).await;
    assert_eq!(listed[0]["scopes"], json!(["get:users", "patch:users"]));
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        parse(&listed[0]["valid_until"]) - parse(&listed[0]["created_at"]),
        time::Duration::days(30)
    );
    let token_id = listed[0]["token_id"].as_str().unwrap().to_owned();
    // Never again: the page lists it without the token.
    let (_, later) = get_page(&app, &jar, &scim_page).await;
    assert!(!later.contains(&token), "the token shown twice");
    assert!(
        later.contains(&token_id) && later.contains("get:users patch:users"),
        "{later}"
    );

    // Revoke, without the CSRF token (refused) and with it.
    let revoke = format!("{scim_page}/tokens/{token_id}/delete");
    let (s, _, _) = post_form(&app, &jar, &revoke, &[]).await;
    assert_eq!(s, 403);
    assert_eq!(scim_status(&app, &h, &id, &token).await, 200);
    let (s, to, _) = post_form(&app, &jar, &revoke, &[("csrf", &csrf)]).await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some(format!("{scim_page}?done=revoked").as_str()))
    );
    assert_eq!(scim_status(&app, &h, &id, &token).await, 401);
    assert_eq!(api(&app, "GET", &tokens_path(&id), None).await, json!([]));

    // Save, then off (a token made meanwhile is revoked with it).
    let (s, to, _) = post_form(
        &app,
        &jar,
        &scim_page,
        &[("csrf", &csrf), ("user_id_attribute", "externalId")],
    )
    .await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some(format!("{scim_page}?done=saved").as_str()))
    );
    assert_eq!(
        api(&app, "GET", &config_path(&id), None).await["user_id_attribute"],
        "externalId"
    );
    let another = api(&app, "POST", &tokens_path(&id), None).await;
    let another = another["token"].as_str().unwrap().to_owned();
    let (s, _, _) = post_form(&app, &jar, &format!("{scim_page}/delete"), &[]).await;
    assert_eq!(s, 403);
    let (s, to, _) = post_form(
        &app,
        &jar,
        &format!("{scim_page}/delete"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        (s, to.as_deref()),
        (303, Some(format!("{scim_page}?done=off").as_str()))
    );
    let (s, _) = call(&app, "GET", &config_path(&id), None, Some(TOKEN)).await;
    assert_eq!(s, 404);
    assert_eq!(scim_status(&app, &h, &id, &another).await, 401);
    let (_, off) = get_page(&app, &jar, &scim_page).await;
    assert!(off.contains("Turn on SCIM") && !off.contains(&base));

    // The UI's writes are `sapi` events naming the admin (not the admin token), like the API's.
    let logs = api(&app, "GET", "/api/v2/logs?type=sapi&per_page=100", None).await;
    let by_admin = logs
        .as_array()
        .or_else(|| logs["logs"].as_array())
        .unwrap()
        .iter()
        .filter(|e| {
            e["details"]["actor"] != "admin-token"
                && e["description"].as_str().unwrap().contains("SCIM")
        })
        .count();
    // On, save, create token, revoke, off.
    assert_eq!(by_admin, 5, "{logs}");
}

#[actix_web::test]
async fn scim_admin_ui_embedded() {
    admin_ui("scim_admin_ui_embedded", Backends::Embedded).await;
}

#[actix_web::test]
async fn scim_admin_ui_postgres_redis() {
    admin_ui("scim_admin_ui_postgres_redis", Backends::Production).await;
}
