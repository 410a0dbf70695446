//! Back-channel logout: tokens as the spec wants them, delivered on logout, retried while an
//! app is down, not retried when it rejects them, and not lost when Latch is killed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::browser::Browser;
use crate::oidc::{PASSWORD, authorize_uri, fixture, sign_in, verify_id_token};
use crate::support::{Harness, TOKEN, Target, api, call, eventually, read_request};
use crate::{app, on_all_backends};

/// A loopback app endpoint that records every `logout_token` it is sent and answers with the
/// queued statuses (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub tokens: Arc<Mutex<Vec<(String, String)>>>,
    pub statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub fn serve(listener: tokio::net::TcpListener) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = Self {
            url,
            tokens: Arc::default(),
            statuses: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let path = req.path.clone();
                    let body = req.body_text();
                    let token = url::form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned());
                    if let Some(t) = token {
                        me.tokens.lock().unwrap().push((path, t));
                    }
                    let status = me.statuses.lock().unwrap().pop_front().unwrap_or(200);
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
        r
    }

    pub fn received(&self) -> Vec<(String, String)> {
        self.tokens.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks a logout token as an RP must (OIDC Back-Channel Logout 1.0 §2.6) and returns its claims.
pub fn verify_logout_token(jwks: &Value, token: &str, aud: &str, issuer: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
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
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    let c = decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
        .unwrap()
        .claims;
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(
        c.get("nonce").is_none(),
        "a logout token never carries a nonce"
    );
    assert!(c["jti"].is_string());
    assert!(c["sub"].is_string() || c["sid"].is_string());
    let life = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&life), "short-lived: {life}s");
    c
}

async fn set_backchannel(app: &impl Target, client: &str, url: &str) {
    api(
        app,
        "PATCH",
        &format!("/api/v2/clients/{client}"),
        Some(json!({"oidc_logout": {"backchannel_logout_urls": [url], "backchannel_logout_session_required": true}})),
    )
    .await;
}

