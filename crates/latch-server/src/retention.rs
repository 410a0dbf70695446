//! Retention: log events older than `LATCH_LOG_RETENTION_DAYS` (and the events log streams hold
//! for their sinks, by the same date: a stream left paused or suspended keeps no more than the
//! log), delivered or failed back-channel deliveries finished more than
//! `LATCH_OUTBOX_RETENTION_HOURS` ago, and grants (with their refresh tokens) expired more than
//! [`GRANT_GRACE`] ago are deleted, in bounded batches, by every instance (the store's purges
//! are safe to run concurrently: on PostgreSQL each instance skips the rows another is deleting).
//! Pending deliveries are never purged.

use std::sync::Arc;

use latch_core::store::Store;
use latch_core::{Clock, StoreError};
use time::OffsetDateTime;

use crate::config::Config;

/// Rows deleted per statement: short transactions, so other writers are barely held up.
pub const BATCH: u32 = 1000;

/// How often a pass runs (the first one right at start, which catches up after a downtime); a
/// row outlives its retention by at most this.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(900);

/// Grants are kept this long past their expiry: an access token issued late in a refresh family
/// may outlive the family's end by its own lifetime (at most 30 days), and a token whose grant
/// is gone is refused.
pub const GRANT_GRACE: time::Duration = time::Duration::days(30);

/// What one pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub logs: u64,
    /// Events queued for log streams (held by a paused, suspended or failing stream).
    pub log_stream_events: u64,
    pub deliveries: u64,
    /// Expired grants (with their refresh tokens).
    pub grants: u64,
}

/// One pass at `now`: batches of at most `batch` rows until a batch comes back short.
pub async fn purge(
    store: &dyn Store,
    config: &Config,
    now: OffsetDateTime,
    batch: u32,
) -> Result<Purged, StoreError> {
    let log_cut = now - config.log_retention;
    let outbox_cut = now - config.outbox_retention;
    let mut purged = Purged {
        logs: 0,
        log_stream_events: 0,
        deliveries: 0,
        grants: 0,
    };
    loop {
        let n = store.purge_expired_grants(now - GRANT_GRACE, batch).await?;
        purged.grants += n;
        if n < u64::from(batch) {
            break;
        }
    }
    loop {
        let n = store.purge_logs(log_cut, batch).await?;
        purged.logs += n;
        if n < u64::from(batch) {
            break;
        }
    }
    loop {
        let n = store.purge_log_stream_events(log_cut, batch).await?;
        purged.log_stream_events += n;
        if n < u64::from(batch) {
            break;
        }
    }
    loop {
        let n = store.purge_finished_deliveries(outbox_cut, batch).await?;
        purged.deliveries += n;
        if n < u64::from(batch) {
            break;
        }
    }
    Ok(purged)
}

/// The background task: a pass every [`EVERY`], until the runtime ends or the task is aborted.
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: Arc<Config>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match purge(&*store, &config, clock.now(), BATCH).await {
            Ok(Purged {
                logs: 0,
                log_stream_events: 0,
                deliveries: 0,
                grants: 0,
            }) => {}
            Ok(p) => tracing::info!(
                log_events = p.logs,
                log_stream_events = p.log_stream_events,
                deliveries = p.deliveries,
                grants = p.grants,
                "retention: old log events and finished deliveries purged"
            ),
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
    }
}
