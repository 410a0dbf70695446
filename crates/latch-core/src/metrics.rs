//! What Latch counts for Prometheus, named once: every family and label value the crates record.
//!
//! Crates call these functions where the event happens. They go through the `metrics` facade,
//! which does nothing until the binary installs its recorder (`latch_server::metrics`), and cost
//! an atomic add on a registered handle: no lock held across an await, no I/O, nothing a request
//! waits for. Counters count over the process's life.

use crate::model::{LogoutInitiator, Strategy};

/// Requests answered, by `route` (the route template, or [`UNMATCHED_ROUTE`]) and `status`.
pub const HTTP_REQUESTS: &str = "latch_http_requests_total";
/// Time to the response head, seconds, by `route` (histogram).
pub const HTTP_DURATION: &str = "latch_http_request_duration_seconds";
/// The `route` of a request no route matched (any path, so never the path itself).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Global Token Revocation requests received, by `result` ([`GtrResult`]).
pub const GTR_REQUESTS: &str = "latch_gtr_requests_total";
/// Delivery attempts of logout notices and log events, by `channel` and `outcome`.
pub const LOGOUT_DELIVERIES: &str = "latch_logout_deliveries_total";
/// Pending outbox deliveries (all instances'), read at scrape time.
pub const OUTBOX_PENDING: &str = "latch_outbox_pending";
/// Sessions ended, by `initiator`.
pub const SESSIONS_ENDED: &str = "latch_sessions_ended_total";
/// Sign-in attempts, by `strategy` and `result` ([`SigninResult`]).
pub const SIGNINS: &str = "latch_signins_total";
/// Failed Redis commands of the session store, by `kind` (`unavailable`: connection, I/O or
/// timeout; `error`: any other).
pub const REDIS_ERRORS: &str = "latch_redis_errors_total";
/// Database pool connections, by `state` (`in_use`, `idle`), read at scrape time.
pub const DB_POOL_CONNECTIONS: &str = "latch_db_pool_connections";
/// The database pool's size limit.
pub const DB_POOL_MAX: &str = "latch_db_pool_max_connections";
/// Requests being handled now (what `LATCH_MAX_CONCURRENT_REQUESTS` bounds), read at scrape time.
pub const HTTP_IN_FLIGHT: &str = "latch_http_requests_in_flight";
/// Log events dropped because the log writer fell its bounded queue behind, read at scrape time.
pub const LOG_EVENTS_DROPPED: &str = "latch_log_events_dropped_total";

/// How a sign-in attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninResult {
    /// A new session (the `s` event of a checked sign-in).
    Success,
    /// An app joined a live session (the `s` event of single sign-on); no credentials checked.
    Sso,
    /// Credentials or the IdP's answer refused (an `f` event).
    Failure,
    /// Refused unchecked while a throttle delay runs (`limit_wc` / `limit_mu`).
    Throttled,
    /// Latch could not decide: its store, or the IdP, was unavailable.
    Error,
}

impl SigninResult {
    pub const ALL: [Self; 5] = [
        Self::Success,
        Self::Sso,
        Self::Failure,
        Self::Throttled,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Sso => "sso",
            Self::Failure => "failure",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// How the GTR endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GtrResult {
    /// 204: the user's sessions ended.
    Accepted,
    /// 400, 401 or 403: a bad request, token, replay, or a connection unknown or without
    /// Universal Logout.
    Rejected,
    /// 404: a valid request naming no user of the connection.
    UnknownUser,
    /// 503: Latch's store or session store failed.
    Error,
}

impl GtrResult {
    pub const ALL: [Self; 4] = [
        Self::Accepted,
        Self::Rejected,
        Self::UnknownUser,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::UnknownUser => "unknown_user",
            Self::Error => "error",
        }
    }
}

/// What is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// An OpenID Connect back-channel logout token.
    Backchannel,
    /// A Global Token Revocation request to an app.
    Gtr,
    /// A batch of log events to a log stream's sink.
    LogStream,
}

impl Channel {
    pub const ALL: [Self; 3] = [Self::Backchannel, Self::Gtr, Self::LogStream];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backchannel => "backchannel",
            Self::Gtr => "gtr",
            Self::LogStream => "log_stream",
        }
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Failed; it will be tried again.
    Retry,
    /// Failed for good (refused, or retried for too long; a log stream suspended).
    Failed,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Delivered, Self::Retry, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

