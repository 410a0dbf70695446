//! Log streams (Auth0's): every log event that passes a stream's filters is POSTed to the
//! stream's HTTP endpoint, in batches, at least once, in order per stream.
//!
//! The queue is the store's (`latch_core::store::LogStreamRepo`): the log writer queues each
//! event for every stream it passes, in the transaction that writes the event. [`LogStreams::run`]
//! is the worker loop every instance runs: it leases one ready stream at a time (only one worker
//! anywhere holds a stream, so its batches go out in order), POSTs its oldest queued events
//! (up to [`Settings::batch`]) through `latch_http::client::Outbound` (address policy, no
//! redirects, timeouts), and on a 2xx drops them from the queue. Anything else keeps them: the
//! same batch is tried again first, after 1 s doubling to 5 minutes; a stream that has failed
//! for [`Settings::suspend_after`] (24 hours) is `suspended` with the last error as the reason,
//! until an admin sets it `active` again. Paused and suspended streams are not sent; their
//! events wait. The first failure of a streak and a suspension are logged as
//! `log_stream_failed`. Each attempt is counted as a delivery of channel `log_stream`:
//! `delivered` on a 2xx, `retry` on a failure, `failed` on the one that suspends the stream.
//!
//! Each event is sent as `{"log_id": …, "data": {…}}`, `data` being the event as `GET
//! /api/v2/logs` returns it; `JSONLINES` sends one per line, `JSONARRAY` an array of them, with
//! the stream's `httpContentType`, its `httpAuthorization` as the `Authorization` header and its
//! `httpCustomHeaders`.
//!
//! A worker's outcome is fenced by its lease: its ack (exactly the events it sent) and its
//! failure are recorded only while the stream's lease is still the one it claimed with, so a
//! worker whose lease lapsed and was taken over changes nothing; and a failure is not recorded
//! over an administrator's resume that came while the attempt ran.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use latch_core::Clock;
use latch_core::model::{
    LOG_STREAM_FAILED, LogEvent, LogStream, LogStreamEvent, LogStreamFailure, LogStreamStatus,
    log_text,
};
use latch_core::net::OutboundPolicy;
use latch_core::store::Store;
use latch_http::client::Outbound;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;

/// How the workers send.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most events in one request.
    pub batch: u32,
    /// How long a worker holds a claimed stream before another may take it (longer than a
    /// request may take).
    pub lease: Duration,
    /// Per-request timeout.
    pub request_timeout: StdDuration,
    /// Idle poll interval: new events go out within about this.
    pub poll: StdDuration,
    /// First retry delay after a failure, doubling up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A stream failing for this long is suspended.
    pub suspend_after: Duration,
    /// Streams sent at once by this instance.
    pub concurrency: usize,
    /// How often queued events of deleted streams are purged.
    pub purge_every: StdDuration,
    /// Which addresses sinks may be at (checked again after DNS resolution).
    pub outbound: OutboundPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: 100,
            lease: Duration::seconds(60),
            request_timeout: StdDuration::from_secs(10),
            poll: StdDuration::from_millis(250),
            first_backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(5),
            suspend_after: Duration::hours(24),
            concurrency: 8,
            purge_every: StdDuration::from_secs(60),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The log stream workers of one instance.
pub struct LogStreams {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    http: Outbound,
    settings: Settings,
}

