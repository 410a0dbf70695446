//! SCIM PATCH (RFC 7644 §3.5.2) over a User resource's JSON, in the shapes Okta and Entra ID
//! send: operations with a `path` (`active`, `name.givenName`, `emails[type eq "work"].value`)
//! and without one (a `value` object of attributes), `op` in any case, Entra's `"True"` /
//! `"False"` strings for booleans.

use scim_v2::filter::{AttrPath, PatchPath};
use serde_json::{Map, Value};

use crate::ScimError;

/// Attributes a client may not write (RFC 7643: `mutability: readOnly` / immutable ones).
const READ_ONLY: [&str; 4] = ["id", "meta", "schemas", "groups"];

/// Attributes that are booleans in the User schema.
const BOOLEANS: [&str; 2] = ["active", "primary"];

/// One operation as sent.
#[derive(Debug, serde::Deserialize)]
pub struct Operation {
    pub op: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A PATCH request body (`schemas` must name the PatchOp message).
#[derive(Debug, serde::Deserialize)]
pub struct PatchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    pub operations: Vec<Operation>,
}

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// The key of `m` named `name` case-insensitively, or `name` itself.
fn key_of(m: &Map<String, Value>, name: &str) -> String {
    m.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Entra ID sends booleans as strings.
fn normalise(name: &str, v: Value) -> Value {
    match v {
        Value::String(s) if BOOLEANS.iter().any(|b| b.eq_ignore_ascii_case(name)) => {
            match s.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(s),
            }
        }
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let v = normalise(&k, v);
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| normalise(name, v)).collect()),
        other => other,
    }
}

fn read_only(name: &str) -> Result<(), ScimError> {
    if READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(ScimError::mutability(format!("{name} cannot be changed")));
    }
    Ok(())
}

/// A path without a schema URN, or with the core User schema's (`urn:…:User:userName`).
fn plain(p: &AttrPath) -> Result<(), ScimError> {
    match p.uri.as_deref() {
        None => Ok(()),
        Some(u) if u.eq_ignore_ascii_case(crate::USER_SCHEMA) => Ok(()),
        Some(_) => Err(ScimError::invalid_path(
            "only the core User schema's attributes",
        )),
    }
}

