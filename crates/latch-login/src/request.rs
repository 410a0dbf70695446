//! The protocol-neutral sign-in request, and the port through which a protocol answers its app.

use actix_web::{HttpRequest, HttpResponse};
use latch_core::model::{Client, User};
use latch_core::session::{AuthCode, Session, SessionClient};
use latch_core::{ClientId, ConnectionName, Sid};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The protocol an app signs in with; it picks the [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenID Connect (`latch-oidc`): the answer is an authorization code.
    Oidc,
    /// SAML 2.0 (`latch-samlp`): the answer is a signed Response POSTed to the app's ACS.
    Samlp,
}

/// What the app asked of the sign-in itself (OpenID Connect's `prompt`; SAML's `IsPassive` and
/// `ForceAuthn` map onto the same two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Never show anything: sign in from the session or refuse (`login_required`).
    pub none: bool,
    /// Ask the user again even when a session would serve.
    pub login: bool,
}

/// A sign-in in progress, kept in its login transaction while the user signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub protocol: Protocol,
    /// Who asks.
    pub client_id: ClientId,
    /// Where the answer goes (the redirect URI; a SAML app's ACS URL), already checked by the
    /// protocol against what the app registered.
    pub return_to: String,
    pub prompt: Prompt,
    /// The longest time since the user last authenticated that the app accepts, in seconds.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The connection the user signs in through.
    pub connection: ConnectionName,
    /// Latch picked the connection (the app named none): the user may be offered others, and a
    /// session from any connection enabled for the app serves.
    pub chosen: bool,
    /// What the protocol needs back when it answers (OpenID Connect: scope, state, nonce, PKCE
    /// challenge); opaque here.
    pub protocol_state: serde_json::Value,
}

/// What a protocol's front door hands over once it has checked the app's request.
#[derive(Debug, Clone)]
pub struct Begin {
    pub protocol: Protocol,
    pub client: Client,
    pub return_to: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The connection the app named, if any.
    pub connection: Option<ConnectionName>,
    pub protocol_state: serde_json::Value,
}

/// Why a sign-in goes back to the app without a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `prompt=none` and no session serves (OpenID Connect's `login_required`).
    LoginRequired,
    /// The request cannot be served as asked (no or a disabled connection).
    InvalidRequest(String),
}

/// A protocol's answer for a signed-in session.
pub struct Issued {
    /// A one-time code the app redeems (OpenID Connect), stored with the session: in one write
    /// when the session is new.
    pub code: Option<AuthCode>,
    /// Where the browser goes next (a redirect to the app; a page that posts to it).
    pub response: HttpResponse,
}

/// How a protocol answers its app: `latch-oidc` implements it for [`Protocol::Oidc`].
/// Implementations do no I/O: what must be stored comes back in [`Issued`], and the sign-in
/// flow stores it.
pub trait Completion: Send + Sync {
    /// How the app joins a session whose `sid` is `sid`: what the session remembers of it for
    /// logout. By default an OpenID Connect app's entry (its `sid`); a SAML app adds the NameID
    /// and a SessionIndex.
    fn join(
        &self,
        r: &LoginRequest,
        sid: &Sid,
        _user: &User,
        now: OffsetDateTime,
    ) -> SessionClient {
        SessionClient::oidc(r.client_id.clone(), sid.clone(), now)
    }

    /// The answer to `r` for `user`'s `session`, which already lists the app among those it
    /// signed in (its entry made by [`Completion::join`], or the one from an earlier sign-in to
    /// the same session). An `Err` is the page the browser gets instead; the sign-in then stops
    /// before anything is stored.
    fn issue(
        &self,
        r: &LoginRequest,
        session: &Session,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Issued, Box<HttpResponse>>;

    /// The answer to `r` when no user is signed in ([`Refusal`]).
    fn refuse(&self, r: &LoginRequest, why: Refusal) -> HttpResponse;

    /// The origin (or scheme) a sign-in form's `form-action` must also allow: browsers hold the
    /// redirect that follows a POST to it. By default that of [`LoginRequest::return_to`].
    fn form_target<'a>(&self, r: &'a LoginRequest) -> &'a str {
        &r.return_to
    }

    /// A link that starts the app's request again through `connection` (the sign-in page's
    /// "Continue with …"); `req` is the request that began the sign-in.
    fn restart_with(
        &self,
        req: &HttpRequest,
        r: &LoginRequest,
        connection: &ConnectionName,
    ) -> String;
}
