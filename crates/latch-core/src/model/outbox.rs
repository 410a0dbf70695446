use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::{ClientId, DeliveryId, Jti, Sid, UserId};

/// Why a session ended: carried to the app in logs, and to Auth0-style initiator filters
/// ([`crate::model::BackchannelLogoutInitiators`]). Serialized (and stored in the outbox) as
/// [`LogoutInitiator::as_str`]: Auth0's kebab-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogoutInitiator {
    /// An app's logout: OpenID Connect RP-initiated logout, a SAML app's LogoutRequest, the
    /// admin UI's sign-out.
    RpLogout,
    /// An upstream IdP's: GTR, upstream back-channel logout, an upstream SAML LogoutRequest.
    IdpLogout,
    /// An administrator ended sessions (clear sessions, end one session, a deleted connection).
    SessionRevoked,
    /// A session's lifetime ended.
    SessionExpired,
    /// The user was blocked (admin, or SCIM `active: false`).
    AccountDeactivated,
    /// The user was deleted (admin, or SCIM `DELETE`).
    AccountDeleted,
    /// The user's database password was set (by an administrator, or by the user).
    PasswordChanged,
    /// Latch's own: a new sign-in in the same browser replaced the session (Auth0 has no
    /// initiator for it; an app's choice of initiators counts it as `rp-logout`, since an
    /// app's sign-in request brought it).
    SessionReplaced,
}

impl LogoutInitiator {
    /// What an app may select in `oidc_logout.backchannel_logout_initiators` (Auth0's names):
    /// every initiator but Latch's own [`Self::SessionReplaced`].
    pub const SELECTABLE: [Self; 7] = [
        Self::RpLogout,
        Self::IdpLogout,
        Self::SessionRevoked,
        Self::AccountDeactivated,
        Self::AccountDeleted,
        Self::PasswordChanged,
        Self::SessionExpired,
    ];

    /// The name in logs, logout notices and the client API, e.g. `rp-logout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RpLogout => "rp-logout",
            Self::IdpLogout => "idp-logout",
            Self::SessionRevoked => "session-revoked",
            Self::SessionExpired => "session-expired",
            Self::AccountDeactivated => "account-deactivated",
            Self::AccountDeleted => "account-deleted",
            Self::PasswordChanged => "password-changed",
            Self::SessionReplaced => "session-replaced",
        }
    }

    /// The selectable initiator [`Self::as_str`] names; `None` for any other name (Latch's own
    /// `session-replaced` included).
    pub fn parse_selectable(s: &str) -> Option<Self> {
        Self::SELECTABLE.into_iter().find(|v| v.as_str() == s)
    }

    /// The selectable initiator an app's choice is judged by: itself, or `rp-logout` for a
    /// replaced session.
    pub fn selected_as(self) -> Self {
        match self {
            Self::SessionReplaced => Self::RpLogout,
            other => other,
        }
    }
}

/// What a back-channel logout token will say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutNotice {
    pub sub: Option<UserId>,
    pub sid: Option<Sid>,
    pub initiator: LogoutInitiator,
    /// A GTR delivery to an app that names users by email: the user's email when the logout
    /// was recorded (the user may be deleted before it is sent). `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
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

/// Which deliveries to list (every given field must match), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    pub user_id: Option<UserId>,
    pub client_id: Option<ClientId>,
}

impl DeliveryQuery {
    /// The deliveries in `state`.
    pub fn in_state(state: DeliveryState) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }
}

/// What a delivery is, and so how a worker sends it: the outbox's extension point. Every kind
/// rides the same durable queue, leases and retries; each has its own sender in
/// latch-backchannel (one `match` arm there). Stored as [`DeliveryKind::as_str`] in the outbox's
/// `kind` column, whose default (for rows written before kinds existed) is
/// `backchannel_logout`.
///
/// Planned kind: `saml_logout` (a SAML LogoutRequest over SOAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// An OpenID Connect Back-Channel Logout token POSTed to the app; the payload is the
    /// delivery's [`LogoutNotice`].
    BackchannelLogout,
    /// A Global Token Revocation request POSTed to the app's `global_token_revocation`
    /// endpoint (the target), naming the user by the notice's `sub` (`iss_sub`) or `email`.
    Gtr,
}

impl DeliveryKind {
    /// Every kind, for parsing.
    pub const ALL: [Self; 2] = [Self::BackchannelLogout, Self::Gtr];

    /// The stored (and serialized) name, e.g. `backchannel_logout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BackchannelLogout => "backchannel_logout",
            Self::Gtr => "gtr",
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
    fn initiator_names_are_auth0_s() {
        let all = [
            LogoutInitiator::SessionReplaced,
            LogoutInitiator::RpLogout,
            LogoutInitiator::IdpLogout,
            LogoutInitiator::SessionRevoked,
            LogoutInitiator::SessionExpired,
            LogoutInitiator::AccountDeactivated,
            LogoutInitiator::AccountDeleted,
            LogoutInitiator::PasswordChanged,
        ];
        for i in all {
            // serde, the logs and the API agree on one name.
            assert_eq!(
                serde_json::to_value(i).ok(),
                Some(serde_json::Value::from(i.as_str()))
            );
            assert_eq!(
                serde_json::from_value::<LogoutInitiator>(i.as_str().into()).ok(),
                Some(i)
            );
            assert_eq!(
                LogoutInitiator::parse_selectable(i.as_str()),
                (i != LogoutInitiator::SessionReplaced).then_some(i)
            );
        }
        assert_eq!(
            serde_json::to_value(LogoutInitiator::AccountDeleted).ok(),
            Some(serde_json::Value::from("account-deleted"))
        );
        assert_eq!(
            serde_json::to_value(LogoutInitiator::PasswordChanged).ok(),
            Some(serde_json::Value::from("password-changed"))
        );
        assert_eq!(
            LogoutInitiator::parse_selectable("email-identifier-changed"),
            None
        );
        assert_eq!(
            LogoutInitiator::SessionReplaced.selected_as(),
            LogoutInitiator::RpLogout
        );
    }

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
