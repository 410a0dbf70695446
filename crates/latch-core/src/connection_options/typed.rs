//! Typed views of a connection's options, for the code that uses them. Each reads the keys its
//! strategy's table defines; a value is "set" when it is a non-empty string (SAML's are trimmed
//! first, as the SAML connector always did).

use serde_json::{Map, Value};

use crate::model::{Connection, Strategy};
use crate::{SecretString, ValidationError};

/// The scopes asked of an OpenID Connect IdP when `scope` is not set.
pub const DEFAULT_SCOPE: &str = "openid profile email";

/// A string option, when set.
fn text<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str).filter(|v| !v.is_empty())
}

/// A string option, trimmed, when set.
fn trimmed<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A boolean option: `true` only when stored as `true`.
fn flag(o: &Map<String, Value>, key: &str) -> bool {
    o.get(key) == Some(&Value::Bool(true))
}

fn required(key: &str) -> ValidationError {
    ValidationError::new(format!("options.{key}"), "is required")
}

fn not_of(c: &Connection, what: &str) -> ValidationError {
    ValidationError::new(
        "strategy",
        format!("a {} connection is not {what}", c.strategy.as_str()),
    )
}

/// An OpenID Connect IdP, as an `okta` or `oidc` connection describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcOptions {
    /// The IdP's issuer, without a trailing slash: for `okta` the org's URL from `domain`
    /// ([`crate::validate::okta_domain`]); for `oidc` `issuer`, else `discovery_url` without
    /// `/.well-known/openid-configuration`.
    pub issuer: String,
    /// `discovery_url`, when set.
    pub discovery_url: Option<String>,
    /// `client_id`: Latch's client at the IdP.
    pub client_id: String,
    /// `client_secret`, when stored.
    pub client_secret: Option<SecretString>,
    /// `scope`, or [`DEFAULT_SCOPE`].
    pub scope: String,
    /// `jwks_uri`, when set: where the IdP's keys are, whatever discovery says.
    pub jwks_uri: Option<String>,
}

impl OidcOptions {
    /// Reads an `okta` or `oidc` connection. Fails, naming the option, when it has no usable
    /// issuer or no client id.
    pub fn from_connection(c: &Connection) -> Result<Self, ValidationError> {
        let o = &c.options;
        let issuer = match c.strategy {
            Strategy::Okta => {
                let domain = text(o, "domain").ok_or_else(|| required("domain"))?;
                let url = crate::validate::okta_domain("options.domain", domain)?;
                url.as_str().trim_end_matches('/').to_owned()
            }
            Strategy::Oidc => match (text(o, "issuer"), text(o, "discovery_url")) {
                (Some(i), _) => i.trim_end_matches('/').to_owned(),
                // The well-known path is the standard's, the one Latch serves too.
                (None, Some(d)) => d
                    .trim_end_matches(crate::paths::DISCOVERY)
                    .trim_end_matches('/')
                    .to_owned(),
                (None, None) => return Err(required("issuer")),
            },
            Strategy::Auth0 | Strategy::Samlp => {
                return Err(not_of(c, "an OpenID Connect connection"));
            }
        };
        Ok(Self {
            issuer,
            discovery_url: text(o, "discovery_url").map(str::to_owned),
            client_id: text(o, "client_id")
                .ok_or_else(|| required("client_id"))?
                .to_owned(),
            client_secret: c.secrets.get("client_secret").cloned(),
            scope: text(o, "scope").unwrap_or(DEFAULT_SCOPE).to_owned(),
            jwks_uri: text(o, "jwks_uri").map(str::to_owned),
        })
    }
}

/// Where a SAML connection's IdP settings come from, in the order they are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlIdp {
    /// `metadataXml`: the IdP's metadata, pasted.
    MetadataXml(String),
    /// `metadataUrl`: where the IdP's metadata is fetched.
    MetadataUrl(String),
    /// `signInEndpoint` with `signingCert` (PEM), and `signOutEndpoint` when set.
    Direct {
        sign_in: String,
        signing_cert: String,
        sign_out: Option<String>,
    },
}

/// A `samlp` connection's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlOptions {
    pub idp: SamlIdp,
    /// `entityId`: Latch's entity id at this IdP, when not the default.
    pub entity_id: Option<String>,
    /// `user_id_attribute`: the attribute holding the user's id, when not the NameID.
    pub user_id_attribute: Option<String>,
    /// `signOutEndpoint`: the IdP's SingleLogoutService, before the one in its metadata.
    pub sign_out: Option<String>,
    /// `disableSignout`: Latch never sends the IdP a LogoutRequest.
    pub disable_signout: bool,
}

