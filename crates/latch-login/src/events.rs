//! Log events of sign-in (Auth0's codes: `s`, `f`, `limit_wc`, `limit_mu`).

use latch_core::model::LogEvent;
use latch_core::{ClientId, ConnectionName, UserId};
use serde_json::Value;

use crate::Deps;

/// Records a log event; failure to log never fails the request.
#[allow(clippy::too_many_arguments)]
pub async fn log(
    deps: &Deps,
    event_type: &str,
    description: &str,
    user: Option<&UserId>,
    client: Option<&ClientId>,
    connection: Option<&ConnectionName>,
    ip: Option<std::net::IpAddr>,
    details: Value,
) {
    let e = LogEvent {
        user_id: user.cloned(),
        client_id: client.cloned(),
        connection: connection.cloned(),
        ip: ip.map(|i| i.to_string()),
        details,
        ..LogEvent::new(deps.clock.now(), event_type, description)
    };
    if let Err(err) = deps.store.insert_log(&e).await {
        tracing::error!(error = %err, event = event_type, "could not record log event");
    }
}
