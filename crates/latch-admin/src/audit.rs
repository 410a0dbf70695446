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
    let event = LogEvent {
        client_id: client.cloned(),
        connection: connection.cloned(),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details: serde_json::json!({
            "request": { "method": req.method().as_str(), "path": req.path() },
            "actor": who.actor(),
        }),
        ..LogEvent::new(deps.clock.now(), "sapi", description)
    };
    // The write already happened; failing to log it must not fail the request.
    if let Err(e) = deps.store.insert_log(&event).await {
        tracing::error!(error = %e, "could not record management API event");
    }
}
