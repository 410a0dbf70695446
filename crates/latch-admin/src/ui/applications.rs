//! Applications (clients): list, create (the secret shown once), edit, the connections users
//! sign in with, SAML (Latch as the app's SAML IdP: Auth0's `addons.samlp`), rotate the secret,
//! delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::ValidationError;
use latch_core::model::{
    ADMIN_CLIENT_ID, Client, Connection, DATABASE_CONNECTION, LogoutInitiator, SamlpAddon,
    name_id_format, saml_binding,
};
use latch_core::validate::{self, SAML_MAPPABLE};
use latch_http::ApiError;
use serde_json::{Map, Value, json};

use super::{
    Admin, Choice, Chrome, Extra, Field, Form, FormPage, Section, error_page, html, problems,
    redirect,
};
use crate::Deps;
use crate::api::clients::{ops, ui_ops};
use crate::api::connections::ui_ops as connection_ops;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/applications", web::get().to(list))
        .route("/applications", web::post().to(create))
        .route("/applications/new", web::get().to(new))
        .route("/applications/{id}", web::get().to(edit))
        .route("/applications/{id}", web::post().to(update))
        .route("/applications/{id}/rotate-secret", web::post().to(rotate))
        .route("/applications/{id}/delete", web::post().to(delete));
}

struct Row {
    id: String,
    name: String,
    app_type: &'static str,
    backchannel: bool,
    saml: bool,
}

#[derive(Template)]
#[template(path = "admin/applications.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

const APP_TYPES: [(&str, &str); 4] = [
    ("regular_web", "Regular web application"),
    ("spa", "Single-page application"),
    ("native", "Native application"),
    ("non_interactive", "Machine to machine"),
];
const GRANTS: [(&str, &str); 3] = [
    ("authorization_code", "Authorization code"),
    ("refresh_token", "Refresh token"),
    ("client_credentials", "Client credentials"),
];
const AUTH_METHODS: [(&str, &str); 3] = [
    ("client_secret_basic", "Client secret (Basic)"),
    ("client_secret_post", "Client secret (POST)"),
    ("none", "None (public client, PKCE)"),
];
const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
const SUBJECT_FORMATS: [(&str, &str); 2] = [
    ("iss_sub", "Issuer and user ID (iss_sub)"),
    ("email", "Email"),
];
const BINDINGS: [(&str, &str); 2] = [
    (saml_binding::HTTP_REDIRECT, "HTTP-Redirect"),
    (saml_binding::HTTP_POST, "HTTP-POST"),
];
/// The only algorithms Latch signs SAML messages with (SHA-1 is refused).
const SIGNATURE_ALGS: [(&str, &str); 1] = [("rsa-sha256", "RSA-SHA256")];
const DIGEST_ALGS: [(&str, &str); 1] = [("sha256", "SHA-256")];

/// The elements the SAML switch shows while on.
const SAML_CONTROLS: &str = "section-saml-idp section-saml-settings";

/// The switch "only some kinds of session end", and the section of kinds it shows while on.
const INITIATORS_SWITCH: &str = "backchannel_logout_initiators_custom";
const INITIATORS_CONTROLS: &str = "section-logout-initiators";
/// The kinds of session end an app may choose to be told about (Auth0's back-channel logout
/// initiators), in `LogoutInitiator::SELECTABLE`'s order.
const INITIATORS: [(LogoutInitiator, &str); 7] = [
    (LogoutInitiator::RpLogout, "An app's logout (rp-logout)"),
    (
        LogoutInitiator::IdpLogout,
        "The upstream identity provider's logout: Universal Logout, its back-channel or SAML logout (idp-logout)",
    ),
    (
        LogoutInitiator::SessionRevoked,
        "An administrator ended sessions (session-revoked)",
    ),
    (
        LogoutInitiator::AccountDeactivated,
        "The user was blocked or deactivated (account-deactivated)",
    ),
    (
        LogoutInitiator::AccountDeleted,
        "The user was deleted (account-deleted)",
    ),
    (
        LogoutInitiator::PasswordChanged,
        "The user's password was changed (password-changed)",
    ),
    (
        LogoutInitiator::SessionExpired,
        "The session expired (session-expired)",
    ),
];
/// What the kinds' boxes start with while the app is told of every kind (Auth0's pick when an
/// app starts choosing).
const INITIATORS_PRESET: [LogoutInitiator; 2] =
    [LogoutInitiator::RpLogout, LogoutInitiator::IdpLogout];

