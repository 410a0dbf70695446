//! The database connection: email + password against argon2id hashes, behind progressive delays
//! (ARCHITECTURE.md, "Sign-in throttling").
//!
//! Three throttle keys, counting failures only:
//! - the account *from this address* ([`PAIR`]): the strict one; a success clears it;
//! - the address, whatever the account ([`IP`]): spraying many accounts from one place;
//! - the account from everywhere ([`ACCOUNT`]): many addresses against one account. It holds back
//!   only addresses that have already failed on the account ([`ACCOUNT_LIMIT_AFTER`]), so
//!   failures from elsewhere never keep the rightful user, who has not, out.
//!
//! An attempt while a key waits is refused before anything is looked up or hashed, and counts for
//! nothing. Keys are digests (no email or address at rest in the session store), and an unknown
//! account is throttled and hashed exactly like a known one, so neither timing nor throttling
//! tells whether it exists.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use latch_core::Clock;
use latch_core::connector::{
    DATABASE_ISSUER, Limit, PasswordConnector, SignInContext, SignInError,
};
use latch_core::model::{Connection, User};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_core::throttle::{Backoff, ThrottleCheck, ThrottleKey};
use time::Duration;

/// An account from one address: 5 free failures, then 1 s doubling to 5 minutes; one failure
/// forgotten every 10 minutes.
pub const PAIR: Backoff = Backoff {
    free: 5,
    base: Duration::seconds(1),
    cap: Duration::minutes(5),
    leak: Duration::minutes(10),
};

/// One address, any account: 50 free failures, then 1 s doubling to a minute; one forgotten
/// every 30 s (an office behind one address, failing less than twice a minute, never waits).
pub const IP: Backoff = Backoff {
    free: 50,
    base: Duration::seconds(1),
    cap: Duration::minutes(1),
    leak: Duration::seconds(30),
};

/// One account, every address: 20 free failures, then 1 s doubling to 30 s; one forgotten a
/// minute. Applies only to addresses with [`ACCOUNT_LIMIT_AFTER`] failures on the account.
pub const ACCOUNT: Backoff = Backoff {
    free: 20,
    base: Duration::seconds(1),
    cap: Duration::seconds(30),
    leak: Duration::minutes(1),
};

/// Failures (still counted) an address needs on an account before the account-wide delay holds
/// it back too.
pub const ACCOUNT_LIMIT_AFTER: u64 = 3;

pub struct DatabaseConnector {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
}

/// The session-store keys of one attempt.
struct Keys {
    pair: Option<String>,
    ip: Option<String>,
    account: String,
}

impl Keys {
    fn new(connection: &str, email: &str, ip: Option<IpAddr>) -> Self {
        let digest = |s: String| latch_jose::token_digest(&s).as_str().to_owned();
        let account = format!("{connection}\n{email}");
        let ip = ip.map(address_block);
        Self {
            pair: ip
                .as_ref()
                .map(|ip| format!("pw:p:{}", digest(format!("{account}\n{ip}")))),
            ip: ip.map(|ip| format!("pw:i:{}", digest(ip))),
            account: format!("pw:a:{}", digest(account)),
        }
    }
}

