use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::LogoutInitiator;
use crate::{ClientId, TokenDigest};

/// Auth0's application types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    RegularWeb,
    Spa,
    Native,
    NonInteractive,
}

impl Client {
    /// The assertion consumer service URL of a SAML app: `recipient`, or the first callback.
    pub fn saml_acs(&self) -> Option<&Url> {
        let addon = self.addons.samlp.as_ref()?;
        addon.recipient.as_ref().or(self.callbacks.first())
    }
}

impl AppType {
    pub fn is_public(self) -> bool {
        matches!(self, Self::Spa | Self::Native)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

/// JWS algorithms Latch signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::RS256, Self::ES256, Self::EdDSA]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Lifetimes of what Latch issues to a client, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLifetimes {
    pub id_token: i64,
    pub access_token: i64,
    /// Absolute lifetime of a refresh token family.
    pub refresh_token: i64,
    /// Idle lifetime: a refresh token unused this long expires.
    pub refresh_token_idle: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            id_token: 36_000,
            access_token: 86_400,
            refresh_token: 2_592_000,
            refresh_token_idle: 1_296_000,
        }
    }
}

/// The admin UI's own client: the UI signs admins in through Latch like any app.
pub const ADMIN_CLIENT_ID: &str = "latch-admin";
/// Where the admin UI receives its authorization code (under the issuer).
pub const ADMIN_CALLBACK_PATH: &str = crate::paths::ADMIN_CALLBACK;

/// How a client wants to hear about logouts. Stored whole as JSON with the client (a member
/// added later reads as its default from rows written before it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OidcLogout {
    pub backchannel_logout_urls: Vec<Url>,
    pub backchannel_logout_session_required: bool,
    pub frontchannel_logout_url: Option<Url>,
    pub frontchannel_logout_session_required: bool,
    /// Which kinds of session end the app is sent a back-channel logout token for.
    #[serde(default)]
    pub backchannel_logout_initiators: BackchannelLogoutInitiators,
}

/// Auth0's `oidc_logout.backchannel_logout_initiators`: `{"mode": "all"}` (the default: every
/// kind of session end, present and future) or `{"mode": "custom", "selected_initiators":
/// [...]}` (only those; [`LogoutInitiator::SELECTABLE`] names them). Front-channel logout and
/// SAML Single Logout are not filtered: they happen only with the browser at Latch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum BackchannelLogoutInitiators {
    #[default]
    All,
    Custom {
        selected_initiators: Vec<LogoutInitiator>,
    },
}

impl BackchannelLogoutInitiators {
    /// Whether an app with this choice is sent a logout token for a session end `initiator`
    /// started (Latch's own `session-replaced` counts as `rp-logout`).
    pub fn allows(&self, initiator: LogoutInitiator) -> bool {
        match self {
            Self::All => true,
            Self::Custom {
                selected_initiators,
            } => selected_initiators.contains(&initiator.selected_as()),
        }
    }
}

/// SAML NameID formats Latch issues to SAML apps.
pub mod name_id_format {
    /// The default: carries the `user_id`.
    pub const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
    /// Carries the user's email.
    pub const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
    /// Carries the `user_id`.
    pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
    pub const ALL: [&str; 3] = [UNSPECIFIED, EMAIL, PERSISTENT];
}

/// SAML bindings Latch sends a LogoutRequest to a SAML app with.
pub mod saml_binding {
    pub const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
    pub const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
}

/// A SAML app's Single Logout settings (Auth0's `addons.samlp.logout`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlpLogout {
    /// The SP's SingleLogoutService URL: LogoutRequests and LogoutResponses go there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Url>,
    /// Default: `true` when a callback is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_enabled: Option<bool>,
}

/// Latch as a SAML IdP for this client (Auth0's SAML2 Web App addon, `addons.samlp`); field
/// names are Auth0's. Checked by `latch_core::validate` before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlpAddon {
    /// The SP's entity id: the AuthnRequest's `Issuer` and the assertion's `Audience`.
    pub audience: String,
    /// The AssertionConsumerService URL; `None`: the client's first callback. One of `callbacks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Url>,
    /// One of [`name_id_format::ALL`].
    #[serde(default = "default_name_id_format")]
    pub name_identifier_format: String,
    /// `true`: the whole Response is signed; `false` (default): the assertion.
    #[serde(default)]
    pub sign_response: bool,
    /// `rsa-sha256` (`rsa-sha1` is refused).
    #[serde(default = "default_signature_algorithm")]
    pub signature_algorithm: String,
    /// `sha256`.
    #[serde(default = "default_digest_algorithm")]
    pub digest_algorithm: String,
    /// Bounds the assertion's `NotOnOrAfter` (default 3600).
    #[serde(default = "default_lifetime")]
    pub lifetime_in_seconds: i64,
    /// User attribute (`email`, `name`, `user_id`, `given_name`, `family_name`, `nickname`,
    /// `picture`, `email_verified`) → SAML attribute name.
    #[serde(default)]
    pub mappings: std::collections::BTreeMap<String, String>,
    /// The SP's certificate (PEM): when set, its AuthnRequests and LogoutRequests must be
    /// signed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_cert: Option<String>,
    #[serde(default)]
    pub logout: SamlpLogout,
    /// How Latch sends LogoutRequests to the SP: [`saml_binding::HTTP_REDIRECT`] (default) or
    /// [`saml_binding::HTTP_POST`].
    #[serde(default = "default_binding")]
    pub binding: String,
    /// Latch's choice (the issue leaves the name open): IdP-initiated sign-in at
    /// `/samlp/{client_id}` without a request, refused unless `true`.
    #[serde(default)]
    pub allow_idp_initiated: bool,
}

