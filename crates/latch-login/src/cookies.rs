//! The session cookie and the login-binding cookie.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse};
use latch_core::session::{
    LoginTransaction, SessionStore, UPSTREAM_COOKIE_MAX, UpstreamSession, upstream_cookie_digest,
    upstream_cookie_name,
};
use latch_core::{LoginTxId, SessionError, SessionSecret};

/// The browser session: its [`SessionSecret`], whose digest is the stored `SessionId`.
pub const SESSION: &str = latch_core::session::SESSION_COOKIE;
/// Binds a login or logout form to the browser that opened it.
pub const BROWSER: &str = "latch_browser";
/// The binding cookie's name when cookies are `Secure`: the `__Host-` prefix makes browsers
/// refuse it from a sibling subdomain (no `Domain`, path `/`, `Secure` only).
pub const BROWSER_HOST: &str = "__Host-latch_browser";

/// The binding cookie's name for this deployment.
pub fn browser_name(secure: bool) -> &'static str {
    if secure { BROWSER_HOST } else { BROWSER }
}

/// How many recent transactions' bindings a browser keeps (sign-in open in several tabs).
const BINDINGS_KEPT: usize = 4;
/// Length of one binding (`random_token(24)`: 32 base64url characters).
const BINDING_LEN: usize = 32;