fn name_id_label(format: &str) -> &str {
    match format {
        name_id_format::UNSPECIFIED => "Unspecified (the user ID)",
        name_id_format::EMAIL => "Email address",
        name_id_format::PERSISTENT => "Persistent (the user ID)",
        other => other,
    }
}

/// Latch's SAML IdP URLs for the application `client_id` (Auth0's): metadata, single sign-on,
/// single logout.
fn saml_idp_urls(issuer: &str, client_id: &str) -> [String; 3] {
    [
        format!("{issuer}/samlp/metadata/{client_id}"),
        format!("{issuer}/samlp/{client_id}"),
        format!("{issuer}/samlp/{client_id}/logout"),
    ]
}

fn type_label(v: &Value) -> &'static str {
    APP_TYPES
        .iter()
        .find(|(k, _)| v.as_str() == Some(*k))
        .map_or("—", |(_, l)| *l)
}

async fn list(a: Admin, deps: web::Data<Deps>, q: web::Query<Done>) -> HttpResponse {
    let mut all = or_page!(deps.store.list_clients().await);
    all.sort_by(|x, y| x.name.cmp(&y.name));
    let rows = all
        .iter()
        .map(|c| {
            let v = ops::show(c);
            Row {
                id: c.client_id.as_str().to_owned(),
                name: c.name.clone(),
                app_type: type_label(&v["app_type"]),
                backchannel: !c.oidc_logout.backchannel_logout_urls.is_empty(),
                saml: c.addons.samlp.is_some(),
            }
        })
        .collect();
    let mut c = a.chrome("applications");
    if q.done.as_deref() == Some("deleted") {
        c.notice = Some("Application deleted.".into());
    }
    html(StatusCode::OK, &ListPage { c, rows })
}

