//! What the admin UI asks of `/api/v2/users` beyond [`super::ops`]: create a database user
//! (with every problem of the form at once) and delete a user.

use super::*;

/// Creates a user (`POST /api/v2/users`); the user as the API shows it.
pub(crate) async fn create(
    deps: &web::Data<Deps>,
    auth: ManagementAuth,
    req: &HttpRequest,
    body: Value,
) -> Result<Value, ApiError> {
    let res = post_user(
        deps.clone(),
        auth,
        req.clone(),
        StrictJson(crate::api::body(body)?),
    )
    .await?;
    crate::api::answer(res).await
}

/// Every problem the API's checks find in a create body, not only the first it answers: the
/// connection, the email, the password against that connection's policy, the name.
pub(crate) async fn create_problems(deps: &Deps, body: &Value) -> Vec<ApiError> {
    let mut out = Vec::new();
    let connection = body["connection"].as_str().unwrap_or_default();
    let conn = match connection_named(deps, connection).await.and_then(|c| {
        latch_core::users::database_connection(&c)?;
        Ok(c)
    }) {
        Ok(c) => Some(c),
        Err(e) => {
            out.push(e);
            None
        }
    };
    if let Err(e) = latch_core::users::email(body["email"].as_str().unwrap_or_default()) {
        out.push(e.into());
    }
    if let Some(c) = conn
        && let Err(e) =
            latch_core::users::password(&c, body["password"].as_str().unwrap_or_default())
    {
        out.push(e.into());
    }
    if let Err(e) = latch_core::users::name(body["name"].as_str().map(str::to_owned)) {
        out.push(e.into());
    }
    out
}

/// Deletes the user (`DELETE /api/v2/users/{id}`: sessions ended, tokens revoked, apps told).
pub(crate) async fn delete(
    deps: &web::Data<Deps>,
    auth: ManagementAuth,
    req: &HttpRequest,
    id: &str,
) -> Result<(), ApiError> {
    delete_user(
        deps.clone(),
        auth,
        req.clone(),
        web::Path::from(id.to_owned()),
    )
    .await?;
    Ok(())
}
