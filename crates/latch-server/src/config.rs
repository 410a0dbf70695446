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
    /// `LATCH_BACKCHANNEL_RETRY_FOR`: seconds during which an undelivered back-channel logout is
    /// retried before it is given up (and logged). Default 86400 (a day).
    pub backchannel_retry_for: Option<String>,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub issuer: Url,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    pub secret_key: Option<[u8; 32]>,
    pub admin_password: Option<String>,
    pub backchannel_retry_for: std::time::Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("issuer", &self.issuer.as_str())
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
        let fc: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Err(e) => {
                    return Err(ConfigErrors(vec![format!(
                        "--config {}: cannot read: {e}",
                        p.display()
                    )]));
                }
                Ok(text) => match toml::from_str(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(ConfigErrors(vec![format!(
                            "--config {}: {}",
                            p.display(),
                            e.message()
                        )]));
                    }
                },
            },
        };
        let get = |name: &str, from_file: Option<String>| -> Option<(String, String)> {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (name.to_owned(), v.clone()))
                .or_else(|| from_file.map(|v| (format!("{} (config file)", file_key(name)), v)))
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
        match (issuer, errors.is_empty()) {
            (Some(issuer), true) => Ok(Self {
                bind,
                issuer,
                data_dir,
                database_url,
                redis_url,
                redis_prefix,
                log_format,
                admin_token,
                secret_key,
                admin_password,
                backchannel_retry_for,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The issuer without a trailing slash, as it appears in `iss`.
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
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
        assert!(e.contains("log_format (config file)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_key_formats() {
        let k = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = Config::from_sources(None, &env(&[("LATCH_SECRET_KEY", k)])).unwrap();
        assert_eq!(c.secret_key.unwrap()[31], 31);
        assert!(!format!("{c:?}").contains(k));
    }
}
