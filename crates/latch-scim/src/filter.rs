//! SCIM filters (RFC 7644 §3.4.2.2), parsed by `scim_v2` (with its depth limit) and evaluated
//! here over the JSON of a User resource, never turned into SQL. The equalities the store
//! indexes (`userName`, `externalId`, `emails.value`) narrow the search first
//! ([`lookup`]); the whole filter then decides.

use latch_core::model::ScimLookup;
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

/// Attributes compared case-exactly (RFC 7643 §4.1: `id`, `externalId`, `meta.version`); every
/// other string attribute of the User schema is `caseExact: false`.
fn case_exact(path: &AttrPath) -> bool {
    let n = path.name.to_ascii_lowercase();
    matches!(n.as_str(), "id" | "externalid")
        || (n == "meta"
            && path
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("version")))
}

/// The member `name` of an object, case-insensitively (attribute names are, RFC 7643 §2.1).
pub fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values an attribute path names in `resource` (a multi-valued attribute gives each
/// element's sub-attribute; without a sub-attribute, the complex `value`s are compared).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    // A URN prefix naming the core User schema (or its extension) reads the same attributes.
    let Some(top) = member(resource, &path.name) else {
        return Vec::new();
    };
    let each = |v: &'a Value| -> Option<&'a Value> {
        match &path.sub_attr {
            Some(sub) => member(v, sub),
            None if v.is_object() => member(v, "value"),
            None => Some(v),
        }
    };
    match top {
        Value::Array(items) => items.iter().filter_map(each).collect(),
        v => each(v).into_iter().collect(),
    }
}

fn compare(v: &Value, op: &CompareOp, c: &CompValue, exact: bool) -> bool {
    let fold = |s: &str| {
        if exact {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    match (v, c) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = (fold(a), fold(b));
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        (Value::Bool(a), CompValue::True | CompValue::False) => {
            let b = matches!(c, CompValue::True);
            match op {
                CompareOp::Eq => *a == b,
                CompareOp::Ne => *a != b,
                _ => false,
            }
        }
        (Value::Number(a), CompValue::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
                _ => false,
            },
            _ => false,
        },
        (Value::Null, CompValue::Null) => matches!(op, CompareOp::Eq),
        _ => matches!(op, CompareOp::Ne),
    }
}

fn attr(resource: &Value, e: &AttrExp) -> bool {
    match e {
        AttrExp::Present(p) => values(resource, p).iter().any(|v| {
            !v.is_null() && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
        }),
        AttrExp::Comparison(p, op, c) => {
            let found = values(resource, p);
            if found.is_empty() {
                // An absent attribute equals nothing; `ne` holds (RFC 7644 §3.4.2.2).
                return matches!(op, CompareOp::Ne)
                    || matches!((op, c), (CompareOp::Eq, CompValue::Null));
            }
            let exact = case_exact(p);
            if matches!(op, CompareOp::Ne) {
                found.iter().all(|v| compare(v, op, c, exact))
            } else {
                found.iter().any(|v| compare(v, op, c, exact))
            }
        }
    }
}

fn val(element: &Value, f: &ValFilter) -> bool {
    match f {
        ValFilter::Attr(e) => attr(element, e),
        ValFilter::Not(i) => !val(element, i),
        ValFilter::And(a, b) => val(element, a) && val(element, b),
        ValFilter::Or(a, b) => val(element, a) || val(element, b),
    }
}

/// Whether `resource` (a User resource as served) matches `f`.
pub fn matches(resource: &Value, f: &Filter) -> bool {
    match f {
        Filter::Attr(e) => attr(resource, e),
        Filter::ValuePath(vp) => match member(resource, &vp.attr.name) {
            Some(Value::Array(items)) => items.iter().any(|i| val(i, &vp.filter)),
            Some(v @ Value::Object(_)) => val(v, &vp.filter),
            _ => false,
        },
        Filter::Not(i) => !matches(resource, i),
        Filter::And(a, b) => matches(resource, a) && matches(resource, b),
        Filter::Or(a, b) => matches(resource, a) || matches(resource, b),
    }
}

