//! A user's access tokens die with their grant, on every path that ends a session or revokes:
//! RP-initiated logout, `/oauth/revoke` of the access token itself, an admin's "clear sessions"
//! (with and without revoking), blocking and deleting the user. The reviewer's case is a client
//! without the `refresh_token` grant, whose tokens no refresh family ever covered.

use actix_web::test;
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::oidc::{
    CB, PASSWORD, authorize_uri, exchange, fixture, sign_in, sign_in_web, urlencode,
};
use crate::on_all_backends;
use crate::support::{Harness, api};

/// A token the way the token endpoint seals it, under a grant recorded as a code exchange
/// records it (for paths whose sign-in is not this file's concern, such as GTR's).
pub async fn mint_access_token(
    state: &latch_server::AppState,
    user: &latch_core::UserId,
    client: &latch_core::ClientId,
) -> String {
    let now = state.clock.now();
    let gid = latch_core::FamilyId::new(format!("fam_{}", latch_testkit::env::unique()));
    state
        .store
        .insert_grant(
            &latch_core::model::UserGrant {
                id: gid.clone(),
                user_id: user.clone(),
                client_id: client.clone(),
                session_id: None,
                offline: false,
                created_at: now,
                expires_at: now + time::Duration::hours(1),
                revoked_at: None,
            },
            None,
        )
        .await
        .unwrap();
    let iat = now.unix_timestamp();
    state.sealer.seal(&json!({
        "iss": state.config.issuer_str(),
        "sub": user,
        "aud": [format!("{}/userinfo", state.config.issuer_str())],
        "client_id": client,
        "iat": iat,
        "exp": iat + 3600,
        "jti": latch_testkit::env::unique(),
        "scope": "openid email",
        "gid": gid,
    }))
}

/// The status `/userinfo` gives a token.
pub async fn userinfo<S, B>(app: &S, token: &str) -> u16
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let req = test::TestRequest::get()
        .uri("/userinfo")
        .insert_header(("Authorization", format!("Bearer {token}")))
        .to_request();
    test::call_service(app, req).await.status().as_u16()
}

async fn ends_access_tokens(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    // The reviewer's client: no refresh tokens at all.
    let plain = api(
        &app,
        "POST",
        "/api/v2/clients",
        Some(
            json!({"name": "No refresh", "callbacks": [CB], "grant_types": ["authorization_code"],
               "allowed_logout_urls": ["http://127.0.0.1:3000/bye"]}),
        ),
    )
    .await;
    let plain = (
        plain["client_id"].as_str().unwrap().to_owned(),
        plain["client_secret"].as_str().unwrap().to_owned(),
    );
    let mut b = Browser::new();
    // Signs in (or joins the live session) and exchanges the code: the token response.
    async fn tokens<S, B>(
        app: &S,
        b: &mut Browser,
        client: &(String, String),
        email: &str,
        extra: &str,
    ) -> Value
    where
        S: actix_web::dev::Service<
                actix_http::Request,
                Response = actix_web::dev::ServiceResponse<B>,
                Error = actix_web::Error,
            >,
        B: actix_web::body::MessageBody,
    {
        let uri = authorize_uri(&client.0, CB, extra).replace("%20offline_access", "");
        let hop = b.get(app, &uri).await;
        let done: Page = if hop.param("code").is_some() {
            hop
        } else {
            sign_in(app, b, &uri, email, PASSWORD).await
        };
        let t = exchange(app, b, &done.param("code").unwrap(), CB, client)
            .await
            .json();
        assert!(t["access_token"].is_string(), "{t}");
        t
    }
    let introspect = |token: String| {
        let (app, plain) = (&app, plain.clone());
        async move {
            let req = test::TestRequest::post()
                .uri("/oauth/introspect")
                .insert_header((
                    "Authorization",
                    format!(
                        "Basic {}",
                        base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            format!("{}:{}", plain.0, plain.1)
                        )
                    ),
                ))
                .set_form([("token", token.as_str())])
                .to_request();
            let v: Value = test::read_body_json(test::call_service(app, req).await).await;
            v["active"].as_bool().unwrap()
        }
    };

    // 1. /oauth/revoke of the access token itself.
    let t = tokens(&app, &mut b, &plain, &f.email, "").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    let at = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&app, &at).await, 200);
    assert!(introspect(at.clone()).await);
    let r = b
        .post_form_with(
            &app,
            "/oauth/revoke",
            &[("token", &at), ("token_type_hint", "access_token")],
            Some((&plain.0, &plain.1)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(userinfo(&app, &at).await, 401, "revoked access token");
    assert!(!introspect(at).await);

    // 2. RP-initiated logout ends the session's grants.
    let t = tokens(&app, &mut b, &plain, &f.email, "").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let id_token = t["id_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&app, &at).await, 200);
    let out = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
                urlencode("http://127.0.0.1:3000/bye")
            ),
        )
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    assert_eq!(userinfo(&app, &at).await, 401, "after RP-initiated logout");
    assert!(!introspect(at).await);

    // 3. An admin's "clear sessions" without revoking: the session's grants end, an offline
    //    grant (refresh-capable app with offline_access) survives, as its refresh token does…
    let at = tokens(&app, &mut b, &plain, &f.email, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let offline = {
        let uri = authorize_uri(&f.web.0, CB, "");
        let done = b.get(&app, &uri).await;
        let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
            .await
            .json();
        assert!(t["refresh_token"].is_string(), "{t}");
        t["access_token"].as_str().unwrap().to_owned()
    };
    let sessions = format!("/api/v2/users/{}/sessions", f.user_id);
    api(&app, "DELETE", &sessions, None).await;
    assert_eq!(userinfo(&app, &at).await, 401, "after clear sessions");
    assert_eq!(userinfo(&app, &offline).await, 200, "offline grant kept");
    // …4. and with revoke_tokens=true it ends too.
    api(
        &app,
        "DELETE",
        &format!("{sessions}?revoke_tokens=true"),
        None,
    )
    .await;
    assert_eq!(userinfo(&app, &offline).await, 401, "after clear + revoke");

    // 5. Blocking ends every grant: unblocking does not bring a token back.
    let mut b = Browser::new();
    let at = tokens(&app, &mut b, &plain, &f.email, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = format!("/api/v2/users/{}", f.user_id);
    api(&app, "PATCH", &user, Some(json!({"blocked": true}))).await;
    api(&app, "PATCH", &user, Some(json!({"blocked": false}))).await;
    assert_eq!(userinfo(&app, &at).await, 401, "after block and unblock");
    assert!(!introspect(at).await);

    // 6. Deleting the user.
    let mut b = Browser::new();
    let at = tokens(&app, &mut b, &plain, &f.email, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&app, &at).await, 200);
    api(&app, "DELETE", &user, None).await;
    assert_eq!(userinfo(&app, &at).await, 401, "after delete");
    assert!(!introspect(at).await);
}
on_all_backends!(ends_access_tokens, ends_access_tokens);

/// A code whose session ended before it was exchanged (a logout in between) yields nothing: the
/// grant it would start would be bound to a session no later logout can reach.
async fn code_after_logout(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    let code = done.param("code").unwrap();
    api(
        &app,
        "DELETE",
        &format!("/api/v2/users/{}/sessions", f.user_id),
        None,
    )
    .await;
    let t = exchange(&app, &mut b, &code, CB, &f.web).await;
    assert_eq!(t.status, 400, "{}", t.body);
    assert_eq!(t.json()["error"], "invalid_grant");
}
on_all_backends!(code_after_logout, code_after_logout);
