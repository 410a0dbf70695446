//! What the admin UI asks of `/api/v2/connections` beyond [`super::ops`]: every problem with a
//! form at once, and turning a connection on or off for one application.

use super::*;

/// Every problem the API's checks find in a create (`previous: None`) or update body, not only
/// the first it answers: the name, the display name, then every option
/// ([`validate::connection_option_problems`], the same rules as the API's).
pub(crate) fn problems(
    deps: &Deps,
    strategy: Strategy,
    previous: Option<&Connection>,
    body: &Value,
) -> Vec<ApiError> {
    let mut out = Vec::new();
    if previous.is_none() {
        let name = body["name"].as_str().unwrap_or_default();
        if let Err(e) = validate::connection_name("name", name) {
            out.push(e.into());
        }
    }
    if let Some(d) = body.get("display_name")
        && let Err(e) = display_name(d.as_str().map(str::to_owned))
    {
        out.push(e);
    }
    let options = body["options"].as_object().cloned().unwrap_or_default();
    if let Err(all) = validate::connection_option_problems(
        strategy,
        options,
        previous.map(|c| &c.secrets),
        &deps.outbound,
    ) {
        out.extend(all.into_iter().map(ApiError::from));
    }
    out
}

/// Turns connection `id` on or off for the application `client_id` (`PATCH
/// /api/v2/connections/{id}/clients`).
pub(crate) async fn set_client(
    deps: &web::Data<Deps>,
    auth: ManagementAuth,
    req: &HttpRequest,
    id: &str,
    client_id: &str,
    enabled: bool,
) -> Result<(), ApiError> {
    patch_connection_clients(
        deps.clone(),
        auth,
        req.clone(),
        web::Path::from(id.to_owned()),
        StrictJson(vec![ClientStatus {
            client_id: client_id.to_owned(),
            status: enabled,
        }]),
    )
    .await?;
    Ok(())
}
