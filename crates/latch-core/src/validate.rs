//! Domain rules for names and URLs, shared by the management API and the admin UI.

use url::{Host, Url};

use crate::ValidationError;

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
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses an app URL: absolute, `https://` (or `http://` on loopback), no fragment, no
/// credentials.
pub fn app_url(field: &str, raw: &str) -> Result<Url, ValidationError> {
    let url = Url::parse(raw).map_err(|e| ValidationError::new(field, format!("not a URL: {e}")))?;
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
    if url.fragment().is_some() {
        return Err(ValidationError::new(field, "must not contain a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(field, "must not contain credentials"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
