//! The `oidc` and `okta` strategies on the `openidconnect` crate: discovery, authorization code
//! with PKCE, `state` and `nonce` bound to the login transaction, ID token validation (the
//! signature by `latch_remote::RemoteKeys` against the issuer's JWKS, with its refetch limits;
//! `iss`, `aud`, `exp`, `iat`, `nonce` by openidconnect), provider metadata cached an hour with
//! a refetch when an ID token's signature fails (at most every 30 seconds per issuer).
//!
//! Okta Workforce needs three values (`domain`, `client_id`, `client_secret`): the org
//! authorization server's issuer is the domain's origin.
//!
//! Every request (discovery, JWKS, token, userinfo) goes through `latch_http::client::Outbound`
//! (the outbound address policy, whoever named the URL, and the body cap), and errors say what
//! failed without quoting the IdP's answer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::Clock;
use latch_core::connection_options::OidcOptions;
use latch_core::connector::{
    Arrived, FederationError, LogoutStart, RedirectConnector, RedirectStart, UpstreamAnswer,
    UpstreamIdentity, UpstreamLogout, UpstreamLogoutRequest,
};
use latch_core::logout::Continue;
use latch_core::model::Connection;
use latch_core::net::FetchError;
use latch_core::paths;
use latch_core::session::UpstreamSession;
use latch_http::client::{MAX_BODY, Outbound};
use latch_jose::TokenSealer;
use latch_remote::{Cache, KeySource, RemoteKeys};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
};
use openidconnect::http::header::{ACCEPT, CONTENT_TYPE};
use openidconnect::http::{HeaderMap, HeaderValue, Method, StatusCode};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse, UserInfoError,
};
use serde_json::{Value, json};

/// Metadata is refetched for a failed ID token signature, or after a failure, at most every
/// `REFETCH_EVERY`, and refreshed after `MAX_AGE` anyway; the JWKS likewise, by `RemoteKeys`.
pub use latch_remote::{MAX_AGE, REFETCH_EVERY};

pub struct OidcConnector {
    http: Http,
    /// Provider metadata by issuer: one fetch at a time, failures remembered with backoff.
    metadata: Cache<Provider, String>,
    /// The issuers' JWKS, and the ID token signature check.
    remote: Arc<RemoteKeys>,
    /// Seals the upstream ID token kept with the session (for a federated logout's
    /// `id_token_hint`): sessions never hold it in the clear.
    sealer: Arc<TokenSealer>,
}

/// The HKDF info of the key that seals upstream ID tokens ([`TokenSealer::derive_for`]): not the
/// access tokens' key, so neither can pass for the other.
pub const UPSTREAM_TOKEN_KEY_INFO: &[u8] = b"latch upstream id token v1";

/// openidconnect's HTTP client over Latch's outbound one: the address policy on every URL
/// (discovery names the JWKS, token and userinfo endpoints), answers capped at [`MAX_BODY`].
struct Http(Outbound);

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = FetchError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let a = self
                .0
                .send(
                    parts.method,
                    &parts.uri.to_string(),
                    parts.headers,
                    body,
                    MAX_BODY,
                )
                .await?;
            let mut res = HttpResponse::new(a.body);
            *res.status_mut() = a.status;
            *res.headers_mut() = a.headers;
            Ok(res)
        })
    }
}

/// What went wrong with the code exchange, naming only standard OAuth error codes.
fn token_failure(
    e: RequestTokenError<FetchError, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::Extension(_) => "the IdP answered with an error".into(),
            code => format!("the IdP answered {}", code.as_ref()),
        },
        RequestTokenError::Request(f) => f.to_string(),
        RequestTokenError::Parse(..) => "not a token response".into(),
        RequestTokenError::Other(_) => "unexpected answer".into(),
    }
}

fn userinfo_failure(e: UserInfoError<FetchError>) -> String {
    match e {
        UserInfoError::Request(f) => f.to_string(),
        UserInfoError::Response(status, ..) if !status.is_success() => {
            format!("HTTP {}", status.as_u16())
        }
        UserInfoError::ClaimsVerification(_) => "claims do not match the ID token".into(),
        _ => "not a userinfo answer".into(),
    }
}

impl OidcConnector {
    /// Requests go through `http`; ID token keys come from `remote`; metadata is cached on
    /// `clock`.
    pub fn new(
        http: Outbound,
        remote: Arc<RemoteKeys>,
        clock: Arc<dyn Clock>,
        sealer: Arc<TokenSealer>,
    ) -> Self {
        Self {
            http: Http(http),
            metadata: Cache::new(clock),
            remote,
            sealer,
        }
    }

