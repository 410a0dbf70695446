//! A Latch per test, on the backend pair the test asks for.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use latch_server::AppState;
use latch_server::bootstrap;
use latch_server::config::Config;
use latch_testkit::env::{PgSchema, TempDir, unique};
use serde_json::Value;

pub const TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug, Clone, Copy)]
pub enum Backends {
    /// SQLite + embedded sessions: the default.
    Embedded,
    /// PostgreSQL + Redis: production.
    Production,
}

pub struct Harness {
    pub state: AppState,
    _dir: TempDir,
    _schema: Option<PgSchema>,
}

/// `LATCH_*` variables, and what must live as long as the Latch using them.
pub type TestEnv = (Vec<(String, String)>, TempDir, Option<PgSchema>);

/// Environment for a fresh Latch on `backends`, or `None` (loudly) when the services are not
/// configured.
pub fn env_for(test: &str, backends: Backends) -> Option<TestEnv> {
    let dir = TempDir::new();
    let mut env = vec![
        (
            "LATCH_DATA_DIR".to_owned(),
            dir.path().to_string_lossy().into_owned(),
        ),
        ("LATCH_ADMIN_TOKEN".to_owned(), TOKEN.to_owned()),
    ];
    let mut schema = None;
    if let Backends::Production = backends {
        let db = latch_testkit::env::postgres_url(test)?;
        let redis = latch_testkit::env::redis_url(test)?;
        let s = PgSchema::create(&db);
        env.push(("LATCH_DATABASE_URL".into(), s.url.clone()));
        env.push(("LATCH_REDIS_URL".into(), redis));
        env.push((
            "LATCH_REDIS_PREFIX".into(),
            format!("latch-test:{}:", unique()),
        ));
        env.push((
            "LATCH_SECRET_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ));
        schema = Some(s);
    }
    Some((env, dir, schema))
}

impl Harness {
    /// Everywhere this Latch keeps data: its data dir, and the PostgreSQL schema and Redis prefix
    /// when it runs on them.
    pub fn at_rest(&self) -> Vec<latch_testkit::at_rest::AtRest> {
        use latch_testkit::at_rest::AtRest;
        let c = &self.state.config;
        let mut out = vec![AtRest::Dir(c.data_dir.clone())];
        if let (Some(url), Some(schema)) = (&c.database_url, &self._schema) {
            out.push(AtRest::Postgres {
                url: url.clone(),
                schema: schema.name.clone(),
            });
        }
        if let Some(url) = &c.redis_url {
            out.push(AtRest::Redis {
                url: url.clone(),
                prefix: c.redis_prefix.clone(),
            });
        }
        out
    }
}

pub async fn harness(test: &str, backends: Backends) -> Option<Harness> {
    harness_with(test, backends, &[]).await
}

/// [`harness`] with more `LATCH_*` settings.
pub async fn harness_with(
    test: &str,
    backends: Backends,
    extra: &[(&str, &str)],
) -> Option<Harness> {
    let (mut env, dir, schema) = tokio::task::spawn_blocking({
        let test = test.to_owned();
        move || env_for(&test, backends)
    })
    .await
    .unwrap()?;
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = Config::from_sources(None, &env).unwrap();
    let started = bootstrap::start(config).await.unwrap();
    // What a start leaves to the background, done before the test looks.
    started
        .state
        .keys
        .publish_missing_next_keys()
        .await
        .unwrap();
    Some(Harness {
        state: started.state,
        _dir: dir,
        _schema: schema,
    })
}

/// Declares one `#[actix_web::test]` per backend pair for an async test body taking a `Harness`.
#[macro_export]
macro_rules! on_all_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[actix_web::test]
            async fn embedded() {
                if let Some(h) = $crate::support::harness(
                    concat!(stringify!($name), "::embedded"),
                    $crate::support::Backends::Embedded,
                )
                .await
                {
                    $body(h).await;
                }
            }
            #[actix_web::test]
            async fn postgres_redis() {
                if let Some(h) = $crate::support::harness(
                    concat!(stringify!($name), "::postgres_redis"),
                    $crate::support::Backends::Production,
                )
                .await
                {
                    $body(h).await;
                }
            }
        }
    };
}

/// The app of `$h` (a [`Harness`]) as an in-process actix test service.
#[macro_export]
macro_rules! app {
    ($h:expr) => {
        actix_web::test::init_service(latch_server::app::app($h.state.clone())).await
    };
}

/// Where a test sends its HTTP calls: a Latch served in this process (any actix test service,
/// as [`app!`] makes) or one listening on a port ([`Remote`]).
pub trait Target {
    /// Sends `method path`, with `body` as JSON and `token` as the bearer token when given; the
    /// status and the JSON answer (`Null` when empty or not JSON).
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> impl Future<Output = (StatusCode, Value)>;
}

impl<S, B> Target for S
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        use actix_web::test;
        let mut req = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        if let Some(b) = body {
            req = req.set_json(b);
        }
        let res = test::call_service(self, req.to_request()).await;
        let status = res.status();
        let bytes = test::read_body(res).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A Latch listening at a base URL (`http://127.0.0.1:port`), called with a client of the test.
pub struct Remote<'a>(pub &'a reqwest::Client, pub &'a str);

impl Target for Remote<'_> {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let Self(http, base) = self;
        let mut r = http.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A call to `target`: the status and the JSON answer (`Null` when empty or not JSON).
pub async fn call(
    target: &impl Target,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    target.send(method, path, body, token).await
}

/// A management API call with the admin token; the JSON answer (`Null` when empty). Fails the
/// test on an error status.
pub async fn api(target: &impl Target, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = target.send(method, path, body, Some(TOKEN)).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

/// Polls `f` until it answers `Some`, for at most 10 s; fails the test naming `what` after that.
pub async fn eventually<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub use latch_testkit::http::read_request;
