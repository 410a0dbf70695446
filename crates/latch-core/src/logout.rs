//! The one use-case that ends sessions: [`Logout::end`]. RP-initiated logout, the admin UI's
//! sign-out, a session replaced at sign-in, GTR, admin "clear sessions", blocking and deleting a
//! user, ending one session, deleting a connection and upstream back-channel logout all call it
//! (clippy's `disallowed-methods` keeps [`terminate`], its recording step, private to it).
//!
//! **Invariant:** the outbound notifications are recorded in the durable outbox *before* anything
//! is deleted, so a crash between the two steps can only cause a logout token for a session that
//! still exists (harmless and retried), never a session that ended silently. Deliveries of the
//! sessions that did end are handed over even when a later step fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use thiserror::Error;
use time::OffsetDateTime;

use crate::model::{
    Delivery, DeliveryState, GtrSubjectFormat, LogoutInitiator, LogoutNotice, RefreshToken,
    RevokeScope,
};
use crate::session::{SamlParticipant, Session, SessionStore};
use crate::store::Store;
use crate::{
    ClientId, Clock, ConnectionName, DeliveryId, Jti, SessionError, SessionId, Sid, StoreError,
    UserId,
};

/// Whose sessions end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One browser session (logout from an app, SAML SLO, ending one session).
    Session(SessionId),
    /// Every session of a user, on every device (GTR, admin clear, block, delete).
    User(UserId),
    /// The sessions a user holds through one connection; with `upstream`, only those of that
    /// upstream session (an upstream IdP's back-channel logout or SAML LogoutRequest).
    UserAtConnection {
        user: UserId,
        connection: ConnectionName,
        upstream: Option<UpstreamMatch>,
    },
    /// A session whose time is up, as the session store still holds it
    /// ([`SessionStore::expired_sessions`]): the sweeper tells its apps
    /// ([`LogoutInitiator::SessionExpired`]), then it goes.
    Expired(Box<Session>),
    /// Every session the given users hold through a connection: a deleted connection's users
    /// (listed with [`crate::store::UserRepo::list_connection_users`] before the deletion took
    /// their identities with it).
    UsersAtConnection {
        users: Vec<UserId>,
        connection: ConnectionName,
    },
}

/// Which of a user's sessions at a connection an upstream IdP's logout names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamMatch {
    /// Those carrying this OpenID Connect `sid`.
    Sid(String),
    /// Those holding this SAML NameID and, when `session_indexes` is not empty, one of these
    /// SessionIndexes (SAML core §3.7.3.2: NameID alone names every session of the principal).
    Saml {
        name_id: String,
        session_indexes: Vec<String>,
    },
}

impl UpstreamMatch {
    /// Whether `s` is one of the sessions named.
    pub fn matches(&self, s: &crate::session::UpstreamSession) -> bool {
        match self {
            Self::Sid(sid) => s.sid.as_deref() == Some(sid.as_str()),
            Self::Saml {
                name_id,
                session_indexes,
            } => {
                s.name_id.as_deref() == Some(name_id.as_str())
                    && (session_indexes.is_empty()
                        || s.session_index
                            .as_ref()
                            .is_some_and(|i| session_indexes.contains(i)))
            }
        }
    }
}

/// What one [`terminate`] call ends: [`Logout::end`] resolves every [`Target`] into these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Session(SessionId),
    User(UserId),
    /// A session past its end (not found as a live one).
    Expired(Box<Session>),
}

/// Who waits for the deliveries a logout records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A browser goes back to an app next (RP-initiated logout, signing out of the admin UI):
    /// each delivery is tried now, for at most [`BROWSER_WAIT`], so the app does not see the
    /// user return before its logout arrives. What is not done by then the workers finish.
    BrowserWaiting,
    /// Nobody waits (API calls, GTR, upstream logout, a replaced session): this instance's
    /// workers send them at once, within their concurrency limits.
    Background,
}

/// How long a browser-facing logout waits for its back-channel deliveries.
pub const BROWSER_WAIT: StdDuration = StdDuration::from_millis(1500);

