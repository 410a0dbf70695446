//! Load shedding: at most `LATCH_MAX_CONCURRENT_REQUESTS` requests are handled at once by an
//! instance; one more is answered `503` with `Retry-After` at once instead of queueing behind
//! a database or Redis that has slowed down (requests that wait on a stalled dependency hold
//! their slot until its timeout, so the limit is what stops them piling up). Health, readiness
//! and metrics are never shed. Every `503` leaves with a `Retry-After` (a handler's own value
//! is kept), so clients and load balancers back off instead of retrying at once.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use tokio::sync::Semaphore;

/// Seconds a shed request, or any `503` without its own value, is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Paths answered whatever the load: probes must see the instance as it is.
const NEVER_SHED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The instance's request slots.
#[derive(Clone)]
pub struct Shed {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Shed {
    pub fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// Handles `req` in a slot, or sheds it; adds `Retry-After` to a `503` that has none.
    pub async fn handle(
        &self,
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let permit = if NEVER_SHED.contains(&req.path()) {
            None
        } else {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::warn!(
                        limit = self.limit,
                        path = req.path(),
                        "request shed: the instance is at its concurrent request limit"
                    );
                    let res = overloaded();
                    return Ok(req.into_response(res));
                }
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
