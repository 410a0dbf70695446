//! Sessions in Redis.
//!
//! Key schema (every key starts with the configured prefix, `latch:` by default). A session id is
//! the digest of the session's secret (the cookie's value), which is never stored.
//! - `{p}sd:{session id}` STRING, TTL = the session's end (`PXAT min(idle, absolute)`) plus
//!   `EXPIRED_GRACE`: the record (`crate::redis_record`), `v2\n{last seen}\n{idle expiry}\n
//!   {absolute expiry}\n{user id}\n{core JSON}\n` followed by one `c{client JSON}\n` line per app
//!   that joined, and a sealed upstream ID token's raw bytes after a NUL. Instants are Unix ms.
//!   The mutable parts are lines the Lua scripts rewrite or insert without parsing JSON; one
//!   compact string per session (a hash would leave its compact encoding as soon as a value
//!   passed 64 bytes). Records of the previous format (`v1`) are read and changed alike.
//! - `{p}sx` SORTED SET of session ids scored by their end (Unix ms), moved by use: the expiry
//!   sweeper reads the ended ones (`expired_sessions`); a record is kept `EXPIRED_GRACE` past its
//!   end for it, never found as live (its TTL is `PXAT end + EXPIRED_GRACE`).
//! - `{p}uh:{user id}` HASH of the user's session ids (fields; values empty), which Redis keeps
//!   as a listpack (about 47 bytes per session) up to `hash-max-listpack-entries` (512) fields;
//!   TTL = the latest absolute expiry among them. Entries whose session expired are dropped when
//!   the index is read, and the expiry sweeper's `end_session` drops them as it ends them.
//!   Releases before this one kept a SET under `{p}ud:{user id}` (a hash table of about 280
//!   bytes for one session on Redis 7.0): the scripts read it beside the hash, and the next
//!   sign-in of that user moves its ids into the hash.
//! - `{p}us:{connection}:{key}` the user whose session carries that upstream `sid` or SAML NameID
//!   (`UpstreamSession::index_key`).
//! - `{p}r:{key}` rate-limit counters (`INCR`, TTL = the window's end).
//! - `{p}th:{key}` HASH of a sign-in throttle key: `n` failures, `m` leak mark, `u` end of its
//!   delay (Unix ms); TTL = when it means nothing any more (`latch_core::throttle`).
//! - `{p}c:{code digest}` authorization code JSON; `{p}t:{tx id}` login transaction JSON;
//!   `{p}o:{scope}:{key}` replay guards. Each with its own TTL; taken with `GETDEL`, so a code
//!   or a transaction is gone once used.
//!
//! Releases before session ids were digests kept sessions under `{p}s:{secret}` and their index
//! under `{p}u:{user id}`; nothing reads those keys, and [`RedisSessionStore::drop_legacy_sessions`]
//! deletes them.
//!
//! Every change that touches more than one key runs as one Lua script, so it is atomic. The
//! scripts touch keys derived from values they read, so the layout is for a single Redis (or a
//! primary with replicas), not Redis Cluster.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use latch_core::clock::{from_millis, to_millis};
use latch_core::session::*;
use latch_core::throttle::{Throttle, ThrottleCheck, ThrottleKey};
use latch_core::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use time::OffsetDateTime;

use crate::internal;
use crate::redis_record::{client_line, client_markers, decode, encode, sid_json};

/// KEYS: record, user index, upstream index, expiry set, the user's legacy index set, and the
/// first code's key when there is one. ARGV: record, its `PXAT`, session id, absolute expiry,
/// the user for the upstream index (or ''), the session's end, then the code and its `PXAT`.
const INSERT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
local keep = tonumber(ARGV[4])
local old = redis.call('SMEMBERS', KEYS[5])
if #old > 0 then
  for _, id in ipairs(old) do redis.call('HSET', KEYS[2], id, '') end
  local ot = redis.call('PEXPIRETIME', KEYS[5])
  if ot > keep then keep = ot end
  redis.call('DEL', KEYS[5])
