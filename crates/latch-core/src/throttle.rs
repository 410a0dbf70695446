//! Progressive delays after failed attempts: the policy ([`Backoff`]) and its arithmetic, which
//! every [`SessionStore`](crate::session::SessionStore) applies the same way (the embedded and
//! in-memory stores call these functions; Redis runs the same steps in Lua, and the session
//! conformance suite checks that they agree to the millisecond).
//!
//! A *key* (an account, an address, an account from one address) counts failures. The first
//! `free` cost nothing; each one after that makes the key wait `base · 2^(n − free − 1)`, at most
//! `cap`, before its next attempt is even checked. Failures leak away, one per `leak`, so a key
//! that stops failing is forgotten, and a trickle slower than that never adds up to a delay.
//! Instants are Unix milliseconds, as every store keeps them, so a state round-trips exactly.

use time::{Duration, OffsetDateTime};

use crate::clock::{from_millis, to_millis};

/// How one kind of key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures that bring no delay.
    pub free: u32,
    /// The delay after the first failure beyond `free`; each further failure doubles it.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// One counted failure is forgotten per `leak` (at least a millisecond).
    pub leak: Duration,
}

/// A key's state. The default is a key never seen (or long forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    /// Failures still counted.
    pub failures: u64,
    /// Unix ms from which leaking is counted.
    pub mark: i64,
    /// Unix ms before which no attempt on the key is checked; `0`: none.
    pub until: i64,
}

impl Throttle {
    /// The instant the key's delay ends.
    pub fn until_at(&self) -> OffsetDateTime {
        from_millis(self.until)
    }

    /// Whether an attempt at `now` must wait.
    pub fn waits(&self, now: OffsetDateTime) -> bool {
        self.until > to_millis(now)
    }
}

/// One key of a throttled attempt, and the policy it is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleKey<'a> {
    pub key: &'a str,
    pub backoff: Backoff,
}

/// What [`throttle_begin`](crate::session::SessionStore::throttle_begin) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleCheck {
    /// The attempt may be checked.
    Go,
    /// Refused unchecked: `keys[key]` waits until `until` (of the waiting keys, the one that
    /// waits longest).
    Wait { key: usize, until: OffsetDateTime },
}

impl Backoff {
    /// `base` in whole ms (never negative).
    pub fn base_ms(&self) -> i64 {
        (self.base.whole_milliseconds() as i64).max(0)
    }

    /// `cap` in whole ms (never negative).
    pub fn cap_ms(&self) -> i64 {
        (self.cap.whole_milliseconds() as i64).max(0)
    }

    /// `leak` in whole ms (at least one).
    pub fn leak_ms(&self) -> i64 {
        (self.leak.whole_milliseconds() as i64).max(1)
    }

    /// The delay, in ms, that the `failures`-th failure brings.
    pub fn delay_ms(&self, failures: u64) -> i64 {
        let free = u64::from(self.free);
        if failures <= free {
            return 0;
        }
        let doublings = failures - free - 1;
        if doublings >= 40 {
            return self.cap_ms();
        }
        self.base_ms()
            .saturating_mul(1i64 << doublings)
            .min(self.cap_ms())
    }

    /// The delay that the `failures`-th failure brings.
    pub fn delay(&self, failures: u64) -> Duration {
        Duration::milliseconds(self.delay_ms(failures))
    }

    /// `stored` (the default when nothing is stored) after leaking until `now`.
    pub fn current(&self, stored: Throttle, now: OffsetDateTime) -> Throttle {
        let now = to_millis(now);
        let leak = self.leak_ms();
        let gone = (now - stored.mark).max(0) / leak;
        if stored.failures == 0 || gone as u64 >= stored.failures {
            return Throttle {
                failures: 0,
                mark: now,
                until: stored.until,
            };
        }
        Throttle {
            failures: stored.failures - gone as u64,
            mark: stored.mark + gone * leak,
            until: stored.until,
        }
    }

    /// An attempt goes ahead on a key in its `current` state: past its free failures, the key
    /// is held for the delay a failure would bring, so that attempts arriving together while the
    /// outcome is pending wait instead of all being checked.
    pub fn hold(&self, current: Throttle, now: OffsetDateTime) -> Throttle {
        match self.delay_ms(current.failures + 1) {
            0 => current,
            d => Throttle {
                until: current.until.max(to_millis(now) + d),
                ..current
            },
        }
    }

    /// One more failure on a key in its `current` state.
    pub fn fail(&self, current: Throttle, now: OffsetDateTime) -> Throttle {
        let failures = current.failures + 1;
        let mark = if current.failures == 0 {
            to_millis(now)
        } else {
            current.mark
        };
        let until = match self.delay_ms(failures) {
            0 => current.until,
            d => current.until.max(to_millis(now) + d),
        };
        Throttle {
            failures,
            mark,
            until,
        }
    }

    /// Unix ms from which `t` is the same as nothing stored: its delay is over and its failures
    /// have leaked away. A store may drop the record then.
    pub fn forgotten_at(&self, t: &Throttle) -> i64 {
        let leaked = t
            .mark
            .saturating_add((t.failures as i64).saturating_mul(self.leak_ms()));
        t.until.max(leaked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Backoff = Backoff {
        free: 3,
        base: Duration::seconds(1),
        cap: Duration::seconds(10),
        leak: Duration::minutes(1),
    };

    fn at(ms: i64) -> OffsetDateTime {
        from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn delays_double_from_base_to_cap() {
        let got: Vec<i64> = (0..=9).map(|n| P.delay_ms(n)).collect();
        assert_eq!(
            got,
            vec![0, 0, 0, 0, 1000, 2000, 4000, 8000, 10_000, 10_000]
        );
        assert_eq!(P.delay_ms(u64::MAX), 10_000);
    }

    #[test]
    fn failures_leak_one_per_interval() {
        let mut t = Throttle::default();
        for _ in 0..5 {
            t = P.fail(P.current(t, at(0)), at(0));
        }
        assert_eq!(t.failures, 5);
        assert_eq!(t.until, to_millis(at(2000)));
        assert!(t.waits(at(1999)) && !t.waits(at(2000)));
        // Two intervals later, two are forgotten; the remainder keeps counting.
        let later = P.current(t, at(150_000));
        assert_eq!(later.failures, 3);
        assert_eq!(later.mark, to_millis(at(120_000)));
        assert_eq!(P.current(later, at(300_000)).failures, 0);
        assert_eq!(P.forgotten_at(&t), to_millis(at(300_000)));
    }

    #[test]
    fn a_hold_lasts_what_a_failure_would_cost() {
        let mut t = Throttle::default();
        for _ in 0..3 {
            t = P.fail(P.current(t, at(0)), at(0));
        }
        assert_eq!(t.until, 0, "three free failures");
        let held = P.hold(P.current(t, at(5)), at(5));
        assert_eq!(held.until, to_millis(at(1005)));
        assert_eq!(held.failures, 3, "a hold is no failure");
        // Within the free failures nothing is held.
        let fresh = P.current(Throttle::default(), at(0));
        assert_eq!(P.hold(fresh, at(0)), fresh);
    }
}
