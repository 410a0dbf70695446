//! Connections: list, create and edit per strategy (each form shows only its strategy's fields),
//! enabled applications, the Universal Logout section, SAML's SP settings, delete; an enterprise
//! connection's SCIM tab ([`scim`]).

mod scim;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::connection_options::{
    self, Fallback, FormSection, Kind, OptionSpec, UniversalLogoutOptions,
};
use latch_core::connector::SamlSp;
use latch_core::model::{Client, Strategy};
use latch_core::paths;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Admin, Choice, Chrome, Extra, Field, Form, FormPage, Section, error_page, html, problems,
    redirect,
};
use crate::Deps;
use crate::api::connections::{ops, ui_ops, view};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/connections", web::get().to(list))
        .route("/connections", web::post().to(create))
        .route("/connections/new", web::get().to(new))
        .route("/connections/{id}", web::get().to(edit))
        .route("/connections/{id}", web::post().to(update))
        .route("/connections/{id}/delete", web::post().to(delete))
        .configure(scim::routes);
}

struct Row {
    id: String,
    name: String,
    display_name: String,
    strategy: &'static str,
    apps: usize,
    enterprise: bool,
    ul: bool,
}

#[derive(Template)]
#[template(path = "admin/connections.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
}

fn strategy_label(s: Strategy) -> &'static str {
    match s {
        Strategy::Auth0 => "Database",
        Strategy::Okta => "Okta Workforce",
        Strategy::Oidc => "OpenID Connect",
        Strategy::Samlp => "SAML",
    }
}

async fn list(a: Admin, deps: web::Data<Deps>) -> HttpResponse {
    let all = or_page!(deps.store.list_connections().await);
    let rows = all
        .iter()
        .map(|c| Row {
            id: c.id.as_str().to_owned(),
            name: c.name.as_str().to_owned(),
            display_name: c
                .display_name
                .clone()
                .unwrap_or_else(|| c.name.as_str().to_owned()),
            strategy: strategy_label(c.strategy),
            apps: c.enabled_clients.len(),
            enterprise: c.strategy.is_enterprise(),
            ul: UniversalLogoutOptions::of(c).enabled,
        })
        .collect();
    html(
        StatusCode::OK,
        &ListPage {
            c: a.chrome("connections"),
            rows,
        },
    )
}

