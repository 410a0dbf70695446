//! Temporary: snapshot of option validation (removed after the refactor).
use latch_core::model::Strategy;
use latch_core::net::OutboundPolicy;
use latch_core::validate::connection_option_problems;
use latch_core::SecretString;
use serde_json::{json, Map, Value};

#[test]
fn snapshot() {
    let keys = [
        "passwordPolicy", "password_complexity_options", "brute_force_protection", "disable_signup",
        "domain", "client_id", "client_secret", "scope", "discovery_url", "issuer", "type",
        "metadataUrl", "metadataXml", "signInEndpoint", "signingCert", "entityId", "signOutEndpoint",
        "disableSignout", "user_id_attribute", "global_token_revocation_enabled",
        "global_token_revocation_jwt_iss", "global_token_revocation_jwt_sub", "domain_aliases", "jwks_uri",
        "sp_metadata_url", "sp_entity_id", "sp_acs_url", "bogus",
    ];
    let values = [
        json!(null), json!(""), json!("  "), json!("x"), json!(true), json!(false), json!(3),
        json!("https://idp.example.com/x"), json!("http://idp.example.com/x"), json!("http://127.0.0.1:4000"),
        json!("https://10.0.0.1/"), json!("acme.okta.com"), json!("acme.okta.com/x"), json!("low"), json!("back_channel"),
        json!(["a.com", "b-c.io"]), json!(["a.com", "bad domain"]), json!([1]), json!("a.com"),
        json!({"min_length": 12}), json!({"min_length": 0}), json!({"min_length": 200}), json!({"other": 1}), json!({}),
        json!([]),
    ];
    let policy = OutboundPolicy::default();
    let mut out = String::new();
    let show = |r: Result<(Map<String, Value>, std::collections::BTreeMap<String, SecretString>), Vec<latch_core::ValidationError>>| -> String {
        match r {
            Ok((o, s)) => format!("OK {} secrets={:?}\n", Value::Object(o), s.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect::<Vec<_>>()),
            Err(all) => format!("ERR {:?}\n", all.iter().map(|e| (e.field.clone(), e.message.clone())).collect::<Vec<_>>()),
        }
    };
    let base = |s: Strategy| -> Map<String, Value> {
        match s {
            Strategy::Auth0 => json!({}),
            Strategy::Okta => json!({"domain": "acme.okta.com", "client_id": "c", "client_secret": "s"}),
            Strategy::Oidc => json!({"issuer": "https://idp.example.com", "client_id": "c", "client_secret": "s"}),
            Strategy::Samlp => json!({"metadataUrl": "https://idp.example.com/md"}),
        }.as_object().unwrap().clone()
    };
    let prev: std::collections::BTreeMap<String, SecretString> = [("client_secret".to_owned(), SecretString::new("old".to_owned()))].into();
    for s in Strategy::ALL {
        for k in keys {
            for v in &values {
                let mut o = base(s);
                o.insert(k.into(), v.clone());
                out.push_str(&format!("{} {k}={v} :: ", s.as_str()));
                out.push_str(&show(connection_option_problems(s, o.clone(), None, &policy)));
                // Alone (no base).
                let mut alone = Map::new();
                alone.insert(k.into(), v.clone());
                out.push_str(&format!("  alone :: "));
                out.push_str(&show(connection_option_problems(s, alone.clone(), None, &policy)));
                out.push_str(&format!("  alone+prev :: "));
                out.push_str(&show(connection_option_problems(s, alone, Some(&prev), &policy)));
            }
        }
        for combo in [
            json!({}), json!({"signInEndpoint": "https://i.example.com/s"}), json!({"signingCert": "x"}),
            json!({"signInEndpoint": "https://i.example.com/s", "signingCert": "x"}),
            json!({"metadataXml": "x", "global_token_revocation_enabled": true}),
            json!({"metadataXml": "x", "global_token_revocation_enabled": true, "global_token_revocation_jwt_iss": "i"}),
            json!({"metadataXml": "x", "global_token_revocation_enabled": false}),
            json!({"discovery_url": "https://i.example.com/d", "client_id": "c"}),
            json!({"global_token_revocation_enabled": true, "domain": "bad dom", "client_id": ""}),
            json!({"client_secret": "", "client_id": "a"}),
            json!({"client_secret": 5, "client_id": "a"}),
        ] {
            let o = combo.as_object().unwrap().clone();
            out.push_str(&format!("{} combo {combo} :: ", s.as_str()));
            out.push_str(&show(connection_option_problems(s, o.clone(), None, &policy)));
            out.push_str("  prev :: ");
            out.push_str(&show(connection_option_problems(s, o, Some(&prev), &policy)));
        }
    }
    for (opts, pw) in [
        (json!({}), "Tr0ub4dor&3x"), (json!({}), "short"), (json!({"passwordPolicy": "fair"}), "abcdefG1"),
        (json!({"passwordPolicy": "fair"}), "abcdefg!1"), (json!({"passwordPolicy": "excellent"}), "Aaa1111bbb!"),
        (json!({"passwordPolicy": "none", "password_complexity_options": {"min_length": 5}}), "abc"),
        (json!({"passwordPolicy": "bogus"}), "abc"), (json!({"passwordPolicy": 3}), "Abcdefg1"),
        (json!({"password_complexity_options": {"min_length": 3}}), "Abcdefg1"),
        (json!({"password_complexity_options": {"min_length": "x"}}), "Abcdefg1"),
        (json!({"passwordPolicy": "low"}), &"a".repeat(300)),
    ] {
        let r = latch_core::validate::password_policy(opts.as_object().unwrap(), pw);
        out.push_str(&format!("pw {opts} {pw} :: {:?}\n", r.map_err(|e| (e.field, e.message))));
    }
    std::fs::write(std::env::var("OPTSNAP").unwrap(), out).unwrap();
}