/// The `initiator` label: the back-channel initiator names; a session replaced at sign-in counts
/// as `rp-logout`, as apps' initiator choices count it.
pub fn initiator_label(i: LogoutInitiator) -> &'static str {
    i.selected_as().as_str()
}

/// A sign-in attempt through a connection of `strategy`.
pub fn signin(strategy: Strategy, result: SigninResult) {
    metrics::counter!(SIGNINS, "strategy" => strategy.as_str(), "result" => result.as_str())
        .increment(1);
}

/// `n` sessions ended by `initiator`.
pub fn sessions_ended(initiator: LogoutInitiator, n: usize) {
    if n > 0 {
        metrics::counter!(SESSIONS_ENDED, "initiator" => initiator_label(initiator))
            .increment(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// A GTR request received, answered as `result` says.
pub fn gtr_request(result: GtrResult) {
    metrics::counter!(GTR_REQUESTS, "result" => result.as_str()).increment(1);
}

/// One delivery attempt.
pub fn delivery(channel: Channel, outcome: Outcome) {
    metrics::counter!(LOGOUT_DELIVERIES, "channel" => channel.as_str(), "outcome" => outcome.as_str())
        .increment(1);
}

/// A failed Redis command; `unavailable` when Redis could not be reached in time.
pub fn redis_error(unavailable: bool) {
    let kind = if unavailable { "unavailable" } else { "error" };
    metrics::counter!(REDIS_ERRORS, "kind" => kind).increment(1);
}

/// Registers the Redis error series at 0 (for a deployment whose sessions are in Redis).
pub fn register_redis() {
    for kind in ["unavailable", "error"] {
        metrics::counter!(REDIS_ERRORS, "kind" => kind).increment(0);
    }
}

/// Describes every family to the installed recorder and registers each counter series at 0, so
/// a rate is defined before the first event. Idempotent.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template and status code."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its response head, by route template."
    );
    describe_counter!(
        GTR_REQUESTS,
        "Global Token Revocation requests received, by result (accepted, rejected, unknown_user, error)."
    );
    describe_counter!(
        LOGOUT_DELIVERIES,
        "Delivery attempts by channel (backchannel, gtr, log_stream) and outcome (delivered, retry, failed)."
    );
    describe_gauge!(
        OUTBOX_PENDING,
        "Logout deliveries (back-channel and GTR) waiting in the outbox, every instance's."
    );
    describe_counter!(SESSIONS_ENDED, "Sessions ended, by initiator.");
    describe_counter!(
        SIGNINS,
        "Sign-in attempts by connection strategy and result (success, sso, failure, throttled, error)."
    );
    describe_counter!(
        REDIS_ERRORS,
        "Failed Redis commands of the session store, by kind (unavailable, error)."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections by state (in_use, idle)."
    );
    describe_gauge!(DB_POOL_MAX, "The database pool's size limit.");
    describe_gauge!(
        HTTP_IN_FLIGHT,
        "Requests being handled now (at most LATCH_MAX_CONCURRENT_REQUESTS; more are shed with 503)."
    );
    describe_counter!(
        LOG_EVENTS_DROPPED,
        "Log events dropped because the database fell too far behind the log writer."
    );
    for s in Strategy::ALL {
        for r in SigninResult::ALL {
            metrics::counter!(SIGNINS, "strategy" => s.as_str(), "result" => r.as_str())
                .increment(0);
        }
    }
    for i in LogoutInitiator::SELECTABLE {
        metrics::counter!(SESSIONS_ENDED, "initiator" => initiator_label(i)).increment(0);
    }
    for r in GtrResult::ALL {
        metrics::counter!(GTR_REQUESTS, "result" => r.as_str()).increment(0);
    }
    for c in Channel::ALL {
        for o in Outcome::ALL {
            metrics::counter!(LOGOUT_DELIVERIES, "channel" => c.as_str(), "outcome" => o.as_str())
                .increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiators_are_the_back_channel_names() {
        assert_eq!(
            initiator_label(LogoutInitiator::SessionReplaced),
            "rp-logout"
        );
        for i in LogoutInitiator::SELECTABLE {
            assert_eq!(initiator_label(i), i.as_str());
        }
    }
}
