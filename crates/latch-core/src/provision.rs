//! Just-in-time provisioning: the first sign-in through a connection creates the user and the
//! identity (keyed by connection, upstream issuer, upstream subject; email is only an attribute);
//! later sign-ins update the profile. A blocked user is refused. A user a SCIM client
//! provisioned into the connection with the same subject is found instead of a new one made.

use crate::connector::UpstreamIdentity;
use crate::model::{Connection, Identity, User};
use crate::store::Store;
use crate::{Clock, StoreError, UserId};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the user is blocked")]
    Blocked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn apply(u: &mut User, i: &UpstreamIdentity) {
    if i.email.is_some() {
        u.email = i.email.as_ref().map(|e| e.to_lowercase());
        u.email_verified = i.email_verified;
    }
    for (dst, src) in [
        (&mut u.name, &i.name),
        (&mut u.given_name, &i.given_name),
        (&mut u.family_name, &i.family_name),
        (&mut u.nickname, &i.nickname),
        (&mut u.picture, &i.picture),
    ] {
        if src.is_some() {
            dst.clone_from(src);
        }
    }
}

/// The user for an upstream identity, created or updated.
pub async fn provision(
    store: &dyn Store,
    clock: &dyn Clock,
    connection: &Connection,
    upstream: &UpstreamIdentity,
    new_id: impl Fn() -> String,
) -> Result<User, ProvisionError> {
    let now = clock.now();
    for _ in 0..2 {
        // A user a SCIM client provisioned with this subject is this one: their identity takes
        // the upstream issuer now (`ScimRepo::claim_scim_identity`).
        let found = match store
            .find_identity_with_user(&connection.id, &upstream.issuer, &upstream.subject)
            .await?
        {
            Some(f) => Some(f),
            None => {
                store
                    .claim_scim_identity(&connection.id, &upstream.issuer, &upstream.subject)
                    .await?
            }
        };
        if let Some((mut identity, mut user)) = found {
            if user.blocked {
                return Err(ProvisionError::Blocked);
            }
            apply(&mut user, upstream);
            user.profile.clone_from(&upstream.profile);
            user.updated_at = now;
            user.last_login = Some(now);
            user.logins_count += 1;
            identity.profile.clone_from(&upstream.profile);
            identity.updated_at = now;
            store.update_user_and_identity(&user, &identity).await?;
            return Ok(user);
        }
        let mut user = User {
            user_id: UserId::new(format!("{}|{}", connection.strategy.as_str(), new_id())),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            nickname: None,
            picture: None,
            profile: upstream.profile.clone(),
            blocked: false,
            created_at: now,
            updated_at: now,
            last_login: Some(now),
            logins_count: 1,
            app_metadata: Default::default(),
        };
        apply(&mut user, upstream);
        let identity = Identity {
            user_id: user.user_id.clone(),
            connection_id: connection.id.clone(),
            issuer: upstream.issuer.clone(),
            subject: upstream.subject.clone(),
            password_hash: None,
            profile: upstream.profile.clone(),
            created_at: now,
            updated_at: now,
        };
        // Both or neither: a clash leaves no user behind.
        match store.insert_user_with_identity(&user, &identity).await {
            Ok(()) => return Ok(user),
            // Another sign-in of the same identity won the race: use its user.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ProvisionError::Store(StoreError::Conflict {
        entity: "identity",
        field: "subject",
    }))
}
