//! User use-cases: [`create`], [`block`], [`unblock`] and [`delete`], written against the ports.
//! The management API, the admin UI (through the API's handlers), the first start's `admin` user
//! and, next, SCIM call these; none of them writes users on its own.
//!
//! **Invariants:** each use-case writes in one transaction (a new user and its identity together,
//! so a clash leaves nothing behind: no compensating delete); blocking or deleting a user ends
//! every session and revokes every refresh token through [`Logout::end`], and a user is deleted
//! only after that.

use async_trait::async_trait;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::connector::DATABASE_ISSUER;
use crate::logout::{Ended, Logout, LogoutError, Target, TokenPolicy, Urgency};
use crate::model::{Connection, Identity, LogoutInitiator, SCIM_ISSUER, ScimUser, Strategy, User};
use crate::store::{ScimRepo, Store};
use crate::{Clock, SecretString, StoreError, UserId, ValidationError};

/// Turns a password into the PHC string kept in [`Identity::password_hash`]. Slow on purpose
/// (`latch_jose::password::Argon2id`), so implementations keep the work off the async workers.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A salted hash of `password`; two calls never answer the same string.
    async fn hash(&self, password: &str) -> Result<SecretString, HashError>;
}

/// The password hasher failed (no randomness for the salt, or its worker thread died).
#[derive(Debug, Error)]
#[error("password hashing failed")]
pub struct HashError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Why a user use-case refused or failed. `latch-http` maps each variant to its response.
#[derive(Debug, Error)]
pub enum UserError {
    /// Users with passwords live only in database (`auth0`) connections; enterprise users are
    /// created at their first sign-in, or by SCIM.
    #[error("users are created only in database connections")]
    NotDatabase,
    /// SCIM provisions users into enterprise connections only.
    #[error("SCIM provisions users into enterprise connections only")]
    NotEnterprise,
    /// Not an email address (see [`email`]).
    #[error("email must be an email address")]
    InvalidEmail,
    /// An empty (or blank) name, or one over 300 bytes (see [`name`]).
    #[error("name must be 1-300 characters")]
    InvalidName,
    /// The password breaks the connection's policy ([`crate::validate::password_policy`]).
    #[error(transparent)]
    Password(ValidationError),
    /// The connection already has a user with this email.
    #[error("the user already exists")]
    Exists,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Logout(#[from] LogoutError),
}

/// The email address `raw` names, trimmed and lower-cased: at most 254 bytes, a non-empty local
/// part, a dotted domain, no whitespace or control character (a NUL included).
pub fn email(raw: &str) -> Result<String, UserError> {
    let e = raw.trim();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(e.to_lowercase())
    } else {
        Err(UserError::InvalidEmail)
    }
}

/// A display name, when one is given: not blank, at most 300 bytes.
pub fn name(n: Option<String>) -> Result<Option<String>, UserError> {
    match n {
        Some(n) if n.trim().is_empty() || n.len() > 300 => Err(UserError::InvalidName),
        other => Ok(other),
    }
}

/// Users with passwords are made only in database (`auth0`) connections.
pub fn database_connection(c: &Connection) -> Result<(), UserError> {
    if c.strategy == Strategy::Auth0 {
        Ok(())
    } else {
        Err(UserError::NotDatabase)
    }
}

/// The connection's password policy, as [`create`] applies it.
pub fn password(c: &Connection, password: &str) -> Result<(), UserError> {
    crate::validate::password_policy(&c.options, password).map_err(UserError::Password)
}

/// A user to create in a database connection.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// The database connection the user signs in through.
    pub connection: &'a Connection,
    /// The random part of the new `user_id` (`auth0|<id>`): core draws no randomness, the caller
    /// does (`latch_jose::random_alnum(24)`, lower-cased).
    pub id: String,
    /// The sign-in name, kept as the identity's subject (the first start's `admin`); `None`
    /// uses [`id`](Self::id), and the user signs in with their email.
    pub username: Option<String>,
    /// As typed: [`create`] checks and normalises it ([`email`]).
    pub email: Option<&'a str>,
    pub email_verified: bool,
    /// Checked against the connection's policy (unless [`password_policy`](Self::password_policy)
    /// is `false`), then hashed; `None` makes a user who cannot sign in with a password (yet).
    pub password: Option<&'a str>,
    /// `true` for every password a person chose through the API or the admin UI; `false` only
    /// for the operator's own (`LATCH_ADMIN_PASSWORD`, checked by the configuration) or one
    /// Latch generated.
    pub password_policy: bool,
    /// Checked by [`name`]; `None` uses the email.
    pub name: Option<String>,
    /// `None` uses the email's local part.
    pub nickname: Option<String>,
    pub blocked: bool,
    pub app_metadata: Map<String, Value>,
}

