//! Sign-in throttling (progressive delays, failures only) and the client's address behind
//! trusted proxies, in-process on both backend pairs, on a clock the tests move.

use std::sync::Arc;

use actix_web::test;
use latch_core::clock::ManualClock;
use latch_server::AppState;
use latch_server::config::Config;
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::oidc::{PASSWORD, fixture};
use crate::support::{Backends, TOKEN, TestEnv, env_for};

const CB: &str = "http://127.0.0.1:3000/callback";
const ADMIN_PASSWORD: &str = "Admin-Passw0rd-for-tests";
/// The load balancer in front of Latch in these tests.
const LB: &str = "10.0.0.5:41000";

/// A Latch on `backends` with `extra` settings, its clock under the test's control.
async fn start(
    test: &str,
    backends: Backends,
    extra: &[(&str, &str)],
) -> Option<(AppState, ManualClock, TestEnv)> {
    let name = test.to_owned();
    let (mut env, dir, schema) = tokio::task::spawn_blocking(move || env_for(&name, backends))
        .await
        .unwrap()?;
    env.push(("LATCH_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    let config = Config::from_sources(None, &env).unwrap();
    let mut state = latch_server::bootstrap::start(config).await.unwrap().state;
    let clock = ManualClock::new(latch_testkit::fixtures::now());
    state.clock = Arc::new(clock.clone());
    Some((state, clock, (env, dir, schema)))
}

/// Declares the test on both backend pairs.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn embedded() {
                super::$name(
                    crate::support::Backends::Embedded,
                    concat!(stringify!($name), "::embedded"),
                )
                .await;
            }
            #[actix_web::test]
            async fn postgres_redis() {
                super::$name(
                    crate::support::Backends::Production,
                    concat!(stringify!($name), "::postgres_redis"),
                )
                .await;
            }
        }
    };
}

fn authorize(client: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid&state=s&nonce=n&prompt=login",
        url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>()
    )
}

/// One sign-in attempt on a fresh form.
async fn attempt<S, B>(app: &S, b: &mut Browser, client: &str, email: &str, password: &str) -> Page
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let form = b.get(app, &authorize(client)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let tx = form.field("tx").expect("the sign-in form");
    b.post_form(
        app,
        "/login",
        &[("tx", &tx), ("email", email), ("password", password)],
    )
    .await
}

fn signed_in(p: &Page) -> bool {
    p.status == 302 && p.param("code").is_some()
}

/// `Retry-After` in seconds, checking the page says the same.
fn retry_after(p: &Page) -> i64 {
    assert_eq!(p.status, 429, "{}", p.body);
    let secs: i64 = p
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1);
    assert!(
        p.body.contains(&format!(
            "Too many failed attempts; try again in {secs} second"
        )),
        "{}",
        p.body
    );
    secs
}

async fn logs<S, B>(app: &S, query: &str) -> Vec<Value>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let req = test::TestRequest::get()
        .uri(&format!("/api/v2/logs?per_page=100&{query}"))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .to_request();
    let res = test::call_service(app, req).await;
    assert!(res.status().is_success());
    let v: Value = test::read_body_json(res).await;
    match v {
        Value::Array(a) => a,
        v => v["logs"].as_array().cloned().unwrap_or_default(),
    }
}

/// Regression: ten successful admin sign-ins made the eleventh a 429. Successes never count.
async fn successes_are_never_throttled(backends: Backends, test: &str) {
    let Some((state, _clock, _env)) = start(test, backends, &[]).await else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    for i in 0..12 {
        let mut b = Browser::new();
        let to = b.get(&app, "/admin/login").await;
        let authorize = to.location.clone().expect("to /authorize");
        let form = b.get(&app, &authorize).await;
        let tx = form.field("tx").expect("the sign-in form");
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
        assert_eq!(p.status, 302, "sign-in {i}: {}", p.body);
        let callback = url::Url::parse(p.location.as_deref().unwrap()).unwrap();
        assert_eq!(callback.path(), "/admin/callback");
        let done = b
            .get(
                &app,
                &format!("{}?{}", callback.path(), callback.query().unwrap()),
            )
            .await;
        assert_eq!(done.status, 303, "sign-in {i}: {}", done.body);
        assert!(done.location.as_deref().unwrap().starts_with("/admin"));
    }
    assert!(logs(&app, "type=f").await.is_empty(), "no failure logged");
}
on_both!(successes_are_never_throttled);

