//! The expiry sweeper: a session whose time is up ends through the Logout service, once, its
//! apps told with the `session-expired` initiator and its session-bound refresh tokens revoked
//! (offline ones kept).

use latch_core::model::{DeliveryState, LogoutInitiator};
use latch_testkit::fixtures;
use time::Duration;

use crate::on_all_backends;
use crate::support::Harness;

async fn expired_sessions_end_through_the_logout_service(h: Harness) {
    let s = &h.state;
    let user = fixtures::user();
    s.store.insert_user(&user).await.unwrap();
    let client = fixtures::client();
    s.store.insert_client(&client).await.unwrap();
    let mut session = fixtures::session(&user.user_id);
    let joined = fixtures::session_client(client.client_id.as_str());
    session.clients.push(joined.clone());
    let now = s.clock.now();
    session.idle_expires_at = now - Duration::seconds(10);
    let mut live = fixtures::session(&user.user_id);
    live.clients
        .push(fixtures::session_client(client.client_id.as_str()));
    s.sessions.insert_session(&session).await.unwrap();
    s.sessions.insert_session(&live).await.unwrap();
    let bound = fixtures::refresh_token(&user, &client, Some(&session.id), false);
    let offline = fixtures::refresh_token(&user, &client, Some(&session.id), true);
    for t in [&bound, &offline] {
        s.store
            .insert_grant(&fixtures::grant_of(t), Some(t))
            .await
            .unwrap();
    }

    let logout = s.logout();
    let ended = latch_server::expiry::sweep(&*s.sessions, &logout, &*s.clock)
        .await
        .unwrap();
    assert!(ended >= 1, "the expired session ended");
    // Its app is told, with the initiator and the app's sid; the live session is untouched.
    let mine: Vec<_> = s
        .store
        .list_deliveries(
            &latch_core::model::DeliveryQuery::in_state(DeliveryState::Pending),
            1000,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.client_id == client.client_id)
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].notice.initiator, LogoutInitiator::SessionExpired);
    assert_eq!(mine[0].notice.sid.as_ref(), Some(&joined.sid));
    assert!(
        s.sessions
            .find_session(&live.id, now)
            .await
            .unwrap()
            .is_some()
    );
    // Gone from the store, and not swept twice.
    let listed = s.sessions.expired_sessions(now, 1000).await.unwrap();
    assert!(listed.iter().all(|x| x.id != session.id));
    latch_server::expiry::sweep(&*s.sessions, &logout, &*s.clock)
        .await
        .unwrap();
    let again = s
        .store
        .list_deliveries(
            &latch_core::model::DeliveryQuery::in_state(DeliveryState::Pending),
            1000,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.client_id == client.client_id)
        .count();
    assert_eq!(again, 1);
    // The session's refresh token died with it; the offline one lives.
    let left: Vec<_> = s
        .store
        .list_user_refresh_tokens(&user.user_id, now)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert!(
        !left.contains(&bound.id) && left.contains(&offline.id),
        "{left:?}"
    );
}

on_all_backends!(
    expired_sessions_end_through_the_logout_service,
    expired_sessions_end_through_the_logout_service
);
