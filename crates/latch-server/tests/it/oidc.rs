//! The OpenID Connect provider in-process, on both backend pairs: sign-in, SSO, codes, PKCE,
//! refresh rotation, userinfo, revocation, introspection, logout.

use actix_web::test;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::support::{Harness, api};
use crate::{app, on_all_backends};

pub const PASSWORD: &str = "Corr3ct-Horse!";
pub const CB: &str = "http://127.0.0.1:3000/callback";
const CB2: &str = "http://127.0.0.1:4000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub struct Fixture {
    pub web: (String, String),
    pub other: (String, String),
    pub spa: String,
    pub email: String,
    pub user_id: String,
}

pub async fn fixture<S, B>(app: &S) -> Fixture
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mk = |name: &str, cb: &str| json!({"name": name, "callbacks": [cb], "allowed_logout_urls": ["http://127.0.0.1:3000/bye"]});
    let web = api(app, "POST", "/api/v2/clients", Some(mk("Web", CB))).await;
    let other = api(app, "POST", "/api/v2/clients", Some(mk("Other", CB2))).await;
    let spa = api(
        app,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "SPA", "app_type": "spa", "callbacks": [CB]})),
    )
    .await;
    let email = format!("u{}@example.com", latch_testkit::env::unique());
    let user = api(
        app,
        "POST",
        "/api/v2/users",
        Some(
            json!({"connection": "database", "email": email, "password": PASSWORD, "name": "Ada"}),
        ),
    )
    .await;
    let pair = |v: &Value| {
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    };
    Fixture {
        web: pair(&web),
        other: pair(&other),
        spa: spa["client_id"].as_str().unwrap().to_owned(),
        email,
        user_id: user["user_id"].as_str().unwrap().to_owned(),
    }
}

pub fn authorize_uri(client: &str, cb: &str, extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email%20profile%20offline_access&state=st-1&nonce=no-1{extra}",
        urlencode(cb)
    )
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Signs in through the form; returns the redirect to the app.
pub async fn sign_in<S, B>(app: &S, b: &mut Browser, uri: &str, email: &str, password: &str) -> Page
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let form = b.get(app, uri).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("<form"), "{}", form.body);
    let tx = form.field("tx").expect("tx field");
    b.post_form(
        app,
        "/login",
        &[("tx", &tx), ("email", email), ("password", password)],
    )
    .await
}

/// A new browser that signed the fixture's user in at the web client, and the redirect to the
/// app (with the code).
pub async fn sign_in_web<S, B>(app: &S, f: &Fixture) -> (Browser, Page)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let mut b = Browser::new();
    let done = sign_in(
        app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    (b, done)
}

pub async fn exchange<S, B>(
    app: &S,
    b: &mut Browser,
    code: &str,
    cb: &str,
    client: &(String, String),
) -> Page
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    b.post_form_with(
        app,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", cb),
        ],
        Some((&client.0, &client.1)),
    )
    .await
}

/// Verifies an ID token against the published JWKS with jsonwebtoken (as an app would).
pub fn verify_id_token(jwks: &Value, token: &str, aud: &str, issuer: &str) -> Value {
    let header = decode_header(token).unwrap();
    let kid = header.kid.clone().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid published")
        .clone();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[issuer]);
    decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
        .unwrap()
        .claims
}

