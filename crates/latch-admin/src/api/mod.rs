pub mod client_grants;
pub mod clients;
pub mod connections;
pub mod deliveries;
pub mod keys;
pub mod log_streams;
pub mod logs;
pub mod users;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, Handler, HttpResponse, Responder, ResponseError, Route, Scope, web};
use latch_http::ApiError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// One operation of the management API. `/api/v2` is built from [`routes`], and the OpenAPI
/// document must list exactly these (`openapi::tests`).
pub(crate) struct Op {
    pub(crate) method: Method,
    /// Under `/api/v2`: `/users/{id}`.
    pub(crate) path: &'static str,
    route: Route,
}

pub(crate) fn op<F, Args>(method: Method, path: &'static str, handler: F) -> Op
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    Op {
        route: web::method(method.clone()).to(handler),
        method,
        path,
    }
}

/// Every operation of the management API.
pub(crate) fn routes() -> Vec<Op> {
    [
        connections::routes(),
        clients::routes(),
        users::routes(),
        keys::routes(),
        client_grants::routes(),
        logs::routes(),
        log_streams::routes(),
        deliveries::routes(),
        crate::openapi::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Mounts `ops` on `scope`, one resource per path: a method the path does not have answers 405
/// with `Allow` and the JSON error (one route per method would make it a 404).
pub(crate) fn register(mut scope: Scope, ops: Vec<Op>) -> Scope {
    let mut paths: Vec<(&'static str, Vec<Op>)> = Vec::new();
    for op in ops {
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, same)) => same.push(op),
            None => paths.push((op.path, vec![op])),
        }
    }
    for (path, ops) in paths {
        let allow = ops
            .iter()
            .map(|o| o.method.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(path);
        for op in ops {
            resource = resource.route(op.route);
        }
        scope = scope.service(
            resource
                .default_service(web::to(move || {
                    let allow = allow.clone();
                    async move { method_not_allowed(&allow) }
                }))
                .wrap(actix_web::middleware::from_fn(
                    latch_http::query::refuse_nul_in_path,
                )),
        );
    }
    scope
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut res = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("This path answers only {allow}."),
    )
    .error_response();
    if let Ok(v) = HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

/// Any other path under `/api/v2`.
pub(crate) async fn unknown_path() -> HttpResponse {
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "There is no such management API endpoint: see /api/v2/openapi.json.",
    )
    .error_response()
}

/// `?include_totals=true`: the collection as a page (Auth0's names).
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TotalsQuery {
    /// Answer `{"start", "limit", "length", "total", "<collection>": [...]}` instead of the bare
    /// array.
    #[serde(default)]
    pub include_totals: bool,
}

/// Where a page starts, as Auth0 counts: `page * per_page` (no overflow for any `u32`s).
pub(crate) fn start(page: u32, per_page: u32) -> u64 {
    u64::from(page) * u64::from(per_page)
}

/// A list answer: the bare array, or with `include_totals=true` the page object holding it.
macro_rules! list {
    ($(#[$doc:meta])* $list:ident, $page:ident, $key:ident, $item:ty) => {
        /// A page of the collection (`include_totals=true`).
        #[derive(serde::Serialize, utoipa::ToSchema)]
        struct $page {
            $key: Vec<$item>,
            /// Index of the first item (`page * per_page`).
            start: u64,
            /// Items per page.
            limit: u64,
            /// Items in this page.
            length: u64,
            /// Items matching, over every page.
            total: u64,
        }

        $(#[$doc])*
        #[derive(serde::Serialize, utoipa::ToSchema)]
        #[serde(untagged)]
        enum $list {
            Items(Vec<$item>),
            Page($page),
        }

        impl $list {
            /// `totals`: `Some((start, limit, total))` for the page object.
            fn new(items: Vec<$item>, totals: Option<(u64, u64, u64)>) -> Self {
                match totals {
                    None => Self::Items(items),
                    Some((start, limit, total)) => Self::Page($page {
                        length: items.len() as u64,
                        $key: items,
                        start,
                        limit,
                        total,
                    }),
                }
            }
        }
    };
}
pub(crate) use list;

/// A request body for an API handler called by the admin UI: the same types, so the same checks.
pub(crate) fn body<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    if let Some(field) = latch_http::json::nul_in(&v) {
        return Err(latch_http::json::nul_error(field));
    }
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
