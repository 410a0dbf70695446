//! OpenID Connect Back-Channel Logout 1.0, fed by the durable outbox that
//! `latch_core::logout::terminate` fills before it ends any session.
//!
//! Workers on any instance claim due deliveries with a lease, sign a logout token per attempt
//! (same `jti` every time), POST it as `logout_token` without following redirects, and record the
//! outcome: delivered on 2xx; failed for good on other 4xx (the app rejected the token); retried
//! with exponential backoff and jitter on network errors, 408, 429 and 5xx until the delivery is
//! older than `Settings::retry_for`. A delivery whose worker died is claimed again when its
//! lease runs out.
//!
//! The same workers send Global Token Revocation to apps (`DeliveryKind::Gtr`): Okta's request,
//! a bearer token `typ: global-token-revocation+jwt` signed afresh for each attempt (own `jti`,
//! 5 minutes) and `{"subject": …}`; retried on network errors and 5xx, never on a 4xx.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use latch_core::logout::Notifier;
use latch_core::model::{Delivery, DeliveryKind, DeliveryState, LogEvent, SigningAlg};
use latch_core::net::{FetchError, OutboundPolicy};
use latch_core::store::Store;
use latch_core::{ClientId, Clock};
use latch_http::client::Outbound;
use latch_jose::KeyRing;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;

/// The back-channel logout event (OIDC Back-Channel Logout 1.0 §2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a GTR request token lives (Okta's: 5 minutes).
pub const GTR_TOKEN_LIFETIME: Duration = Duration::minutes(5);

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a worker holds a claimed delivery before another may take it.
    pub lease: Duration,
    /// Give up on a delivery this long after it was recorded.
    pub retry_for: Duration,
    /// Per-request timeout.
    pub request_timeout: StdDuration,
    /// Deliveries in flight, overall and per client.
    pub concurrency: usize,
    pub per_client: usize,
    /// Idle poll interval (the first attempt of a new delivery starts within about this).
    pub poll: StdDuration,
    /// First retry delay, doubling up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Lifetime of a logout token.
    pub token_lifetime: Duration,
    /// Which addresses deliveries may reach (checked again after DNS resolution).
    pub outbound: OutboundPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::seconds(30),
            retry_for: Duration::hours(24),
            request_timeout: StdDuration::from_secs(5),
            concurrency: 64,
            per_client: 8,
            poll: StdDuration::from_millis(250),
            first_backoff: Duration::seconds(1),
            max_backoff: Duration::seconds(30),
            token_lifetime: Duration::minutes(2),
            outbound: OutboundPolicy::default(),
        }
    }
}

pub struct Backchannel {
    /// Outcomes waiting to be written, in batches (see `recorder`).
    outcomes: tokio::sync::mpsc::UnboundedSender<Delivery>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyRing>,
    issuer: String,
    http: Outbound,
    settings: Settings,
    slots: Arc<Semaphore>,
    per_client: Mutex<HashMap<ClientId, Arc<Semaphore>>>,
    /// Ends the worker's idle wait when new deliveries are recorded here.
    due: tokio::sync::Notify,
    /// Set with `due`: deliveries were recorded since the worker last claimed.
    fresh: AtomicBool,
    /// Deliveries leased to this instance (reserved when recorded here, or claimed), waiting
    /// for a slot.
    ready: Mutex<VecDeque<Delivery>>,
}

/// Deliveries recorded here are reserved for this instance while fewer than this many slots'
/// worth wait; beyond that they are recorded for any instance's workers.
const RESERVE_SLOTS: usize = 64;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Delivered(u16),
    Rejected(String),
    Retry(String),
}

