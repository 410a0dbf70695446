//! Domain rules for names, URLs and connection options (checked against
//! [`crate::connection_options`]' tables), shared by the management API and the admin UI.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use url::Url;

use crate::connection_options::{self, DatabaseOptions, Kind, Need, PasswordPolicy};
use crate::model::Strategy;
use crate::net::OutboundPolicy;
use crate::{SecretString, ValidationError};

/// Connection names: 1–128 characters, ASCII letters and digits separated by single hyphens
/// (Auth0's rule), so they are safe in URL paths.
pub fn connection_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be 1-128 letters, digits and single hyphens, not starting or ending with a hyphen",
        ))
    }
}

/// Is the host a loopback address or `localhost`?
pub fn is_loopback(url: &Url) -> bool {
    crate::net::is_loopback_host(url)
}

/// Parses an app URL: absolute, `https://` (or `http://` on loopback), no fragment, no
/// credentials.
pub fn app_url(field: &str, raw: &str) -> Result<Url, ValidationError> {
    let url =
        Url::parse(raw).map_err(|e| ValidationError::new(field, format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ValidationError::new(
                field,
                "must use https (http is allowed only on loopback hosts)",
            ));
        }
        other => {
            return Err(ValidationError::new(
                field,
                format!("scheme {other} is not allowed; use https"),
            ));
        }
    }
    if url.host().is_none() {
        return Err(ValidationError::new(field, "must have a host"));
    }
    // URLs are matched exactly: a wildcard would never match what its author meant
    // (`%2A` decodes to `*` here too).
    if url.host_str().is_some_and(|h| h.contains('*')) {
        return Err(ValidationError::new(
            field,
            "must not contain a wildcard (*) in the host: URLs are matched exactly",
        ));
    }
    if url.fragment().is_some() {
        return Err(ValidationError::new(field, "must not contain a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(field, "must not contain credentials"));
    }
    Ok(url)
}

/// Parses a URL an admin or API caller supplies: an [`app_url`] whose host the outbound policy
/// accepts (an IP-literal host must not be link-local, private, unspecified…; host names are
/// checked when Latch connects).
pub fn outbound_url(
    field: &str,
    raw: &str,
    policy: &OutboundPolicy,
) -> Result<Url, ValidationError> {
    let url = app_url(field, raw)?;
    policy
        .check_url(&url)
        .map_err(|e| ValidationError::new(field, e.to_string()))?;
    Ok(url)
}

/// The Okta org's base URL from the `domain` option: a host name (`acme.okta.com`, https
/// implied) or an origin; `http://` only on loopback hosts.
pub fn okta_domain(field: &str, raw: &str) -> Result<Url, ValidationError> {
    let candidate = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let url = app_url(field, &candidate)?;
    if url.path() != "/" || url.query().is_some() {
        return Err(ValidationError::new(
            field,
            "must be a host name such as acme.okta.com, without a path",
        ));
    }
    Ok(url)
}

/// Options Latch computes and shows on a connection, ignored on input.
pub const READ_ONLY_OPTIONS: &[&str] = &[
    "sp_metadata_url",
    "sp_entity_id",
    "sp_acs_url",
    "sp_single_logout_url",
];

/// Secret connection options by key (`client_secret`).
pub type SecretOptions = BTreeMap<String, SecretString>;

/// Validates a connection's `options` for its strategy and splits out the secret ones.
///
/// `previous_secrets` are the secrets already stored (on update): a secret the new options leave
/// out is kept, so an admin can edit other options without re-entering it. URL options must pass
/// the outbound `policy`.
pub fn connection_options(
    strategy: Strategy,
    options: Map<String, Value>,
    previous_secrets: Option<&BTreeMap<String, SecretString>>,
    policy: &OutboundPolicy,
) -> Result<(Map<String, Value>, SecretOptions), ValidationError> {
    connection_option_problems(strategy, options, previous_secrets, policy).map_err(|mut all| {
        // Never empty on error; the first is what the management API answers.
        if all.is_empty() {
            ValidationError::new("options", "is invalid")
        } else {
            all.swap_remove(0)
        }
    })
}

/// [`connection_options`], reporting every problem instead of the first: at most one per option
/// (in the options' order), then every missing required option. The admin UI shows them all at
/// once; the first is the one [`connection_options`] returns. Never `Err` with an empty list.
pub fn connection_option_problems(
    strategy: Strategy,
    mut options: Map<String, Value>,
    previous_secrets: Option<&BTreeMap<String, SecretString>>,
    policy: &OutboundPolicy,
) -> Result<(Map<String, Value>, SecretOptions), Vec<ValidationError>> {
    let mut problems = Vec::new();
    let spec = connection_options::spec(strategy);
    let mut secrets = previous_secrets.cloned().unwrap_or_default();
    // Read-only values Latch adds to the options it shows (SAML SP settings) come back when an
    // admin edits and saves: they are dropped, never stored.
    for k in READ_ONLY_OPTIONS {
        options.remove(*k);
    }
    for (k, v) in &options {
        let field = format!("options.{k}");
        let Some(o) = spec.get(k) else {
            problems.push(ValidationError::new(
                field,
                format!("is not an option of the {} strategy", strategy.as_str()),
            ));
            continue;
        };
        if let Err(e) = o.kind.check(&field, v, policy) {
            problems.push(e);
        }
    }
    for o in spec.options.iter().filter(|o| o.kind == Kind::Secret) {
        if let Some(Value::String(s)) = options.remove(o.key) {
            secrets.insert(o.key.to_owned(), SecretString::new(s));
        }
    }
    let has = |k: &str| options.contains_key(k);
    if let Some(any) = spec.any_of
        && !any.sets.iter().any(|set| set.iter().all(|k| has(k)))
    {
        // A set begun but not finished names what it lacks; else the first set is asked for.
        let begun: Vec<&str> = any
            .sets
            .iter()
            .filter(|set| set.len() > 1 && set.iter().any(|k| has(k)))
            .flat_map(|set| set.iter().copied().filter(|k| !has(k)))
            .collect();
        if begun.is_empty() {
            problems.push(ValidationError::new(
                format!("options.{}", any.field),
                any.message,
            ));
        }
        for k in begun {
            problems.push(ValidationError::new(
                format!("options.{k}"),
                "is required with the other",
            ));
        }
    }
    for o in spec.options {
        let present = match o.kind {
            Kind::Secret => secrets.contains_key(o.key),
            _ => has(o.key),
        };
        let why = match o.need {
            Need::Required(why) => why,
            Need::RequiredWhen { flag, message }
                if options.get(flag) == Some(&Value::Bool(true)) =>
            {
                message
            }
            _ => continue,
        };
        if !present {
            problems.push(ValidationError::new(format!("options.{}", o.key), why));
        }
    }
    if problems.is_empty() {
        return Ok((options, secrets));
    }
    // One problem per field: an invalid value is not also reported missing.
    let mut seen = std::collections::BTreeSet::new();
    problems.retain(|p| seen.insert(p.field.clone()));
    Err(problems)
}

/// Checks `password` against the database connection's policy (Auth0's levels:
/// `none`, `low`, `fair`, `good` (the default), `excellent`; `password_complexity_options.min_length`
/// raises the minimum length).
pub fn password_policy(
    options: &Map<String, Value>,
    password: &str,
) -> Result<(), ValidationError> {
    let db = DatabaseOptions::from_options(options);
    let policy = db.password_policy;
    let (min, classes, no_repeats) = match policy {
        PasswordPolicy::None => (1, 0, false),
        PasswordPolicy::Low => (6, 0, false),
        PasswordPolicy::Fair | PasswordPolicy::Good => (8, 3, false),
        PasswordPolicy::Excellent => (10, 3, true),
    };
    let min = db.min_length.map_or(min, |m| (m as usize).max(min));
    let field = "password";
    if password.chars().count() < min {
        return Err(ValidationError::new(
            field,
            format!("must be at least {min} characters long"),
        ));
    }
    if password.len() > 256 {
        return Err(ValidationError::new(
            field,
            "must be at most 256 bytes long",
        ));
    }
    let kinds = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    // `fair` wants lower, upper and digits; `good` and `excellent` any three of the four kinds.
    let ok = match policy {
        PasswordPolicy::Fair => kinds[0] && kinds[1] && kinds[2],
        _ => kinds.iter().filter(|k| **k).count() >= classes,
    };
    if !ok {
        return Err(ValidationError::new(
            field,
            "must mix lower-case letters, upper-case letters, digits and special characters (three of the four)",
        ));
    }
    if no_repeats
        && password
            .chars()
            .collect::<Vec<_>>()
            .windows(3)
            .any(|w| w[0] == w[1] && w[1] == w[2])
    {
        return Err(ValidationError::new(
            field,
            "must not repeat a character more than twice in a row",
        ));
    }
    Ok(())
}

/// User attributes a SAML app's `mappings` may name.
pub const SAML_MAPPABLE: [&str; 8] = [
    "user_id",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
];

/// Checks a SAML app's addon against its client's `callbacks`: the entity id, the ACS
/// (`recipient`, one of `callbacks`, or a first callback to default to), the NameID format,
/// SHA-2 algorithms only, the lifetime, the mappings, the SP certificate and the logout settings.
pub fn samlp_addon(
    addon: &crate::model::SamlpAddon,
    callbacks: &[Url],
) -> Result<(), ValidationError> {
    use crate::model::{name_id_format, saml_binding};
    let f = |name: &str| format!("addons.samlp.{name}");
    if addon.audience.trim().is_empty() || addon.audience.len() > 1024 {
        return Err(ValidationError::new(
            f("audience"),
            "the SP's entity id is required (1-1024 characters)",
        ));
    }
    match &addon.recipient {
        Some(r) if !callbacks.contains(r) => {
            return Err(ValidationError::new(
                f("recipient"),
                "must be one of the application's callbacks",
            ));
        }
        None if callbacks.is_empty() => {
            return Err(ValidationError::new(
                f("recipient"),
                "a SAML app needs its AssertionConsumerService URL in callbacks",
            ));
        }
        _ => {}
    }
    if !name_id_format::ALL.contains(&addon.name_identifier_format.as_str()) {
        return Err(ValidationError::new(
            f("nameIdentifierFormat"),
            format!("must be one of {}", name_id_format::ALL.join(", ")),
        ));
    }
    if addon.signature_algorithm != "rsa-sha256" {
        return Err(ValidationError::new(
            f("signatureAlgorithm"),
            "must be rsa-sha256 (SHA-1 signatures are not issued)",
        ));
    }
    if addon.digest_algorithm != "sha256" {
        return Err(ValidationError::new(
            f("digestAlgorithm"),
            "must be sha256 (SHA-1 digests are not issued)",
        ));
    }
    if !(60..=86_400).contains(&addon.lifetime_in_seconds) {
        return Err(ValidationError::new(
            f("lifetimeInSeconds"),
            "must be between 60 and 86400 seconds",
        ));
    }
    for (from, to) in &addon.mappings {
        if !SAML_MAPPABLE.contains(&from.as_str()) {
            return Err(ValidationError::new(
                f("mappings"),
                format!(
                    "{from} is not a user attribute; use one of {}",
                    SAML_MAPPABLE.join(", ")
                ),
            ));
        }
        if to.trim().is_empty() || to.len() > 256 || to.chars().any(char::is_control) {
            return Err(ValidationError::new(
                f("mappings"),
                format!(
                    "the SAML attribute name for {from} must be 1-256 characters, none of them control characters"
                ),
            ));
        }
    }
    if let Some(cert) = &addon.signing_cert
        && !looks_like_certificate(cert)
    {
        return Err(ValidationError::new(
            f("signingCert"),
            "must be the SP's X.509 certificate as PEM (or base64 DER)",
        ));
    }
    if let Some(cb) = &addon.logout.callback {
        app_url(&f("logout.callback"), cb.as_str())?;
    }
    if ![saml_binding::HTTP_REDIRECT, saml_binding::HTTP_POST].contains(&addon.binding.as_str()) {
        return Err(ValidationError::new(
            f("binding"),
            format!(
                "must be {} or {}",
                saml_binding::HTTP_REDIRECT,
                saml_binding::HTTP_POST
            ),
        ));
    }
    Ok(())
}

/// PEM, base64 DER, or base64 of a PEM (Auth0's forms) of something shaped like a certificate
/// (a DER SEQUENCE); the SAML layer parses it for real when it verifies.
fn looks_like_certificate(text: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let body = |t: &str| -> Option<Vec<u8>> {
        let t = t.trim();
        let inner = if let Some(rest) = t.strip_prefix("-----BEGIN CERTIFICATE-----") {
            rest.split("-----END CERTIFICATE-----").next()?
        } else {
            t
        };
        let compact: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
        STANDARD.decode(compact).ok()
    };
    let Some(mut der) = body(text) else {
        return false;
    };
    if let Ok(s) = std::str::from_utf8(&der)
        && s.trim_start().starts_with("-----BEGIN")
    {
        match body(s) {
            Some(d) => der = d,
            None => return false,
        }
    }
    der.first() == Some(&0x30) && der.len() >= 64
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_policies() {
        let good = Map::new();
        assert!(password_policy(&good, "Tr0ub4dor&3x").is_ok());
        assert_eq!(
            password_policy(&good, "short1A").unwrap_err().field,
            "password"
        );
        assert!(password_policy(&good, "alllowercase1").is_err());
        let low = opts(serde_json::json!({"passwordPolicy": "low"}));
        assert!(password_policy(&low, "simple").is_ok());
        let long = opts(
            serde_json::json!({"passwordPolicy": "none", "password_complexity_options": {"min_length": 12}}),
        );
        assert!(password_policy(&long, "elevenchars").is_err());
        let excellent = opts(serde_json::json!({"passwordPolicy": "excellent"}));
        assert!(password_policy(&excellent, "Aaa1111bbb!").is_err());
        assert!(password_policy(&excellent, "Ab1!Ab1!Ab1!").is_ok());
    }

    use super::*;

    fn opts(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn okta_options() {
        let (o, s) = connection_options(
            Strategy::Okta,
            opts(serde_json::json!({"domain": "acme.okta.com", "client_id": "0oa1", "client_secret": "xyz"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap();
        assert!(!o.contains_key("client_secret"));
        assert_eq!(s["client_secret"].expose(), "xyz");
        // Kept on update when left out.
        let (_, s2) = connection_options(
            Strategy::Okta,
            opts(serde_json::json!({"domain": "http://127.0.0.1:4000", "client_id": "0oa1"})),
            Some(&s),
            &OutboundPolicy::default(),
        )
        .unwrap();
        assert_eq!(s2["client_secret"].expose(), "xyz");
        let e = connection_options(
            Strategy::Okta,
            opts(serde_json::json!({"client_id": "a", "client_secret": "b"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.domain");
        let e = connection_options(
            Strategy::Okta,
            opts(serde_json::json!({"domain": "http://acme.okta.com", "client_id": "a", "client_secret": "b"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.domain");
        let e = connection_options(
            Strategy::Okta,
            opts(serde_json::json!({"domain": "acme.okta.com/oauth2", "client_id": "a", "client_secret": "b"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.domain");
    }

    #[test]
    fn every_problem_at_once_the_first_as_before() {
        let none = OutboundPolicy::default();
        let body = opts(serde_json::json!({
            "domain": "not a domain",
            "client_secret": "",
            "domain_aliases": ["ok.com", "bad domain"],
        }));
        let all =
            connection_option_problems(Strategy::Okta, body.clone(), None, &none).unwrap_err();
        let mut fields: Vec<&str> = all.iter().map(|e| e.field.as_str()).collect();
        // Every option at fault, each once (the empty secret is not also "required"), in the
        // options' order, then the missing ones.
        assert_eq!(fields.pop(), Some("options.client_id"));
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "options.client_secret",
                "options.domain",
                "options.domain_aliases[1]"
            ]
        );
        // The single-error form answers the first of them.
        assert_eq!(
            connection_options(Strategy::Okta, body, None, &none).unwrap_err(),
            all[0]
        );
        let saml = connection_option_problems(
            Strategy::Samlp,
            opts(serde_json::json!({"signInEndpoint": "https://idp.example.com/sso", "global_token_revocation_enabled": true})),
            None,
            &none,
        )
        .unwrap_err();
        let fields: Vec<&str> = saml.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "options.signingCert",
                "options.global_token_revocation_jwt_iss",
                "options.global_token_revocation_jwt_sub"
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_options() {
        let e = connection_options(
            Strategy::Auth0,
            opts(serde_json::json!({"domian": "x"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.domian");
        let e = connection_options(
            Strategy::Auth0,
            opts(serde_json::json!({"disable_signup": "yes"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.disable_signup");
        let e = connection_options(
            Strategy::Oidc,
            opts(serde_json::json!({"issuer": "https://idp.example.com", "client_id": "a", "client_secret": "b", "domain_aliases": ["ok.com", "not a domain"]})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.domain_aliases[1]");
    }

    #[test]
    fn samlp_options() {
        assert!(
            connection_options(
                Strategy::Samlp,
                opts(serde_json::json!({"metadataUrl": "https://idp.example.com/md"})),
                None,
                &OutboundPolicy::default(),
            )
            .is_ok()
        );
        let e = connection_options(
            Strategy::Samlp,
            opts(serde_json::json!({"signInEndpoint": "https://idp.example.com/sso"})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert!(e.field.starts_with("options."));
        let e = connection_options(
            Strategy::Samlp,
            opts(serde_json::json!({"metadataUrl": "https://idp.example.com/md", "global_token_revocation_enabled": true})),
            None,
            &OutboundPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e.field, "options.global_token_revocation_jwt_iss");
    }

    #[test]
    fn refused_addresses_name_their_field() {
        let none = OutboundPolicy::default();
        let opts_with = |k: &str, v: &str| {
            let mut o = opts(
                serde_json::json!({"client_id": "a", "client_secret": "b", "issuer": "https://idp.example.com"}),
            );
            o.insert(k.into(), Value::String(v.into()));
            o
        };
        for (k, v) in [
            ("issuer", "https://169.254.169.254/"),
            (
                "discovery_url",
                "https://10.0.0.5:8443/.well-known/openid-configuration",
            ),
            ("jwks_uri", "https://[::ffff:169.254.169.254]/keys"),
            ("jwks_uri", "https://0.0.0.0/keys"),
        ] {
            let e = connection_options(Strategy::Oidc, opts_with(k, v), None, &none).unwrap_err();
            assert_eq!(e.field, format!("options.{k}"), "{v}");
        }
        let okta = opts(
            serde_json::json!({"domain": "100.64.0.1", "client_id": "a", "client_secret": "b"}),
        );
        let e = connection_options(Strategy::Okta, okta.clone(), None, &none).unwrap_err();
        assert_eq!(e.field, "options.domain");
        // Named by the operator's allow-list: accepted.
        let allow = OutboundPolicy::new(vec!["100.64.0.0/10".parse().unwrap()]);
        assert!(connection_options(Strategy::Okta, okta, None, &allow).is_ok());
        assert!(outbound_url("u", "http://127.0.0.1:3000/cb", &none).is_ok());
        assert_eq!(
            outbound_url("callbacks[0]", "https://192.168.1.10/cb", &none)
                .unwrap_err()
                .field,
            "callbacks[0]"
        );
    }

    #[test]
    fn connection_names() {
        for good in ["database", "acme-okta", "a", "A1-b2"] {
            assert!(connection_name("name", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(connection_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_urls() {
        assert!(app_url("u", "https://app.example.com/cb").is_ok());
        assert!(app_url("u", "http://127.0.0.1:3000/cb").is_ok());
        assert!(app_url("u", "http://localhost/cb").is_ok());
        assert!(app_url("u", "http://[::1]:80/cb").is_ok());
        let e = app_url("callbacks[0]", "http://app.example.com/cb").unwrap_err();
        assert_eq!(e.field, "callbacks[0]");
        assert!(app_url("u", "javascript:alert(1)").is_err());
        assert!(app_url("u", "https://app.example.com/cb#x").is_err());
        assert!(app_url("u", "https://user:pw@app.example.com/").is_err());
        assert!(app_url("u", "/relative").is_err());
        for wild in [
            "https://*.example.com/cb",
            "https://%2A.example.com/cb",
            "https://app.*.example.com/",
        ] {
            let e = app_url("callbacks[1]", wild).unwrap_err();
            assert_eq!(e.field, "callbacks[1]", "{wild}");
        }
        // A `*` in the path or query is no wildcard: it is matched as written.
        assert!(app_url("u", "https://app.example.com/cb/*?x=*").is_ok());
    }
}
