//! Sessions in Redis.
//!
//! Key schema (every key starts with the configured prefix, `latch:` by default):
//! - `{p}s:{session id}` HASH: `d` session JSON (without clients), `u` user id, `ls` last seen,
//!   `ie` idle expiry, `ae` absolute expiry (Unix ms), `c:{client id}` one per joined app.
//!   Its TTL is the session's end (`PEXPIREAT min(ie, ae)`).
//! - `{p}u:{user id}` SET of the user's session ids; TTL = the latest absolute expiry among them.
//!   Entries whose session expired are dropped when the set is read.
//! - `{p}c:{code digest}` authorization code JSON; `{p}t:{tx id}` login transaction JSON;
//!   `{p}o:{scope}:{key}` replay guards. Each with its own TTL; taken with `GETDEL`.
//!
//! Every change that touches more than one key runs as one Lua script, so it is atomic. The
//! scripts touch keys derived from values they read, so the layout is for a single Redis (or a
//! primary with replicas), not Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use latch_core::clock::{from_millis, to_millis};
use latch_core::session::*;
use latch_core::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use time::OffsetDateTime;

use crate::internal;

const INSERT: &str = r"
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'u', ARGV[2], 'ls', ARGV[3], 'ie', ARGV[4], 'ae', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[7])
local t = redis.call('PEXPIRETIME', KEYS[2])
if t == -1 or t < tonumber(ARGV[5]) then redis.call('PEXPIREAT', KEYS[2], ARGV[5]) end
return 1
";

const TOUCH: &str = r"
local v = redis.call('HMGET', KEYS[1], 'ie', 'ae')
if not v[1] or not v[2] then return false end
local now, ie, ae = tonumber(ARGV[1]), tonumber(v[1]), tonumber(v[2])
if ie <= now or ae <= now then return false end
local nie = now + tonumber(ARGV[2])
if nie > ae then nie = ae end
redis.call('HSET', KEYS[1], 'ls', ARGV[1], 'ie', string.format('%d', nie))
redis.call('PEXPIREAT', KEYS[1], string.format('%d', nie))
return redis.call('HGETALL', KEYS[1])
";

const ADD_CLIENT: &str = r"
local v = redis.call('HMGET', KEYS[1], 'ie', 'ae')
if not v[1] or not v[2] then return false end
local now = tonumber(ARGV[3])
if tonumber(v[1]) <= now or tonumber(v[2]) <= now then return false end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
";

const END_ONE: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
local u = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if u then redis.call('SREM', ARGV[1] .. u, ARGV[2]) end
return h
";

const END_USER: &str = r"
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[1] .. id
  local h = redis.call('HGETALL', k)
  if #h > 0 then
    out[#out + 1] = h
    redis.call('DEL', k)
  end
end
redis.call('DEL', KEYS[1])
return out
";

/// The production session store.
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: ConnectionManager,
    prefix: String,
    insert: Script,
    touch: Script,
    add_client: Script,
    end_one: Script,
    end_user: Script,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore").field("prefix", &self.prefix).finish()
    }
}

fn unavailable(e: redis::RedisError) -> SessionError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        SessionError::Unavailable(Box::new(e))
    } else {
        SessionError::Internal(Box::new(e))
    }
}

/// The fields of a session hash, as HGETALL returns them.
type Fields = Vec<(String, String)>;

fn decode(fields: Fields) -> Result<Option<Session>, SessionError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut session: Option<Session> = None;
    let (mut ls, mut ie) = (None, None);
    let mut clients = Vec::new();
    for (k, v) in fields {
        match k.as_str() {
            "d" => session = Some(serde_json::from_str(&v).map_err(internal)?),
            "ls" => ls = v.parse::<i64>().ok(),
            "ie" => ie = v.parse::<i64>().ok(),
            _ if k.starts_with("c:") => clients.push(serde_json::from_str::<SessionClient>(&v).map_err(internal)?),
            _ => {}
        }
    }
    let Some(mut s) = session else {
        return Err(SessionError::Internal("session hash without data".into()));
    };
    if let Some(ls) = ls {
        s.last_seen_at = from_millis(ls);
    }
    if let Some(ie) = ie {
        s.idle_expires_at = from_millis(ie);
    }
    clients.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.client_id.cmp(&b.client_id)));
    s.clients = clients;
    Ok(Some(s))
}

