//! actix-web glue shared by every endpoint crate: errors to responses (the one place where
//! domain errors become status codes), strict JSON bodies, management API authentication,
//! security headers, request ids, the client's address behind trusted proxies.
//!
//! **Boundary:** endpoint crates share code through this crate, never through each other.

pub mod auth;
pub mod client;
pub mod client_ip;
pub mod error;
pub mod headers;
pub mod json;
pub mod oauth;
pub mod query;

pub use auth::{AdminToken, ManagementAuth, ManagementAuthConfig};
pub use client_ip::{TrustedProxies, client_ip};
pub use error::ApiError;
pub use json::StrictJson;
pub use oauth::{OAuthError, OAuthErrorCode};
pub use query::StrictQuery;
