//! Row types and their conversions to and from domain entities.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use latch_core::clock::{from_millis, to_millis};
use latch_core::model::Connection;
use latch_core::model::*;
use latch_core::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cipher;
use crate::schema::*;
// Named, so `latch_core::users` (a glob above) does not shadow the table.
use crate::schema::users;

pub(crate) fn db_err(
    entity: &'static str,
    field: &'static str,
) -> impl Fn(DieselError) -> StoreError {
    move |e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::Conflict { entity, field }
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            StoreError::NotFound {
                entity: "referenced row",
                id: info.constraint_name().unwrap_or(entity).to_owned(),
            }
        }
        DieselError::NotFound => StoreError::NotFound {
            entity,
            id: String::new(),
        },
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | DieselError::BrokenTransactionManager => StoreError::Unavailable(Box::new(e)),
        other => StoreError::Internal(Box::new(other)),
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(Box::new(e)))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Internal(Box::new(e)))
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} {value:?} is not valid").into())
}

fn ms_opt(t: Option<time::OffsetDateTime>) -> Option<i64> {
    t.map(to_millis)
}

fn time_opt(ms: Option<i64>) -> Option<time::OffsetDateTime> {
    ms.map(from_millis)
}

// ---------- connections ----------

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = connections)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub strategy: String,
    pub options: String,
    pub secrets: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ConnectionRow {
    pub fn from_domain(c: &Connection, cipher: &Cipher) -> Result<Self, StoreError> {
        let secrets = if c.secrets.is_empty() {
            None
        } else {
            let plain: BTreeMap<&str, &str> = c
                .secrets
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect();
            let json = to_json(&plain)?;
            Some(
                cipher
                    .seal(c.id.as_str(), json.as_bytes())
                    .map_err(|e| StoreError::Internal(Box::new(e)))?,
            )
        };
        Ok(Self {
            id: c.id.as_str().to_owned(),
            name: c.name.as_str().to_owned(),
            display_name: c.display_name.clone(),
            strategy: c.strategy.as_str().to_owned(),
            options: to_json(&c.options)?,
            secrets,
            created_at: to_millis(c.created_at),
            updated_at: to_millis(c.updated_at),
        })
    }

    pub fn into_domain(
        self,
        enabled: Vec<String>,
        cipher: &Cipher,
    ) -> Result<Connection, StoreError> {
        let secrets = match &self.secrets {
            None => BTreeMap::new(),
            Some(sealed) => {
                let plain = cipher
                    .open(&self.id, sealed)
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
                let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
                map.into_iter()
                    .map(|(k, v)| (k, SecretString::new(v)))
                    .collect()
            }
        };
        Ok(Connection {
            strategy: Strategy::parse(&self.strategy)
                .ok_or_else(|| corrupt("strategy", &self.strategy))?,
            id: ConnectionId::new(self.id),
            name: ConnectionName::new(self.name),
            display_name: self.display_name,
            options: from_json(&self.options)?,
            secrets,
            enabled_clients: enabled.into_iter().map(ClientId::new).collect(),
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

// ---------- clients ----------

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub app_type: String,
    pub callbacks: String,
    pub allowed_logout_urls: String,
    pub web_origins: String,
    pub grant_types: String,
    pub token_endpoint_auth_method: String,
    pub signing_alg: String,
    pub lifetimes: String,
    pub oidc_logout: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub addons: String,
    pub global_token_revocation: Option<String>,
}

fn enum_str<T: Serialize>(v: &T) -> Result<String, StoreError> {
    match serde_json::to_value(v).map_err(|e| StoreError::Internal(Box::new(e)))? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(StoreError::Internal(
            format!("{other} is not a string enum").into(),
        )),
    }
}

fn enum_parse<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| corrupt(what, s))
}