fn pairs(flat: Vec<String>) -> Fields {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

impl RedisSessionStore {
    /// Connects to `url` (`redis://host:port/db`); fails fast when Redis does not answer.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, SessionError> {
        let client = redis::Client::open(url).map_err(|e| SessionError::Unavailable(Box::new(e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            insert: Script::new(INSERT),
            touch: Script::new(TOUCH),
            add_client: Script::new(ADD_CLIENT),
            end_one: Script::new(END_ONE),
            end_user: Script::new(END_USER),
        })
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}s:{id}", self.prefix)
    }
    fn user_key(&self, id: &str) -> String {
        format!("{}u:{id}", self.prefix)
    }

    /// Bytes Redis uses for one session's keys (`MEMORY USAGE`), for the benchmark.
    pub async fn memory_usage(&self, id: &SessionId) -> Result<u64, SessionError> {
        let mut c = self.conn.clone();
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

    /// Bytes of a user's index set.
    pub async fn user_index_memory(&self, user: &UserId) -> Result<u64, SessionError> {
        let mut c = self.conn.clone();
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

    async fn take(&self, key: String) -> Result<Option<String>, SessionError> {
        let mut c = self.conn.clone();
        redis::cmd("GETDEL").arg(key).query_async(&mut c).await.map_err(unavailable)
    }

    async fn put(&self, key: String, value: String, expires_at: OffsetDateTime) -> Result<(), SessionError> {
        let mut c = self.conn.clone();
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
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(unavailable)?;
        Ok(())
    }

    async fn insert_session(&self, s: &Session) -> Result<(), SessionError> {
        let mut core = s.clone();
        let clients = std::mem::take(&mut core.clients);
        let data = serde_json::to_string(&core).map_err(internal)?;
        let mut c = self.conn.clone();
        let key = self.session_key(s.id.as_str());
        let _: i64 = self
            .insert
            .key(&key)
            .key(self.user_key(s.user_id.as_str()))
            .arg(data)
            .arg(s.user_id.as_str())
            .arg(to_millis(s.last_seen_at))
            .arg(to_millis(s.idle_expires_at))
            .arg(to_millis(s.expires_at))
            .arg(to_millis(s.ends_at()).max(1))
            .arg(s.id.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        for client in clients {
            self.add_session_client(&s.id, &client, from_millis(0)).await?;
        }
        Ok(())
    }

    async fn find_session(&self, id: &SessionId, now: OffsetDateTime) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn.clone();
        let fields: Fields = c.hgetall(self.session_key(id.as_str())).await.map_err(unavailable)?;
        Ok(decode(fields)?.filter(|s| s.is_live(now)))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        now: OffsetDateTime,
        idle: time::Duration,
    ) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn.clone();
        let flat: Option<Vec<String>> = self
            .touch
            .key(self.session_key(id.as_str()))
            .arg(to_millis(now))
            .arg(idle.whole_milliseconds() as i64)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        match flat {
            None => Ok(None),
            Some(flat) => decode(pairs(flat)),
        }
    }

    async fn add_session_client(
        &self,
        id: &SessionId,
        client: &SessionClient,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn.clone();
        let flat: Option<Vec<String>> = self
            .add_client
            .key(self.session_key(id.as_str()))
            .arg(format!("c:{}", client.client_id))
            .arg(serde_json::to_string(client).map_err(internal)?)
            .arg(to_millis(now))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        match flat {
            None => Ok(None),
            Some(flat) => decode(pairs(flat)),
        }
    }

    async fn list_user_sessions(&self, user: &UserId, now: OffsetDateTime) -> Result<Vec<Session>, SessionError> {
        let mut c = self.conn.clone();
        let user_key = self.user_key(user.as_str());
        let ids: Vec<String> = c.smembers(&user_key).await.map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.session_key(id));
        }
        let all: Vec<Fields> = pipe.query_async(&mut c).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, fields) in ids.into_iter().zip(all) {
            match decode(fields)? {
                Some(s) if s.is_live(now) => out.push(s),
                Some(_) => {}
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Sessions that expired by TTL leave their id behind in the index: drop it.
            let _: i64 = c.srem(&user_key, gone).await.map_err(unavailable)?;
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn end_session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let mut c = self.conn.clone();
        let flat: Vec<String> = self
            .end_one
            .key(self.session_key(id.as_str()))
            .arg(format!("{}u:", self.prefix))
            .arg(id.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        decode(pairs(flat))
    }

    async fn end_user_sessions(&self, user: &UserId) -> Result<Vec<Session>, SessionError> {
        let mut c = self.conn.clone();
        let all: Vec<Vec<String>> = self
            .end_user
            .key(self.user_key(user.as_str()))
            .arg(format!("{}s:", self.prefix))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(all.len());
        for flat in all {
            if let Some(s) = decode(pairs(flat))? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn insert_code(&self, code: &AuthCode) -> Result<(), SessionError> {
        let v = serde_json::to_string(code).map_err(internal)?;
        self.put(format!("{}c:{}", self.prefix, code.digest), v, code.expires_at).await
    }

    async fn take_code(&self, digest: &TokenDigest, now: OffsetDateTime) -> Result<Option<AuthCode>, SessionError> {
        let Some(v) = self.take(format!("{}c:{digest}", self.prefix)).await? else {
            return Ok(None);
        };
        let code: AuthCode = serde_json::from_str(&v).map_err(internal)?;
        Ok((code.expires_at > now).then_some(code))
    }

    async fn insert_login_tx(&self, t: &LoginTransaction) -> Result<(), SessionError> {
        let v = serde_json::to_string(t).map_err(internal)?;
        self.put(format!("{}t:{}", self.prefix, t.id), v, t.expires_at).await
    }

    async fn take_login_tx(&self, id: &LoginTxId, now: OffsetDateTime) -> Result<Option<LoginTransaction>, SessionError> {
        let Some(v) = self.take(format!("{}t:{id}", self.prefix)).await? else {
            return Ok(None);
        };
        let t: LoginTransaction = serde_json::from_str(&v).map_err(internal)?;
        Ok((t.expires_at > now).then_some(t))
    }

    async fn remember_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        let mut c = self.conn.clone();
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

    async fn purge_expired(&self, _now: OffsetDateTime) -> Result<u64, SessionError> {
        // Redis expires keys itself.
        Ok(0)
    }
}
