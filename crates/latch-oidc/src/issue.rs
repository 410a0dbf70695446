//! Issuing what the provider hands out at the token endpoint: grants, refresh and access tokens,
//! ID tokens; and log events.

use latch_core::model::*;
use latch_core::*;
use latch_http::OAuthError;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Deps;

pub fn has_scope(scope: &str, s: &str) -> bool {
    scope.split_whitespace().any(|x| x == s)
}

/// Records a log event; failure to log never fails the request.
#[allow(clippy::too_many_arguments)]
pub async fn log(
    deps: &Deps,
    event_type: &str,
    description: &str,
    user: Option<&UserId>,
    client: Option<&ClientId>,
    connection: Option<&ConnectionName>,
    ip: Option<std::net::IpAddr>,
    details: Value,
) {
    let e = LogEvent {
        user_id: user.cloned(),
        client_id: client.cloned(),
        connection: connection.cloned(),
        ip: ip.map(|i| i.to_string()),
        details,
        ..LogEvent::new(deps.clock.now(), event_type, description)
    };
    if let Err(err) = deps.store.insert_log(&e).await {
        tracing::error!(error = %err, event = event_type, "could not record log event");
    }
}

/// The rotation family a code's tokens belong to: derived from the code, so a replayed code
/// finds (and revokes) what its first use issued.
pub fn family_of(code_digest: &TokenDigest) -> FamilyId {
    FamilyId::new(format!(
        "fam_{}",
        &code_digest.as_str()[..22.min(code_digest.as_str().len())]
    ))
}

/// What a token response is issued for.
pub struct Grant<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: OffsetDateTime,
    pub session_id: Option<&'a SessionId>,
    pub sid: Option<&'a Sid>,
    pub family: FamilyId,
    /// Set on refresh: the family's absolute end stays where the first token put it.
    pub family_expires_at: Option<OffsetDateTime>,
}

/// Standard claims of a user, by scope.
pub fn user_claims(user: &User, scope: &str, out: &mut serde_json::Map<String, Value>) {
    if has_scope(scope, "email") {
        out.insert("email".into(), json!(user.email));
        out.insert("email_verified".into(), json!(user.email_verified));
    }
    if has_scope(scope, "profile") {
        for (k, v) in [
            ("name", &user.name),
            ("nickname", &user.nickname),
            ("picture", &user.picture),
            ("given_name", &user.given_name),
            ("family_name", &user.family_name),
        ] {
            if let Some(v) = v {
                out.insert(k.into(), json!(v));
            }
        }
        out.insert("updated_at".into(), json!(user.updated_at.unix_timestamp()));
    }
}

/// A new refresh token for the grant (when the client may refresh), not yet stored: the caller
/// inserts it, or stores it together with the rotation of its predecessor.
pub fn new_refresh_token(deps: &Deps, g: &Grant<'_>) -> Option<(String, RefreshToken)> {
    if !g.client.grant_types.contains(&GrantType::RefreshToken) {
        return None;
    }
    let now = deps.clock.now();
    let token = latch_jose::random_token(32);
    let family_expires_at = g
        .family_expires_at
        .unwrap_or(now + time::Duration::seconds(g.client.lifetimes.refresh_token));
    let record = RefreshToken {
        id: RefreshTokenId::new(format!("rt_{}", uuid::Uuid::now_v7().simple())),
        digest: latch_jose::token_digest(&token),
        family_id: g.family.clone(),
        user_id: g.user.user_id.clone(),
        client_id: g.client.client_id.clone(),
        session_id: g.session_id.cloned(),
        scope: g.scope.to_owned(),
        offline: has_scope(g.scope, "offline_access"),
        created_at: now,
        expires_at: (now + time::Duration::seconds(g.client.lifetimes.refresh_token_idle))
            .min(family_expires_at),
        family_expires_at,
        rotated_at: None,
        revoked_at: None,
    };
    Some((token, record))
}

/// The revocable record of a code exchange: every token issued under it dies with it. It lasts
/// as long as the longest of its first access token and its refresh family.
pub fn new_grant(deps: &Deps, g: &Grant<'_>, refresh: Option<&RefreshToken>) -> UserGrant {
    let now = deps.clock.now();
    let access_ends = now + time::Duration::seconds(g.client.lifetimes.access_token);
    UserGrant {
        id: g.family.clone(),
        user_id: g.user.user_id.clone(),
        client_id: g.client.client_id.clone(),
        session_id: g.session_id.cloned(),
        // Only a refresh token makes a grant outlive its session (`offline_access` without one
        // means nothing).
        offline: refresh.is_some_and(|r| r.offline),
        created_at: now,
        expires_at: refresh.map_or(access_ends, |r| r.family_expires_at.max(access_ends)),
        revoked_at: None,
    }
}

/// The token endpoint's answer: an access token, an ID token when `openid` was asked for, and
/// `refresh_token` when given. The access token's only audience is Latch's `/userinfo`, so it is
/// opaque, as Auth0's is without an API audience: its claims sealed for Latch alone (see
/// [`latch_jose::TokenSealer`]), which spares one signature per token response.
pub fn token_response(
    deps: &Deps,
    g: &Grant<'_>,
    refresh_token: Option<&str>,
) -> Result<Value, OAuthError> {
    let now = deps.clock.now();
    let iat = now.unix_timestamp();
    let alg = g.client.signing_alg;
    let at_life = g.client.lifetimes.access_token;
    let mut at = json!({
        "iss": deps.issuer,
        "sub": g.user.user_id,
        "aud": [deps.url(crate::paths::USERINFO)],
        "client_id": g.client.client_id,
        "iat": iat,
        "exp": iat + at_life,
        "jti": latch_jose::random_token(16),
        "scope": g.scope,
        "gid": g.family,
    });
    if let Some(sid) = g.sid {
        at["sid"] = json!(sid);
    }
    let access_token = deps.sealer.seal(&at);
    let mut out = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": at_life,
        "scope": g.scope,
    });
    if has_scope(g.scope, "openid") {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!(deps.issuer));
        claims.insert("sub".into(), json!(g.user.user_id));
        claims.insert("aud".into(), json!(g.client.client_id));
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(iat + g.client.lifetimes.id_token));
        claims.insert("auth_time".into(), json!(g.auth_time.unix_timestamp()));
        if let Some(n) = g.nonce {
            claims.insert("nonce".into(), json!(n));
        }
        if let Some(sid) = g.sid {
            claims.insert("sid".into(), json!(sid));
        }
        user_claims(g.user, g.scope, &mut claims);
        let id_token = deps
            .keys
            .sign(alg, "JWT", &Value::Object(claims))
            .map_err(|e| OAuthError::server_error().detail(e.to_string()))?;
        out["id_token"] = json!(id_token);
    }
    if let Some(rt) = refresh_token {
        out["refresh_token"] = json!(rt);
    }
    Ok(out)
}
