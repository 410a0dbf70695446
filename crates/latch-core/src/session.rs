//! Browser sessions, one-time codes and login transactions, and the [`SessionStore`] port.
//!
//! Contract every implementation keeps (checked by `latch_testkit::session_conformance`):
//! - a record past its expiry is never returned, whether or not the backend has purged it yet;
//! - "all sessions of user U" is answered from a per-user index, never a scan;
//! - ending all sessions of a user is atomic and returns exactly what it ended;
//! - a code or transaction is returned by `take_*` at most once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    ClientId, ConnectionName, LoginTxId, SessionError, SessionId, Sid, TokenDigest, UserId,
};

/// The cookie holding a browser's [`SessionSecret`](crate::SessionSecret); Latch stores only its
/// digest, the [`SessionId`].
pub const SESSION_COOKIE: &str = "latch_session";

/// The cookie that carries a session's sealed upstream ID token (the `id_token_hint` of a
/// federated logout) in the browser instead of the session store, named `__Host-latch_upstream`
/// when cookies are `Secure` ([`upstream_cookie_name`]). The session keeps only the value's
/// digest ([`UpstreamSession::id_token_cookie`]), so the only value taken back is the one set
/// with it.
pub const UPSTREAM_COOKIE: &str = "latch_upstream";
/// [`UPSTREAM_COOKIE`]'s name when cookies are `Secure`: the `__Host-` prefix makes browsers
/// refuse it from a sibling subdomain.
pub const UPSTREAM_COOKIE_HOST: &str = "__Host-latch_upstream";
/// The longest sealed ID token the browser carries (a sealed Okta ID token is about 1,460
/// characters). A longer one (an IdP that puts many groups in its ID tokens) stays in the session
/// record: browsers keep cookies of up to 4,096 bytes, and proxies read a response's headers
/// into a buffer of their own (nginx's default is 4 KiB), which a sign-in's redirect, session
/// cookie and security headers share with it.
pub const UPSTREAM_COOKIE_MAX: usize = 2_048;

/// The upstream ID token cookie's name for this deployment.
pub fn upstream_cookie_name(secure: bool) -> &'static str {
    if secure {
        UPSTREAM_COOKIE_HOST
    } else {
        UPSTREAM_COOKIE
    }
}

/// What a session keeps of the upstream ID token cookie's value: the first 16 bytes of its
/// SHA-256, base64url (22 characters).
pub fn upstream_cookie_digest(value: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

/// How long a session is kept after its end for the expiry sweeper (which runs every 30
/// seconds on every instance); `purge_expired` deletes it after that.
pub const EXPIRED_GRACE: time::Duration = time::Duration::hours(1);

/// What Latch remembers of the upstream session, for logout.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpstreamSession {
    /// Upstream OIDC `sid`, matched by upstream back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Upstream ID token, sealed (`latch-federation` seals it with a key derived from the master
    /// key and opens it for a federated logout's `id_token_hint`): never stored in the clear.
    #[serde(
        default,
        rename = "id_token_sealed",
        skip_serializing_if = "Option::is_none"
    )]
    pub sealed_id_token: Option<String>,
    /// When the browser carries the sealed ID token (the [`UPSTREAM_COOKIE`]) instead: the
    /// digest of that cookie's value ([`upstream_cookie_digest`]). A sealed Okta ID token is
    /// over 1 KB, more than all the rest of a session in Redis.
    #[serde(
        default,
        rename = "id_token_cookie",
        skip_serializing_if = "Option::is_none"
    )]
    pub id_token_cookie: Option<String>,
    /// SAML NameID, its Format and SessionIndex, for SAML single logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_index: Option<String>,
}

impl UpstreamSession {
    /// The key under which session stores index the session's user for upstream logout: the
    /// OpenID Connect `sid`, else the SAML NameID ([`saml_name_id_key`]). A connection speaks one
    /// protocol, so the two never meet in one connection's index.
    pub fn index_key(&self) -> Option<String> {
        self.sid
            .clone()
            .or_else(|| self.name_id.as_deref().map(saml_name_id_key))
    }
}

/// The index key of a SAML NameID (see [`UpstreamSession::index_key`]).
pub fn saml_name_id_key(name_id: &str) -> String {
    format!("saml-nameid:{name_id}")
}

/// What a SAML app was told of the session: its LogoutRequests name these exactly as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlParticipant {
    pub name_id: String,
    pub name_id_format: String,
    /// One per (session, app).
    pub session_index: String,
}

/// An app that joined a session, and the `sid` Latch issued to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClient {
    pub client_id: ClientId,
    pub sid: Sid,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub joined_at: OffsetDateTime,
    /// Set when the app signed in over SAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlParticipant>,
}

impl SessionClient {
    /// An OpenID Connect app joining with the session's `sid`.
    pub fn oidc(client_id: ClientId, sid: Sid, joined_at: OffsetDateTime) -> Self {
        Self {
            client_id,
            sid,
            joined_at,
            saml: None,
        }
    }
}

/// A browser session at Latch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub sid: Sid,
    pub user_id: UserId,
    pub connection: ConnectionName,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub auth_time: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub last_seen_at: OffsetDateTime,
    /// Ends unless the session is used before then.
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub idle_expires_at: OffsetDateTime,
    /// Ends then, however busy.
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub expires_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub upstream: UpstreamSession,
    /// Apps that joined, in the order they joined; one entry per client.
    #[serde(default)]
    pub clients: Vec<SessionClient>,
}