end
redis.call('HSET', KEYS[2], ARGV[3], '')
local t = redis.call('PEXPIRETIME', KEYS[2])
if t == -1 or t < keep then redis.call('PEXPIREAT', KEYS[2], string.format('%d', keep)) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'PXAT', ARGV[4]) end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[3])
if KEYS[6] then redis.call('SET', KEYS[6], ARGV[7], 'PXAT', ARGV[8]) end
return 1
";

const TOUCH: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ver, ie, ae, rest = string.match(v, '^(v[12])\n%d+\n(%d+)\n(%d+)\n(.*)$')
if not ie then return redis.error_reply('corrupt session record') end
local now = tonumber(ARGV[1])
if tonumber(ie) <= now or tonumber(ae) <= now then return false end
local nie = now + tonumber(ARGV[2])
if nie > tonumber(ae) then nie = tonumber(ae) end
local keep = string.format('%d', nie + tonumber(ARGV[4]))
nie = string.format('%d', nie)
v = ver .. '\n' .. ARGV[1] .. '\n' .. nie .. '\n' .. ae .. '\n' .. rest
redis.call('SET', KEYS[1], v, 'PXAT', keep)
redis.call('ZADD', KEYS[2], nie, ARGV[3])
return v
";

/// ARGV: the client's markers (its line's start in `v2` and in `v1`), its line without and with
/// its `s` (the first when its sid is the session's), its sid as JSON, now. The line goes after
/// the last one, before the raw bytes (after a NUL) when the record has them.
const ADD_CLIENT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ie, ae = string.match(v, '^v[12]\n%d+\n(%d+)\n(%d+)\n')
if not ie then return redis.error_reply('corrupt session record') end
local now = tonumber(ARGV[6])
if tonumber(ie) <= now or tonumber(ae) <= now then return false end
local text, raw = v, ''
local z = string.find(v, '\0', 1, true)
if z then text, raw = string.sub(v, 1, z - 1), string.sub(v, z) end
if string.find(text, ARGV[1], 1, true) or string.find(text, ARGV[2], 1, true) then return v end
local sid = string.match(text, '^v[12]\n%d+\n%d+\n%d+\n[^\n]*\n{"s":("[^"\\]*")')
local line = ARGV[4]
if sid == ARGV[5] then line = ARGV[3] end
v = text .. line .. raw
redis.call('SET', KEYS[1], v, 'KEEPTTL')
return v
"#;

/// ARGV: the user index's and the legacy index's key prefixes, the session id.
const END_ONE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[3])
local v = redis.call('GET', KEYS[1])
if not v then return false end
redis.call('DEL', KEYS[1])
local u = string.match(v, '^v[12]\n%d+\n%d+\n%d+\n([^\n]*)\n')
if u then
  redis.call('HDEL', ARGV[1] .. u, ARGV[3])
  redis.call('SREM', ARGV[2] .. u, ARGV[3])
end
return v
";

/// The session ids of a user's index hash (KEYS[1]) and legacy set (KEYS[2]), once each.
macro_rules! user_ids_lua {
    ($body:literal) => {
        concat!(
            r"
local ids, seen = {}, {}
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
end
",
            $body
        )
    };
}

