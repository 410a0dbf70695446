//! Ports for upstream connections. The login flow in `latch-oidc` talks to these traits only;
//! `latch-federation` implements them per strategy.

use async_trait::async_trait;
use thiserror::Error;

use crate::model::{Connection, User};
use crate::{SessionError, StoreError};

/// Why a password sign-in failed. The page shows one generic message for `InvalidCredentials`
/// and `Blocked` alike, so it never tells whether an account exists.
#[derive(Debug, Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("the user is blocked")]
    Blocked,
    /// Refused unchecked: a key of the attempt is waiting out the delay its failures brought.
    #[error("too many failed attempts ({limit:?}); try again in {}s", retry_after.whole_seconds())]
    TooManyAttempts {
        /// How long until the attempt would be checked (whole seconds, at least one).
        retry_after: time::Duration,
        /// When the delay ends.
        until: time::OffsetDateTime,
        limit: Limit,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Which throttle held a sign-in back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Failures on this account from this address.
    AccountFromIp,
    /// Failures on this account from everywhere.
    Account,
    /// Failures from this address, whatever the account.
    Ip,
}

/// Who is signing in, for throttling and logs.
#[derive(Debug, Clone, Default)]
pub struct SignInContext {
    /// The client's address (`latch_http::client_ip`).
    pub ip: Option<std::net::IpAddr>,
}

/// A connection that checks a username and password itself (strategy `auth0`).
#[async_trait]
pub trait PasswordConnector: Send + Sync {
    async fn sign_in(
        &self,
        connection: &Connection,
        email: &str,
        password: &str,
        ctx: &SignInContext,
    ) -> Result<User, SignInError>;
}

/// The issuer recorded on database-connection identities (they have no upstream issuer).
pub const DATABASE_ISSUER: &str = "urn:latch:database";

/// A user as an upstream IdP vouched for them, after every check.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamIdentity {
    /// The upstream issuer (`iss`), part of the identity's key.
    pub issuer: String,
    /// The upstream subject (`sub`), the other part.
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    /// Every claim the IdP sent, kept on the identity.
    pub profile: serde_json::Map<String, serde_json::Value>,
    /// What logout needs later (upstream `sid`, ID token).
    pub session: crate::session::UpstreamSession,
}

/// Why an upstream sign-in failed. Shown to the user as a page; the detail goes to the log.
#[derive(Debug, Error)]
pub enum FederationError {
    /// The IdP answered with an error (`access_denied`, …).
    #[error("the identity provider said {error}: {description}")]
    Upstream { error: String, description: String },
    /// The answer failed a check (signature, issuer, audience, expiry, nonce, state).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The IdP could not be reached or answered nonsense.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The connection is missing an option it needs.
    #[error("connection misconfigured: {0}")]
    Misconfigured(String),
}

/// Where to send the browser, and what the connector must get back at the callback.
#[derive(Debug, Clone)]
pub struct RedirectStart {
    pub url: String,
    /// Kept in the login transaction (nonce, PKCE verifier); opaque to the login flow.
    pub saved: serde_json::Value,
}

/// A connection that signs users in by redirecting to an IdP (strategies `okta`, `oidc`, `samlp`).
///
/// `issuer` is Latch's issuer, without a trailing slash: the IdP sends the browser back to
/// [`crate::paths::callback_url`] of it, and a SAML connection's SP settings ([`SamlSp`]) are
/// built from it.
#[async_trait]
pub trait RedirectConnector: Send + Sync {
    /// The authorization URL; `state` is the login transaction's id.
    async fn start(
        &self,
        connection: &Connection,
        issuer: &str,
        state: &str,
    ) -> Result<RedirectStart, FederationError>;

    /// Checks the callback (`params` as received) against what `start` saved.
    async fn finish(
        &self,
        connection: &Connection,
        issuer: &str,
        params: &std::collections::HashMap<String, String>,
        saved: &serde_json::Value,
    ) -> Result<UpstreamIdentity, FederationError>;
}

/// A logout message as it arrived at Latch's upstream logout endpoint
/// ([`crate::paths::UPSTREAM_LOGOUT`]).
#[derive(Debug, Clone, Copy)]
pub enum Arrived<'a> {
    /// A GET: the query string exactly as received (an HTTP-Redirect signature covers its octets).
    Query(&'a str),
    /// A POSTed form (HTTP-POST binding).
    Form(&'a std::collections::HashMap<String, String>),
}

/// An upstream IdP's LogoutRequest, after every check (signature by the IdP's certificate,
/// `Issuer`, `Destination`, lifetime, replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLogoutRequest {
    pub request_id: String,
    pub name_id: String,
    /// Empty: NameID alone (every session of that principal at the connection).
    pub session_indexes: Vec<String>,
    pub relay_state: Option<String>,
    /// It came over HTTP-POST (else HTTP-Redirect): the answer goes back the same way when the
    /// IdP takes it.
    pub posted: bool,
}