/// Creates a database user: checks the connection ([`database_connection`]), the email, the
/// password against the connection's policy (when [`NewUser::password_policy`]), then the name,
/// in that order; refuses a second user
/// with the same email in the connection ([`UserError::Exists`]); hashes the password; writes the
/// user and its identity in one transaction ([`crate::store::UserRepo::insert_user_with_identity`]),
/// so a clash on either ([`StoreError::Conflict`]) leaves no user behind.
pub async fn create(
    store: &dyn Store,
    clock: &dyn Clock,
    hasher: &dyn PasswordHasher,
    new: NewUser<'_>,
) -> Result<User, UserError> {
    let conn = new.connection;
    database_connection(conn)?;
    let email = new.email.map(email).transpose()?;
    if let Some(p) = new.password
        && new.password_policy
    {
        password(conn, p)?;
    }
    let name = name(new.name)?;
    // One account per email in a database connection.
    if let Some(email) = &email {
        for u in store.find_users_by_email(email).await? {
            if store
                .list_identities(&u.user_id)
                .await?
                .iter()
                .any(|i| i.connection_id == conn.id)
            {
                return Err(UserError::Exists);
            }
        }
    }
    let password_hash = match new.password {
        Some(p) => Some(hasher.hash(p).await?),
        None => None,
    };
    let now = clock.now();
    let user = User {
        user_id: UserId::new(format!("{}|{}", conn.strategy.as_str(), new.id)),
        nickname: new.nickname.or_else(|| {
            email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .map(str::to_owned)
        }),
        name: name.or_else(|| email.clone()),
        email,
        email_verified: new.email_verified,
        given_name: None,
        family_name: None,
        picture: None,
        profile: Default::default(),
        blocked: new.blocked,
        created_at: now,
        updated_at: now,
        last_login: None,
        logins_count: 0,
        app_metadata: new.app_metadata,
    };
    let identity = Identity {
        user_id: user.user_id.clone(),
        connection_id: conn.id.clone(),
        issuer: DATABASE_ISSUER.into(),
        subject: new.username.unwrap_or(new.id),
        password_hash,
        profile: Default::default(),
        created_at: now,
        updated_at: now,
    };
    store.insert_user_with_identity(&user, &identity).await?;
    Ok(user)
}

/// What [`block`] did.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The user as stored afterwards.
    pub user: User,
    /// Whether this call blocked the user (`false`: blocked already, nothing written).
    pub newly: bool,
    /// What ended (usually nothing when the user was blocked already).
    pub ended: Ended,
}

/// Blocks a user: one write sets `blocked` (and `updated_at`) if it was not set; then every
/// session ends and every refresh token is revoked, the apps told
/// ([`LogoutInitiator::AccountDeactivated`]). The logout runs for a user blocked already too, so
/// a retry after a failed logout completes it (a blocked user cannot sign in, so it usually
/// finds nothing). A missing user is [`StoreError::NotFound`].
pub async fn block(
    store: &dyn Store,
    clock: &dyn Clock,
    logout: &Logout,
    user: &UserId,
) -> Result<Blocked, UserError> {
    let (user, newly) = store.update_user_blocked(user, true, clock.now()).await?;
    let ended = logout
        .end(
            Target::User(user.user_id.clone()),
            TokenPolicy::AllOfUser,
            LogoutInitiator::AccountDeactivated,
            Urgency::Background,
        )
        .await?;
    Ok(Blocked { user, newly, ended })
}