/// Failures from one address delay that address; an attempt during the delay is refused with
/// 429 and `Retry-After`, runs no check and counts for nothing; then the right password works.
async fn failures_bring_growing_delays(backends: Backends, test: &str) {
    let Some((state, clock, _env)) = start(test, backends, &[]).await else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    let f = fixture(&app).await;
    let mut b = Browser::at("198.51.100.20:50000");
    for i in 1..=6 {
        let p = attempt(&app, &mut b, &f.web.0, &f.email, "Wrong-passw0rd").await;
        assert_eq!(p.status, 200, "failure {i} is checked");
        assert!(p.body.contains("Wrong email or password."));
    }
    // The sixth failure is the first beyond the five free ones: one second.
    for _ in 0..3 {
        let p = attempt(&app, &mut b, &f.web.0, &f.email, PASSWORD).await;
        assert_eq!(retry_after(&p), 1);
    }
    // The refused attempts counted for nothing: one second later the password is checked.
    clock.advance(time::Duration::seconds(1));
    let p = attempt(&app, &mut b, &f.web.0, &f.email, "Wrong-passw0rd").await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = attempt(&app, &mut b, &f.web.0, &f.email, PASSWORD).await;
    assert_eq!(retry_after(&p), 2, "the seventh failure doubled the delay");
    clock.advance(time::Duration::seconds(2));
    let p = attempt(&app, &mut b, &f.web.0, &f.email, PASSWORD).await;
    assert!(signed_in(&p), "{} {}", p.status, p.body);
    // The success cleared this address's count on the account.
    for _ in 0..5 {
        let p = attempt(&app, &mut b, &f.web.0, &f.email, "Wrong-passw0rd").await;
        assert_eq!(p.status, 200);
    }

    // A refusal is logged as Auth0's `limit_wc`, once per delay, not as a wrong password.
    assert_eq!(logs(&app, "type=f").await.len(), 12);
    let limited = logs(&app, "type=limit_wc").await;
    assert_eq!(limited.len(), 2, "{limited:?}");
    assert_eq!(limited[0]["details"]["limit"], "account_from_ip");
    assert_eq!(limited[0]["ip"], "198.51.100.20");
}
on_both!(failures_bring_growing_delays);

/// Failures on an account from other addresses never keep its owner out: not at all from an
/// address that has not failed on the account, and for at most the account-wide cap from one
/// that has.
async fn failures_elsewhere_do_not_lock_the_owner_out(backends: Backends, test: &str) {
    let Some((state, clock, _env)) = start(test, backends, &[]).await else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    let f = fixture(&app).await;
    // Nine addresses, three guesses each: more than the account's twenty free failures.
    for host in 1..=9 {
        let mut attacker = Browser::at(&format!("203.0.113.{host}:40000"));
        for _ in 0..3 {
            let p = attempt(&app, &mut attacker, &f.web.0, &f.email, "Guess-123").await;
            assert_eq!(p.status, 200, "{}", p.body);
        }
    }
    let mut owner = Browser::at("198.51.100.7:50000");
    let p = attempt(&app, &mut owner, &f.web.0, &f.email, PASSWORD).await;
    assert!(
        signed_in(&p),
        "the owner is not locked out: {} {}",
        p.status,
        p.body
    );

    // From an address that failed on the account three times, the account-wide delay applies,
    // and it is short.
    let mut typo = Browser::at("198.51.100.8:50000");
    for _ in 0..3 {
        let p = attempt(&app, &mut typo, &f.web.0, &f.email, "Typo-passw0rd").await;
        assert_eq!(p.status, 200);
    }
    let p = attempt(&app, &mut typo, &f.web.0, &f.email, PASSWORD).await;
    let wait = retry_after(&p);
    assert!(
        wait <= latch_federation::database::ACCOUNT.cap.whole_seconds(),
        "{wait}"
    );
    clock.advance(time::Duration::seconds(wait));
    let p = attempt(&app, &mut typo, &f.web.0, &f.email, PASSWORD).await;
    assert!(signed_in(&p), "{} {}", p.status, p.body);
    let limited = logs(&app, "type=limit_wc").await;
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["details"]["limit"], "account");
}
on_both!(failures_elsewhere_do_not_lock_the_owner_out);