/// What counts as one address: an IPv4 address, or an IPv6 /64 (one subscriber's network; a
/// single host is handed a whole /64 and could otherwise change address at every attempt).
fn address_block(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Whole seconds until `until`, rounded up, at least one (a `Retry-After` value).
fn seconds_until(until: time::OffsetDateTime, now: time::OffsetDateTime) -> Duration {
    let ms = (until - now).whole_milliseconds().max(1);
    Duration::seconds(((ms + 999) / 1000) as i64)
}

#[async_trait]
impl PasswordConnector for DatabaseConnector {
    async fn sign_in(
        &self,
        connection: &Connection,
        email: &str,
        password: &str,
        ctx: &SignInContext,
    ) -> Result<User, SignInError> {
        let now = self.clock.now();
        let email = email.trim().to_lowercase();
        let keys = Keys::new(connection.id.as_str(), &email, ctx.ip);
        let pair = keys
            .pair
            .as_deref()
            .map(|key| ThrottleKey { key, backoff: PAIR });
        let ip = keys
            .ip
            .as_deref()
            .map(|key| ThrottleKey { key, backoff: IP });
        let account = ThrottleKey {
            key: &keys.account,
            backoff: ACCOUNT,
        };
        // The account-wide delay holds back only addresses that failed on the account before
        // (and, failing safe, attempts without an address).
        let pair_failures = match pair {
            Some(k) => self.sessions.throttle_peek(&[k], now).await?[0].failures,
            None => ACCOUNT_LIMIT_AFTER,
        };
        let mut checked: Vec<(ThrottleKey<'_>, Limit)> = Vec::with_capacity(3);
        checked.extend(pair.map(|k| (k, Limit::AccountFromIp)));
        checked.extend(ip.map(|k| (k, Limit::Ip)));
        if pair_failures >= ACCOUNT_LIMIT_AFTER {
            checked.push((account, Limit::Account));
        }
        let check: Vec<ThrottleKey<'_>> = checked.iter().map(|(k, _)| *k).collect();
        if let ThrottleCheck::Wait { key, until } =
            self.sessions.throttle_begin(&check, now).await?
        {
            return Err(SignInError::TooManyAttempts {
                retry_after: seconds_until(until, now),
                until,
                limit: checked.get(key).map_or(Limit::Account, |(_, l)| *l),
            });
        }

        let mut found = None;
        // A username (no `@`): the identity's subject, as for the `admin` created on first start.
        if !email.contains('@')
            && let Some((i, user)) = self
                .store
                .find_identity_with_user(&connection.id, DATABASE_ISSUER, &email)
                .await?
            && i.password_hash.is_some()
        {
            found = Some((user, i));
        }
        let by_email = match found {
            Some(_) => Vec::new(),
            None => self.store.find_users_by_email(&email).await?,
        };
        for user in by_email {
            let identity = self
                .store
                .list_identities(&user.user_id)
                .await?
                .into_iter()
                .find(|i| i.connection_id == connection.id && i.password_hash.is_some());
            if let Some(i) = identity {
                found = Some((user, i));
                break;
            }
        }
        // Hash-check even when there is no such account, so timing does not tell.
        let hash = found.as_ref().and_then(|(_, i)| i.password_hash.clone());
        let password = password.to_owned();
        // argon2id takes tens of milliseconds of CPU: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            latch_jose::password::verify(&password, hash.as_ref())
        })
        .await
        .unwrap_or(false);
        match found {
            Some((user, _)) if ok => {
                if let Some(k) = pair {
                    self.sessions.throttle_clear(k.key).await?;
                }
                if user.blocked {
                    Err(SignInError::Blocked)
                } else {
                    Ok(user)
                }
            }
            _ => {
                // Every failure counts on the account, whichever address it came from.
                let failed: Vec<ThrottleKey<'_>> =
                    pair.into_iter().chain(ip).chain([account]).collect();
                self.sessions
                    .throttle_fail(&failed, self.clock.now())
                    .await?;
                Err(SignInError::InvalidCredentials)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_an_ipv4_address_or_an_ipv6_64() {
        let b = |s: &str| address_block(s.parse().unwrap());
        assert_eq!(b("203.0.113.9"), "203.0.113.9");
        assert_eq!(b("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(b("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(b("2001:db8:1:2:bbbb::7"), b("2001:db8:1:2:aaaa::1"));
        assert_ne!(b("2001:db8:1:3::1"), b("2001:db8:1:2::1"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let s = |ms| seconds_until(now + Duration::milliseconds(ms), now).whole_seconds();
        assert_eq!((s(1), s(1000), s(1001), s(0), s(-5)), (1, 1, 2, 1, 1));
    }

    #[test]
    fn keys_hold_no_email_or_address() {
        let k = Keys::new(
            "con_1",
            "ada@example.com",
            Some("203.0.113.9".parse().unwrap()),
        );
        for key in [k.pair.unwrap(), k.ip.unwrap(), k.account] {
            assert!(!key.contains("ada") && !key.contains("203.0"), "{key}");
        }
    }
}