async fn sign_in_sso_and_tokens(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let issuer = h.state.config.issuer_str().to_owned();
    let mut b = Browser::new();

    // Discovery tells the truth about endpoints.
    let disc = b
        .get(&app, "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(disc["issuer"], issuer.as_str());
    assert_eq!(disc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        disc["end_session_endpoint"],
        format!("{issuer}/oidc/logout")
    );

    // Wrong password: a generic message, no session.
    let page = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        "wrong-Passw0rd",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Wrong email or password."));
    let unknown = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        "nobody@example.com",
        "wrong-Passw0rd",
    )
    .await;
    assert!(
        unknown.body.contains("Wrong email or password."),
        "same message for unknown accounts"
    );
    assert!(!b.cookies.contains_key("latch_session"));

    // Sign in.
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(done.location.as_ref().unwrap().starts_with(CB));
    assert_eq!(done.param("state").as_deref(), Some("st-1"));
    assert_eq!(done.param("iss").as_deref(), Some(issuer.as_str()));
    let cookie = done
        .headers
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("latch_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let code = done.param("code").unwrap();

    let tokens = exchange(&app, &mut b, &code, CB, &f.web).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.headers.get("cache-control").unwrap(), "no-store");
    let t = tokens.json();
    let jwks = b.get(&app, "/.well-known/jwks.json").await.json();
    let id = verify_id_token(&jwks, t["id_token"].as_str().unwrap(), &f.web.0, &issuer);
    assert_eq!(id["sub"], f.user_id.as_str());
    assert_eq!(id["nonce"], "no-1");
    assert_eq!(id["email"], f.email.as_str());
    assert_eq!(id["name"], "Ada");
    assert!(id["auth_time"].is_i64() && id["sid"].is_string());
    let sid = id["sid"].as_str().unwrap().to_owned();

    // Userinfo with the access token.
    let at = t["access_token"].as_str().unwrap();
    // Opaque (its only audience is /userinfo), as Auth0's is without an API audience.
    assert!(
        at.starts_with("lat1.") && decode_header(at).is_err(),
        "{at}"
    );
    let req = test::TestRequest::get()
        .uri("/userinfo")
        .insert_header(("Authorization", format!("Bearer {at}")))
        .to_request();
    let info: Value = test::read_body_json(test::call_service(&app, req).await).await;
    assert_eq!(info["sub"], f.user_id.as_str());
    assert_eq!(info["email"], f.email.as_str());
    let req = test::TestRequest::get()
        .uri("/userinfo")
        .insert_header(("Authorization", "Bearer not-a-token"))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 401);

    // SSO: the second app signs in without the form; same sid; both apps recorded on the session.
    let sso = b.get(&app, &authorize_uri(&f.other.0, CB2, "")).await;
    assert_eq!(sso.status, 302, "{}", sso.body);
    let t2 = exchange(&app, &mut b, &sso.param("code").unwrap(), CB2, &f.other)
        .await
        .json();
    let id2 = verify_id_token(&jwks, t2["id_token"].as_str().unwrap(), &f.other.0, &issuer);
    assert_eq!(id2["sid"], sid.as_str());
    let sessions = h
        .state
        .sessions
        .list_user_sessions(&latch_core::UserId::new(&f.user_id), h.state.clock.now())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    let joined: Vec<_> = sessions[0]
        .clients
        .iter()
        .map(|c| c.client_id.as_str().to_owned())
        .collect();
    assert!(
        joined.contains(&f.web.0) && joined.contains(&f.other.0),
        "{joined:?}"
    );

    // prompt=login forces the form; max_age=0 too.
    assert_eq!(
        b.get(&app, &authorize_uri(&f.web.0, CB, "&prompt=login"))
            .await
            .status,
        200
    );
    assert_eq!(
        b.get(&app, &authorize_uri(&f.web.0, CB, "&max_age=0"))
            .await
            .status,
        200
    );

    // Introspection.
    let rt = t["refresh_token"].as_str().unwrap();
    let i = b
        .post_form_with(
            &app,
            "/oauth/introspect",
            &[("token", rt)],
            Some((&f.web.0, &f.web.1)),
        )
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], f.user_id.as_str());
    let i = b
        .post_form_with(
            &app,
            "/oauth/introspect",
            &[("token", rt)],
            Some((&f.other.0, &f.other.1)),
        )
        .await
        .json();
    assert_eq!(i["active"], false, "another client's token is not shown");
    let i = b
        .post_form_with(
            &app,
            "/oauth/introspect",
            &[("token", at)],
            Some((&f.web.0, &f.web.1)),
        )
        .await
        .json();
    assert_eq!(i["active"], true);

    // Revocation kills the refresh token and the access tokens of its grant.
    let r = b
        .post_form_with(
            &app,
            "/oauth/revoke",
            &[("token", rt), ("token_type_hint", "refresh_token")],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(r.status, 200);
    let again = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let req = test::TestRequest::get()
        .uri("/userinfo")
        .insert_header(("Authorization", format!("Bearer {at}")))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 401);
    // Unknown tokens: still 200.
    let r = b
        .post_form_with(
            &app,
            "/oauth/revoke",
            &[("token", "nonsense")],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(r.status, 200);

    // Log events.
    let logs = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            user_id: Some(latch_core::UserId::new(&f.user_id)),
            per_page: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let types: Vec<_> = logs.iter().map(|e| e.event_type.as_str()).collect();
    for t in ["s", "seacft", "srrt"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let failed = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some("f".into()),
            per_page: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.iter().any(|e| e.ip.as_deref() == Some("127.0.0.1")));
}
on_all_backends!(sign_in_sso_and_tokens, sign_in_sso_and_tokens);

