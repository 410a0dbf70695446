//! Entities with unique ids, for tests that must not share state.

use std::collections::BTreeMap;

use latch_core::clock::truncate_millis;
use latch_core::model::*;
use latch_core::session::*;
use latch_core::*;
use time::{Duration, OffsetDateTime};
use url::Url;

use crate::env::unique;

/// Now, truncated to milliseconds so values compare equal after a store round trip.
pub fn now() -> OffsetDateTime {
    truncate_millis(OffsetDateTime::now_utc())
}

pub fn url(s: &str) -> Url {
    Url::parse(s).expect("valid test URL")
}

pub fn connection(strategy: Strategy) -> Connection {
    let u = unique();
    let now = now();
    let mut options = serde_json::Map::new();
    let mut secrets = BTreeMap::new();
    if matches!(strategy, Strategy::Okta | Strategy::Oidc) {
        options.insert("client_id".into(), format!("cid-{u}").into());
        secrets.insert(
            "client_secret".into(),
            SecretString::new(format!("secret-{u}")),
        );
    }
    if strategy == Strategy::Okta {
        options.insert("domain".into(), "acme.okta.com".into());
    }
    Connection {
        id: ConnectionId::new(format!("con_{u}")),
        name: ConnectionName::new(format!("conn-{u}")),
        display_name: Some(format!("Connection {u}")),
        strategy,
        options,
        secrets,
        enabled_clients: vec![],
        created_at: now,
        updated_at: now,
    }
}

pub fn client() -> Client {
    let u = unique();
    let now = now();
    Client {
        client_id: ClientId::new(format!("client-{u}")),
        name: format!("App {u}"),
        description: None,
        app_type: AppType::RegularWeb,
        callbacks: vec![url(&format!("https://app-{u}.example.com/callback"))],
        allowed_logout_urls: vec![url(&format!("https://app-{u}.example.com/"))],
        web_origins: vec![],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        signing_alg: SigningAlg::RS256,
        lifetimes: TokenLifetimes::default(),
        oidc_logout: OidcLogout {
            backchannel_logout_urls: vec![url(&format!("https://app-{u}.example.com/backchannel"))],
            backchannel_logout_session_required: true,
            frontchannel_logout_url: None,
            frontchannel_logout_session_required: false,
            backchannel_logout_initiators: Default::default(),
        },
        addons: Default::default(),
        global_token_revocation: None,
        secrets: vec![ClientSecret {
            digest: TokenDigest::new(format!("digest-{u}")),
            created_at: now,
        }],
        created_at: now,
        updated_at: now,
    }
}

pub fn user() -> User {
    let u = unique();
    let now = now();
    User {
        user_id: UserId::new(format!("auth0|{u}")),
        email: Some(format!("user-{u}@example.com")),
        email_verified: true,
        name: Some(format!("User {u}")),
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        profile: serde_json::Map::new(),
        blocked: false,
        created_at: now,
        updated_at: now,
        last_login: None,
        logins_count: 0,
        app_metadata: Default::default(),
    }
}

pub fn identity(user: &User, conn: &Connection) -> Identity {
    Identity {
        user_id: user.user_id.clone(),
        connection_id: conn.id.clone(),
        issuer: "https://acme.okta.com".into(),
        subject: format!("00u{}", unique()),
        password_hash: None,
        profile: serde_json::Map::new(),
        created_at: now(),
        updated_at: now(),
    }
}

pub fn refresh_token(
    user: &User,
    client: &Client,
    session: Option<&SessionId>,
    offline: bool,
) -> RefreshToken {
    let u = unique();
    let now = now();
    RefreshToken {
        id: RefreshTokenId::new(format!("rt_{u}")),
        digest: TokenDigest::new(format!("rtd-{u}")),
        family_id: FamilyId::new(format!("fam_{u}")),
        user_id: user.user_id.clone(),
        client_id: client.client_id.clone(),
        session_id: session.cloned(),
        scope: if offline {
            "openid offline_access".into()
        } else {
            "openid".into()
        },
        offline,
        created_at: now,
        expires_at: now + Duration::days(15),
        family_expires_at: now + Duration::days(30),
        rotated_at: None,
        revoked_at: None,
    }
}

/// A live session of `user` (one hour absolute, 30 minutes idle).
pub fn session(user: &UserId) -> Session {
    let u = unique();
    let now = now();
    Session {
        id: SessionId::new(format!("sess-{u}{}", unique())),
        sid: Sid::new(format!("sid-{u}")),
        user_id: user.clone(),
        connection: ConnectionName::new("database"),
        created_at: now,
        auth_time: now,
        last_seen_at: now,
        idle_expires_at: now + Duration::minutes(30),
        expires_at: now + Duration::hours(1),
        ip: Some("127.0.0.1".into()),
        user_agent: Some("latch-test".into()),
        upstream: UpstreamSession::default(),
        clients: vec![],
    }
}

pub fn session_client(client: &str) -> SessionClient {
    SessionClient {
        client_id: ClientId::new(client),
        sid: Sid::new(format!("sid-{}", unique())),
        joined_at: now(),
        saml: None,
    }
}

pub fn user_id() -> UserId {
    UserId::new(format!("auth0|{}", unique()))
}

/// The grant a refresh token belongs to (every refresh token has one), as a code exchange
/// records it.
pub fn grant_of(t: &RefreshToken) -> UserGrant {
    UserGrant {
        id: t.family_id.clone(),
        user_id: t.user_id.clone(),
        client_id: t.client_id.clone(),
        session_id: t.session_id.clone(),
        offline: t.offline,
        created_at: t.created_at,
        expires_at: t.family_expires_at,
        revoked_at: None,
    }
}
