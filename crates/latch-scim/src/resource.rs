//! The SCIM User resource (RFC 7643 §4.1) and what Latch makes of it: the SCIM record as sent,
//! and the user fields it sets (email, names), by Latch's default mapping or the
//! configuration's `mapping`.

use latch_core::model::{ScimConfig, ScimUser, User};
use latch_core::users::ScimWrite;
use scim_v2::filter::PatchPath;
use serde_json::{Map, Value, json};

use crate::filter::member;
use crate::{ScimError, USER_SCHEMA};

/// Attributes Latch serves itself, and `password` (write-only, RFC 7643 §4.1.1; Latch keeps no
/// password for an enterprise user): never stored from a client's body.
const SERVED: [&str; 5] = ["id", "meta", "schemas", "groups", "password"];

/// The core User attributes Latch reads, in the schema's case.
const CORE: [&str; 12] = [
    "userName",
    "externalId",
    "active",
    "name",
    "displayName",
    "nickName",
    "emails",
    "phoneNumbers",
    "title",
    "userType",
    "locale",
    "timezone",
];

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A SCIM attribute path (RFC 7644 §3.5.2). A plain `name` or `name.sub` (RFC 7643 §2.1
/// names; the common case) is read here; anything else goes to `scim_v2`'s parser, which builds
/// its lexer anew on every call.
pub(crate) fn parse_path(path: &str) -> Option<PatchPath> {
    fn attr_name(s: &str) -> bool {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
    let p = path.trim();
    let (name, sub) = match p.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (p, None),
    };
    if attr_name(name) && sub.is_none_or(attr_name) {
        return Some(PatchPath::Attr(scim_v2::filter::AttrPath {
            uri: None,
            name: name.to_owned(),
            sub_attr: sub.map(str::to_owned),
        }));
    }
    p.parse().ok()
}

/// The string value at a SCIM attribute path (`externalId`, `name.givenName`,
/// `emails[type eq "work"].value`) of `resource`.
pub fn at_path(resource: &Value, path: &str) -> Option<String> {
    match parse_path(path)? {
        PatchPath::Attr(a) => {
            let top = member(resource, &a.name)?;
            match &a.sub_attr {
                Some(sub) => text(member(top, sub)),
                None => text(Some(top)),
            }
        }
        PatchPath::Value(vp) => {
            let f = scim_v2::filter::Filter::ValuePath(scim_v2::filter::ValuePath {
                attr: vp.attr.clone(),
                filter: Box::new(vp.filter.clone()),
            });
            let items = member(resource, &vp.attr.name)?.as_array()?;
            items
                .iter()
                .find(|i| crate::filter::matches(&json!({ vp.attr.name.clone(): [i] }), &f))
                .and_then(|i| text(member(i, vp.sub_attr.as_deref().unwrap_or("value"))))
        }
    }
}

/// The email a User resource gives: the primary one, else the work one, else the first, else a
/// `userName` that is an address.
fn email_of(resource: &Value, user_name: &str) -> Option<String> {
    let emails = member(resource, "emails").and_then(Value::as_array);
    let pick = |pred: &dyn Fn(&Value) -> bool| {
        emails
            .into_iter()
            .flatten()
            .find(|e| pred(e))
            .and_then(|e| text(member(e, "value")))
    };
    pick(&|e| member(e, "primary") == Some(&Value::Bool(true)))
        .or_else(|| pick(&|e| text(member(e, "type")).as_deref() == Some("work")))
        .or_else(|| pick(&|_| true))
        .or_else(|| user_name.contains('@').then(|| user_name.to_owned()))
}

/// Reads a User resource a client sent (`POST` or `PUT`, or a patched one): what Latch keeps
/// and what it sets on the user.
pub fn read(body: Value, config: &ScimConfig) -> Result<ScimWrite, ScimError> {
    let Value::Object(mut m) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    if let Some(schemas) = m.get("schemas") {
        let ok = schemas
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(USER_SCHEMA)));
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must include {USER_SCHEMA}"
            )));
        }
    }
    m.retain(|k, _| !SERVED.iter().any(|s| s.eq_ignore_ascii_case(k)));
    // Attribute names are case-insensitive (RFC 7643 §2.1): the core ones are kept in the
    // schema's case, so a served resource never holds two spellings of one attribute.
    for canon in CORE {
        if let Some(k) = m
            .keys()
            .find(|k| k.eq_ignore_ascii_case(canon) && k.as_str() != canon)
            .cloned()
            && let Some(v) = m.remove(&k)
        {
            m.insert(canon.to_owned(), v);
        }
    }
    let resource = Value::Object(m);
    let user_name = text(member(&resource, "userName"))
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    if user_name.len() > 256 {
        return Err(ScimError::invalid_value(
            "userName is longer than 256 characters",
        ));
    }
    let external_id = match member(&resource, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 256 => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(_) => {
            return Err(ScimError::invalid_value(
                "externalId must be a string of at most 256 characters",
            ));
        }
    };
    let active = match member(&resource, "active") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ScimError::invalid_value("active must be a boolean")),
    };
    // The user's subject in the connection: the configured attribute, else the userName.
    let subject =
        at_path(&resource, &config.user_id_attribute).unwrap_or_else(|| user_name.clone());
    let given_name = text(member(&resource, "name").and_then(|n| member(n, "givenName")));
    let family_name = text(member(&resource, "name").and_then(|n| member(n, "familyName")));
    let name = text(member(&resource, "displayName"))
        .or_else(|| text(member(&resource, "name").and_then(|n| member(n, "formatted"))))
        .or_else(|| match (&given_name, &family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.clone().or_else(|| f.clone()),
        });
    let mut w = ScimWrite {
        email: email_of(&resource, &user_name),
        name,
        given_name,
        family_name,
        nickname: text(member(&resource, "nickName")),
        user_name,
        external_id,
        active,
        subject,
        resource: match resource {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    // Auth0's `mapping`: `[{"auth0": "given_name", "scim": "name.givenName"}, …]` overrides.
    let doc = Value::Object(w.resource.clone());
    for m in config.mapping.as_array().into_iter().flatten() {
        let (Some(field), Some(path)) = (m["auth0"].as_str(), m["scim"].as_str()) else {
            continue;
        };
        let v = at_path(&doc, path);
        match field {
            "email" => w.email = v,
            "name" => w.name = v,
            "given_name" => w.given_name = v,
            "family_name" => w.family_name = v,
            "nickname" => w.nickname = v,
            _ => {}
        }
    }
    Ok(w)
}

/// The User resource as Latch serves it.
pub fn served(s: &ScimUser, u: &User, location: &str) -> Value {
    let mut m = s.resource.clone();
    m.insert("schemas".into(), json!([USER_SCHEMA]));
    m.insert("id".into(), json!(u.user_id.as_str()));
    m.insert("userName".into(), json!(s.user_name));
    match &s.external_id {
        Some(e) => m.insert("externalId".into(), json!(e)),
        None => m.remove("externalId"),
    };
    // SCIM's own flag: an administrator's block is Latch's, not the client's to read back (a
    // PATCH applied to this resource must not turn it into a deactivation).
    // Unassigned (never sent, or removed: RFC 7644 §3.5.2.2) reads as active and is served
    // only when false.
    match m.keys().find(|k| k.eq_ignore_ascii_case("active")).cloned() {
        Some(k) => {
            m.remove(&k);
            m.insert("active".into(), json!(s.active));
        }
        None if !s.active => {
            m.insert("active".into(), json!(false));
        }
        None => {}
    }
    m.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(s.created_at),
            "lastModified": rfc3339(s.updated_at),
            "location": location,
            "version": etag(s.version),
        }),
    );
    Value::Object(m)
}