/// Unblocks a user (one write, none if not blocked); the user as stored afterwards. A missing
/// user is [`StoreError::NotFound`].
pub async fn unblock(
    store: &dyn Store,
    clock: &dyn Clock,
    user: &UserId,
) -> Result<User, UserError> {
    let (user, _) = store.update_user_blocked(user, false, clock.now()).await?;
    Ok(user)
}

/// Deletes a user: every session ends and every refresh token is revoked, the apps told
/// ([`LogoutInitiator::AccountDeleted`]), then the user goes with their identities, grants
/// and tokens (one transaction). A missing user is [`StoreError::NotFound`] before anything
/// ends; if ending fails, the user is kept (a retry finishes the job).
pub async fn delete(store: &dyn Store, logout: &Logout, user: &UserId) -> Result<Ended, UserError> {
    store.get_user(user).await?;
    let ended = logout
        .end(
            Target::User(user.clone()),
            TokenPolicy::AllOfUser,
            LogoutInitiator::AccountDeleted,
            Urgency::Background,
        )
        .await?;
    store.delete_user(user).await?;
    Ok(ended)
}

/// What a SCIM client's User resource says, as `latch-scim` mapped it: the SCIM record to keep
/// and the user fields it sets.
#[derive(Debug, Clone)]
pub struct ScimWrite {
    pub user_name: String,
    pub external_id: Option<String>,
    pub active: bool,
    /// The resource as sent, without `id`, `meta` and `schemas`.
    pub resource: Map<String, Value>,
    /// The identity's subject in the connection: the value of the configuration's
    /// `user_id_attribute`.
    pub subject: String,
    /// Checked by [`email`] (a value that is not an address is [`UserError::InvalidEmail`]).
    pub email: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
}

/// The user fields a SCIM write sets (not `blocked`: see [`scim_update`]). A changed email is
/// no longer verified.
fn scim_fields(u: &mut User, w: &ScimWrite) -> Result<(), UserError> {
    let new = w.email.as_deref().map(email).transpose()?;
    if new != u.email {
        u.email_verified = false;
    }
    u.email = new;
    u.name = name(w.name.clone())?;
    u.given_name.clone_from(&w.given_name);
    u.family_name.clone_from(&w.family_name);
    u.nickname.clone_from(&w.nickname);
    Ok(())
}

