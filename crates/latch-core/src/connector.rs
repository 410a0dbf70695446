//! Ports for upstream connections. The login flow in `latch-oidc` talks to these traits only;
//! `latch-federation` implements them per strategy.

use async_trait::async_trait;
use thiserror::Error;

use crate::model::{Connection, User};
use crate::{SessionError, StoreError};

/// Why a password sign-in failed. The page shows one generic message for `InvalidCredentials`
/// and `Blocked` alike, so it never tells whether an account exists.
#[derive(Debug, Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("the user is blocked")]
    Blocked,
    #[error("too many attempts; try again later")]
    TooManyAttempts,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Who is signing in, for rate limits and logs.
#[derive(Debug, Clone, Default)]
pub struct SignInContext {
    pub ip: Option<String>,
}

/// A connection that checks a username and password itself (strategy `auth0`).
#[async_trait]
pub trait PasswordConnector: Send + Sync {
    async fn sign_in(
        &self,
        connection: &Connection,
        email: &str,
        password: &str,
        ctx: &SignInContext,
    ) -> Result<User, SignInError>;
}

/// The issuer recorded on database-connection identities (they have no upstream issuer).
pub const DATABASE_ISSUER: &str = "urn:latch:database";
