//! The admin web UI at `/admin`: server-rendered askama pages over the same handlers as the
//! management API (same checks, same `sapi` events, the acting admin named in each).
//!
//! **Sign-in.** The UI is an OpenID Connect client of the Latch it manages (`latch-admin`, public,
//! PKCE): `/admin/login` sends the browser to `/authorize`, so an admin may use the database
//! connection or any enterprise connection enabled for the UI; `/admin/callback` redeems the code
//! (client, redirect URI, PKCE verifier, and the code's session is this browser's). After that
//! the Latch session cookie is the admin's session: a request is an admin's when that session is
//! live, the UI joined it, and its user holds the `admin` role and is not blocked. Everyone else
//! gets 403. Signing out ends the Latch session through the one logout use-case.
//!
//! **Security.** A CSRF token (derived from the secret session id) on every form; cookies
//! `HttpOnly`, `SameSite=Lax`; CSP `default-src 'none'` with this UI's own stylesheet and script
//! only; no framing; askama escapes every value (no `|safe`).

/// `?` for page handlers: the value, or the error page answered at once.
macro_rules! or_page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::ui::error_page(e.into()),
        }
    };
}

mod applications;
mod connections;
mod keys;
mod log_streams;
mod logs;
mod problems;
mod users;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::SessionSecret;
use latch_core::model::{ADMIN_CALLBACK_PATH, ADMIN_CLIENT_ID, User};
use latch_core::session::SESSION_COOKIE;
use latch_http::{ApiError, ManagementAuth};
use serde::Deserialize;

use crate::Deps;

/// The UI's pages: nothing but its own files, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// PKCE verifier, state and where to go after sign-in, for the length of one sign-in.
const LOGIN_COOKIE: &str = "latch_admin_login";

const CSS: &str = include_str!("../../static/admin.css");
const JS: &str = include_str!("../../static/admin.js");

/// Mounts `/admin`.
pub fn scope() -> actix_web::Scope {
    web::scope("/admin")
        .app_data(web::FormConfig::default().limit(256 * 1024))
        .route("", web::get().to(home))
        .route("/", web::get().to(home))
        .route("/static/admin.css", web::get().to(css))
        .route("/static/admin.js", web::get().to(js))
        .route("/login", web::get().to(login))
        .route("/callback", web::get().to(callback))
        .route("/logout", web::post().to(logout))
        .route("/signed-out", web::get().to(signed_out))
        .configure(connections::routes)
        .configure(applications::routes)
        .configure(users::routes)
        .configure(logs::routes)
        .configure(log_streams::routes)
        .configure(keys::routes)
}

/// What every page shows around its content.
pub(crate) struct Chrome {
    pub section: &'static str,
    pub who: String,
    pub csrf: String,
    pub notice: Option<String>,
    /// A link after the notice: (href, text).
    pub notice_link: Option<(String, String)>,
    pub error: Option<String>,
}

/// An admin, signed in.
pub(crate) struct Admin {
    pub user: User,
    pub session: latch_core::session::Session,
    pub csrf: String,
}

impl Admin {
    pub fn auth(&self) -> ManagementAuth {
        ManagementAuth::User {
            user_id: self.user.user_id.as_str().to_owned(),
        }
    }

    pub fn chrome(&self, section: &'static str) -> Chrome {
        Chrome {
            section,
            who: self
                .user
                .name
                .clone()
                .or_else(|| self.user.email.clone())
                .or_else(|| self.user.nickname.clone())
                .unwrap_or_else(|| self.user.user_id.as_str().to_owned()),
            csrf: self.csrf.clone(),
            notice: None,
            notice_link: None,
            error: None,
        }
    }

    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_ok(&self, posted: Option<&str>) -> bool {
        posted.is_some_and(|t| latch_jose::constant_eq(t, &self.csrf))
    }

    /// The answer to a state-changing form without this session's CSRF token (403, nothing
    /// done), or `None` when the token is there.
    pub fn csrf_refusal(&self, form: &Form) -> Option<HttpResponse> {
        if self.csrf_ok(form.get("csrf")) {
            return None;
        }
        Some(message(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form could not be verified (its security token is missing or stale). Go back, reload the page and try again.",
            Some(("/admin", "Back to the admin")),
        ))
    }
}

/// Handlers take an `Admin`: a request that is not an admin's is answered before they run (a
/// redirect to sign in, or 403).
impl actix_web::FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let Some(deps) = req.app_data::<web::Data<Deps>>().cloned() else {
                return Err(actix_web::error::ErrorInternalServerError(
                    "admin UI not configured",
                ));
            };
            admin(&deps, &req).await.map_err(|r| {
                actix_web::error::InternalError::from_response("not an admin", r).into()
            })
        })
    }
}

