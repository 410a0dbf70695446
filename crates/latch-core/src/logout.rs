//! The one use-case that ends sessions. RP-initiated logout, SAML SLO, GTR, admin "clear
//! sessions" and upstream back-channel logout all call [`terminate`].
//!
//! **Invariant:** the outbound notifications are recorded in the durable outbox *before* anything
//! is deleted, so a crash between the two steps can only cause a logout token for a session that
//! still exists (harmless and retried), never a session that ended silently.

use std::collections::HashSet;

use thiserror::Error;
use time::OffsetDateTime;

use crate::model::{
    Delivery, DeliveryState, LogoutInitiator, LogoutNotice, RefreshToken, RevokeScope,
};
use crate::session::{Session, SessionStore};
use crate::store::Store;
use crate::{Clock, DeliveryId, Jti, SessionError, SessionId, StoreError, UserId};

/// Whose sessions end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One browser session (logout from an app, SAML SLO, upstream `sid` logout).
    Session(SessionId),
    /// Every session of a user, on every device (GTR, admin clear, upstream `sub` logout).
    User(UserId),
}

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
    pub target: Target,
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

/// Delivers recorded notifications. `latch-backchannel` implements it. Every path that ends
/// sessions asks it for a reservation, records through [`terminate`], then hands the deliveries
/// over: [`Notifier::dispatch`] when nobody waits for them (GTR, admin clear, upstream logout),
/// [`Notifier::deliver_now`] with a short bound when a browser goes back to an app next
/// (RP-initiated logout), so the app does not see the user return before its logout arrives.
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

/// Ends sessions, records back-channel deliveries first, then revokes refresh tokens.
pub async fn terminate(
    store: &dyn Store,
    sessions: &dyn SessionStore,
    clock: &dyn Clock,
    req: &Terminate,
) -> Result<Outcome, LogoutError> {
    let now = clock.now();

    // 1. What is about to end.
    let doomed = match &req.target {
        Target::Session(id) => sessions.find_session(id, now).await?.into_iter().collect(),
        Target::User(user) => sessions.list_user_sessions(user, now).await?,
    };
    let user = match &req.target {
        Target::User(u) => Some(u.clone()),
        Target::Session(_) => doomed.first().map(|s| s.user_id.clone()),
    };
    let token_holders = match (req.tokens, &user) {
        (TokenPolicy::AllOfUser, Some(u)) => store.list_user_refresh_tokens(u, now).await?,
        _ => Vec::new(),
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
    store.insert_deliveries(&deliveries).await?;

    // 3. End the sessions.
    let ended = match &req.target {
        Target::Session(id) => sessions
            .end_session(id)
            .await?
            .into_iter()
            .collect::<Vec<_>>(),
        Target::User(u) => sessions.end_user_sessions(u).await?,
    };
    // A session created between steps 1 and 3 ended too: record its notifications now.
    let raced: Vec<Session> = ended
        .iter()
        .filter(|s| !doomed.iter().any(|d| d.id == s.id))
        .cloned()
        .collect();
    if !raced.is_empty() {
        let mut late = Vec::new();
        plan_deliveries(store, &raced, &[], req, now, &mut notified, &mut late).await?;
        store.insert_deliveries(&late).await?;
        deliveries.extend(late);
    }

    // 4. Refresh tokens die with the sessions.
    let mut revoked_tokens = Vec::new();
    match req.tokens {
        TokenPolicy::AllOfUser => {
            if let Some(u) = &user {
                revoked_tokens = store
                    .revoke_refresh_tokens(&RevokeScope::User(u.clone()), now)
                    .await?;
            }
        }
        TokenPolicy::SessionBound => {
            for s in &ended {
                let scope = RevokeScope::Session {
                    session_id: s.id.clone(),
                    include_offline: false,
                };
                revoked_tokens.extend(store.revoke_refresh_tokens(&scope, now).await?);
            }
        }
    }

    Ok(Outcome {
        sessions: ended,
        revoked_tokens,
        deliveries,
    })
}

/// One delivery per (client, session) for clients with a back-channel URL, plus one `sub`-only
/// delivery per other client that holds a refresh token of the user.
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
            if !notified.insert(key) {
                return;
            }
            for target in &client.oidc_logout.backchannel_logout_urls {
                out.push(Delivery {
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
        };
        push(&client, notice, out);
    }
    Ok(())
}