/// Behind the load balancer: an address spraying random emails is throttled by its own
/// address (Auth0's `limit_mu`), and nobody else is.
async fn spraying_from_one_address_touches_no_one_else(backends: Backends, test: &str) {
    let Some((state, _clock, _env)) =
        start(test, backends, &[("LATCH_TRUSTED_PROXIES", "10.0.0.0/8")]).await
    else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    let f = fixture(&app).await;
    let mut sprayer = Browser::at(LB);
    sprayer
        .extra_headers
        .push(("X-Forwarded-For".into(), "203.0.113.66".into()));
    let free = latch_federation::database::IP.free;
    for i in 0..=free {
        let email = format!("nobody-{i}@example.com");
        let p = attempt(&app, &mut sprayer, &f.web.0, &email, "Guess-123").await;
        assert_eq!(p.status, 200, "attempt {i}: {}", p.body);
    }
    let p = attempt(
        &app,
        &mut sprayer,
        &f.web.0,
        "nobody-x@example.com",
        "Guess-123",
    )
    .await;
    assert_eq!(retry_after(&p), 1);
    assert_eq!(logs(&app, "type=limit_mu").await[0]["ip"], "203.0.113.66");

    // Another client of the same load balancer signs in at once.
    let mut user = Browser::at(LB);
    user.extra_headers
        .push(("X-Forwarded-For".into(), "198.51.100.30".into()));
    let p = attempt(&app, &mut user, &f.web.0, &f.email, PASSWORD).await;
    assert!(signed_in(&p), "{} {}", p.status, p.body);
}
on_both!(spraying_from_one_address_touches_no_one_else);

/// `X-Forwarded-For` names the client only when a trusted proxy sent it: in log events and in
/// the session's recorded address.
async fn forwarded_for_only_from_trusted_proxies(backends: Backends, test: &str) {
    let Some((state, _clock, _env)) =
        start(test, backends, &[("LATCH_TRUSTED_PROXIES", "10.0.0.0/8")]).await
    else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    let f = fixture(&app).await;
    let mut proxied = Browser::at(LB);
    proxied
        .extra_headers
        .push(("X-Forwarded-For".into(), "6.6.6.6, 198.51.100.23".into()));
    let p = attempt(&app, &mut proxied, &f.web.0, &f.email, PASSWORD).await;
    assert!(signed_in(&p));
    let mut direct = Browser::at("203.0.113.9:40000");
    direct
        .extra_headers
        .push(("X-Forwarded-For".into(), "198.51.100.99".into()));
    let p = attempt(&app, &mut direct, &f.web.0, &f.email, PASSWORD).await;
    assert!(signed_in(&p));
    let ips: Vec<Value> = logs(&app, "type=s")
        .await
        .iter()
        .map(|e| e["ip"].clone())
        .collect();
    assert_eq!(ips, vec![json!("203.0.113.9"), json!("198.51.100.23")]);

    let req = test::TestRequest::get()
        .uri(&format!("/api/v2/users/{}/sessions", f.user_id))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .to_request();
    let body: Value = test::read_body_json(test::call_service(&app, req).await).await;
    let mut seen: Vec<String> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device"]["last_ip"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["198.51.100.23", "203.0.113.9"]);
}
on_both!(forwarded_for_only_from_trusted_proxies);

/// The audit trail (`sapi`) records the caller's address, not one a forged header names.
async fn audit_ignores_forged_forwarded_for(backends: Backends, test: &str) {
    let Some((state, _clock, _env)) =
        start(test, backends, &[("LATCH_TRUSTED_PROXIES", "10.0.0.0/8")]).await
    else {
        return;
    };
    let app = test::init_service(latch_server::app::app(state)).await;
    let create = |peer: &str, xff: &str| {
        test::TestRequest::post()
            .uri("/api/v2/clients")
            .peer_addr(peer.parse().unwrap())
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .insert_header(("X-Forwarded-For", xff.to_owned()))
            .set_json(json!({"name": "Audited", "callbacks": [CB]}))
            .to_request()
    };
    let res = test::call_service(&app, create("203.0.113.10:5000", "6.6.6.6")).await;
    assert_eq!(res.status(), 201);
    let res = test::call_service(&app, create(LB, "198.51.100.40")).await;
    assert_eq!(res.status(), 201);
    let ips: Vec<Value> = logs(&app, "type=sapi")
        .await
        .iter()
        .map(|e| e["ip"].clone())
        .collect();
    assert_eq!(ips, vec![json!("198.51.100.40"), json!("203.0.113.10")]);
}
on_both!(audit_ignores_forged_forwarded_for);
