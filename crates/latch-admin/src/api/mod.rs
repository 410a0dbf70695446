pub mod client_grants;
pub mod clients;
pub mod connections;
pub mod keys;
pub mod logs;
pub mod users;

use actix_web::HttpResponse;
use latch_http::ApiError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `?include_totals=true` answers `{ "<collection>": [...], "start", "limit", "total" }`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub include_totals: bool,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

pub(crate) fn collection(
    name: &str,
    items: Vec<serde_json::Value>,
    totals: bool,
) -> serde_json::Value {
    if totals {
        let n = items.len();
        serde_json::json!({ name: items, "start": 0, "limit": n, "total": n })
    } else {
        serde_json::Value::Array(items)
    }
}

/// A request body for an API handler called by the admin UI: the same types, so the same checks.
pub(crate) fn body<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request("body", e.to_string()))
}

/// The JSON an API handler answered, for the admin UI.
pub(crate) async fn answer(res: HttpResponse) -> Result<serde_json::Value, ApiError> {
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .map_err(|_| server_error("unreadable API answer"))?;
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|_| server_error("API answer is not JSON"))
}

fn server_error(m: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        m,
    )
}
