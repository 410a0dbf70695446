//! The one in-memory TTL cache, timed by the [`Clock`] (not `std::time::Instant`), so tests move
//! time instead of sleeping. In memory only: this crate does no I/O, and neither does the cache.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::Clock;

/// Whether `now` is less than `d` after `since`. An instant after `now` (the wall clock went
/// back) is never within: what it timed is treated as expired, so a clock jump cannot keep a
/// value, or a wait, alive.
pub fn within(now: OffsetDateTime, since: OffsetDateTime, d: Duration) -> bool {
    since <= now && now - since < d
}

/// Values by key, each kept `ttl` after it was put (by the clock's `now`). At most `cap`
/// entries: putting into a full cache empties it first (what was cached is read again, no more).
/// Expired entries are not returned; they stay until replaced or emptied with the rest.
pub struct TtlCache<K, V> {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cap: usize,
    map: RwLock<HashMap<K, (OffsetDateTime, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// An empty cache whose entries live `ttl` on `clock`, holding at most `cap` of them.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration, cap: usize) -> Self {
        Self {
            clock,
            ttl,
            cap,
            map: RwLock::default(),
        }
    }

    /// The value under `key`, when it was put less than the TTL ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| within(now, *at, self.ttl))
            .map(|(_, v)| v.clone())
    }

    /// Puts `value` under `key`, its TTL starting now.
    pub fn insert(&self, key: K, value: V) {
        let now = self.clock.now();
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.cap && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (now, value));
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The cache's clock, for callers that time more than the values (attempts, backoff).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn cache(cap: usize) -> (TtlCache<String, u32>, ManualClock) {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        (
            TtlCache::new(Arc::new(clock.clone()), Duration::from_secs(5), cap),
            clock,
        )
    }

    #[test]
    fn values_expire_after_the_ttl_on_the_clock() {
        let (c, clock) = cache(10);
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        clock.advance(time::Duration::milliseconds(4_999));
        assert_eq!(c.get("a"), Some(1));
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(c.get("a"), None);
        c.insert("a".into(), 2);
        assert_eq!(c.get("a"), Some(2), "put again, fresh again");
    }

    #[test]
    fn a_clock_that_went_back_expires_values() {
        let (c, clock) = cache(10);
        c.insert("a".into(), 1);
        clock.advance(time::Duration::seconds(-1));
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn a_full_cache_starts_again_empty() {
        let (c, _) = cache(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        c.insert("b".into(), 3);
        assert_eq!(
            (c.get("a"), c.get("b")),
            (Some(1), Some(3)),
            "a replacement"
        );
        c.insert("c".into(), 4);
        assert_eq!((c.get("a"), c.get("b"), c.get("c")), (None, None, Some(4)));
        c.remove("c");
        assert_eq!(c.get("c"), None);
        c.insert("d".into(), 5);
        c.clear();
        assert_eq!(c.get("d"), None);
    }
}