/// The store lookup that narrows `f`: an `eq` on `userName`, `externalId` or an email value at
/// the top of the filter (or on either side of an `and`); [`ScimLookup::All`] otherwise.
pub fn lookup(f: &Filter) -> ScimLookup {
    let eq = |p: &AttrPath, c: &CompValue| -> Option<ScimLookup> {
        let CompValue::Str(v) = c else { return None };
        let name = p.name.to_ascii_lowercase();
        match (
            name.as_str(),
            p.sub_attr
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
        ) {
            ("username", None) => Some(ScimLookup::UserName(v.clone())),
            ("externalid", None) => Some(ScimLookup::ExternalId(v.clone())),
            ("emails", Some("value") | None) => Some(ScimLookup::Email(v.clone())),
            _ => None,
        }
    };
    match f {
        Filter::Attr(AttrExp::Comparison(p, CompareOp::Eq, c)) => {
            eq(p, c).unwrap_or(ScimLookup::All)
        }
        Filter::ValuePath(vp) if vp.attr.name.eq_ignore_ascii_case("emails") => {
            // `emails[type eq "work" and value eq "x"]`, `emails[value eq "x"]`
            fn inner(f: &ValFilter) -> Option<String> {
                match f {
                    ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(v)))
                        if p.name.eq_ignore_ascii_case("value") =>
                    {
                        Some(v.clone())
                    }
                    ValFilter::And(a, b) => inner(a).or_else(|| inner(b)),
                    _ => None,
                }
            }
            inner(&vp.filter).map_or(ScimLookup::All, ScimLookup::Email)
        }
        Filter::And(a, b) => match lookup(a) {
            ScimLookup::All => lookup(b),
            l => l,
        },
        _ => ScimLookup::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> Filter {
        s.parse().unwrap()
    }

    #[test]
    fn evaluates_the_user_schema_with_its_case_rules() {
        let u = json!({
            "id": "okta|Abc", "userName": "Jane@Example.com", "externalId": "00uABC",
            "name": {"givenName": "Jane", "familyName": "Doe"}, "active": true,
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true},
                       {"value": "j@home.example", "type": "home"}],
            "meta": {"version": "W/\"3\""}
        });
        for yes in [
            r#"userName eq "jane@example.com""#,
            r#"USERNAME eq "JANE@EXAMPLE.COM""#,
            r#"externalId eq "00uABC""#,
            r#"emails[type eq "work" and value co "example.com"]"#,
            r#"emails.value eq "j@home.example""#,
            r#"name.givenName sw "ja" and active eq true"#,
            r#"title pr or userName pr"#,
            r#"not (active eq false)"#,
            r#"title ne "x""#,
        ] {
            assert!(matches(&u, &f(yes)), "{yes}");
        }
        for no in [
            r#"externalId eq "00uabc""#,
            r#"id eq "okta|abc""#,
            r#"emails[type eq "home" and value eq "jane@example.com"]"#,
            r#"userName eq "john@example.com""#,
            r#"active eq false"#,
            r#"title pr"#,
            r#"meta.version eq "w/\"3\"""#,
        ] {
            assert!(!matches(&u, &f(no)), "{no}");
        }
    }

    #[test]
    fn narrows_to_what_the_store_indexes() {
        assert_eq!(
            lookup(&f(r#"userName eq "a""#)),
            ScimLookup::UserName("a".into())
        );
        assert_eq!(
            lookup(&f(r#"externalId eq "x""#)),
            ScimLookup::ExternalId("x".into())
        );
        assert_eq!(
            lookup(&f(r#"emails[type eq "work" and value eq "a@b.c"]"#)),
            ScimLookup::Email("a@b.c".into())
        );
        assert_eq!(
            lookup(&f(r#"emails.value eq "a@b.c""#)),
            ScimLookup::Email("a@b.c".into())
        );
        assert_eq!(
            lookup(&f(r#"active eq true and userName eq "a""#)),
            ScimLookup::UserName("a".into())
        );
        assert_eq!(
            lookup(&f(r#"userName eq "a" or userName eq "b""#)),
            ScimLookup::All
        );
        assert_eq!(lookup(&f(r#"userName co "a""#)), ScimLookup::All);
    }
}