impl LogStreams {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        let http = Outbound::new(settings.outbound.clone(), settings.request_timeout);
        Self {
            store,
            clock,
            http,
            settings,
        }
    }

    /// The worker loop: claims ready streams and sends them, up to `concurrency` at once; polls
    /// every `poll` when nothing is ready. Runs until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut purged = tokio::time::Instant::now();
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let now = self.clock.now();
            let lease = now + self.settings.lease;
            match self
                .store
                .claim_log_stream(now, lease, self.settings.batch)
                .await
            {
                Ok(Some((stream, events))) => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.deliver(stream, events, lease).await;
                        drop(slot);
                    });
                    // Another stream may be ready too.
                    continue;
                }
                Ok(None) => drop(slot),
                Err(e) => {
                    drop(slot);
                    tracing::warn!(error = %e, "could not claim a log stream");
                }
            }
            if purged.elapsed() >= self.settings.purge_every {
                purged = tokio::time::Instant::now();
                match self.store.purge_orphan_log_stream_events().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!(purged = n, "queued events of deleted log streams purged")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not purge deleted log streams' events")
                    }
                }
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Sends one batch claimed with the lease `lease` (`claim_log_stream`'s `lease_until`) and
    /// records the outcome: an ack of exactly the events sent, or a failure with its backoff.
    /// Either is recorded only while the lease is still this worker's.
    pub async fn deliver(
        &self,
        stream: LogStream,
        events: Vec<LogStreamEvent>,
        lease: OffsetDateTime,
    ) {
        if events.is_empty() {
            // Claimed with nothing queued (retention purged it in between): give it back.
            let _ = self.store.ack_log_stream(&stream.id, lease, &[]).await;
            return;
        }
        match self.send(&stream, &events).await {
            Ok(()) => {
                latch_core::metrics::delivery(
                    latch_core::metrics::Channel::LogStream,
                    latch_core::metrics::Outcome::Delivered,
                );
                let sent: Vec<i64> = events.iter().map(|e| e.seq).collect();
                match self.store.ack_log_stream(&stream.id, lease, &sent).await {
                    Ok(true) => {}
                    // The lease lapsed and another worker took the stream: it sends these
                    // events again (at least once).
                    Ok(false) => {
                        tracing::info!(stream = %stream.id, "log stream lease lost before its ack")
                    }
                    // Sent but not acknowledged: the lease lapses and the batch is sent again
                    // (at least once).
                    Err(e) => {
                        tracing::warn!(error = %e, stream = %stream.id, "could not record a log stream delivery")
                    }
                }
            }
            Err(error) => self.failed(&stream, lease, error).await,
        }
    }

    async fn failed(&self, stream: &LogStream, lease: OffsetDateTime, error: String) {
        let now = self.clock.now();
        let failures = stream.failures.saturating_add(1);
        let failing_since = stream.failing_since.unwrap_or(now);
        let suspend = now - failing_since >= self.settings.suspend_after;
        let f = LogStreamFailure {
            failures,
            failing_since,
            error: error.clone(),
            next_attempt_at: now + backoff(&self.settings, failures),
            suspend,
        };
        tracing::info!(stream = %stream.id, failures, suspend, error = %error, "log stream delivery failed");
        latch_core::metrics::delivery(
            latch_core::metrics::Channel::LogStream,
            if suspend {
                latch_core::metrics::Outcome::Failed
            } else {
                latch_core::metrics::Outcome::Retry
            },
        );
        match self.store.fail_log_stream(&stream.id, lease, &f).await {
            Ok(true) => {}
            // Another worker took the stream over, or an administrator set it `active` (its
            // failures forgotten) while this attempt ran: theirs stands.
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, stream = %stream.id, "could not record a log stream failure");
                return;
            }
        }
        // Logged once per streak and on suspension, not per retry: the event streams too.
        if failures == 1 || suspend {
            let status = if suspend {
                LogStreamStatus::Suspended
            } else {
                LogStreamStatus::Active
            };
            let event = LogEvent {
                details: serde_json::json!({
                    "stream_id": stream.id,
                    "name": stream.name,
                    "error": error,
                    "failures": failures,
                    "status": status.as_str(),
                }),
                ..LogEvent::new(
                    now,
                    LOG_STREAM_FAILED,
                    if suspend {
                        "Log stream suspended: delivery failed for too long"
                    } else {
                        "Log stream delivery failed; retrying"
                    },
                )
            };
            if let Err(e) = self.store.insert_log(&event).await {
                tracing::warn!(error = %e, "could not log a log stream failure");
            }
        }
    }

    /// POSTs the batch; `Err` says what failed (never the sink's answer, never the
    /// authorization).
    async fn send(&self, stream: &LogStream, events: &[LogStreamEvent]) -> Result<(), String> {
        let items: Vec<String> = events.iter().map(LogStreamEvent::item).collect();
        let body = stream.sink.content_format.body(&items);
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(&stream.sink.content_type)
            .map_err(|_| "httpContentType is not a valid header value".to_owned())?;
        headers.insert(CONTENT_TYPE, content_type);
        if let Some(a) = &stream.sink.authorization {
            let mut v = HeaderValue::from_str(a.expose())
                .map_err(|_| "httpAuthorization is not a valid header value".to_owned())?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        for (name, value) in &stream.sink.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| "httpCustomHeaders has an invalid header name".to_owned())?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| "httpCustomHeaders has an invalid header value".to_owned())?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        let status = self
            .http
            .post_for_status_with(&stream.sink.endpoint, headers, body.into_bytes())
            .await
            .map_err(|e| log_text(&e.to_string(), 200))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

/// The delay before attempt `failures + 1`: `first_backoff` doubling per failure, at most
/// `max_backoff`.
pub fn backoff(s: &Settings, failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let d = s.first_backoff * 2f64.powi(doublings as i32);
    d.min(s.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Settings::default();
        assert_eq!(backoff(&s, 1), Duration::seconds(1));
        assert_eq!(backoff(&s, 2), Duration::seconds(2));
        assert_eq!(backoff(&s, 5), Duration::seconds(16));
        assert_eq!(backoff(&s, 9), Duration::seconds(256));
        assert_eq!(backoff(&s, 10), Duration::minutes(5));
        assert_eq!(backoff(&s, 1000), Duration::minutes(5));
        assert_eq!(backoff(&s, 0), Duration::seconds(1));
    }
}