fn default_name_id_format() -> String {
    name_id_format::UNSPECIFIED.to_owned()
}
fn default_signature_algorithm() -> String {
    "rsa-sha256".to_owned()
}
fn default_digest_algorithm() -> String {
    "sha256".to_owned()
}
fn default_lifetime() -> i64 {
    3600
}
fn default_binding() -> String {
    saml_binding::HTTP_REDIRECT.to_owned()
}

impl SamlpAddon {
    /// A SAML app with defaults for everything but its entity id.
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            recipient: None,
            name_identifier_format: default_name_id_format(),
            sign_response: false,
            signature_algorithm: default_signature_algorithm(),
            digest_algorithm: default_digest_algorithm(),
            lifetime_in_seconds: default_lifetime(),
            mappings: Default::default(),
            signing_cert: None,
            logout: SamlpLogout::default(),
            binding: default_binding(),
            allow_idp_initiated: false,
        }
    }

    /// The SP's SingleLogoutService, when Single Logout with it is on.
    pub fn slo_url(&self) -> Option<&Url> {
        let cb = self.logout.callback.as_ref()?;
        self.logout.slo_enabled.unwrap_or(true).then_some(cb)
    }
}

/// Auth0's `addons`: what else a client speaks besides OpenID Connect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientAddons {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samlp: Option<SamlpAddon>,
}

/// Latch's `global_token_revocation` client field: where, and how, Latch sends the app a Global
/// Token Revocation request (the one Okta Universal Logout sends) when a user is logged out
/// everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtrTarget {
    /// The app's GTR endpoint; also the request token's `aud`.
    pub endpoint: Url,
    #[serde(default)]
    pub subject_format: GtrSubjectFormat,
}

/// How the request names the user (the GTR draft's subject identifier formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtrSubjectFormat {
    /// `{"format": "iss_sub", "iss": Latch's issuer, "sub": the user_id}`.
    #[default]
    IssSub,
    /// `{"format": "email", "email": the user's email}`.
    Email,
}

impl GtrSubjectFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IssSub => "iss_sub",
            Self::Email => "email",
        }
    }
}

/// A stored client secret: only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSecret {
    pub digest: TokenDigest,
    pub created_at: OffsetDateTime,
}

/// An application that signs users in through Latch.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: ClientId,
    pub name: String,
    pub description: Option<String>,
    pub app_type: AppType,
    pub callbacks: Vec<Url>,
    pub allowed_logout_urls: Vec<Url>,
    pub web_origins: Vec<Url>,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub signing_alg: SigningAlg,
    pub lifetimes: TokenLifetimes,
    pub oidc_logout: OidcLogout,
    pub addons: ClientAddons,
    /// Where Latch sends Global Token Revocation for this app, if anywhere.
    pub global_token_revocation: Option<GtrTarget>,
    /// Digests of the client's secrets (none for public clients).
    pub secrets: Vec<ClientSecret>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Permission for a client to get `client_credentials` tokens for an API (Auth0's client grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    pub id: String,
    pub client_id: ClientId,
    /// The API's identifier; today only the management API, `{issuer}/api/v2/`.
    pub audience: String,
    pub scope: Vec<String>,
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backchannel_logout_initiators_shapes_and_choice() {
        use LogoutInitiator as I;
        // Auth0's shapes, both ways.
        let all: BackchannelLogoutInitiators =
            serde_json::from_value(serde_json::json!({"mode": "all"})).unwrap();
        assert_eq!(all, BackchannelLogoutInitiators::All);
        assert_eq!(
            serde_json::to_value(&all).ok(),
            Some(serde_json::json!({"mode": "all"}))
        );
        let custom = BackchannelLogoutInitiators::Custom {
            selected_initiators: vec![I::RpLogout, I::PasswordChanged],
        };
        let v = serde_json::json!({"mode": "custom", "selected_initiators": ["rp-logout", "password-changed"]});
        assert_eq!(serde_json::to_value(&custom).ok(), Some(v.clone()));
        assert_eq!(
            serde_json::from_value::<BackchannelLogoutInitiators>(v).ok(),
            Some(custom.clone())
        );
        // A client stored before the member existed reads as `all`.
        let old: OidcLogout = serde_json::from_value(serde_json::json!({
            "backchannel_logout_urls": [], "backchannel_logout_session_required": true,
            "frontchannel_logout_url": null, "frontchannel_logout_session_required": false
        }))
        .unwrap();
        assert_eq!(
            old.backchannel_logout_initiators,
            BackchannelLogoutInitiators::All
        );
        // `all` allows every kind; `custom` only the selected ones.
        for i in I::SELECTABLE.into_iter().chain([I::SessionReplaced]) {
            assert!(all.allows(i));
        }
        assert!(custom.allows(I::RpLogout));
        assert!(custom.allows(I::SessionReplaced), "counted as rp-logout");
        assert!(custom.allows(I::PasswordChanged));
        for i in [
            I::IdpLogout,
            I::SessionRevoked,
            I::SessionExpired,
            I::AccountDeactivated,
            I::AccountDeleted,
        ] {
            assert!(!custom.allows(i), "{i:?}");
        }
        let none = BackchannelLogoutInitiators::Custom {
            selected_initiators: vec![],
        };
        assert!(I::SELECTABLE.into_iter().all(|i| !none.allows(i)));
    }
}
