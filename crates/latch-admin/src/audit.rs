//! Every management write is logged as an Auth0 `sapi` event naming the actor. Bodies are never
//! logged: they may hold secrets.

use actix_web::HttpRequest;
use latch_core::model::LogEvent;
use latch_core::*;
use latch_http::ManagementAuth;

use crate::Deps;

pub(crate) async fn record(
    deps: &Deps,
    req: &HttpRequest,
    who: &ManagementAuth,
    description: &str,
    client: Option<&ClientId>,
    connection: Option<&ConnectionName>,
) {
    record_with(
        deps,
        req,
        who,
        description,
        client,
        connection,
        serde_json::Map::new(),
    )
    .await;
}

/// [`record`], with more members in `details` (what the write was about, such as the id of
/// what it changed; never a secret).
pub(crate) async fn record_with(
    deps: &Deps,
    req: &HttpRequest,
    who: &ManagementAuth,
    description: &str,
    client: Option<&ClientId>,
    connection: Option<&ConnectionName>,
    more: serde_json::Map<String, serde_json::Value>,
) {
    let mut details = serde_json::json!({
        "request": { "method": req.method().as_str(), "path": req.path() },
        "actor": who.actor(),
    });
    if let Some(d) = details.as_object_mut() {
        for (k, v) in more {
            d.entry(k).or_insert(v);
        }
    }
    let event = LogEvent {
        client_id: client.cloned(),
        connection: connection.cloned(),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details,
        ..LogEvent::new(deps.clock.now(), "sapi", description)
    };
    // The write already happened; failing to log it must not fail the request.
    if let Err(e) = deps.store.insert_log(&event).await {
        tracing::error!(error = %e, "could not record management API event");
    }
}