impl Backchannel {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keys: Arc<KeyRing>,
        issuer: String,
        settings: Settings,
    ) -> Self {
        // Needs a Tokio runtime: this starts the task that writes attempt outcomes.
        let (outcomes, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(recorder(store.clone(), rx));
        Self {
            outcomes,
            http: Outbound::new(settings.outbound.clone(), settings.request_timeout),
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            per_client: Mutex::default(),
            due: tokio::sync::Notify::new(),
            fresh: AtomicBool::new(false),
            ready: Mutex::default(),
            store,
            clock,
            keys,
            issuer,
            settings,
        }
    }

    /// The logout token for one attempt: `typ: logout+jwt`, `iss`, `aud`, `iat`, `exp`, the
    /// delivery's `jti`, `sub` and/or `sid`, the `events` claim, and never a `nonce`.
    pub async fn logout_token(&self, d: &Delivery, now: OffsetDateTime) -> Result<String, String> {
        let alg = match self.store.find_client(&d.client_id).await {
            Ok(Some(c)) => c.signing_alg,
            Ok(None) => SigningAlg::RS256,
            Err(e) => return Err(format!("store: {e}")),
        };
        let iat = now.unix_timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": d.client_id,
            "iat": iat,
            "exp": iat + self.settings.token_lifetime.whole_seconds(),
            "jti": d.jti,
            "events": { EVENT: {} },
        });
        if let Some(sub) = &d.notice.sub {
            claims["sub"] = json!(sub);
        }
        if let Some(sid) = &d.notice.sid {
            claims["sid"] = json!(sid);
        }
        self.keys
            .sign(alg, "logout+jwt", &claims)
            .map_err(|e| e.to_string())
    }

    /// One attempt's Global Token Revocation request, as Okta sends it: the bearer token
    /// (`typ: global-token-revocation+jwt`, signed with the current RS256 key; `iss` Latch,
    /// `sub` the app's `client_id`, `aud` the endpoint, `iat`, `nbf`, `exp` 5 minutes later and
    /// a fresh `jti`, since each attempt is a new token) and the JSON body naming the user.
    pub fn gtr_request(
        &self,
        d: &Delivery,
        endpoint: &str,
        now: OffsetDateTime,
    ) -> Result<(String, Value), String> {
        let iat = now.unix_timestamp();
        let claims = json!({
            "iss": self.issuer,
            "sub": d.client_id,
            "aud": endpoint,
            "iat": iat,
            "nbf": iat,
            "exp": iat + GTR_TOKEN_LIFETIME.whole_seconds(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let subject = match (&d.notice.email, &d.notice.sub) {
            (Some(email), _) => json!({"format": "email", "email": email}),
            (None, Some(sub)) => json!({"format": "iss_sub", "iss": self.issuer, "sub": sub}),
            (None, None) => return Err("the delivery names no user".into()),
        };
        let token = self
            .keys
            .sign(SigningAlg::RS256, "global-token-revocation+jwt", &claims)
            .map_err(|e| e.to_string())?;
        Ok((token, json!({ "subject": subject })))
    }

    /// Sends one attempt of a delivery the way its kind is sent. A new kind adds its arm (and
    /// its sender) here; the claim, lease, backoff and recording around it are shared.
    async fn send(&self, d: &Delivery, now: OffsetDateTime) -> Outcome {
        match d.kind {
            DeliveryKind::BackchannelLogout => match self.logout_token(d, now).await {
                Ok(token) => {
                    // A compact JWS is base64url and dots, which form encoding leaves as they
                    // are.
                    debug_assert!(
                        token
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    );
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                    self.post(
                        d.target.as_str(),
                        d.kind,
                        headers,
                        format!("logout_token={token}").into_bytes(),
                    )
                    .await
                }
                Err(e) => Outcome::Retry(e),
            },
            DeliveryKind::Gtr => {
                // Sent where the app takes it now: an app that stopped taking GTR (or was
                // deleted) is not sent one, and one whose endpoint an administrator corrected
                // gets a retry or replay at the new one.
                let endpoint = match self.store.find_client(&d.client_id).await {
                    Ok(Some(c)) => match c.global_token_revocation {
                        Some(g) => g.endpoint,
                        None => {
                            return Outcome::Rejected(
                                "the app no longer takes Global Token Revocation".into(),
                            );
                        }
                    },
                    Ok(None) => return Outcome::Rejected("the app was deleted".into()),
                    Err(e) => return Outcome::Retry(format!("store: {e}")),
                };
                self.send_gtr(d, endpoint.as_str(), now).await
            }
        }
    }

    async fn send_gtr(&self, d: &Delivery, endpoint: &str, now: OffsetDateTime) -> Outcome {
        {
            match self.gtr_request(d, endpoint, now) {
                Ok((token, body)) => {
                    let mut headers = HeaderMap::new();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    match HeaderValue::from_str(&format!("Bearer {token}")) {
                        Ok(v) => {
                            headers.insert(AUTHORIZATION, v);
                        }
                        Err(e) => return Outcome::Retry(e.to_string()),
                    }
                    self.post(endpoint, d.kind, headers, body.to_string().into_bytes())
                        .await
                }
                Err(e) => Outcome::Retry(e),
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        kind: DeliveryKind,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Outcome {
        // Only the status matters: at most a few KiB of the answer are read.
        let res = self.http.post_for_status_with(url, headers, body).await;
        match res {
            Ok(status) => {
                let s = status.as_u16();
                match s {
                    200..=299 => Outcome::Delivered(s),
                    // GTR is retried on 5xx only: Okta's senders never retry a 4xx.
                    408 | 429 if kind == DeliveryKind::BackchannelLogout => {
                        Outcome::Retry(format!("HTTP {s}"))
                    }
                    500..=599 => Outcome::Retry(format!("HTTP {s}")),
                    300..=399 => Outcome::Rejected(format!("HTTP {s}: redirects are not followed")),
                    _ => Outcome::Rejected(format!("HTTP {s}")),
                }
            }
            Err(FetchError::Timeout) => Outcome::Retry("timeout".into()),
            Err(FetchError::Connect(_)) => Outcome::Retry("connection failed".into()),
            // A refused address stays refused: retrying cannot help.
            Err(e @ (FetchError::Refused(_) | FetchError::BadUrl)) => {
                Outcome::Rejected(e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let exp = attempts.clamp(1, 16) - 1;
        let base =
            (self.settings.first_backoff * 2i32.pow(exp as u32)).min(self.settings.max_backoff);
        // ±20% jitter, so a burst of failures does not retry in lockstep.
        let mut b = [0u8; 2];
        let _ = aws_lc_rs::rand::fill(&mut b);
        let jitter = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.4 - 0.2;
        base + base * jitter
    }

    /// One attempt of a claimed delivery; records the outcome and logs it.
    pub async fn attempt(&self, mut d: Delivery) -> Delivery {
        let permit = {
            let sem = {
                let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
                m.entry(d.client_id.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_client)))
                    .clone()
            };
            sem.acquire_owned().await.ok()
        };
        let now = self.clock.now();
        let outcome = self.send(&d, now).await;
        drop(permit);
        let finished = self.clock.now();
        d.attempts += 1;
        d.locked_until = None;
        match &outcome {
            Outcome::Delivered(_) => {
                d.state = DeliveryState::Delivered;
                d.finished_at = Some(finished);
                d.last_error = None;
            }
            Outcome::Rejected(e) => {
                d.state = DeliveryState::Failed;
                d.finished_at = Some(finished);
                d.last_error = Some(e.clone());
            }
            Outcome::Retry(e) => {
                d.last_error = Some(e.clone());
                let next = finished + self.backoff(d.attempts);
                if next - d.created_at > self.settings.retry_for {
                    d.state = DeliveryState::Failed;
                    d.finished_at = Some(finished);
                    d.last_error = Some(format!("{e}; gave up after {} attempts", d.attempts));
                } else {
                    d.next_attempt_at = next;
                }
            }
        }
        // Written in a batch shortly: until then the lease keeps other workers off it, and if the
        // write is lost the lease runs out and the delivery is sent again (at least once).
        if self.outcomes.send(d.clone()).is_err() {
            tracing::error!(delivery = %d.id, "back-channel outcome recorder stopped");
        }
        {
            use latch_core::metrics::{Channel, Outcome};
            latch_core::metrics::delivery(
                match d.kind {
                    DeliveryKind::BackchannelLogout => Channel::Backchannel,
                    DeliveryKind::Gtr => Channel::Gtr,
                },
                match d.state {
                    DeliveryState::Delivered => Outcome::Delivered,
                    DeliveryState::Pending => Outcome::Retry,
                    DeliveryState::Failed => Outcome::Failed,
                },
            );
        }
        let (kind, description) = match (d.kind, d.state) {
            (DeliveryKind::BackchannelLogout, DeliveryState::Delivered) => (
                "oidc_backchannel_logout_succeeded",
                "Back-channel logout delivered",
            ),
            (DeliveryKind::BackchannelLogout, DeliveryState::Failed) => (
                "oidc_backchannel_logout_failed",
                "Back-channel logout failed",
            ),
            (DeliveryKind::BackchannelLogout, DeliveryState::Pending) => (
                "oidc_backchannel_logout_failed",
                "Back-channel logout attempt failed; will retry",
            ),
            (DeliveryKind::Gtr, DeliveryState::Delivered) => (
                "gtr_delivery_succeeded",
                "Global Token Revocation delivered",
            ),
            (DeliveryKind::Gtr, DeliveryState::Failed) => {
                ("gtr_delivery_failed", "Global Token Revocation failed")
            }
            (DeliveryKind::Gtr, DeliveryState::Pending) => (
                "gtr_delivery_failed",
                "Global Token Revocation attempt failed; will retry",
            ),
        };
        tracing::info!(delivery = %d.id, kind = d.kind.as_str(), client = %d.client_id, outcome = ?outcome, attempts = d.attempts, "logout delivery");
        let mut details = json!({
            "delivery_id": d.id,
            "kind": d.kind.as_str(),
            "target": d.target.as_str(),
            "attempts": d.attempts,
            "state": d.state.as_str(),
            "error": d.last_error,
            "initiator": d.notice.initiator,
        });
        match d.kind {
            DeliveryKind::BackchannelLogout => details["sid"] = json!(d.notice.sid),
            DeliveryKind::Gtr => details["endpoint"] = json!(d.target.as_str()),
        }
        let event = LogEvent {
            user_id: d.notice.sub.clone(),
            client_id: Some(d.client_id.clone()),
            details,
            ..LogEvent::new(finished, kind, description)
        };
        let _ = self.store.insert_log(&event).await;
        d
    }

    /// Claims up to `limit` due deliveries (leased to this worker); empty on a store error.
    async fn claim(&self, limit: usize) -> Vec<Delivery> {
        let now = self.clock.now();
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        match self
            .store
            .claim_deliveries(now, now + self.settings.lease, limit)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim back-channel deliveries");
                Vec::new()
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker loop: runs until the task is dropped.
    ///
    /// Deliveries leased to this instance wait in a queue for a free slot: those reserved when
    /// they were recorded here (no claim needed), and those claimed from the store. The next
    /// batch is claimed while half a set of slots' worth is still waiting, so the slots do not
    /// run dry while a claim is on its way to the database, and one claim serves many.
    pub async fn run(self: Arc<Self>) {
        let cap = self.settings.concurrency.max(1);
        // The last claim found fewer than it asked for: claim again when deliveries were
        // recorded here without a reservation, or once the queue is empty and a poll interval
        // has passed since that claim; not for every delivery handed out, nor after every
        // logout whose deliveries came reserved (they are in the queue already).
        let mut drained = false;
        let mut last_claim: Option<tokio::time::Instant> = None;
        loop {
            if self.fresh.swap(false, Ordering::AcqRel) {
                drained = false;
            }
            let waiting = self.queue().len();
            let poll_due = last_claim.is_none_or(|t| t.elapsed() >= self.settings.poll);
            if waiting <= cap / 2 && (!drained || (waiting == 0 && poll_due)) {
                let want = 2 * cap - waiting;
                let claimed = self.claim(want).await;
                last_claim = Some(tokio::time::Instant::now());
                drained = claimed.len() < want;
                self.queue().extend(claimed);
            }
            let next = self.queue().pop_front();
            let Some(d) = next else {
                let until =
                    last_claim.map_or_else(tokio::time::Instant::now, |t| t + self.settings.poll);
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    () = self.due.notified() => {}
                }
                continue;
            };
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            // One that waited here past most of its lease is left to a later claim, so no other
            // worker can be sending it at the same time.
            let left = d.locked_until.map(|t| t - self.clock.now());
            if left.is_none_or(|l| l < self.settings.lease / 2) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                me.attempt(d).await;
                drop(permit);
            });
        }
    }
}

/// The [`Notifier`] the core Logout service hands deliveries to: this instance's outbox workers.
/// `deliver_now` tries deliveries at once, in parallel; attempts go on in the background past
/// the caller's bound, so none is cut off half-way.
pub struct OutboxNotifier(pub Arc<Backchannel>);

#[async_trait]
impl Notifier for OutboxNotifier {
    fn reserve_until(&self) -> Option<OffsetDateTime> {
        let bc = &self.0;
        (bc.queue().len() < RESERVE_SLOTS * bc.settings.concurrency.max(1))
            .then(|| bc.clock.now() + bc.settings.lease)
    }

    async fn deliver_now(&self, deliveries: &[Delivery], within: StdDuration) {
        let now = self.0.clock.now();
        let tasks: Vec<_> = deliveries
            .iter()
            .map(|d| {
                let (me, d) = (self.0.clone(), d.clone());
                tokio::spawn(async move {
                    // Reserved for this instance when recorded, or claimed first, so a worker
                    // does not send the same token at the same time.
                    let mine = if reserved_here(&d, now) {
                        Some(d)
                    } else {
                        let lease = now + me.settings.lease;
                        me.store
                            .claim_delivery(&d.id, now, lease)
                            .await
                            .ok()
                            .flatten()
                    };
                    if let Some(d) = mine {
                        me.attempt(d).await;
                    }
                })
            })
            .collect();
        let _ = tokio::time::timeout(within, futures_util::future::join_all(tasks)).await;
    }

    fn dispatch(&self, deliveries: &[Delivery]) {
        let bc = &self.0;
        if deliveries.is_empty() {
            return;
        }
        let now = bc.clock.now();
        // Reserved ones go straight to the queue; the others are claimed from the store.
        let reserved: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| reserved_here(d, now))
            .cloned()
            .collect();
        if reserved.len() < deliveries.len() {
            bc.fresh.store(true, Ordering::Release);
        }
        bc.queue().extend(reserved);
        // Wakes the idle worker, or lets its next wait end at once (the permit is kept).
        bc.due.notify_one();
    }
}

/// A delivery recorded here with a live reservation ([`Notifier::reserve_until`]): this
/// instance's to send without a claim.
fn reserved_here(d: &Delivery, now: OffsetDateTime) -> bool {
    d.locked_until.is_some_and(|t| t > now)
}

/// Writes attempt outcomes in batches: one transaction for many deliveries.
async fn recorder(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        if let Err(e) = store.record_attempts(&batch).await {
            tracing::error!(error = %e, deliveries = batch.len(), "could not record back-channel attempts; their leases will lapse and they will be sent again");
        }
    }
}