/// Which refresh tokens die with the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPolicy {
    /// Tokens bound to the ended sessions, sparing `offline_access` grants (a plain logout).
    SessionBound,
    /// Every refresh token of the user, offline ones included (GTR, admin clear with revoke).
    /// Apps holding such tokens are told too (a `sub`-only logout token).
    AllOfUser,
}

#[derive(Debug, Clone)]
pub struct Terminate {
    pub target: Step,
    pub tokens: TokenPolicy,
    pub initiator: LogoutInitiator,
    /// From [`Notifier::reserve_until`]: the deliveries are recorded already leased to this
    /// instance until then, so its workers send them without claiming them from the store and
    /// no other instance takes them meanwhile. If this instance dies first, the lease runs out
    /// and any worker claims them. `None` records them for any worker.
    pub reserved_until: Option<OffsetDateTime>,
}

/// What [`terminate`] did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub sessions: Vec<Session>,
    pub revoked_tokens: Vec<RefreshToken>,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Error)]
pub enum LogoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Delivers recorded notifications; `latch-backchannel` implements it. [`Logout::end`] asks it
/// for a reservation, records through [`terminate`], then hands the deliveries over according to
/// its [`Urgency`]: [`Notifier::dispatch`] in the background, [`Notifier::deliver_now`] with a
/// short bound when a browser waits.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Until when deliveries recorded now are leased to this instance's workers; `None` when
    /// they should be left to any worker (this instance has enough queued already).
    fn reserve_until(&self) -> Option<OffsetDateTime>;

    /// Tries each delivery once now, waiting at most `within`; what is not done by then (or
    /// fails) stays in the outbox for the workers.
    async fn deliver_now(&self, deliveries: &[Delivery], within: std::time::Duration);

    /// Queues deliveries for this instance's workers, which send them at once within their
    /// concurrency limits (unreserved ones are claimed from the store, also at once).
    fn dispatch(&self, deliveries: &[Delivery]);
}

/// A front-channel logout URL of an app that had joined an ended session: the browser-facing
/// caller loads it in a hidden frame (OpenID Connect Front-Channel Logout 1.0, §2). `sid` is set
/// when the app asked for it (`frontchannel_logout_session_required`); the caller adds `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontChannelTarget {
    pub client_id: ClientId,
    pub url: url::Url,
    pub sid: Option<Sid>,
}

/// A SAML app that had joined an ended session and has Single Logout on: the browser-facing
/// caller sends it a signed LogoutRequest (NameID and SessionIndex as issued) from a hidden
/// frame of the logout page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlLogoutTarget {
    pub client_id: ClientId,
    /// The SP's SingleLogoutService (`addons.samlp.logout.callback`).
    pub slo_url: url::Url,
    /// `addons.samlp.binding`.
    pub binding: String,
    pub participant: SamlParticipant,
}

/// Where a logout page goes once its frames have loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Continue {
    /// A link (the post-logout redirect; a LogoutResponse in the HTTP-Redirect binding).
    Get(String),
    /// A form POSTed to `action` (a LogoutResponse in the HTTP-POST binding).
    Post {
        action: url::Url,
        fields: Vec<(String, String)>,
    },
}

impl Continue {
    /// The origin the page must be allowed to navigate or post to.
    pub fn target(&self) -> &str {
        match self {
            Self::Get(u) => u,
            Self::Post { action, .. } => action.as_str(),
        }
    }
}

/// What a logout page shows: what [`Logout::end`] returned, minus the app that asked.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    pub issuer: &'a str,
    pub front_channel: &'a [FrontChannelTarget],
    pub saml: &'a [SamlLogoutTarget],
    /// The app that asked for the logout: it is answered, not framed.
    pub exclude: Option<&'a ClientId>,
    pub continue_to: Option<Continue>,
}

/// A SAML LogoutRequest a logout page sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlSent {
    pub client_id: ClientId,
    /// The LogoutRequest's ID: the app's LogoutResponse names it in `InResponseTo`.
    pub request_id: String,
}

