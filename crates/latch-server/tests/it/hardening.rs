//! Regression tests for the smaller defects an independent review demonstrated: an overflowing
//! `max_age`, a planted browser-binding cookie, the sign-in page's `form-action`, HSTS.

use actix_web::test;

use crate::browser::Browser;
use crate::oidc::{CB, PASSWORD, authorize_uri, fixture, sign_in_web};
use crate::on_all_backends;
use crate::support::{Backends, Harness, harness_with};

/// `max_age=9223372036854775807` with a live session used to overflow `auth_time + max_age`
/// and panic in the handler (the connection dropped). Now it is just a very large age.
async fn max_age_at_the_limit(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    let (mut b, done) = sign_in_web(&app, &f).await;
    assert!(done.param("code").is_some());
    for extreme in ["9223372036854775807", "9223372036854775806"] {
        let p = b
            .get(
                &app,
                &authorize_uri(&f.web.0, CB, &format!("&max_age={extreme}")),
            )
            .await;
        assert_eq!(p.status, 302, "{}", p.body);
        assert!(p.param("code").is_some(), "the live session serves it");
    }
    // Out of range or negative: a clear error back to the app, not a crash.
    let p = b
        .get(
            &app,
            &authorize_uri(&f.web.0, CB, "&max_age=9223372036854775808"),
        )
        .await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));
}
on_all_backends!(max_age_at_the_limit, max_age_at_the_limit);

/// A `latch_browser` cookie planted by a sibling subdomain used to become the victim's binding,
/// so whoever planted it could post the victim's transaction. Each transaction now mints its own.
async fn planted_binding_cookie(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    // Well formed, as a value the planter got from Latch for itself would be.
    let planted = "PLANTEDbyAsiblingSUBDOMAIN_0123a";
    assert_eq!(planted.len(), 32);
    let mut victim = Browser::new();
    victim
        .cookies
        .insert("latch_browser".into(), planted.into());
    let form = victim.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    assert_eq!(form.status, 200);
    let tx = form.field("tx").unwrap();
    let minted = victim.cookies.get("latch_browser").cloned().unwrap();
    assert_ne!(minted, planted, "a fresh binding, not the request's");
    assert!(minted.len() > planted.len(), "{minted}");
    // The planter, holding only the planted value, cannot use the victim's transaction.
    let mut planter = Browser::new();
    planter
        .cookies
        .insert("latch_browser".into(), planted.into());
    let p = planter
        .post_form(
            &app,
            "/login",
            &[("tx", &tx), ("email", &f.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.location.is_none());

    // The sign-in page's CSP restricts where its form may go: Latch, and the redirect that
    // follows (browsers apply form-action to it).
    let form = Browser::new()
        .get(&app, &authorize_uri(&f.web.0, CB, ""))
        .await;
    let csp = form
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:3000;"),
        "{csp}"
    );
    // Plain http issuer: no HSTS (it would be ignored, and would break a local setup).
    assert!(form.headers.get("strict-transport-security").is_none());
}
on_all_backends!(planted_binding_cookie, planted_binding_cookie);

/// A sign-in open in two tabs: each form completes, though each opened its own transaction.
async fn two_tabs(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    let mut b = Browser::new();
    let first = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let second = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    let (tx1, tx2) = (first.field("tx").unwrap(), second.field("tx").unwrap());
    let p = b
        .post_form(
            &app,
            "/login",
            &[("tx", &tx1), ("email", &f.email), ("password", PASSWORD)],
        )
        .await;
    assert!(p.param("code").is_some(), "{} {}", p.status, p.body);
    let mut b2 = Browser::new();
    b2.cookies = b.cookies.clone();
    b2.cookies.remove("latch_session");
    let p = b2
        .post_form(
            &app,
            "/login",
            &[("tx", &tx2), ("email", &f.email), ("password", PASSWORD)],
        )
        .await;
    assert!(p.param("code").is_some(), "{} {}", p.status, p.body);
}
on_all_backends!(two_tabs, two_tabs);

/// An https issuer gets `Strict-Transport-Security` on every response, and the binding cookie
/// takes the `__Host-` prefix, which a sibling subdomain cannot set.
#[actix_web::test]
async fn https_issuer_sends_hsts() {
    let Some(h) = harness_with(
        "https_issuer_sends_hsts",
        Backends::Embedded,
        &[("LATCH_ISSUER", "https://latch.example.com")],
    )
    .await
    else {
        return;
    };
    let app = crate::app!(h);
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/.well-known/openid-configuration")
            .to_request(),
    )
    .await;
    assert_eq!(
        res.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap()),
        Some("max-age=31536000")
    );
    let f = fixture(&app).await;
    let mut b = Browser::new();
    let form = b.get(&app, &authorize_uri(&f.web.0, CB, "")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        b.cookies.contains_key("__Host-latch_browser"),
        "{:?}",
        b.cookies
    );
    assert!(!b.cookies.contains_key("latch_browser"));
}
