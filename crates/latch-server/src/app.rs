//! The composition root: one actix-web application out of every endpoint crate.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, web};
use latch_core::Clock;
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_http::{AdminToken, ManagementAuthConfig};
use serde_json::json;

use crate::config::Config;

/// Shared state of a running Latch.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub admin_token: Option<AdminToken>,
    pub keys: Arc<latch_jose::KeyRing>,
    /// Seals opaque access tokens (key derived from the master key, so shared by every instance).
    pub sealer: Arc<latch_jose::TokenSealer>,
    pub backchannel: Arc<latch_backchannel::Backchannel>,
    /// Discovery documents and JWKS of other issuers (upstream IdPs, Okta's Universal Logout).
    pub remote: Arc<latch_remote::RemoteKeys>,
    /// Upstream Okta, OpenID Connect and SAML connections (metadata cached across requests).
    pub upstream: Arc<dyn latch_core::connector::RedirectConnector>,
    /// The same connectors' logout side (SAML Single Logout, federated logout).
    pub upstream_logout: Arc<dyn latch_core::connector::UpstreamLogout>,
    /// What Latch signs SAML with (its RS256 key, with a certificate).
    pub saml_keys: Arc<latch_saml::keys::IdpKeys>,
    /// What `GET /metrics` scrapes share (the last pending-delivery count).
    pub scrape: Arc<crate::metrics::Scrape>,
    /// The instance's request slots (`LATCH_MAX_CONCURRENT_REQUESTS`), shared by its workers.
    pub shed: crate::shed::Shed,
}

impl AppState {
    /// The Logout service every session-ending path calls, over this state's stores (built from
    /// them, so a state whose stores were swapped, as tests do, ends sessions in those).
    pub fn logout(&self) -> Arc<latch_core::logout::Logout> {
        Arc::new(latch_core::logout::Logout::new(
            self.store.clone(),
            self.sessions.clone(),
            self.clock.clone(),
            Arc::new(latch_backchannel::OutboxNotifier(self.backchannel.clone())),
        ))
    }
}

/// Starts the background workers (back-channel delivery, log streams, the expiry sweeper, session
/// purge, key reload, retention of logs and finished deliveries); they stop when the returned handles are aborted or the
/// runtime ends.
pub fn spawn_workers(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![tokio::spawn(state.backchannel.clone().run())];
    let (sessions, clock) = (state.sessions.clone(), state.clock.clone());
    handles.push(tokio::spawn(async move {
        // Records of sessions ended more than EXPIRED_GRACE ago (the sweeper had them), and
        // other expired records; Redis expires keys on its own.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            match sessions.purge_expired(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired session records purged"),
                Err(e) => tracing::warn!(error = %e, "session purge failed"),
            }
        }
    }));
    let keys = state.keys.clone();
    handles.push(tokio::spawn(async move {
        // Keys rotated by another instance (or `latch keys rotate`) are signed with and served
        // within RELOAD_EVERY; a token naming an unknown kid reads them at once.
        let mut tick = tokio::time::interval(latch_jose::RELOAD_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = keys.reload().await {
                tracing::warn!(error = %e, "signing key reload failed");
            }
        }
    }));
    let saml_keys = state.saml_keys.clone();
    handles.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(latch_saml::keys::REFRESH_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = saml_keys.refresh().await {
                tracing::warn!(error = %e, "SAML signing key reload failed");
            }
        }
    }));
    handles.push(tokio::spawn(crate::expiry::run(
        state.sessions.clone(),
        state.logout(),
        state.clock.clone(),
    )));
    // Log streams: each stream's queued events to its sink, in order.
    handles.push(tokio::spawn(
        Arc::new(latch_logstream::LogStreams::new(
            state.store.clone(),
            state.clock.clone(),
            latch_logstream::Settings {
                outbound: state.config.outbound_policy(),
                ..Default::default()
            },
        ))
        .run(),
    ));
    handles.push(tokio::spawn(crate::retention::run(
        state.store.clone(),
        state.clock.clone(),
        state.config.clone(),
    )));
    handles.push(tokio::spawn(crate::metrics::upkeep()));
    handles
}

