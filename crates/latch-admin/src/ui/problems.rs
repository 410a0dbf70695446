//! Form errors: every problem at once, in an admin's words (the field's label, never an API path
//! such as `options.domain`), each on its field.
//!
//! The API answers one error (Auth0's shape). A form posts through the API's own handler first,
//! so what it refuses is what the form shows; when it refuses, the form also asks the same
//! validation for every other problem (`api::*::ui_ops::problems`) and shows them together.

use latch_http::ApiError;

use super::Section;

/// One problem, for the summary above the form.
pub(crate) struct Problem {
    /// The element to go to (`f-domain`); empty when no field is at fault.
    pub target: String,
    pub message: String,
}

/// The errors to show: `first` (what the API answered), then the others `more` found, one per
/// field.
pub(crate) fn merge(first: ApiError, more: Vec<ApiError>) -> Vec<ApiError> {
    let mut out = vec![first];
    for e in more {
        let same = |o: &ApiError| match (&o.field, &e.field) {
            (Some(a), Some(b)) => a == b,
            (None, None) => o.message == e.message,
            _ => false,
        };
        if !out.iter().any(same) {
            out.push(e);
        }
    }
    out
}

/// API field names the form shows under another name.
const ALIASES: [(&str, &str); 2] = [
    ("discovery_url", "issuer"),
    ("backchannel_logout_urls", "backchannel_logout_url"),
];

/// The form field an API field names: `options.domain` → `domain`, `callbacks[1]` →
/// `callbacks`, `oidc_logout.backchannel_logout_urls` → `backchannel_logout_url`.
fn key_of(field: &str) -> &str {
    let key = field.split('[').next().unwrap_or(field);
    let key = key.rsplit('.').next().unwrap_or(key);
    ALIASES
        .iter()
        .find(|(api, _)| *api == key)
        .map_or(key, |(_, form)| form)
}

/// Puts each error on the field it names (one per field) and returns every problem in order,
/// for the summary.
pub(crate) fn place(sections: &mut [Section], errors: &[ApiError]) -> Vec<Problem> {
    let mut out = Vec::new();
    for e in errors {
        let field = e.field.as_deref().unwrap_or_default();
        let key = key_of(field);
        let target = sections
            .iter_mut()
            .flat_map(|s| s.fields.iter_mut())
            .find(|f| !key.is_empty() && f.name == key);
        match target {
            Some(f) if f.error.is_none() => {
                let message = words(&f.label, e);
                f.error = Some(message.clone());
                out.push(Problem {
                    target: format!("f-{}", f.name),
                    message,
                });
            }
            Some(_) => {}
            None => out.push(Problem {
                target: String::new(),
                message: words("", e),
            }),
        }
    }
    out
}

/// API wording → an admin's (whole messages, or the part after the field).
const REWORDED: [(&str, &str); 10] = [
    ("discovery_url or issuer is required", "is required"),
    (
        "metadataUrl, metadataXml, or signInEndpoint with signingCert is required",
        "is required, or paste the IdP metadata XML, or give the sign-in URL and the signing certificate",
    ),
    (
        "is required with the other",
        "is required: give both the sign-in URL and the signing certificate",
    ),
    ("is required for the back_channel type", "is required"),
    (
        "spa and native clients are public and use none; regular_web and non_interactive clients use client_secret_basic or client_secret_post",
        "must be None (public client) for single-page and native applications, and a client secret for the others",
    ),
    (
        "a public client cannot use client_credentials",
        "cannot include client credentials for a single-page or native application",
    ),
    (
        "grant_types must name at least one grant",
        "must include at least one grant type",
    ),
    (
        "password: this user has no database identity",
        "can be set only for users of a database connection",
    ),
    (
        "the SP's entity id is required (1-1024 characters)",
        "is required: the service provider's entity ID (1-1024 characters)",
    ),
    (
        "a SAML app needs its AssertionConsumerService URL in callbacks",
        "is required: add the service provider's AssertionConsumerService URL to the allowed callback URLs",
    ),
];

/// Identifiers that may remain in a message, in words.
const TERMS: [(&str, &str); 8] = [
    ("metadataUrl", "IdP metadata URL"),
    ("metadataXml", "IdP metadata XML"),
    ("signInEndpoint", "sign-in URL"),
    ("signingCert", "signing certificate"),
    ("oidc_logout.", ""),
    ("options.", ""),
    ("jwt_configuration.", ""),
    ("refresh_token.", ""),
];