async fn code_replay_and_refresh_reuse(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    let code = done.param("code").unwrap();
    let t = exchange(&app, &mut b, &code, CB, &f.web).await.json();
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();

    // Replaying the code fails and revokes what the first use issued.
    let replay = exchange(&app, &mut b, &code, CB, &f.web).await;
    assert_eq!(
        (replay.status, replay.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let r = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(
        r.status, 400,
        "the first use's refresh token died with the replay"
    );

    // Rotation: each use gives a new token; reusing an old one revokes the family.
    let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let a = t["refresh_token"].as_str().unwrap().to_owned();
    let r = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &a)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bb = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(a, bb);
    assert!(r.json()["id_token"].is_string());
    // A narrower scope is fine, a wider one is not.
    let wider = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &bb),
                ("scope", "openid admin"),
            ],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(wider.json()["error"], "invalid_scope");
    let reuse = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &a)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &bb)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "reuse revoked the whole family"
    );
    let logs = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some("ferrt".into()),
            client_id: Some(latch_core::ClientId::new(&f.web.0)),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    // A refresh token is bound to its client.
    let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let stolen = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ],
            Some((&f.other.0, &f.other.1)),
        )
        .await;
    assert_eq!(stolen.json()["error"], "invalid_grant");
}
on_all_backends!(code_replay_and_refresh_reuse, code_replay_and_refresh_reuse);

/// The same refresh token sent eight times at once: the exchanges pass the lookup together and
/// race at the rotation. Exactly one answer carries tokens (they are signed while the rotation
/// commits, and only the winner's leave); the others are reuse, which revokes the family, so
/// the winner's new refresh token is refused too.
async fn concurrent_refreshes_of_one_token_have_one_winner(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    let code = done.param("code").unwrap();
    let t = exchange(&app, &mut b, &code, CB, &f.web).await.json();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let basic = Some((f.web.0.as_str(), f.web.1.as_str()));
    let mut browsers: Vec<Browser> = (0..8).map(|_| Browser::new()).collect();
    let answers = futures_util::future::join_all(
        browsers
            .iter_mut()
            .map(|b| b.post_form_with(&app, "/oauth/token", &form, basic)),
    )
    .await;
    let won: Vec<&Page> = answers.iter().filter(|p| p.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "one winner: {:?}",
        answers.iter().map(|p| &p.body).collect::<Vec<_>>()
    );
    for p in answers.iter().filter(|p| p.status != 200) {
        assert_eq!(
            (p.status, p.json()["error"].clone()),
            (400, json!("invalid_grant"))
        );
    }
    let next = won[0].json()["refresh_token"].as_str().unwrap().to_owned();
    assert!(won[0].json()["id_token"].is_string());
    let after = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &next)],
            basic,
        )
        .await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the losers' reuse revoked the family, the winner's new token with it"
    );
}
on_all_backends!(
    concurrent_refreshes_of_one_token_have_one_winner,
    concurrent_refreshes_of_one_token_have_one_winner
);