/// Sign-in, with each protocol's completion.
fn login(
    state: &AppState,
    settings: &latch_oidc::Settings,
    logout: &Arc<latch_core::logout::Logout>,
    front_channel: &Arc<dyn latch_core::logout::FrontChannelPage>,
) -> latch_login::Login {
    let issuer = state.config.issuer_str().to_owned();
    let oidc: Arc<dyn latch_login::Completion> = Arc::new(latch_oidc::OidcCompletion {
        issuer: issuer.clone(),
        code_ttl: settings.code_ttl,
    });
    let samlp: Arc<dyn latch_login::Completion> = Arc::new(latch_samlp::SamlpCompletion {
        issuer: issuer.clone(),
        keys: state.saml_keys.clone(),
    });
    latch_login::Login::new(latch_login::Deps {
        store: state.store.clone(),
        sessions: state.sessions.clone(),
        clock: state.clock.clone(),
        issuer,
        database: Arc::new(latch_federation::DatabaseConnector {
            store: state.store.clone(),
            sessions: state.sessions.clone(),
            clock: state.clock.clone(),
        }),
        upstream: state.upstream.clone(),
        logout: logout.clone(),
        upstream_logout: state.upstream_logout.clone(),
        front_channel: front_channel.clone(),
        completions: [
            (latch_login::Protocol::Oidc, oidc),
            (latch_login::Protocol::Samlp, samlp),
        ]
        .into_iter()
        .collect(),
        settings: latch_login::Settings {
            secure_cookies: settings.secure_cookies,
            ..latch_login::Settings::default()
        },
    })
}

/// Routes of the whole product.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    let oidc_settings = latch_oidc::Settings {
        secure_cookies: state.config.issuer.scheme() == "https",
        ..latch_oidc::Settings::default()
    };
    let logout = state.logout();
    let front_channel: Arc<dyn latch_core::logout::FrontChannelPage> =
        Arc::new(latch_slo::SloPages::new(latch_slo::SamlSigner {
            keys: state.saml_keys.clone(),
            clock: state.clock.clone(),
        }));
    let login = login(&state, &oidc_settings, &logout, &front_channel);
    // The process's metrics recorder, installed before anything is counted.
    crate::metrics::handle();
    if state.sessions.backend() == "redis" {
        latch_core::metrics::register_redis();
    }
    move |cfg| {
        cfg.app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(ManagementAuthConfig {
                admin_token: state.admin_token.clone(),
                verify_token: Some(management_token_verifier(&state)),
            }))
            .app_data(web::PayloadConfig::new(latch_http::json::MAX_BODY))
            // Read by `latch_http::client_ip`, which every handler and the request log use.
            .app_data(web::Data::new(state.config.trusted_proxies.clone()))
            .route("/healthz", web::get().to(get_healthz))
            .route("/readyz", web::get().to(get_readyz))
            .route(
                crate::metrics::PATH,
                web::get().to(crate::metrics::get_metrics),
            )
            .configure(latch_admin::configure(latch_admin::Deps {
                store: state.store.clone(),
                sessions: state.sessions.clone(),
                clock: state.clock.clone(),
                keys: state.keys.clone(),
                issuer: state.config.issuer_str().to_owned(),
                notifier: Arc::new(latch_backchannel::OutboxNotifier(state.backchannel.clone())),
                logout: logout.clone(),
                front_channel: front_channel.clone(),
                outbound: state.config.outbound_policy(),
            }))
            .configure(latch_federation::backchannel_in::configure(
                latch_federation::backchannel_in::Deps {
                    store: state.store.clone(),
                    sessions: state.sessions.clone(),
                    clock: state.clock.clone(),
                    remote: state.remote.clone(),
                    logout: logout.clone(),
                },
            ))
            .configure(latch_federation::saml::configure(
                latch_federation::saml::MetadataDeps {
                    store: state.store.clone(),
                    issuer: state.config.issuer_str().to_owned(),
                    keys: state.saml_keys.clone(),
                },
            ))
            .configure(latch_gtr::configure(latch_gtr::Deps {
                store: state.store.clone(),
                sessions: state.sessions.clone(),
                clock: state.clock.clone(),
                remote: state.remote.clone(),
                logout: logout.clone(),
                issuer: state.config.issuer_str().to_owned(),
            }))
            .configure(latch_scim::configure(latch_scim::Deps {
                store: state.store.clone(),
                clock: state.clock.clone(),
                logout: logout.clone(),
                issuer: state.config.issuer_str().to_owned(),
            }))
            .configure(latch_samlp::configure(latch_samlp::Deps {
                store: state.store.clone(),
                sessions: state.sessions.clone(),
                clock: state.clock.clone(),
                issuer: state.config.issuer_str().to_owned(),
                keys: state.saml_keys.clone(),
                login: login.clone(),
                logout: logout.clone(),
                front_channel: front_channel.clone(),
                secure_cookies: oidc_settings.secure_cookies,
            }))
            .configure(login.configure())
            .configure(latch_oidc::configure(latch_oidc::Deps {
                store: state.store.clone(),
                sessions: state.sessions.clone(),
                clock: state.clock.clone(),
                keys: state.keys.clone(),
                sealer: state.sealer.clone(),
                issuer: state.config.issuer_str().to_owned(),
                login: login.clone(),
                logout: logout.clone(),
                front_channel: front_channel.clone(),
                settings: oidc_settings,
            }))
            .default_service(web::to(not_found));
    }
}

