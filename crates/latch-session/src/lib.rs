//! Latch's session store: browser sessions, one-time authorization codes, login transactions
//! and replay guards, behind [`latch_core::session::SessionStore`].
//!
//! - [`EmbeddedSessionStore`]: the default; a SQLite file of its own (`sessions.db`), so
//!   sessions survive a restart with nothing else installed. One instance only.
//! - [`RedisSessionStore`]: production; shared by every instance, expiry by Redis TTLs, a
//!   per-user index hash, every multi-key change in one Lua script.

mod embedded;
mod redis_record;
mod redis_store;

pub use embedded::EmbeddedSessionStore;
pub use redis_store::RedisSessionStore;

use latch_core::SessionError;

pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> SessionError {
    SessionError::Internal(Box::new(e))
}
