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

/// A durable outbound logout notification. Recorded before a session is deleted; drained by
/// latch-backchannel's workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub client_id: ClientId,
    pub target: Url,
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
