//! Configuration: an optional TOML file (`--config`), then `LATCH_*` environment variables on
//! top. [`Config::load`] reports every problem at once, each naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;
use url::Url;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The file's shape. Every key is optional; the environment overrides the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `LATCH_BIND`: address to listen on. Default `127.0.0.1:8080`.
    pub bind: Option<String>,
    /// `LATCH_ISSUER`: the public base URL, the `iss` of every token. Default `http://` + bind.
    pub issuer: Option<String>,
    /// `LATCH_TRUSTED_PROXIES`: address ranges (CIDRs such as `10.0.0.0/8`, or single addresses,
    /// separated by commas) of the load balancers and proxies in front of Latch. Their
    /// `X-Forwarded-For` / `Forwarded` headers name the client; anyone else's are ignored.
    /// Default: none (the socket's peer is the client).
    pub trusted_proxies: Option<String>,
    /// `LATCH_DATA_DIR`: where the embedded SQLite files and generated keys live. Default `./data`.
    pub data_dir: Option<PathBuf>,
    /// `LATCH_DATABASE_URL`: unset = embedded SQLite in the data dir; `postgres://…` = PostgreSQL.
    pub database_url: Option<String>,
    /// `LATCH_REDIS_URL`: unset = embedded session store; `redis://…` = Redis.
    pub redis_url: Option<String>,
    /// `LATCH_REDIS_PREFIX`: prefix of every Redis key. Default `latch:`.
    pub redis_prefix: Option<String>,
    /// `LATCH_LOG_FORMAT`: `pretty` or `json`.
    pub log_format: Option<String>,
    /// `LATCH_ADMIN_TOKEN`: bearer token for the management API (automation).
    pub admin_token: Option<String>,
    /// `LATCH_SECRET_KEY`: 32 bytes, base64, that encrypt stored secrets. Unset = generated
    /// into the data dir. Every instance sharing a database must use the same key.
    pub secret_key: Option<String>,
    /// `LATCH_ADMIN_PASSWORD`: the password of the `admin` user created on first start (for
    /// the admin UI). Unset = generated and printed once.
    pub admin_password: Option<String>,
    /// `LATCH_OUTBOUND_ALLOW`: comma-separated address ranges (CIDRs such as `10.0.0.0/8`, or
    /// single addresses) Latch may connect to although they are private, link-local, CGNAT…
    /// (an IdP or app on an internal network). Default: none.
    pub outbound_allow: Option<String>,
    /// `LATCH_BACKCHANNEL_RETRY_FOR`: seconds during which an undelivered back-channel logout is
    /// retried before it is given up (and logged). Default 86400 (a day).
    pub backchannel_retry_for: Option<String>,
    /// `LATCH_LOG_RETENTION_DAYS`: days log events are kept (1 to 3650); older ones are purged.
    /// Default 30.
    pub log_retention_days: Option<String>,
    /// `LATCH_OUTBOX_RETENTION_HOURS`: hours delivered and failed logout deliveries are kept
    /// after they finish (1 to 87600); pending ones are never purged. Default 168 (7 days).
    pub outbox_retention_hours: Option<String>,
    /// `LATCH_OUTBOX_RETENTION_DAYS`: the same in days (1 to 3650), the setting's earlier name;
    /// not both.
    pub outbox_retention_days: Option<String>,
    /// `LATCH_METRICS_TOKEN`: when set, `GET /metrics` requires `Authorization: Bearer` it.
    /// Default: unset (the metrics are open to whoever reaches the listener).
    pub metrics_token: Option<String>,
    /// `LATCH_MAX_CONCURRENT_REQUESTS`: requests an instance handles at once (1 to 100000);
    /// one more is answered 503 with `Retry-After` at once. Default 1024.
    pub max_concurrent_requests: Option<String>,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub issuer: Url,
    /// Proxies whose forwarding headers name the client (`LATCH_TRUSTED_PROXIES`).
    pub trusted_proxies: latch_http::TrustedProxies,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    pub secret_key: Option<[u8; 32]>,
    pub admin_password: Option<String>,
    pub backchannel_retry_for: std::time::Duration,
    /// Non-public address ranges outbound requests may reach anyway (`LATCH_OUTBOUND_ALLOW`).
    pub outbound_allow: Vec<latch_core::net::IpNet>,
    /// How long log events are kept.
    pub log_retention: time::Duration,
    /// How long finished (delivered or failed) deliveries are kept.
    pub outbox_retention: time::Duration,
    /// The bearer token `GET /metrics` requires, if any (`LATCH_METRICS_TOKEN`).
    pub metrics_token: Option<String>,
    /// Requests handled at once before more are shed (`LATCH_MAX_CONCURRENT_REQUESTS`).
    pub max_concurrent_requests: usize,
    /// What deserves a warning but does not stop a start (an unknown `LATCH_*` variable).
    pub warnings: Vec<String>,
}