/// The session's CSRF token: derived from the secret in the cookie, which the request carries and
/// nothing at rest holds (the store knows only the secret's digest).
fn csrf_for(secret: &SessionSecret) -> String {
    latch_jose::token_digest(&format!("latch-admin-csrf:{}", secret.expose()))
        .as_str()
        .to_owned()
}

/// This browser's Latch session secret, if it sent one.
fn session_secret(req: &HttpRequest) -> Option<SessionSecret> {
    req.cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(SessionSecret::new)
}

/// The admin behind this request, or the answer to send instead: a redirect to sign in, or 403.
pub(crate) async fn admin(deps: &Deps, req: &HttpRequest) -> Result<Admin, HttpResponse> {
    let to_login = || {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        redirect(&format!("/admin/login?next={q}"))
    };
    let Some(secret) = session_secret(req) else {
        return Err(to_login());
    };
    let now = deps.clock.now();
    let session = match deps.sessions.find_session(&secret.id(), now).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(to_login()),
        Err(e) => return Err(error_page(ApiError::from(e))),
    };
    if !session
        .clients
        .iter()
        .any(|c| c.client_id.as_str() == ADMIN_CLIENT_ID)
    {
        return Err(to_login());
    }
    let user = match deps.store.find_user(&session.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(to_login()),
        Err(e) => return Err(error_page(ApiError::from(e))),
    };
    if !user.is_admin() {
        return Err(forbidden());
    }
    let csrf = csrf_for(&secret);
    Ok(Admin {
        user,
        session,
        csrf,
    })
}

/// A posted form, fields in order (checkbox groups repeat a name).
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed value, `None` when empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Non-empty lines (or comma-separated items when `commas`).
    pub fn list(&self, name: &str, commas: bool) -> Vec<String> {
        let v = self.get(name).unwrap_or_default();
        v.split(|c: char| c == '\n' || c == '\r' || (commas && (c == ',' || c == ' ')))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// One form field, rendered by `admin/fields.html`.
#[derive(Clone, Default)]
pub(crate) struct Field {
    pub name: String,
    pub label: String,
    /// `text`, `url`, `password`, `textarea`, `checkbox`, `checkboxes`, `select`, `readonly`.
    pub kind: &'static str,
    pub value: String,
    pub checked: bool,
    pub help: String,
    pub error: Option<String>,
    pub choices: Vec<Choice>,
    /// A read-only value computed from the name being typed: `{name}` stands for it (admin.js
    /// fills it in as the name changes; without script the placeholder stays).
    pub template: String,
    /// A field whose value, when filled in, is shown instead of the template.
    pub prefer: String,
    /// A `checkbox` that is a switch: the ids (space-separated) of what it shows while on
    /// (admin.js hides them while off; without script they stay shown).
    pub controls: String,
    /// A `textarea` that may also be loaded from a file (admin.js reads it into the textarea;
    /// without script the file input stays hidden and the text is pasted).
    pub upload: bool,
}

#[derive(Clone)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Field {
    pub fn new(kind: &'static str, name: &str, label: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            kind,
            value: value.into(),
            ..Self::default()
        }
    }

    pub fn help(mut self, h: &str) -> Self {
        self.help = h.into();
        self
    }

    pub fn checked(mut self, c: bool) -> Self {
        self.checked = c;
        self
    }

    pub fn choices(mut self, c: Vec<Choice>) -> Self {
        self.choices = c;
        self
    }

    /// A switch that shows the elements `ids` (space-separated) while on.
    pub fn controls(mut self, ids: &str) -> Self {
        self.controls = ids.into();
        self
    }

    /// A textarea that may be loaded from a file.
    pub fn upload(mut self) -> Self {
        self.upload = true;
        self
    }

    /// A read-only value computed from the name as typed (`{name}` in `template`), shown with
    /// `name` filled in when there is one.
    pub fn computed(mut self, template: String, name: Option<&str>) -> Self {
        self.value = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => template.replace(
                "{name}",
                &url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>(),
            ),
            None => template.clone(),
        };
        self.template = template;
        self
    }

    /// The ids of what describes the input (its error, then its help), for `aria-describedby`.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.error.is_some() {
            ids.push(format!("f-{}-error", self.name));
        }
        if !self.help.is_empty() {
            ids.push(format!("f-{}-help", self.name));
        }
        ids.join(" ")
    }
}

/// A group of fields with a heading.
pub(crate) struct Section {
    pub id: &'static str,
    pub title: String,
    pub description: String,
    pub fields: Vec<Field>,
}

/// A button that posts to `action` (delete, rotate, …), below a form.
pub(crate) struct Extra {
    pub action: String,
    pub label: &'static str,
    pub class: &'static str,
    /// Asked before posting (empty: no question).
    pub confirm: String,
}

