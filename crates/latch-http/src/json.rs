//! `StrictJson<T>`: a JSON body extractor that requires `application/json`, caps the size, and
//! names the offending field in its 400 (`options.domain: invalid type …`).

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest accepted management API body.
pub const MAX_BODY: usize = 64 * 1024;

pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for StrictJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Mime>().ok())
            .is_some_and(|m| m.is_json());
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_content_type",
                    "Send the body as application/json.",
                ));
            }
            // The server caps bodies with `web::PayloadConfig`; an overflow surfaces here as 413.
            let bytes = body.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "The body is too large.",
                    )
                } else {
                    ApiError::bad_request("body", "The body could not be read.")
                }
            })?;
            if bytes.len() > MAX_BODY {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The body is too large.",
                ));
            }
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(de)
                .map(StrictJson)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.inner().to_string();
                    // serde reports a missing field at its parent: name the field itself.
                    let missing = inner
                        .strip_prefix("missing field `")
                        .and_then(|rest| rest.split('`').next())
                        .map(str::to_owned);
                    let field = match (path.as_str(), missing) {
                        (".", Some(m)) => m,
                        (".", None) => "body".to_owned(),
                        (p, Some(m)) => format!("{p}.{m}"),
                        (p, None) => p.to_owned(),
                    };
                    ApiError::bad_request(
                        field.clone(),
                        format!("Payload validation error: {field}: {inner}"),
                    )
                })
        })
    }
}

/// A tiny `Content-Type` reader: `application/json` or `application/<x>+json`, any parameters.
mod mime_type {
    pub struct Mime(String);
    impl std::str::FromStr for Mime {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            Ok(Self(
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase(),
            ))
        }
    }
    impl Mime {
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}
