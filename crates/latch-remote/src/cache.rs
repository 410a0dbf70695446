//! Documents of other parties by URL, cached on the [`Clock`]: a [`TtlCache`] of values kept
//! [`MAX_AGE`], with one fetch in flight per URL and a remembered outcome per URL (the rate limit
//! after a success, the backoff and the error after a failure).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latch_core::Clock;
use latch_core::cache::{TtlCache, within};
use time::OffsetDateTime;

/// Refetch a document for an unknown `kid`, a failed signature, or after a failure, at most this
/// often (per URL).
pub const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// A document is refreshed after this long even when it still serves.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest wait before a URL that keeps failing is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One URL's last attempt and how it went.
struct Attempts<E> {
    at: Option<OffsetDateTime>,
    failures: u32,
    error: Option<E>,
}

impl<E> Attempts<E> {
    /// How long after the last attempt the next may be made: [`REFETCH_EVERY`] after a success,
    /// doubling with each failure after the first, up to [`MAX_BACKOFF`].
    fn wait(&self) -> Duration {
        match self.failures {
            0 => REFETCH_EVERY,
            n => REFETCH_EVERY
                .saturating_mul(1 << (n - 1).min(10))
                .min(MAX_BACKOFF),
        }
    }
}

struct Slot<E> {
    /// Held while this URL is fetched: concurrent callers wait for that fetch, not their own.
    flight: tokio::sync::Mutex<()>,
    attempts: Mutex<Attempts<E>>,
}

/// Documents of other parties by URL (JWKS, discovery, SAML metadata), each kept [`MAX_AGE`] on
/// the clock. A URL is fetched by one caller at a time (the others wait for that fetch and share
/// its outcome), and at most once per [`REFETCH_EVERY`] after a success; after a failure the
/// wait doubles with each failure up to [`MAX_BACKOFF`], and callers get the remembered error
/// (or the last good value while it is fresh).
pub struct Cache<T, E> {
    values: TtlCache<String, T>,
    slots: Mutex<HashMap<String, Arc<Slot<E>>>>,
}

impl<T: Clone, E: Clone + std::fmt::Display> Cache<T, E> {
    /// An empty cache timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            values: TtlCache::new(clock, MAX_AGE, usize::MAX),
            slots: Mutex::default(),
        }
    }

    fn slot(&self, url: &str) -> Arc<Slot<E>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    flight: tokio::sync::Mutex::new(()),
                    attempts: Mutex::new(Attempts {
                        at: None,
                        failures: 0,
                        error: None,
                    }),
                })
            })
            .clone()
    }

    /// The cached value when it is fresh and `enough`; otherwise `fetch`, unless a fetch was
    /// made meanwhile or within the wait (then the cached value, or the remembered error).
    pub async fn get<F, Fut>(
        &self,
        url: &str,
        enough: impl Fn(&T) -> bool,
        fetch: F,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(url);
        // The attempt seen before the value: a fetch that ends in between counts as "meanwhile".
        let seen = slot.attempts.lock().unwrap_or_else(|p| p.into_inner()).at;
        if let Some(v) = self.values.get(url).filter(|v| enough(v)) {
            return Ok(v);
        }
        let _flight = slot.flight.lock().await;
        {
            let st = slot.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.values.clock().now();
            let fetched_meanwhile = st.at != seen;
            let too_soon = st.at.is_some_and(|at| within(now, at, st.wait()));
            if fetched_meanwhile || too_soon {
                match (self.values.get(url), &st.error) {
                    (Some(v), _) => return Ok(v),
                    (None, Some(e)) => return Err(e.clone()),
                    (None, None) => {}
                }
            }
        }
        let result = fetch().await;
        let mut st = slot.attempts.lock().unwrap_or_else(|p| p.into_inner());
        st.at = Some(self.values.clock().now());
        match result {
            Ok(v) => {
                self.values.insert(url.to_owned(), v.clone());
                st.failures = 0;
                st.error = None;
                Ok(v)
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "remote document unavailable");
                st.failures = st.failures.saturating_add(1);
                st.error = Some(e.clone());
                // A fresh value stays usable (a failed refetch for an unknown key).
                self.values.get(url).ok_or(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off() {
        let mut st = Attempts::<()> {
            at: None,
            failures: 0,
            error: None,
        };
        assert_eq!(st.wait(), REFETCH_EVERY);
        st.failures = 1;
        assert_eq!(st.wait(), REFETCH_EVERY);
        st.failures = 2;
        assert_eq!(st.wait(), 2 * REFETCH_EVERY);
        st.failures = 40;
        assert_eq!(st.wait(), MAX_BACKOFF);
    }
}
