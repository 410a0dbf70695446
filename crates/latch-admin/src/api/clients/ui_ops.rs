//! What the admin UI asks of `/api/v2/clients` beyond [`super::ops`]: every problem with a form
//! at once, and deleting an application.

use super::*;

/// Every problem the API's own checks ([`apply`]) find in a client body, not only the first it
/// answers: each time a check refuses a member, that member is set aside and the checks run
/// again, so rules across fields are judged on what remains. `existing` is the client being
/// edited; `None` for a new one.
pub(crate) fn problems(
    existing: Option<&Client>,
    body: &Value,
    policy: &OutboundPolicy,
) -> Vec<ApiError> {
    let base = existing.cloned().unwrap_or_else(|| Client {
        client_id: ClientId::new("-"),
        name: String::new(),
        description: None,
        app_type: AppType::RegularWeb,
        callbacks: vec![],
        allowed_logout_urls: vec![],
        web_origins: vec![],
        grant_types: default_grant_types(AppType::RegularWeb),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        signing_alg: SigningAlg::RS256,
        lifetimes: TokenLifetimes::default(),
        oidc_logout: OidcLogout::default(),
        addons: Default::default(),
        global_token_revocation: None,
        secrets: vec![],
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
    });
    let mut body = body.clone();
    let mut creating = existing.is_none();
    let mut out: Vec<ApiError> = Vec::new();
    // Each round sets a member aside, so the rounds are bounded by the body's size.
    for _ in 0..32 {
        let input: ClientInput = match serde_json::from_value(body.clone()) {
            Ok(i) => i,
            Err(e) => {
                // Only the body as posted: later rounds read what was set aside from it.
                if out.is_empty() {
                    out.push(ApiError::bad_request("body", e.to_string()));
                }
                break;
            }
        };
        let Err(e) = apply(&mut base.clone(), input, creating, policy) else {
            break;
        };
        let field = e.field.clone().unwrap_or_default();
        if !out.iter().any(|o| o.field == e.field) {
            out.push(e);
        }
        let removed = set_aside(&mut body, &field);
        // A required member that is missing cannot be set aside: judge the rest as an update.
        if !removed && !creating {
            break;
        }
        creating = false;
    }
    out
}

/// Members the API requires inside an object it reads whole (`addons.samlp`): set aside, each
/// is replaced by a value the checks accept, so the rest of that object is still judged.
const STAND_INS: [(&str, &str); 1] = [("addons.samlp.audience", "urn:latch:stand-in")];

/// Removes the member `field` names (`callbacks[1]` → `callbacks`, `oidc_logout.x` → `x` in
/// `oidc_logout`), or replaces it by its stand-in; whether there was one.
fn set_aside(body: &mut Value, field: &str) -> bool {
    let path = field.split('[').next().unwrap_or(field);
    let stand_in = STAND_INS.iter().find(|(f, _)| *f == path).map(|(_, v)| *v);
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut at = body;
    for p in parts {
        match at.get_mut(p) {
            Some(v) => at = v,
            None => return false,
        }
    }
    let Some(o) = at.as_object_mut() else {
        return false;
    };
    match stand_in {
        Some(v) => o
            .insert(last.to_owned(), Value::String(v.to_owned()))
            .is_some(),
        None => o.remove(last).is_some(),
    }
}

/// Deletes the application (`DELETE /api/v2/clients/{id}`: `latch-admin` is refused).
pub(crate) async fn delete(
    deps: &web::Data<Deps>,
    auth: ManagementAuth,
    req: &HttpRequest,
    id: &str,
) -> Result<(), ApiError> {
    delete_client(
        deps.clone(),
        auth,
        req.clone(),
        web::Path::from(id.to_owned()),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_a_client_body() {
        let policy = OutboundPolicy::default();
        let fields = |body: Value| -> Vec<String> {
            problems(None, &body, &policy)
                .into_iter()
                .filter_map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(serde_json::json!({
                "name": "",
                "app_type": "regular_web",
                "callbacks": ["https://ok.example/cb", "not a url"],
                "allowed_logout_urls": ["http://app.example/"],
                "grant_types": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "oidc_logout": {"backchannel_logout_urls": ["ftp://x.example/"]}
            })),
            [
                "name",
                "callbacks[1]",
                "allowed_logout_urls[0]",
                "oidc_logout.backchannel_logout_urls[0]",
                "grant_types"
            ]
        );
        // Rules across fields are judged on the whole: a public client with `none` is fine.
        assert!(
            fields(serde_json::json!({
                "name": "SPA", "app_type": "spa", "callbacks": ["https://spa.example/cb"],
                "grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"
            }))
            .is_empty()
        );
        assert_eq!(
            fields(serde_json::json!({
                "name": "SPA", "app_type": "spa",
                "grant_types": ["authorization_code"], "token_endpoint_auth_method": "client_secret_post"
            })),
            ["token_endpoint_auth_method"]
        );
        // A SAML app's addon: every problem in it, the required entity id included, and the
        // ACS judged against the callbacks as posted.
        assert_eq!(
            fields(serde_json::json!({
                "name": "SP", "callbacks": ["https://sp.example/acs"],
                "addons": {"samlp": {
                    "audience": "", "recipient": "https://other.example/acs",
                    "signatureAlgorithm": "rsa-sha1", "mappings": {"password": "pw"},
                    "logout": {"callback": "http://sp.example/slo"}
                }}
            })),
            [
                "addons.samlp.audience",
                "addons.samlp.recipient",
                "addons.samlp.signatureAlgorithm",
                "addons.samlp.mappings",
                "addons.samlp.logout.callback"
            ]
        );
        assert!(
            fields(serde_json::json!({
                "name": "SP", "callbacks": ["https://sp.example/acs"],
                "addons": {"samlp": {"audience": "https://sp.example"}}
            }))
            .is_empty()
        );
        // A missing name is the API's first answer, and the rest is still judged.
        assert_eq!(
            fields(serde_json::json!({"callbacks": ["nope"]})),
            ["name", "callbacks[0]"]
        );
    }
}