async fn rejections(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let mut b = Browser::new();

    // Unknown client, unregistered redirect URI: an error page, never a redirect.
    let p = b.get(&app, &authorize_uri("no-such-client", CB, "")).await;
    assert_eq!((p.status, p.location.is_none()), (400, true));
    let p = b
        .get(
            &app,
            &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback/evil", ""),
        )
        .await;
    assert_eq!((p.status, p.location.is_none()), (400, true));
    let p = b
        .get(
            &app,
            &authorize_uri(&f.web.0, "https://evil.example.com/cb", ""),
        )
        .await;
    assert_eq!((p.status, p.location.is_none()), (400, true));
    // A bad parameter with a good redirect URI: back to the app with an error.
    let p = b
        .get(
            &app,
            &authorize_uri(&f.web.0, CB, "").replace("response_type=code", "response_type=token"),
        )
        .await;
    assert_eq!(
        p.param("error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(p.param("state").as_deref(), Some("st-1"));
    let p = b
        .get(
            &app,
            &authorize_uri(
                &f.web.0,
                CB,
                &format!("&code_challenge={CHALLENGE}&code_challenge_method=plain"),
            ),
        )
        .await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));
    // Public clients must use PKCE.
    let p = b.get(&app, &authorize_uri(&f.spa, CB, "")).await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));
    // prompt=none without a session.
    let p = b
        .get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));

    // PKCE: a public client signs in; a wrong verifier fails; the right one works.
    let uri = authorize_uri(
        &f.spa,
        CB,
        &format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"),
    );
    let done = sign_in(&app, &mut b, &uri, &f.email, PASSWORD).await;
    let code = done.param("code").unwrap();
    let wrong = "x".repeat(43);
    let p = b
        .post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("client_id", &f.spa),
                ("code_verifier", &wrong),
            ],
        )
        .await;
    assert_eq!(p.json()["error"], "invalid_grant");
    let done = b.get(&app, &uri).await;
    let code = done.param("code").unwrap();
    let p = b
        .post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("client_id", &f.spa),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);

    // Wrong client secret; wrong method; redirect_uri mismatch at the token endpoint.
    let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let code = done.param("code").unwrap();
    let p = exchange(
        &app,
        &mut b,
        &code,
        CB,
        &(f.web.0.clone(), "wrong-secret".into()),
    )
    .await;
    assert_eq!(p.status, 401);
    assert_eq!(p.json()["error"], "invalid_client");
    assert!(
        p.headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let p = b
        .post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("client_id", &f.web.0),
                ("client_secret", &f.web.1),
            ],
        )
        .await;
    assert_eq!(
        p.json()["error"],
        "invalid_client",
        "registered for client_secret_basic"
    );
    let p = exchange(&app, &mut b, &code, CB2, &f.web).await;
    assert_eq!(p.json()["error"], "invalid_grant");
    let p = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "password")],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(p.json()["error"], "unsupported_grant_type");

    // An expired code.
    let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let code = done.param("code").unwrap();
    let mut later = h.state.clone();
    let clock =
        latch_core::clock::ManualClock::new(h.state.clock.now() + time::Duration::seconds(61));
    later.clock = std::sync::Arc::new(clock);
    let app_later = test::init_service(latch_server::app::app(later)).await;
    let p = exchange(&app_later, &mut b, &code, CB, &f.web).await;
    assert_eq!(p.json()["error"], "invalid_grant");

    // A login form posted without its browser cookie (CSRF) or twice is refused.
    let mut other = Browser::new();
    let form = other
        .get(&app, &authorize_uri(&f.web.0, CB, "&prompt=login"))
        .await;
    let tx = form.field("tx").unwrap();
    let mut attacker = Browser::new();
    let p = attacker
        .post_form(
            &app,
            "/login",
            &[("tx", &tx), ("email", &f.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, 400);
    let p = other
        .post_form(
            &app,
            "/login",
            &[("tx", &tx), ("email", &f.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        p.status, 400,
        "the transaction was used up by the forged post"
    );

    // Blocked users cannot sign in.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{}", f.user_id),
        Some(json!({"blocked": true})),
    )
    .await;
    let mut fresh = Browser::new();
    let p = sign_in(
        &app,
        &mut fresh,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    assert!(p.body.contains("Wrong email or password."));
    // Blocking ended the existing session too.
    let p = b
        .get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
}
on_all_backends!(rejections, rejections);

async fn rp_initiated_logout(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let id_token = t["id_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    // A post_logout_redirect_uri that is not registered: refused, nothing ends.
    let bad = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
                urlencode("https://evil.example.com/")
            ),
        )
        .await;
    assert_eq!((bad.status, bad.location.is_none()), (400, true));
    assert_eq!(
        b.get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
            .await
            .status,
        302
    );
    assert!(
        b.get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
            .await
            .param("code")
            .is_some()
    );
    // A tampered hint is refused.
    let mut tampered = id_token.clone();
    tampered.pop();
    let p = b
        .get(&app, &format!("/oidc/logout?id_token_hint={tampered}"))
        .await;
    assert_eq!(p.status, 400);

    // Without a hint, the user confirms.
    let confirm = b.get(&app, "/oidc/logout").await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Sign out?"));
    let tx = confirm.field("confirm").unwrap();
    // The confirmation cannot be forged from another browser.
    let mut attacker = Browser::new();
    assert_eq!(
        attacker
            .post_form(&app, "/oidc/logout", &[("confirm", &tx)])
            .await
            .status,
        400
    );
    assert!(
        b.get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
            .await
            .param("code")
            .is_some()
    );

    // With the hint and a registered URI: the session ends and the browser goes back with state.
    let out = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
                urlencode("http://127.0.0.1:3000/bye")
            ),
        )
        .await;
    assert_eq!(out.status, 302);
    assert_eq!(
        out.location.as_deref(),
        Some("http://127.0.0.1:3000/bye?state=bye")
    );
    let p = b
        .get(&app, &authorize_uri(&f.web.0, CB, "&prompt=none"))
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
    // The refresh token bound to the session died with it (offline_access was asked for, but a
    // Latch refresh token from a session is offline only with offline_access: it survives).
    let r = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "an offline_access grant survives a plain logout"
    );
    let logs = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some("slo".into()),
            user_id: Some(latch_core::UserId::new(&f.user_id)),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);

    // Sign in again without offline_access: that refresh token dies with the session.
    let uri = authorize_uri(&f.web.0, CB, "").replace("%20offline_access", "");
    let done = sign_in(&app, &mut b, &uri, &f.email, PASSWORD).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let bound = t["refresh_token"].as_str().unwrap().to_owned();
    let confirm = b.get(&app, "/oidc/logout").await;
    let out = b
        .post_form(
            &app,
            "/oidc/logout",
            &[("confirm", &confirm.field("confirm").unwrap())],
        )
        .await;
    assert_eq!(out.status, 200);
    assert!(out.body.contains("signed out"));
    let r = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &bound)],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}