/// A value for a field: what was posted (re-shown after an error), else what is stored.
fn value(form: Option<&Form>, stored: &Map<String, Value>, key: &str) -> String {
    if let Some(f) = form {
        return f.get(key).unwrap_or_default().to_owned();
    }
    match stored.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn flag(form: Option<&Form>, stored: &Map<String, Value>, key: &str) -> bool {
    match form {
        Some(f) => f.checked(key),
        None => stored.get(key) == Some(&Value::Bool(true)),
    }
}

/// The form of a strategy. `shown` is the connection as the API shows it (edit), `form` what was
/// posted (after an error).
fn sections(
    strategy: Strategy,
    issuer: &str,
    shown: Option<&Value>,
    form: Option<&Form>,
    clients: &[Client],
    enabled: &[String],
) -> Vec<Section> {
    let empty = Map::new();
    let opts = shown
        .and_then(|v| v["options"].as_object())
        .unwrap_or(&empty);
    let creating = shown.is_none();
    let typed_name = form.and_then(|f| f.get("name"));
    let mut general = Vec::new();
    if creating {
        general.push(
            Field::new("text", "name", "Name", form.and_then(|f| f.get("name")).unwrap_or_default())
                .help("Letters, digits and hyphens; it appears in URLs (the connection parameter, the revocation endpoint) and cannot change later."),
        );
    } else {
        general.push(Field::new(
            "readonly",
            "name_shown",
            "Name",
            shown.and_then(|s| s["name"].as_str()).unwrap_or_default(),
        ));
    }
    general.push(
        Field::new(
            "text",
            "display_name",
            "Display name",
            match form {
                Some(f) => f.get("display_name").unwrap_or_default().to_owned(),
                None => shown
                    .and_then(|s| s["display_name"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            },
        )
        .help("Shown on the sign-in page (\"Continue with …\")."),
    );
    let spec = connection_options::spec(strategy);
    let fields = |section| {
        spec.in_form(section)
            .map(|o| option_field(o, form, opts, creating))
            .collect::<Vec<_>>()
    };
    let mut out = vec![Section {
        id: "general",
        title: "General".into(),
        description: String::new(),
        fields: general,
    }];
    let for_idp = for_your_idp(strategy, issuer, shown, typed_name);
    if !for_idp.is_empty() {
        out.push(Section {
            id: "for-your-idp",
            title: "For your identity provider".into(),
            description: if creating {
                "Register these at your IdP. They follow the connection's name.".into()
            } else {
                "Register these at your IdP.".into()
            },
            fields: for_idp,
        });
    }
    out.push(Section {
        id: "idp",
        title: strategy_label(strategy).into(),
        description: String::new(),
        fields: fields(FormSection::Idp),
    });
    if strategy.is_enterprise() {
        out.push(Section {
            id: "home-realm",
            title: "Home realm discovery".into(),
            description:
                "Users whose email is in one of these domains are sent to this connection.".into(),
            fields: fields(FormSection::HomeRealm),
        });
        let mut ul = fields(FormSection::UniversalLogout);
        let endpoint = shown
            .and_then(|s| s["global_token_revocation_endpoint"].as_str())
            .map(str::to_owned);
        let revocation = Field::new(
            "readonly",
            "revocation_endpoint",
            "Revocation Endpoint URL",
            endpoint.clone().unwrap_or_default(),
        )
        .help("Paste this into Okta (Universal Logout settings of the app).");
        ul.push(match endpoint {
            Some(_) => revocation,
            None => revocation.computed(
                paths::global_token_revocation_url(issuer, "{name}"),
                typed_name,
            ),
        });
        out.push(Section {
            id: "universal-logout",
            title: "Universal Logout".into(),
            description: "Lets your IdP (Okta Universal Logout) end a user's sessions in Latch and every app, and revoke their refresh tokens.".into(),
            fields: ul,
        });
        out.push(Section {
            id: "single-logout",
            title: "Single Logout".into(),
            description: "Federated logout: when an app signs the user out with federated (or a SAML app, with the switch below), Latch also ends the user's session at the IdP.".into(),
            fields: fields(FormSection::SingleLogout),
        });
    }
    let chosen: Vec<String> = match form {
        Some(f) => f.all("enabled_clients"),
        None => enabled.to_vec(),
    };
    out.push(Section {
        id: "applications",
        title: "Applications".into(),
        description: "Applications whose users may sign in through this connection.".into(),
        fields: vec![
            Field::new("checkboxes", "enabled_clients", "Enabled for", "").choices(
                clients
                    .iter()
                    .map(|c| Choice {
                        value: c.client_id.as_str().to_owned(),
                        label: c.name.clone(),
                        selected: chosen.iter().any(|x| x == c.client_id.as_str()),
                    })
                    .collect(),
            ),
        ],
    });
    out
}

/// The help of a stored secret's field: it is never shown, and an empty field keeps it.
const SECRET_KEPT: &str = "Leave empty to keep the stored secret (it is never shown).";

/// The field of option `o`, as the strategy's table describes it: its value as posted (after an
/// error) or stored; a secret is never shown; a fresh form shows a flag's default.
fn option_field(
    o: &OptionSpec,
    form: Option<&Form>,
    stored: &Map<String, Value>,
    creating: bool,
) -> Field {
    match o.kind {
        Kind::Bool => {
            let fresh = creating && form.is_none();
            Field::new("checkbox", o.key, o.label, "")
                .checked(flag(form, stored, o.key) || (fresh && o.fallback == Fallback::Flag(true)))
        }
        Kind::OneOf(allowed) => {
            let chosen = match (value(form, stored, o.key), o.fallback) {
                (v, Fallback::Text(default)) if v.is_empty() => default.to_owned(),
                (v, _) => v,
            };
            Field::new("select", o.key, o.label, "").choices(
                allowed
                    .iter()
                    .map(|c| Choice {
                        value: (*c).into(),
                        label: (*c).into(),
                        selected: *c == chosen,
                    })
                    .collect(),
            )
        }
        Kind::Secret => Field::new("password", o.key, o.label, "").help(if creating {
            o.help
        } else {
            SECRET_KEPT
        }),
        Kind::Url | Kind::Issuer => {
            Field::new("url", o.key, o.label, value(form, stored, o.key)).help(o.help)
        }
        Kind::Pem | Kind::Xml => {
            Field::new("textarea", o.key, o.label, value(form, stored, o.key)).help(o.help)
        }
        Kind::Str | Kind::OktaDomain | Kind::Domains | Kind::Complexity => {
            Field::new("text", o.key, o.label, value(form, stored, o.key)).help(o.help)
        }
    }
}

/// What the admin registers at the IdP: for `okta` and `oidc` the sign-in redirect URI, the
/// back-channel logout URL and the sign-out redirect URI, for `samlp` Latch's SP metadata URL,
/// entity id, ACS and Single Logout URL. Once the
/// connection exists, as the API shows them; before, computed from the name as typed.
fn for_your_idp(
    strategy: Strategy,
    issuer: &str,
    shown: Option<&Value>,
    typed_name: Option<&str>,
) -> Vec<Field> {
    let stored = |k: &str| {
        shown
            .and_then(|s| s[k].as_str().or_else(|| s["options"][k].as_str()))
            .map(str::to_owned)
    };
    // Shown as stored, or computed from the name being typed (`{name}` until there is one).
    let value = |f: Field, k: &str, template: String| match stored(k) {
        Some(v) if shown.is_some() => Field { value: v, ..f },
        _ => f.computed(template, typed_name),
    };
    match strategy {
        Strategy::Okta | Strategy::Oidc => vec![
            Field::new(
                "readonly",
                "redirect_uri",
                "Sign-in redirect URI",
                paths::callback_url(issuer),
            )
            .help(if strategy == Strategy::Okta {
                "In Okta: the app integration's \"Sign-in redirect URIs\"."
            } else {
                "The redirect URI to register with your IdP for this client."
            }),
            value(
                Field::new(
                    "readonly",
                    "backchannel_logout_url",
                    "Back-channel logout URL",
                    "",
                )
                .help("Optional: where your IdP sends OpenID Connect Back-Channel Logout."),
                "backchannel_logout_url",
                paths::backchannel_logout_url(issuer, "{name}"),
            ),
            value(
                Field::new(
                    "readonly",
                    "federated_logout_return_url",
                    "Sign-out redirect URI",
                    "",
                )
                .help(if strategy == Strategy::Okta {
                    "In Okta: the app integration's \"Sign-out redirect URIs\" (federated logout comes back here)."
                } else {
                    "The post_logout_redirect_uri to register with your IdP (federated logout comes back here)."
                }),
                "federated_logout_return_url",
                paths::upstream_logout_url(issuer, "{name}"),
            ),
        ],
        Strategy::Samlp => {
            // Computed where the API computes them, for the name being typed.
            let sp = SamlSp::new("{name}", None, issuer);
            let mut entity = value(
                Field::new("readonly", "sp_entity_id", "Entity ID (audience)", ""),
                "sp_entity_id",
                sp.entity_id,
            );
            if shown.is_none() {
                entity.prefer = "entityId".into();
            }
            vec![
                value(
                    Field::new("readonly", "sp_metadata_url", "SP metadata URL", "")
                        .help("Most IdPs read everything below from this URL."),
                    "sp_metadata_url",
                    sp.metadata_url,
                ),
                entity,
                value(
                    Field::new("readonly", "sp_acs_url", "ACS URL (HTTP-POST)", "")
                        .help("The Assertion Consumer Service (single sign-on URL)."),
                    "sp_acs_url",
                    sp.acs_url,
                ),
                value(
                    Field::new(
                        "readonly",
                        "sp_single_logout_url",
                        "Single Logout URL (HTTP-Redirect and HTTP-POST)",
                        "",
                    )
                    .help("The IdP's LogoutRequests and LogoutResponses come here. The signature certificate is in the SP metadata."),
                    "sp_single_logout_url",
                    sp.slo_url,
                ),
            ]
        }
        Strategy::Auth0 => vec![],
    }
}

/// The options that say which IdP a connection talks to: when the form changes one, options
/// only the API sets are not carried over.
const IDP_KEYS: [&str; 5] = [
    "issuer",
    "domain",
    "metadataUrl",
    "metadataXml",
    "signInEndpoint",
];

/// The API body a form stands for: the options the strategy's table puts on the form. Empty
/// fields are left out; an empty secret keeps the stored one (PATCH replaces `options` whole but
/// keeps secrets left out).
fn body(strategy: Strategy, f: &Form, creating: bool) -> Value {
    let mut options = Map::new();
    for o in connection_options::spec(strategy).options {
        if o.form.is_none() {
            continue;
        }
        let v = match o.kind {
            Kind::Bool => Some(Value::Bool(f.checked(o.key))),
            Kind::Domains => Some(f.list(o.key, true))
                .filter(|l| !l.is_empty())
                .map(|l| json!(l)),
            _ => f.text(o.key).map(Value::String),
        };
        if let Some(v) = v {
            options.insert(o.key.into(), v);
        }
    }
    let mut b = json!({ "options": options, "enabled_clients": f.all("enabled_clients") });
    if let Some(d) = f.text("display_name") {
        b["display_name"] = json!(d);
    }
    if creating {
        b["name"] = json!(f.get("name").unwrap_or_default().trim());
        b["strategy"] = json!(strategy.as_str());
    }
    b
}

async fn clients(deps: &Deps) -> Result<Vec<Client>, latch_core::StoreError> {
    let mut v = deps.store.list_clients().await?;
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

#[derive(Deserialize)]
struct NewQuery {
    strategy: Option<String>,
}

fn page(a: &Admin, title: String, action: String, sections: Vec<Section>) -> FormPage {
    FormPage {
        c: a.chrome("connections"),
        title,
        lead: String::new(),
        back: "/admin/connections",
        action,
        submit: "Save",
        sections,
        problems: vec![],
        shown_secret: None,
        extras: vec![],
    }
}

async fn new(a: Admin, deps: web::Data<Deps>, q: web::Query<NewQuery>) -> HttpResponse {
    let strategy = q
        .strategy
        .as_deref()
        .and_then(Strategy::parse)
        .unwrap_or(Strategy::Okta);
    let cl = or_page!(clients(&deps).await);
    let mut p = page(
        &a,
        format!("New {} connection", strategy_label(strategy)),
        format!("/admin/connections?strategy={}", strategy.as_str()),
        sections(strategy, &deps.issuer, None, None, &cl, &[]),
    );
    p.submit = "Create";
    html(StatusCode::OK, &p)
}

async fn create(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<NewQuery>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let strategy = q
        .strategy
        .as_deref()
        .and_then(Strategy::parse)
        .unwrap_or(Strategy::Okta);
    let b = body(strategy, &form, true);
    match ops::create(&deps, a.auth(), &req, b.clone()).await {
        Ok(v) => redirect(&format!(
            "/admin/connections/{}?saved=created",
            v["id"].as_str().unwrap_or_default()
        )),
        Err(e) => {
            let cl = or_page!(clients(&deps).await);
            let mut p = page(
                &a,
                format!("New {} connection", strategy_label(strategy)),
                format!("/admin/connections?strategy={}", strategy.as_str()),
                sections(strategy, &deps.issuer, None, Some(&form), &cl, &[]),
            );
            p.submit = "Create";
            let status = e.status;
            p.refused(problems::merge(
                e,
                ui_ops::problems(&deps, strategy, None, &b),
            ));
            html(status, &p)
        }
    }
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn edit(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Saved>,
) -> HttpResponse {
    let c = or_page!(
        deps.store
            .get_connection(&latch_core::ConnectionId::new(id.as_str()))
            .await
    );
    let cl = or_page!(clients(&deps).await);
    let shown = view(&c, &deps.issuer);
    let enabled: Vec<String> = c
        .enabled_clients
        .iter()
        .map(|x| x.as_str().to_owned())
        .collect();
    let mut p = edit_page(
        &a,
        &c,
        sections(c.strategy, &deps.issuer, Some(&shown), None, &cl, &enabled),
    );
    p.c.notice = match q.saved.as_deref() {
        Some("created") => Some("Connection created.".into()),
        Some(_) => Some("Changes saved.".into()),
        None => None,
    };
    html(StatusCode::OK, &EditPage::of(p, &c))
}

/// An existing connection's form; an enterprise connection's has the tabs to its SCIM page.
#[derive(Template)]
#[template(path = "admin/connections_edit.html")]
struct EditPage {
    form: FormPage,
    tabs: bool,
    tab: &'static str,
    conn_id: String,
    name: String,
}

/// The template reads the form page's own fields (`c`, `title`, `sections`, …) through this.
impl std::ops::Deref for EditPage {
    type Target = FormPage;
    fn deref(&self) -> &FormPage {
        &self.form
    }
}

impl EditPage {
    fn of(form: FormPage, c: &latch_core::model::Connection) -> Self {
        Self {
            form,
            tabs: c.strategy.is_enterprise(),
            tab: "settings",
            conn_id: c.id.as_str().to_owned(),
            name: c.name.as_str().to_owned(),
        }
    }
}

fn edit_page(a: &Admin, c: &latch_core::model::Connection, sections: Vec<Section>) -> FormPage {
    let mut p = page(
        a,
        format!("{} · {}", c.name, strategy_label(c.strategy)),
        format!("/admin/connections/{}", c.id),
        sections,
    );
    if c.name.as_str() != latch_core::model::DATABASE_CONNECTION {
        p.extras.push(Extra {
            action: format!("/admin/connections/{}/delete", c.id),
            label: "Delete connection",
            class: "danger",
            confirm: format!(
                "Delete the connection {}? Its users can no longer sign in through it.",
                c.name
            ),
        });
    }
    p
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
    let c = or_page!(
        deps.store
            .get_connection(&latch_core::ConnectionId::new(id.as_str()))
            .await
    );
    let mut b = body(c.strategy, &form, false);
    // Options the form does not show (set through the API: `discovery_url`, `jwks_uri`,
    // `type`, …) are kept, since PATCH replaces `options` whole; unless the form
    // points the connection at another IdP, which makes them the old IdP's.
    let same_idp = IDP_KEYS
        .iter()
        .all(|k| b["options"].get(*k) == c.options.get(*k));
    for o in connection_options::spec(c.strategy).options {
        if same_idp
            && o.form.is_none()
            && let Some(v) = c.options.get(o.key)
            && let Some(opts) = b["options"].as_object_mut()
        {
            opts.entry(o.key).or_insert_with(|| v.clone());
        }
    }
    match ops::update(&deps, a.auth(), &req, c.id.as_str(), b.clone()).await {
        Ok(_) => redirect(&format!("/admin/connections/{}?saved=1", c.id)),
        Err(e) => {
            let cl = or_page!(clients(&deps).await);
            let shown = view(&c, &deps.issuer);
            let mut p = edit_page(
                &a,
                &c,
                sections(
                    c.strategy,
                    &deps.issuer,
                    Some(&shown),
                    Some(&form),
                    &cl,
                    &[],
                ),
            );
            let status = e.status;
            p.refused(problems::merge(
                e,
                ui_ops::problems(&deps, c.strategy, Some(&c), &b),
            ));
            html(status, &EditPage::of(p, &c))
        }
    }
}

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
    match ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect("/admin/connections"),
        Err(e) => error_page(e),
    }
}