impl ClientRow {
    pub fn from_domain(c: &Client) -> Result<Self, StoreError> {
        Ok(Self {
            client_id: c.client_id.as_str().to_owned(),
            name: c.name.clone(),
            description: c.description.clone(),
            app_type: enum_str(&c.app_type)?,
            callbacks: to_json(&c.callbacks)?,
            allowed_logout_urls: to_json(&c.allowed_logout_urls)?,
            web_origins: to_json(&c.web_origins)?,
            grant_types: to_json(&c.grant_types)?,
            token_endpoint_auth_method: enum_str(&c.token_endpoint_auth_method)?,
            signing_alg: c.signing_alg.as_str().to_owned(),
            lifetimes: to_json(&c.lifetimes)?,
            oidc_logout: to_json(&c.oidc_logout)?,
            created_at: to_millis(c.created_at),
            updated_at: to_millis(c.updated_at),
            addons: to_json(&c.addons)?,
            global_token_revocation: c
                .global_token_revocation
                .as_ref()
                .map(to_json)
                .transpose()?,
        })
    }

    pub fn into_domain(self, secrets: Vec<SecretRow>) -> Result<Client, StoreError> {
        Ok(Client {
            app_type: enum_parse("app_type", &self.app_type)?,
            token_endpoint_auth_method: enum_parse(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )?,
            signing_alg: SigningAlg::parse(&self.signing_alg)
                .ok_or_else(|| corrupt("signing_alg", &self.signing_alg))?,
            client_id: ClientId::new(self.client_id),
            name: self.name,
            description: self.description,
            callbacks: from_json(&self.callbacks)?,
            allowed_logout_urls: from_json(&self.allowed_logout_urls)?,
            web_origins: from_json(&self.web_origins)?,
            grant_types: from_json(&self.grant_types)?,
            lifetimes: from_json(&self.lifetimes)?,
            oidc_logout: from_json(&self.oidc_logout)?,
            addons: from_json(&self.addons)?,
            global_token_revocation: self
                .global_token_revocation
                .as_deref()
                .map(from_json)
                .transpose()?,
            secrets: secrets
                .into_iter()
                .map(|s| ClientSecret {
                    digest: TokenDigest::new(s.digest),
                    created_at: from_millis(s.created_at),
                })
                .collect(),
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = client_secrets)]
pub(crate) struct SecretRow {
    pub client_id: String,
    pub digest: String,
    pub created_at: i64,
}

impl SecretRow {
    pub fn from_domain(client: &ClientId, s: &ClientSecret) -> Self {
        Self {
            client_id: client.as_str().to_owned(),
            digest: s.digest.as_str().to_owned(),
            created_at: to_millis(s.created_at),
        }
    }
}

// ---------- users ----------

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct UserRow {
    pub user_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub profile: String,
    pub blocked: bool,
    pub search: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login: Option<i64>,
    pub logins_count: i64,
    pub app_metadata: String,
}

impl UserRow {
    pub fn from_domain(u: &User) -> Result<Self, StoreError> {
        let search = [u.email.as_deref(), u.name.as_deref(), u.nickname.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        Ok(Self {
            user_id: u.user_id.as_str().to_owned(),
            email: u.email.as_ref().map(|e| e.to_lowercase()),
            email_verified: u.email_verified,
            name: u.name.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            nickname: u.nickname.clone(),
            picture: u.picture.clone(),
            profile: to_json(&u.profile)?,
            blocked: u.blocked,
            search,
            created_at: to_millis(u.created_at),
            updated_at: to_millis(u.updated_at),
            last_login: ms_opt(u.last_login),
            logins_count: u.logins_count,
            app_metadata: to_json(&u.app_metadata)?,
        })
    }

    pub fn into_domain(self) -> Result<User, StoreError> {
        Ok(User {
            user_id: UserId::new(self.user_id),
            email: self.email,
            email_verified: self.email_verified,
            name: self.name,
            given_name: self.given_name,
            family_name: self.family_name,
            nickname: self.nickname,
            picture: self.picture,
            profile: from_json(&self.profile)?,
            blocked: self.blocked,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            last_login: time_opt(self.last_login),
            logins_count: self.logins_count,
            app_metadata: from_json(&self.app_metadata)?,
        })
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = identities)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct IdentityRow {
    pub connection_id: String,
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub password_hash: Option<String>,
    pub profile: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl IdentityRow {
    pub fn from_domain(i: &Identity) -> Result<Self, StoreError> {
        Ok(Self {
            connection_id: i.connection_id.as_str().to_owned(),
            issuer: i.issuer.clone(),
            subject: i.subject.clone(),
            user_id: i.user_id.as_str().to_owned(),
            password_hash: i.password_hash.as_ref().map(|p| p.expose().to_owned()),
            profile: to_json(&i.profile)?,
            created_at: to_millis(i.created_at),
            updated_at: to_millis(i.updated_at),
        })
    }

    pub fn into_domain(self) -> Result<Identity, StoreError> {
        Ok(Identity {
            user_id: UserId::new(self.user_id),
            connection_id: ConnectionId::new(self.connection_id),
            issuer: self.issuer,
            subject: self.subject,
            password_hash: self.password_hash.map(SecretString::new),
            profile: from_json(&self.profile)?,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

// ---------- refresh tokens ----------

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub(crate) struct RefreshRow {
    pub id: String,
    pub digest: String,
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub session_id: Option<String>,
    pub scope: String,
    pub offline: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub family_expires_at: i64,
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl RefreshRow {
    pub fn from_domain(t: &RefreshToken) -> Self {
        Self {
            id: t.id.as_str().to_owned(),
            digest: t.digest.as_str().to_owned(),
            family_id: t.family_id.as_str().to_owned(),
            user_id: t.user_id.as_str().to_owned(),
            client_id: t.client_id.as_str().to_owned(),
            session_id: t.session_id.as_ref().map(|s| s.as_str().to_owned()),
            scope: t.scope.clone(),
            offline: t.offline,
            created_at: to_millis(t.created_at),
            expires_at: to_millis(t.expires_at),
            family_expires_at: to_millis(t.family_expires_at),
            rotated_at: ms_opt(t.rotated_at),
            revoked_at: ms_opt(t.revoked_at),
        }
    }

    pub fn into_domain(self) -> RefreshToken {
        RefreshToken {
            id: RefreshTokenId::new(self.id),
            digest: TokenDigest::new(self.digest),
            family_id: FamilyId::new(self.family_id),
            user_id: UserId::new(self.user_id),
            client_id: ClientId::new(self.client_id),
            session_id: self.session_id.map(SessionId::new),
            scope: self.scope,
            offline: self.offline,
            created_at: from_millis(self.created_at),
            expires_at: from_millis(self.expires_at),
            family_expires_at: from_millis(self.family_expires_at),
            rotated_at: time_opt(self.rotated_at),
            revoked_at: time_opt(self.revoked_at),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = grants)]
pub(crate) struct UserGrantRow {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub session_id: Option<String>,
    pub offline: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl UserGrantRow {
    pub fn from_domain(g: &UserGrant) -> Self {
        Self {
            id: g.id.as_str().to_owned(),
            user_id: g.user_id.as_str().to_owned(),
            client_id: g.client_id.as_str().to_owned(),
            session_id: g.session_id.as_ref().map(|s| s.as_str().to_owned()),
            offline: g.offline,
            created_at: to_millis(g.created_at),
            expires_at: to_millis(g.expires_at),
            revoked_at: ms_opt(g.revoked_at),
        }
    }

    pub fn into_domain(self) -> UserGrant {
        UserGrant {
            id: FamilyId::new(self.id),
            user_id: UserId::new(self.user_id),
            client_id: ClientId::new(self.client_id),
            session_id: self.session_id.map(SessionId::new),
            offline: self.offline,
            created_at: from_millis(self.created_at),
            expires_at: from_millis(self.expires_at),
            revoked_at: time_opt(self.revoked_at),
        }
    }
}

// ---------- signing keys ----------

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = signing_keys)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub publish_until: Option<i64>,
}

impl KeyRow {
    pub fn from_domain(k: &SigningKey, cipher: &Cipher) -> Result<Self, StoreError> {
        Ok(Self {
            kid: k.kid.as_str().to_owned(),
            alg: k.alg.as_str().to_owned(),
            state: k.state.as_str().to_owned(),
            private_key: cipher
                .seal(k.kid.as_str(), k.private_pem.expose().as_bytes())
                .map_err(|e| StoreError::Internal(Box::new(e)))?,
            public_jwk: to_json(&k.public_jwk)?,
            created_at: to_millis(k.created_at),
            updated_at: to_millis(k.updated_at),
            publish_until: ms_opt(k.publish_until),
        })
    }

    pub fn into_domain(self, cipher: &Cipher) -> Result<SigningKey, StoreError> {
        let pem = cipher
            .open(&self.kid, &self.private_key)
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        Ok(SigningKey {
            alg: SigningAlg::parse(&self.alg).ok_or_else(|| corrupt("alg", &self.alg))?,
            state: KeyState::parse(&self.state).ok_or_else(|| corrupt("key state", &self.state))?,
            kid: Kid::new(self.kid),
            private_pem: SecretString::new(
                String::from_utf8(pem).map_err(|e| StoreError::Internal(Box::new(e)))?,
            ),
            public_jwk: from_json(&self.public_jwk)?,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            publish_until: time_opt(self.publish_until),
        })
    }
}

// ---------- logs ----------

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = log_events)]
// Absent values are NULL (the columns have no defaults); needed by PostgreSQL's COPY.
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct LogRow {
    pub log_id: String,
    pub date: i64,
    pub event_type: String,
    pub description: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub connection: Option<String>,
    pub ip: Option<String>,
    pub details: String,
}

impl LogRow {
    pub fn from_domain(e: &LogEvent) -> Result<Self, StoreError> {
        Ok(Self {
            log_id: e.log_id.as_str().to_owned(),
            date: to_millis(e.date),
            event_type: e.event_type.clone(),
            description: e.description.clone(),
            user_id: e.user_id.as_ref().map(|v| v.as_str().to_owned()),
            client_id: e.client_id.as_ref().map(|v| v.as_str().to_owned()),
            connection: e.connection.as_ref().map(|v| v.as_str().to_owned()),
            ip: e.ip.clone(),
            details: to_json(&e.details)?,
        })
    }

    pub fn into_domain(self) -> Result<LogEvent, StoreError> {
        Ok(LogEvent {
            log_id: LogId::new(self.log_id),
            date: from_millis(self.date),
            event_type: self.event_type,
            description: self.description,
            user_id: self.user_id.map(UserId::new),
            client_id: self.client_id.map(ClientId::new),
            connection: self.connection.map(ConnectionName::new),
            ip: self.ip,
            details: from_json(&self.details)?,
        })
    }
}

// ---------- outbox ----------

#[derive(Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = outbox)]
#[diesel(treat_none_as_null = true)]
// Absent values are NULL (no nullable column has a default); needed by PostgreSQL's COPY.
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DeliveryRow {
    pub id: String,
    pub client_id: String,
    pub target: String,
    pub notice: String,
    pub jti: String,
    pub state: String,
    pub attempts: i32,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub locked_until: Option<i64>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
    /// [`DeliveryKind::as_str`]; last, as the migration that added it left the table.
    pub kind: String,
    /// The notice's `sub`, for listing a user's deliveries.
    pub user_id: Option<String>,
}

impl DeliveryRow {
    pub fn from_domain(d: &Delivery) -> Result<Self, StoreError> {
        Ok(Self {
            id: d.id.as_str().to_owned(),
            client_id: d.client_id.as_str().to_owned(),
            target: d.target.as_str().to_owned(),
            notice: to_json(&d.notice)?,
            jti: d.jti.as_str().to_owned(),
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            created_at: to_millis(d.created_at),
            next_attempt_at: to_millis(d.next_attempt_at),
            locked_until: ms_opt(d.locked_until),
            last_error: d.last_error.clone(),
            finished_at: ms_opt(d.finished_at),
            kind: d.kind.as_str().to_owned(),
            user_id: d.notice.sub.as_ref().map(|u| u.as_str().to_owned()),
        })
    }

    pub fn into_domain(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            kind: DeliveryKind::parse(&self.kind)
                .ok_or_else(|| corrupt("delivery kind", &self.kind))?,
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| corrupt("delivery state", &self.state))?,
            target: url::Url::parse(&self.target).map_err(|_| corrupt("target", &self.target))?,
            id: DeliveryId::new(self.id),
            client_id: ClientId::new(self.client_id),
            notice: from_json(&self.notice)?,
            jti: Jti::new(self.jti),
            attempts: self.attempts,
            created_at: from_millis(self.created_at),
            next_attempt_at: from_millis(self.next_attempt_at),
            locked_until: time_opt(self.locked_until),
            last_error: self.last_error,
            finished_at: time_opt(self.finished_at),
        })
    }
}

// ---------- client grants ----------

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = client_grants)]
pub(crate) struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub audience: String,
    pub scope: String,
    pub created_at: i64,
}

impl GrantRow {
    pub fn from_domain(g: &ClientGrant) -> Result<Self, StoreError> {
        Ok(Self {
            id: g.id.clone(),
            client_id: g.client_id.as_str().to_owned(),
            audience: g.audience.clone(),
            scope: to_json(&g.scope)?,
            created_at: to_millis(g.created_at),
        })
    }

    pub fn into_domain(self) -> Result<ClientGrant, StoreError> {
        Ok(ClientGrant {
            id: self.id,
            client_id: ClientId::new(self.client_id),
            audience: self.audience,
            scope: from_json(&self.scope)?,
            created_at: from_millis(self.created_at),
        })
    }
}

// ---------- SCIM ----------

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = scim_configs)]
pub(crate) struct ScimConfigRow {
    pub connection_id: String,
    pub user_id_attribute: String,
    pub mapping: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ScimConfigRow {
    pub fn from_domain(c: &ScimConfig) -> Result<Self, StoreError> {
        Ok(Self {
            connection_id: c.connection_id.as_str().to_owned(),
            user_id_attribute: c.user_id_attribute.clone(),
            mapping: to_json(&c.mapping)?,
            created_at: to_millis(c.created_at),
            updated_at: to_millis(c.updated_at),
        })
    }

    pub fn into_domain(self) -> Result<ScimConfig, StoreError> {
        Ok(ScimConfig {
            connection_id: ConnectionId::new(self.connection_id),
            user_id_attribute: self.user_id_attribute,
            mapping: from_json(&self.mapping)?,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = scim_tokens)]
// Absent values are NULL (no nullable column has a default).
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct ScimTokenRow {
    pub token_id: String,
    pub connection_id: String,
    pub digest: String,
    pub scopes: String,
    pub created_at: i64,
    pub valid_until: Option<i64>,
}

impl ScimTokenRow {
    pub fn from_domain(t: &ScimToken) -> Result<Self, StoreError> {
        Ok(Self {
            token_id: t.token_id.clone(),
            connection_id: t.connection_id.as_str().to_owned(),
            digest: t.digest.as_str().to_owned(),
            scopes: to_json(&t.scopes)?,
            created_at: to_millis(t.created_at),
            valid_until: ms_opt(t.valid_until),
        })
    }

    pub fn into_domain(self) -> Result<ScimToken, StoreError> {
        Ok(ScimToken {
            token_id: self.token_id,
            connection_id: ConnectionId::new(self.connection_id),
            digest: TokenDigest::new(self.digest),
            scopes: from_json(&self.scopes)?,
            created_at: from_millis(self.created_at),
            valid_until: time_opt(self.valid_until),
        })
    }
}

/// The key `userName` is unique by within a connection (RFC 7643: not case-exact).
pub(crate) fn user_name_key(user_name: &str) -> String {
    user_name.to_lowercase()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = scim_users)]
// Absent values are NULL (no nullable column has a default).
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct ScimUserRow {
    pub connection_id: String,
    pub user_id: String,
    pub user_name: String,
    pub user_name_key: String,
    pub external_id: Option<String>,
    pub active: bool,
    pub resource: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ScimUserRow {
    pub fn from_domain(u: &ScimUser) -> Result<Self, StoreError> {
        Ok(Self {
            connection_id: u.connection_id.as_str().to_owned(),
            user_id: u.user_id.as_str().to_owned(),
            user_name: u.user_name.clone(),
            user_name_key: user_name_key(&u.user_name),
            external_id: u.external_id.clone(),
            active: u.active,
            resource: to_json(&u.resource)?,
            version: u.version,
            created_at: to_millis(u.created_at),
            updated_at: to_millis(u.updated_at),
        })
    }

    pub fn into_domain(self) -> Result<ScimUser, StoreError> {
        Ok(ScimUser {
            connection_id: ConnectionId::new(self.connection_id),
            user_id: UserId::new(self.user_id),
            user_name: self.user_name,
            external_id: self.external_id,
            active: self.active,
            resource: from_json(&self.resource)?,
            version: self.version,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

/// A write to `scim_users` that failed: a uniqueness clash names the SCIM attribute at fault
/// (`userName`, `externalId`); anything else as [`db_err`] says.
pub(crate) fn scim_user_err(e: DieselError) -> StoreError {
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &e {
        // PostgreSQL names the constraint; SQLite lists the columns in its message.
        let said = format!(
            "{} {}",
            info.constraint_name().unwrap_or_default(),
            info.message()
        );
        let field = if said.contains("user_name") {
            "userName"
        } else if said.contains("external_id") {
            "externalId"
        } else {
            "user_id"
        };
        return StoreError::Conflict {
            entity: "scim user",
            field,
        };
    }
    db_err("scim user", "user_id")(e)
}

// ---------- log streams ----------

/// A stream's sink as stored: the authorization sealed under the master key (bound to the
/// stream's id).
#[derive(serde::Serialize, serde::Deserialize)]
struct SinkJson {
    endpoint: String,
    content_type: String,
    content_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization: Option<String>,
    /// The custom headers, `[[name, value], …]` as JSON, sealed whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<String>,
}

/// What a stream's authorization is sealed with: its id, under a label no other sealed value uses.
fn sink_context(id: &str) -> String {
    format!("log_stream:{id}")
}

/// What a stream's custom headers are sealed with (not the authorization's: one cannot be
/// passed off as the other).
fn headers_context(id: &str) -> String {
    format!("log_stream:{id}:headers")
}

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = log_streams)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct LogStreamRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub sink: String,
    pub filters: String,
    pub suspended_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub locked_until: Option<i64>,
    pub failures: i32,
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
}

impl LogStreamRow {
    pub fn from_domain(s: &LogStream, cipher: &Cipher) -> Result<Self, StoreError> {
        let authorization = s
            .sink
            .authorization
            .as_ref()
            .map(|a| {
                cipher
                    .seal(&sink_context(&s.id), a.expose().as_bytes())
                    .map_err(|e| StoreError::Internal(Box::new(e)))
            })
            .transpose()?;
        let headers = if s.sink.headers.is_empty() {
            None
        } else {
            let plain: Vec<(&str, &str)> = s
                .sink
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.expose()))
                .collect();
            let plain = to_json(&plain)?;
            Some(
                cipher
                    .seal(&headers_context(&s.id), plain.as_bytes())
                    .map_err(|e| StoreError::Internal(Box::new(e)))?,
            )
        };
        let sink = SinkJson {
            endpoint: s.sink.endpoint.clone(),
            content_type: s.sink.content_type.clone(),
            content_format: s.sink.content_format.as_str().to_owned(),
            authorization,
            headers,
        };
        Ok(Self {
            id: s.id.clone(),
            name: s.name.clone(),
            status: s.status.as_str().to_owned(),
            sink: to_json(&sink)?,
            filters: to_json(&s.filters)?,
            suspended_reason: s.suspended_reason.clone(),
            created_at: to_millis(s.created_at),
            updated_at: to_millis(s.updated_at),
            locked_until: None,
            failures: s.failures,
            failing_since: ms_opt(s.failing_since),
            last_error: s.last_error.clone(),
            next_attempt_at: ms_opt(s.next_attempt_at),
        })
    }

    pub fn into_domain(self, cipher: &Cipher) -> Result<LogStream, StoreError> {
        let sink: SinkJson = from_json(&self.sink)?;
        let authorization = sink
            .authorization
            .map(|sealed| {
                cipher
                    .open(&sink_context(&self.id), &sealed)
                    .map_err(|e| StoreError::Internal(Box::new(e)))
                    .and_then(|plain| {
                        String::from_utf8(plain).map_err(|e| StoreError::Internal(Box::new(e)))
                    })
                    .map(SecretString::new)
            })
            .transpose()?;
        let headers = match sink.headers {
            None => Vec::new(),
            Some(sealed) => {
                let plain = cipher
                    .open(&headers_context(&self.id), &sealed)
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
                let pairs: Vec<(String, String)> = serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
                pairs
                    .into_iter()
                    .map(|(n, v)| (n, SecretString::new(v)))
                    .collect()
            }
        };
        Ok(LogStream {
            status: LogStreamStatus::parse(&self.status)
                .ok_or_else(|| corrupt("log stream status", &self.status))?,
            sink: LogStreamSink {
                content_format: ContentFormat::parse(&sink.content_format)
                    .ok_or_else(|| corrupt("log stream format", &sink.content_format))?,
                endpoint: sink.endpoint,
                content_type: sink.content_type,
                authorization,
                headers,
            },
            filters: from_json(&self.filters)?,
            id: self.id,
            name: self.name,
            suspended_reason: self.suspended_reason,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            failures: self.failures,
            failing_since: time_opt(self.failing_since),
            last_error: self.last_error,
            next_attempt_at: time_opt(self.next_attempt_at),
        })
    }
}

/// A queued event of one stream, as written (the sequence number is the database's).
#[derive(Insertable)]
#[diesel(table_name = log_stream_events)]
// Needed by PostgreSQL's COPY.
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct NewLogStreamEventRow {
    pub stream_id: String,
    pub log_id: String,
    /// The event's date (millis), which retention purges by.
    pub date: i64,
    pub payload: String,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = log_stream_events)]
pub(crate) struct LogStreamEventRow {
    pub seq: i64,
    pub log_id: String,
    pub payload: String,
}

impl LogStreamEventRow {
    pub fn into_domain(self) -> LogStreamEvent {
        LogStreamEvent {
            seq: self.seq,
            log_id: self.log_id,
            payload: self.payload,
        }
    }
}

/// The filters of a stream as stored, for the log writer (which reads nothing else of it).
#[derive(Queryable, Selectable)]
#[diesel(table_name = log_streams)]
pub(crate) struct StreamFilterRow {
    pub id: String,
    pub filters: String,
    pub created_at: i64,
}

/// A refresh token row read with its grant's revocation and its user: a token whose grant is
/// revoked is answered as revoked (at the grant's time); the user is `None` when it no longer
/// exists.
pub(crate) fn token_with_user(
    (r, grant_revoked, user): (RefreshRow, Option<i64>, Option<UserRow>),
) -> Result<(RefreshToken, Option<User>), StoreError> {
    Ok((
        token_of_grant(r, grant_revoked),
        user.map(UserRow::into_domain).transpose()?,
    ))
}

/// A refresh token row read with its grant's revocation (`grants.revoked_at`): a token that
/// escaped its grant's revocation (rotated in concurrently) is revoked at the grant's time.
pub(crate) fn token_of_grant(r: RefreshRow, grant_revoked: Option<i64>) -> RefreshToken {
    let mut t = r.into_domain();
    if t.revoked_at.is_none()
        && let Some(at) = grant_revoked
    {
        t.revoked_at = Some(latch_core::clock::from_millis(at));
    }
    t
}
