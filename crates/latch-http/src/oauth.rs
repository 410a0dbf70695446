//! OAuth 2.0 error bodies (RFC 6749 §5.2): `{"error": "...", "error_description": "..."}`, as
//! the token, revocation and introspection endpoints answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedTokenType,
    ServerError,
    TemporarilyUnavailable,
}

/// A protocol error: `description` is shown to the client; `detail` only goes to the log.
#[derive(Debug)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    pub detail: Option<String>,
    /// The client authenticated with HTTP Basic: a 401 then carries `WWW-Authenticate: Basic`.
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            detail: None,
            basic_challenge: false,
        }
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client() -> Self {
        Self::new(
            OAuthErrorCode::InvalidClient,
            "Client authentication failed.",
        )
    }
    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "Internal error.")
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self.code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::AccessDenied => StatusCode::FORBIDDEN,
            OAuthErrorCode::InvalidRequest
            | OAuthErrorCode::InvalidGrant
            | OAuthErrorCode::UnauthorizedClient
            | OAuthErrorCode::UnsupportedGrantType
            | OAuthErrorCode::InvalidScope
            | OAuthErrorCode::UnsupportedTokenType => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(d) = &self.detail {
            tracing::info!(code = ?self.code, detail = %d, "oauth error");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if self.code == OAuthErrorCode::InvalidClient && self.basic_challenge {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"latch\""),
            ));
        }
        res.json(serde_json::json!({ "error": self.code, "error_description": self.description }))
    }
}

impl From<latch_core::StoreError> for OAuthError {
    fn from(e: latch_core::StoreError) -> Self {
        match e {
            latch_core::StoreError::Unavailable(_) => {
                Self::new(OAuthErrorCode::TemporarilyUnavailable, "Try again later.")
                    .detail(e.to_string())
            }
            latch_core::StoreError::NotFound { .. }
            | latch_core::StoreError::Conflict { .. }
            | latch_core::StoreError::Internal(_) => {
                Self::server_error().detail(format!("{e}: {:?}", e))
            }
        }
    }
}

impl From<latch_core::SessionError> for OAuthError {
    fn from(e: latch_core::SessionError) -> Self {
        match e {
            latch_core::SessionError::Unavailable(_) => {
                Self::new(OAuthErrorCode::TemporarilyUnavailable, "Try again later.")
                    .detail(e.to_string())
            }
            latch_core::SessionError::Internal(_) => {
                Self::server_error().detail(format!("{e}: {:?}", e))
            }
        }
    }
}