/// Accepts `client_credentials` access tokens issued by this Latch for its management API.
fn management_token_verifier(state: &AppState) -> latch_http::auth::TokenVerifier {
    let keys = state.keys.clone();
    let issuer = state.config.issuer_str().to_owned();
    let audience = format!("{issuer}/api/v2/");
    Arc::new(move |token: String| {
        let (keys, issuer, audience) = (keys.clone(), issuer.clone(), audience.clone());
        Box::pin(async move {
            use latch_core::model::SigningAlg;
            let opts = latch_jose::VerifyOptions {
                algs: &[SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA],
                issuer: &issuer,
                audience: Some(&audience),
                check_expiry: true,
                typ: Some("at+jwt"),
            };
            let claims = keys.verify_reloading(&token, &opts).await.ok()?;
            if claims["gty"] != "client-credentials" {
                return None;
            }
            Some(latch_http::ManagementAuth::Client {
                client_id: claims["client_id"].as_str()?.to_owned(),
                scopes: claims["scope"]
                    .as_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            })
        })
    })
}

/// The application with every middleware, as `serve` runs it and as tests drive it.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let shed = state.shed.clone();
    let https_origin: Option<Arc<str>> = (state.config.issuer.scheme() == "https")
        .then(|| state.config.issuer.origin().ascii_serialization().into());
    App::new()
        // Innermost: a shed request's 503 still gets the security headers and a request id.
        .wrap(from_fn(move |req, next| {
            let shed = shed.clone();
            async move { shed.handle(req, next).await }
        }))
        // A trusted proxy saying the client came over plain HTTP, to an https issuer: redirected
        // or refused before anything is read.
        .wrap(from_fn(move |req, next| {
            latch_http::headers::require_https(https_origin.clone(), req, next)
        }))
        .wrap(latch_http::headers::security_headers(
            state.config.issuer_str().starts_with("https://"),
        ))
        .wrap(from_fn(latch_http::headers::request_id_header))
        .wrap(from_fn(crate::metrics::record_http))
        .wrap(tracing_actix_web::TracingLogger::<
            latch_http::client_ip::RootSpan,
        >::new())
        .configure(configure(state))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "statusCode": 404, "error": "Not Found", "message": "Not found.", "errorCode": "not_found"
    }))
}

/// The process is up.
async fn get_healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "status": "ok" }))
}

/// The database and the session store both answer within two seconds.
async fn get_readyz(state: web::Data<AppState>) -> HttpResponse {
    let limit = Duration::from_secs(2);
    let (db, sessions) = tokio::join!(
        tokio::time::timeout(limit, state.store.ping()),
        tokio::time::timeout(limit, state.sessions.ping())
    );
    let db_ok = matches!(db, Ok(Ok(())));
    let sessions_ok = matches!(sessions, Ok(Ok(())));
    if !db_ok {
        tracing::warn!(result = ?db.map(|r| r.map_err(|e| e.to_string())), "readiness: database not answering");
    }
    if !sessions_ok {
        tracing::warn!(result = ?sessions.map(|r| r.map_err(|e| e.to_string())), "readiness: session store not answering");
    }
    let body = json!({
        "status": if db_ok && sessions_ok { "ready" } else { "unavailable" },
        "database": { "backend": state.store.backend(), "ok": db_ok },
        "sessions": { "backend": state.sessions.backend(), "ok": sessions_ok },
    });
    let mut res = if db_ok && sessions_ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header(("Cache-Control", "no-store")).json(body)
}
