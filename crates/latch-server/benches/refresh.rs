//! The token endpoint's refresh grant, end to end over HTTP on loopback, with RS256 and ES256,
//! beside the raw signing rate of the same algorithm measured in the same run.
//!
//! Each refresh response carries one signature (the ID token; the access token is opaque,
//! sealed for `/userinfo`), so the signing limit for refreshes is the signing rate; the target is
//! >= 70% of it.
//!
//! `cargo xtask bench` runs it on the embedded default, and on PostgreSQL + Redis when
//! `LATCH_BENCH_DATABASE_URL`/`LATCH_BENCH_REDIS_URL` (or the LATCH_TEST_* ones) are set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use latch_core::model::*;
use latch_core::*;
use latch_server::AppState;
use latch_testkit::env::unique;
use serde_json::Value;

mod common;

/// Latch runs in this process: the same allocator as the `latch` binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAINS: usize = 32;
const RUN: Duration = Duration::from_secs(6);
const WARMUP: Duration = Duration::from_secs(1);

/// Signatures per second of `alg` on `threads` threads for `dur`, through the same key ring the
/// server signs with.
fn signing_rate(state: &AppState, alg: SigningAlg, threads: usize, dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let claims = serde_json::json!({"iss": "https://latch.example", "sub": "auth0|bench", "aud": "x", "iat": 1, "exp": 2, "jti": "j", "scope": "openid email profile offline_access"});
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (keys, stop, count, claims) = (
                state.keys.clone(),
                stop.clone(),
                count.clone(),
                claims.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    keys.sign(alg, "JWT", &claims).expect("sign");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("join");
    }
    count.load(Ordering::Relaxed) as f64 / dur.as_secs_f64()
}

async fn seed(state: &AppState, alg: SigningAlg) -> (Client, String, Vec<String>) {
    let now = state.clock.now();
    let secret = latch_jose::random_token(48);
    let client = Client {
        client_id: ClientId::new(latch_jose::random_alnum(32)),
        name: format!("bench-{}", alg.as_str()),
        description: None,
        app_type: AppType::RegularWeb,
        callbacks: vec![url::Url::parse("http://127.0.0.1:9/cb").expect("url")],
        allowed_logout_urls: vec![],
        web_origins: vec![],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        signing_alg: alg,
        lifetimes: TokenLifetimes::default(),
        oidc_logout: OidcLogout::default(),
        addons: Default::default(),
        global_token_revocation: None,
        secrets: vec![ClientSecret {
            digest: latch_jose::token_digest(&secret),
            created_at: now,
        }],
        created_at: now,
        updated_at: now,
    };
    state.store.insert_client(&client).await.expect("client");
    let user = User {
        user_id: UserId::new(format!("auth0|bench{}", unique())),
        email: Some(format!("bench-{}@example.com", unique())),
        email_verified: true,
        name: Some("Bench".into()),
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        profile: Default::default(),
        blocked: false,
        created_at: now,
        updated_at: now,
        last_login: None,
        logins_count: 0,
        app_metadata: Default::default(),
    };
    state.store.insert_user(&user).await.expect("user");
    let mut tokens = Vec::new();
    for _ in 0..CHAINS {
        let t = latch_jose::random_token(32);
        let rt = RefreshToken {
            id: RefreshTokenId::new(format!("rt_{}", unique())),
            digest: latch_jose::token_digest(&t),
            family_id: FamilyId::new(format!("fam_{}", unique())),
            user_id: user.user_id.clone(),
            client_id: client.client_id.clone(),
            session_id: None,
            scope: "openid email profile offline_access".into(),
            offline: true,
            created_at: now,
            expires_at: now + time::Duration::days(1),
            family_expires_at: now + time::Duration::days(1),
            rotated_at: None,
            revoked_at: None,
        };
        // The grant a code exchange would have recorded with this refresh token.
        let grant = latch_testkit::fixtures::grant_of(&rt);
        state
            .store
            .insert_grant(&grant, Some(&rt))
            .await
            .expect("token");
        tokens.push(t);
    }
    (client, secret, tokens)
}

/// Runs `CHAINS` refresh chains (each uses the token the previous answer rotated in).
async fn load(
    base: &str,
    client: &Client,
    secret: &str,
    tokens: Vec<String>,
) -> (f64, Histogram<u64>, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CHAINS)
        .build()
        .expect("client");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let (http, url, id, secret) = (
            http.clone(),
            format!("{base}/oauth/token"),
            client.client_id.to_string(),
            secret.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("hist");
            let (mut ok, mut errors, mut token) = (0u64, 0u64, token);
            loop {
                let elapsed = start.elapsed();
                if elapsed > WARMUP + RUN {
                    break;
                }
                let t0 = Instant::now();
                let res = http
                    .post(&url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                        ("client_id", &id),
                        ("client_secret", &secret),
                    ])
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.expect("json");
                        token = v["refresh_token"]
                            .as_str()
                            .expect("rotated token")
                            .to_owned();
                        if elapsed > WARMUP {
                            let _ = h.record(t0.elapsed().as_micros() as u64);
                            ok += 1;
                        }
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (h, ok, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("hist");
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (h, o, e) = t.await.expect("task");
        hist.add(h).expect("merge");
        ok += o;
        errors += e;
    }
    (ok as f64 / RUN.as_secs_f64(), hist, errors)
}

async fn run(label: &str, env: Vec<(String, String)>) {
    let (state, base, server_handle) = common::serve(&env).await;
    // The ceiling this loader and HTTP stack reach on an endpoint that does nothing.
    {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CHAINS)
            .build()
            .expect("client");
        let count = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..CHAINS)
            .map(|_| {
                let (http, url, count) = (http.clone(), format!("{base}/healthz"), count.clone());
                tokio::spawn(async move {
                    while start.elapsed() < Duration::from_secs(3) {
                        if http
                            .get(&url)
                            .send()
                            .await
                            .map(|r| r.status() == 200)
                            .unwrap_or(false)
                        {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        println!(
            "{label:<16} /healthz with the same loader: {:.0} req/s (the HTTP ceiling here)",
            count.load(Ordering::Relaxed) as f64 / 3.0
        );
    }
    for alg in [SigningAlg::RS256, SigningAlg::ES256] {
        let (client, secret, tokens) = seed(&state, alg).await;
        let (rate, hist, errors) = load(&base, &client, &secret, tokens).await;
        let sign = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || signing_rate(&st, alg, 2, Duration::from_secs(2)))
                .await
                .expect("sign")
        };
        let limit = sign;
        println!(
            "{label:<16} {:<6} refresh {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms | {} signs/s (2 threads) -> limit {:>8.0} refresh/s | {:>5.1}% of limit{}",
            alg.as_str(),
            rate,
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            sign as u64,
            limit,
            100.0 * rate / limit,
            if errors > 0 {
                format!("  ({errors} chains failed)")
            } else {
                String::new()
            }
        );
    }
    server_handle.stop(true).await;
}

#[tokio::main]
async fn main() {
    // The benchmark's own logs would measure the terminal.
    println!(
        "refresh grant over HTTP: {CHAINS} concurrent chains, {}s after {}s warm-up, server with 2 workers on the same 2 cores",
        RUN.as_secs(),
        WARMUP.as_secs()
    );
    common::each_backend(run).await;
}