#[derive(Template)]
#[template(path = "admin/form.html")]
pub(crate) struct FormPage {
    pub c: Chrome,
    pub title: String,
    pub lead: String,
    pub back: &'static str,
    pub action: String,
    pub submit: &'static str,
    pub sections: Vec<Section>,
    /// Every problem with what was posted, above the form (each also on its field).
    pub problems: Vec<problems::Problem>,
    pub shown_secret: Option<String>,
    pub extras: Vec<Extra>,
}

impl FormPage {
    /// Shows `errors` (the API's answer first, then the others the same validation found): each
    /// on its field, all in the summary.
    pub fn refused(&mut self, errors: Vec<ApiError>) {
        self.problems = problems::place(&mut self.sections, &errors);
    }
}

#[derive(Template)]
#[template(path = "admin/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link: Option<(&'a str, &'a str)>,
}

pub(crate) fn html(status: StatusCode, t: &impl Template) -> HttpResponse {
    match t.render() {
        Ok(body) => HttpResponse::build(status)
            .insert_header(("Content-Security-Policy", CSP))
            .insert_header(("Cache-Control", "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "admin template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    html(
        status,
        &MessagePage {
            title,
            message: text,
            link,
        },
    )
}

fn forbidden() -> HttpResponse {
    message(
        StatusCode::FORBIDDEN,
        "Not an administrator",
        "You are signed in, but your account does not have the admin role. Ask an administrator to grant it.",
        Some((latch_core::paths::OIDC_LOGOUT, "Sign out of Latch")),
    )
}

/// A store or session error, as a page (details in the server log only).
pub(crate) fn error_page(e: ApiError) -> HttpResponse {
    if e.status == StatusCode::NOT_FOUND {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here. It may have been deleted.",
            Some(("/admin", "Back to the admin")),
        );
    }
    tracing::error!(error = %e.message, "admin page failed");
    message(
        e.status,
        "Something went wrong",
        "Latch could not complete this page. Try again in a moment.",
        Some(("/admin", "Back to the admin")),
    )
}

pub(crate) fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to.to_owned()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// A time for people: `2026-12-05 21:40:28 UTC`.
pub(crate) fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

async fn home(deps: web::Data<Deps>, req: HttpRequest) -> HttpResponse {
    match admin(&deps, &req).await {
        Ok(_) => redirect("/admin/connections"),
        Err(r) => r,
    }
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CSS)
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(JS)
}

fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/admin")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish()
}

