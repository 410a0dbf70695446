//! `GET /metrics`: the Prometheus text exposition of what the crates count
//! ([`latch_core::metrics`]), the middleware that counts every request by route template and
//! status, and the gauges read when scraped (pending outbox deliveries, the database pool, the
//! process's memory, CPU and file descriptors).
//!
//! The recorder is `metrics-exporter-prometheus`'s, installed once per process on first use
//! ([`handle`]). Recording is an atomic add; nothing a request does waits on a lock held across an
//! await or on I/O for it. A scrape reads the pending count at most every [`OUTBOX_TTL`], waiting
//! at most [`OUTBOX_TIMEOUT`] for it.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::metrics::{
    DB_POOL_CONNECTIONS, DB_POOL_MAX, HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS,
    LOG_EVENTS_DROPPED, OUTBOX_PENDING, UNMATCHED_ROUTE,
};
use latch_core::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::app::AppState;

/// The route of the exposition.
pub const PATH: &str = "/metrics";

/// Upper bounds of the request duration histogram's buckets, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long one count of pending deliveries serves scrapes.
pub const OUTBOX_TTL: Duration = Duration::from_secs(5);
/// How long a scrape waits for that count; past it the gauge keeps its last value.
pub const OUTBOX_TIMEOUT: Duration = Duration::from_secs(1);
/// Pending deliveries are counted up to this many (the gauge then reads this).
pub const OUTBOX_COUNT_LIMIT: u64 = 100_000;

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

fn process() -> &'static metrics_process::Collector {
    PROCESS.get_or_init(|| metrics_process::Collector::new("latch_"))
}

/// The process's recorder, installed on the first call; `None` when another recorder was
/// installed first (Latch embedded in a program that has its own).
pub fn handle() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), DURATION_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(h) => {
                    latch_core::metrics::describe();
                    process().describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; GET /metrics answers 503");
                    None
                }
            }
        })
        .as_ref()
}

/// Folds histogram samples into their buckets now and then, so memory stays bounded when
/// nobody scrapes. Runs until aborted.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        if let Some(h) = handle() {
            h.run_upkeep();
        }
    }
}

/// What scrapes share: the last count of pending deliveries.
#[derive(Default)]
pub struct Scrape {
    outbox: Mutex<Option<(Instant, u64)>>,
}

impl Scrape {
    /// Pending deliveries: the last count while younger than [`OUTBOX_TTL`], else a new one
    /// within [`OUTBOX_TIMEOUT`]; `None` when that failed or took too long.
    async fn outbox_pending(&self, store: &dyn Store) -> Option<u64> {
        let cached = *self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, n)) = cached
            && at.elapsed() < OUTBOX_TTL
        {
            return Some(n);
        }
        match tokio::time::timeout(
            OUTBOX_TIMEOUT,
            store.count_pending_deliveries(OUTBOX_COUNT_LIMIT),
        )
        .await
        {
            Ok(Ok(n)) => {
                *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), n));
                Some(n)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: pending deliveries not counted");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: counting pending deliveries took too long");
                None
            }
        }
    }
}

/// Counts every request: `latch_http_requests_total{route,status}` and its duration. `route` is
/// the matched route's template (`/api/v2/users/{id}`), never the path; [`UNMATCHED_ROUTE`] when
/// no route matches.
pub async fn record_http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    res
}

/// Whether the request carries the metrics token (compared in constant time, as digests).
fn authorized(req: &HttpRequest, token: &str) -> bool {
    use aws_lc_rs::constant_time::verify_slices_are_equal;
    use aws_lc_rs::digest::{SHA256, digest};
    let Some(presented) = latch_http::auth::bearer(req) else {
        return false;
    };
    verify_slices_are_equal(
        digest(&SHA256, presented.as_bytes()).as_ref(),
        digest(&SHA256, token.as_bytes()).as_ref(),
    )
    .is_ok()
}

/// `GET /metrics`: every family in the Prometheus text format (0.0.4). With `LATCH_METRICS_TOKEN`
/// set, only for `Authorization: Bearer` that token (401 otherwise).
pub async fn get_metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(token) = &state.config.metrics_token
        && !authorized(&req, token)
    {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"latch\""))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "statusCode": 401, "error": "Unauthorized",
                "message": "Missing or invalid metrics token.", "errorCode": "invalid_token"
            }));
    }
    let Some(handle) = handle() else {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "statusCode": 503, "error": "Service Unavailable",
                "message": "Metrics are not recorded by this process.", "errorCode": "unavailable"
            }));
    };
    if let Some(n) = state.scrape.outbox_pending(&*state.store).await {
        metrics::gauge!(OUTBOX_PENDING).set(n as f64);
    }
    if let Some(pool) = state.store.pool_state() {
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(pool.in_use));
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!(DB_POOL_MAX).set(f64::from(pool.max));
    }
    metrics::gauge!(HTTP_IN_FLIGHT).set(state.shed.in_flight() as f64);
    metrics::counter!(LOG_EVENTS_DROPPED).absolute(state.store.log_events_dropped());
    process().collect();
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(handle.render())
}