    /// The upstream ID token a session keeps, opened (`None` when it is not one this key
    /// sealed).
    fn open_id_token(&self, upstream: &UpstreamSession) -> Option<String> {
        let sealed = upstream.sealed_id_token.as_deref()?;
        self.sealer.open(sealed)?["id_token"]
            .as_str()
            .map(str::to_owned)
    }

    /// The issuer's metadata, cached an hour; `force` refetches it unless it was fetched (or
    /// failed) within the last [`REFETCH_EVERY`] (longer after repeated failures).
    async fn metadata(&self, issuer: &str, force: bool) -> Result<Provider, FederationError> {
        let url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| FederationError::Misconfigured(format!("issuer: {e}")))?;
        self.metadata
            .get(
                issuer,
                |_| !force,
                || async {
                    self.discover(&url)
                        .await
                        .map_err(|e| format!("discovery of {issuer}: {e}"))
                },
            )
            .await
            .map_err(FederationError::Unavailable)
    }

    /// `{issuer}/.well-known/openid-configuration`, as openidconnect's discovery reads it (a 200
    /// answer, JSON, naming this issuer), and the JWKS it names, through `RemoteKeys` (whose
    /// cache and refetch limits then serve the ID token checks). The error says what failed
    /// without quoting the answer.
    async fn discover(&self, issuer: &IssuerUrl) -> Result<Provider, String> {
        let url = issuer
            .join(".well-known/openid-configuration")
            .map_err(|_| "not a URL")?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let a = self
            .http
            .0
            .send(Method::GET, url.as_str(), headers, Vec::new(), MAX_BODY)
            .await
            .map_err(|e| e.to_string())?;
        if a.status != StatusCode::OK {
            return Err(format!("HTTP {}", a.status.as_u16()));
        }
        let json = a.headers.get(CONTENT_TYPE).is_none_or(|ct| {
            ct.to_str().is_ok_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            })
        });
        if !json {
            return Err("the answer is not JSON".into());
        }
        let meta: CoreProviderMetadata =
            serde_json::from_slice(&a.body).map_err(|_| "not a discovery document")?;
        // RP-Initiated Logout's `end_session_endpoint`, which openidconnect's core metadata
        // does not carry.
        let end_session = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v["end_session_endpoint"].as_str().map(str::to_owned))
            .filter(|u| url::Url::parse(u).is_ok());
        if meta.issuer() != issuer {
            return Err("the document names another issuer".into());
        }
        // As openidconnect's discovery did: a JWKS that cannot be had fails the sign-in at its
        // start, and the first callback finds the keys cached.
        let jwks = self
            .remote
            .jwks(meta.jwks_uri())
            .await
            .map_err(|e| e.to_string())?;
        // openidconnect verifies signed userinfo answers (`application/jwt`) with the keys on
        // the metadata, which its discovery used to set: set them from the same JWKS.
        let keys: openidconnect::core::CoreJsonWebKeySet = serde_json::to_value(&*jwks)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or("the JWKS cannot be used")?;
        Ok(Provider::new(meta.set_jwks(keys), end_session))
    }
}

/// An issuer's metadata, with its ID token algorithms ready for signature checks (parsed once
/// per fetch, not once per sign-in).
#[derive(Clone)]
struct Provider {
    meta: CoreProviderMetadata,
    algs: Arc<Vec<jsonwebtoken::Algorithm>>,
    /// `end_session_endpoint`, when the provider has one.
    end_session: Option<String>,
}

impl Provider {
    /// The algorithms the provider advertises for ID tokens (asymmetric ones only are ever
    /// accepted; RS256 when it says nothing).
    fn new(meta: CoreProviderMetadata, end_session: Option<String>) -> Self {
        let advertised: Vec<jsonwebtoken::Algorithm> = meta
            .id_token_signing_alg_values_supported()
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        let algs = if advertised.is_empty() {
            vec![jsonwebtoken::Algorithm::RS256]
        } else {
            advertised
        };
        Self {
            meta,
            algs: Arc::new(algs),
            end_session,
        }
    }
}

/// A connection's options, or why it cannot sign anyone in.
fn options(c: &Connection) -> Result<OidcOptions, FederationError> {
    OidcOptions::from_connection(c).map_err(|e| FederationError::Misconfigured(e.to_string()))
}