impl Session {
    /// The instant the session ends if nothing happens: the earlier of idle and absolute expiry.
    pub fn ends_at(&self) -> OffsetDateTime {
        self.idle_expires_at.min(self.expires_at)
    }

    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.ends_at() > now
    }
}

/// A one-time authorization code, stored under the digest of the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    pub digest: TokenDigest,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub sid: Option<Sid>,
    pub redirect_uri: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub auth_time: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub expires_at: OffsetDateTime,
}

/// A short-lived login in progress (upstream `state`, `nonce`, PKCE verifier, the original
/// authorization request). The payload belongs to the flow that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginTransaction {
    pub id: LoginTxId,
    #[serde(with = "time::serde::timestamp::milliseconds")]
    pub expires_at: OffsetDateTime,
    pub payload: serde_json::Value,
}

/// The session store port. Two adapters: embedded (SQLite file) and Redis.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// `embedded` or `redis`, for logs and readiness.
    fn backend(&self) -> &'static str;

    /// Answers when the backend is reachable.
    async fn ping(&self) -> Result<(), SessionError>;

    /// Stores a new session and indexes it under its user.
    async fn insert_session(&self, session: &Session) -> Result<(), SessionError>;

    /// The live session with this id.
    async fn find_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError>;

    /// Records use of a live session: `last_seen_at = now`, idle expiry moved to
    /// `min(now + idle, expires_at)`. Returns the updated session.
    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<Session>, SessionError>;

    /// Records that an app joined a live session (idempotent per client: the first `sid` stays).
    async fn add_session_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError>;

    /// Every live session of a user, oldest first.
    async fn list_user_sessions(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, SessionError>;

    /// Deletes one session; returns it if it existed.
    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError>;

    /// Sessions whose time is up (idle or absolute) that are still stored, soonest-ended first, at
    /// most `limit`. A session is kept for [`EXPIRED_GRACE`] after its end, never found as a live
    /// one, so the sweeper can tell its apps before it goes (`end_session` deletes it).
    async fn expired_sessions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, SessionError>;

    /// Deletes every session of a user in one atomic step; returns what was ended.
    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError>;

    /// The user whose live session through `connection` has the upstream index key `key`
    /// ([`UpstreamSession::index_key`]: an upstream OpenID Connect `sid`, for back-channel logout
    /// tokens with a `sid` and no `sub`; a SAML NameID, for an IdP's LogoutRequest). Adapters
    /// index it when the session is stored, for as long as the session can live.
    async fn user_of_upstream(
        &self,
        connection: &ConnectionName,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionError>;

    async fn insert_code(&self, code: &AuthCode) -> Result<(), SessionError>;

    /// A new session and its first code, stored together where the adapter can (one write).
    async fn insert_session_with_code(
        &self,
        session: &Session,
        code: &AuthCode,
    ) -> Result<(), SessionError> {
        self.insert_session(session).await?;
        self.insert_code(code).await
    }

    /// Returns the code and deletes it, atomically: a second call gets `None`.
    async fn take_code(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<AuthCode>, SessionError>;

    async fn insert_login_tx(&self, tx: &LoginTransaction) -> Result<(), SessionError>;

    /// Returns the transaction and deletes it, atomically.
    async fn take_login_tx(
        &self,
        id: &LoginTxId,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, SessionError>;

    /// Replay guard: `true` the first time `(scope, key)` is seen before `expires_at`,
    /// `false` on every later call while it is remembered.
    async fn remember_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, SessionError>;

    /// Undoes [`remember_once`](Self::remember_once) for work that failed for a reason of Latch's
    /// own (a store unavailable), so the sender's retry of the same message is not a replay.
    async fn forget_once(&self, scope: &str, key: &str) -> Result<(), SessionError>;

    /// Rate-limit counter: records a hit on `key` in a fixed window that the first hit opens and
    /// that ends at `window_ends`; returns the hits in the current window, this one included.
    async fn count_hit(
        &self,
        key: &str,
        window_ends: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, SessionError>;

    /// Throttle keys in their current state (failures leaked until `now`), in order; a key
    /// never seen is [`Throttle::default`](crate::throttle::Throttle). Changes nothing.
    async fn throttle_peek(
        &self,
        keys: &[crate::throttle::ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<crate::throttle::Throttle>, SessionError>;

    /// Before an attempt is checked, atomically over `keys`: if any key waits past `now`,
    /// nothing changes and the one that waits longest is named (the attempt is refused
    /// unchecked and counts for nothing); otherwise each key is held as
    /// [`Backoff::hold`](crate::throttle::Backoff::hold) says.
    async fn throttle_begin(
        &self,
        keys: &[crate::throttle::ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<crate::throttle::ThrottleCheck, SessionError>;

    /// A failed attempt: atomically, one more failure on each key
    /// ([`Backoff::fail`](crate::throttle::Backoff::fail)); returns the new states, in order.
    async fn throttle_fail(
        &self,
        keys: &[crate::throttle::ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<crate::throttle::Throttle>, SessionError>;

    /// Forgets a key's failures and delay.
    async fn throttle_clear(&self, key: &str) -> Result<(), SessionError>;

    /// Deletes expired records where the backend does not expire them itself; returns how many.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, SessionError>;
}