/// A logout page as [`FrontChannelPage::render`] made it: the HTML, the Content-Security-Policy
/// it must be sent with (its frame, form and script sources), and what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPage {
    pub html: String,
    pub content_security_policy: String,
    /// The apps whose front-channel logout URL the page loads, one per frame, in page order.
    pub framed: Vec<ClientId>,
    /// The SAML apps the page sends a LogoutRequest, in page order.
    pub saml: Vec<SamlSent>,
}

/// The Single Logout page: `latch-slo` implements it; the browser-facing logout endpoints
/// (RP-initiated logout, SAML SLO, the admin UI's sign-out) hold it as a trait object, since
/// endpoint crates never depend on one another.
pub trait FrontChannelPage: Send + Sync {
    /// A page that loads each front-channel target (with `iss` and its `sid`, if any, added to
    /// the URL's own query) and sends each SAML target its signed LogoutRequest, in hidden
    /// frames, then continues as `continue_to` says (or says the user is signed out). `None`
    /// when no frame is left (callers then answer as they would without the page) or the page
    /// could not be rendered (logged).
    fn render(&self, page: &PageRequest<'_>) -> Option<RenderedPage>;
}

/// What [`Logout::end`] did, and what a browser-facing caller does next.
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub sessions: Vec<Session>,
    pub revoked_tokens: Vec<RefreshToken>,
    /// The durable back-channel deliveries recorded (and handed to the workers).
    pub deliveries: Vec<Delivery>,
    /// Front-channel logout URLs of the apps that had joined the ended sessions, one per (app,
    /// session), in the order the apps joined.
    pub front_channel: Vec<FrontChannelTarget>,
    /// SAML apps of the ended sessions with Single Logout on, one per (app, session).
    pub saml: Vec<SamlLogoutTarget>,
    /// SAML apps of the ended sessions that cannot be told (no SingleLogoutService, or SLO off):
    /// a SAML SLO initiator then hears `PartialLogout`.
    pub unreachable: Vec<ClientId>,
}

impl Ended {
    /// The `details` of the `slo` event of a logout with the browser at Latch: what ended, the
    /// back-channel deliveries, what `page` (the logout page, if one was rendered) framed and
    /// sent, their counts, and `saml_unreachable` (the apps without Single Logout; callers that
    /// know of others add them). `initiator` names who asked.
    pub fn browser_event_details(
        &self,
        initiator: LogoutInitiator,
        page: Option<&RenderedPage>,
    ) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let (framed, saml) = page
            .map(|p| (p.framed.as_slice(), p.saml.as_slice()))
            .unwrap_or_default();
        let details = json!({
            "initiator": initiator,
            "sessions_ended": self.sessions.len(),
            "refresh_tokens_revoked": self.revoked_tokens.len(),
            "TotalOidcLogoutRequests": oidc_logout_requests(&self.deliveries) + framed.len(),
            "TotalGtrRequests": gtr_requests(&self.deliveries),
            "TotalSamlLogoutRequests": saml.len(),
            "delivery_ids": self.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            "frontchannel": framed.iter().map(ClientId::as_str).collect::<Vec<_>>(),
            "saml": saml
                .iter()
                .map(|s| json!({"client_id": s.client_id.as_str(), "request_id": s.request_id}))
                .collect::<Vec<_>>(),
            "saml_unreachable": self.unreachable.iter().map(ClientId::as_str).collect::<Vec<_>>(),
        });
        match details {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// The `details` of the `slo` event of a logout without a browser (nothing framed, no SAML
    /// LogoutRequest sent): what ended, the back-channel deliveries and their count, the SAML
    /// apps it could not reach. `initiator` names who asked.
    pub fn background_event_details(
        &self,
        initiator: LogoutInitiator,
    ) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        match json!({
            "initiator": initiator,
            "sessions_ended": self.sessions.len(),
            "refresh_tokens_revoked": self.revoked_tokens.len(),
            "TotalOidcLogoutRequests": oidc_logout_requests(&self.deliveries),
            "TotalGtrRequests": gtr_requests(&self.deliveries),
            "TotalSamlLogoutRequests": 0,
            "delivery_ids": self.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            "saml_unreachable": self.saml_unreachable_without_browser(),
        }) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// The SAML apps of the ended sessions a logout without a browser cannot reach (Latch sends
    /// SAML LogoutRequests from the logout page only): for the event's `saml_unreachable`.
    pub fn saml_unreachable_without_browser(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .saml
            .iter()
            .map(|t| t.client_id.as_str())
            .chain(self.unreachable.iter().map(ClientId::as_str))
            .collect();
        v.dedup();
        v
    }
}

/// The Logout service: every path that ends sessions calls [`Logout::end`].
#[derive(Clone)]
pub struct Logout {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
}

impl Logout {
    pub fn new(
        store: Arc<dyn Store>,
        sessions: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self {
            store,
            sessions,
            clock,
            notifier,
        }
    }

