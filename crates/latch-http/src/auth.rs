//! Management API authentication: `Authorization: Bearer <token>`.
//!
//! Today the accepted token is the operator's `LATCH_ADMIN_TOKEN`, compared in constant time
//! against its SHA-256 digest (the token itself is not kept in memory). Access tokens for the
//! management API audience plug in here once Latch issues them.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use futures_util::future::ready;

use crate::ApiError;

/// The digest of the operator's admin token.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        let d = digest(&SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// From a stored SHA-256 digest of the token.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The SHA-256 digest, for storing.
    pub fn digest(&self) -> [u8; 32] {
        self.0
    }

    /// Constant-time comparison of digests (equal length by construction).
    pub fn matches(&self, presented: &str) -> bool {
        let d = digest(&SHA256, presented.as_bytes());
        verify_slices_are_equal(d.as_ref(), &self.0).is_ok()
    }
}

/// Checks a bearer token that is not the admin token (a JWT access token for the management
/// API audience); `None` = not acceptable.
pub type TokenVerifier = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ManagementAuth>>>>
        + Send
        + Sync,
>;

/// What the management API accepts as credentials; registered as app data.
#[derive(Clone, Default)]
pub struct ManagementAuthConfig {
    pub admin_token: Option<AdminToken>,
    pub verify_token: Option<TokenVerifier>,
}

impl std::fmt::Debug for ManagementAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementAuthConfig")
            .field("admin_token", &self.admin_token.is_some())
            .finish()
    }
}

/// Who called the management API (for the audit log), and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagementAuth {
    /// The operator's `LATCH_ADMIN_TOKEN`: every permission.
    AdminToken,
    /// A client with a `client_credentials` access token for the management API.
    Client {
        client_id: String,
        scopes: Vec<String>,
    },
    /// An admin signed in to the admin UI (a user with the admin role): every permission.
    User { user_id: String },
}

impl ManagementAuth {
    /// How the caller shows up in log events.
    pub fn actor(&self) -> String {
        match self {
            Self::AdminToken => "admin-token".into(),
            Self::Client { client_id, .. } => format!("{client_id}@clients"),
            Self::User { user_id } => user_id.clone(),
        }
    }

    /// 403 unless the caller holds `scope` (Auth0's management API scopes, `read:users` …).
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        match self {
            Self::AdminToken | Self::User { .. } => Ok(()),
            Self::Client { scopes, .. } if scopes.iter().any(|s| s == scope) => Ok(()),
            Self::Client { .. } => Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("Insufficient scope; expected: {scope}."),
            )),
        }
    }
}

/// The bearer token of a request, if it has exactly one well-formed `Authorization: Bearer`.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let mut values = req
        .headers()
        .get_all(actix_web::http::header::AUTHORIZATION);
    let v = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

impl FromRequest for ManagementAuth {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let config = req.app_data::<web::Data<ManagementAuthConfig>>();
        let invalid = || ApiError::unauthorized("Invalid token.");
        let result = match (bearer(req), config) {
            (None, _) => Err(ApiError::unauthorized(
                "Missing authentication: send Authorization: Bearer <token>.",
            )),
            (Some(t), Some(c)) if c.admin_token.as_ref().is_some_and(|a| a.matches(t)) => {
                Ok(ManagementAuth::AdminToken)
            }
            (Some(t), Some(c)) => match c.verify_token.as_ref() {
                // A signed token may need the keys read again (another instance's new key).
                Some(v) => {
                    let verified = v(t.to_owned());
                    return Box::pin(async move { verified.await.ok_or_else(invalid) });
                }
                None => Err(invalid()),
            },
            (Some(_), None) => Err(invalid()),
        };
        Box::pin(ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_compares_digests() {
        let t = AdminToken::new("correct horse battery staple");
        assert!(t.matches("correct horse battery staple"));
        assert!(!t.matches("correct horse battery stapl"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "AdminToken([redacted])");
    }

    #[test]
    fn bearer_parsing() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Authorization", "Bearer abc"))
            .to_http_request();
        assert_eq!(bearer(&req), Some("abc"));
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Authorization", "Basic abc"))
            .to_http_request();
        assert_eq!(bearer(&req), None);
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Authorization", "Bearer "))
            .to_http_request();
        assert_eq!(bearer(&req), None);
    }
}
