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
            // JSON can carry U+0000 only as the escape `\u0000`: look closer only then.
            if bytes.windows(6).any(|w| w == b"\\u0000")
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
                && let Some(field) = nul_in(&v)
            {
                return Err(nul_error(field));
            }
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(de)
                .map(StrictJson)
                .map_err(|e| {
                    // Not JSON at all (or cut short): no field is at fault, the body is, at a
                    // line and column serde_json's message gives.
                    if matches!(
                        e.inner().classify(),
                        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                    ) {
                        return ApiError::bad_request(
                            "body",
                            format!(
                                "Payload validation error: body: malformed JSON: {}",
                                e.inner()
                            ),
                        );
                    }
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

/// Where a NUL character (U+0000) sits in `v`, in the field notation of errors (`options.domain`,
/// `callbacks[0]`; `body` for the top level). No management API value may hold one, and
/// PostgreSQL cannot store one in text.
pub fn nul_in(v: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &mut String) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(members) => members.iter().any(|(k, item)| {
                if k.contains('\0') {
                    return true;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }
    })
}

/// The 400 for a NUL character in `field`.
pub fn nul_error(field: String) -> ApiError {
    let message = format!("{field} must not contain a NUL character (U+0000)");
    ApiError::bad_request(field, message)
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