impl SamlOptions {
    /// Reads a `samlp` connection. Fails, as validation does, when the IdP's settings are
    /// missing.
    pub fn from_connection(c: &Connection) -> Result<Self, ValidationError> {
        if c.strategy != Strategy::Samlp {
            return Err(not_of(c, "a SAML connection"));
        }
        let o = &c.options;
        let idp = if let Some(xml) = trimmed(o, "metadataXml") {
            SamlIdp::MetadataXml(xml.to_owned())
        } else if let Some(url) = trimmed(o, "metadataUrl") {
            SamlIdp::MetadataUrl(url.to_owned())
        } else if let (Some(sso), Some(cert)) =
            (trimmed(o, "signInEndpoint"), trimmed(o, "signingCert"))
        {
            SamlIdp::Direct {
                sign_in: sso.to_owned(),
                signing_cert: cert.to_owned(),
                sign_out: trimmed(o, "signOutEndpoint").map(str::to_owned),
            }
        } else {
            let any = super::tables::SAML_IDP;
            return Err(ValidationError::new(
                format!("options.{}", any.field),
                any.message,
            ));
        };
        Ok(Self {
            idp,
            entity_id: Self::entity_id_of(c).map(str::to_owned),
            user_id_attribute: trimmed(o, "user_id_attribute").map(str::to_owned),
            sign_out: trimmed(o, "signOutEndpoint").map(str::to_owned),
            disable_signout: flag(o, "disableSignout"),
        })
    }

    /// `entityId` alone: Latch's SP settings are shown whatever the state of the IdP's.
    pub fn entity_id_of(c: &Connection) -> Option<&str> {
        trimmed(&c.options, "entityId")
    }
}

/// `federated_logout`: a SAML app's LogoutRequest also ends the user's session at the IdP (an
/// OpenID Connect app asks per request, with `federated`).
pub fn federated_logout(c: &Connection) -> bool {
    flag(&c.options, "federated_logout")
}

/// Universal Logout (Okta's Global Token Revocation calls) on an enterprise connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UniversalLogoutOptions {
    /// `global_token_revocation_enabled`.
    pub enabled: bool,
    /// `global_token_revocation_jwt_iss`: the requests' `iss`, when not the IdP's issuer.
    pub jwt_iss: Option<String>,
    /// `global_token_revocation_jwt_sub`: the requests' `sub`, when not the client id.
    pub jwt_sub: Option<String>,
    /// `jwks_uri`: the requests' keys, when not found through discovery.
    pub jwks_uri: Option<String>,
}

impl UniversalLogoutOptions {
    /// Reads any connection (off for one that has none of these options).
    pub fn of(c: &Connection) -> Self {
        let o = &c.options;
        Self {
            enabled: flag(o, "global_token_revocation_enabled"),
            jwt_iss: text(o, "global_token_revocation_jwt_iss").map(str::to_owned),
            jwt_sub: text(o, "global_token_revocation_jwt_sub").map(str::to_owned),
            jwks_uri: text(o, "jwks_uri").map(str::to_owned),
        }
    }
}

/// A database connection's password policy (Auth0's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordPolicy {
    None,
    Low,
    Fair,
    #[default]
    Good,
    Excellent,
}

impl PasswordPolicy {
    pub const ALL: [Self; 5] = [
        Self::None,
        Self::Low,
        Self::Fair,
        Self::Good,
        Self::Excellent,
    ];
    /// The names of [`Self::ALL`], in order (the values of `passwordPolicy`).
    pub const NAMES: [&'static str; 5] = ["none", "low", "fair", "good", "excellent"];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Fair => "fair",
            Self::Good => "good",
            Self::Excellent => "excellent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The database (`auth0`) connection's options that sign-up and password changes obey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatabaseOptions {
    /// `passwordPolicy`; [`PasswordPolicy::Good`] when absent or unknown.
    pub password_policy: PasswordPolicy,
    /// `password_complexity_options.min_length`, when a number: raises the policy's minimum.
    pub min_length: Option<u64>,
}

impl DatabaseOptions {
    /// Reads the options of a database connection; never fails (what is not understood has its
    /// default).
    pub fn from_options(o: &Map<String, Value>) -> Self {
        Self {
            password_policy: o
                .get("passwordPolicy")
                .and_then(Value::as_str)
                .and_then(PasswordPolicy::parse)
                .unwrap_or_default(),
            min_length: o
                .get("password_complexity_options")
                .and_then(|c| c.get("min_length"))
                .and_then(Value::as_u64),
        }
    }
}
