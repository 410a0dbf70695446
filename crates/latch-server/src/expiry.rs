//! The expiry sweeper: a session whose time is up (idle or absolute) ends through the Logout
//! service like any other, so its apps hear of it (`session-expired`) and its session-bound
//! refresh tokens die with it. Every instance sweeps every [`EVERY`]; each expired session is
//! claimed once across instances (`remember_once`, for [`CLAIM`]) before its deliveries are
//! recorded, and a claim whose logout failed is released for the next pass. The session store
//! keeps an ended session for `EXPIRED_GRACE` (an hour) for this.

use std::sync::Arc;

use latch_core::Clock;
use latch_core::logout::{Logout, LogoutError, Target, TokenPolicy, Urgency};
use latch_core::model::LogoutInitiator;
use latch_core::session::SessionStore;

/// How often a pass runs.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Sessions taken per store read.
pub const BATCH: u32 = 200;
/// How long an instance holds an expired session it took (another instance takes it after
/// that if it is still there).
pub const CLAIM: time::Duration = time::Duration::minutes(5);
const SCOPE: &str = "session-expired";

/// One pass: every expired session the store lists (in batches), each ended once. A session
/// whose logout fails is released and retried next pass; the pass goes on with the others.
pub async fn sweep(
    sessions: &dyn SessionStore,
    logout: &Logout,
    clock: &dyn Clock,
) -> Result<usize, LogoutError> {
    let mut ended = 0;
    let mut failed = 0;
    loop {
        let now = clock.now();
        let batch = sessions.expired_sessions(now, BATCH).await?;
        let full = batch.len() == BATCH as usize;
        let mut took = 0;
        for s in batch {
            let key = s.id.as_str().to_owned();
            if !sessions
                .remember_once(SCOPE, &key, now + CLAIM, now)
                .await?
            {
                continue;
            }
            took += 1;
            let out = logout
                .end(
                    Target::Expired(Box::new(s)),
                    TokenPolicy::SessionBound,
                    LogoutInitiator::SessionExpired,
                    Urgency::Background,
                )
                .await;
            match out {
                Ok(o) => ended += o.sessions.len(),
                Err(e) => {
                    // Released for the next pass; the others in the batch go on.
                    let _ = sessions.forget_once(SCOPE, &key).await;
                    tracing::warn!(error = %e, "an expired session could not be ended; retried next pass");
                    failed += 1;
                }
            }
        }
        // A full batch that was all someone else's, or whose logouts fail (the store is
        // down): leave the rest to the next pass.
        if !full || took == 0 || failed > 0 {
            return Ok(ended);
        }
    }
}

/// The sweeper loop.
pub async fn run(sessions: Arc<dyn SessionStore>, logout: Arc<Logout>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        match sweep(&*sessions, &logout, &*clock).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(ended = n, "expired sessions ended"),
            Err(e) => tracing::warn!(error = %e, "expired session sweep failed"),
        }
    }
}