/// How a federated logout reaches the IdP.
#[derive(Debug, Clone)]
pub enum LogoutStart {
    /// Send the browser here; the IdP brings it back to [`crate::paths::upstream_logout_url`]
    /// with `state` (OpenID Connect) or as `RelayState` (SAML), and [`UpstreamLogout::finish_logout`]
    /// gets `saved` back.
    Send {
        to: crate::logout::Continue,
        saved: serde_json::Value,
        /// `saml_logout_request` or `end_session_endpoint`, for the log.
        via: &'static str,
    },
    /// This connection's IdP is not asked (the database connection, `disableSignout`, no
    /// logout endpoint, nothing known of the upstream session): why, for the log.
    NotSent(String),
}

/// What the IdP answered a federated logout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    /// It said the upstream session ended (SAML `Success`; an OpenID provider's return).
    pub ok: bool,
    /// SAML status codes, outermost first; empty for OpenID Connect.
    pub status: Vec<String>,
}

/// Logout with upstream IdPs (strategies `okta`, `oidc`, `samlp`): their SAML Single Logout
/// messages, and federated logout (Auth0's `federated`). `latch-federation` implements it; the
/// sign-in crate's upstream logout endpoint and the protocols' logout endpoints use it.
#[async_trait]
pub trait UpstreamLogout: Send + Sync {
    /// A LogoutRequest from a `samlp` connection's IdP, verified; `Rejected` says why not.
    async fn logout_request(
        &self,
        connection: &Connection,
        issuer: &str,
        arrived: Arrived<'_>,
    ) -> Result<UpstreamLogoutRequest, FederationError>;

    /// Latch's signed LogoutResponse to `request` (`InResponseTo`, `RelayState` echoed) at the
    /// IdP's SingleLogoutService: `status` the top-level code, `second` an optional second level.
    async fn logout_response(
        &self,
        connection: &Connection,
        issuer: &str,
        request: &UpstreamLogoutRequest,
        status: &str,
        second: Option<&str>,
    ) -> Result<crate::logout::Continue, FederationError>;

    /// Federated logout of the upstream session `upstream` (of a session that already ended at
    /// Latch); `state` is Latch's handle for the way back.
    async fn start_logout(
        &self,
        connection: &Connection,
        issuer: &str,
        upstream: &crate::session::UpstreamSession,
        state: &str,
    ) -> Result<LogoutStart, FederationError>;

    /// The IdP's answer to [`start_logout`](Self::start_logout) (a SAML LogoutResponse, checked
    /// against what it `saved`; an OpenID provider's return).
    async fn finish_logout(
        &self,
        connection: &Connection,
        issuer: &str,
        arrived: Arrived<'_>,
        saved: &serde_json::Value,
    ) -> Result<UpstreamAnswer, FederationError>;
}

/// Latch as a SAML service provider for one `samlp` connection: what an admin gives the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSp {
    /// `options.entityId`, or `urn:latch:{host}:{connection}` (Auth0's `urn:auth0:{tenant}:{connection}`).
    pub entity_id: String,
    /// The HTTP-POST AssertionConsumerService: `{issuer}/login/callback?connection={name}`
    /// ([`crate::paths::acs_url`]).
    pub acs_url: String,
    /// `{issuer}/samlp/metadata?connection={name}` ([`crate::paths::sp_metadata_url`]).
    pub metadata_url: String,
    /// The SingleLogoutService, both bindings: `{issuer}/logout?connection={name}`
    /// ([`crate::paths::upstream_logout_url`]).
    pub slo_url: String,
}

impl SamlSp {
    /// `issuer` is Latch's issuer URL without a trailing slash.
    pub fn of(c: &Connection, issuer: &str) -> Self {
        Self::new(
            c.name.as_str(),
            crate::connection_options::SamlOptions::entity_id_of(c),
            issuer,
        )
    }

    /// For the connection `name` (URL-safe, or a template placeholder such as `{name}`) whose
    /// `entityId` option is `entity_id`.
    pub fn new(name: &str, entity_id: Option<&str>, issuer: &str) -> Self {
        let host = url::Url::parse(issuer)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
            })
            .unwrap_or_else(|| "latch".into());
        Self {
            entity_id: entity_id
                .map(str::to_owned)
                .unwrap_or_else(|| format!("urn:latch:{host}:{name}")),
            acs_url: crate::paths::acs_url(issuer, name),
            metadata_url: crate::paths::sp_metadata_url(issuer, name),
            slo_url: crate::paths::upstream_logout_url(issuer, name),
        }
    }
}
