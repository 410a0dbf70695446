//! A connection's options, typed once per strategy: one table per [`Strategy`] ([`spec`]) says
//! what each option is (its [`Kind`]), how the admin UI's form shows it (label, help,
//! [`FormSection`]) and when it is required ([`Need`]). [`crate::validate`] checks options
//! against it, the admin UI builds its fields from it, and connectors read a connection through
//! the typed structs ([`OidcOptions`], [`SamlOptions`], [`DatabaseOptions`],
//! [`UniversalLogoutOptions`]) instead of looking keys up.

mod tables;
mod typed;

use serde_json::Value;

use crate::ValidationError;
use crate::model::Strategy;
use crate::net::OutboundPolicy;

pub use typed::{
    DEFAULT_SCOPE, DatabaseOptions, OidcOptions, PasswordPolicy, SamlIdp, SamlOptions,
    UniversalLogoutOptions, federated_logout,
};

/// The kind of value an option holds, and how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A non-empty string.
    Str,
    /// An identifier compared as written (an issuer such as `https://acme.okta.com`): a
    /// non-empty string. It is not checked as a URL when saved; when GTR fetches the issuer's
    /// discovery document from it (no `jwks_uri` given), the outbound policy applies at connect
    /// time, as for every fetch.
    Issuer,
    /// `true` or `false`.
    Bool,
    /// An upstream URL: https, or http on loopback; an address the outbound policy accepts.
    Url,
    /// A list of domain names.
    Domains,
    /// Okta domain: a host name or an origin.
    OktaDomain,
    /// A write-only secret (a non-empty string), stored apart and never shown.
    Secret,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `{ "min_length": 1..=128 }`.
    Complexity,
    /// A certificate in PEM (a non-empty string; parsed when used).
    Pem,
    /// An XML document (a non-empty string; parsed when used).
    Xml,
}

/// Where an option appears on the admin UI's connection form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormSection {
    /// The strategy's own section (the IdP, or the database's policy).
    Idp,
    /// Home realm discovery (which email domains go to the connection).
    HomeRealm,
    /// Universal Logout (Okta's calls to the GTR endpoint).
    UniversalLogout,
    /// Single Logout with the IdP (federated logout, the IdP's SingleLogoutService).
    SingleLogout,
}

/// When an option must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Optional,
    /// Always; `message` is the problem reported when it is missing.
    Required(&'static str),
    /// When the boolean option `flag` is `true`.
    RequiredWhen {
        flag: &'static str,
        message: &'static str,
    },
}

/// What an absent option means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing (or a value computed from other options, which the help text names).
    None,
    Text(&'static str),
    Flag(bool),
}

/// One option of a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    /// The key in `options`.
    pub key: &'static str,
    pub kind: Kind,
    /// The form's label (empty when not on the form).
    pub label: &'static str,
    /// The form's help text (may be empty).
    pub help: &'static str,
    /// Where the form shows it; `None`: set through the API only.
    pub form: Option<FormSection>,
    pub need: Need,
    pub fallback: Fallback,
}

impl OptionSpec {
    /// An optional option set through the API only.
    const fn api(key: &'static str, kind: Kind) -> Self {
        Self {
            key,
            kind,
            label: "",
            help: "",
            form: None,
            need: Need::Optional,
            fallback: Fallback::None,
        }
    }

    /// Shown in `section` of the form with `label`.
    const fn form(mut self, section: FormSection, label: &'static str) -> Self {
        self.form = Some(section);
        self.label = label;
        self
    }

    const fn help(mut self, help: &'static str) -> Self {
        self.help = help;
        self
    }

    const fn need(mut self, need: Need) -> Self {
        self.need = need;
        self
    }

    const fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }
}

/// Sets of options of which at least one must be present in full (`oidc`: an issuer; `samlp`:
/// where the IdP's settings come from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyOf {
    /// Each set is enough on its own.
    pub sets: &'static [&'static [&'static str]],
    /// The option named when none is there.
    pub field: &'static str,
    pub message: &'static str,
}

/// A strategy's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategySpec {
    /// Every option the strategy knows, in the form's order.
    pub options: &'static [OptionSpec],
    pub any_of: Option<AnyOf>,
}

impl StrategySpec {
    /// The option `key`, if the strategy knows it.
    pub fn get(&self, key: &str) -> Option<&'static OptionSpec> {
        self.options.iter().find(|o| o.key == key)
    }

    /// The options the form shows in `section`, in order.
    pub fn in_form(&self, section: FormSection) -> impl Iterator<Item = &'static OptionSpec> {
        self.options.iter().filter(move |o| o.form == Some(section))
    }
}

/// The table of `strategy`'s options.
pub fn spec(strategy: Strategy) -> &'static StrategySpec {
    match strategy {
        Strategy::Auth0 => &tables::AUTH0,
        Strategy::Okta => &tables::OKTA,
        Strategy::Oidc => &tables::OIDC,
        Strategy::Samlp => &tables::SAMLP,
    }
}

impl Kind {
    /// Checks `v` (the value of `field`); URLs must pass the outbound `policy`.
    pub fn check(
        self,
        field: &str,
        v: &Value,
        policy: &OutboundPolicy,
    ) -> Result<(), ValidationError> {
        let bad = |m: &str| Err(ValidationError::new(field, m));
        match self {
            Kind::Str | Kind::Issuer | Kind::Secret | Kind::Pem | Kind::Xml => match v.as_str() {
                Some(s) if !s.trim().is_empty() => Ok(()),
                _ => bad("must be a non-empty string"),
            },
            Kind::Bool => match v {
                Value::Bool(_) => Ok(()),
                _ => bad("must be true or false"),
            },
            Kind::Url => match v.as_str() {
                Some(s) => crate::validate::outbound_url(field, s, policy).map(|_| ()),
                None => bad("must be a URL string"),
            },
            Kind::OneOf(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => Ok(()),
                _ => Err(ValidationError::new(
                    field,
                    format!("must be one of: {}", allowed.join(", ")),
                )),
            },
            Kind::Domains => {
                let Some(list) = v.as_array() else {
                    return bad("must be a list of domain names");
                };
                for (i, d) in list.iter().enumerate() {
                    if !d.as_str().is_some_and(is_domain) {
                        return Err(ValidationError::new(
                            format!("{field}[{i}]"),
                            "must be a domain name",
                        ));
                    }
                }
                Ok(())
            }
            Kind::OktaDomain => match v.as_str() {
                Some(s) => {
                    let url = crate::validate::okta_domain(field, s)?;
                    policy
                        .check_url(&url)
                        .map_err(|e| ValidationError::new(field, e.to_string()))
                }
                None => bad("must be a host name such as acme.okta.com"),
            },
            Kind::Complexity => {
                let Some(obj) = v.as_object() else {
                    return bad("must be an object");
                };
                for (k, v) in obj {
                    match (k.as_str(), v.as_u64()) {
                        ("min_length", Some(1..=128)) => {}
                        ("min_length", _) => {
                            return Err(ValidationError::new(
                                format!("{field}.min_length"),
                                "must be a number from 1 to 128",
                            ));
                        }
                        _ => {
                            return Err(ValidationError::new(
                                format!("{field}.{k}"),
                                "is not a known option",
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// A domain name: dot-separated labels of 1–63 letters, digits and hyphens, 253 at most.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests;