/// The well-formed bindings the browser sent, newest first.
fn bindings(req: &HttpRequest, secure: bool) -> Vec<String> {
    req.cookie(browser_name(secure))
        .map(|c| {
            c.value()
                .split('.')
                .filter(|t| {
                    t.len() == BINDING_LEN
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                .take(BINDINGS_KEPT)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A binding for one new transaction, and the binding cookie that carries it: the binding is
/// always minted here, never taken from the request, so a value planted in the browser by
/// someone else never binds a transaction Latch opens for that browser. The cookie keeps the
/// browser's few most recent bindings too, so a sign-in open in another tab still completes.
pub fn new_binding(req: &HttpRequest, secure: bool) -> (String, Cookie<'static>) {
    let fresh = latch_jose::random_token(24);
    let mut kept = vec![fresh.clone()];
    kept.extend(bindings(req, secure).into_iter().take(BINDINGS_KEPT - 1));
    (
        fresh,
        make(browser_name(secure), kept.join("."), secure, None),
    )
}

pub fn get(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// This browser's session secret, if it sent one; look the session up by its `id()`.
pub fn session(req: &HttpRequest) -> Option<SessionSecret> {
    get(req, SESSION).map(SessionSecret::new)
}

pub fn make(
    name: &'static str,
    value: String,
    secure: bool,
    max_age: Option<time::Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish();
    if let Some(a) = max_age {
        c.set_max_age(CookieDuration::seconds(a.whole_seconds()));
    }
    c
}

pub fn clear(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut c = make(name, String::new(), secure, None);
    c.make_removal();
    c
}

/// Removes the session cookie from the browser, and the upstream ID token cookie with it.
pub fn clear_session(res: &mut HttpResponse, secure: bool) {
    for name in [SESSION, upstream_cookie_name(secure)] {
        let _ = res.add_cookie(&clear(name, secure));
    }
}

/// What a new session keeps of its upstream session, and what the browser gets beside the
/// session cookie: a sealed upstream ID token that fits in a cookie goes to the browser (the
/// `latch_upstream` cookie, `HttpOnly`, `SameSite=Lax`, as long-lived as the session cookie), and
/// the session keeps its digest; a longer one stays in the session. Without one, a cookie the
/// browser kept from an earlier session is removed.
pub fn upstream_to_browser(
    req: &HttpRequest,
    mut upstream: UpstreamSession,
    secure: bool,
) -> (UpstreamSession, Option<Cookie<'static>>) {
    let name = upstream_cookie_name(secure);
    match upstream.sealed_id_token.take() {
        Some(sealed) if sealed.len() <= UPSTREAM_COOKIE_MAX => {
            upstream.id_token_cookie = Some(upstream_cookie_digest(&sealed));
            (upstream, Some(make(name, sealed, secure, None)))
        }
        kept => {
            upstream.sealed_id_token = kept;
            let stale = req.cookie(name).is_some().then(|| clear(name, secure));
            (upstream, stale)
        }
    }
}

/// `upstream` with its sealed ID token, for a federated logout: the session's own, or the one
/// the browser carries when its digest is the one the session kept (a cookie left by another
/// session, or planted, is not taken).
pub fn upstream_from_browser(
    req: &HttpRequest,
    upstream: &UpstreamSession,
    secure: bool,
) -> UpstreamSession {
    let mut out = upstream.clone();
    if out.sealed_id_token.is_none()
        && let Some(digest) = &upstream.id_token_cookie
        && let Some(c) = req.cookie(upstream_cookie_name(secure))
        && c.value().len() <= UPSTREAM_COOKIE_MAX
        && latch_jose::constant_eq(&upstream_cookie_digest(c.value()), digest)
    {
        out.sealed_id_token = Some(c.value().to_owned());
    }
    out
}

/// Takes a one-time login (or logout) transaction, if it exists, is live, and was opened by this
/// browser (its `browser` member equals the `latch_browser` cookie). Taken means gone: a forged
/// or replayed form finds nothing the second time either.
pub async fn take_bound_tx(
    sessions: &dyn SessionStore,
    req: &HttpRequest,
    id: &str,
    now: time::OffsetDateTime,
    secure: bool,
) -> Result<Option<LoginTransaction>, SessionError> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let Some(tx) = sessions.take_login_tx(&LoginTxId::new(id), now).await? else {
        return Ok(None);
    };
    let held = bindings(req, secure);
    let bound = tx.payload["browser"]
        .as_str()
        .is_some_and(|b| held.iter().any(|c| latch_jose::constant_eq(b, c)));
    Ok(bound.then_some(tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn sealed(n: usize) -> String {
        format!("lat1.{}", "A".repeat(n))
    }

    #[test]
    fn a_sealed_token_that_fits_rides_in_the_browser() {
        let req = TestRequest::default().to_http_request();
        let up = UpstreamSession {
            sid: Some("up-sid".into()),
            sealed_id_token: Some(sealed(1_400)),
            ..Default::default()
        };
        let (kept, cookie) = upstream_to_browser(&req, up, true);
        let cookie = cookie.expect("a cookie");
        assert_eq!(cookie.name(), "__Host-latch_upstream");
        assert_eq!(cookie.value(), sealed(1_400));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(kept.sealed_id_token, None);
        assert_eq!(kept.sid.as_deref(), Some("up-sid"));
        assert_eq!(
            kept.id_token_cookie,
            Some(upstream_cookie_digest(&sealed(1_400)))
        );

        // Taken back only with the digest the session kept.
        let back = TestRequest::default()
            .cookie(Cookie::new("__Host-latch_upstream", sealed(1_400)))
            .to_http_request();
        let full = upstream_from_browser(&back, &kept, true);
        assert_eq!(full.sealed_id_token, Some(sealed(1_400)));
        let other = TestRequest::default()
            .cookie(Cookie::new("__Host-latch_upstream", sealed(1_401)))
            .to_http_request();
        assert_eq!(
            upstream_from_browser(&other, &kept, true).sealed_id_token,
            None
        );
        // Not under the plain name on https, nor without a digest in the session.
        let plain = TestRequest::default()
            .cookie(Cookie::new("latch_upstream", sealed(1_400)))
            .to_http_request();
        assert_eq!(
            upstream_from_browser(&plain, &kept, true).sealed_id_token,
            None
        );
        let no_digest = UpstreamSession {
            id_token_cookie: None,
            ..kept.clone()
        };
        assert_eq!(
            upstream_from_browser(&back, &no_digest, true).sealed_id_token,
            None
        );
    }

    #[test]
    fn a_token_too_long_for_a_cookie_stays_in_the_session() {
        let req = TestRequest::default()
            .cookie(Cookie::new("latch_upstream", sealed(10)))
            .to_http_request();
        let long = sealed(UPSTREAM_COOKIE_MAX);
        let up = UpstreamSession {
            sealed_id_token: Some(long.clone()),
            ..Default::default()
        };
        let (kept, cookie) = upstream_to_browser(&req, up, false);
        assert_eq!(kept.sealed_id_token, Some(long.clone()));
        assert_eq!(kept.id_token_cookie, None);
        // The earlier session's cookie goes.
        let cookie = cookie.expect("a removal");
        assert_eq!(cookie.name(), "latch_upstream");
        assert_eq!(cookie.value(), "");
        // The session's own token is used as it is.
        assert_eq!(
            upstream_from_browser(&req, &kept, false).sealed_id_token,
            Some(long)
        );
        // No token, no cookie in the browser: nothing set or removed.
        let bare = TestRequest::default().to_http_request();
        let (_, none) = upstream_to_browser(&bare, UpstreamSession::default(), false);
        assert!(none.is_none());
    }
}