/// Requests an instance handles at once by default: far above what two cores serve (a few
/// hundred callers keep them busy), so only a stalled dependency reaches it.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Every setting's file key; its environment variable is `LATCH_` and the key upper-cased.
pub const KEYS: &[&str] = &[
    "bind",
    "issuer",
    "trusted_proxies",
    "data_dir",
    "database_url",
    "redis_url",
    "redis_prefix",
    "log_format",
    "admin_token",
    "secret_key",
    "admin_password",
    "outbound_allow",
    "backchannel_retry_for",
    "log_retention_days",
    "outbox_retention_hours",
    "outbox_retention_days",
    "metrics_token",
    "max_concurrent_requests",
];

/// `LATCH_*` variables that are not settings: `LATCH_CONFIG` names the file (read by the CLI);
/// `LATCH_TEST_*` and `LATCH_BENCH_*` belong to the test suite and the benchmarks.
fn is_not_a_setting(name: &str) -> bool {
    name == "LATCH_CONFIG" || name.starts_with("LATCH_TEST_") || name.starts_with("LATCH_BENCH_")
}

/// The known name closest to `name`, if one is close enough to be a likely typo.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The settings of a config file as text, each with its line; every problem (syntax, unknown key,
/// a value of the wrong kind) collected, naming the key and the line.
fn read_file(path: &std::path::Path, text: &str) -> (Vec<(String, String, usize)>, Vec<String>) {
    let at = |line: usize, key: &str| format!("--config {}, line {line}, `{key}`", path.display());
    let line_of = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map_or(0, |i| i + 1)
    };
    let mut values = Vec::new();
    let mut errors = Vec::new();
    // The file is flat (`key = value` lines): when it does not parse as a whole, each line is
    // read on its own, so one typo does not hide the next.
    let tables: Vec<(toml::Table, Option<usize>)> = match text.parse::<toml::Table>() {
        Ok(t) => vec![(t, None)],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with('#')
            })
            .filter_map(|(i, l)| match l.parse::<toml::Table>() {
                Ok(t) => Some((t, Some(i + 1))),
                Err(e) => {
                    let key = l.split('=').next().unwrap_or("").trim();
                    let what = e.message().lines().next().unwrap_or("").trim().to_owned();
                    let hint = if l.contains('=') && !l.contains('"') {
                        " (put the value in double quotes)"
                    } else {
                        ""
                    };
                    errors.push(format!("{}: not valid TOML: {what}{hint}", at(i + 1, key)));
                    None
                }
            })
            .collect(),
    };
    for (table, line) in tables {
        for (key, value) in table {
            let line = line.unwrap_or_else(|| line_of(&key));
            if !KEYS.contains(&key.as_str()) {
                let hint = closest(&key, KEYS.iter().copied())
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                errors.push(format!("{}: unknown setting{hint}", at(line, &key)));
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => items
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => {
                    errors.push(format!(
                        "{}: expected a string or a whole number, found {}",
                        at(line, &key),
                        other.type_str()
                    ));
                    continue;
                }
            };
            values.push((key, text, line));
        }
    }
    (values, errors)
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("issuer", &self.issuer.as_str())
            .field("trusted_proxies", &self.trusted_proxies.ranges())
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_url.as_deref().map(redact_url))
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("log_format", &self.log_format)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .field("outbound_allow", &self.outbound_allow)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .finish()
    }
}