/// Sets `name` (or `name.sub`) in `m`: `add` appends to a multi-valued attribute.
fn set(m: &mut Map<String, Value>, name: &str, sub: Option<&str>, v: Value, op: Op) {
    let k = key_of(m, name);
    match sub {
        Some(sub) => {
            let inner = m.entry(k).or_insert_with(|| Value::Object(Map::new()));
            match inner {
                // `emails.value`: every element's sub-attribute (RFC 7644 §3.5.2.3).
                Value::Array(items) => {
                    for item in items.iter_mut() {
                        if let Value::Object(o) = item {
                            let sk = key_of(o, sub);
                            o.insert(sk, normalise(sub, v.clone()));
                        }
                    }
                }
                Value::Object(o) => {
                    let sk = key_of(o, sub);
                    o.insert(sk, normalise(sub, v));
                }
                other => {
                    let mut o = Map::new();
                    o.insert(sub.to_owned(), normalise(sub, v));
                    *other = Value::Object(o);
                }
            }
        }
        None => {
            let v = normalise(name, v);
            match (op, m.get_mut(&k), v) {
                (Op::Add, Some(Value::Array(existing)), Value::Array(new)) => {
                    for item in new {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                }
                // A complex attribute keeps the sub-attributes the value does not name, for
                // `replace` as for `add` (RFC 7644 §3.5.2.1, §3.5.2.3).
                (_, Some(Value::Object(existing)), Value::Object(new)) => {
                    for (nk, nv) in new {
                        let ek = key_of(existing, &nk);
                        existing.insert(ek, nv);
                    }
                }
                (_, _, v) => {
                    m.insert(k, v);
                }
            }
        }
    }
}

/// Applies `ops` to `resource` (the User resource without `id`, `meta`, `schemas`).
pub fn apply(resource: &mut Map<String, Value>, ops: Vec<Operation>) -> Result<(), ScimError> {
    for o in ops {
        let op = match o.op.to_ascii_lowercase().as_str() {
            "add" => Op::Add,
            "replace" => Op::Replace,
            "remove" => Op::Remove,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "op must be add, replace or remove",
                ));
            }
        };
        let path = o.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
        // A path is an attribute name, maybe with a short value filter: a long one is nobody's
        // (and the parser's error path must not meet a huge nesting).
        if path.is_some_and(|p| p.len() > 1024) {
            return Err(ScimError::invalid_path("the path is too long"));
        }
        match (path, op) {
            (None, Op::Remove) => return Err(ScimError::no_target("remove needs a path")),
            (None, _) => {
                let Some(Value::Object(values)) = o.value else {
                    return Err(ScimError::invalid_value(
                        "an operation without a path needs an object value",
                    ));
                };
                for (k, v) in values {
                    // Okta sends `{"name.givenName": "x"}` too.
                    let (name, sub) = match k.split_once('.') {
                        Some((n, s)) if !k.starts_with("urn:") => {
                            (n.to_owned(), Some(s.to_owned()))
                        }
                        _ => (k.clone(), None),
                    };
                    let name = name
                        .strip_prefix(&format!("{}:", crate::USER_SCHEMA))
                        .map(str::to_owned)
                        .unwrap_or(name);
                    read_only(&name)?;
                    set(resource, &name, sub.as_deref(), v, op);
                }
            }
            (Some(p), _) => {
                let parsed: PatchPath = crate::resource::parse_path(p).ok_or_else(|| {
                    ScimError::invalid_path("the path is not a SCIM attribute path")
                })?;
                match parsed {
                    PatchPath::Attr(a) => {
                        plain(&a)?;
                        read_only(&a.name)?;
                        if op == Op::Remove {
                            let k = key_of(resource, &a.name);
                            match &a.sub_attr {
                                Some(sub) => {
                                    if let Some(Value::Object(inner)) = resource.get_mut(&k) {
                                        let sk = key_of(inner, sub);
                                        inner.remove(&sk);
                                    }
                                }
                                None => {
                                    resource.remove(&k);
                                }
                            }
                        } else {
                            let v = o.value.ok_or_else(|| {
                                ScimError::invalid_value("add and replace need a value")
                            })?;
                            set(resource, &a.name, a.sub_attr.as_deref(), v, op);
                        }
                    }
                    PatchPath::Value(vp) => {
                        plain(&vp.attr)?;
                        read_only(&vp.attr.name)?;
                        value_path(resource, &vp, op, o.value)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// An operation on the elements of a multi-valued attribute that match a filter
/// (`emails[type eq "work"].value`).
fn value_path(
    resource: &mut Map<String, Value>,
    vp: &scim_v2::filter::PatchValuePath,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let k = key_of(resource, &vp.attr.name);
    let items = resource
        .entry(k)
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = items else {
        return Err(ScimError::invalid_path("the attribute is not multi-valued"));
    };
    let filter = scim_v2::filter::Filter::ValuePath(scim_v2::filter::ValuePath {
        attr: AttrPath::with_name("x"),
        filter: Box::new(vp.filter.clone()),
    });
    let hit = |item: &Value| crate::filter::matches(&serde_json::json!({ "x": [item] }), &filter);
    if op == Op::Remove {
        match &vp.sub_attr {
            Some(sub) => {
                for item in items.iter_mut().filter(|i| hit(i)) {
                    if let Value::Object(o) = item {
                        let sk = key_of(o, sub);
                        o.remove(&sk);
                    }
                }
            }
            None => items.retain(|i| !hit(i)),
        }
        return Ok(());
    }
    let v = value.ok_or_else(|| ScimError::invalid_value("add and replace need a value"))?;
    let mut found = false;
    for item in items.iter_mut().filter(|i| hit(i)) {
        found = true;
        match (&vp.sub_attr, item) {
            (Some(sub), Value::Object(o)) => {
                let sk = key_of(o, sub);
                o.insert(sk, normalise(sub, v.clone()));
            }
            (None, Value::Object(o)) => {
                if let Value::Object(new) = &v {
                    for (nk, nv) in new {
                        let ek = key_of(o, nk);
                        o.insert(ek, normalise(nk, nv.clone()));
                    }
                }
            }
            (_, other) => *other = v.clone(),
        }
    }
    if !found {
        // Entra ID sets `emails[type eq "work"].value` on a user without a work email: the
        // element the filter describes is made (its `eq` comparisons become its members).
        let mut made = Map::new();
        fn members(f: &scim_v2::filter::ValFilter, out: &mut Map<String, Value>) {
            use scim_v2::filter::{AttrExp, CompValue, CompareOp, ValFilter};
            match f {
                ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, c)) => {
                    let v = match c {
                        CompValue::Str(s) => Value::String(s.clone()),
                        CompValue::True => Value::Bool(true),
                        CompValue::False => Value::Bool(false),
                        CompValue::Number(n) => Value::Number(n.clone()),
                        CompValue::Null => Value::Null,
                    };
                    out.insert(p.name.clone(), v);
                }
                ValFilter::And(a, b) => {
                    members(a, out);
                    members(b, out);
                }
                _ => {}
            }
        }
        members(&vp.filter, &mut made);
        match (&vp.sub_attr, v) {
            (Some(sub), v) => {
                made.insert(sub.clone(), normalise(sub, v));
            }
            (None, Value::Object(new)) => made.extend(new),
            (None, _) => return Err(ScimError::invalid_value("the value must be an object")),
        }
        items.push(Value::Object(made));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<Operation> {
        serde_json::from_value::<PatchRequest>(v)
            .unwrap()
            .operations
    }

    fn res() -> Map<String, Value> {
        json!({"userName": "jane@example.com", "active": true,
               "name": {"givenName": "Jane"},
               "emails": [{"value": "jane@example.com", "type": "work", "primary": true}]})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn okta_deactivation_and_entra_shapes() {
        let mut r = res();
        apply(&mut r, ops(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]}))).unwrap();
        assert_eq!(r["active"], false);
        apply(
            &mut r,
            ops(json!({"Operations": [{"op": "Replace", "path": "active", "value": "True"}]})),
        )
        .unwrap();
        assert_eq!(r["active"], true);
        apply(&mut r, ops(json!({"Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "j@new.example"},
            {"op": "Add", "path": "name.familyName", "value": "Doe"},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "j@home.example"},
            {"op": "replace", "value": {"name.givenName": "Janet", "displayName": "Janet Doe"}}
        ]}))).unwrap();
        assert_eq!(r["emails"][0]["value"], "j@new.example");
        assert_eq!(
            r["emails"][1],
            json!({"type": "home", "value": "j@home.example"})
        );
        assert_eq!(
            r["name"],
            json!({"givenName": "Janet", "familyName": "Doe"})
        );
        assert_eq!(r["displayName"], "Janet Doe");
        apply(
            &mut r,
            ops(json!({"Operations": [
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "remove", "path": "displayName"}
            ]})),
        )
        .unwrap();
        assert_eq!(r["emails"].as_array().unwrap().len(), 1);
        assert!(r.get("displayName").is_none());
    }

    #[test]
    fn refusals_change_nothing_they_name() {
        let mut r = res();
        for (body, kind) in [
            (
                json!({"Operations": [{"op": "replace", "path": "id", "value": "x"}]}),
                "mutability",
            ),
            (
                json!({"Operations": [{"op": "replace", "value": {"meta": {}}}]}),
                "mutability",
            ),
            (json!({"Operations": [{"op": "remove"}]}), "noTarget"),
            (
                json!({"Operations": [{"op": "move", "path": "active"}]}),
                "invalidSyntax",
            ),
            (
                json!({"Operations": [{"op": "replace", "path": "emails[type eq", "value": 1}]}),
                "invalidPath",
            ),
            (
                json!({"Operations": [{"op": "replace", "value": "x"}]}),
                "invalidValue",
            ),
        ] {
            let e = apply(&mut r, ops(body.clone())).unwrap_err();
            assert_eq!(e.scim_type, Some(kind), "{body}");
        }
        assert_eq!(r, res());
    }
}
