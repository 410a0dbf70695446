pub mod client_grants;
pub mod clients;
pub mod connections;
pub mod keys;
pub mod logs;
pub mod users;

use serde::Deserialize;

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
