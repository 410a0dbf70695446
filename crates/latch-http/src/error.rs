//! JSON errors shaped as Auth0's Management API answers them:
//! `{"statusCode":400,"error":"Bad Request","message":"…","errorCode":"invalid_body","field":"…"}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use latch_core::{SessionError, StoreError, ValidationError};
use serde::Serialize;

/// An error a JSON endpoint answers with. `message` is for the caller; the source, if any, is
/// logged and never sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_code: &'static str,
    pub message: String,
    pub field: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

// Named `ApiError` in the OpenAPI document.
/// The JSON body of every management API error.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiError)]
pub struct ErrorBody<'a> {
    /// The HTTP status code, repeated.
    #[serde(rename = "statusCode")]
    #[schema(minimum = 400, maximum = 599)]
    status_code: u16,
    /// The status code's reason phrase (`Bad Request`).
    error: &'a str,
    /// What went wrong, for a person.
    message: &'a str,
    /// A stable code for programs (`invalid_body`, `inexistent_resource`, …).
    #[serde(rename = "errorCode")]
    error_code: &'a str,
    /// The request input at fault (`name`, `options.domain`, `callbacks[0]`, a query
    /// parameter, `body`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code,
            message: message.into(),
            field: None,
            source: None,
        }
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_body", message);
        e.field = Some(field.into());
        e
    }

    /// A 400 for a query parameter (Auth0's `invalid_query_string`), naming it.
    pub fn bad_query(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_query_string", message);
        e.field = Some(param.into());
        e
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "inexistent_resource",
            format!("The {what} does not exist."),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_or_invalid_token",
            message,
        )
    }

    fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error_code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(error = %self, source = %error_chain(src.as_ref()), "request failed")
                }
                None => tracing::error!(error = %self, "request failed"),
            }
        }
        let body = ErrorBody {
            status_code: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
            error_code: self.error_code,
            field: self.field.as_deref(),
        };
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latch\", error=\"invalid_token\""),
            ));
        }
        res.json(body)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::bad_request(e.field.clone(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, .. } => Self::not_found(entity),
            StoreError::Conflict { entity, field } => {
                let mut out =
                    Self::conflict(format!("A {entity} with the same {field} already exists."));
                out.field = Some(field.to_owned());
                out
            }
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The database is unavailable. Try again later.",
            )
            .with_source(e),
            StoreError::Internal(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal error.",
            )
            .with_source(e),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The session store is unavailable. Try again later.",
            )
            .with_source(e),
            SessionError::Internal(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal error.",
            )
            .with_source(e),
        }
    }
}

impl From<latch_core::logout::LogoutError> for ApiError {
    fn from(e: latch_core::logout::LogoutError) -> Self {
        match e {
            latch_core::logout::LogoutError::Store(e) => e.into(),
            latch_core::logout::LogoutError::Session(e) => e.into(),
        }
    }
}

impl From<latch_core::users::UserError> for ApiError {
    fn from(e: latch_core::users::UserError) -> Self {
        use latch_core::users::UserError;
        match e {
            UserError::NotDatabase => Self::bad_request(
                "connection",
                "connection: users with passwords are created only in database (auth0) connections; enterprise users are created at their first sign-in",
            ),
            UserError::NotEnterprise => Self::bad_request(
                "connection",
                "connection: SCIM provisions users into enterprise connections only",
            ),
            UserError::InvalidEmail => Self::bad_request("email", "email must be an email address"),
            UserError::InvalidName => Self::bad_request("name", "name must be 1-300 characters"),
            UserError::Password(e) => e.into(),
            UserError::Exists => {
                let mut out = Self::conflict("The user already exists.");
                out.field = Some("email".into());
                out
            }
            UserError::Hash(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal error.",
            )
            .with_source(e),
            UserError::Store(e) => e.into(),
            UserError::Logout(e) => e.into(),
        }
    }
}