/// Latch's client at the IdP, sending the browser back to Latch's callback under `latch`.
fn client(
    o: &OidcOptions,
    m: CoreProviderMetadata,
    latch: &str,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    FederationError,
> {
    let secret = o
        .client_secret
        .as_ref()
        .map(|s| ClientSecret::new(s.expose().to_owned()));
    let redirect = RedirectUrl::new(paths::callback_url(latch))
        .map_err(|e| FederationError::Misconfigured(format!("callback: {e}")))?;
    Ok(
        CoreClient::from_provider_metadata(m, ClientId::new(o.client_id.clone()), secret)
            .set_redirect_uri(redirect),
    )
}

#[async_trait]
impl RedirectConnector for OidcConnector {
    async fn start(
        &self,
        c: &Connection,
        latch: &str,
        state: &str,
    ) -> Result<RedirectStart, FederationError> {
        let o = options(c)?;
        let issuer = o.issuer.clone();
        let m = self.metadata(&issuer, false).await?;
        let client = client(&o, m.meta, latch)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            Nonce::new_random,
        );
        for s in o.scope.split_whitespace().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.to_owned()));
        }
        let (url, _, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(RedirectStart {
            url: url.to_string(),
            saved: json!({ "nonce": nonce.secret(), "pkce_verifier": verifier.secret(), "issuer": issuer }),
        })
    }

    async fn finish(
        &self,
        c: &Connection,
        latch: &str,
        params: &HashMap<String, String>,
        saved: &Value,
    ) -> Result<UpstreamIdentity, FederationError> {
        if let Some(error) = params.get("error") {
            return Err(FederationError::Upstream {
                error: error.clone(),
                description: params.get("error_description").cloned().unwrap_or_default(),
            });
        }
        let code = params
            .get("code")
            .ok_or_else(|| FederationError::Rejected("no code in the callback".into()))?;
        let issuer = saved["issuer"]
            .as_str()
            .ok_or_else(|| FederationError::Rejected("login transaction lost its issuer".into()))?;
        // RFC 9207: an `iss` in the response must be the issuer we sent the user to.
        if let Some(iss) = params.get("iss")
            && iss.trim_end_matches('/') != issuer
        {
            return Err(FederationError::Rejected(
                "the callback's iss is another issuer".into(),
            ));
        }
        let nonce = Nonce::new(saved["nonce"].as_str().unwrap_or_default().to_owned());
        let verifier = PkceCodeVerifier::new(
            saved["pkce_verifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let o = options(c)?;
        let m = self.metadata(issuer, false).await?;
        let cl = client(&o, m.meta.clone(), latch)?;
        let tokens = cl
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| FederationError::Misconfigured(e.to_string()))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| {
                FederationError::Rejected(format!("code exchange: {}", token_failure(e)))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| FederationError::Rejected("no ID token".into()))?;
        // The signature, checked with aws-lc against the issuer's JWKS by `RemoteKeys`, which
        // refetches it (rate-limited) for an unknown key or a failed signature (openidconnect's
        // own check runs RSA in pure-Rust bignums, several times slower). Perhaps the IdP changed
        // its metadata too: on failure, refetch that (rate-limited) and check once more.
        let compact = id_token.to_string();
        let signature_ok = |p: &Provider| {
            let (jwks, algs) = (p.meta.jwks_uri().to_string(), p.algs.clone());
            let compact = &compact;
            async move {
                self.remote
                    .verify_signature(compact, KeySource::Jwks(&jwks), &algs)
                    .await
            }
        };
        if let Err(first) = signature_ok(&m).await {
            let fresh = self.metadata(issuer, true).await?;
            signature_ok(&fresh).await.map_err(|e| {
                FederationError::Rejected(format!("ID token: {e} (first: {first})"))
            })?;
        }
        // Then every claim (issuer, audience, azp, expiry, issued-at, nonce), by openidconnect.
        let claims = id_token
            .claims(
                &cl.id_token_verifier().insecure_disable_signature_check(),
                &nonce,
            )
            .cloned()
            .map_err(|e| FederationError::Rejected(format!("ID token: {e}")))?;
        // Every claim the IdP sent (the typed claims drop the ones openidconnect does not model,
        // such as `sid`): the token's payload, now that its signature and claims are verified.
        let mut raw = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or_else(|| serde_json::to_value(&claims).unwrap_or(Value::Null));
        // Many IdPs put profile claims in userinfo only (oidc-provider, Okta's org server for
        // code flows): fetch it when the ID token lacks them. Its `sub` must be the ID token's.
        if raw.get("email").is_none()
            && let Ok(req) = cl.user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            )
        {
            let fetched: Result<openidconnect::core::CoreUserInfoClaims, _> =
                req.request_async(&self.http).await;
            match fetched {
                Ok(info) => {
                    if let (Some(obj), Ok(Value::Object(extra))) =
                        (raw.as_object_mut(), serde_json::to_value(&info))
                    {
                        for (k, v) in extra {
                            obj.entry(k).or_insert(v);
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(error = %userinfo_failure(e), "upstream userinfo unavailable; using the ID token's claims")
                }
            }
        }
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut profile = raw.as_object().cloned().unwrap_or_default();
        for k in [
            "iss",
            "aud",
            "exp",
            "iat",
            "nonce",
            "at_hash",
            "c_hash",
            "auth_time",
            "azp",
            "jti",
            "sid",
        ] {
            profile.remove(k);
        }
        Ok(UpstreamIdentity {
            issuer: claims.issuer().as_str().trim_end_matches('/').to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: s("email"),
            email_verified: raw
                .get("email_verified")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            name: s("name"),
            given_name: s("given_name"),
            family_name: s("family_name"),
            nickname: s("nickname").or_else(|| s("preferred_username")),
            picture: s("picture"),
            profile,
            session: UpstreamSession {
                sid: s("sid"),
                sealed_id_token: Some(
                    self.sealer
                        .seal(&json!({ "id_token": id_token.to_string() })),
                ),
                ..Default::default()
            },
        })
    }
}

#[async_trait]
impl UpstreamLogout for OidcConnector {
    async fn logout_request(
        &self,
        _: &Connection,
        _: &str,
        _: Arrived<'_>,
    ) -> Result<UpstreamLogoutRequest, FederationError> {
        Err(FederationError::Rejected(
            "an OpenID Connect connection takes no SAML LogoutRequest".into(),
        ))
    }

    async fn logout_response(
        &self,
        _: &Connection,
        _: &str,
        _: &UpstreamLogoutRequest,
        _: &str,
        _: Option<&str>,
    ) -> Result<Continue, FederationError> {
        Err(FederationError::Misconfigured(
            "an OpenID Connect connection answers no SAML LogoutRequest".into(),
        ))
    }

    /// RP-Initiated Logout 1.0 at the IdP: its `end_session_endpoint` with the upstream ID
    /// token as `id_token_hint`, `post_logout_redirect_uri` back to Latch, `state` and
    /// `client_id`.
    async fn start_logout(
        &self,
        c: &Connection,
        latch: &str,
        upstream: &UpstreamSession,
        state: &str,
    ) -> Result<LogoutStart, FederationError> {
        let o = options(c)?;
        let Some(id_token) = self.open_id_token(upstream) else {
            let reason = match (&upstream.sealed_id_token, &upstream.id_token_cookie) {
                (None, Some(_)) => {
                    "the browser did not bring the session's upstream ID token cookie"
                }
                (Some(_), _) => "the session's upstream ID token could not be opened",
                (None, None) => "no upstream ID token is kept for the session",
            };
            return Ok(LogoutStart::NotSent(reason.into()));
        };
        let p = self.metadata(&o.issuer, false).await?;
        let Some(end_session) = &p.end_session else {
            return Ok(LogoutStart::NotSent(
                "the IdP's discovery document names no end_session_endpoint".into(),
            ));
        };
        // The upstream ID token travels in this URL: https only (http on loopback), as every URL
        // Latch sends a browser to.
        let Ok(mut url) = latch_core::validate::app_url("end_session_endpoint", end_session) else {
            return Ok(LogoutStart::NotSent(
                "the IdP's end_session_endpoint is not an https URL".into(),
            ));
        };
        url.query_pairs_mut()
            .append_pair("id_token_hint", &id_token)
            .append_pair(
                "post_logout_redirect_uri",
                &paths::upstream_logout_url(latch, c.name.as_str()),
            )
            .append_pair("state", state)
            .append_pair("client_id", &o.client_id);
        Ok(LogoutStart::Send {
            to: Continue::Get(url.into()),
            saved: json!({}),
            via: "end_session_endpoint",
        })
    }

    /// The IdP sent the browser back with Latch's `state` (already matched to its handle): it
    /// ended its session (RP-Initiated Logout returns nothing else).
    async fn finish_logout(
        &self,
        _: &Connection,
        _: &str,
        arrived: Arrived<'_>,
        _: &Value,
    ) -> Result<UpstreamAnswer, FederationError> {
        if let Arrived::Query(q) = arrived
            && url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "error")
        {
            return Ok(UpstreamAnswer {
                ok: false,
                status: Vec::new(),
            });
        }
        Ok(UpstreamAnswer {
            ok: true,
            status: Vec::new(),
        })
    }
}
