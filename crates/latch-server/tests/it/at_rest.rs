//! What Latch keeps at rest: a session's secret (the `latch_session` cookie) nowhere, only its
//! digest; and a data dir that no other local user can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use actix_web::test;
use latch_core::SessionSecret;
use latch_testkit::at_rest::contains;

use crate::browser::Browser;
use crate::oidc::{Fixture, PASSWORD, fixture, sign_in};
use crate::on_all_backends;
use crate::support::{Backends, Harness, env_for};

const CB: &str = "http://127.0.0.1:3000/callback";

fn authorize_uri(client: &str) -> String {
    let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
    format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={cb}&scope=openid%20email&state=st&nonce=no"
    )
}

/// Signs in and redeems the code (a refresh token bound to the session); returns the session
/// cookie's value.
async fn signed_in<S, B>(app: &S, b: &mut Browser, f: &Fixture) -> String
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let done = sign_in(app, b, &authorize_uri(&f.web.0), &f.email, PASSWORD).await;
    assert_eq!(done.status, 302, "{}", done.body);
    let code = done.param("code").unwrap();
    let t = b
        .post_form_with(
            app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
            ],
            Some((&f.web.0, &f.web.1)),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert!(t.json()["refresh_token"].is_string());
    b.cookies["latch_session"].clone()
}

/// Whoever reads the session store, the database or the data dir finds the session's digest,
/// never the secret that opens it; the cookie still signs the browser in, and out.
async fn session_secret_is_not_at_rest(h: Harness) {
    let app = crate::app!(h);
    let f = fixture(&app).await;
    let mut b = Browser::new();
    let secret = signed_in(&app, &mut b, &f).await;
    let digest = SessionSecret::new(secret.clone()).id();

    let mut stored = Vec::new();
    for place in h.at_rest() {
        stored.extend(place.read().await);
    }
    // The session and the refresh token bound to it are there, under the digest...
    assert!(
        contains(&stored, digest.as_str()),
        "the scan does not see the session"
    );
    // ... and the secret is nowhere.
    assert!(
        !contains(&stored, &secret),
        "the session secret is stored at rest"
    );

    // The cookie still is the session: SSO without a form, then logout ends it.
    let sso = b.get(&app, &authorize_uri(&f.web.0)).await;
    assert_eq!(sso.status, 302, "{}", sso.body);
    assert!(sso.param("code").is_some());
    let confirm = b.get(&app, "/oidc/logout").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let tx = confirm.field("confirm").expect("a confirmation form");
    b.post_form(&app, "/oidc/logout", &[("confirm", &tx)]).await;
    assert!(
        h.state
            .sessions
            .find_session(&digest, h.state.clock.now())
            .await
            .unwrap()
            .is_none(),
        "logout ended the cookie's session"
    );
}
on_all_backends!(session_secret_is_not_at_rest, session_secret_is_not_at_rest);

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The data dir is 0700 and every file in it 0600; returns the files' names.
fn assert_private(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "the data dir is {:o}", mode(dir));
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert_eq!(mode(&e.path()), 0o600, "{name} is {:o}", mode(&e.path()));
        names.push(name);
    }
    names.sort();
    names
}

/// A Latch on the embedded default with its data dir at `data_dir`.
async fn start_in(test: &str, data_dir: &Path) -> (latch_server::AppState, impl Drop) {
    let (mut env, guard, _) = env_for(test, Backends::Embedded).unwrap();
    for (k, v) in &mut env {
        if k == "LATCH_DATA_DIR" {
            *v = data_dir.to_string_lossy().into_owned();
        }
    }
    let config = latch_server::config::Config::from_sources(None, &env).unwrap();
    let started = latch_server::bootstrap::start(config).await.unwrap();
    (started.state, guard)
}

/// A data dir Latch creates is 0700, and everything in it 0600: after start-up, and after a
/// sign-in has SQLite write its WAL and shared-memory files.
#[actix_web::test]
async fn a_new_data_dir_is_private() {
    let tmp = latch_testkit::env::TempDir::new();
    let dir = tmp.path().join("data");
    let (state, _guard) = start_in("a_new_data_dir_is_private", &dir).await;
    let names = assert_private(&dir);
    for f in ["latch.db", "sessions.db"] {
        assert!(names.iter().any(|n| n == f), "{f} missing: {names:?}");
    }

    let app = test::init_service(latch_server::app::app(state)).await;
    let f = fixture(&app).await;
    signed_in(&app, &mut Browser::new(), &f).await;
    let names = assert_private(&dir);
    for f in [
        "latch.db-wal",
        "latch.db-shm",
        "sessions.db-wal",
        "sessions.db-shm",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} missing: {names:?}");
    }
}

/// A data dir an earlier release left open to other users (0755, files 0644) is made private
/// on start-up, whatever is in it.
#[actix_web::test]
async fn an_open_data_dir_is_tightened() {
    let tmp = latch_testkit::env::TempDir::new();
    let dir = tmp.path().join("data");
    {
        let (state, _guard) = start_in("an_open_data_dir_is_tightened", &dir).await;
        let app = test::init_service(latch_server::app::app(state)).await;
        let f = fixture(&app).await;
        signed_in(&app, &mut Browser::new(), &f).await;
    }
    std::fs::write(dir.join("notes.txt"), "kept by the operator").unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (_state, _guard) = start_in("an_open_data_dir_is_tightened", &dir).await;
    let names = assert_private(&dir);
    for f in ["latch.db", "latch.db-wal", "sessions.db", "notes.txt"] {
        assert!(names.iter().any(|n| n == f), "{f} missing: {names:?}");
    }
}
