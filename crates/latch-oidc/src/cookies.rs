//! The session cookie and the login-binding cookie.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use latch_core::session::{LoginTransaction, SessionStore};
use latch_core::{LoginTxId, SessionError};

/// The browser session: the secret `SessionId`.
pub const SESSION: &str = latch_core::session::SESSION_COOKIE;
/// Binds a login or logout form to the browser that opened it.
pub const BROWSER: &str = "latch_browser";

pub fn get(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
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
) -> Result<Option<LoginTransaction>, SessionError> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let Some(tx) = sessions.take_login_tx(&LoginTxId::new(id), now).await? else {
        return Ok(None);
    };
    let browser = get(req, BROWSER);
    let bound = tx.payload["browser"].as_str().is_some_and(|b| {
        browser
            .as_deref()
            .is_some_and(|c| latch_jose::constant_eq(b, c))
    });
    Ok(bound.then_some(tx))
}
