//! Load shedding: a request body must arrive within [`BODY_DEADLINE`] of the request head (a
//! stalled upload is answered 400 and frees its slot, so slots cannot be held by connections
//! that never finish sending); at most `LATCH_MAX_CONCURRENT_REQUESTS` requests are handled at once by an
//! instance; one more is answered `503` with `Retry-After` at once instead of queueing behind
//! a database or Redis that has slowed down (requests that wait on a stalled dependency hold
//! their slot until its timeout, so the limit is what stops them piling up). Health, readiness
//! and metrics have [`PROBE_SLOTS`] slots of their own. Every `503` leaves with a `Retry-After` (a handler's own value
//! is kept), so clients and load balancers back off instead of retrying at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use tokio::sync::Semaphore;

/// How long a request's body may take to arrive, from its head.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// A request body that fails once [`BODY_DEADLINE`] has passed.
struct Deadline {
    inner: actix_web::dev::Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl futures_util::Stream for Deadline {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ),
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Seconds a shed request, or any `503` without its own value, is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Probes: answered whatever the load on the other slots (they must see the instance as it
/// is), from slots of their own, so a flood of them (each pings the database and Redis, or
/// renders the metrics) cannot pass the limit either.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Probe requests handled at once.
pub const PROBE_SLOTS: usize = 16;

/// The instance's request slots.
#[derive(Clone)]
pub struct Shed {
    slots: Arc<Semaphore>,
    probes: Arc<Semaphore>,
    limit: usize,
    /// Requests shed since the last warning, and when that was (seconds since the Unix epoch).
    shed_since_warning: Arc<std::sync::atomic::AtomicU64>,
    warned_at: Arc<std::sync::atomic::AtomicU64>,
}

impl Shed {
    pub fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            probes: Arc::new(Semaphore::new(PROBE_SLOTS)),
            limit,
            shed_since_warning: Arc::default(),
            warned_at: Arc::default(),
        }
    }

    /// One warning per minute at most, counting what was shed: under overload, a log line per
    /// shed request would be more work exactly when there is least room for it.
    fn note_shed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.shed_since_warning.fetch_add(1, Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.warned_at.load(Relaxed);
        if now >= last + 60
            && self
                .warned_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.shed_since_warning.fetch_sub(n, Relaxed);
            tracing::warn!(
                limit = self.limit,
                shed = n,
                "requests shed: the instance is at its concurrent request limit"
            );
        }
    }

    /// Requests being handled now (probes not counted).
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// Handles `req` in a slot, or sheds it; adds `Retry-After` to a `503` that has none.
    pub async fn handle(
        &self,
        mut req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let inner = req.take_payload();
        req.set_payload(actix_web::dev::Payload::Stream {
            payload: Box::pin(Deadline {
                inner,
                sleep: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
            }),
        });
        let slots = if PROBES.contains(&req.path()) {
            &self.probes
        } else {
            &self.slots
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.note_shed();
                return Ok(req.into_response(overloaded()));
            }
        };
        let mut res = next.call(req).await?.map_into_boxed_body();
        drop(permit);
        if res.status() == StatusCode::SERVICE_UNAVAILABLE
            && !res.headers().contains_key(RETRY_AFTER)
        {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        Ok(res)
    }
}

fn overloaded() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((RETRY_AFTER, RETRY_AFTER_SECS))
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({
            "statusCode": 503,
            "error": "Service Unavailable",
            "message": "Too many requests in progress; try again shortly.",
            "errorCode": "temporarily_unavailable",
        }))
}
