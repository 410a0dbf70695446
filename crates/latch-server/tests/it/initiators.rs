//! Back-channel logout initiators (Auth0's `oidc_logout.backchannel_logout_initiators`): an app
//! is sent a logout token only for the kinds of session end it chose, `sub`-only tokens to
//! refresh-token holders included; every delivery's log event names its initiator; a new
//! password ends every session (`password-changed`); the API refuses unknown names, naming the
//! member; the admin UI's application page sets the choice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use actix_web::test;
use latch_core::logout::{Target, TokenPolicy, Urgency};
use latch_core::model::*;
use latch_core::session::SessionClient;
use latch_core::*;
use latch_jose::keys::{Signer, sign_jws};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backchannel::Receiver;
use crate::browser::Browser;
use crate::oidc::{CB, PASSWORD, authorize_uri, fixture, sign_in, sign_in_web};
use crate::support::{Backends, Harness, TOKEN, api, call, eventually, harness_with};
use crate::{app, on_all_backends};

const RP_ONLY: &str = "rp-logout";

/// A loopback "Okta org" for GTR: its discovery document and JWKS.
struct Org {
    url: String,
    key: Signer,
}

impl Org {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = Signer::generate(SigningAlg::RS256).unwrap();
        let docs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        docs.lock().unwrap().extend([
            (
                "/.well-known/openid-configuration".to_owned(),
                json!({"issuer": url, "jwks_uri": format!("{url}/keys")}).to_string(),
            ),
            (
                "/keys".to_owned(),
                json!({"keys": [key.public_jwk(SigningAlg::RS256)]}).to_string(),
            ),
        ]);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let docs = docs.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let doc = docs.lock().unwrap().get(&path).cloned();
                    let (status, body) = doc.map_or((404, "{}".to_owned()), |d| (200, d));
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                });
            }
        });
        Self { url, key }
    }

    /// A GTR request token for the connection whose endpoint is `aud`.
    fn token(&self, aud: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iss": self.url, "sub": "0oaAPPINSTANCE", "aud": aud, "iat": now,
            "nbf": now - 60, "exp": now + 300, "jti": latch_jose::random_token(16)});
        sign_jws(
            &self.key,
            SigningAlg::RS256,
            &self.key.thumbprint(),
            "global-token-revocation+jwt",
            &claims,
        )
        .unwrap()
    }
}

/// A session of `user` that the `clients` have joined, stored directly.
async fn session_with(h: &Harness, user: &UserId, clients: &[&str]) -> SessionId {
    let mut s = latch_testkit::fixtures::session(user);
    s.clients = clients
        .iter()
        .map(|c| SessionClient {
            client_id: ClientId::new(*c),
            sid: Sid::new(latch_jose::random_token(12)),
            joined_at: latch_testkit::fixtures::now(),
            saml: None,
        })
        .collect();
    h.state.sessions.insert_session(&s).await.unwrap();
    s.id
}

/// An offline refresh token of `user` held by `client`, with its grant.
async fn offline_token(h: &Harness, user: &UserId, client: &str) {
    let u = h.state.store.get_user(user).await.unwrap();
    let c = h
        .state
        .store
        .get_client(&ClientId::new(client))
        .await
        .unwrap();
    let t = latch_testkit::fixtures::refresh_token(&u, &c, None, true);
    h.state
        .store
        .insert_grant(&latch_testkit::fixtures::grant_of(&t), Some(&t))
        .await
        .unwrap();
}

/// The outbox's deliveries of `initiator`: per app, whether each names a session (`sid`).
async fn recorded(h: &Harness, initiator: LogoutInitiator) -> BTreeMap<String, Vec<bool>> {
    let mut out: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for d in h
        .state
        .store
        .list_deliveries(&Default::default(), 1000)
        .await
        .unwrap()
    {
        if d.notice.initiator == initiator {
            out.entry(d.client_id.as_str().to_owned())
                .or_default()
                .push(d.notice.sid.is_some());
        }
    }
    out
}

fn only(pairs: &[(&str, &[bool])]) -> BTreeMap<String, Vec<bool>> {
    pairs
        .iter()
        .map(|(c, v)| ((*c).to_owned(), v.to_vec()))
        .collect()
}

