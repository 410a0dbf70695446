//! The one outbound HTTP client: timeouts on everything, redirects never followed (a redirect
//! from an app's logout endpoint or an IdP is a misconfiguration or an SSRF attempt, not
//! something to chase), rustls with the bundled Mozilla roots.

use std::time::Duration;

/// Builds the outbound client. `timeout` bounds each whole request.
pub fn outbound(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("Latch/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "outbound HTTP client with defaults");
            reqwest::Client::new()
        })
}
