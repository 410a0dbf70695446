//! Latch's own paths, defined once: the routes its endpoint crates mount, and the URLs an admin
//! gives an IdP (or an app), built from Latch's issuer. Auth0's paths where Auth0 has one.
//!
//! Builders take the issuer without a trailing slash and a connection name as stored: names are
//! URL-safe ([`crate::validate::connection_name`]), so they go in as they are. The admin UI
//! builds its templates by passing the placeholder `{name}`.

/// The password form posts here (`latch-login`).
pub const LOGIN: &str = "/login";
/// Where upstream IdPs send the browser back; `POST` (with `?connection={name}`) is the SAML
/// AssertionConsumerService (`latch-login`).
pub const CALLBACK: &str = "/login/callback";
/// Upstream OpenID Connect Back-Channel Logout, with `{connection_name}` (`latch-federation`).
pub const BACKCHANNEL_LOGOUT: &str = "/login/backchannel-logout/{connection_name}";
/// Latch's SAML SP metadata, with `?connection={name}` (`latch-federation`).
pub const SP_METADATA: &str = "/samlp/metadata";
/// Logout with an upstream IdP, `?connection={name}`: a `samlp` connection's SingleLogoutService
/// (the IdP's LogoutRequests and LogoutResponses), and where an `okta`/`oidc` IdP sends the
/// browser back after a federated logout (`post_logout_redirect_uri`).
pub const UPSTREAM_LOGOUT: &str = "/logout";
/// Global Token Revocation (Okta Universal Logout), with `{connection_name}` (`latch-gtr`).
pub const GLOBAL_TOKEN_REVOCATION: &str =
    "/oauth/global-token-revocation/connection/{connection_name}";

/// OpenID Connect discovery (`latch-oidc`).
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// The JWKS Latch signs with (`latch-oidc`).
pub const JWKS: &str = "/.well-known/jwks.json";
/// The authorization endpoint (`latch-oidc`).
pub const AUTHORIZE: &str = "/authorize";
/// The token endpoint (`latch-oidc`).
pub const TOKEN: &str = "/oauth/token";
/// The UserInfo endpoint (`latch-oidc`).
pub const USERINFO: &str = "/userinfo";
/// Token revocation, RFC 7009 (`latch-oidc`).
pub const REVOKE: &str = "/oauth/revoke";
/// Token introspection, RFC 7662 (`latch-oidc`).
pub const INTROSPECT: &str = "/oauth/introspect";
/// RP-Initiated Logout (`latch-oidc`).
pub const OIDC_LOGOUT: &str = "/oidc/logout";

/// Where the admin UI receives its authorization code (`latch-admin`).
pub const ADMIN_CALLBACK: &str = "/admin/callback";

/// The placeholder for the connection's name in [`BACKCHANNEL_LOGOUT`] and
/// [`GLOBAL_TOKEN_REVOCATION`].
const NAME: &str = "{connection_name}";

/// `{issuer}/login/callback`: the sign-in redirect URI registered at OpenID Connect IdPs.
pub fn callback_url(issuer: &str) -> String {
    format!("{issuer}{CALLBACK}")
}

/// `{issuer}/login/callback?connection={connection}`: a SAML connection's ACS.
pub fn acs_url(issuer: &str, connection: &str) -> String {
    format!("{issuer}{CALLBACK}?connection={connection}")
}

/// `{issuer}/samlp/metadata?connection={connection}`: Latch's SP metadata for a SAML connection.
pub fn sp_metadata_url(issuer: &str, connection: &str) -> String {
    format!("{issuer}{SP_METADATA}?connection={connection}")
}

/// `{issuer}/logout?connection={connection}`: a SAML connection's SingleLogoutService, and the
/// `federated_logout_return_url` of an `okta` or `oidc` connection.
pub fn upstream_logout_url(issuer: &str, connection: &str) -> String {
    format!("{issuer}{UPSTREAM_LOGOUT}?connection={connection}")
}

/// `{issuer}/login/backchannel-logout/{connection}`: where an upstream IdP sends back-channel
/// logout tokens for a connection.
pub fn backchannel_logout_url(issuer: &str, connection: &str) -> String {
    format!("{issuer}{}", BACKCHANNEL_LOGOUT.replace(NAME, connection))
}

/// `{issuer}/oauth/global-token-revocation/connection/{connection}`: a connection's GTR endpoint,
/// also the `aud` its request tokens must carry.
pub fn global_token_revocation_url(issuer: &str, connection: &str) -> String {
    format!(
        "{issuer}{}",
        GLOBAL_TOKEN_REVOCATION.replace(NAME, connection)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_the_issuer() {
        let i = "https://latch.example.com:8443";
        assert_eq!(
            callback_url(i),
            "https://latch.example.com:8443/login/callback"
        );
        assert_eq!(
            acs_url(i, "acme"),
            "https://latch.example.com:8443/login/callback?connection=acme"
        );
        assert_eq!(
            sp_metadata_url(i, "acme"),
            "https://latch.example.com:8443/samlp/metadata?connection=acme"
        );
        assert_eq!(
            backchannel_logout_url(i, "acme"),
            "https://latch.example.com:8443/login/backchannel-logout/acme"
        );
        assert_eq!(
            global_token_revocation_url(i, "{name}"),
            "https://latch.example.com:8443/oauth/global-token-revocation/connection/{name}"
        );
    }
}