fn lines(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn choices(all: &[(&str, &str)], selected: &[String]) -> Vec<Choice> {
    all.iter()
        .map(|(v, l)| Choice {
            value: (*v).into(),
            label: (*l).into(),
            selected: selected.iter().any(|s| s == v),
        })
        .collect()
}

/// The form, from the client as the API shows it (edit) or from what was posted.
/// `connections`: every connection, and whether it serves this application.
fn sections(
    issuer: &str,
    shown: Option<&Value>,
    form: Option<&Form>,
    connections: &[(Connection, bool)],
) -> Vec<Section> {
    let s = shown.cloned().unwrap_or(Value::Null);
    let text = |name: &str, stored: String| match form {
        Some(f) => f.get(name).unwrap_or_default().to_owned(),
        None => stored,
    };
    let one = |name: &str, stored: Option<&str>| -> Vec<String> {
        match form {
            Some(f) => f.all(name),
            None => stored.map(|v| vec![v.to_owned()]).unwrap_or_default(),
        }
    };
    let grants: Vec<String> = match form {
        Some(f) => f.all("grant_types"),
        None => s["grant_types"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]),
    };
    let alg = one(
        "alg",
        s["jwt_configuration"]["alg"].as_str().or(Some("RS256")),
    );
    let method = one(
        "token_endpoint_auth_method",
        s["token_endpoint_auth_method"]
            .as_str()
            .or(Some("client_secret_basic")),
    );
    let app_type = one("app_type", s["app_type"].as_str().or(Some("regular_web")));
    let bc = s["oidc_logout"]["backchannel_logout_urls"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bc_sid = match form {
        Some(f) => f.checked("backchannel_logout_session_required"),
        None => s["oidc_logout"]["backchannel_logout_session_required"] == Value::Bool(true),
    };
    let fc = s["oidc_logout"]["frontchannel_logout_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A new application asks for `iss` and `sid` (the API's default too).
    let fc_sid = match form {
        Some(f) => f.checked("frontchannel_logout_session_required"),
        None => s["oidc_logout"]["frontchannel_logout_session_required"] != Value::Bool(false),
    };
    let gtr_endpoint = s["global_token_revocation"]["endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let gtr_format = one(
        "subject_format",
        s["global_token_revocation"]["subject_format"]
            .as_str()
            .or(Some("iss_sub")),
    );
    let initiators = &s["oidc_logout"]["backchannel_logout_initiators"];
    let custom = match form {
        Some(f) => f.checked(INITIATORS_SWITCH),
        None => initiators["mode"] == "custom",
    };
    let selected: Vec<String> = match form {
        Some(f) => f.all("selected_initiators"),
        None if custom => initiators["selected_initiators"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        None => INITIATORS_PRESET
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect(),
    };
    let mut out = vec![
        Section {
            id: "general",
            title: "General".into(),
            description: String::new(),
            fields: vec![
                Field::new(
                    "text",
                    "name",
                    "Name",
                    text("name", s["name"].as_str().unwrap_or_default().into()),
                ),
                Field::new("select", "app_type", "Application type", "")
                    .choices(choices(&APP_TYPES, &app_type)),
            ],
        },
        Section {
            id: "urls",
            title: "URLs".into(),
            description: "Exact matches only; https://, or http:// on loopback for development."
                .into(),
            fields: vec![
                Field::new(
                    "textarea",
                    "callbacks",
                    "Allowed callback URLs",
                    text("callbacks", lines(&s["callbacks"])),
                )
                .help("One per line."),
                Field::new(
                    "textarea",
                    "allowed_logout_urls",
                    "Allowed logout URLs",
                    text("allowed_logout_urls", lines(&s["allowed_logout_urls"])),
                )
                .help("Where the app may send users after logout. One per line."),
            ],
        },
        Section {
            id: "logout",
            title: "Logout".into(),
            description: "How Latch tells this app that a user's session ended.".into(),
            fields: vec![
                Field::new(
                    "url",
                    "backchannel_logout_url",
                    "Back-channel logout URL",
                    text("backchannel_logout_url", bc),
                )
                .help(
                    "Latch POSTs a signed logout token here (OpenID Connect Back-Channel Logout).",
                ),
                Field::new(
                    "checkbox",
                    "backchannel_logout_session_required",
                    "Logout token must carry sid",
                    "",
                )
                .checked(bc_sid),
                Field::new(
                    "url",
                    "frontchannel_logout_url",
                    "Front-channel logout URL",
                    text("frontchannel_logout_url", fc),
                )
                .help(
                    "When a user signs out with their browser at Latch, Latch loads this URL in a hidden frame (OpenID Connect Front-Channel Logout).",
                ),
                Field::new(
                    "checkbox",
                    "frontchannel_logout_session_required",
                    "Front-channel URL gets iss and sid",
                    "",
                )
                .checked(fc_sid),
                Field::new(
                    "url",
                    "endpoint",
                    "Global Token Revocation endpoint",
                    text("endpoint", gtr_endpoint),
                )
                .help(
                    "When a user is logged out everywhere (Universal Logout received, an administrator's clear with revoke, blocked, deleted, SCIM deactivation), Latch POSTs the Global Token Revocation request Okta sends, signed with its current key, to this URL.",
                ),
                Field::new(
                    "select",
                    "subject_format",
                    "Global Token Revocation names the user by",
                    "",
                )
                .choices(choices(&SUBJECT_FORMATS, &gtr_format)),
                Field::new(
                    "checkbox",
                    INITIATORS_SWITCH,
                    "Send logout tokens only for some kinds of session end",
                    "",
                )
                .checked(custom)
                .controls(INITIATORS_CONTROLS)
                .help(
                    "Off: the app gets a logout token whenever a session it is in ends, for any reason, present or future. On: only for the kinds chosen below (Auth0's back-channel logout initiators).",
                ),
            ],
        },
        Section {
            id: "logout-initiators",
            title: "Back-channel logout initiators".into(),
            description: "The app is sent a logout token only when one of these ends a session it is in, or one of the user's sessions when the app holds the user's refresh token.".into(),
            fields: vec![
                Field::new(
                    "checkboxes",
                    "selected_initiators",
                    "Kinds of session end",
                    "",
                )
                .choices(
                    INITIATORS
                        .iter()
                        .map(|(i, label)| Choice {
                            value: i.as_str().into(),
                            label: (*label).into(),
                            selected: selected.iter().any(|x| x == i.as_str()),
                        })
                        .collect(),
                )
                .help("None checked: the app is told of no session end."),
            ],
        },
    ];
    out.extend(saml_sections(issuer, &s, form));
    out.extend([
        Section {
            id: "connections",
            title: "Connections".into(),
            description: "How this application's users may sign in.".into(),
            fields: vec![
                Field::new("checkboxes", "connections", "Enabled connections", "").choices(
                    connections
                        .iter()
                        .map(|(c, on)| Choice {
                            value: c.id.as_str().to_owned(),
                            label: format!(
                                "{} ({})",
                                c.display_name.as_deref().unwrap_or(c.name.as_str()),
                                c.strategy.as_str()
                            ),
                            selected: match form {
                                Some(f) => f.all("connections").iter().any(|x| x == c.id.as_str()),
                                None => *on,
                            },
                        })
                        .collect(),
                ),
            ],
        },
        Section {
            id: "advanced",
            title: "Tokens".into(),
            description: String::new(),
            fields: vec![
                Field::new("checkboxes", "grant_types", "Grant types", "")
                    .choices(choices(&GRANTS, &grants)),
                Field::new(
                    "select",
                    "token_endpoint_auth_method",
                    "Token endpoint authentication",
                    "",
                )
                .choices(choices(&AUTH_METHODS, &method)),
                Field::new("select", "alg", "Signing algorithm", "").choices(
                    ALGS.iter()
                        .map(|a| Choice {
                            value: (*a).into(),
                            label: (*a).into(),
                            selected: alg.iter().any(|x| x == a),
                        })
                        .collect(),
                ),
            ],
        },
    ]);
    out
}

/// The SAML switch, Latch's IdP URLs for the app (once it exists) and the addon's settings: as
/// stored (`s`, the client as the API shows it), as posted, or the model's defaults.
fn saml_sections(issuer: &str, s: &Value, form: Option<&Form>) -> Vec<Section> {
    let stored = &s["addons"]["samlp"];
    let on = match form {
        Some(f) => f.checked("samlp"),
        None => stored.is_object(),
    };
    let a = if stored.is_object() {
        stored.clone()
    } else {
        serde_json::to_value(SamlpAddon::new("")).unwrap_or(Value::Null)
    };
    let text = |name: &str, stored: String| match form {
        Some(f) => f.get(name).unwrap_or_default().to_owned(),
        None => stored,
    };
    let flag = |name: &str, stored: bool| match form {
        Some(f) => f.checked(name),
        None => stored,
    };
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let pick = |name: &str, all: &[(&str, &str)]| {
        let chosen = text(name, str_of(&a[name]));
        all.iter()
            .map(|(v, l)| Choice {
                value: (*v).into(),
                label: (*l).into(),
                selected: *v == chosen,
            })
            .collect::<Vec<_>>()
    };
    let mappings = a["mappings"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let lifetime = a["lifetimeInSeconds"]
        .as_i64()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let name_ids: Vec<(&str, &str)> = name_id_format::ALL
        .iter()
        .map(|f| (*f, name_id_label(f)))
        .collect();
    let mut out = vec![Section {
        id: "saml",
        title: "SAML".into(),
        description:
            "Latch can be this application's SAML identity provider (Auth0's SAML2 Web App addon)."
                .into(),
        fields: vec![
            Field::new(
                "checkbox",
                "samlp",
                "This application signs in with SAML",
                "",
            )
            .checked(on)
            .controls(SAML_CONTROLS)
            .help("Turning this off removes the application's SAML settings."),
        ],
    }];
    let client_id = s["client_id"].as_str().filter(|id| !id.is_empty());
    out.push(Section {
        id: "saml-idp",
        title: "For your service provider".into(),
        description: match client_id {
            Some(_) => "Register these at the application (the SAML service provider); most read everything from the metadata URL.".into(),
            None => "Latch's metadata, sign-on and logout URLs for the application are shown here once it is created.".into(),
        },
        fields: match client_id {
            Some(id) => {
                let [metadata, sso, slo] = saml_idp_urls(issuer, id);
                vec![
                    Field::new("readonly", "saml_metadata_url", "IdP metadata URL", metadata)
                        .help("Latch's entity ID, signing certificate, and the URLs below."),
                    Field::new("readonly", "saml_sso_url", "Single sign-on URL", sso)
                        .help("SingleSignOnService (HTTP-Redirect and HTTP-POST)."),
                    Field::new("readonly", "saml_slo_url", "Single logout URL", slo)
                        .help("SingleLogoutService (HTTP-Redirect and HTTP-POST)."),
                ]
            }
            None => vec![],
        },
    });
    out.push(Section {
        id: "saml-settings",
        title: "SAML settings".into(),
        description: String::new(),
        fields: vec![
            Field::new(
                "text",
                "audience",
                "Audience (SP entity ID)",
                text("audience", str_of(&a["audience"])),
            )
            .help("The service provider's entity ID: the Issuer of its requests and the Audience of Latch's assertions."),
            Field::new(
                "url",
                "recipient",
                "ACS URL (recipient)",
                text("recipient", str_of(&a["recipient"])),
            )
            .help("Where Latch posts the SAML Response: one of the allowed callback URLs above. Empty: the first of them."),
            Field::new("select", "nameIdentifierFormat", "NameID format", "")
                .choices(pick("nameIdentifierFormat", &name_ids)),
            Field::new(
                "checkbox",
                "signResponse",
                "Sign the whole Response (otherwise the assertion is signed)",
                "",
            )
            .checked(flag("signResponse", a["signResponse"] == Value::Bool(true))),
            Field::new("select", "signatureAlgorithm", "Signature algorithm", "")
                .choices(pick("signatureAlgorithm", &SIGNATURE_ALGS))
                .help("SHA-1 signatures are not issued."),
            Field::new("select", "digestAlgorithm", "Digest algorithm", "")
                .choices(pick("digestAlgorithm", &DIGEST_ALGS)),
            Field::new(
                "text",
                "lifetimeInSeconds",
                "Assertion lifetime (seconds)",
                text("lifetimeInSeconds", lifetime),
            )
            .help("60 to 86400: how long after it is issued the assertion may be used."),
            Field::new(
                "textarea",
                "mappings",
                "Attribute mappings",
                text("mappings", mappings),
            )
            .help(&format!(
                "One per line: user_attribute=SAML attribute name. User attributes: {}.",
                SAML_MAPPABLE.join(", ")
            )),
            Field::new(
                "textarea",
                "signingCert",
                "SP certificate",
                text("signingCert", str_of(&a["signingCert"])),
            )
            .upload()
            .help("The service provider's X.509 certificate (PEM). When set, its AuthnRequests and LogoutRequests must be signed with it."),
            Field::new(
                "url",
                "callback",
                "Single logout URL of the service provider",
                text("callback", str_of(&a["logout"]["callback"])),
            )
            .help("Its SingleLogoutService: Latch sends LogoutRequests and LogoutResponses there."),
            Field::new(
                "checkbox",
                "slo_enabled",
                "Single Logout with this application",
                "",
            )
            .checked(flag(
                "slo_enabled",
                a["logout"]["slo_enabled"] != Value::Bool(false),
            )),
            Field::new("select", "binding", "LogoutRequest binding", "")
                .choices(pick("binding", &BINDINGS))
                .help("How Latch sends LogoutRequests to the service provider."),
            Field::new(
                "checkbox",
                "allowIdpInitiated",
                "Allow IdP-initiated sign-in (at the single sign-on URL, without a request from the application)",
                "",
            )
            .checked(flag(
                "allowIdpInitiated",
                a["allowIdpInitiated"] == Value::Bool(true),
            )),
        ],
    });
    out
}

/// A URL field of the addon, when it is one (`validate::app_url`, as the API checks it); the
/// API reads the addon whole, so a value that is not a URL could not even reach its checks.
fn addon_url(f: &Form, name: &str, field: &str, unread: &mut Vec<ApiError>) -> Option<Value> {
    let text = f.text(name)?;
    match validate::app_url(field, &text) {
        Ok(_) => Some(Value::String(text)),
        Err(e) => {
            unread.push(e.into());
            None
        }
    }
}

/// The SAML addon the form stands for (`null`: not a SAML app; the API removes it), and what of
/// it could not be read (each left out of the addon, an error on its field). A member left empty
/// takes the model's default.
fn samlp(f: &Form) -> (Value, Vec<ApiError>) {
    if !f.checked("samlp") {
        return (Value::Null, vec![]);
    }
    let mut unread = Vec::new();
    // `user_attribute=SAML attribute name`, one per line; a line without `=` maps to an empty
    // name, which the API's checks refuse by name.
    let mappings: Map<String, Value> = f
        .list("mappings", false)
        .iter()
        .map(|line| {
            let (from, to) = line.split_once('=').unwrap_or((line, ""));
            (from.trim().to_owned(), Value::String(to.trim().to_owned()))
        })
        .collect();
    let mut a = Map::new();
    a.insert(
        "audience".into(),
        json!(f.get("audience").unwrap_or_default().trim()),
    );
    for name in [
        "nameIdentifierFormat",
        "signatureAlgorithm",
        "digestAlgorithm",
        "binding",
    ] {
        if let Some(v) = f.text(name) {
            a.insert(name.into(), Value::String(v));
        }
    }
    // Browsers post a textarea's lines with CRLF; PEM is stored with LF.
    if let Some(pem) = f.text("signingCert") {
        a.insert(
            "signingCert".into(),
            Value::String(pem.replace("\r\n", "\n")),
        );
    }
    if let Some(r) = addon_url(f, "recipient", "addons.samlp.recipient", &mut unread) {
        a.insert("recipient".into(), r);
    }
    if let Some(t) = f.text("lifetimeInSeconds") {
        match t.parse::<i64>() {
            Ok(n) => {
                a.insert("lifetimeInSeconds".into(), json!(n));
            }
            Err(_) => unread.push(
                ValidationError::new(
                    "addons.samlp.lifetimeInSeconds",
                    "must be a whole number of seconds",
                )
                .into(),
            ),
        }
    }
    a.insert("signResponse".into(), json!(f.checked("signResponse")));
    a.insert("mappings".into(), Value::Object(mappings));
    let mut logout = Map::new();
    if let Some(cb) = addon_url(f, "callback", "addons.samlp.logout.callback", &mut unread) {
        logout.insert("callback".into(), cb);
    }
    logout.insert("slo_enabled".into(), json!(f.checked("slo_enabled")));
    a.insert("logout".into(), Value::Object(logout));
    a.insert(
        "allowIdpInitiated".into(),
        json!(f.checked("allowIdpInitiated")),
    );
    (Value::Object(a), unread)
}

/// The API body the form stands for, and what of it could not be read (see [`samlp`]).
fn body(f: &Form) -> (Value, Vec<ApiError>) {
    let bc = f.text("backchannel_logout_url");
    let (samlp, unread) = samlp(f);
    let b = json!({
        "name": f.get("name").unwrap_or_default().trim(),
        "app_type": f.get("app_type").unwrap_or("regular_web"),
        "callbacks": f.list("callbacks", false),
        "allowed_logout_urls": f.list("allowed_logout_urls", false),
        "grant_types": f.all("grant_types"),
        "token_endpoint_auth_method": f.get("token_endpoint_auth_method").unwrap_or("client_secret_basic"),
        "jwt_configuration": { "alg": f.get("alg").unwrap_or("RS256") },
        "oidc_logout": {
            "backchannel_logout_urls": bc.into_iter().collect::<Vec<_>>(),
            "backchannel_logout_session_required": f.checked("backchannel_logout_session_required"),
            "frontchannel_logout_url": f.text("frontchannel_logout_url"),
            "frontchannel_logout_session_required": f.checked("frontchannel_logout_session_required"),
            "backchannel_logout_initiators": if f.checked(INITIATORS_SWITCH) {
                json!({"mode": "custom", "selected_initiators": f.all("selected_initiators")})
            } else {
                json!({"mode": "all"})
            },
        },
        "addons": { "samlp": samlp },
        "global_token_revocation": f.text("endpoint").map(|e| json!({
            "endpoint": e,
            "subject_format": f.get("subject_format").unwrap_or("iss_sub"),
        })),
    });
    (b, unread)
}

/// What the API refused (`first`: its answer, or what could not be read), then every other
/// problem its checks find (`more`), one per field.
fn refusal(first: Vec<ApiError>, more: Vec<ApiError>) -> Vec<ApiError> {
    let mut all = first.into_iter().chain(more);
    match all.next() {
        Some(e) => problems::merge(e, all.collect()),
        None => vec![],
    }
}

fn page(a: &Admin, title: String, action: String, sections: Vec<Section>) -> FormPage {
    FormPage {
        c: a.chrome("applications"),
        title,
        lead: String::new(),
        back: "/admin/applications",
        action,
        submit: "Save",
        sections,
        problems: vec![],
        shown_secret: None,
        extras: vec![],
    }
}

/// Every connection, and whether it serves the application `id` (`None`: a new one, which the
/// API enables on the database connection).
async fn connections_of(
    deps: &Deps,
    id: Option<&str>,
) -> Result<Vec<(Connection, bool)>, latch_core::StoreError> {
    let mut all = deps.store.list_connections().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all
        .into_iter()
        .map(|c| {
            let on = match id {
                Some(id) => c.enabled_clients.iter().any(|x| x.as_str() == id),
                None => c.name.as_str() == DATABASE_CONNECTION,
            };
            (c, on)
        })
        .collect())
}

/// Turns each connection on or off for the application as the form says, through the API
/// (`PATCH /api/v2/connections/{id}/clients`), changing only those that differ.
async fn apply_connections(
    a: &Admin,
    deps: &web::Data<Deps>,
    req: &HttpRequest,
    client_id: &str,
    form: &Form,
) -> Result<(), ApiError> {
    let chosen = form.all("connections");
    for (c, on) in connections_of(deps, Some(client_id)).await? {
        let want = chosen.iter().any(|x| x == c.id.as_str());
        if want != on {
            connection_ops::set_client(deps, a.auth(), req, c.id.as_str(), client_id, want).await?;
        }
    }
    Ok(())
}

fn edit_page(
    a: &Admin,
    issuer: &str,
    shown: &Value,
    form: Option<&Form>,
    connections: &[(Connection, bool)],
) -> FormPage {
    let id = shown["client_id"].as_str().unwrap_or_default();
    let mut p = page(
        a,
        shown["name"].as_str().unwrap_or("Application").to_owned(),
        format!("/admin/applications/{id}"),
        sections(issuer, Some(shown), form, connections),
    );
    p.lead = format!("Client ID: {id}");
    let confidential = shown["token_endpoint_auth_method"].as_str() != Some("none");
    if confidential {
        p.extras.push(Extra {
            action: format!("/admin/applications/{id}/rotate-secret"),
            label: "Rotate client secret",
            class: "secondary",
            confirm: "Rotate the client secret? The current secret stops working at once.".into(),
        });
    }
    // The admin UI's own client is Latch's (the API refuses to delete it).
    if id != ADMIN_CLIENT_ID {
        p.extras.push(Extra {
            action: format!("/admin/applications/{id}/delete"),
            label: "Delete application",
            class: "danger",
            confirm: format!(
                "Delete the application {}? It can no longer sign users in; its tokens stop working.",
                shown["name"].as_str().unwrap_or(id)
            ),
        });
    }
    p
}

async fn new(a: Admin, deps: web::Data<Deps>) -> HttpResponse {
    let connections = or_page!(connections_of(&deps, None).await);
    let mut p = page(
        &a,
        "New application".into(),
        "/admin/applications".into(),
        sections(&deps.issuer, None, None, &connections),
    );
    p.submit = "Create";
    html(StatusCode::OK, &p)
}

async fn create(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let (b, unread) = body(&form);
    let created = if unread.is_empty() {
        ops::create(&deps, a.auth(), &req, b.clone())
            .await
            .map_err(|e| vec![e])
    } else {
        Err(unread)
    };
    match created {
        Ok(v) => {
            let id = v["client_id"].as_str().unwrap_or_default().to_owned();
            let linked = apply_connections(&a, &deps, &req, &id, &form).await;
            let connections = or_page!(connections_of(&deps, Some(&id)).await);
            // The secret is shown on this answer only.
            let mut p = edit_page(&a, &deps.issuer, &v, None, &connections);
            p.shown_secret = v["client_secret"].as_str().map(str::to_owned);
            p.c.notice = Some("Application created.".into());
            if let Err(e) = linked {
                p.refused(vec![e]);
            }
            html(StatusCode::CREATED, &p)
        }
        Err(first) => {
            let connections = or_page!(connections_of(&deps, None).await);
            let mut p = page(
                &a,
                "New application".into(),
                "/admin/applications".into(),
                sections(&deps.issuer, None, Some(&form), &connections),
            );
            p.submit = "Create";
            let errors = refusal(first, ui_ops::problems(None, &b, &deps.outbound));
            let status = errors.first().map_or(StatusCode::BAD_REQUEST, |e| e.status);
            p.refused(errors);
            html(status, &p)
        }
    }
}

async fn find(deps: &Deps, id: &str) -> Result<Client, ApiError> {
    deps.store
        .find_client(&latch_core::ClientId::new(id))
        .await?
        .ok_or_else(|| ApiError::not_found("application"))
}

#[derive(serde::Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn edit(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Saved>,
) -> HttpResponse {
    let c = or_page!(find(&deps, &id).await);
    let connections = or_page!(connections_of(&deps, Some(c.client_id.as_str())).await);
    let mut p = edit_page(&a, &deps.issuer, &ops::show(&c), None, &connections);
    if q.saved.is_some() {
        p.c.notice = Some("Changes saved.".into());
    }
    html(StatusCode::OK, &p)
}

async fn update(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let c = or_page!(find(&deps, &id).await);
    let id = c.client_id.as_str();
    let (b, unread) = body(&form);
    let answer = if unread.is_empty() {
        ops::update(&deps, a.auth(), &req, id, b.clone())
            .await
            .map_err(|e| vec![e])
    } else {
        Err(unread)
    };
    let saved: Result<(), Vec<ApiError>> = match answer {
        Ok(_) => apply_connections(&a, &deps, &req, id, &form)
            .await
            .map_err(|e| vec![e]),
        Err(first) => Err(refusal(
            first,
            ui_ops::problems(Some(&c), &b, &deps.outbound),
        )),
    };
    match saved {
        Ok(()) => redirect(&format!("/admin/applications/{id}?saved=1")),
        Err(errors) => {
            let connections = or_page!(connections_of(&deps, Some(id)).await);
            let mut p = edit_page(&a, &deps.issuer, &ops::show(&c), Some(&form), &connections);
            let status = errors.first().map_or(StatusCode::BAD_REQUEST, |e| e.status);
            p.refused(errors);
            html(status, &p)
        }
    }
}
async fn rotate(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ops::rotate_secret(&deps, a.auth(), &req, &id).await {
        Ok(v) => {
            let connections = or_page!(connections_of(&deps, Some(&id)).await);
            let mut p = edit_page(&a, &deps.issuer, &v, None, &connections);
            p.shown_secret = v["client_secret"].as_str().map(str::to_owned);
            p.c.notice = Some("New secret issued; the old one no longer works.".into());
            html(StatusCode::OK, &p)
        }
        Err(e) => error_page(e),
    }
}

/// `POST /admin/applications/{id}/delete` (`DELETE /api/v2/clients/{id}`; the UI's own client
/// is refused there).
async fn delete(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ui_ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect("/admin/applications?done=deleted"),
        Err(e) if e.status == StatusCode::FORBIDDEN => super::message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "The admin UI's own application (latch-admin) is managed by Latch and cannot be deleted.",
            Some(("/admin/applications", "Back to applications")),
        ),
        Err(e) => error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_initiators_a_form_stands_for() {
        // The switch off: every kind, whatever boxes were left checked.
        let (b, _) = body(&form(&[("selected_initiators", "rp-logout")]));
        assert_eq!(
            b["oidc_logout"]["backchannel_logout_initiators"],
            json!({"mode": "all"})
        );
        // On: the boxes checked, none included.
        let (b, _) = body(&form(&[
            (INITIATORS_SWITCH, "true"),
            ("selected_initiators", "rp-logout"),
            ("selected_initiators", "password-changed"),
        ]));
        assert_eq!(
            b["oidc_logout"]["backchannel_logout_initiators"],
            json!({"mode": "custom", "selected_initiators": ["rp-logout", "password-changed"]})
        );
        let (b, _) = body(&form(&[(INITIATORS_SWITCH, "true")]));
        assert_eq!(
            b["oidc_logout"]["backchannel_logout_initiators"],
            json!({"mode": "custom", "selected_initiators": []})
        );
        // Every kind an app may select has its box, in the model's order.
        assert_eq!(INITIATORS.map(|(i, _)| i), LogoutInitiator::SELECTABLE);
    }

    #[test]
    fn the_saml_addon_a_form_stands_for() {
        // The switch off: no addon (the API removes one).
        let (a, unread) = samlp(&form(&[("audience", "urn:sp")]));
        assert!(a.is_null() && unread.is_empty());
        // On: the model's defaults for what is left empty; mappings one per line.
        let (a, unread) = samlp(&form(&[
            ("samlp", "true"),
            ("audience", " urn:sp "),
            ("recipient", ""),
            ("mappings", "email = mail\r\n\r\nname=urn:a=b\r\n"),
            (
                "signingCert",
                "-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n",
            ),
            ("slo_enabled", "true"),
        ]));
        assert!(unread.is_empty());
        let addon: SamlpAddon = serde_json::from_value(a).unwrap();
        assert_eq!(
            addon,
            SamlpAddon {
                mappings: [("email", "mail"), ("name", "urn:a=b")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                signing_cert: Some(
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into()
                ),
                logout: latch_core::model::SamlpLogout {
                    callback: None,
                    slo_enabled: Some(true),
                },
                ..SamlpAddon::new("urn:sp")
            }
        );
        // What is not a URL or a number is left out, each an error on its field; a mapping
        // without `=` is left to the API's checks (an empty attribute name).
        let (a, unread) = samlp(&form(&[
            ("samlp", "true"),
            ("audience", "urn:sp"),
            ("recipient", "acs"),
            ("lifetimeInSeconds", "1h"),
            ("callback", "https://sp.example/slo"),
            ("mappings", "email"),
        ]));
        let fields: Vec<_> = unread.iter().filter_map(|e| e.field.as_deref()).collect();
        assert_eq!(
            fields,
            ["addons.samlp.recipient", "addons.samlp.lifetimeInSeconds"]
        );
        assert_eq!(a.get("recipient"), None);
        assert_eq!(a.get("lifetimeInSeconds"), None);
        assert_eq!(a["logout"]["callback"], "https://sp.example/slo");
        assert_eq!(a["mappings"], json!({"email": ""}));
    }
}
