//! The four tables: every option of each strategy, in the admin UI form's order.

use super::FormSection::{HomeRealm, Idp, SingleLogout, UniversalLogout};
use super::typed::{DEFAULT_SCOPE, PasswordPolicy};
use super::{AnyOf, Fallback, Kind, Need, OptionSpec as O, StrategySpec};

const REQUIRED: Need = Need::Required("is required");
const SECRET_HELP: &str = "The client secret the identity provider issued to Latch.";

// Shared by `okta` and `oidc`.
const CLIENT_ID: O = O::api("client_id", Kind::Str)
    .form(Idp, "Client ID")
    .need(REQUIRED);
const SCOPE: O = O::api("scope", Kind::Str)
    .form(Idp, "Scopes")
    .help("Default: openid profile email.")
    .fallback(Fallback::Text(DEFAULT_SCOPE));

// Every enterprise strategy: Universal Logout and home realm discovery.
const UL_ENABLED: O = O::api("global_token_revocation_enabled", Kind::Bool)
    .form(UniversalLogout, "Enable Universal Logout");
const UL_ISS: &str = "global_token_revocation_jwt_iss";
const UL_SUB: &str = "global_token_revocation_jwt_sub";
// Every enterprise strategy: a SAML app's LogoutRequest also ends the upstream session.
const FEDERATED_LOGOUT: O = O::api("federated_logout", Kind::Bool)
    .form(
        SingleLogout,
        "Sign out of the IdP when a SAML app signs out",
    )
    .help("OpenID Connect apps ask for it with the federated parameter of /oidc/logout.");
const DOMAIN_ALIASES: O = O::api("domain_aliases", Kind::Domains)
    .form(HomeRealm, "Email domains")
    .help("Comma-separated, e.g. acme.com, acme.io.");

// `okta` and `oidc`: Okta's issuer is the IdP's own and the app instance is the client, so the
// form asks only for an app instance ID that differs.
const OIDC_UL_ISS: O = O::api(UL_ISS, Kind::Issuer);
const OIDC_UL_SUB: O = O::api(UL_SUB, Kind::Str)
    .form(UniversalLogout, "App instance ID")
    .help("The sub Okta puts in its revocation requests. Default: the client ID.");
const OIDC_JWKS_URI: O = O::api("jwks_uri", Kind::Url);

pub(super) static AUTH0: StrategySpec = StrategySpec {
    options: &[
        O::api("passwordPolicy", Kind::OneOf(&PasswordPolicy::NAMES))
            .form(Idp, "Password policy")
            .fallback(Fallback::Text(PasswordPolicy::Good.as_str())),
        O::api("password_complexity_options", Kind::Complexity),
        // Auth0's default: on.
        O::api("brute_force_protection", Kind::Bool)
            .form(Idp, "Brute-force protection")
            .fallback(Fallback::Flag(true)),
        O::api("disable_signup", Kind::Bool).form(Idp, "Disable sign-ups"),
    ],
    any_of: None,
};

pub(super) static OKTA: StrategySpec = StrategySpec {
    options: &[
        O::api("domain", Kind::OktaDomain)
            .form(Idp, "Okta domain")
            .help("Your Okta org, e.g. acme.okta.com.")
            .need(Need::Required(
                "is required: the Okta org's domain, e.g. acme.okta.com",
            )),
        CLIENT_ID,
        O::api("client_secret", Kind::Secret)
            .form(Idp, "Client secret")
            .help(SECRET_HELP)
            .need(REQUIRED),
        SCOPE,
        UL_ENABLED,
        OIDC_UL_ISS,
        OIDC_UL_SUB,
        DOMAIN_ALIASES,
        OIDC_JWKS_URI,
        FEDERATED_LOGOUT,
    ],
    any_of: None,
};

pub(super) static OIDC: StrategySpec = StrategySpec {
    options: &[
        O::api("discovery_url", Kind::Url),
        O::api("issuer", Kind::Url)
            .form(Idp, "Issuer URL")
            .help("Its discovery document is at {issuer}/.well-known/openid-configuration."),
        CLIENT_ID,
        O::api("client_secret", Kind::Secret)
            .form(Idp, "Client secret")
            .help(SECRET_HELP)
            .need(Need::Required("is required for the back_channel type")),
        SCOPE,
        O::api("type", Kind::OneOf(&["back_channel"])),
        UL_ENABLED,
        OIDC_UL_ISS,
        OIDC_UL_SUB,
        DOMAIN_ALIASES,
        OIDC_JWKS_URI,
        FEDERATED_LOGOUT,
    ],
    any_of: Some(AnyOf {
        sets: &[&["discovery_url"], &["issuer"]],
        field: "discovery_url",
        message: "discovery_url or issuer is required",
    }),
};

/// SAML's Universal Logout needs Okta's issuer and app instance: the IdP is not Okta's OIDC.
const SAML_UL: Need = Need::RequiredWhen {
    flag: "global_token_revocation_enabled",
    message: "is required for Universal Logout on a SAML connection",
};

/// Where a SAML IdP's settings come from.
pub(super) const SAML_IDP: AnyOf = AnyOf {
    sets: &[
        &["metadataUrl"],
        &["metadataXml"],
        &["signInEndpoint", "signingCert"],
    ],
    field: "metadataUrl",
    message: "metadataUrl, metadataXml, or signInEndpoint with signingCert is required",
};

pub(super) static SAMLP: StrategySpec = StrategySpec {
    options: &[
        O::api("metadataUrl", Kind::Url)
            .form(Idp, "IdP metadata URL")
            .help("Or paste the metadata below, or give the sign-in URL and certificate."),
        O::api("metadataXml", Kind::Xml).form(Idp, "IdP metadata XML"),
        O::api("signInEndpoint", Kind::Url).form(Idp, "Sign-in URL (SSO, HTTP-Redirect)"),
        O::api("signingCert", Kind::Pem).form(Idp, "Signing certificate (PEM)"),
        O::api("entityId", Kind::Str)
            .form(Idp, "Latch's entity ID (optional)")
            .help("Default: urn:latch:{host}:{connection}."),
        O::api("signOutEndpoint", Kind::Url)
            .form(
                SingleLogout,
                "IdP logout URL (SingleLogoutService, optional)",
            )
            .help("Default: the one in the IdP's metadata."),
        O::api("disableSignout", Kind::Bool)
            .form(SingleLogout, "Never send logout requests to the IdP"),
        FEDERATED_LOGOUT,
        O::api("user_id_attribute", Kind::Str)
            .form(Idp, "User ID attribute (optional)")
            .help("Default: the NameID."),
        UL_ENABLED,
        O::api(UL_ISS, Kind::Issuer)
            .form(UniversalLogout, "Issuer (your Okta org URL)")
            .help("The iss of Okta's revocation requests, e.g. https://acme.okta.com.")
            .need(SAML_UL),
        O::api(UL_SUB, Kind::Str)
            .form(UniversalLogout, "App instance ID")
            .help("The sub Okta puts in its revocation requests: the app's instance id in Okta.")
            .need(SAML_UL),
        DOMAIN_ALIASES,
        O::api("jwks_uri", Kind::Url)
            .form(UniversalLogout, "JWKS URL (optional)")
            .help("Default: the one the issuer's discovery document names."),
    ],
    any_of: Some(SAML_IDP),
};