    /// Ends the `target`'s sessions: reserves the deliveries for this instance, records them
    /// before deleting anything ([`terminate`]), revokes grants and refresh tokens per `tokens`,
    /// then hands the deliveries over as `urgency` says. An error leaves whatever was recorded in
    /// the outbox for any worker; the caller may retry, and a retry finds what is left.
    pub async fn end(
        &self,
        target: Target,
        tokens: TokenPolicy,
        initiator: LogoutInitiator,
        urgency: Urgency,
    ) -> Result<Ended, LogoutError> {
        let reserved_until = self.notifier.reserve_until();
        let steps = self.resolve(target).await?;
        let mut ended = Ended::default();
        let mut failed = None;
        for target in steps {
            let req = Terminate {
                target,
                tokens,
                initiator,
                reserved_until,
            };
            #[allow(clippy::disallowed_methods)] // the one caller
            match terminate(&*self.store, &*self.sessions, &*self.clock, &req).await {
                Ok(out) => {
                    ended.sessions.extend(out.sessions);
                    ended.revoked_tokens.extend(out.revoked_tokens);
                    ended.deliveries.extend(out.deliveries);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Those the finished steps ended are gone whether or not a later step failed.
        crate::metrics::sessions_ended(initiator, ended.sessions.len());
        // What the finished steps recorded goes out even when a later step failed: those
        // sessions are gone, and their deliveries are reserved for this instance.
        match (urgency, &failed) {
            (Urgency::BrowserWaiting, None) => {
                self.notifier
                    .deliver_now(&ended.deliveries, BROWSER_WAIT)
                    .await
            }
            _ => self.notifier.dispatch(&ended.deliveries),
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // Only a browser-facing caller renders these; failing to read them ends nothing less.
        if let Err(e) = self.front_channel(&mut ended).await {
            tracing::warn!(error = %e, "front-channel logout targets unavailable");
        }
        Ok(ended)
    }

    /// The [`terminate`] steps a target takes: one for a session or a user, one per matching
    /// session otherwise.
    async fn resolve(&self, target: Target) -> Result<Vec<Step>, LogoutError> {
        let now = self.clock.now();
        Ok(match target {
            Target::Session(id) => vec![Step::Session(id)],
            Target::User(user) => vec![Step::User(user)],
            Target::Expired(s) => vec![Step::Expired(s)],
            Target::UserAtConnection {
                user,
                connection,
                upstream,
            } => self
                .sessions
                .list_user_sessions(&user, now)
                .await?
                .into_iter()
                .filter(|s| {
                    s.connection == connection
                        && upstream.as_ref().is_none_or(|m| m.matches(&s.upstream))
                })
                .map(|s| Step::Session(s.id))
                .collect(),
            Target::UsersAtConnection { users, connection } => {
                let mut steps = Vec::new();
                for user in users {
                    steps.extend(
                        self.sessions
                            .list_user_sessions(&user, now)
                            .await?
                            .into_iter()
                            .filter(|s| s.connection == connection)
                            .map(|s| Step::Session(s.id)),
                    );
                }
                steps
            }
        })
    }

    async fn front_channel(&self, ended: &mut Ended) -> Result<(), StoreError> {
        for s in &ended.sessions {
            for joined in &s.clients {
                let Some(client) = self.store.find_client(&joined.client_id).await? else {
                    continue;
                };
                if let Some(url) = &client.oidc_logout.frontchannel_logout_url {
                    ended.front_channel.push(FrontChannelTarget {
                        client_id: client.client_id.clone(),
                        url: url.clone(),
                        sid: client
                            .oidc_logout
                            .frontchannel_logout_session_required
                            .then(|| joined.sid.clone()),
                    });
                }
                if let (Some(addon), Some(participant)) = (&client.addons.samlp, &joined.saml) {
                    match addon.slo_url() {
                        Some(url) => ended.saml.push(SamlLogoutTarget {
                            client_id: client.client_id.clone(),
                            slo_url: url.clone(),
                            binding: addon.binding.clone(),
                            participant: participant.clone(),
                        }),
                        None => ended.unreachable.push(client.client_id.clone()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Ends sessions, records back-channel deliveries first, then revokes refresh tokens. The
/// recording step of [`Logout::end`]; nothing else calls it (clippy's `disallowed-methods`).
pub async fn terminate(
    store: &dyn Store,
    sessions: &dyn SessionStore,
    clock: &dyn Clock,
    req: &Terminate,
) -> Result<Outcome, LogoutError> {
    let now = clock.now();

    // 1. What is about to end, and the refresh tokens whose apps are told. A user's sessions and
    // tokens are read at the same time (two stores, two round trips side by side).
    let (doomed, user_tokens) = match &req.target {
        Step::User(u) => {
            let (doomed, tokens) = futures_util::future::join(
                sessions.list_user_sessions(u, now),
                tokens_to_notify(store, req.tokens, u, now),
            )
            .await;
            (doomed?, Some(tokens?))
        }
        Step::Session(id) => (
            sessions.find_session(id, now).await?.into_iter().collect(),
            None,
        ),
        Step::Expired(s) => (vec![(**s).clone()], None),
    };
    let user = match &req.target {
        Step::User(u) => Some(u.clone()),
        Step::Session(_) | Step::Expired(_) => doomed.first().map(|s| s.user_id.clone()),
    };
    let token_holders = match (user_tokens, &user) {
        (Some(tokens), _) => tokens,
        (None, Some(u)) => tokens_to_notify(store, req.tokens, u, now).await?,
        (None, None) => Vec::new(),
    };

    // 2. Record every notification before deleting anything.
    let mut deliveries = Vec::new();
    let mut notified = HashSet::new();
    plan_deliveries(
        store,
        &doomed,
        &token_holders,
        req,
        now,
        &mut notified,
        &mut deliveries,
    )
    .await?;
    // A user-wide logout also tells every app of the user that takes Global Token Revocation.
    if let (TokenPolicy::AllOfUser, Step::User(u)) = (req.tokens, &req.target) {
        plan_gtr(store, u, &doomed, &token_holders, req, now, &mut deliveries).await?;
    }
    store.insert_deliveries(&deliveries).await?;

    // 3. End the sessions. A user-wide logout that takes all their tokens revokes them at the
    // same time (both are deletions, after the recording).
    let mut revoked = None;
    let ended = match &req.target {
        Step::User(u) if req.tokens == TokenPolicy::AllOfUser => {
            let scope = RevokeScope::User(u.clone());
            let (ended, tokens) = futures_util::future::join(
                sessions.end_user_sessions(u),
                store.revoke_refresh_tokens(&scope, now),
            )
            .await;
            revoked = Some(tokens?);
            ended?
        }
        Step::Session(id) => sessions
            .end_session(id)
            .await?
            .into_iter()
            .collect::<Vec<_>>(),
        Step::Expired(s) => sessions
            .end_session(&s.id)
            .await?
            .into_iter()
            .collect::<Vec<_>>(),
        Step::User(u) => sessions.end_user_sessions(u).await?,
    };
    // A session created between steps 1 and 3 ended too: record its notifications now.
    // (One past its end is the expiry sweeper's to tell, with its own initiator.)
    let raced: Vec<Session> = ended
        .iter()
        .filter(|s| !doomed.iter().any(|d| d.id == s.id) && s.is_live(now))
        .cloned()
        .collect();
    if !raced.is_empty() {
        let mut late = Vec::new();
        plan_deliveries(store, &raced, &[], req, now, &mut notified, &mut late).await?;
        store.insert_deliveries(&late).await?;
        deliveries.extend(late);
    }

    // 4. Refresh tokens die with the sessions (a user-wide logout's went in step 3).
    let revoked_tokens = match (revoked, req.tokens, &user) {
        (Some(tokens), _, _) => tokens,
        (None, TokenPolicy::AllOfUser, Some(u)) => {
            store
                .revoke_refresh_tokens(&RevokeScope::User(u.clone()), now)
                .await?
        }
        (None, TokenPolicy::AllOfUser, None) => Vec::new(),
        (None, TokenPolicy::SessionBound, _) => {
            let mut tokens = Vec::new();
            for s in &ended {
                let scope = RevokeScope::Session {
                    session_id: s.id.clone(),
                    include_offline: false,
                };
                tokens.extend(store.revoke_refresh_tokens(&scope, now).await?);
            }
            tokens
        }
    };

    Ok(Outcome {
        sessions: ended,
        revoked_tokens,
        deliveries,
    })
}

/// The live refresh tokens of `user` whose apps a logout tells (`sub`-only logout tokens): all
/// of them under [`TokenPolicy::AllOfUser`], none otherwise.
async fn tokens_to_notify(
    store: &dyn Store,
    tokens: TokenPolicy,
    user: &UserId,
    now: OffsetDateTime,
) -> Result<Vec<RefreshToken>, StoreError> {
    match tokens {
        TokenPolicy::AllOfUser => store.list_user_refresh_tokens(user, now).await,
        TokenPolicy::SessionBound => Ok(Vec::new()),
    }
}

/// How many of `deliveries` are back-channel logout tokens (the OIDC logout requests of Okta's
/// `TotalOidcLogoutRequests`).
pub fn oidc_logout_requests(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .filter(|d| d.kind == crate::model::DeliveryKind::BackchannelLogout)
        .count()
}

/// How many of `deliveries` are Global Token Revocation requests to apps.
pub fn gtr_requests(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .filter(|d| d.kind == crate::model::DeliveryKind::Gtr)
        .count()
}

/// One GTR delivery per app with a `global_token_revocation` endpoint with which the user has a
/// session, a live grant or a live refresh token (the apps' choice of back-channel initiators
/// does not apply: GTR is sent on every user-wide logout). An app that names users by email is
/// skipped, with a warning, for a user without a verified one.
async fn plan_gtr(
    store: &dyn Store,
    user: &UserId,
    sessions: &[Session],
    token_holders: &[RefreshToken],
    req: &Terminate,
    now: OffsetDateTime,
    out: &mut Vec<Delivery>,
) -> Result<(), StoreError> {
    // Most deployments have no app taking GTR: then nothing is read for it.
    if !store.any_client_takes_gtr().await? {
        return Ok(());
    }
    let mut clients: Vec<ClientId> = sessions
        .iter()
        .flat_map(|s| s.clients.iter().map(|c| c.client_id.clone()))
        .collect();
    clients.extend(token_holders.iter().map(|t| t.client_id.clone()));
    clients.extend(store.list_user_grant_clients(user, now).await?);
    let mut seen = HashSet::new();
    // Read once, and only when an app names users by email.
    let mut email: Option<Option<String>> = None;
    for id in clients {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(client) = store.find_client(&id).await? else {
            continue;
        };
        let Some(gtr) = &client.global_token_revocation else {
            continue;
        };
        let email = match gtr.subject_format {
            GtrSubjectFormat::IssSub => None,
            GtrSubjectFormat::Email => {
                // Only a verified email names the user: an unverified one may be someone
                // else's, whose tokens the app would revoke.
                if email.is_none() {
                    email = Some(
                        store
                            .find_user(user)
                            .await?
                            .filter(|u| u.email_verified)
                            .and_then(|u| u.email),
                    );
                }
                match email.clone().flatten() {
                    Some(e) => Some(e),
                    None => {
                        tracing::warn!(client = %id, user = %user, "no Global Token Revocation for an app that names users by email: the user has no verified email");
                        continue;
                    }
                }
            }
        };
        out.push(Delivery {
            kind: crate::model::DeliveryKind::Gtr,
            id: DeliveryId::new(uuid::Uuid::now_v7().to_string()),
            client_id: client.client_id.clone(),
            target: gtr.endpoint.clone(),
            notice: LogoutNotice {
                sub: Some(user.clone()),
                sid: None,
                initiator: req.initiator,
                email,
            },
            // Each attempt's request token gets its own `jti`; this one names the delivery.
            jti: Jti::new(uuid::Uuid::new_v4().to_string()),
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            locked_until: req.reserved_until,
            last_error: None,
            finished_at: None,
        });
    }
    Ok(())
}

/// One delivery per (client, session) for clients with a back-channel URL, plus one `sub`-only
/// delivery per other client that holds a refresh token of the user; each only to a client whose
/// `oidc_logout.backchannel_logout_initiators` allows the request's initiator.
async fn plan_deliveries(
    store: &dyn Store,
    sessions: &[Session],
    token_holders: &[RefreshToken],
    req: &Terminate,
    now: OffsetDateTime,
    notified: &mut HashSet<(String, Option<String>)>,
    out: &mut Vec<Delivery>,
) -> Result<(), StoreError> {
    let mut push =
        |client: &crate::model::Client, notice: LogoutNotice, out: &mut Vec<Delivery>| {
            let key = (
                client.client_id.as_str().to_owned(),
                notice.sid.as_ref().map(|s| s.as_str().to_owned()),
            );
            if !client
                .oidc_logout
                .backchannel_logout_initiators
                .allows(req.initiator)
                || !notified.insert(key)
            {
                return;
            }
            for target in &client.oidc_logout.backchannel_logout_urls {
                out.push(Delivery {
                    kind: crate::model::DeliveryKind::BackchannelLogout,
                    id: DeliveryId::new(uuid::Uuid::now_v7().to_string()),
                    client_id: client.client_id.clone(),
                    target: target.clone(),
                    notice: notice.clone(),
                    jti: Jti::new(uuid::Uuid::new_v4().to_string()),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    created_at: now,
                    next_attempt_at: now,
                    locked_until: req.reserved_until,
                    last_error: None,
                    finished_at: None,
                });
            }
        };
    for s in sessions {
        for joined in &s.clients {
            let Some(client) = store.find_client(&joined.client_id).await? else {
                continue;
            };
            let notice = LogoutNotice {
                sub: Some(s.user_id.clone()),
                sid: Some(joined.sid.clone()),
                initiator: req.initiator,
                email: None,
            };
            push(&client, notice, out);
        }
    }
    let session_clients: HashSet<&str> = sessions
        .iter()
        .flat_map(|s| s.clients.iter().map(|c| c.client_id.as_str()))
        .collect();
    let mut seen = HashSet::new();
    for t in token_holders {
        if session_clients.contains(t.client_id.as_str()) || !seen.insert(t.client_id.as_str()) {
            continue;
        }
        let Some(client) = store.find_client(&t.client_id).await? else {
            continue;
        };
        let notice = LogoutNotice {
            sub: Some(t.user_id.clone()),
            sid: None,
            initiator: req.initiator,
            email: None,
        };
        push(&client, notice, out);
    }
    Ok(())
}
