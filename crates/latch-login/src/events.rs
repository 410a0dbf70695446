//! Log events of sign-in (Auth0's codes: `s`, `f`, `limit_wc`, `limit_mu`).

use latch_core::model::LogEvent;
use latch_core::{ClientId, ConnectionName, UserId};
use serde_json::Value;

use crate::Deps;

/// Records a log event; failure to log never fails the request.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn log(
    deps: &Deps,
    event_type: &str,
    description: &str,
    user: Option<&UserId>,
    client: Option<&ClientId>,
    connection: Option<&ConnectionName>,
    ip: Option<std::net::IpAddr>,
    details: Value,
) {
    log_with(
        &*deps.store,
        &*deps.clock,
        event_type,
        description,
        user,
        client,
        connection,
        ip,
        details,
    )
    .await
}

/// Records a log event through `store`; failure to log never fails the request. The protocol
/// crates log their sign-in and logout events through it.
#[allow(clippy::too_many_arguments)]
pub async fn log_with(
    store: &dyn latch_core::store::Store,
    clock: &dyn latch_core::Clock,
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
        ..LogEvent::new(clock.now(), event_type, description)
    };
    if let Err(err) = store.insert_log(&e).await {
        tracing::error!(error = %err, event = event_type, "could not record log event");
    }
}