async fn live_sessions(h: &Harness, user: &UserId) -> usize {
    h.state
        .sessions
        .list_user_sessions(user, h.state.clock.now())
        .await
        .unwrap()
        .len()
}

/// An app that chose only `rp-logout` hears of its own logout and nothing else: not a GTR, not
/// an admin's clear sessions, not a new password, not a block, and no `sub`-only token for a
/// refresh token it holds. An app left at `all` hears of each; every delivery's event names the
/// initiator.
async fn each_app_hears_only_what_it_chose(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let rx = Receiver::start().await;
    let app = app!(h);
    let f = fixture(&app).await;
    let (custom, all) = (f.web.0.clone(), f.other.0.clone());
    let user = UserId::new(&f.user_id);
    let c = api(
        &app,
        "PATCH",
        &format!("/api/v2/clients/{custom}"),
        Some(json!({"oidc_logout": {
            "backchannel_logout_urls": [format!("{}/custom", rx.url)],
            "backchannel_logout_initiators": {"mode": "custom", "selected_initiators": [RP_ONLY]}}})),
    )
    .await;
    assert_eq!(
        c["oidc_logout"]["backchannel_logout_initiators"],
        json!({"mode": "custom", "selected_initiators": [RP_ONLY]})
    );
    let a = api(
        &app,
        "PATCH",
        &format!("/api/v2/clients/{all}"),
        Some(json!({"oidc_logout": {"backchannel_logout_urls": [format!("{}/all", rx.url)]}})),
    )
    .await;
    assert_eq!(
        a["oidc_logout"]["backchannel_logout_initiators"],
        json!({"mode": "all"}),
        "the default"
    );
    // A third app, left at `all`, that only holds a refresh token: the control for the `sub`-only
    // token the custom app is not sent.
    let holder = api(
        &app,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Holder", "callbacks": [CB],
            "oidc_logout": {"backchannel_logout_urls": [format!("{}/holder", rx.url)]}})),
    )
    .await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The choice is stored (both backends), and a PATCH not naming it keeps it.
    api(
        &app,
        "PATCH",
        &format!("/api/v2/clients/{custom}"),
        Some(json!({"oidc_logout": {"backchannel_logout_session_required": true}})),
    )
    .await;
    assert_eq!(
        api(&app, "GET", &format!("/api/v2/clients/{custom}"), None).await["oidc_logout"]["backchannel_logout_initiators"],
        json!({"mode": "custom", "selected_initiators": [RP_ONLY]})
    );

    // An administrator clears the user's sessions (session-revoked): the session both apps
    // joined ends; only the app at `all` is told.
    session_with(&h, &user, &[&custom, &all]).await;
    let (status, _) = call(
        &app,
        "DELETE",
        &format!("/api/v2/users/{user}/sessions"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(live_sessions(&h, &user).await, 0);
    assert_eq!(
        recorded(&h, LogoutInitiator::SessionRevoked).await,
        only(&[(&all, &[true])])
    );

    // Okta's Universal Logout (GTR, idp-logout) for the same user: the app at `all` is told of
    // its session, the holder gets its `sub`-only token, the custom app neither, though it
    // holds a refresh token too.
    let org = Org::start().await;
    let name = format!("okta-{}", latch_testkit::env::unique());
    let conn = api(
        &app,
        "POST",
        "/api/v2/connections",
        Some(json!({"name": name, "strategy": "okta", "options": {
            "domain": org.url, "client_id": "0oaAPPINSTANCE", "client_secret": "upstream-secret",
            "global_token_revocation_enabled": true}})),
    )
    .await;
    let conn = h
        .state
        .store
        .get_connection(&ConnectionId::new(conn["id"].as_str().unwrap()))
        .await
        .unwrap();
    let u = h.state.store.get_user(&user).await.unwrap();
    let mut identity = latch_testkit::fixtures::identity(&u, &conn);
    identity.issuer = org.url.clone();
    identity.subject = "00uADA".into();
    h.state.store.insert_identity(&identity).await.unwrap();
    session_with(&h, &user, &[&all]).await;
    offline_token(&h, &user, &custom).await;
    offline_token(&h, &user, &holder).await;
    let endpoint = latch_gtr::endpoint_url(h.state.config.issuer_str(), &conn.name);
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri(&format!("/oauth/global-token-revocation/connection/{name}"))
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("Authorization", format!("Bearer {}", org.token(&endpoint))))
            .set_payload(
                json!({"subject": {"format": "iss_sub", "iss": org.url, "sub": "00uADA"}})
                    .to_string(),
            )
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(live_sessions(&h, &user).await, 0);
    assert!(
        h.state
            .store
            .list_user_refresh_tokens(&user, h.state.clock.now())
            .await
            .unwrap()
            .is_empty(),
        "GTR revoked the custom app's token all the same"
    );
    assert_eq!(
        recorded(&h, LogoutInitiator::IdpLogout).await,
        only(&[(&all, &[true]), (&holder, &[false])])
    );

    // A new password (password-changed) and a block (account-deactivated): the same.
    session_with(&h, &user, &[&custom, &all]).await;
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"password": "An0ther-Horse!"})),
    )
    .await;
    assert_eq!(live_sessions(&h, &user).await, 0);
    assert_eq!(
        recorded(&h, LogoutInitiator::PasswordChanged).await,
        only(&[(&all, &[true])])
    );
    session_with(&h, &user, &[&custom, &all]).await;
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"blocked": true})),
    )
    .await;
    assert_eq!(
        recorded(&h, LogoutInitiator::AccountDeactivated).await,
        only(&[(&all, &[true])])
    );
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"blocked": false, "password": PASSWORD})),
    )
    .await;

    // The app's own logout (rp-logout): signed in to both apps, the user logs out of the custom
    // one; both are told, before the browser is answered.
    let mut b = Browser::new();
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&custom, CB, ""),
        &f.email,
        PASSWORD,
    )
    .await;
    let t = crate::oidc::exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    let sso = b
        .get(
            &app,
            &authorize_uri(&all, "http://127.0.0.1:4000/callback", ""),
        )
        .await;
    assert!(sso.param("code").is_some(), "{:?}", sso.location);
    let out = b
        .get(
            &app,
            &format!(
                "/oidc/logout?id_token_hint={}",
                t["id_token"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(out.status, 200);
    assert_eq!(
        recorded(&h, LogoutInitiator::RpLogout).await,
        only(&[(&all, &[true]), (&custom, &[true])])
    );

    // What was recorded is what arrives: five tokens at the app at `all`, one at the holder, and
    // one, its own logout's, at the custom app. Each delivery's event names its initiator.
    let delivered = eventually("every delivery delivered", async || {
        let logs = h
            .state
            .store
            .list_logs(&LogQuery {
                event_type: Some("oidc_backchannel_logout_succeeded".into()),
                user_id: Some(user.clone()),
                per_page: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        (logs.len() >= 7).then_some(logs)
    })
    .await;
    for w in workers {
        w.abort();
    }
    let mut heard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &delivered {
        heard
            .entry(e.client_id.as_ref().unwrap().as_str().to_owned())
            .or_default()
            .push(e.details["initiator"].as_str().unwrap().to_owned());
    }
    for v in heard.values_mut() {
        v.sort();
    }
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        heard,
        BTreeMap::from([
            (
                all.clone(),
                names(&[
                    "account-deactivated",
                    "idp-logout",
                    "password-changed",
                    "rp-logout",
                    "session-revoked"
                ])
            ),
            (custom.clone(), names(&[RP_ONLY])),
            (holder.clone(), names(&["idp-logout"])),
        ])
    );
    let mut paths: Vec<String> = rx.received().into_iter().map(|(p, _)| p).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/all", "/all", "/all", "/all", "/all", "/custom", "/holder"]
    );
}
on_all_backends!(
    each_app_hears_only_what_it_chose,
    each_app_hears_only_what_it_chose
);

/// Every initiator, through the Logout service itself: an app that selected exactly that kind is
/// told, one that selected every other kind is not, one at `all` always is, one with an empty
/// selection never is. Latch's own `session-replaced` counts as `rp-logout`.
async fn every_kind_reaches_the_apps_that_chose_it(h: Harness) {
    let mk = async |initiators: BackchannelLogoutInitiators| -> String {
        let mut c = latch_testkit::fixtures::client();
        c.oidc_logout.backchannel_logout_initiators = initiators;
        h.state.store.insert_client(&c).await.unwrap();
        c.client_id.as_str().to_owned()
    };
    let all = mk(BackchannelLogoutInitiators::All).await;
    let none = mk(BackchannelLogoutInitiators::Custom {
        selected_initiators: vec![],
    })
    .await;
    let user = latch_testkit::fixtures::user();
    h.state.store.insert_user(&user).await.unwrap();
    let logout = h.state.logout();
    let kinds = LogoutInitiator::SELECTABLE
        .into_iter()
        .chain([LogoutInitiator::SessionReplaced]);
    for kind in kinds {
        let chosen = kind.selected_as();
        let this = mk(BackchannelLogoutInitiators::Custom {
            selected_initiators: vec![chosen],
        })
        .await;
        let others = mk(BackchannelLogoutInitiators::Custom {
            selected_initiators: LogoutInitiator::SELECTABLE
                .into_iter()
                .filter(|i| *i != chosen)
                .collect(),
        })
        .await;
        let id = session_with(&h, &user.user_id, &[&all, &none, &this, &others]).await;
        let ended = logout
            .end(
                Target::Session(id),
                TokenPolicy::SessionBound,
                kind,
                Urgency::Background,
            )
            .await
            .unwrap();
        assert_eq!(ended.sessions.len(), 1, "{kind:?}");
        let mut told: Vec<&str> = ended
            .deliveries
            .iter()
            .map(|d| d.client_id.as_str())
            .collect();
        told.sort_unstable();
        let mut want = vec![all.as_str(), this.as_str()];
        want.sort_unstable();
        assert_eq!(told, want, "{kind:?}");
        assert!(
            ended.deliveries.iter().all(|d| d.notice.initiator == kind),
            "{kind:?}"
        );
    }
}
on_all_backends!(
    every_kind_reaches_the_apps_that_chose_it,
    every_kind_reaches_the_apps_that_chose_it
);

/// Setting a database user's password ends every session of theirs through the Logout service
/// (initiator `password-changed`, one `slo` event); session-bound refresh tokens die with the
/// sessions, offline ones stay. Blocking in the same request ends everything as a block.
async fn a_new_password_ends_every_session(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let user = UserId::new(&f.user_id);
    let (mut b, done) = sign_in_web(&app, &f).await;
    let t = crate::oidc::exchange(&app, &mut b, &done.param("code").unwrap(), CB, &f.web)
        .await
        .json();
    assert!(t["refresh_token"].is_string(), "{t}");
    session_with(&h, &user, &[&f.other.0]).await;
    let bound = latch_testkit::fixtures::refresh_token(
        &h.state.store.get_user(&user).await.unwrap(),
        &h.state
            .store
            .get_client(&ClientId::new(&f.other.0))
            .await
            .unwrap(),
        Some(
            &h.state
                .sessions
                .list_user_sessions(&user, h.state.clock.now())
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.clients.iter().any(|c| c.client_id.as_str() == f.other.0))
                .unwrap()
                .id,
        ),
        false,
    );
    h.state
        .store
        .insert_grant(&latch_testkit::fixtures::grant_of(&bound), Some(&bound))
        .await
        .unwrap();
    assert_eq!(live_sessions(&h, &user).await, 2);
    let tokens_before = h
        .state
        .store
        .list_user_refresh_tokens(&user, h.state.clock.now())
        .await
        .unwrap();
    assert_eq!(tokens_before.len(), 2);

    // Refused (the policy): nothing ends.
    let (status, _) = call(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"password": "weak"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(live_sessions(&h, &user).await, 2);

    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"password": "An0ther-Horse!"})),
    )
    .await;
    assert_eq!(live_sessions(&h, &user).await, 0);
    let p = b
        .get(
            &app,
            &format!("{}&prompt=none", authorize_uri(&f.web.0, CB, "")),
        )
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
    let left = h
        .state
        .store
        .list_user_refresh_tokens(&user, h.state.clock.now())
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the session-bound token died: {left:?}");
    assert!(left[0].offline, "the offline one stays");
    let slo = h
        .state
        .store
        .list_logs(&LogQuery {
            event_type: Some("slo".into()),
            user_id: Some(user.clone()),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(slo.len(), 1, "{slo:?}");
    assert_eq!(slo[0].details["initiator"], "password-changed");
    assert_eq!(slo[0].details["sessions_ended"], 2);
    assert_eq!(slo[0].details["refresh_tokens_revoked"], 1);
    assert_eq!(slo[0].details["actor"], "admin-token");

    // A password and a block at once: one logout, the block's.
    session_with(&h, &user, &[&f.other.0]).await;
    api(
        &app,
        "PATCH",
        &format!("/api/v2/users/{user}"),
        Some(json!({"password": "Th1rd-Horse!", "blocked": true})),
    )
    .await;
    assert_eq!(live_sessions(&h, &user).await, 0);
    let slo = h
        .state
        .store
        .list_logs(&LogQuery {
            event_type: Some("slo".into()),
            user_id: Some(user.clone()),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(slo.len(), 2, "{slo:?}");
    assert_eq!(slo[0].details["initiator"], "account-deactivated");
}
on_all_backends!(
    a_new_password_ends_every_session,
    a_new_password_ends_every_session
);

/// The API refuses what is not Auth0's shape or names no initiator Latch has, naming the member
/// at fault, and each refusal changes nothing; the OpenAPI document describes the member.
async fn the_api_refuses_unknown_initiators(h: Harness) {
    let app = app!(h);
    let f = fixture(&app).await;
    let path = format!("/api/v2/clients/{}", f.web.0);
    let field = "oidc_logout.backchannel_logout_initiators";
    let set = |v: Value| Some(json!({"oidc_logout": {"backchannel_logout_initiators": v}}));
    api(
        &app,
        "PATCH",
        &path,
        set(json!({"mode": "custom", "selected_initiators": ["idp-logout", "password-changed", "idp-logout"]})),
    )
    .await;
    let kept = json!({"mode": "custom", "selected_initiators": ["idp-logout", "password-changed"]});
    assert_eq!(
        api(&app, "GET", &path, None).await["oidc_logout"]["backchannel_logout_initiators"],
        kept,
        "duplicates kept once"
    );
    let cases = [
        (
            json!({"mode": "custom", "selected_initiators": ["rp-logout", "email-identifier-changed"]}),
            format!("{field}.selected_initiators[1]"),
        ),
        (
            json!({"mode": "custom", "selected_initiators": ["session-replaced"]}),
            format!("{field}.selected_initiators[0]"),
        ),
        (
            json!({"mode": "custom", "selected_initiators": ["RP-LOGOUT"]}),
            format!("{field}.selected_initiators[0]"),
        ),
        (
            json!({"mode": "custom", "selected_initiators": [7]}),
            format!("{field}.selected_initiators[0]"),
        ),
        (
            json!({"mode": "custom"}),
            format!("{field}.selected_initiators"),
        ),
        (
            json!({"mode": "all", "selected_initiators": ["rp-logout"]}),
            format!("{field}.selected_initiators"),
        ),
        (
            json!({"mode": "some", "selected_initiators": ["rp-logout"]}),
            format!("{field}.mode"),
        ),
        (
            json!({"selected_initiators": ["rp-logout"]}),
            format!("{field}.mode"),
        ),
        (
            json!({"mode": "custom", "selected_initiators": "rp-logout"}),
            format!("{field}.selected_initiators"),
        ),
        (json!("all"), field.to_owned()),
    ];
    for (body, want) in cases {
        let (status, answer) = call(&app, "PATCH", &path, set(body.clone()), Some(TOKEN)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], want.as_str(), "{body}: {answer}");
        assert_eq!(
            api(&app, "GET", &path, None).await["oidc_logout"]["backchannel_logout_initiators"],
            kept,
            "{body} changed nothing"
        );
    }
    // An unknown member is refused too, naming it.
    let (status, answer) = call(
        &app,
        "PATCH",
        &path,
        set(json!({"mode": "all", "extra": 1})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["field"].as_str().unwrap().starts_with(field),
        "{answer}"
    );
    // Creating with a bad name creates nothing.
    let before = api(&app, "GET", "/api/v2/clients", None)
        .await
        .as_array()
        .unwrap()
        .len();
    let (status, answer) = call(
        &app,
        "POST",
        "/api/v2/clients",
        Some(json!({"name": "Bad", "callbacks": [CB],
            "oidc_logout": {"backchannel_logout_initiators": {"mode": "custom", "selected_initiators": ["nope"]}}})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["field"],
        format!("{field}.selected_initiators[0]").as_str()
    );
    assert_eq!(
        api(&app, "GET", "/api/v2/clients", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        before
    );
    // Back to `all`; an empty custom list is a valid choice (told of nothing).
    api(&app, "PATCH", &path, set(json!({"mode": "all"}))).await;
    assert_eq!(
        api(&app, "GET", &path, None).await["oidc_logout"]["backchannel_logout_initiators"],
        json!({"mode": "all"})
    );
    let empty = json!({"mode": "custom", "selected_initiators": []});
    let answer = api(&app, "PATCH", &path, set(empty.clone())).await;
    assert_eq!(
        answer["oidc_logout"]["backchannel_logout_initiators"],
        empty
    );

    // The OpenAPI document names the modes and every selectable initiator.
    let (status, doc) = call(&app, "GET", "/api/v2/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let text = doc.to_string();
    assert!(text.contains("backchannel_logout_initiators"));
    for i in LogoutInitiator::SELECTABLE {
        assert!(text.contains(&format!("\"{}\"", i.as_str())), "{i:?}");
    }
    assert!(!text.contains("\"session-replaced\""));
}
on_all_backends!(
    the_api_refuses_unknown_initiators,
    the_api_refuses_unknown_initiators
);

const ADMIN_PASSWORD: &str = "Admin-Passw0rd-for-initiators";

/// The path and query of a redirect target.
fn path_of(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(u) => format!("{}?{}", u.path(), u.query().unwrap_or("")),
        Err(_) => location.to_owned(),
    }
}

/// The admin UI's application page: a switch for "only some kinds", the kinds as checkboxes,
/// the stored choice shown, and saving the form sets it (both ways). The user page says a new
/// password signs the user out.
async fn the_application_page_sets_the_choice(backends: Backends, test_name: &str) {
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
    let f = fixture(&app).await;
    let cid = f.web.0.clone();
    // The admin signs in through the real pages.
    let mut b = Browser::new();
    let p = b.get(&app, "/admin/login").await;
    let p = b.get(&app, &path_of(p.location.as_deref().unwrap())).await;
    let tx = p.field("tx").expect("the sign-in form");
    let p = b
        .post_form(
            &app,
            "/login",
            &[
                ("tx", &tx),
                ("email", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    let cb = path_of(p.location.as_deref().unwrap());
    assert!(cb.starts_with("/admin/callback"), "{cb}");
    let p = b.get(&app, &cb).await;
    assert!((300..400).contains(&p.status), "{}", p.status);

    let page_path = format!("/admin/applications/{cid}");
    let page = b.get(&app, &page_path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("name=\"backchannel_logout_initiators_custom\"")
            && page
                .body
                .contains("data-controls=\"section-logout-initiators\""),
        "{}",
        page.body
    );
    for i in LogoutInitiator::SELECTABLE {
        assert!(
            page.body.contains(&format!(
                "name=\"selected_initiators\" value=\"{}\"",
                i.as_str()
            )),
            "{i:?}"
        );
    }
    // `all`: the switch is off.
    assert!(
        !page
            .body
            .contains("id=\"f-backchannel_logout_initiators_custom\" value=\"true\" checked"),
        "{}",
        page.body
    );
    let csrf = page.field("csrf").unwrap();
    let form = |custom: bool, kinds: &[&'static str]| -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("csrf", csrf.clone()),
            ("name", "Web".to_owned()),
            ("app_type", "regular_web".to_owned()),
            ("callbacks", CB.to_owned()),
            ("grant_types", "authorization_code".to_owned()),
            ("grant_types", "refresh_token".to_owned()),
            (
                "token_endpoint_auth_method",
                "client_secret_basic".to_owned(),
            ),
            ("alg", "RS256".to_owned()),
            ("backchannel_logout_url", "http://127.0.0.1:9/bc".to_owned()),
        ];
        if custom {
            v.push(("backchannel_logout_initiators_custom", "true".to_owned()));
        }
        v.extend(
            kinds
                .iter()
                .map(|k| ("selected_initiators", (*k).to_owned())),
        );
        v
    };
    let post = async |b: &mut Browser, fields: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.post_form(&app, &page_path, &pairs).await
    };
    let stored = async || {
        api(&app, "GET", &format!("/api/v2/clients/{cid}"), None).await["oidc_logout"]
            ["backchannel_logout_initiators"]
            .clone()
    };
    let hop = post(&mut b, form(true, &["rp-logout", "password-changed"])).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(
        stored().await,
        json!({"mode": "custom", "selected_initiators": ["rp-logout", "password-changed"]})
    );
    let page = b.get(&app, &page_path).await;
    assert!(page.body.contains(
        "name=\"backchannel_logout_initiators_custom\" id=\"f-backchannel_logout_initiators_custom\" value=\"true\" checked"
    ), "{}", page.body);
    assert!(page.body.contains("value=\"password-changed\" checked"));
    assert!(page.body.contains("value=\"rp-logout\" checked"));
    assert!(!page.body.contains("value=\"idp-logout\" checked"));
    // A forged value is the API's 400, shown on the kinds' field; nothing changes.
    let hop = post(&mut b, form(true, &["rp-logout", "nope"])).await;
    assert_eq!(hop.status, 400);
    assert!(
        hop.body.contains("id=\"f-selected_initiators-error\""),
        "{}",
        hop.body
    );
    assert_eq!(
        stored().await,
        json!({"mode": "custom", "selected_initiators": ["rp-logout", "password-changed"]})
    );
    // The switch off: every kind again, whatever boxes were left checked.
    let hop = post(&mut b, form(false, &["rp-logout"])).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(stored().await, json!({"mode": "all"}));

    // Global Token Revocation: set by the same page, refused with the field named, removed
    // when the endpoint is left empty.
    let gtr = async || {
        api(&app, "GET", &format!("/api/v2/clients/{cid}"), None).await["global_token_revocation"]
            .clone()
    };
    let with_gtr = |endpoint: &str, format: &str| {
        let mut v = form(false, &[]);
        v.push(("endpoint", endpoint.to_owned()));
        v.push(("subject_format", format.to_owned()));
        v
    };
    let page = b.get(&app, &page_path).await;
    assert!(
        page.body.contains("name=\"endpoint\"") && page.body.contains("name=\"subject_format\""),
        "{}",
        page.body
    );
    let hop = post(&mut b, with_gtr("http://127.0.0.1:9/gtr", "email")).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(
        gtr().await,
        json!({"endpoint": "http://127.0.0.1:9/gtr", "subject_format": "email"})
    );
    let page = b.get(&app, &page_path).await;
    assert!(
        page.body.contains("value=\"http://127.0.0.1:9/gtr\""),
        "{}",
        page.body
    );
    let hop = post(&mut b, with_gtr("http://gtr.example.com/g", "iss_sub")).await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("id=\"f-endpoint-error\""), "{}", hop.body);
    assert_eq!(gtr().await["subject_format"], "email", "unchanged");
    let hop = post(&mut b, with_gtr("", "iss_sub")).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(gtr().await, Value::Null);

    // The user page's password form says what a new password does.
    let user_page = b.get(&app, &format!("/admin/users/{}", f.user_id)).await;
    assert_eq!(user_page.status, 200);
    assert!(
        user_page.body.contains("Every session of the user ends")
            && !user_page.body.contains("stay signed in"),
        "{}",
        user_page.body
    );
}

#[actix_web::test]
async fn the_application_page_sets_the_choice_on_the_embedded_default() {
    the_application_page_sets_the_choice(
        Backends::Embedded,
        "the_application_page_sets_the_choice::embedded",
    )
    .await;
}

#[actix_web::test]
async fn the_application_page_sets_the_choice_on_postgres_and_redis() {
    the_application_page_sets_the_choice(
        Backends::Production,
        "the_application_page_sets_the_choice::postgres_redis",
    )
    .await;
}