/// Only paths inside the admin UI are followed after sign-in, and only as printable ASCII (a
/// decoded CR or LF would not even make a valid `Location` header).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if (n == "/admin" || n.starts_with("/admin/") || n.starts_with("/admin?"))
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/admin/connections",
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// `GET /admin/login`: off to Latch's own `/authorize`, as the `latch-admin` client.
async fn login(deps: web::Data<Deps>, q: web::Query<LoginQuery>) -> HttpResponse {
    let verifier = latch_jose::random_token(32);
    let state = latch_jose::random_token(16);
    let next = safe_next(q.next.as_deref());
    let value = format!(
        "{state}.{verifier}.{}",
        URL_SAFE_NO_PAD.encode(next.as_bytes())
    );
    let callback = format!("{}{ADMIN_CALLBACK_PATH}", deps.issuer);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let to = format!(
        "{}?response_type=code&client_id={ADMIN_CLIENT_ID}&redirect_uri={}&scope=openid%20profile%20email&state={state}&nonce={}&code_challenge={}&code_challenge_method=S256",
        latch_core::paths::AUTHORIZE,
        enc(&callback),
        latch_jose::random_token(16),
        latch_jose::pkce_s256(&verifier),
    );
    let secure = deps.issuer.starts_with("https://");
    HttpResponse::Found()
        .cookie(cookie(LOGIN_COOKIE, value, secure))
        .insert_header((LOCATION, to))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /admin/callback`: the UI's code, redeemed here (the UI and the provider share the
/// session store; no HTTP round trip to itself).
async fn callback(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let failed = |text: &str| {
        message(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            text,
            Some(("/admin/login", "Try again")),
        )
    };
    if q.error.is_some() {
        return failed("The sign-in was cancelled or refused.");
    }
    let Some(saved) = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_owned()) else {
        return failed("This sign-in was not started here, or took too long.");
    };
    let mut parts = saved.splitn(3, '.');
    let (Some(state), Some(verifier), Some(next)) = (parts.next(), parts.next(), parts.next())
    else {
        return failed("This sign-in was not started here, or took too long.");
    };
    if !q
        .state
        .as_deref()
        .is_some_and(|s| latch_jose::constant_eq(s, state))
    {
        return failed("This sign-in was not started here, or took too long.");
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 128)
    else {
        return failed("The sign-in returned no code.");
    };
    let now = deps.clock.now();
    let stored = match deps
        .sessions
        .take_code(&latch_jose::token_digest(code), now)
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return failed("This sign-in code is unknown, expired or already used."),
        Err(e) => return error_page(e.into()),
    };
    let callback = format!("{}{ADMIN_CALLBACK_PATH}", deps.issuer);
    let this_browser = session_secret(&req).map(|s| s.id());
    let ok = stored.client_id.as_str() == ADMIN_CLIENT_ID
        && stored.redirect_uri == callback
        && stored
            .code_challenge
            .as_deref()
            .is_some_and(|ch| latch_jose::constant_eq(&latch_jose::pkce_s256(verifier), ch))
        && stored
            .session_id
            .as_ref()
            .zip(this_browser.as_ref())
            .is_some_and(|(s, b)| latch_jose::constant_eq(s.as_str(), b.as_str()));
    if !ok {
        return failed("The sign-in could not be verified.");
    }
    let next = URL_SAFE_NO_PAD
        .decode(next)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let secure = deps.issuer.starts_with("https://");
    let mut gone = cookie(LOGIN_COOKIE, String::new(), secure);
    gone.make_removal();
    match deps.store.find_user(&stored.user_id).await {
        Ok(Some(u)) if u.is_admin() => HttpResponse::SeeOther()
            .cookie(gone)
            .insert_header((LOCATION, safe_next(Some(&next)).to_owned()))
            .insert_header(("Cache-Control", "no-store"))
            .finish(),
        Ok(_) => {
            let mut r = forbidden();
            let _ = r.add_cookie(&gone);
            r
        }
        Err(e) => error_page(e.into()),
    }
}

/// `POST /admin/logout`: ends the Latch session (the one logout use-case: apps in it are told).
async fn logout(a: Admin, deps: web::Data<Deps>, form: web::Form<Form>) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    use latch_core::logout::{Target, TokenPolicy, Urgency};
    let ended = deps
        .logout
        .end(
            Target::Session(a.session.id.clone()),
            TokenPolicy::SessionBound,
            latch_core::model::LogoutInitiator::RpLogout,
            Urgency::BrowserWaiting,
        )
        .await;
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => return error_page(e.into()),
    };
    let secure = deps.issuer.starts_with("https://");
    // The session cookie goes, and the upstream ID token cookie beside it.
    let gone = [
        SESSION_COOKIE,
        latch_core::session::upstream_cookie_name(secure),
    ]
    .map(|name| {
        let mut c = Cookie::build(name, "")
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .finish();
        c.make_removal();
        c
    });
    let [gone, gone_upstream] = gone;
    // Other apps of the session with a front-channel logout URL: a page loads them in hidden
    // frames, then continues to the signed-out page.
    let admin = latch_core::ClientId::new(ADMIN_CLIENT_ID);
    let signed_out = format!("{}/admin/signed-out", deps.issuer);
    let page = deps.front_channel.render(&latch_core::logout::PageRequest {
        issuer: &deps.issuer,
        front_channel: &ended.front_channel,
        saml: &ended.saml,
        exclude: Some(&admin),
        continue_to: Some(latch_core::logout::Continue::Get(signed_out)),
    });
    // The admin's own logout is an `slo` event like any app's, with what its page sent.
    let event = latch_core::model::LogEvent {
        user_id: Some(a.session.user_id.clone()),
        client_id: Some(admin.clone()),
        connection: Some(a.session.connection.clone()),
        details: serde_json::Value::Object(
            ended
                .browser_event_details(latch_core::model::LogoutInitiator::RpLogout, page.as_ref()),
        ),
        ..latch_core::model::LogEvent::new(deps.clock.now(), "slo", "Signed out of the admin UI")
    };
    if let Err(e) = deps.store.insert_log(&event).await {
        tracing::error!(error = %e, "could not record the admin's logout");
    }
    match page {
        Some(page) => HttpResponse::Ok()
            .cookie(gone)
            .cookie(gone_upstream)
            .insert_header(("Content-Security-Policy", page.content_security_policy))
            .insert_header(("Cache-Control", "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(page.html),
        None => HttpResponse::SeeOther()
            .cookie(gone)
            .cookie(gone_upstream)
            .insert_header((LOCATION, "/admin/signed-out"))
            .finish(),
    }
}

async fn signed_out() -> HttpResponse {
    message(
        StatusCode::OK,
        "Signed out",
        "You are signed out of Latch.",
        Some(("/admin/login", "Sign in again")),
    )
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_printable_admin_path() {
        for ok in ["/admin", "/admin/users?q=a%20b", "/admin?x=1"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "/admin\r\nSet-Cookie: x=1",
            "/admin/users\n",
            "/admin/ x",
            "/administrator",
            "//evil.example/admin",
            "/admin\\..\\x",
            "https://evil.example/admin",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin/connections", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/admin/connections");
    }
}
