//! The database connection: email + password against argon2id hashes, with rate limits per
//! account and per IP address.

use std::sync::Arc;

use async_trait::async_trait;
use latch_core::Clock;
use latch_core::connector::{DATABASE_ISSUER, PasswordConnector, SignInContext, SignInError};
use latch_core::model::{Connection, User};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use time::Duration;

/// Failed or not, attempts per account and window.
pub const ACCOUNT_ATTEMPTS: u64 = 10;
/// Attempts per IP address and window.
pub const IP_ATTEMPTS: u64 = 100;
/// The rate-limit window.
pub const WINDOW: Duration = Duration::minutes(15);

pub struct DatabaseConnector {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl PasswordConnector for DatabaseConnector {
    async fn sign_in(
        &self,
        connection: &Connection,
        email: &str,
        password: &str,
        ctx: &SignInContext,
    ) -> Result<User, SignInError> {
        let now = self.clock.now();
        let email = email.trim().to_lowercase();
        // Count first: a locked-out attacker learns nothing from further guesses.
        let ends = now + WINDOW;
        let account = self
            .sessions
            .count_hit(&format!("pw:acct:{}:{email}", connection.id), ends, now)
            .await?;
        let ip = match &ctx.ip {
            Some(ip) => {
                self.sessions
                    .count_hit(&format!("pw:ip:{ip}"), ends, now)
                    .await?
            }
            None => 0,
        };
        if account > ACCOUNT_ATTEMPTS || ip > IP_ATTEMPTS {
            return Err(SignInError::TooManyAttempts);
        }
        let mut found = None;
        // A username (no `@`): the identity's subject, as for the `admin` created on first start.
        if !email.contains('@')
            && let Some((i, user)) = self
                .store
                .find_identity_with_user(&connection.id, DATABASE_ISSUER, &email)
                .await?
            && i.password_hash.is_some()
        {
            found = Some((user, i));
        }
        let by_email = match found {
            Some(_) => Vec::new(),
            None => self.store.find_users_by_email(&email).await?,
        };
        for user in by_email {
            let identity = self
                .store
                .list_identities(&user.user_id)
                .await?
                .into_iter()
                .find(|i| i.connection_id == connection.id && i.password_hash.is_some());
            if let Some(i) = identity {
                found = Some((user, i));
                break;
            }
        }
        // Hash-check even when there is no such account, so timing does not tell.
        let hash = found.as_ref().and_then(|(_, i)| i.password_hash.clone());
        let password = password.to_owned();
        // argon2id takes tens of milliseconds of CPU: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            latch_jose::password::verify(&password, hash.as_ref())
        })
        .await
        .unwrap_or(false);
        match found {
            Some((user, _)) if ok => {
                if user.blocked {
                    Err(SignInError::Blocked)
                } else {
                    Ok(user)
                }
            }
            _ => Err(SignInError::InvalidCredentials),
        }
    }
}