on_all_backends!(rp_initiated_logout, rp_initiated_logout);

async fn keys_rotate(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let old = t["id_token"].as_str().unwrap().to_owned();
    let before = b.get(&app, "/.well-known/jwks.json").await.json();
    let next_rs = api(&app, "GET", "/api/v2/keys/signing", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "RS256" && k["next"] == true)
        .unwrap()["kid"]
        .clone();
    assert!(
        before["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == next_rs),
        "next key published before it signs"
    );
    api(&app, "POST", "/api/v2/keys/signing/rotate", Some(json!({}))).await;
    let jwks = b.get(&app, "/.well-known/jwks.json").await.json();
    // The old token still verifies; new tokens use the key that was next.
    verify_id_token(&jwks, &old, &f.web.0, h.state.config.issuer_str());
    let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let kid = decode_header(t["id_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(json!(kid), next_rs);
}
on_all_backends!(keys_rotate, keys_rotate);

async fn es256_and_eddsa_clients(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    for alg in ["ES256", "EdDSA"] {
        api(
            &app,
            "PATCH",
            &format!("/api/v2/clients/{}", f.web.0),
            Some(json!({"jwt_configuration": {"alg": alg}})),
        )
        .await;
        let done = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
        let t = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
            .await
            .json();
        let token = t["id_token"].as_str().unwrap();
        assert_eq!(format!("{:?}", decode_header(token).unwrap().alg), alg);
        let jwks = b.get(&app, "/.well-known/jwks.json").await.json();
        verify_id_token(&jwks, token, &f.web.0, h.state.config.issuer_str());
    }
}
on_all_backends!(es256_and_eddsa_clients, es256_and_eddsa_clients);

async fn management_api_with_client_credentials(h: Harness) {
    let app = app!(h);
    let issuer = h.state.config.issuer_str().to_owned();
    let audience = format!("{issuer}/api/v2/");
    let m2m = api(
        &app,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Automation", "app_type": "non_interactive"})),
    )
    .await;
    let (id, secret) = (
        m2m["client_id"].as_str().unwrap().to_owned(),
        m2m["client_secret"].as_str().unwrap().to_owned(),
    );
    let mut b = Browser::new();
    let ask = |scope: Option<&'static str>, aud: String| {
        let mut v = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("audience", aud),
        ];
        if let Some(s) = scope {
            v.push(("scope", s.to_owned()));
        }
        v
    };
    let form = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, x)| (*k, x.clone())).collect::<Vec<_>>()
    };

    // No grant yet: refused.
    let v = form(&ask(None, audience.clone()));
    let pairs: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
    let p = b
        .post_form_with(&app, "/oauth/token", &pairs, Some((&id, &secret)))
        .await;
    assert_eq!(
        (p.status, p.json()["error"].clone()),
        (403, json!("access_denied"))
    );

    let g = api(&app, "POST", "/api/v2/client-grants", Some(json!({"client_id": id, "audience": audience, "scope": ["read:connections", "read:clients"]}))).await;
    assert!(g["id"].as_str().unwrap().starts_with("cgr_"));
    let p = b
        .post_form_with(&app, "/oauth/token", &pairs, Some((&id, &secret)))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let token = p.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(p.json()["scope"], "read:connections read:clients");

    // The token works on the management API within its scopes.
    let call = |uri: &str, method: &str| {
        test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"name":"from-m2m","strategy":"auth0"}"#)
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, call("/api/v2/connections", "GET"))
            .await
            .status(),
        200
    );
    assert_eq!(
        test::call_service(&app, call("/api/v2/connections", "POST"))
            .await
            .status(),
        403
    );
    assert_eq!(
        test::call_service(&app, call("/api/v2/users", "GET"))
            .await
            .status(),
        403
    );

    // A wider scope, another audience, or a user's access token are refused.
    let v = form(&ask(
        Some("read:connections delete:users"),
        audience.clone(),
    ));
    let pairs: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
    let p = b
        .post_form_with(&app, "/oauth/token", &pairs, Some((&id, &secret)))
        .await;
    assert_eq!(p.json()["error"], "invalid_scope");
    let v = form(&ask(None, "https://other.example.com/".into()));
    let pairs: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
    let p = b
        .post_form_with(&app, "/oauth/token", &pairs, Some((&id, &secret)))
        .await;
    assert_eq!(p.json()["error"], "access_denied");
    let f = fixture(&app).await;
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    let user_at = exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = test::TestRequest::get()
        .uri("/api/v2/connections")
        .insert_header(("Authorization", format!("Bearer {user_at}")))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 401);
    // A client without the grant type may not use it.
    let p = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("audience", &audience),
            ],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(p.json()["error"], "unauthorized_client");
}
on_all_backends!(
    management_api_with_client_credentials,
    management_api_with_client_credentials
);