/// Provisions a user into an enterprise connection (SCIM `POST /Users`): the user, its identity
/// (subject [`ScimWrite::subject`], issuer [`crate::model::SCIM_ISSUER`] until the first sign-in
/// claims it) and the SCIM record, in one transaction. `id` is the random part of the new
/// `user_id` (`{strategy}|{id}`).
pub async fn scim_create<S: Store + ScimRepo + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    connection: &Connection,
    id: String,
    w: ScimWrite,
) -> Result<(ScimUser, User), UserError> {
    if !connection.strategy.is_enterprise() {
        return Err(UserError::NotEnterprise);
    }
    let now = clock.now();
    let mut user = User {
        user_id: UserId::new(format!("{}|{id}", connection.strategy.as_str())),
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        profile: Map::new(),
        blocked: false,
        created_at: now,
        updated_at: now,
        last_login: None,
        logins_count: 0,
        app_metadata: Map::new(),
    };
    scim_fields(&mut user, &w)?;
    user.blocked = !w.active;
    let identity = Identity {
        user_id: user.user_id.clone(),
        connection_id: connection.id.clone(),
        issuer: SCIM_ISSUER.to_owned(),
        subject: w.subject.clone(),
        password_hash: None,
        profile: Map::new(),
        created_at: now,
        updated_at: now,
    };
    let scim = ScimUser {
        connection_id: connection.id.clone(),
        user_id: user.user_id.clone(),
        user_name: w.user_name,
        external_id: w.external_id,
        active: w.active,
        resource: w.resource,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    store.insert_scim_user(&user, &identity, &scim).await?;
    Ok((scim, user))
}

/// Links a SCIM resource to a user who already signed in through the connection with this
/// subject (SCIM turned on for a connection in use), instead of making a second user: the SCIM
/// record is added, then [`scim_update`] makes the user's fields and state follow the resource.
pub async fn scim_link<S: Store + ScimRepo + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    logout: &Logout,
    connection: &Connection,
    existing: User,
    w: ScimWrite,
) -> Result<ScimUpdated, UserError> {
    let now = clock.now();
    let scim = ScimUser {
        connection_id: connection.id.clone(),
        user_id: existing.user_id.clone(),
        user_name: w.user_name.clone(),
        external_id: w.external_id.clone(),
        // As the user is now: the write below blocks them only if the resource says inactive.
        active: !existing.blocked,
        resource: w.resource.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    store.attach_scim_user(&scim).await?;
    scim_update(store, clock, logout, (scim, existing), w).await
}

/// What [`scim_update`] did.
#[derive(Debug)]
pub struct ScimUpdated {
    pub scim: ScimUser,
    pub user: User,
    /// The logout a deactivation ran (`active: false` where it was `true`, or a deactivated
    /// user written again, so a retry completes a failed logout).
    pub ended: Option<Ended>,
}

/// Replaces a SCIM user (SCIM `PUT`, or a `PATCH` applied by `latch-scim`): the user's fields,
/// its identity's subject (while no sign-in has claimed it) and the SCIM record in one
/// transaction, if nobody wrote it since `current` was read ([`StoreError::Conflict`] on
/// `version` otherwise). `active` turning `false` blocks the user, and a blocked, inactive user
/// then has every session ended and every refresh token and grant revoked through the Logout
/// service, the apps told ([`LogoutInitiator::AccountDeactivated`]); `active` turning `true`
/// unblocks. An unchanged `active` leaves `blocked` as an administrator set it.
pub async fn scim_update<S: Store + ScimRepo + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    logout: &Logout,
    current: (ScimUser, User),
    w: ScimWrite,
) -> Result<ScimUpdated, UserError> {
    let (old, mut user) = current;
    let now = clock.now();
    scim_fields(&mut user, &w)?;
    // `active` blocks or unblocks only when it changes: an administrator's block outlives the
    // SCIM client's routine writes, and an unblock its repeated `active: false`.
    if old.active != w.active {
        user.blocked = !w.active;
    }
    user.updated_at = now;
    let identity = store
        .list_identities(&user.user_id)
        .await?
        .into_iter()
        .find(|i| i.connection_id == old.connection_id)
        .map(|mut i| {
            // Only an identity no sign-in has claimed follows the SCIM subject: a signed-in
            // user's identity is the IdP's, and moving it would hand the account to whoever
            // signs in with the new subject.
            if i.issuer == SCIM_ISSUER {
                i.subject.clone_from(&w.subject);
            }
            i.updated_at = now;
            i
        })
        .ok_or_else(|| StoreError::NotFound {
            entity: "identity",
            id: user.user_id.as_str().to_owned(),
        })?;
    let scim = ScimUser {
        user_name: w.user_name,
        external_id: w.external_id,
        active: w.active,
        resource: w.resource,
        version: old.version + 1,
        updated_at: now,
        ..old.clone()
    };
    store
        .update_scim_user(&user, &identity, &scim, old.version)
        .await?;
    let ended = if scim.active || !user.blocked {
        None
    } else {
        Some(
            logout
                .end(
                    Target::User(user.user_id.clone()),
                    TokenPolicy::AllOfUser,
                    LogoutInitiator::AccountDeactivated,
                    Urgency::Background,
                )
                .await?,
        )
    };
    Ok(ScimUpdated { scim, user, ended })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(email("  Jane@Example.COM ").unwrap(), "jane@example.com");
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@example",
            "jane@.example.com",
            "jane@example.com.",
            "ja ne@example.com",
            "jane\u{0}@example.com",
        ] {
            assert!(
                matches!(email(bad), Err(UserError::InvalidEmail)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            email(&format!("{}@example.com", "a".repeat(250))),
            Err(UserError::InvalidEmail)
        ));
    }

    #[test]
    fn names_are_optional_but_not_blank() {
        assert_eq!(name(None).unwrap(), None);
        assert_eq!(name(Some("Jane".into())).unwrap().as_deref(), Some("Jane"));
        assert!(matches!(
            name(Some("  ".into())),
            Err(UserError::InvalidName)
        ));
        assert!(matches!(
            name(Some("x".repeat(301))),
            Err(UserError::InvalidName)
        ));
    }
}
