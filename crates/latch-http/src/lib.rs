//! actix-web glue shared by every endpoint crate: errors to responses (the one place where
//! domain errors become status codes), strict JSON bodies, management API authentication,
//! security headers, request ids.
//!
//! **Boundary:** endpoint crates share code through this crate, never through each other.

pub mod auth;
pub mod client;
pub mod error;
pub mod headers;
pub mod json;
pub mod oauth;

pub use auth::{AdminToken, ManagementAuth, ManagementAuthConfig};
pub use error::ApiError;
pub use json::StrictJson;
pub use oauth::{OAuthError, OAuthErrorCode};