/// `W/"{version}"`: `meta.version` and the `ETag` header.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5): `id` and `schemas` always stay.
pub fn project(mut v: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let list = |s: Option<&str>| -> Vec<(String, Option<String>)> {
        s.into_iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|a| {
                let a = a
                    .strip_prefix(&format!("{USER_SCHEMA}:"))
                    .unwrap_or(a)
                    .to_owned();
                match a.split_once('.') {
                    Some((n, s)) => (n.to_ascii_lowercase(), Some(s.to_ascii_lowercase())),
                    None => (a.to_ascii_lowercase(), None),
                }
            })
            .collect()
    };
    let Value::Object(m) = &mut v else { return v };
    let keep = list(attributes);
    if !keep.is_empty() {
        m.retain(|k, val| {
            let lk = k.to_ascii_lowercase();
            if lk == "id" || lk == "schemas" {
                return true;
            }
            let subs: Vec<&String> = keep
                .iter()
                .filter(|(n, _)| *n == lk)
                .filter_map(|(_, s)| s.as_ref())
                .collect();
            let whole = keep.iter().any(|(n, s)| *n == lk && s.is_none());
            if whole {
                return true;
            }
            if subs.is_empty() {
                return false;
            }
            let only = |o: &mut Map<String, Value>| {
                o.retain(|sk, _| subs.iter().any(|s| **s == sk.to_ascii_lowercase()));
            };
            match val {
                Value::Object(o) => only(o),
                Value::Array(items) => items.iter_mut().for_each(|i| {
                    if let Value::Object(o) = i {
                        only(o);
                    }
                }),
                _ => {}
            }
            true
        });
    }
    for (n, s) in list(excluded) {
        if n == "id" || n == "schemas" {
            continue;
        }
        let Some(k) = m.keys().find(|k| k.to_ascii_lowercase() == n).cloned() else {
            continue;
        };
        match s {
            None => {
                m.remove(&k);
            }
            Some(sub) => match m.get_mut(&k) {
                Some(Value::Object(o)) => o.retain(|sk, _| sk.to_ascii_lowercase() != sub),
                Some(Value::Array(items)) => items.iter_mut().for_each(|i| {
                    if let Value::Object(o) = i {
                        o.retain(|sk, _| sk.to_ascii_lowercase() != sub);
                    }
                }),
                _ => {}
            },
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_core::ConnectionId;

    /// The short way reads a plain path exactly as the parser does, and leaves every other
    /// path (URNs, filters, nonsense) to it.
    #[test]
    fn plain_paths_read_as_the_parser_reads_them() {
        for p in [
            "externalId",
            " userName ",
            "name.givenName",
            "x-y_z9",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\"]",
            "name.",
            ".name",
            "a.b.c",
            "9lives",
            "",
            "user name",
        ] {
            let parsed: Option<PatchPath> = p.trim().parse().ok();
            assert_eq!(
                format!("{:?}", parse_path(p)),
                format!("{parsed:?}"),
                "{p:?}"
            );
        }
    }

    fn config(attr: &str) -> ScimConfig {
        ScimConfig {
            connection_id: ConnectionId::new("con_1"),
            user_id_attribute: attr.into(),
            mapping: json!([]),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn okta_user_maps_to_latch_fields() {
        let w = read(
            json!({"schemas": [USER_SCHEMA], "userName": "jane@example.com", "externalId": "00uA",
                   "name": {"givenName": "Jane", "familyName": "Doe"},
                   "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
                   "active": true, "id": "ignored", "meta": {"x": 1}}),
            &config("externalId"),
        )
        .unwrap();
        assert_eq!(w.subject, "00uA");
        assert_eq!(w.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(w.name.as_deref(), Some("Jane Doe"));
        assert!(w.resource.get("id").is_none() && w.resource.get("meta").is_none());
        // Another attribute as the subject; without it, the userName.
        let w = read(
            json!({"userName": "u1", "emails": [{"value": "x@y.z", "type": "work"}]}),
            &config("emails[type eq \"work\"].value"),
        )
        .unwrap();
        assert_eq!(w.subject, "x@y.z");
        let w = read(json!({"userName": "u1"}), &config("externalId")).unwrap();
        assert_eq!(w.subject, "u1");
        assert!(read(json!({"userName": ""}), &config("externalId")).is_err());
        assert!(
            read(
                json!({"schemas": ["urn:x"], "userName": "a"}),
                &config("externalId")
            )
            .is_err()
        );
        assert!(
            read(
                json!({"userName": "a", "active": "maybe"}),
                &config("externalId")
            )
            .is_err()
        );
    }

    #[test]
    fn projection_keeps_id_and_schemas() {
        let v = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "a@b.c", "type": "work"}]});
        assert_eq!(
            project(v.clone(), Some("userName,name.givenName"), None),
            json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a", "name": {"givenName": "A"}})
        );
        assert_eq!(
            project(v, None, Some("emails,name.familyName,id")),
            json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a", "name": {"givenName": "A"}})
        );
    }
}
