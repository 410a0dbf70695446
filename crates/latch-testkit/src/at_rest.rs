//! What a backend keeps at rest, read as someone with a copy of the storage would read it: files
//! byte for byte (a SQLite database with its WAL and shared-memory files), every Redis key under a
//! prefix with its value, every PostgreSQL row of a schema as text. For checks that a secret is
//! nowhere in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

/// Where a backend under test keeps its data.
#[derive(Clone)]
pub enum AtRest {
    /// Every regular file in a directory, byte for byte.
    Dir(PathBuf),
    /// Every key under a Redis prefix, with its value.
    Redis { url: String, prefix: String },
    /// Every row of every table of a PostgreSQL schema, as text.
    Postgres { url: String, schema: String },
    /// A model kept in memory, as it renders itself.
    Memory(Arc<dyn Fn() -> String + Send + Sync>),
}

impl AtRest {
    /// Everything stored, as bytes (file contents, keys and values, rows), in no particular order.
    pub async fn read(&self) -> Vec<u8> {
        match self {
            Self::Dir(dir) => dir_bytes(dir),
            Self::Redis { url, prefix } => redis_bytes(url, prefix).await,
            Self::Postgres { url, schema } => {
                let (url, schema) = (url.clone(), schema.clone());
                tokio::task::spawn_blocking(move || postgres_rows(&url, &schema))
                    .await
                    .unwrap()
                    .into_bytes()
            }
            Self::Memory(render) => render().into_bytes(),
        }
    }

    /// Does anything stored contain `needle`?
    pub async fn contains(&self, needle: &str) -> bool {
        contains(&self.read().await, needle)
    }
}

/// Does `haystack` contain `needle`'s bytes?
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && haystack.windows(n.len()).any(|w| w == n)
}

/// The contents of every regular file directly in `dir`, each followed by a newline.
pub fn dir_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("directory entry").path();
        if path.is_file() {
            out.extend(std::fs::read(&path).expect("read a file"));
            out.push(b'\n');
        }
    }
    out
}

/// Every key under `prefix` and its value (strings, sets, hashes, lists, sorted sets), one per
/// line.
pub async fn redis_bytes(url: &str, prefix: &str) -> Vec<u8> {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let pattern: String = prefix
        .chars()
        .flat_map(|ch| {
            let esc = matches!(ch, '*' | '?' | '[' | ']' | '\\').then_some('\\');
            esc.into_iter().chain(std::iter::once(ch))
        })
        .chain("*".chars())
        .collect();
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut c).await,
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await,
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut c).await,
            "list" => {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            }
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            }
            // Expired between SCAN and TYPE.
            "none" => Ok(Vec::new()),
            other => panic!("{key}: a {other} key; read it here too"),
        }
        .unwrap();
        out.extend(key.as_bytes());
        out.push(b'\n');
        for v in values {
            out.extend(v);
            out.push(b'\n');
        }
    }
    out
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Rows {
    #[diesel(sql_type = Text)]
    rows: String,
}

/// Every row of every table in `schema`, as PostgreSQL renders a row as text, one per line.
pub fn postgres_rows(url: &str, schema: &str) -> String {
    let mut c = PgConnection::establish(url).expect("connect to PostgreSQL");
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
    )
    .bind::<Text, _>(schema)
    .load(&mut c)
    .expect("list tables");
    let mut out = String::new();
    for t in tables {
        let rows: Rows = diesel::sql_query(format!(
            "SELECT COALESCE(string_agg(t::text, E'\\n'), '') AS rows FROM \"{schema}\".\"{}\" t",
            t.name
        ))
        .get_result(&mut c)
        .expect("read a table");
        out.push_str(&rows.rows);
        out.push('\n');
    }
    out
}
