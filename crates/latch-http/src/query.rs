//! `StrictQuery<T>`: a query string extractor whose 400 is the JSON error naming the parameter
//! (`page: invalid digit found in string`), and error handlers that give actix's own `Query` and
//! `Path` extractors the same JSON shape.

use actix_web::dev::Payload;
use actix_web::error::{PathError, QueryPayloadError};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{Ready, ready};
use serde::de::DeserializeOwned;

use crate::ApiError;

pub struct StrictQuery<T>(pub T);

impl<T> std::ops::Deref for StrictQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Reads `query` into `T`; the error names the parameter at fault. A NUL character (U+0000) in
/// any name or value is refused.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    if let Some((k, _)) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        let param = if k.contains('\0') {
            "query".to_owned()
        } else {
            k.into_owned()
        };
        return Err(ApiError::bad_query(
            param.clone(),
            format!("{param} must not contain a NUL character (U+0000)"),
        ));
    }
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let param = missing_field(&inner).unwrap_or(match path.as_str() {
            "." | "?" => "query",
            p => p,
        });
        ApiError::bad_query(param, format!("Query validation error: {param}: {inner}"))
    })
}

/// serde names a missing field only in its message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

impl<T: DeserializeOwned> FromRequest for StrictQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(StrictQuery))
    }
}

/// For `web::QueryConfig::error_handler`: actix's `Query` failures as the JSON error. The
/// parameter is named when serde's message names it, else the field is `query`.
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        _ => "the query string could not be read".to_owned(),
    };
    let param = missing_field(&message).unwrap_or("query").to_owned();
    ApiError::bad_query(
        param.clone(),
        format!("Query validation error: {param}: {message}"),
    )
    .into()
}

/// Middleware for a resource: a path parameter holding a NUL character (`%00`) is the 400 naming
/// it, before any handler looks it up (PostgreSQL cannot even compare text holding one).
pub async fn refuse_nul_in_path(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let at_fault = req
        .match_info()
        .iter()
        .find(|(_, v)| v.contains('\0') || v.contains("%00"))
        .map(|(name, _)| name.to_owned());
    if let Some(name) = at_fault {
        use actix_web::ResponseError as _;
        let res = crate::json::nul_error(name).error_response();
        return Ok(req.into_response(res));
    }
    next.call(req).await
}

/// For `web::PathConfig::error_handler`: a path segment that does not fit its type, as the JSON
/// error naming the segment when the route has one parameter.
pub fn path_error(err: PathError, req: &HttpRequest) -> actix_web::Error {
    let names: Vec<&str> = req.match_info().iter().map(|(name, _)| name).collect();
    let param = match names.as_slice() {
        [one] => (*one).to_owned(),
        _ => "path".to_owned(),
    };
    let message = match &err {
        PathError::Deserialize(e) => e.to_string(),
        _ => "the path could not be read".to_owned(),
    };
    ApiError::bad_request(
        param.clone(),
        format!("Path validation error: {param}: {message}"),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Q {
        page: Option<u32>,
        #[serde(default)]
        include_totals: bool,
        email: String,
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse::<Q>("email=a&page=abc").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("page"), "{e}");
        let e = parse::<Q>("email=a&include_totals=maybe").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("include_totals"), "{e}");
        let e = parse::<Q>("page=1").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("email"), "{e}");
        let e = parse::<Q>("email=a%00b").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("email"), "{e}");
        assert!(parse::<Q>("email=a%40b&page=2&include_totals=true").is_ok());
    }
}
