use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::{ClientId, DeliveryId, Jti, Sid, UserId};

/// Why a session ended: carried to the app in logs, and to Auth0-style initiator filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogoutInitiator {
    RpLogout,
    IdpLogout,
    SessionRevoked,
    SessionExpired,
    AccountDeactivated,
    /// Latch's own: a new sign-in in the same browser replaced the session (Auth0 has no
    /// initiator for it).
    SessionReplaced,
}

/// What a back-channel logout token will say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutNotice {
    pub sub: Option<UserId>,
    pub sid: Option<Sid>,
    pub initiator: LogoutInitiator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a delivery is, and so how a worker sends it: the outbox's extension point. Every kind
/// rides the same durable queue, leases and retries; each has its own sender in
/// latch-backchannel (one `match` arm there). Stored as [`DeliveryKind::as_str`] in the outbox's
/// `kind` column, whose default (for rows written before kinds existed) is
/// `backchannel_logout`.
///
/// Planned kinds: `saml_logout` (a SAML LogoutRequest over SOAP), `gtr` (a Global Token
/// Revocation call to an app), `log_stream` (a batch of log events for a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// An OpenID Connect Back-Channel Logout token POSTed to the app; the payload is the
    /// delivery's [`LogoutNotice`].
    BackchannelLogout,
}

impl DeliveryKind {
    /// Every kind, for parsing.
    const ALL: [Self; 1] = [Self::BackchannelLogout];

    /// The stored (and serialized) name, e.g. `backchannel_logout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackchannelLogout => "backchannel_logout",
        }
    }

    /// The kind [`Self::as_str`] names; `None` for a name no kind has.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A durable outbound notification. Recorded before a session is deleted; drained by
/// latch-backchannel's workers, which send it as its `kind` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    /// How it is sent; fixed at creation.
    pub kind: DeliveryKind,
    pub client_id: ClientId,
    pub target: Url,
    /// The payload (for now every kind carries a logout notice).
    pub notice: LogoutNotice,
    /// The same `jti` on every retry.
    pub jti: Jti,
    pub state: DeliveryState,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
    /// A worker holds the delivery until then; another may take it after.
    pub locked_until: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub finished_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_kind_names_round_trip() {
        for k in DeliveryKind::ALL {
            assert_eq!(DeliveryKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::from(k.as_str()))
            );
        }
        assert_eq!(
            DeliveryKind::BackchannelLogout.as_str(),
            "backchannel_logout"
        );
        assert_eq!(DeliveryKind::parse("saml_logout"), None);
    }
}