/// An error in words: the field's `label` and what is wrong with it (`Okta domain is required:
/// …`), without the API's field path. For a list item, which one (`entry 2`).
pub(crate) fn words(label: &str, e: &ApiError) -> String {
    let field = e.field.as_deref().unwrap_or_default();
    let mut rest = e.message.trim();
    // The API's messages open with the field's path or key: drop it.
    let base = field.split('[').next().unwrap_or(field);
    let key = base.rsplit('.').next().unwrap_or(base);
    for prefix in [field, base, key] {
        if !prefix.is_empty()
            && let Some(r) = rest.strip_prefix(prefix)
            && (r.starts_with(':') || r.starts_with(' '))
        {
            rest = r.trim_start_matches([':', ' ']);
            break;
        }
    }
    let mut rest = rest.to_owned();
    for (api, human) in REWORDED {
        if rest == api || e.message == api {
            rest = human.to_owned();
        }
    }
    if let Some(detail) = rest.strip_prefix("not a URL: ") {
        rest = format!("is not a URL ({detail})");
    }
    for (api, human) in TERMS {
        rest = rest.replace(api, human);
    }
    let item = field
        .split_once('[')
        .and_then(|(_, i)| i.split(']').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map(|i| format!("entry {} ", i + 1));
    let verb = ["is ", "must ", "takes ", "has ", "cannot ", "can "]
        .iter()
        .any(|v| rest.starts_with(v));
    let subject = match (label.is_empty(), item) {
        (true, None) => return capitalised(&rest),
        (true, Some(i)) => capitalised(i.trim_end()),
        (false, None) => label.to_owned(),
        (false, Some(i)) => format!("{label}: {}", i.trim_end()),
    };
    if verb {
        format!("{subject} {rest}")
    } else {
        format!("{subject}: {rest}")
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(field: &str, message: &str) -> ApiError {
        ApiError::bad_request(field, message)
    }

    #[test]
    fn errors_in_an_admins_words() {
        for (label, err, want) in [
            (
                "Okta domain",
                e(
                    "options.domain",
                    "options.domain: is required: the Okta org's domain, e.g. acme.okta.com",
                ),
                "Okta domain is required: the Okta org's domain, e.g. acme.okta.com",
            ),
            (
                "Name",
                e(
                    "name",
                    "name: must be 1-128 letters, digits and single hyphens",
                ),
                "Name must be 1-128 letters, digits and single hyphens",
            ),
            (
                "Allowed callback URLs",
                e(
                    "callbacks[1]",
                    "callbacks[1]: not a URL: relative URL without a base",
                ),
                "Allowed callback URLs: entry 2 is not a URL (relative URL without a base)",
            ),
            (
                "Back-channel logout URL",
                e(
                    "oidc_logout.backchannel_logout_urls[0]",
                    "oidc_logout.backchannel_logout_urls[0]: must use https (http is allowed only on loopback hosts)",
                ),
                "Back-channel logout URL: entry 1 must use https (http is allowed only on loopback hosts)",
            ),
            (
                "Issuer URL",
                e(
                    "options.discovery_url",
                    "options.discovery_url: discovery_url or issuer is required",
                ),
                "Issuer URL is required",
            ),
            (
                "Email",
                e("email", "email must be an email address"),
                "Email must be an email address",
            ),
        ] {
            let got = words(label, &err);
            assert_eq!(got, want);
            assert!(!got.contains("options.") && !got.contains('['), "{got}");
        }
        assert_eq!(key_of("options.discovery_url"), "issuer");
        assert_eq!(
            key_of("oidc_logout.backchannel_logout_urls[0]"),
            "backchannel_logout_url"
        );
        assert_eq!(key_of("callbacks[3]"), "callbacks");
    }

    #[test]
    fn one_error_per_field_the_apis_first() {
        let all = merge(
            e("name", "taken"),
            vec![
                e("name", "bad"),
                e("options.domain", "bad"),
                e("options.domain", "worse"),
            ],
        );
        let fields: Vec<_> = all.iter().map(|x| x.field.clone().unwrap()).collect();
        assert_eq!(fields, ["name", "options.domain"]);
        assert_eq!(all[0].message, "taken");
    }
}
