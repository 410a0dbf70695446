use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::SecretString;
use crate::model::Connection;

fn connection(strategy: Strategy, options: Value) -> Connection {
    Connection {
        id: crate::ConnectionId::new("con_1"),
        name: crate::ConnectionName::new("acme"),
        display_name: None,
        strategy,
        options: options.as_object().cloned().unwrap_or_default(),
        secrets: Default::default(),
        enabled_clients: vec![],
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

#[test]
fn every_table_is_consistent() {
    for strategy in Strategy::ALL {
        let s = spec(strategy);
        let keys: Vec<&str> = s.options.iter().map(|o| o.key).collect();
        let unique: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "{strategy:?}: a key twice");
        let secrets: Vec<&str> = s
            .options
            .iter()
            .filter(|o| o.kind == Kind::Secret)
            .map(|o| o.key)
            .collect();
        assert_eq!(secrets, strategy.secret_option_keys(), "{strategy:?}");
        for o in s.options {
            // On the form: labelled. Off it: nothing to show.
            assert_eq!(o.form.is_some(), !o.label.is_empty(), "{}", o.key);
            assert!(o.form.is_some() || o.help.is_empty(), "{}", o.key);
            if let Need::RequiredWhen { flag, .. } = o.need {
                assert_eq!(s.get(flag).map(|f| f.kind), Some(Kind::Bool), "{}", o.key);
            }
            match (o.kind, o.fallback) {
                (Kind::OneOf(allowed), Fallback::Text(t)) => assert!(allowed.contains(&t)),
                (Kind::Bool, Fallback::Flag(_)) | (_, Fallback::None) => {}
                (Kind::Str, Fallback::Text(t)) => assert!(o.help.contains(t), "{}", o.key),
                other => panic!("{}: fallback {other:?}", o.key),
            }
        }
        for set in s.any_of.iter().flat_map(|a| a.sets.iter()) {
            assert!(set.iter().all(|k| s.get(k).is_some()), "{set:?}");
        }
        if let Some(a) = s.any_of {
            assert!(s.get(a.field).is_some());
        }
        // Enterprise connections have the home realm and Universal Logout sections.
        assert_eq!(
            s.in_form(FormSection::UniversalLogout).next().is_some(),
            strategy.is_enterprise()
        );
        assert_eq!(
            s.in_form(FormSection::HomeRealm).count(),
            usize::from(strategy.is_enterprise())
        );
    }
    for (p, name) in PasswordPolicy::ALL.iter().zip(PasswordPolicy::NAMES) {
        assert_eq!(p.as_str(), name);
        assert_eq!(PasswordPolicy::parse(name), Some(*p));
    }
}

#[test]
fn the_form_order_and_the_universal_logout_variants() {
    let idp = |s| -> Vec<&str> { spec(s).in_form(FormSection::Idp).map(|o| o.key).collect() };
    assert_eq!(
        idp(Strategy::Oidc),
        ["issuer", "client_id", "client_secret", "scope"]
    );
    assert_eq!(
        idp(Strategy::Samlp),
        [
            "metadataUrl",
            "metadataXml",
            "signInEndpoint",
            "signingCert",
            "entityId",
            "user_id_attribute"
        ]
    );
    let ul = |s| -> Vec<&str> {
        spec(s)
            .in_form(FormSection::UniversalLogout)
            .map(|o| o.key)
            .collect()
    };
    assert_eq!(
        ul(Strategy::Okta),
        [
            "global_token_revocation_enabled",
            "global_token_revocation_jwt_sub"
        ]
    );
    assert_eq!(
        ul(Strategy::Samlp),
        [
            "global_token_revocation_enabled",
            "global_token_revocation_jwt_iss",
            "global_token_revocation_jwt_sub",
            "jwks_uri"
        ]
    );
    let sub = |s| spec(s).get("global_token_revocation_jwt_sub").unwrap().help;
    assert_ne!(sub(Strategy::Samlp), sub(Strategy::Oidc));
    assert_eq!(sub(Strategy::Okta), sub(Strategy::Oidc));
}

#[test]
fn each_kind_checks_its_values() {
    let none = OutboundPolicy::default();
    let ok = |k: Kind, v: Value| k.check("f", &v, &none).is_ok();
    for k in [Kind::Str, Kind::Issuer, Kind::Secret, Kind::Pem, Kind::Xml] {
        assert!(ok(k, json!("x")), "{k:?}");
        assert!(!ok(k, json!("  ")), "{k:?}");
        assert!(!ok(k, json!(1)), "{k:?}");
    }
    assert!(ok(Kind::Bool, json!(false)));
    assert!(!ok(Kind::Bool, json!("true")));
    assert!(ok(Kind::Url, json!("https://idp.example.com/x")));
    assert!(ok(Kind::Url, json!("http://127.0.0.1:4000/x")));
    assert!(!ok(Kind::Url, json!("http://idp.example.com/x")));
    assert!(!ok(Kind::Url, json!("https://10.0.0.1/")));
    assert!(!ok(Kind::Url, json!(true)));
    assert!(ok(Kind::Domains, json!(["acme.com", "a-b.io"])));
    let e = Kind::Domains
        .check("f", &json!(["acme.com", "not a domain"]), &none)
        .unwrap_err();
    assert_eq!(e.field, "f[1]");
    assert!(!ok(Kind::Domains, json!("acme.com")));
    assert!(ok(Kind::OktaDomain, json!("acme.okta.com")));
    assert!(ok(Kind::OktaDomain, json!("http://127.0.0.1:4000")));
    assert!(!ok(Kind::OktaDomain, json!("acme.okta.com/oauth2")));
    assert!(!ok(Kind::OktaDomain, json!("100.64.0.1")));
    let one = Kind::OneOf(&["a", "b"]);
    assert!(ok(one, json!("b")));
    let e = one.check("f", &json!("c"), &none).unwrap_err();
    assert_eq!(e.message, "must be one of: a, b");
    assert!(ok(Kind::Complexity, json!({"min_length": 12})));
    assert!(ok(Kind::Complexity, json!({})));
    let e = Kind::Complexity
        .check("f", &json!({"min_length": 129}), &none)
        .unwrap_err();
    assert_eq!(e.field, "f.min_length");
    let e = Kind::Complexity
        .check("f", &json!({"max_length": 3}), &none)
        .unwrap_err();
    assert_eq!(e.field, "f.max_length");
}

#[test]
fn oidc_options_for_okta_and_oidc() {
    let mut okta = connection(
        Strategy::Okta,
        json!({"domain": "acme.okta.com", "client_id": "0oa1"}),
    );
    okta.secrets
        .insert("client_secret".into(), SecretString::new("s3"));
    let o = OidcOptions::from_connection(&okta).unwrap();
    assert_eq!(o.issuer, "https://acme.okta.com");
    assert_eq!(o.scope, DEFAULT_SCOPE);
    assert_eq!(
        o.client_secret.as_ref().map(SecretString::expose),
        Some("s3")
    );
    let oidc = connection(
        Strategy::Oidc,
        json!({"discovery_url": "https://idp.example.com/t/.well-known/openid-configuration", "client_id": "c", "scope": "openid email"}),
    );
    let o = OidcOptions::from_connection(&oidc).unwrap();
    assert_eq!(o.issuer, "https://idp.example.com/t");
    assert_eq!(o.scope, "openid email");
    assert!(o.client_secret.is_none());
    let o = OidcOptions::from_connection(&connection(
        Strategy::Oidc,
        json!({"issuer": "https://idp.example.com/", "client_id": "c"}),
    ))
    .unwrap();
    assert_eq!(o.issuer, "https://idp.example.com");
    for (c, field) in [
        (
            connection(Strategy::Okta, json!({"client_id": "c"})),
            "options.domain",
        ),
        (
            connection(
                Strategy::Okta,
                json!({"domain": "a.okta.com/x", "client_id": "c"}),
            ),
            "options.domain",
        ),
        (
            connection(Strategy::Oidc, json!({"client_id": "c"})),
            "options.issuer",
        ),
        (
            connection(
                Strategy::Oidc,
                json!({"issuer": "https://i", "client_id": ""}),
            ),
            "options.client_id",
        ),
        (connection(Strategy::Samlp, json!({})), "strategy"),
    ] {
        assert_eq!(OidcOptions::from_connection(&c).unwrap_err().field, field);
    }
}

#[test]
fn saml_options_in_order_of_precedence() {
    let c = |v| SamlOptions::from_connection(&connection(Strategy::Samlp, v));
    let o = c(json!({"metadataXml": " <md/> ", "metadataUrl": "https://i/md", "entityId": "  ", "user_id_attribute": " uid "})).unwrap();
    assert_eq!(o.idp, SamlIdp::MetadataXml("<md/>".into()));
    assert_eq!(o.entity_id, None);
    assert_eq!(o.user_id_attribute.as_deref(), Some("uid"));
    let o = c(json!({"metadataUrl": "https://i/md", "signInEndpoint": "https://i/sso", "signingCert": "PEM", "entityId": "urn:x"})).unwrap();
    assert_eq!(o.idp, SamlIdp::MetadataUrl("https://i/md".into()));
    assert_eq!(o.entity_id.as_deref(), Some("urn:x"));
    let o = c(json!({"signInEndpoint": "https://i/sso", "signingCert": "PEM", "signOutEndpoint": "https://i/slo"})).unwrap();
    assert_eq!(
        o.idp,
        SamlIdp::Direct {
            sign_in: "https://i/sso".into(),
            signing_cert: "PEM".into(),
            sign_out: Some("https://i/slo".into())
        }
    );
    let e = c(json!({"signInEndpoint": "https://i/sso"})).unwrap_err();
    assert_eq!(e.field, "options.metadataUrl");
    assert!(SamlOptions::from_connection(&connection(Strategy::Okta, json!({}))).is_err());
}

#[test]
fn universal_logout_and_database_options() {
    let ul = UniversalLogoutOptions::of(&connection(
        Strategy::Samlp,
        json!({"global_token_revocation_enabled": true, "global_token_revocation_jwt_iss": "https://acme.okta.com", "global_token_revocation_jwt_sub": "", "jwks_uri": "https://k"}),
    ));
    assert!(ul.enabled);
    assert_eq!(ul.jwt_iss.as_deref(), Some("https://acme.okta.com"));
    assert_eq!(ul.jwt_sub, None);
    assert_eq!(ul.jwks_uri.as_deref(), Some("https://k"));
    let off = UniversalLogoutOptions::of(&connection(
        Strategy::Okta,
        json!({"global_token_revocation_enabled": "true"}),
    ));
    assert!(!off.enabled);

    let o = |v: Value| DatabaseOptions::from_options(v.as_object().unwrap());
    assert_eq!(o(json!({})), DatabaseOptions::default());
    assert_eq!(o(json!({})).password_policy, PasswordPolicy::Good);
    assert_eq!(
        o(json!({"passwordPolicy": "bogus"})).password_policy,
        PasswordPolicy::Good
    );
    let d = o(json!({"passwordPolicy": "low", "password_complexity_options": {"min_length": 12}}));
    assert_eq!(d.password_policy, PasswordPolicy::Low);
    assert_eq!(d.min_length, Some(12));
}