/// ARGV: the record key prefix, the expiry set.
const END_USER: &str = user_ids_lua!(
    r"
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[1] .. id
  local v = redis.call('GET', k)
  redis.call('ZREM', ARGV[2], id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
    redis.call('DEL', k)
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return out
"
);

/// The user's sessions in one round trip; ids whose record expired are dropped from the index.
/// ARGV: the record key prefix.
const LIST_USER: &str = user_ids_lua!(
    r"
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('SREM', KEYS[2], id)
  end
end
return out
"
);

const COUNT_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return n
";

/// What the throttle scripts share: `latch_core::throttle`'s arithmetic, step for step. KEYS are
/// the keys (hashes: `n` failures, `m` leak mark, `u` end of delay; Unix ms); ARGV[1] is now,
/// then four numbers per key: free failures, base delay, cap and leak interval (ms).
macro_rules! throttle_lua {
    ($body:literal) => {
        concat!(
            r"
local now = tonumber(ARGV[1])
local function arg(i, j) return tonumber(ARGV[1 + (i - 1) * 4 + j]) end
local function delay(i, n)
  local free = arg(i, 1)
  if n <= free then return 0 end
  local e = n - free - 1
  local cap = arg(i, 3)
  if e >= 40 then return cap end
  local d = arg(i, 2) * (2 ^ e)
  if d > cap then return cap end
  return d
end
local function current(i)
  local v = redis.call('HMGET', KEYS[i], 'n', 'm', 'u')
  local n, m, u = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local leak = arg(i, 4)
  local gone = math.floor(math.max(now - m, 0) / leak)
  if n == 0 or gone >= n then return 0, now, u end
  return n - gone, m + gone * leak, u
end
local function save(i, n, m, u)
  local exp = math.max(u, m + n * arg(i, 4))
  redis.call('DEL', KEYS[i])
  if exp > now then
    redis.call('HSET', KEYS[i], 'n', string.format('%d', n), 'm', string.format('%d', m),
      'u', string.format('%d', u))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', exp))
  end
end
",
            $body
        )
    };
}

/// `Backoff::hold` on every key unless one waits: `{-1}`, or `{index, until}` of the key that
/// waits longest.
const THROTTLE_BEGIN: &str = throttle_lua!(
    r"
local st = {}
local best, bu = 0, 0
for i = 1, #KEYS do
  local n, m, u = current(i)
  st[i] = {n, m, u}
  if u > now and u >= bu then best, bu = i, u end
end
if best > 0 then return {best - 1, bu} end
for i = 1, #KEYS do
  local n, m, u = st[i][1], st[i][2], st[i][3]
  local d = delay(i, n + 1)
  if d > 0 and now + d > u then save(i, n, m, now + d) end
end
return {-1}
"
);

/// `Backoff::fail` on every key; the new states, three numbers each.
const THROTTLE_FAIL: &str = throttle_lua!(
    r"
local out = {}
for i = 1, #KEYS do
  local n, m, u = current(i)
  local f = n + 1
  local d = delay(i, f)
  if d > 0 and now + d > u then u = now + d end
  save(i, f, m, u)
  out[#out + 1] = f
  out[#out + 1] = m
  out[#out + 1] = u
end
return out
"
);

/// Key namespaces of sessions (by session id, the digest of the secret) and of the per-user
/// index (a hash; releases before this one kept a set under `ud:`, still read). Releases that
/// keyed sessions by the secret itself used `s:` and `u:`.
const SESSION_NS: &str = "sd:";
const USER_NS: &str = "uh:";
const USER_SET_NS: &str = "ud:";
const LEGACY_NS: [&str; 2] = ["s:", "u:"];

/// `s` with Redis glob characters escaped, for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Stores made in this process, told apart in [`OWN`].
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

/// After a connection of a thread's own could not be opened, its commands use the shared one
/// for this long before it is tried again (a Redis that is down fails them alike).
const OWN_RETRY: Duration = Duration::from_secs(5);

thread_local! {
    /// This thread's own connections, one per store it used (see [`Conns`]).
    static OWN: RefCell<Vec<(u64, Own)>> = const { RefCell::new(Vec::new()) };
}

enum Own {
    /// A task of this thread is opening it (since then); meanwhile the shared one serves.
    Opening(Instant),
    /// Open on the runtime `alive` runs on: a task that never ends, so finished once that
    /// runtime is gone, and with it the connection's reader.
    Ready {
        conn: ConnectionManager,
        alive: tokio::task::JoinHandle<()>,
    },
    /// Could not be opened then.
    Failed(Instant),
}

/// Where a store's commands go. One connection is shared by every thread; its replies are
/// read by a task on the runtime that opened it, so a command from another thread costs two
/// hand-offs between threads (the command to that task, the reply back). A thread that runs a
/// current-thread runtime (each HTTP worker) opens a connection of its own at its first
/// command, read by its own runtime: the command and its reply stay on the thread. Every
/// other thread (the multi-threaded runtimes, so also the background workers) uses the shared
/// one. All of them reconnect by themselves, with the same limits.
#[derive(Clone)]
struct Conns {
    store: u64,
    client: redis::Client,
    config: ConnectionManagerConfig,
    shared: ConnectionManager,
}

impl Conns {
    async fn get(&self) -> ConnectionManager {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let own_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if !own_thread {
            return self.shared.clone();
        }
        let open = OWN.with_borrow_mut(|own| {
            let Some((_, slot)) = own.iter_mut().find(|(store, _)| *store == self.store) else {
                own.push((self.store, Own::Opening(Instant::now())));
                return Ok(());
            };
            match slot {
                Own::Ready { conn, alive } if !alive.is_finished() => Err(conn.clone()),
                Own::Opening(at) | Own::Failed(at) if at.elapsed() < OWN_RETRY => {
                    Err(self.shared.clone())
                }
                _ => {
                    *slot = Own::Opening(Instant::now());
                    Ok(())
                }
            }
        });
        if let Err(conn) = open {
            return conn;
        }
        let made = self
            .client
            .get_connection_manager_with_config(self.config.clone())
            .await;
        let (state, conn) = match made {
            Ok(conn) => (
                Own::Ready {
                    conn: conn.clone(),
                    alive: tokio::spawn(std::future::pending()),
                },
                conn,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not open this thread's Redis connection; using the shared one");
                (Own::Failed(Instant::now()), self.shared.clone())
            }
        };
        OWN.with_borrow_mut(|own| {
            if let Some((_, slot)) = own.iter_mut().find(|(store, _)| *store == self.store) {
                *slot = state;
            }
        });
        conn
    }
}

/// The production session store.
#[derive(Clone)]
pub struct RedisSessionStore {
    conns: Conns,
    prefix: String,
    insert: Script,
    touch: Script,
    add_client: Script,
    end_one: Script,
    end_user: Script,
    list_user: Script,
    count_hit: Script,
    throttle_begin: Script,
    throttle_fail: Script,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Every failed command's error goes through here, and is counted (`latch_redis_errors_total`).
fn unavailable(e: redis::RedisError) -> SessionError {
    // Down (503) unless retrying could not help: a connection lost, refused or timed out, a
    // server shutting down or still loading its data, a reply cut off, the client's own
    // connection state. Only a permanent answer (a script's error reply, an unexpected type)
    // is Latch's fault (500).
    let down = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
        || matches!(e.kind(), redis::ErrorKind::Client);
    latch_core::metrics::redis_error(down);
    if down {
        SessionError::Unavailable(Box::new(e))
    } else {
        SessionError::Internal(Box::new(e))
    }
}

impl RedisSessionStore {
    /// Connects to `url` (`redis://host:port/db`); fails fast when Redis does not answer.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, SessionError> {
        let client =
            redis::Client::open(url).map_err(|e| SessionError::Unavailable(Box::new(e)))?;
        let config = ConnectionManagerConfig::new()
            // Fail fast when Redis is down or stalls (the request answers 503 with Retry-After);
            // the manager reconnects by itself when it returns.
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let shared = client
            .get_connection_manager_with_config(config.clone())
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conns: Conns {
                store: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
                client,
                config,
                shared,
            },
            prefix: prefix.into(),
            insert: Script::new(INSERT),
            touch: Script::new(TOUCH),
            add_client: Script::new(ADD_CLIENT),
            end_one: Script::new(END_ONE),
            end_user: Script::new(END_USER),
            list_user: Script::new(LIST_USER),
            count_hit: Script::new(COUNT_HIT),
            throttle_begin: Script::new(THROTTLE_BEGIN),
            throttle_fail: Script::new(THROTTLE_FAIL),
        })
    }

    /// The connection for a command from this thread: see [`Conns`].
    async fn conn(&self) -> ConnectionManager {
        self.conns.get().await
    }

    /// The Redis client id (`CLIENT ID`) of the connection this thread's commands use.
    pub async fn connection_id(&self) -> Result<i64, SessionError> {
        let mut c = self.conn().await;
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}{SESSION_NS}{id}", self.prefix)
    }
    fn upstream_sid_key(&self, connection: &ConnectionName, sid: &str) -> String {
        format!("{}us:{connection}:{sid}", self.prefix)
    }

    /// The sorted set of session ids by end time, which the expiry sweeper reads.
    fn expiry_key(&self) -> String {
        format!("{}sx", self.prefix)
    }

    fn user_key(&self, id: &str) -> String {
        format!("{}{USER_NS}{id}", self.prefix)
    }

    /// The user's index set as releases before this one kept it.
    fn user_set_key(&self, id: &str) -> String {
        format!("{}{USER_SET_NS}{id}", self.prefix)
    }

    fn throttle_key(&self, key: &str) -> String {
        format!("{}th:{key}", self.prefix)
    }

    /// A throttle script invoked with `keys` and their policies.
    fn throttle_invocation<'s>(
        &self,
        script: &'s Script,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.arg(to_millis(now));
        for k in keys {
            inv.key(self.throttle_key(k.key))
                .arg(k.backoff.free)
                .arg(k.backoff.base_ms())
                .arg(k.backoff.cap_ms())
                .arg(k.backoff.leak_ms());
        }
        inv
    }

    /// Bytes Redis uses for one session's keys (`MEMORY USAGE`), for the benchmark.
    pub async fn memory_usage(&self, id: &SessionId) -> Result<u64, SessionError> {
        let mut c = self.conn().await;
        let n: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(self.session_key(id.as_str()))
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n.unwrap_or(0))
    }

    /// Bytes of a user's index (its hash; a legacy set is not counted).
    pub async fn user_index_memory(&self, user: &UserId) -> Result<u64, SessionError> {
        let mut c = self.conn().await;
        let n: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(self.user_key(user.as_str()))
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n.unwrap_or(0))
    }

    /// Deletes the session records and user index sets that releases before session ids were
    /// digests left under this prefix (`{p}s:{secret}`, `{p}u:{user id}`): no code reads them any
    /// more (a cookie is looked up by its digest), and they hold session secrets until their TTLs
    /// run out. Safe to run at any time and on every instance; returns how many keys went.
    pub async fn drop_legacy_sessions(&self) -> Result<u64, SessionError> {
        let mut c = self.conn().await;
        let mut gone = 0;
        for ns in LEGACY_NS {
            let pattern = format!("{}{ns}*", glob_escape(&self.prefix));
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut c)
                        .await
                        .map_err(unavailable)?;
                    gone += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(gone)
    }

    /// A new session, and its first code when there is one, in one script.
    async fn insert(&self, s: &Session, code: Option<&AuthCode>) -> Result<(), SessionError> {
        let mut c = self.conn().await;
        // The upstream index entry (`us:` key: the upstream `sid` or SAML NameID), when the
        // session has one; it lives until the session's absolute expiry (use moves the idle
        // one), and a lookup checks that a live session still carries it.
        let key = s.upstream.index_key();
        let sid = key.as_deref();
        let mut inv = self.insert.prepare_invoke();
        inv.key(self.session_key(s.id.as_str()))
            .key(self.user_key(s.user_id.as_str()))
            .key(self.upstream_sid_key(&s.connection, sid.unwrap_or("-")))
            .key(self.expiry_key())
            .key(self.user_set_key(s.user_id.as_str()))
            .arg(encode(s)?)
            .arg(to_millis(s.ends_at() + EXPIRED_GRACE).max(1))
            .arg(s.id.as_str())
            .arg(to_millis(s.expires_at).max(1))
            .arg(if sid.is_some() {
                s.user_id.as_str()
            } else {
                ""
            })
            .arg(to_millis(s.ends_at()));
        if let Some(code) = code {
            inv.key(self.code_key(&code.digest))
                .arg(serde_json::to_string(code).map_err(internal)?)
                .arg(to_millis(code.expires_at).max(1));
        }
        let _: i64 = inv.invoke_async(&mut c).await.map_err(unavailable)?;
        Ok(())
    }

    fn code_key(&self, digest: &TokenDigest) -> String {
        format!("{}c:{digest}", self.prefix)
    }

    async fn take(&self, key: String) -> Result<Option<String>, SessionError> {
        let mut c = self.conn().await;
        redis::cmd("GETDEL")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn put(
        &self,
        key: String,
        value: String,
        expires_at: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let mut c = self.conn().await;
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PXAT")
            .arg(to_millis(expires_at).max(1))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), SessionError> {
        let mut c = self.conn().await;
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_session(&self, s: &Session) -> Result<(), SessionError> {
        self.insert(s, None).await
    }

    async fn insert_session_with_code(
        &self,
        session: &Session,
        code: &AuthCode,
    ) -> Result<(), SessionError> {
        self.insert(session, Some(code)).await
    }

    async fn find_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn().await;
        let v: Option<Vec<u8>> = c
            .get(self.session_key(id.as_str()))
            .await
            .map_err(unavailable)?;
        Ok(v.map(|v| decode(id.as_str(), &v))
            .transpose()?
            .filter(|s| s.is_live(now)))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn().await;
        let v: Option<Vec<u8>> = self
            .touch
            .key(self.session_key(id.as_str()))
            .key(self.expiry_key())
            .arg(to_millis(now))
            .arg(idle.whole_milliseconds() as i64)
            .arg(id.as_str())
            .arg(EXPIRED_GRACE.whole_milliseconds() as i64)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        v.map(|v| decode(id.as_str(), &v)).transpose()
    }

    async fn add_session_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn().await;
        let (marker, v1_marker) = client_markers(&client.client_id)?;
        let v: Option<Vec<u8>> = self
            .add_client
            .key(self.session_key(id.as_str()))
            .arg(marker)
            .arg(v1_marker)
            .arg(client_line(client, Some(&client.sid))?)
            .arg(client_line(client, None)?)
            .arg(sid_json(&client.sid)?)
            .arg(to_millis(now))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        v.map(|v| decode(id.as_str(), &v)).transpose()
    }

    async fn user_of_upstream(
        &self,
        connection: &ConnectionName,
        key: &str,
        _now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionError> {
        let mut c = self.conn().await;
        let user: Option<String> = c
            .get(self.upstream_sid_key(connection, key))
            .await
            .map_err(unavailable)?;
        let Some(user) = user.map(UserId::new) else {
            return Ok(None);
        };
        let live =
            self.list_user_sessions(&user, _now).await?.iter().any(|s| {
                s.connection == *connection && s.upstream.index_key().as_deref() == Some(key)
            });
        Ok(live.then_some(user))
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, SessionError> {
        let mut c = self.conn().await;
        let flat: Vec<Vec<u8>> = self
            .list_user
            .key(self.user_key(user.as_str()))
            .key(self.user_set_key(user.as_str()))
            .arg(self.session_key(""))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for pair in flat.chunks(2) {
            if let [id, v] = pair {
                let s = decode(&String::from_utf8_lossy(id), v)?;
                if s.is_live(now) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn().await;
        let v: Option<Vec<u8>> = self
            .end_one
            .key(self.session_key(id.as_str()))
            .key(self.expiry_key())
            .arg(self.user_key(""))
            .arg(self.user_set_key(""))
            .arg(id.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        v.map(|v| decode(id.as_str(), &v)).transpose()
    }

    async fn expired_sessions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, SessionError> {
        let mut c = self.conn().await;
        let ids: Vec<String> = c
            .zrangebyscore_limit(self.expiry_key(), "-inf", to_millis(now), 0, limit as isize)
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, v) in ids.iter().zip(values) {
            match v.map(|v| decode(id, &v)) {
                Some(Ok(s)) => {
                    if !s.is_live(now) {
                        out.push(s);
                    }
                }
                // A record that cannot be read must not hold the others up: dropped from the
                // set (its own TTL removes it).
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "an unreadable session record left the expiry set");
                    gone.push(id.clone());
                }
                None => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            let _: i64 = c
                .zrem(self.expiry_key(), &gone)
                .await
                .map_err(unavailable)?;
        }
        Ok(out)
    }

    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError> {
        let mut c = self.conn().await;
        let flat: Vec<Vec<u8>> = self
            .end_user
            .key(self.user_key(user.as_str()))
            .key(self.user_set_key(user.as_str()))
            .arg(self.session_key(""))
            .arg(self.expiry_key())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            if let [id, v] = pair {
                out.push(decode(&String::from_utf8_lossy(id), v)?);
            }
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn insert_code(&self, code: &AuthCode) -> Result<(), SessionError> {
        let v = serde_json::to_string(code).map_err(internal)?;
        self.put(self.code_key(&code.digest), v, code.expires_at)
            .await
    }

    async fn take_code(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<AuthCode>, SessionError> {
        let Some(v) = self.take(self.code_key(digest)).await? else {
            return Ok(None);
        };
        let code: AuthCode = serde_json::from_str(&v).map_err(internal)?;
        Ok((code.expires_at > now).then_some(code))
    }

    async fn insert_login_tx(&self, t: &LoginTransaction) -> Result<(), SessionError> {
        let v = serde_json::to_string(t).map_err(internal)?;
        self.put(format!("{}t:{}", self.prefix, t.id), v, t.expires_at)
            .await
    }

    async fn take_login_tx(
        &self,
        id: &LoginTxId,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, SessionError> {
        let Some(v) = self.take(format!("{}t:{id}", self.prefix)).await? else {
            return Ok(None);
        };
        let t: LoginTransaction = serde_json::from_str(&v).map_err(internal)?;
        Ok((t.expires_at > now).then_some(t))
    }

    async fn forget_once(&self, scope: &str, key: &str) -> Result<(), SessionError> {
        let mut c = self.conn().await;
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{}o:{scope}:{key}", self.prefix))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remember_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        let mut c = self.conn().await;
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}o:{scope}:{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(to_millis(expires_at).max(1))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn count_hit(
        &self,
        key: &str,
        window_ends: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<u64, SessionError> {
        let mut c = self.conn().await;
        let n: u64 = self
            .count_hit
            .key(format!("{}r:{key}", self.prefix))
            .arg(to_millis(window_ends).max(1))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn throttle_peek(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await;
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HMGET")
                .arg(self.throttle_key(k.key))
                .arg("n")
                .arg("m")
                .arg("u");
        }
        let rows: Vec<(Option<i64>, Option<i64>, Option<i64>)> =
            pipe.query_async(&mut c).await.map_err(unavailable)?;
        Ok(keys
            .iter()
            .zip(rows)
            .map(|(k, (n, m, u))| {
                let stored = Throttle {
                    failures: n.unwrap_or(0).max(0) as u64,
                    mark: m.unwrap_or(0),
                    until: u.unwrap_or(0),
                };
                k.backoff.current(stored, now)
            })
            .collect())
    }

    async fn throttle_begin(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<ThrottleCheck, SessionError> {
        if keys.is_empty() {
            return Ok(ThrottleCheck::Go);
        }
        let mut c = self.conn().await;
        let out: Vec<i64> = self
            .throttle_invocation(&self.throttle_begin, keys, now)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        match out.as_slice() {
            [-1] => Ok(ThrottleCheck::Go),
            [key, until] if (0..keys.len() as i64).contains(key) => Ok(ThrottleCheck::Wait {
                key: *key as usize,
                until: from_millis(*until),
            }),
            _ => Err(internal(std::io::Error::other(
                "unexpected answer from the throttle script",
            ))),
        }
    }

    async fn throttle_fail(
        &self,
        keys: &[ThrottleKey<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Throttle>, SessionError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await;
        let out: Vec<i64> = self
            .throttle_invocation(&self.throttle_fail, keys, now)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        if out.len() != keys.len() * 3 {
            return Err(internal(std::io::Error::other(
                "unexpected answer from the throttle script",
            )));
        }
        Ok(out
            .chunks_exact(3)
            .map(|t| Throttle {
                failures: t[0].max(0) as u64,
                mark: t[1],
                until: t[2],
            })
            .collect())
    }

    async fn throttle_clear(&self, key: &str) -> Result<(), SessionError> {
        let mut c = self.conn().await;
        let _: i64 = c.del(self.throttle_key(key)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64, SessionError> {
        // Redis expires the records itself (EXPIRED_GRACE after their end); their entries in
        // the expiry set go here.
        let mut c = self.conn().await;
        let n: u64 = c
            .zrembyscore(self.expiry_key(), "-inf", to_millis(now - EXPIRED_GRACE))
            .await
            .map_err(unavailable)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_escape_makes_a_prefix_literal() {
        assert_eq!(super::glob_escape("latch:"), "latch:");
        assert_eq!(super::glob_escape(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }
}
