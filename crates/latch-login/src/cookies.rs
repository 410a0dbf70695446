//! The session cookie and the login-binding cookie.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use latch_core::session::{LoginTransaction, SessionStore};
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