async fn rp_logout_reaches_every_app(h: Harness) {
    let rx = Receiver::start().await;
    let app = app!(h);
    let f = fixture(&app).await;
    set_backchannel(&app, &f.web.0, &format!("{}/web", rx.url)).await;
    set_backchannel(&app, &f.other.0, &format!("{}/other", rx.url)).await;
    let mut b = Browser::new();
    let issuer = h.state.config.issuer_str().to_owned();
    let done = sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", ""),
        &f.email,
        PASSWORD,
    )
    .await;
    let t = b
        .post_form_with(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &done.param("code").unwrap()),
                ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ],
            Some((&f.web.0, &f.web.1)),
        )
        .await
        .json();
    let sso = b
        .get(
            &app,
            &authorize_uri(&f.other.0, "http://127.0.0.1:4000/callback", ""),
        )
        .await;
    assert!(sso.param("code").is_some());
    let jwks = b.get(&app, "/.well-known/jwks.json").await.json();
    let id = verify_id_token(&jwks, t["id_token"].as_str().unwrap(), &f.web.0, &issuer);

    // Discovery says so now.
    let disc = b
        .get(&app, "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(disc["backchannel_logout_supported"], true);
    assert_eq!(disc["backchannel_logout_session_supported"], true);

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
    // Both apps have their logout before the browser gets its answer (no worker is running).
    let got = rx.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for (path, token) in &got {
        let aud = if path == "/web" { &f.web.0 } else { &f.other.0 };
        let c = verify_logout_token(&jwks, token, aud, &issuer);
        assert_eq!(c["sid"], id["sid"], "the sid the app got in its ID token");
        assert_eq!(c["sub"], f.user_id.as_str());
    }
    let logs = h
        .state
        .store
        .list_logs(&latch_core::model::LogQuery {
            event_type: Some("oidc_backchannel_logout_succeeded".into()),
            user_id: Some(latch_core::UserId::new(&f.user_id)),
            per_page: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 2);
    let slo = h
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
    assert_eq!(slo[0].details["TotalOidcLogoutRequests"], 2);
}
on_all_backends!(rp_logout_reaches_every_app, rp_logout_reaches_every_app);

async fn retries_while_down_and_not_after_a_rejection(h: Harness) {
    let workers = latch_server::app::spawn_workers(&h.state);
    let down = Receiver::start().await;
    down.statuses.lock().unwrap().extend([503, 502]);
    let rejecting = Receiver::start().await;
    rejecting.statuses.lock().unwrap().extend([400, 400, 400]);
    let app = app!(h);
    let f = fixture(&app).await;
    set_backchannel(&app, &f.web.0, &format!("{}/bc", down.url)).await;
    set_backchannel(&app, &f.other.0, &format!("{}/bc", rejecting.url)).await;
    let mut b = Browser::new();
    sign_in(
        &app,
        &mut b,
        &authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", ""),
        &f.email,
        PASSWORD,
    )
    .await;
    b.get(
        &app,
        &authorize_uri(&f.other.0, "http://127.0.0.1:4000/callback", ""),
    )
    .await;

    // An administrator clears the user's sessions and tokens.
    let sessions = format!("/api/v2/users/{}/sessions?revoke_tokens=true", f.user_id);
    let (status, _) = call(&app, "DELETE", &sessions, None, Some(TOKEN)).await;
    assert_eq!(status, 204);

    // The app that was down gets its logout once it is back: three attempts, one jti.
    let got = down.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let jtis: Vec<_> = got
        .iter()
        .map(|(_, t)| {
            jsonwebtoken::dangerous::insecure_decode::<Value>(t)
                .unwrap()
                .claims["jti"]
                .clone()
        })
        .collect();
    assert!(
        jtis.windows(2).all(|w| w[0] == w[1]),
        "the same jti on every retry: {jtis:?}"
    );
    // The app that said 400 is not asked again: once both deliveries have reached their end
    // state (recorded in a batch just after the attempt), no worker claims them any more.
    let all = eventually("both deliveries finished", async || {
        let all = h
            .state
            .store
            .list_deliveries(&Default::default(), 1000)
            .await
            .unwrap();
        let finished = all
            .iter()
            .filter(|d| d.state != latch_core::model::DeliveryState::Pending)
            .count();
        (finished == 2).then_some(all)
    })
    .await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(rejecting.received().len(), 1);
    let of = |c: &str| {
        all.iter()
            .find(|d| d.client_id.as_str() == c)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of(&f.web.0).state,
        latch_core::model::DeliveryState::Delivered
    );
    assert_eq!(of(&f.web.0).attempts, 3);
    assert_eq!(
        of(&f.other.0).state,
        latch_core::model::DeliveryState::Failed
    );
    assert_eq!(of(&f.other.0).attempts, 1);
    // And the user is signed out everywhere.
    let p = b
        .get(
            &app,
            &format!(
                "{}&prompt=none",
                authorize_uri(&f.web.0, "http://127.0.0.1:3000/callback", "")
            ),
        )
        .await;
    assert_eq!(p.param("error").as_deref(), Some("login_required"));
    for w in workers {
        w.abort();
    }
}
on_all_backends!(
    retries_while_down_and_not_after_a_rejection,
    retries_while_down_and_not_after_a_rejection
);

/// A delivery recorded on an instance is reserved for that instance's workers. If the instance
/// dies before sending it, the reservation runs out and another instance's workers send it;
/// until then they leave it alone (no double sending while its owner may still be at work).
async fn a_dead_instances_reservation_runs_out(h: Harness) {
    use latch_core::model::{Delivery, DeliveryState, LogoutInitiator, LogoutNotice};
    let rx = Receiver::start().await;
    let mut client = latch_testkit::fixtures::client();
    client.oidc_logout.backchannel_logout_urls =
        vec![url::Url::parse(&format!("{}/bc", rx.url)).unwrap()];
    h.state.store.insert_client(&client).await.unwrap();
    let now = h.state.clock.now();
    // Recorded by "another instance", reserved for it for two more seconds; it never sends.
    let d = Delivery {
        id: latch_core::DeliveryId::new(uuid::Uuid::now_v7().to_string()),
        kind: latch_core::model::DeliveryKind::BackchannelLogout,
        client_id: client.client_id.clone(),
        target: client.oidc_logout.backchannel_logout_urls[0].clone(),
        notice: LogoutNotice {
            sub: Some(latch_core::UserId::new("auth0|dead-instance")),
            sid: None,
            initiator: LogoutInitiator::IdpLogout,
            email: None,
        },
        jti: latch_core::Jti::new(uuid::Uuid::new_v4().to_string()),
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now,
        locked_until: Some(now + time::Duration::seconds(2)),
        last_error: None,
        finished_at: None,
    };
    h.state
        .store
        .insert_deliveries(std::slice::from_ref(&d))
        .await
        .unwrap();
    let workers = latch_server::app::spawn_workers(&h.state);
    let start = Instant::now();
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let waited = start.elapsed();
    for w in workers {
        w.abort();
    }
    assert_eq!(got.len(), 1, "sent once the reservation ran out");
    assert!(
        waited >= Duration::from_millis(1500),
        "not before the reservation ran out ({waited:?})"
    );
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&got[0].1)
        .unwrap()
        .claims;
    assert_eq!(claims["jti"], d.jti.as_str());
    assert_eq!(claims["sub"], "auth0|dead-instance");
}
on_all_backends!(
    a_dead_instances_reservation_runs_out,
    a_dead_instances_reservation_runs_out
);