/// A URL with its password hidden.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// Every problem found, one per line, each naming its key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads `file` (if any) and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigErrors> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("LATCH_"))
            .collect();
        Self::from_sources(file, &env)
    }

    /// Reads `file` (if any) and `env` (name, value) pairs.
    pub fn from_sources(
        file: Option<&std::path::Path>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut lines: Vec<(String, usize)> = Vec::new();
        let fc: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Err(e) => {
                    return Err(ConfigErrors(vec![format!(
                        "--config {}: cannot read: {e}",
                        p.display()
                    )]));
                }
                Ok(text) => {
                    let (values, problems) = read_file(p, &text);
                    errors.extend(problems);
                    let mut table = toml::Table::new();
                    for (key, value, line) in values {
                        lines.push((key.clone(), line));
                        table.insert(key, toml::Value::String(value));
                    }
                    // Every key is known and every value text by now: this cannot fail.
                    toml::Value::Table(table).try_into().unwrap_or_default()
                }
            },
        };
        let mut warnings = Vec::new();
        for (name, _) in env {
            let known = KEYS.iter().any(|k| file_key(name) == *k);
            if name.starts_with("LATCH_") && !known && !is_not_a_setting(name) {
                let names: Vec<String> = KEYS
                    .iter()
                    .map(|k| format!("LATCH_{}", k.to_ascii_uppercase()))
                    .collect();
                let hint = closest(name, names.iter().map(String::as_str))
                    .map(|k| format!("; did you mean {k}?"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "{name} is not a Latch setting and is ignored{hint}"
                ));
            }
        }
        let get = |name: &str, from_file: Option<String>| -> Option<(String, String)> {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (name.to_owned(), v.clone()))
                .or_else(|| {
                    let key = file_key(name);
                    let line = lines.iter().find(|(k, _)| *k == key).map_or(0, |(_, l)| *l);
                    from_file.map(|v| (format!("{key} (config file, line {line})"), v))
                })
        };

        let bind = match get("LATCH_BIND", fc.bind) {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some((key, v)) => v.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{key}: {v:?} is not a socket address (expected host:port, e.g. 127.0.0.1:8080)"
                ));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }),
        };
        let default_issuer = || Url::parse(&format!("http://{bind}")).ok();
        let issuer = match get("LATCH_ISSUER", fc.issuer) {
            None => default_issuer(),
            Some((key, v)) => match Url::parse(&v) {
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    errors.push(format!("{key}: {v:?} must be an http:// or https:// URL"));
                    None
                }
                Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                    errors.push(format!("{key}: {v:?} must not have a query or fragment"));
                    None
                }
                Ok(u) if u.scheme() == "http" && !latch_core::validate::is_loopback(&u) => {
                    errors.push(format!(
                        "{key}: {v:?} must use https (http is allowed only on loopback hosts)"
                    ));
                    None
                }
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push(format!("{key}: {v:?} is not a URL: {e}"));
                    None
                }
            },
        };
        let trusted_proxies = match get("LATCH_TRUSTED_PROXIES", fc.trusted_proxies) {
            None => latch_http::TrustedProxies::default(),
            Some((key, v)) => latch_http::TrustedProxies::parse(&v).unwrap_or_else(|e| {
                errors.push(format!("{key}: {e}"));
                latch_http::TrustedProxies::default()
            }),
        };
        let data_dir = match get(
            "LATCH_DATA_DIR",
            fc.data_dir.map(|p| p.to_string_lossy().into_owned()),
        ) {
            None => PathBuf::from("./data"),
            Some((key, v)) => {
                if v.trim().is_empty() {
                    errors.push(format!("{key}: must not be empty"));
                }
                PathBuf::from(v)
            }
        };
        let database_url = match get("LATCH_DATABASE_URL", fc.database_url) {
            None => None,
            Some((_, v)) if v.trim().is_empty() => None,
            Some((key, v)) => {
                if !(v.starts_with("postgres://")
                    || v.starts_with("postgresql://")
                    || v.starts_with("sqlite://"))
                {
                    errors.push(format!(
                        "{key}: {:?} is not supported: use postgres://user@host:port/db, sqlite://path, or leave it unset for the embedded SQLite file",
                        redact_url(&v)
                    ));
                }
                Some(v)
            }
        };
        let redis_url = match get("LATCH_REDIS_URL", fc.redis_url) {
            None => None,
            Some((_, v)) if v.trim().is_empty() => None,
            Some((key, v)) => {
                if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
                    errors.push(format!(
                        "{key}: {:?} must be a redis:// URL, or be left unset for the embedded session store",
                        redact_url(&v)
                    ));
                }
                Some(v)
            }
        };
        let redis_prefix = get("LATCH_REDIS_PREFIX", fc.redis_prefix)
            .map(|(_, v)| v)
            .unwrap_or_else(|| "latch:".into());
        let log_format = match get("LATCH_LOG_FORMAT", fc.log_format) {
            None => LogFormat::Pretty,
            Some((_, v)) if v == "pretty" => LogFormat::Pretty,
            Some((_, v)) if v == "json" => LogFormat::Json,
            Some((key, v)) => {
                errors.push(format!("{key}: {v:?} must be pretty or json"));
                LogFormat::Pretty
            }
        };
        let admin_token = match get("LATCH_ADMIN_TOKEN", fc.admin_token) {
            None => None,
            Some((key, v)) => {
                if v.len() < 16 {
                    errors.push(format!(
                        "{key}: must be at least 16 characters (use a long random value)"
                    ));
                }
                Some(v)
            }
        };
        let metrics_token = match get("LATCH_METRICS_TOKEN", fc.metrics_token) {
            None => None,
            Some((key, v)) => {
                if v.len() < 16 || v.contains(char::is_whitespace) {
                    errors.push(format!(
                        "{key}: must be at least 16 characters without spaces (use a long random value)"
                    ));
                }
                Some(v)
            }
        };
        let secret_key = match get("LATCH_SECRET_KEY", fc.secret_key) {
            None => None,
            Some((key, v)) => {
                match decode_key(&v) {
                    Some(k) => Some(k),
                    None => {
                        errors.push(format!("{key}: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"));
                        None
                    }
                }
            }
        };
        let admin_password = match get("LATCH_ADMIN_PASSWORD", fc.admin_password) {
            None => None,
            Some((key, v)) => {
                if v.chars().count() < 12 {
                    errors.push(format!("{key}: must be at least 12 characters"));
                }
                Some(v)
            }
        };
        let backchannel_retry_for =
            match get("LATCH_BACKCHANNEL_RETRY_FOR", fc.backchannel_retry_for) {
                None => std::time::Duration::from_secs(86_400),
                Some((key, v)) => match v.parse::<u64>() {
                    Ok(n) if (10..=30 * 86_400).contains(&n) => std::time::Duration::from_secs(n),
                    _ => {
                        errors.push(format!(
                            "{key}: {v:?} must be a number of seconds from 10 to 2592000"
                        ));
                        std::time::Duration::from_secs(86_400)
                    }
                },
            };
        let mut days =
            |name: &str, from_file: Option<String>, default: i64| match get(name, from_file) {
                None => time::Duration::days(default),
                Some((key, v)) => match v.trim().parse::<i64>() {
                    Ok(n) if (1..=3650).contains(&n) => time::Duration::days(n),
                    _ => {
                        errors.push(format!(
                            "{key}: {v:?} must be a number of days from 1 to 3650"
                        ));
                        time::Duration::days(default)
                    }
                },
            };
        let log_retention = days("LATCH_LOG_RETENTION_DAYS", fc.log_retention_days, 30);
        let outbox_days = get(
            "LATCH_OUTBOX_RETENTION_DAYS",
            fc.outbox_retention_days.clone(),
        )
        .is_some()
        .then(|| days("LATCH_OUTBOX_RETENTION_DAYS", fc.outbox_retention_days, 7));
        let outbox_retention = match (
            get("LATCH_OUTBOX_RETENTION_HOURS", fc.outbox_retention_hours),
            outbox_days,
        ) {
            (Some((key, _)), Some(_)) => {
                errors.push(format!(
                    "{key}: set either it or LATCH_OUTBOX_RETENTION_DAYS, not both"
                ));
                time::Duration::days(7)
            }
            (Some((key, v)), None) => match v.trim().parse::<i64>() {
                Ok(n) if (1..=87_600).contains(&n) => time::Duration::hours(n),
                _ => {
                    errors.push(format!(
                        "{key}: {v:?} must be a number of hours from 1 to 87600"
                    ));
                    time::Duration::days(7)
                }
            },
            (None, Some(d)) => d,
            (None, None) => time::Duration::days(7),
        };
        let max_concurrent_requests =
            match get("LATCH_MAX_CONCURRENT_REQUESTS", fc.max_concurrent_requests) {
                None => DEFAULT_MAX_CONCURRENT_REQUESTS,
                Some((key, v)) => match v.trim().parse::<usize>() {
                    Ok(n) if (1..=100_000).contains(&n) => n,
                    _ => {
                        errors.push(format!(
                            "{key}: {v:?} must be a number of requests from 1 to 100000"
                        ));
                        DEFAULT_MAX_CONCURRENT_REQUESTS
                    }
                },
            };
        let outbound_allow = match get("LATCH_OUTBOUND_ALLOW", fc.outbound_allow) {
            None => Vec::new(),
            Some((key, v)) => {
                let mut ranges = Vec::new();
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    match item
                        .parse::<latch_core::net::IpNet>()
                        .or_else(|_| item.parse::<std::net::IpAddr>().map(Into::into))
                    {
                        Ok(net) => ranges.push(net.trunc()),
                        Err(_) => errors.push(format!(
                            "{key}: {item:?} is not an address range (a CIDR such as 10.0.0.0/8, or an address)"
                        )),
                    }
                }
                ranges
            }
        };
        match (issuer, errors.is_empty()) {
            (Some(issuer), true) => Ok(Self {
                bind,
                issuer,
                trusted_proxies,
                data_dir,
                database_url,
                redis_url,
                redis_prefix,
                log_format,
                admin_token,
                secret_key,
                admin_password,
                backchannel_retry_for,
                outbound_allow,
                log_retention,
                outbox_retention,
                metrics_token,
                max_concurrent_requests,
                warnings,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The issuer without a trailing slash, as it appears in `iss`.
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }

    /// The outbound address policy, with the operator's allow-list.
    pub fn outbound_policy(&self) -> latch_core::net::OutboundPolicy {
        latch_core::net::OutboundPolicy::new(self.outbound_allow.clone())
    }
}

fn file_key(env_name: &str) -> String {
    env_name.trim_start_matches("LATCH_").to_ascii_lowercase()
}

fn decode_key(v: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let v = v.trim();
    let raw = STANDARD
        .decode(v)
        .or_else(|_| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')))
        .ok()?;
    raw.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> (latch_testkit::env::TempDir, std::path::PathBuf) {
        let dir = latch_testkit::env::TempDir::new();
        let path = dir.path().join("latch.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// Every problem of a file at once, each with its key and line; numbers where seconds or days
    /// are meant.
    #[test]
    fn file_errors_name_key_and_line_all_at_once() {
        let (_d, path) = file(
            "# Latch\nbackchannel_retry_for = 600\nbind = 127.0.0.1:1\nlog_fromat = \"json\"\nlog_format = \"xml\"\nlog_retention_days = 14\n",
        );
        let text = Config::from_sources(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(text.contains("line 3, `bind`: not valid TOML"), "{text}");
        assert!(text.contains("put the value in double quotes"), "{text}");
        assert!(
            text.contains("line 4, `log_fromat`: unknown setting (did you mean `log_format`?)"),
            "{text}"
        );
        assert!(
            text.contains("log_format (config file, line 5)") && text.contains("pretty or json"),
            "{text}"
        );
        assert!(
            !text.contains("backchannel_retry_for"),
            "600 is fine: {text}"
        );
        assert!(!text.contains("log_retention_days"), "14 is fine: {text}");

        let (_d, path) = file("backchannel_retry_for = 600\nlog_retention_days = 14\n");
        let c = Config::from_sources(Some(&path), &[]).unwrap();
        assert_eq!(c.backchannel_retry_for.as_secs(), 600);
        assert_eq!(c.log_retention, time::Duration::days(14));
        let (_d, path) = file("backchannel_retry_for = 1.5\n");
        let text = Config::from_sources(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("line 1, `backchannel_retry_for`: expected a string or a whole number"),
            "{text}"
        );
    }

    #[test]
    fn every_setting_is_a_file_key() {
        let body: String = KEYS.iter().map(|k| format!("{k} = \"x\"\n")).collect();
        let table: toml::Table = body.parse().unwrap();
        let parsed: Result<FileConfig, _> = toml::Value::Table(table).try_into();
        assert!(parsed.is_ok(), "{parsed:?}");
        let unknown: Result<FileConfig, _> =
            "nope = \"x\"".parse::<toml::Table>().unwrap().try_into();
        let e = unknown.unwrap_err().to_string();
        for k in KEYS {
            assert!(
                e.contains(&format!("`{k}`")),
                "{k} not a FileConfig field? {e}"
            );
        }
        assert_eq!(
            e.matches('`').count() / 2,
            KEYS.len() + 1,
            "a field missing from KEYS: {e}"
        );
    }

    #[test]
    fn unknown_variables_are_warned_about_with_the_closest_name() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("LATCH_BINDD", "127.0.0.1:9"),
                ("LATCH_CONFIG", "x"),
                ("LATCH_TEST_DATABASE_URL", "x"),
                ("LATCH_SOMETHING_ELSE_ENTIRELY", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("LATCH_BINDD")
                && c.warnings[0].contains("did you mean LATCH_BIND?")
        );
        assert!(!c.warnings[1].contains("did you mean"), "{:?}", c.warnings);
    }

    #[test]
    fn defaults() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.issuer_str(), "http://127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.database_url.is_none() && c.redis_url.is_none());
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn issuer_follows_bind() {
        let c = Config::from_sources(None, &env(&[("LATCH_BIND", "127.0.0.1:9999")])).unwrap();
        assert_eq!(c.issuer_str(), "http://127.0.0.1:9999");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = Config::from_sources(
            None,
            &env(&[
                ("LATCH_BIND", "nonsense"),
                ("LATCH_LOG_FORMAT", "xml"),
                ("LATCH_DATABASE_URL", "mysql://u:pw@h/db"),
                ("LATCH_REDIS_URL", "http://x"),
                ("LATCH_ISSUER", "http://login.example.com"),
                ("LATCH_ADMIN_TOKEN", "short"),
                ("LATCH_SECRET_KEY", "abc"),
                ("LATCH_LOG_RETENTION_DAYS", "0"),
                ("LATCH_OUTBOX_RETENTION_DAYS", "a week"),
                ("LATCH_METRICS_TOKEN", "short"),
            ]),
        )
        .unwrap_err();
        let text = e.to_string();
        for key in [
            "LATCH_BIND",
            "LATCH_LOG_FORMAT",
            "LATCH_DATABASE_URL",
            "LATCH_REDIS_URL",
            "LATCH_ISSUER",
            "LATCH_ADMIN_TOKEN",
            "LATCH_SECRET_KEY",
            "LATCH_LOG_RETENTION_DAYS",
            "LATCH_OUTBOX_RETENTION_DAYS",
            "LATCH_METRICS_TOKEN",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
        assert!(!text.contains(":pw@"), "password leaked: {text}");
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("latch-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latch.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:7000\"\nlog_format = \"json\"\n").unwrap();
        let c =
            Config::from_sources(Some(&path), &env(&[("LATCH_BIND", "127.0.0.1:7001")])).unwrap();
        assert_eq!(c.bind.port(), 7001);
        assert_eq!(c.log_format, LogFormat::Json);
        std::fs::write(&path, "bnid = \"x\"\n").unwrap();
        let e = Config::from_sources(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bnid"), "{e}");
        std::fs::write(&path, "log_format = \"xml\"\n").unwrap();
        let e = Config::from_sources(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log_format (config file, line 1)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn max_concurrent_requests() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.max_concurrent_requests, DEFAULT_MAX_CONCURRENT_REQUESTS);
        let c =
            Config::from_sources(None, &env(&[("LATCH_MAX_CONCURRENT_REQUESTS", "8")])).unwrap();
        assert_eq!(c.max_concurrent_requests, 8);
        for bad in ["0", "100001", "many", ""] {
            let e = Config::from_sources(None, &env(&[("LATCH_MAX_CONCURRENT_REQUESTS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("LATCH_MAX_CONCURRENT_REQUESTS"), "{e}");
        }
    }

    #[test]
    fn retention_days() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.log_retention, time::Duration::days(30));
        assert_eq!(c.outbox_retention, time::Duration::days(7));
        let c = Config::from_sources(
            None,
            &env(&[
                ("LATCH_LOG_RETENTION_DAYS", "90"),
                ("LATCH_OUTBOX_RETENTION_DAYS", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.log_retention, time::Duration::days(90));
        assert_eq!(c.outbox_retention, time::Duration::days(1));
        let c = Config::from_sources(None, &env(&[("LATCH_OUTBOX_RETENTION_HOURS", "6")])).unwrap();
        assert_eq!(c.outbox_retention, time::Duration::hours(6));
        for bad in ["0", "87601", "6h", ""] {
            let e = Config::from_sources(None, &env(&[("LATCH_OUTBOX_RETENTION_HOURS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("LATCH_OUTBOX_RETENTION_HOURS"), "{e}");
        }
        let e = Config::from_sources(
            None,
            &env(&[
                ("LATCH_OUTBOX_RETENTION_HOURS", "6"),
                ("LATCH_OUTBOX_RETENTION_DAYS", "1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        for bad in ["0", "-3", "3651", "30d", ""] {
            let e = Config::from_sources(None, &env(&[("LATCH_LOG_RETENTION_DAYS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("LATCH_LOG_RETENTION_DAYS"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn outbound_allow_list() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.outbound_allow.is_empty());
        let c = Config::from_sources(
            None,
            &env(&[("LATCH_OUTBOUND_ALLOW", "10.0.0.0/8, fd00::/8,192.168.1.7")]),
        )
        .unwrap();
        let policy = c.outbound_policy();
        assert!(policy.check_ip("10.9.8.7".parse().unwrap(), false).is_ok());
        assert!(policy.check_ip("fd00::5".parse().unwrap(), false).is_ok());
        assert!(
            policy
                .check_ip("192.168.1.7".parse().unwrap(), false)
                .is_ok()
        );
        assert!(
            policy
                .check_ip("192.168.1.8".parse().unwrap(), false)
                .is_err()
        );
        let e = Config::from_sources(
            None,
            &env(&[("LATCH_OUTBOUND_ALLOW", "10.0.0.0/8,intranet")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("LATCH_OUTBOUND_ALLOW") && e.contains("intranet"),
            "{e}"
        );
    }

    #[test]
    fn trusted_proxies_are_address_ranges() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.trusted_proxies.is_empty());
        let c = Config::from_sources(
            None,
            &env(&[(
                "LATCH_TRUSTED_PROXIES",
                "10.0.0.0/8, 2001:db8::/32,192.0.2.7",
            )]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.ranges().len(), 3);
        assert!(c.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        let e = Config::from_sources(
            None,
            &env(&[("LATCH_TRUSTED_PROXIES", "10.0.0.0/8, lb.internal")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("LATCH_TRUSTED_PROXIES") && e.contains("lb.internal"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("latch-cfg-tp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latch.toml");
        std::fs::write(&path, "trusted_proxies = \"10.0.0.0/33\"\n").unwrap();
        let e = Config::from_sources(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_proxies (config file, line 1)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn metrics_token_is_read_and_never_shown() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.metrics_token.is_none());
        let token = "scrape-token-0123456789";
        let c = Config::from_sources(None, &env(&[("LATCH_METRICS_TOKEN", token)])).unwrap();
        assert_eq!(c.metrics_token.as_deref(), Some(token));
        assert!(!format!("{c:?}").contains(token));
        let (_d, path) = file(&format!("metrics_token = \"{token}\"\n"));
        let c = Config::from_sources(Some(&path), &[]).unwrap();
        assert_eq!(c.metrics_token.as_deref(), Some(token));
        let e = Config::from_sources(
            None,
            &env(&[("LATCH_METRICS_TOKEN", "with spaces in the token")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("LATCH_METRICS_TOKEN"), "{e}");
    }

    #[test]
    fn secret_key_formats() {
        let k = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = Config::from_sources(None, &env(&[("LATCH_SECRET_KEY", k)])).unwrap();
        assert_eq!(c.secret_key.unwrap()[31], 31);
        assert!(!format!("{c:?}").contains(k));
    }
}
